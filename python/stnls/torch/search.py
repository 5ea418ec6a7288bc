"""Torch adapter of the non-local search: the ops `stnls::search_forward` and
`stnls::search_backward` (with fake implementations and autograd; see _op.py for how they are
called) and the module `NonLocalSearch` of the 2023 API."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .. import _C
from .._params import core_of, normalize, output_sizes, packed_attrs, unpack
from ._common import check_tensor as _check_tensor, dlpack as _dlpack, on_device, own as _own, \
    stream as _stream, workspace as _workspace
from ._op import Op


def _flow(flow: Optional[Tensor], vid0: Tensor) -> Optional[Tensor]:
    # The core wants flows in the videos' dtype; a float flow of the other precision is cast.
    if flow is not None and isinstance(flow, Tensor) and flow.is_floating_point() \
            and vid0.is_floating_point() and flow.dtype != vid0.dtype:
        return flow.to(vid0.dtype)
    return flow


def _search_forward(vid0: Tensor, vid1: Tensor, fflow: Optional[Tensor], bflow: Optional[Tensor],
                    ints: List[int], bools: List[bool], dist_type: str) -> Tuple[Tensor, Tensor]:
    """dists (B,HD,Q,K), inds (B,HD,Q,K,3) int32; see stnls.search.nls."""
    params = core_of(tuple(ints), tuple(bools), dist_type)
    # One block: the allocations inside name their device; _dlpack checks the device as
    # __dlpack__ would, so it runs inside too, where vid0's device is the current one.
    with on_device(vid0):
        here = vid0.get_device()
        # The videos are handed over once, for the shape query and the search.
        v0, v1 = _dlpack(vid0, here), _dlpack(vid1, here)
        fflow, bflow = _dlpack(fflow, here), _dlpack(bflow, here)
        sizes = _C.search_shape(params, v0, v1)  # with the workspace's size
        shape = (sizes["B"], sizes["HD"], sizes["Q"], sizes["K"])
        dists = vid0.new_empty(shape)
        inds = vid0.new_empty(shape + (3,), dtype=torch.int32)
        # Scratch comes from torch's caching allocator, on the caller's stream.
        workspace = _workspace(sizes["workspace"], vid0)
        _C.search_forward(params, v0, v1, fflow, bflow, _own(dists), _own(inds), _own(workspace), _stream(vid0))
    return dists, inds


def _search_forward_fake(vid0, vid1, fflow, bflow, ints, bools, dist_type):
    shape = output_sizes(tuple(vid0.shape), unpack(ints, bools, dist_type))
    return (vid0.new_empty(shape), vid0.new_empty(shape + (3,), dtype=torch.int32))


def _search_backward(grad_dists: Tensor, inds: Tensor, vid0: Tensor, vid1: Tensor, ints: List[int],
                     bools: List[bool], dist_type: str) -> Tuple[Tensor, Tensor]:
    """(grad_vid0, grad_vid1) of sum(grad_dists * dists)."""
    params = core_of(tuple(ints), tuple(bools), dist_type)
    grad0 = torch.empty_like(vid0, memory_format=torch.contiguous_format)
    grad1 = torch.empty_like(vid1, memory_format=torch.contiguous_format)
    with on_device(vid0):  # one block (the workspace names its device), _dlpack inside
        here = vid0.get_device()
        # Handed over once, for the workspace query and the backward.
        i, v0, v1 = _dlpack(inds, here), _dlpack(vid0, here), _dlpack(vid1, here)
        nbytes = _C.search_backward_workspace_size(params, v0, v1, i)
        # Scratch comes from torch's caching allocator, on the caller's stream.
        workspace = _workspace(nbytes, vid0)
        _C.search_backward(params, _dlpack(grad_dists, here), i, v0, v1, _own(grad0), _own(grad1), _own(workspace),
                           _stream(vid0))
    return grad0, grad1


def _search_backward_fake(grad_dists, inds, vid0, vid1, ints, bools, dist_type):
    return torch.empty_like(vid0), torch.empty_like(vid1)


search_backward = Op("stnls::search_backward", _search_backward, _search_backward_fake)


def _setup_context(ctx, inputs, output):
    vid0, vid1, _, _, ints, bools, dist_type = inputs
    ctx.save_for_backward(vid0, vid1, output[1])
    ctx.params = (ints, bools, dist_type)
    ctx.mark_non_differentiable(output[1])
    # inds gets no gradient: no zeros are made for it (grad_dists may be None too then).
    ctx.set_materialize_grads(False)


def _backward(ctx, grad_dists, grad_inds):
    if grad_dists is None:
        return (None,) * 7
    vid0, vid1, inds = ctx.saved_tensors
    ints, bools, dist_type = ctx.params
    grad0, grad1 = search_backward(grad_dists.contiguous(), inds, vid0, vid1, ints, bools,
                                   dist_type)
    return (grad0 if ctx.needs_input_grad[0] else None,
            grad1 if ctx.needs_input_grad[1] else None, None, None, None, None, None)


search_forward = Op("stnls::search_forward", _search_forward, _search_forward_fake, _setup_context, _backward)


def search_torch(vid0, vid1, fflow, bflow, ints: tuple, bools: tuple, dist_type: str):
    """Forward with autograd for torch tensors (checked parameters, as _params.packed gives)."""
    for x, name in ((vid0, "vid0"), (vid1, "vid1")):
        _check_tensor(x, name)
    for x, name in ((fflow, "fflow"), (bflow, "bflow")):
        if x is not None:
            _check_tensor(x, name)
    return search_forward(vid0, vid1, _flow(fflow, vid0), _flow(bflow, vid0), ints, bools, dist_type)


def search_backward_torch(grad_dists, inds, vid0, vid1, ints: tuple, bools: tuple, dist_type: str):
    return search_backward(grad_dists.contiguous(), inds, vid0.detach(), vid1.detach(), ints,
                           bools, dist_type)


class NonLocalSearch(torch.nn.Module):
    """Top-k space-time non-local search as a module (the 2023 API).

    search = NonLocalSearch(ws, wt, ps, k, nheads)
    dists, inds = search(vid0, vid1, fflow, bflow)   # (B,HD,Q,K), (B,HD,Q,K,3)

    Every parameter is an attribute (search.k, search.ws, ...) that each call reads, as the
    2023 module's did: `search.k = 5` changes the next search, checked as at construction.
    deterministic=False lets the CUDA backward scatter with atomics: no workspace, faster on
    small calls, gradients that vary in the last bits from run to run.
    """

    def __init__(self, ws, wt, ps, k, nheads=1, dist_type="prod", stride0=4, stride1=1,
                 dilation=1, pt=1, reflect_bounds=True, full_ws=True, anchor_self=False,
                 remove_self=False, use_adj=False, off_H0=0, off_W0=0, off_H1=0, off_W1=0,
                 deterministic=True, **tuning):
        super().__init__()
        p = normalize(ws, wt, ps, k, nheads=nheads, dist_type=dist_type, stride0=stride0,
                      stride1=stride1, dilation=dilation, pt=pt, reflect_bounds=reflect_bounds,
                      full_ws=full_ws, anchor_self=anchor_self, remove_self=remove_self,
                      use_adj=use_adj, off_H0=off_H0, off_W0=off_W0, off_H1=off_H1, off_W1=off_W1,
                      deterministic=deterministic, **tuning)
        for name, value in p.items():
            setattr(self, name, value)

    @property
    def params(self) -> dict:
        """The parameters as the next call will use them (checked then)."""
        return unpack(*packed_attrs(self))

    def forward(self, vid0, vid1, fflow=None, bflow=None, batchsize=-1):
        # batchsize is kept for compatibility: the fused search needs no per-batch memory.
        return search_torch(vid0, vid1, fflow, bflow, *packed_attrs(self))

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.params.items())
