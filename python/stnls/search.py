"""Non-local search (SPEC.md, "Non-local search"): `nls`, `nls_backward` and the torch
module `NonLocalSearch`.

`nls` takes NumPy (or other DLPack) arrays and returns arrays of the same library, or
torch tensors and returns tensors with autograd. Importing this module does not import
torch; `NonLocalSearch` loads the torch adapter on first use.
"""
from __future__ import annotations

from . import _array
from ._dispatch import is_torch
from ._params import packed, unpack


def nls(vid0, vid1, fflow, bflow, ws, wt, ps, k, nheads=1, dist_type="prod", stride0=4,
        stride1=1, dilation=1, pt=1, reflect_bounds=True, full_ws=True, anchor_self=False,
        remove_self=False, use_adj=False, off_H0=0, off_W0=0, off_H1=0, off_W1=0,
        batchsize=-1, deterministic=True, **tuning):
    """Top-k space-time non-local search.

    vid0, vid1: (B, T, C, H, W) or (B, HD, T, C/HD, H, W), float32/float64.
    fflow, bflow: (B, T, 2, H, W) (channel 0 = x/W, 1 = y/H) or None for zero flow.
    Returns dists (B, HD, Q, K) and inds (B, HD, Q, K, 3) int32 (t, h, w), with
    Q = T * ((H-1)//stride0+1) * ((W-1)//stride0+1) and K = k (k <= 0: all candidates).
    `batchsize` is accepted for compatibility: the fused search needs no memory per query
    batch, so it changes nothing. The 2023 tuning knobs (rbwd, nbwd, exact,
    queries_per_thread, neigh_per_thread, channel_groups) are accepted and ignored.
    Unlike the 2023 `nls()`, anchor_self defaults to False (as NonLocalSearch).
    deterministic only concerns the backward through torch autograd: False lets the CUDA
    backward scatter with float atomics (no workspace, results vary in the last bits); True
    (the default) is bitwise repeatable (README, Determinism).
    """
    # Named one by one: torch.compile (2.11) cannot trace locals().
    args = packed((ws, wt, ps, k, nheads, stride0, stride1, dilation, pt, off_H0, off_W0, off_H1, off_W1),
                  (reflect_bounds, full_ws, anchor_self, remove_self, use_adj, deterministic), dist_type,
                  batchsize, tuning)
    if is_torch(vid0):
        from .torch import search as torch_search

        return torch_search.search_torch(vid0, vid1, fflow, bflow, *args)
    return _array.search_forward(vid0, vid1, fflow, bflow, unpack(*args))


def nls_backward(grad_dists, inds, vid0, vid1, ws, wt, ps, k, nheads=1, dist_type="prod",
                 stride0=4, stride1=1, dilation=1, pt=1, reflect_bounds=True, full_ws=True,
                 anchor_self=False, remove_self=False, use_adj=False, off_H0=0, off_W0=0,
                 off_H1=0, off_W1=0, batchsize=-1, deterministic=True, **tuning):
    """Gradients (grad_vid0, grad_vid1) of sum(grad_dists * dists) for the search that
    produced `inds`, with the same parameters as `nls` (ws, wt, k only describe it).
    deterministic=False: on CUDA, an atomic scatter without workspace (faster on small
    calls; the float sums vary in the last bits from run to run). The CPU is always
    deterministic."""
    # Named one by one: torch.compile (2.11) cannot trace locals().
    args = packed((ws, wt, ps, k, nheads, stride0, stride1, dilation, pt, off_H0, off_W0, off_H1, off_W1),
                  (reflect_bounds, full_ws, anchor_self, remove_self, use_adj, deterministic), dist_type,
                  batchsize, tuning)
    if is_torch(vid0):
        from .torch import search as torch_search

        return torch_search.search_backward_torch(grad_dists, inds, vid0, vid1, *args)
    return _array.search_backward(grad_dists, inds, vid0, vid1, unpack(*args))


def __getattr__(name):
    # The torch module class loads torch only when asked for.
    if name == "NonLocalSearch":
        from .torch.search import NonLocalSearch

        return NonLocalSearch
    raise AttributeError(f"module 'stnls.search' has no attribute {name!r}")


__all__ = ["nls", "nls_backward", "NonLocalSearch"]
