"""Brute-force reference of SPEC.md "Non-local search" (integer mode), used by the tests.

Written from the spec alone, in float64, favouring clarity over speed (keep videos tiny).
It shares no code with the library, so an error in the library's geometry cannot hide here.

- `nls(...)`: forward with the library's signature; NumPy in, NumPy out
  (dists float64 (B,HD,Q,K), inds int32 (B,HD,Q,K,3)).
- `dists_at(...)`: the distances of given index triples, as a differentiable torch float64
  expression; autograd of `sum(grad * dists_at(...))` is the reference backward (rule 8).
- The geometry pieces (`reflect`, `frame_order`, `centres`, `window_axis`, ...) are exposed
  so that tests can check them against hand-computed values.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


# ----------------------------------------------------------------------------- parameters
@dataclass
class Params:
    ws: int
    wt: int
    ps: int
    k: int
    nheads: int = 1
    dist_type: str = "prod"
    stride0: int = 4
    stride1: int = 1
    dilation: int = 1
    pt: int = 1
    reflect_bounds: bool = True
    full_ws: bool = True
    anchor_self: bool = False
    remove_self: bool = False
    use_adj: bool = False
    off_H0: int = 0
    off_W0: int = 0
    off_H1: int = 0
    off_W1: int = 0


# ----------------------------------------------------------------------------- geometry
def reflect(x, L):
    """Conventions: one reflection; the result may still be outside [0, L)."""
    if x < 0:
        return -x
    if x >= L:
        return 2 * (L - 1) - x
    return x


def read_coord(x, L, reflect_bounds):
    """The coordinate a patch actually reads (rule 5), or None when the value is 0."""
    if reflect_bounds:
        x = reflect(x, L)
    return x if 0 <= x < L else None


def query_grid(T, H, W, stride0):
    """Rule 1: query positions (t, h, w) in query order q = t*nH*nW + i*nW + j."""
    nH = (H - 1) // stride0 + 1
    nW = (W - 1) // stride0 + 1
    return [(t, i * stride0, j * stride0) for t in range(T) for i in range(nH) for j in range(nW)]


def frame_order(t, T, wt):
    """Rule 2: frames searched for a query in frame t, in canonical order."""
    st = min(2 * wt + 1, T)
    t_lo = min(max(t - wt, 0), T - st)
    t_hi = t_lo + st - 1
    return list(range(t, t_hi + 1)) + list(range(t - 1, t_lo - 1, -1))


def _finite_or_zero(v):
    v = float(v)
    return v if math.isfinite(v) else 0.0


def _flow_step(centre, flow, b, u, H, W):
    """Rule 3: one step of the chain, flow read at the integer centre of frame u."""
    ch, cw = centre
    if flow is None:
        dx = dy = 0.0
    else:
        dx = _finite_or_zero(flow[b, u, 0, ch, cw])  # channel 0 moves along W
        dy = _finite_or_zero(flow[b, u, 1, ch, cw])  # channel 1 moves along H
    nh = math.floor(ch + dy + 0.5)
    nw = math.floor(cw + dx + 0.5)
    return (min(max(nh, 0), H - 1), min(max(nw, 0), W - 1))


def centres(fflow, bflow, b, t, h, w, frames, H, W):
    """Rule 3: the search centre {frame: (h, w)} for every searched frame."""
    out = {t: (h, w)}
    c = (h, w)
    for u in range(t, max(frames)):
        c = _flow_step(c, fflow, b, u, H, W)
        out[u + 1] = c
    c = (h, w)
    for u in range(t, min(frames), -1):
        c = _flow_step(c, bflow, b, u, H, W)
        out[u - 1] = c
    return out


def window_axis(c, L, s, ws, full_ws):
    """Rule 4: candidate coordinates along one axis (some may lie outside [0, L))."""
    if ws == -1:
        return [s * a for a in range(-(-L // s))]
    half = ws // 2
    if full_ws:
        lo = -(c // s)
        hi = (L - 1 - c) // s - (ws - 1)
        a0 = lo if hi < lo else min(max(-half, lo), hi)
    else:
        a0 = -half
    return [c + s * (a0 + a) for a in range(ws)]


def num_slots(p: Params, T, H, W):
    """Window slots per query (rule 6), i.e. the K of k <= 0."""
    st = min(2 * p.wt + 1, T)
    if p.ws == -1:
        return st * (-(-H // p.stride1)) * (-(-W // p.stride1))
    return st * p.ws * p.ws


def candidates(p: Params, fflow, bflow, b, t, h, w, T, H, W):
    """Canonical list of window slots: (u, y, x, valid)."""
    frames = frame_order(t, T, p.wt)
    cent = centres(fflow, bflow, b, t, h, w, frames, H, W)
    out = []
    for u in frames:
        ch, cw = cent[u]
        for y in window_axis(ch, H, p.stride1, p.ws, p.full_ws):
            for x in window_axis(cw, W, p.stride1, p.ws, p.full_ws):
                out.append((u, y, x, 0 <= y < H and 0 <= x < W))
    return out


def patch_offsets(p: Params):
    """Rule 5 (and use_adj): the spatial tap offsets dilation*(i - o)."""
    o = 2 * (p.ps // 2) if p.use_adj else p.ps // 2
    return [p.dilation * (i - o) for i in range(p.ps)]


# ----------------------------------------------------------------------------- patches
def as_heads(vid, nheads):
    """(B,T,C,H,W) -> (B,HD,T,C/HD,H,W) view; a 6-d input is returned as is."""
    if vid.ndim == 6:
        if vid.shape[1] != nheads:
            raise ValueError("vid: 6-d input needs shape[1] == nheads")
        return vid
    B, T, C, H, W = vid.shape
    if C % nheads:
        raise ValueError("nheads: must divide C")
    v = vid.reshape(B, T, nheads, C // nheads, H, W)
    return v.permute(0, 2, 1, 3, 4, 5) if hasattr(v, "permute") else v.transpose(0, 2, 1, 3, 4, 5)


def _axis_map(L, shifts, reflect_bounds):
    """For each shift d and position x: the coordinate read for x + d, -1 when it reads 0."""
    m = np.full((len(shifts), L), -1, dtype=np.int64)
    for i, d in enumerate(shifts):
        for x in range(L):
            r = read_coord(x + d, L, reflect_bounds)
            m[i, x] = -1 if r is None else r
    return m


def features(vid6, p: Params, off_h, off_w):
    """Every pixel's patch as one vector: (B,HD,T,H,W,D), D = pt*ps*ps*C/HD.

    Entry order (pk, pi, pj, c). Works on NumPy arrays and torch tensors alike (torch
    indexing keeps autograd, so reflected reads send gradients to the pixel read)."""
    B, HD, T, C, H, W = vid6.shape
    offs = patch_offsets(p)
    tmap = _axis_map(T, list(range(p.pt)), p.reflect_bounds)
    hmap = _axis_map(H, [d - off_h for d in offs], p.reflect_bounds)
    wmap = _axis_map(W, [d - off_w for d in offs], p.reflect_bounds)
    is_torch = hasattr(vid6, "permute")
    taps = []
    for pk in range(p.pt):
        for pi in range(p.ps):
            for pj in range(p.ps):
                ti, hi, wi = tmap[pk], hmap[pi], wmap[pj]
                mask = (ti[:, None, None] >= 0) & (hi[None, :, None] >= 0) & (wi[None, None, :] >= 0)
                it = np.maximum(ti, 0)[:, None, None]
                ih = np.maximum(hi, 0)[None, :, None]
                iw = np.maximum(wi, 0)[None, None, :]
                if is_torch:
                    import torch

                    it, ih, iw = (torch.as_tensor(a, device=vid6.device) for a in (it, ih, iw))
                    mask = torch.as_tensor(mask, device=vid6.device)
                vals = vid6[:, :, it, :, ih, iw]  # (T,H,W,B,HD,C): advanced dims first
                vals = vals * mask[:, :, :, None, None, None]
                taps.append(vals)
    if is_torch:
        import torch

        f = torch.stack(taps, dim=-2)  # (T,H,W,B,HD,ntaps,C)
        f = f.permute(3, 4, 0, 1, 2, 5, 6)
    else:
        f = np.stack(taps, axis=-2).transpose(3, 4, 0, 1, 2, 5, 6)
    return f.reshape(B, HD, T, H, W, -1)


def _dist(a, b, dist_type):
    if dist_type == "prod":
        return (a * b).sum(-1)
    return ((a - b) ** 2).sum(-1)


# ----------------------------------------------------------------------------- search
def nls(vid0, vid1, fflow, bflow, ws, wt, ps, k, nheads=1, **kw):
    """Reference forward. Returns (dists float64 (B,HD,Q,K), inds int32 (B,HD,Q,K,3))."""
    p = Params(ws, wt, ps, k, nheads, **kw)
    if p.anchor_self and p.remove_self:
        raise ValueError("anchor_self: cannot be used with remove_self")
    v0 = as_heads(np.asarray(vid0, dtype=np.float64), nheads)
    v1 = as_heads(np.asarray(vid1, dtype=np.float64), nheads)
    ff = None if fflow is None else np.asarray(fflow, dtype=np.float64)
    bf = None if bflow is None else np.asarray(bflow, dtype=np.float64)
    B, HD, T, _, H, W = v0.shape
    slots = num_slots(p, T, H, W)
    if k > slots:
        raise ValueError("k: larger than the number of candidates")
    K = k if k > 0 else slots
    pad = -np.inf if p.dist_type == "prod" else np.inf
    better_first = (lambda d: -d) if p.dist_type == "prod" else (lambda d: d)

    F0 = features(v0, p, p.off_H0, p.off_W0)
    F1 = features(v1, p, p.off_H1, p.off_W1)
    queries = query_grid(T, H, W, p.stride0)
    dists = np.full((B, HD, len(queries), K), pad)
    inds = np.full((B, HD, len(queries), K, 3), -1, dtype=np.int32)
    for b in range(B):
        for q, (t, h, w) in enumerate(queries):
            cands = [(u, y, x) for (u, y, x, ok) in candidates(p, ff, bf, b, t, h, w, T, H, W) if ok]
            if p.anchor_self or p.remove_self:
                cands = [c for c in cands if c != (t, h, w)]
            locs = np.array(cands, dtype=np.int64).reshape(-1, 3)
            for hd in range(HD):
                d = _dist(F0[b, hd, t, h, w][None], F1[b, hd, locs[:, 0], locs[:, 1], locs[:, 2]], p.dist_type)
                # stable sort: equal distances keep canonical order (rule 6 tie rule)
                order = np.argsort(better_first(d), kind="stable")
                sel_d = list(d[order])
                sel_i = [tuple(locs[j]) for j in order]
                if p.anchor_self:
                    sel_d = [float(_dist(F0[b, hd, t, h, w], F1[b, hd, t, h, w], p.dist_type))] + sel_d
                    sel_i = [(t, h, w)] + sel_i
                n = min(K, len(sel_d))
                dists[b, hd, q, :n] = sel_d[:n]
                inds[b, hd, q, :n] = np.array(sel_i[:n], dtype=np.int32).reshape(n, 3)
    return dists, inds


def dists_at(vid0, vid1, inds, ws, wt, ps, k, nheads=1, **kw):
    """Distances of the given index triples as a torch expression (float64 keeps autograd).

    vid0, vid1: torch tensors (B,T,C,H,W) or 6-d; inds (B,HD,Q,K,3) (torch or NumPy).
    Returns (dists (B,HD,Q,K) with 0 at padded entries, valid mask (B,HD,Q,K))."""
    import torch

    p = Params(ws, wt, ps, k, nheads, **kw)
    v0 = as_heads(vid0, nheads)
    v1 = as_heads(vid1, nheads)
    B, HD, T, _, H, W = v0.shape
    inds = torch.as_tensor(np.asarray(inds.cpu() if hasattr(inds, "cpu") else inds), dtype=torch.int64)
    inds = inds.to(v0.device)
    F0 = features(v0, p, p.off_H0, p.off_W0)
    F1 = features(v1, p, p.off_H1, p.off_W1)
    qs = torch.tensor(query_grid(T, H, W, p.stride0), dtype=torch.int64, device=v0.device)
    bi = torch.arange(B, device=v0.device)[:, None, None, None]
    hi = torch.arange(HD, device=v0.device)[None, :, None, None]
    a = F0[bi[..., 0], hi[..., 0], qs[None, None, :, 0], qs[None, None, :, 1], qs[None, None, :, 2]]
    valid = inds[..., 0] >= 0
    ic = inds.clamp(min=0)
    c = F1[bi, hi, ic[..., 0], ic[..., 1], ic[..., 2]]
    d = _dist(a[:, :, :, None, :], c, p.dist_type)
    return torch.where(valid, d, torch.zeros_like(d)), valid


def grads(grad_dists, inds, vid0, vid1, ws, wt, ps, k, nheads=1, dtype=np.float64, **kw):
    """Reference backward (rule 8): gradients of sum(grad_dists * dists) w.r.t. vid0, vid1,
    padded entries contributing nothing. Computed with torch on the CPU in `dtype` (float64
    for the reference; float32 to estimate float32 rounding error)."""
    import torch

    v0 = torch.tensor(np.asarray(_to_numpy(vid0), dtype=dtype), requires_grad=True)
    v1 = torch.tensor(np.asarray(_to_numpy(vid1), dtype=dtype), requires_grad=True)
    g = torch.tensor(np.asarray(_to_numpy(grad_dists), dtype=dtype))
    d, valid = dists_at(v0, v1, _to_numpy(inds), ws, wt, ps, k, nheads, **kw)
    loss = torch.where(valid, g * d, torch.zeros_like(d)).sum()
    g0, g1 = torch.autograd.grad(loss, [v0, v1], allow_unused=True)
    g0 = torch.zeros_like(v0) if g0 is None else g0
    g1 = torch.zeros_like(v1) if g1 is None else g1
    return g0.numpy(), g1.numpy()


def _to_numpy(x):
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)
