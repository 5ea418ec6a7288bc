"""Aggregation (SPEC.md, "Aggregation"): the weighted patch sum of a search's neighbours,
`wpsum(vid, weights, inds)` -> vid-shaped output, and the module `WeightedPatchSum`.

Per head, out = fold(P) / fold(ones) with P_q = sum_k weights[q,k] * unfold_k(vid, inds)[q,k];
pixels no patch covers are 0. With ps=1, stride0=1 it is attention's `A @ V`.
    vid (B,T,C,H,W) or (B,HD,T,C/HD,H,W); weights (B,HD,Q,K); inds (B,HD,Q,K,3) int32.
Torch tensors get autograd (to vid and weights); arrays use `wpsum_backward`.
"""
from __future__ import annotations

from . import _array
from ._dispatch import is_torch
from ._patch_params import normalize, to_core


def wpsum(vid, weights, inds, ps=1, stride0=1, pt=1, dilation=1, reflect_bounds=True):
    p = normalize(ps, stride0, pt, dilation, reflect_bounds)
    if is_torch(vid):
        from .torch import agg as t

        return t.wpsum(vid, weights, inds, p)
    return _array.wpsum_forward(vid, weights, inds, to_core(p, "agg"))


def wpsum_backward(grad_out, vid, weights, inds, ps=1, stride0=1, pt=1, dilation=1,
                   reflect_bounds=True, deterministic=True):
    """(grad_vid, grad_weights) of sum(grad_out * wpsum(vid, weights, inds))."""
    p = normalize(ps, stride0, pt, dilation, reflect_bounds)
    if is_torch(vid):
        from .torch import agg as t

        return t.wpsum_backward(grad_out, vid, weights, inds, p, deterministic)
    return _array.wpsum_backward(grad_out, vid, weights, inds, to_core(p, "agg", deterministic))


def __getattr__(name):
    # The torch module class loads torch only when asked for.
    if name == "WeightedPatchSum":
        from .torch.agg import WeightedPatchSum

        return WeightedPatchSum
    raise AttributeError(f"module 'stnls.agg' has no attribute {name!r}")


__all__ = ["wpsum", "wpsum_backward", "WeightedPatchSum"]
