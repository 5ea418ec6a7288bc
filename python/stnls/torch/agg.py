"""Torch ops of the weighted patch sum (`stnls::wpsum`, `stnls::wpsum_backward`) with fake
implementations and autograd (see _op.py for how they are called), and the module
`WeightedPatchSum`."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor

from .. import _C
from .._patch_params import normalize, to_core
from ._common import check_tensor, dlpack, on_device, stream, workspace
from ._op import Op


def _core(ps, stride0, pt, dilation, reflect_bounds, deterministic=True):
    return to_core(dict(ps=ps, stride0=stride0, pt=pt, dilation=dilation, reflect_bounds=reflect_bounds),
                   "agg", deterministic)


def _wpsum(vid: Tensor, weights: Tensor, inds: Tensor, ps: int, stride0: int, pt: int, dilation: int,
           reflect_bounds: bool) -> Tensor:
    out = torch.empty_like(vid, memory_format=torch.contiguous_format)
    with on_device(vid):
        _C.wpsum_forward(_core(ps, stride0, pt, dilation, reflect_bounds), dlpack(vid.detach()),
                         dlpack(weights.detach()), dlpack(inds), dlpack(out), stream=stream(vid))
    return out


def _wpsum_fake(vid, weights, inds, ps, stride0, pt, dilation, reflect_bounds):
    return torch.empty_like(vid, memory_format=torch.contiguous_format)


def _wpsum_backward(grad_out: Tensor, vid: Tensor, weights: Tensor, inds: Tensor, ps: int, stride0: int,
                    pt: int, dilation: int, reflect_bounds: bool, deterministic: bool) -> Tuple[Tensor, Tensor]:
    core = _core(ps, stride0, pt, dilation, reflect_bounds, deterministic)
    vid, weights, grad_out = vid.detach(), weights.detach(), grad_out.detach()
    grad_vid = torch.empty_like(vid, memory_format=torch.contiguous_format)
    grad_weights = torch.empty_like(weights, memory_format=torch.contiguous_format)
    with on_device(vid):  # one block (the workspace names its device), dlpack inside
        # Handed over once, for the workspace query and the backward.
        v, w, i = dlpack(vid), dlpack(weights), dlpack(inds)
        ws = workspace(_C.wpsum_backward_workspace_size(core, v, w, i), vid)
        _C.wpsum_backward(core, dlpack(grad_out), v, w, i, dlpack(grad_vid), dlpack(grad_weights), dlpack(ws),
                          stream=stream(vid))
    return grad_vid, grad_weights


def _wpsum_backward_fake(grad_out, vid, weights, inds, ps, stride0, pt, dilation, reflect_bounds, deterministic):
    return (torch.empty_like(vid, memory_format=torch.contiguous_format),
            torch.empty_like(weights, memory_format=torch.contiguous_format))


wpsum_backward_op = Op("stnls::wpsum_backward", _wpsum_backward, _wpsum_backward_fake)


def _setup(ctx, inputs, output):
    vid, weights, inds = inputs[:3]
    ctx.save_for_backward(vid, weights, inds)
    ctx.args = inputs[3:]


def _backward(ctx, grad):
    vid, weights, inds = ctx.saved_tensors
    grad_vid, grad_weights = wpsum_backward_op(grad.contiguous(), vid, weights, inds, *ctx.args, True)
    return (grad_vid if ctx.needs_input_grad[0] else None,
            grad_weights if ctx.needs_input_grad[1] else None) + (None,) * 6


wpsum_op = Op("stnls::wpsum", _wpsum, _wpsum_fake, _setup, _backward)


def wpsum(vid, weights, inds, p):
    for x, name in ((vid, "vid"), (weights, "weights"), (inds, "inds")):
        check_tensor(x, name)
    return wpsum_op(vid, weights, inds, p["ps"], p["stride0"], p["pt"], p["dilation"], p["reflect_bounds"])


def wpsum_backward(grad_out, vid, weights, inds, p, deterministic=True):
    return wpsum_backward_op(grad_out.contiguous(), vid, weights, inds, p["ps"], p["stride0"], p["pt"],
                             p["dilation"], p["reflect_bounds"], deterministic)


class WeightedPatchSum(torch.nn.Module):
    """(vid, weights, inds) -> vid-shaped weighted sum of the neighbours' patches.

    Every parameter is an attribute (wpsum.ps, ...) that each call reads and checks, as the
    2023 module's did."""

    def __init__(self, ps=1, stride0=1, pt=1, dilation=1, reflect_bounds=True):
        super().__init__()
        for name, value in normalize(ps, stride0, pt, dilation, reflect_bounds).items():
            setattr(self, name, value)

    @property
    def params(self) -> dict:
        """The parameters as the next call will use them, checked."""
        return normalize(self.ps, self.stride0, self.pt, self.dilation, self.reflect_bounds)

    def forward(self, vid, weights, inds):
        return wpsum(vid, weights, inds, self.params)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params.items())
