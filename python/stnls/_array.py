"""Array adapter: runs the core on NumPy arrays or any array library that speaks DLPack
(CuPy, JAX, ...). Outputs are allocated through the inputs' own array namespace
(array-api-compat), so NumPy in gives NumPy out. No autograd: the backward is explicit."""
from __future__ import annotations

import array_api_compat

from . import _C
from ._params import to_core


def _namespace(x, name):
    try:
        return array_api_compat.array_namespace(x)
    except TypeError:
        raise TypeError(f"{name}: expected an array supporting the array API and DLPack, "
                        f"got {type(x).__name__}") from None


def _stream(xp, x):
    """The CUDA stream to run on for CUDA arrays (CuPy: its current stream)."""
    if array_api_compat.is_cupy_namespace(xp):
        return xp.cuda.get_current_stream().ptr or None
    return None


def _as_flow(xp, flow, vid0, name):
    # The core wants flows in the videos' dtype; a float flow of the other precision is cast.
    if flow is None:
        return None
    if getattr(flow, "dtype", None) != vid0.dtype and xp.isdtype(flow.dtype, "real floating") \
            and xp.isdtype(vid0.dtype, "real floating"):
        flow = xp.astype(flow, vid0.dtype)
    return flow


def _check_ndim(x, name):
    if not hasattr(x, "shape"):
        raise TypeError(f"{name}: expected an array, got {type(x).__name__}")


def _empty(x, shape, dtype=None):
    """An uninitialised array of the library, device (and by default dtype) of x."""
    xp = _namespace(x, "vid")
    return xp.empty(tuple(shape), dtype=x.dtype if dtype is None else dtype,
                    device=array_api_compat.device(x))


def _workspace(x, nbytes):
    return _empty(x, (nbytes,), _namespace(x, "vid").uint8) if nbytes else None


def search_forward(vid0, vid1, fflow, bflow, p: dict):
    _check_ndim(vid0, "vid0")
    _check_ndim(vid1, "vid1")
    xp = _namespace(vid0, "vid0")
    params = to_core(p)
    fflow = _as_flow(xp, fflow, vid0, "fflow")
    bflow = _as_flow(xp, bflow, vid0, "bflow")
    sizes = _C.search_shape(params, vid0, vid1)
    shape = (sizes["B"], sizes["HD"], sizes["Q"], sizes["K"])
    dev = array_api_compat.device(vid0)
    dists = xp.empty(shape, dtype=vid0.dtype, device=dev)
    inds = xp.empty(shape + (3,), dtype=xp.int32, device=dev)
    workspace = _workspace(vid0, sizes["workspace"])
    _C.search_forward(params, vid0, vid1, fflow, bflow, dists, inds, workspace, stream=_stream(xp, vid0))
    return dists, inds


def search_backward(grad_dists, inds, vid0, vid1, p: dict):
    _check_ndim(vid0, "vid0")
    _check_ndim(vid1, "vid1")
    xp = _namespace(vid0, "vid0")
    params = to_core(p)
    dev = array_api_compat.device(vid0)
    grad0 = xp.empty(vid0.shape, dtype=vid0.dtype, device=dev)
    grad1 = xp.empty(vid1.shape, dtype=vid1.dtype, device=dev)
    nbytes = _C.search_backward_workspace_size(params, vid0, vid1, inds)
    workspace = xp.empty((nbytes,), dtype=xp.uint8, device=dev) if nbytes else None
    _C.search_backward(params, grad_dists, inds, vid0, vid1, grad0, grad1, workspace,
                       stream=_stream(xp, vid0))
    return grad0, grad1


# --- patches and aggregation (stnls.tile, stnls.agg) --------------------------------------

def unfold(vid, shape, params):
    _check_ndim(vid, "vid")
    out = _empty(vid, shape)
    _C.unfold(params, vid, out, stream=_stream(_namespace(vid, "vid"), vid))
    return out


def fold(patches, vid_shape, params):
    _check_ndim(patches, "patches")
    out = _empty(patches, vid_shape)
    _C.fold(params, patches, out, stream=_stream(_namespace(patches, "patches"), patches))
    return out


def unfold_k(vid, inds, shape, params):
    _check_ndim(vid, "vid")
    out = _empty(vid, shape)
    _C.unfold_k(params, vid, inds, out, stream=_stream(_namespace(vid, "vid"), vid))
    return out


def fold_k(patches, inds, vid_shape, params):
    _check_ndim(patches, "patches")
    out = _empty(patches, vid_shape)
    ws = _workspace(patches, _C.fold_k_workspace_size(params, patches, inds, out))
    _C.fold_k(params, patches, inds, out, ws, stream=_stream(_namespace(patches, "patches"), patches))
    return out


def wpsum_forward(vid, weights, inds, params):
    _check_ndim(vid, "vid")
    out = _empty(vid, vid.shape)
    _C.wpsum_forward(params, vid, weights, inds, out, stream=_stream(_namespace(vid, "vid"), vid))
    return out


def wpsum_backward(grad_out, vid, weights, inds, params):
    _check_ndim(vid, "vid")
    _check_ndim(weights, "weights")
    grad_vid = _empty(vid, vid.shape)
    grad_weights = _empty(vid, weights.shape)
    ws = _workspace(vid, _C.wpsum_backward_workspace_size(params, vid, weights, inds))
    _C.wpsum_backward(params, grad_out, vid, weights, inds, grad_vid, grad_weights, ws,
                      stream=_stream(_namespace(vid, "vid"), vid))
    return grad_vid, grad_weights
