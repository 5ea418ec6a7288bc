"""Torch layers built on the fused search and aggregation ops (SPEC.md, "Attention layer").

`NonLocalAttention` is space-time non-local attention over a video:

    vid (B, T, dim, H, W)
      -> qkv = 1x1 conv per frame to 3*dim channels, split into q, k, v (B, T, dim, H, W)
      -> dists, inds = stnls.search.nls(q, k, fflow, bflow, ws, wt, ps, k, nheads, ...)
             dists (B, nheads, Q, K), inds (B, nheads, Q, K, 3)
      -> weights = softmax(scale * dists) over K   (softmax(-scale * dists) for "l2")
      -> out = stnls.agg.wpsum(v, weights, inds, ps, stride0, pt, dilation, reflect_bounds)
      -> 1x1 conv per frame (dim -> dim)
    returns (B, T, dim, H, W)

Q = T * ((H-1)//stride0 + 1) * ((W-1)//stride0 + 1). Head h owns the channels
[h*dim/nheads, (h+1)*dim/nheads) of q, k and v. Flows are (B, T, 2, H, W) (channel 0 = x) or
None (zero flow). With ps=1, stride0=1, ws=-1, k<=0 the layer is dense softmax attention over
every pixel of the st = min(2*wt+1, T) frames searched for each query frame.

Padded neighbours (distance -inf for "prod", +inf for "l2", index -1) get weight exactly 0;
a query with no valid neighbour at all gets all-zero weights (so its aggregated value is 0),
never NaN. Everything runs through the library's fused ops and torch layers, on whatever
device the input lives on.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from . import agg, search


def masked_softmax(logits: Tensor, valid: Tensor) -> Tensor:
    """softmax over the last axis restricted to `valid`; rows with no valid entry give 0.

    Invalid logits are replaced by the dtype's lowest finite value rather than -inf: a row
    of only invalid entries then yields a finite uniform softmax (masked to 0 afterwards)
    instead of NaN, and no inf ever enters the autograd graph.
    """
    low = torch.finfo(logits.dtype).min
    logits = torch.where(valid, logits, torch.full_like(logits, low))
    return torch.softmax(logits, dim=-1) * valid.to(logits.dtype)


class NonLocalAttention(nn.Module):
    """Space-time non-local attention: (B, T, dim, H, W) -> (B, T, dim, H, W).

    Args:
        dim: channels of the input and output; must be divisible by `nheads`.
        nheads: attention heads (each searches its own dim/nheads channels).
        ws, wt, ps, k, stride0, stride1, dilation, pt, reflect_bounds, full_ws, dist_type:
            the search's parameters (see `stnls.search.nls`); ps, stride0, pt, dilation and
            reflect_bounds are also those of the aggregation.
        scale: softmax temperature on the distances; default (dim/nheads) ** -0.5.
        bias: whether the qkv and output projections have biases.

    forward(vid, fflow=None, bflow=None): vid (B, T, dim, H, W); flows (B, T, 2, H, W) or None.
    """

    def __init__(self, dim, nheads, ws, wt, ps=1, k=10, stride0=1, dist_type="prod", scale=None,
                 stride1=1, dilation=1, pt=1, reflect_bounds=True, full_ws=True, bias=True):
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive integer, got {dim!r}")
        if isinstance(nheads, bool) or not isinstance(nheads, int) or nheads < 1:
            raise ValueError(f"nheads: expected a positive integer, got {nheads!r}")
        if dim % nheads != 0:
            raise ValueError(f"dim: must be divisible by nheads, got dim={dim}, nheads={nheads}")
        if dist_type not in ("prod", "l2"):
            raise ValueError(f"dist_type: expected 'prod' or 'l2', got {dist_type!r}")
        self.dim, self.nheads = dim, nheads
        self.scale = float(scale) if scale is not None else (dim / nheads) ** -0.5
        self.dist_type = dist_type
        self.search_args = dict(ws=ws, wt=wt, ps=ps, k=k)
        self.search_kwargs = dict(nheads=nheads, dist_type=dist_type, stride0=stride0,
                                  stride1=stride1, dilation=dilation, pt=pt,
                                  reflect_bounds=reflect_bounds, full_ws=full_ws)
        self.agg_kwargs = dict(ps=ps, stride0=stride0, pt=pt, dilation=dilation,
                               reflect_bounds=reflect_bounds)
        # One conv to 3*dim channels: q, k, v come out of a single GEMM per frame.
        self.qkv = nn.Conv2d(dim, 3 * dim, kernel_size=1, bias=bias)
        self.proj = nn.Conv2d(dim, dim, kernel_size=1, bias=bias)

    def forward(self, vid: Tensor, fflow: Tensor | None = None,
                bflow: Tensor | None = None) -> Tensor:
        if not isinstance(vid, Tensor):
            raise TypeError(f"vid: expected a torch.Tensor, got {type(vid).__name__}")
        if vid.ndim != 5:
            raise ValueError(f"vid: expected 5 dimensions (B, T, dim, H, W), got shape "
                             f"{tuple(vid.shape)}")
        B, T, C, H, W = vid.shape
        if C != self.dim:
            raise ValueError(f"vid: expected {self.dim} channels (dim) at axis 2, got shape "
                             f"{tuple(vid.shape)}")
        qkv = self.qkv(vid.reshape(B * T, C, H, W)).view(B, T, 3, C, H, W)
        # Channel slices of one buffer: the ops read them through strides, no copy.
        q, k, v = qkv.unbind(2)
        dists, inds = search.nls(q, k, fflow, bflow, **self.search_args, **self.search_kwargs)
        sign = self.scale if self.dist_type == "prod" else -self.scale
        # Padding is index -1 with an infinite distance. Its logit becomes the lowest finite
        # value, so next to any valid entry its weight is exactly 0 and no inf meets autograd
        # (the scalar product's backward never multiplies by the distance). A row with no
        # valid entry gets uniform weights, but wpsum reads zeros at index -1, so its output
        # and every gradient through it are 0, as with masked_softmax; skipping the mask
        # saves two (B, nheads, Q, K) buffers kept for the backward.
        valid = inds[..., 0] >= 0
        logits = torch.where(valid, dists * sign, torch.finfo(dists.dtype).min)
        weights = torch.softmax(logits, dim=-1)
        out = agg.wpsum(v, weights, inds, **self.agg_kwargs)
        return self.proj(out.reshape(B * T, C, H, W)).view(B, T, C, H, W)

    def extra_repr(self) -> str:
        kw = {**self.search_args, **self.search_kwargs, "scale": self.scale}
        return f"dim={self.dim}, " + ", ".join(f"{k}={v!r}" for k, v in kw.items())


__all__ = ["NonLocalAttention", "masked_softmax"]
