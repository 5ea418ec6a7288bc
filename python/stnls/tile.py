"""Patches (SPEC.md, "Patches"): `unfold`/`fold` on the query grid and `unfold_k`/`fold_k`
at a search's neighbour locations. Each fold is the adjoint of its unfold, so it is also
the unfold's backward (`unfold_backward = fold`, and so on) for array users.

Torch tensors get autograd; NumPy (or other DLPack) arrays get arrays of their library.

    unfold(vid (B,T,C,H,W), ps, stride0)        -> (B, Q, pt, C, ps, ps)
    unfold(vid (B,HD,T,C,H,W), ps, stride0)     -> (B, HD, Q, pt, C, ps, ps)
    fold(patches, vid_shape, stride0)           -> vid_shape
    unfold_k(vid, inds (B,HD,Q,K,3), ps)        -> (B, HD, Q, K, pt, C/HD, ps, ps)
    fold_k(patches, inds, vid_shape)            -> vid_shape
"""
from __future__ import annotations

from . import _array
from ._dispatch import is_torch
from ._patch_params import normalize, to_core, unfold_k_shape, unfold_shape, vid_shape_of


def _patch_sizes(patches, per_neighbour):
    """(ps, pt) read off a patches array."""
    shape = tuple(patches.shape)
    want = 8 if per_neighbour else (6, 7)
    if (per_neighbour and len(shape) != 8) or (not per_neighbour and len(shape) not in want):
        raise ValueError(f"patches: expected {'8' if per_neighbour else '6 or 7'} dimensions, "
                         f"got shape {shape}")
    if shape[-1] != shape[-2]:
        raise ValueError(f"patches: expected square patches (..., ps, ps), got shape {shape}")
    return shape[-1], shape[-4]


def unfold(vid, ps, stride0=1, pt=1, dilation=1, reflect_bounds=True):
    p = normalize(ps, stride0, pt, dilation, reflect_bounds)
    if is_torch(vid):
        from .torch import tile as t

        return t.unfold(vid, p)
    return _array.unfold(vid, unfold_shape(vid_shape_of(vid.shape, "vid"), p), to_core(p))


def fold(patches, vid_shape, stride0=1, dilation=1, reflect_bounds=True):
    ps, pt = _patch_sizes(patches, False)
    p = normalize(ps, stride0, pt, dilation, reflect_bounds)
    vid_shape = vid_shape_of(vid_shape)
    if is_torch(patches):
        from .torch import tile as t

        return t.fold(patches, vid_shape, p)
    return _array.fold(patches, vid_shape, to_core(p))


def unfold_k(vid, inds, ps, pt=1, dilation=1, reflect_bounds=True):
    p = normalize(ps, 1, pt, dilation, reflect_bounds)
    if is_torch(vid):
        from .torch import tile as t

        return t.unfold_k(vid, inds, p)
    shape = unfold_k_shape(vid_shape_of(vid.shape, "vid"), tuple(inds.shape), p)
    return _array.unfold_k(vid, inds, shape, to_core(p))


def fold_k(patches, inds, vid_shape, dilation=1, reflect_bounds=True, deterministic=True):
    ps, pt = _patch_sizes(patches, True)
    p = normalize(ps, 1, pt, dilation, reflect_bounds)
    vid_shape = vid_shape_of(vid_shape)
    if is_torch(patches):
        from .torch import tile as t

        return t.fold_k(patches, inds, vid_shape, p, deterministic)
    return _array.fold_k(patches, inds, vid_shape, to_core(p, deterministic=deterministic))


# Explicit backward functions for array users: each op's backward is its adjoint.
def unfold_backward(grad_patches, vid_shape, stride0=1, dilation=1, reflect_bounds=True):
    """Gradient w.r.t. vid of unfold: fold of the patch gradients."""
    return fold(grad_patches, vid_shape, stride0, dilation, reflect_bounds)


def fold_backward(grad_vid, ps, stride0=1, pt=1, dilation=1, reflect_bounds=True):
    """Gradient w.r.t. patches of fold: unfold of the video gradient."""
    return unfold(grad_vid, ps, stride0, pt, dilation, reflect_bounds)


def unfold_k_backward(grad_patches, inds, vid_shape, dilation=1, reflect_bounds=True):
    """Gradient w.r.t. vid of unfold_k: fold_k of the patch gradients."""
    return fold_k(grad_patches, inds, vid_shape, dilation, reflect_bounds)


def fold_k_backward(grad_vid, inds, ps, pt=1, dilation=1, reflect_bounds=True):
    """Gradient w.r.t. patches of fold_k: unfold_k of the video gradient."""
    return unfold_k(grad_vid, inds, ps, pt, dilation, reflect_bounds)


__all__ = ["unfold", "fold", "unfold_k", "fold_k", "unfold_backward", "fold_backward",
           "unfold_k_backward", "fold_k_backward"]
