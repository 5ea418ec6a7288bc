"""Torch ops of the patch functions (`stnls::unfold`, `fold`, `unfold_k`, `fold_k`) with
fake implementations and autograd (each op's backward is its adjoint; see _op.py for how the
ops are called)."""
from __future__ import annotations

from typing import List

import torch
from torch import Tensor

from .. import _C
from .._patch_params import to_core, unfold_k_shape, unfold_shape
from ._common import check_tensor, dlpack, on_device, stream, workspace
from ._op import Op


def _p(ps, stride0, pt, dilation, reflect_bounds):
    return dict(ps=ps, stride0=stride0, pt=pt, dilation=dilation, reflect_bounds=reflect_bounds)


def _unfold(vid: Tensor, ps: int, stride0: int, pt: int, dilation: int, reflect_bounds: bool) -> Tensor:
    p = _p(ps, stride0, pt, dilation, reflect_bounds)
    out = vid.new_empty(unfold_shape(tuple(vid.shape), p))
    with on_device(vid):
        _C.unfold(to_core(p), dlpack(vid.detach()), dlpack(out), stream=stream(vid))
    return out


def _unfold_fake(vid, ps, stride0, pt, dilation, reflect_bounds):
    return vid.new_empty(unfold_shape(tuple(vid.shape), _p(ps, stride0, pt, dilation, reflect_bounds)))


def _fold(patches: Tensor, vid_shape: List[int], stride0: int, dilation: int, reflect_bounds: bool) -> Tensor:
    p = _p(patches.shape[-1], stride0, patches.shape[-4], dilation, reflect_bounds)
    out = patches.new_empty(tuple(vid_shape))
    with on_device(patches):
        _C.fold(to_core(p), dlpack(patches.detach()), dlpack(out), stream=stream(patches))
    return out


def _fold_fake(patches, vid_shape, stride0, dilation, reflect_bounds):
    return patches.new_empty(tuple(vid_shape))


def _unfold_k(vid: Tensor, inds: Tensor, ps: int, pt: int, dilation: int, reflect_bounds: bool) -> Tensor:
    p = _p(ps, 1, pt, dilation, reflect_bounds)
    out = vid.new_empty(unfold_k_shape(tuple(vid.shape), tuple(inds.shape), p))
    with on_device(vid):
        _C.unfold_k(to_core(p), dlpack(vid.detach()), dlpack(inds), dlpack(out), stream=stream(vid))
    return out


def _unfold_k_fake(vid, inds, ps, pt, dilation, reflect_bounds):
    p = _p(ps, 1, pt, dilation, reflect_bounds)
    return vid.new_empty(unfold_k_shape(tuple(vid.shape), tuple(inds.shape), p))


def _fold_k(patches: Tensor, inds: Tensor, vid_shape: List[int], dilation: int, reflect_bounds: bool,
             deterministic: bool) -> Tensor:
    p = _p(patches.shape[-1], 1, patches.shape[-4], dilation, reflect_bounds)
    core = to_core(p, deterministic=deterministic)
    out = patches.new_empty(tuple(vid_shape))
    patches = patches.detach()
    with on_device(patches):  # one block (the workspace names its device), dlpack inside
        # Handed over once, for the workspace query and the fold.
        a, i, o = dlpack(patches), dlpack(inds), dlpack(out)
        ws = workspace(_C.fold_k_workspace_size(core, a, i, o), patches)
        _C.fold_k(core, a, i, o, dlpack(ws), stream=stream(patches))
    return out


def _fold_k_fake(patches, inds, vid_shape, dilation, reflect_bounds, deterministic):
    return patches.new_empty(tuple(vid_shape))


# --- autograd: the backward of each op is its adjoint ------------------------------------

def _setup_unfold(ctx, inputs, output):
    vid, ps, stride0, pt, dilation, reflect_bounds = inputs
    ctx.args = (list(vid.shape), stride0, dilation, reflect_bounds)


def _bwd_unfold(ctx, grad):
    vid_shape, stride0, dilation, reflect_bounds = ctx.args
    return fold_op(grad.contiguous(), vid_shape, stride0, dilation, reflect_bounds), None, None, None, None, None


def _setup_fold(ctx, inputs, output):
    patches, vid_shape, stride0, dilation, reflect_bounds = inputs
    ctx.args = (patches.shape[-1], stride0, patches.shape[-4], dilation, reflect_bounds)


def _bwd_fold(ctx, grad):
    return unfold_op(grad.contiguous(), *ctx.args), None, None, None, None


def _setup_unfold_k(ctx, inputs, output):
    vid, inds, ps, pt, dilation, reflect_bounds = inputs
    ctx.save_for_backward(inds)
    ctx.args = (list(vid.shape), dilation, reflect_bounds)


def _bwd_unfold_k(ctx, grad):
    (inds,) = ctx.saved_tensors
    vid_shape, dilation, reflect_bounds = ctx.args
    return fold_k_op(grad.contiguous(), inds, vid_shape, dilation, reflect_bounds, True), None, None, None, None, None


def _setup_fold_k(ctx, inputs, output):
    patches, inds, vid_shape, dilation, reflect_bounds, deterministic = inputs
    ctx.save_for_backward(inds)
    ctx.args = (patches.shape[-1], patches.shape[-4], dilation, reflect_bounds)


def _bwd_fold_k(ctx, grad):
    (inds,) = ctx.saved_tensors
    return unfold_k_op(grad.contiguous(), inds, *ctx.args), None, None, None, None, None


unfold_op = Op("stnls::unfold", _unfold, _unfold_fake, _setup_unfold, _bwd_unfold)
fold_op = Op("stnls::fold", _fold, _fold_fake, _setup_fold, _bwd_fold)
unfold_k_op = Op("stnls::unfold_k", _unfold_k, _unfold_k_fake, _setup_unfold_k, _bwd_unfold_k)
fold_k_op = Op("stnls::fold_k", _fold_k, _fold_k_fake, _setup_fold_k, _bwd_fold_k)


# --- entry points used by stnls.tile -------------------------------------------------------

def unfold(vid, p):
    check_tensor(vid, "vid")
    return unfold_op(vid, p["ps"], p["stride0"], p["pt"], p["dilation"], p["reflect_bounds"])


def fold(patches, vid_shape, p):
    check_tensor(patches, "patches")
    return fold_op(patches, list(vid_shape), p["stride0"], p["dilation"], p["reflect_bounds"])


def unfold_k(vid, inds, p):
    check_tensor(vid, "vid")
    check_tensor(inds, "inds")
    return unfold_k_op(vid, inds, p["ps"], p["pt"], p["dilation"], p["reflect_bounds"])


def fold_k(patches, inds, vid_shape, p, deterministic=True):
    check_tensor(patches, "patches")
    check_tensor(inds, "inds")
    return fold_k_op(patches, inds, list(vid_shape), p["dilation"], p["reflect_bounds"], deterministic)
