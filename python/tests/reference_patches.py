"""Reference of SPEC.md "Patches" and "Aggregation", used by test_tile.py and test_agg.py.

Written from the spec alone with plain torch indexing (index_select / gather for reads,
index_add / scatter_add for the adjoints), in float64. It shares no code with the library.

Geometry (SPEC "Conventions", search rules 1 and 5):
- the query grid: q = t*nH*nW + i*nW + j sits at (t, i*stride0, j*stride0);
- patch tap (pk, pi, pj) of the patch at (t, h, w) reads (t+pk, h+dil*(pi-ps//2), w+dil*(pj-ps//2));
- a coordinate outside [0, L) is reflected once when reflect_bounds (-x, or 2(L-1)-x); if it
  is still outside (or reflect_bounds is off) the tap reads 0 and receives nothing.

Shapes (torch tensors in, float64 torch tensors out; every function is differentiable):
- unfold(vid (B,T,C,H,W))        -> (B, Q, pt, C, ps, ps)         (a 5-d video is one head)
  unfold(vid (B,HD,T,C,H,W))     -> (B, HD, Q, pt, C, ps, ps)
- fold(patches, vid_shape)       -> vid_shape, the adjoint of unfold
- unfold_k(vid, inds (B,HD,Q,K,3)) -> (B, HD, Q, K, pt, C/HD, ps, ps); a 5-d video's C is
  split into the HD heads of inds; an index triple outside the video (-1 padding) reads 0
- fold_k(patches, inds, vid_shape) -> vid_shape, the adjoint of unfold_k
- wpsum(vid, weights (B,HD,Q,K), inds) -> vid's shape: per head fold(P) / fold(ones) with
  P_q = sum_k weights[q,k] * unfold_k(vid, inds)[q,k]; pixels with count 0 are 0.

The end of the file holds the random test data shared by both test files.
"""
from __future__ import annotations

import torch

F64 = torch.float64


def reflect(x: torch.Tensor, L: int, reflect_bounds: bool):
    """(coordinate clamped into range, mask of taps that really read a pixel)."""
    if reflect_bounds:  # one reflection only: both branches read the original x
        x = torch.where(x < 0, -x, torch.where(x >= L, 2 * (L - 1) - x, x))
    ok = (x >= 0) & (x < L)
    return torch.where(ok, x, torch.zeros_like(x)), ok


def query_grid(T: int, H: int, W: int, stride0: int):
    """(t, h, w) of every query of search rule 1, each a (Q,) int64 tensor."""
    nH, nW = (H - 1) // stride0 + 1, (W - 1) // stride0 + 1
    q = torch.arange(T * nH * nW)
    return q // (nH * nW), (q // nW) % nH * stride0, q % nW * stride0


def _taps(t, h, w, T, H, W, ps, pt, dilation, reflect_bounds):
    """Linear pixel index t*H*W + y*W + x and validity of every tap of the patches at
    (t, h, w) (any leading shape S): both shaped S + (pt, ps, ps)."""
    o = ps // 2
    pk = torch.arange(pt).view(pt, 1, 1)
    off = dilation * (torch.arange(ps) - o)
    t = t[..., None, None, None] + pk
    y = h[..., None, None, None] + off.view(1, ps, 1)
    x = w[..., None, None, None] + off.view(1, 1, ps)
    t, ok_t = reflect(t, T, reflect_bounds)
    y, ok_y = reflect(y, H, reflect_bounds)
    x, ok_x = reflect(x, W, reflect_bounds)
    ok = ok_t & ok_y & ok_x
    lin = (t * H + y) * W + x
    shape = torch.broadcast_shapes(lin.shape, ok.shape)
    return lin.expand(shape), ok.expand(shape)


def _as_heads(vid: torch.Tensor, HD: int):
    """(B, HD, C', T*H*W) float64 view-free copy of a 5-d (C split into HD heads) or 6-d video."""
    vid = torch.as_tensor(vid).to(F64)
    if vid.dim() == 5:
        B, T, C, H, W = vid.shape
        assert C % HD == 0
        vid = vid.reshape(B, T, HD, C // HD, H, W).permute(0, 2, 1, 3, 4, 5)
    B, HD6, T, C, H, W = vid.shape
    assert HD6 == HD
    return vid.permute(0, 1, 3, 2, 4, 5).reshape(B, HD, C, T * H * W)


def _from_heads(flat: torch.Tensor, vid_shape):
    """Inverse of _as_heads: (B, HD, C', T*H*W) -> vid_shape."""
    if len(vid_shape) == 5:
        B, T, C, H, W = vid_shape
        HD = flat.shape[1]
        return flat.reshape(B, HD, C // HD, T, H, W).permute(0, 3, 1, 2, 4, 5).reshape(B, T, C, H, W)
    B, HD, T, C, H, W = vid_shape
    return flat.reshape(B, HD, C, T, H, W).permute(0, 1, 3, 2, 4, 5)


def _dims(vid_shape):
    """(T, H, W) of a 5-d or 6-d video shape."""
    return tuple(vid_shape[-4:-3]) + tuple(vid_shape[-2:])


# ----------------------------------------------------------------------------- unfold / fold
def unfold(vid, ps, stride0=1, pt=1, dilation=1, reflect_bounds=True):
    vid = torch.as_tensor(vid)
    HD = 1 if vid.dim() == 5 else vid.shape[1]
    T, H, W = _dims(vid.shape)
    src = _as_heads(vid, HD)                                   # (B, HD, C, THW)
    lin, ok = _taps(*query_grid(T, H, W, stride0), T, H, W, ps, pt, dilation, reflect_bounds)
    Q = lin.shape[0]
    got = src.index_select(3, lin.reshape(-1)) * ok.reshape(-1).to(F64)
    B, C = src.shape[0], src.shape[2]
    out = got.reshape(B, HD, C, Q, pt, ps, ps).permute(0, 1, 3, 4, 2, 5, 6)  # (B,HD,Q,pt,C,ps,ps)
    return out[:, 0] if vid.dim() == 5 else out


def fold(patches, vid_shape, stride0=1, dilation=1, reflect_bounds=True):
    patches = torch.as_tensor(patches).to(F64)
    vid_shape = tuple(vid_shape)
    if len(vid_shape) == 5:
        patches = patches[:, None]
    B, HD, Q, pt, C, ps, _ = patches.shape
    T, H, W = _dims(vid_shape)
    lin, ok = _taps(*query_grid(T, H, W, stride0), T, H, W, ps, pt, dilation, reflect_bounds)
    src = patches.permute(0, 1, 4, 2, 3, 5, 6).reshape(B, HD, C, -1) * ok.reshape(-1).to(F64)
    out = torch.zeros(B, HD, C, T * H * W, dtype=F64)
    out.index_add_(3, lin.reshape(-1), src)
    return _from_heads(out, vid_shape)


# ----------------------------------------------------------------------------- unfold_k / fold_k
def _neighbour_taps(inds, vid_shape, ps, pt, dilation, reflect_bounds):
    """(lin, ok) shaped (B, HD, Q, K, pt, ps, ps); a triple outside the video reads nothing."""
    inds = torch.as_tensor(inds).to(torch.int64)
    T, H, W = _dims(vid_shape)
    t, h, w = inds[..., 0], inds[..., 1], inds[..., 2]
    inside = (t >= 0) & (t < T) & (h >= 0) & (h < H) & (w >= 0) & (w < W)
    lin, ok = _taps(t, h, w, T, H, W, ps, pt, dilation, reflect_bounds)
    return lin, ok & inside[..., None, None, None]


def unfold_k(vid, inds, ps, pt=1, dilation=1, reflect_bounds=True):
    vid = torch.as_tensor(vid)
    inds = torch.as_tensor(inds)
    B, HD, Q, K, _ = inds.shape
    src = _as_heads(vid, HD)                                   # (B, HD, C, THW)
    C = src.shape[2]
    lin, ok = _neighbour_taps(inds, vid.shape, ps, pt, dilation, reflect_bounds)
    idx = lin.reshape(B, HD, 1, -1).expand(B, HD, C, -1)
    got = src.gather(3, idx) * ok.reshape(B, HD, 1, -1).to(F64)
    got = got.reshape(B, HD, C, Q, K, pt, ps, ps)
    return got.permute(0, 1, 3, 4, 5, 2, 6, 7)                 # (B,HD,Q,K,pt,C,ps,ps)


def fold_k(patches, inds, vid_shape, dilation=1, reflect_bounds=True):
    patches = torch.as_tensor(patches).to(F64)
    inds = torch.as_tensor(inds)
    B, HD, Q, K, pt, C, ps, _ = patches.shape
    vid_shape = tuple(vid_shape)
    T, H, W = _dims(vid_shape)
    lin, ok = _neighbour_taps(inds, vid_shape, ps, pt, dilation, reflect_bounds)
    src = patches.permute(0, 1, 5, 2, 3, 4, 6, 7).reshape(B, HD, C, -1) * ok.reshape(B, HD, 1, -1).to(F64)
    idx = lin.reshape(B, HD, 1, -1).expand(B, HD, C, -1)
    out = torch.zeros(B, HD, C, T * H * W, dtype=F64)
    out.scatter_add_(3, idx, src)
    return _from_heads(out, vid_shape)


# ----------------------------------------------------------------------------- aggregation
def heads_shape(vid_shape, HD):
    """The 6-d per-head shape (B, HD, T, C/HD, H, W) of a 5-d or 6-d video shape."""
    if len(vid_shape) == 6:
        return tuple(vid_shape)
    B, T, C, H, W = vid_shape
    return (B, HD, T, C // HD, H, W)


def to_heads(vid, HD):
    """A 5-d video as its 6-d per-head view (a 6-d one unchanged)."""
    vid = torch.as_tensor(vid)
    if vid.dim() == 6:
        return vid
    B, T, C, H, W = vid.shape
    return vid.reshape(B, T, HD, C // HD, H, W).permute(0, 2, 1, 3, 4, 5)


def from_heads(vid6, ndim):
    """Inverse of to_heads for a result that must have ndim dimensions."""
    if ndim == 6:
        return vid6
    B, HD, T, C, H, W = vid6.shape
    return vid6.permute(0, 2, 1, 3, 4, 5).reshape(B, T, HD * C, H, W)


def wpsum(vid, weights, inds, ps=1, stride0=1, pt=1, dilation=1, reflect_bounds=True):
    """Literally fold(P) / fold(ones) per head, with P_q = sum_k w[q,k] unfold_k(vid, inds)[q,k]."""
    vid = torch.as_tensor(vid).to(F64)
    weights = torch.as_tensor(weights).to(F64)
    inds = torch.as_tensor(inds)
    HD = inds.shape[1]
    patches = unfold_k(vid, inds, ps, pt, dilation, reflect_bounds)     # (B,HD,Q,K,pt,C,ps,ps)
    P = torch.einsum("bhqk,bhqk...->bhq...", weights, patches)          # (B,HD,Q,pt,C,ps,ps)
    shape6 = heads_shape(tuple(vid.shape), HD)
    num = fold(P, shape6, stride0, dilation, reflect_bounds)
    count = fold(torch.ones_like(P), shape6, stride0, dilation, reflect_bounds)
    out = torch.where(count > 0, num / torch.where(count > 0, count, torch.ones_like(count)),
                      torch.zeros_like(num))
    return from_heads(out, vid.dim())


# ----------------------------------------------------------------------------- test data
def random_inds(rng, B, HD, Q, K, T, H, W, pad_frac=0.25):
    """(B, HD, Q, K, 3) int32 torch tensor of in-video triples, a pad_frac share of them
    replaced by the search's (-1, -1, -1) padding."""
    inds = torch.stack([torch.from_numpy(rng.integers(0, n, size=(B, HD, Q, K))) for n in (T, H, W)], -1)
    pad = torch.from_numpy(rng.random((B, HD, Q, K)) < pad_frac)
    inds[pad] = -1
    return inds.to(torch.int32)


def tolerance(dtype):
    """(rtol, atol) for comparing a result of `dtype` with the float64 reference."""
    return (1e-10, 1e-10) if dtype == torch.float64 else (1e-5, 2e-5)


def random_config(rng):
    """One random small configuration of the patch ops: sizes, patch geometry, layout
    (5-d or 6-d), dtype and front end. Covers even ps, patches wider than the frame,
    pt longer than the video, H or W of 1, and reflection both ways."""
    return dict(
        B=int(rng.integers(1, 3)), T=int(rng.integers(1, 4)), H=int(rng.integers(1, 8)),
        W=int(rng.integers(1, 8)), HD=int(rng.choice([1, 2, 3])), C=int(rng.integers(1, 4)),
        K=int(rng.integers(1, 5)), ps=int(rng.choice([1, 2, 3, 4, 5])),
        stride0=int(rng.integers(1, 4)), pt=int(rng.integers(1, 4)),
        dilation=int(rng.integers(1, 3)), reflect_bounds=bool(rng.integers(0, 2)),
        ndim=int(rng.choice([5, 6])), dtype=[torch.float32, torch.float64][int(rng.integers(0, 2))],
        frontend=["torch", "numpy"][int(rng.integers(0, 2))])


def video_shape(cfg, heads=None):
    """The (B,T,C,H,W) or (B,HD,T,C,H,W) shape of a config; C is per head, so the 5-d
    video has HD*C channels (heads=1 for unfold/fold, where a 5-d video is one head)."""
    HD = cfg["HD"] if heads is None else heads
    if cfg["ndim"] == 5:
        return (cfg["B"], cfg["T"], HD * cfg["C"], cfg["H"], cfg["W"])
    return (cfg["B"], HD, cfg["T"], cfg["C"], cfg["H"], cfg["W"])


def num_queries(T, H, W, stride0):
    return T * ((H - 1) // stride0 + 1) * ((W - 1) // stride0 + 1)


def to_frontend(x, frontend):
    """A torch tensor as the front end's array (torch unchanged, numpy via .numpy())."""
    return x if frontend == "torch" else x.detach().numpy()


def as_torch(x):
    return x if isinstance(x, torch.Tensor) else torch.from_numpy(x)
