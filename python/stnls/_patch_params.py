"""Parameters of the patch ops and the weighted patch sum: checks that name the argument,
the binding's parameter objects, and the output shapes (also used by torch's fake tensors)."""
from __future__ import annotations

import functools

from ._params import check_bool, check_int


def normalize(ps, stride0=1, pt=1, dilation=1, reflect_bounds=True) -> dict:
    p = dict(ps=check_int("ps", ps), stride0=check_int("stride0", stride0), pt=check_int("pt", pt),
             dilation=check_int("dilation", dilation),
             reflect_bounds=check_bool("reflect_bounds", reflect_bounds))
    for name in ("ps", "stride0", "pt", "dilation"):
        if p[name] < 1:
            raise ValueError(f"{name}: expected >= 1, got {p[name]}")
    return p


def to_core(p: dict, kind: str = "tile", deterministic: bool = True):
    """The binding's TileParams or AggParams object for p (shared: never modify it)."""
    return _core_of(kind, deterministic, tuple(p.items()))


@functools.lru_cache(maxsize=256)
def _core_of(kind: str, deterministic: bool, items: tuple):
    # Built once per distinct set: setting the fields through the binding costs more than
    # the lookup, on every call of an op.
    from . import _C

    c = _C.TileParams() if kind == "tile" else _C.AggParams()
    for name, value in items:
        setattr(c, name, value)
    c.deterministic = deterministic
    return c


def vid_shape_of(vid_shape, name="vid_shape"):
    shape = tuple(int(s) for s in vid_shape)
    if len(shape) not in (5, 6):
        raise ValueError(f"{name}: expected 5 (B, T, C, H, W) or 6 (B, HD, T, C/HD, H, W) sizes, "
                         f"got {len(shape)}")
    return shape


def num_queries(vid_shape, stride0) -> int:
    T, H, W = vid_shape[-4], vid_shape[-2], vid_shape[-1]
    return T * ((H - 1) // stride0 + 1) * ((W - 1) // stride0 + 1)


def unfold_shape(vid_shape, p: dict):
    """(B, Q, pt, C, ps, ps) for a 5-d video, (B, HD, Q, pt, C, ps, ps) for a 6-d one."""
    Q = num_queries(vid_shape, p["stride0"])
    ps, pt = p["ps"], p["pt"]
    if len(vid_shape) == 5:
        return (vid_shape[0], Q, pt, vid_shape[2], ps, ps)
    return (vid_shape[0], vid_shape[1], Q, pt, vid_shape[3], ps, ps)


def unfold_k_shape(vid_shape, inds_shape, p: dict):
    """(B, HD, Q, K, pt, C/HD, ps, ps)."""
    if len(inds_shape) != 5:
        raise ValueError(f"inds: expected shape (B, HD, Q, K, 3), got {tuple(inds_shape)}")
    B, HD, Q, K = inds_shape[:4]
    C = vid_shape[2] // HD if len(vid_shape) == 5 else vid_shape[3]
    return (B, HD, Q, K, p["pt"], C, p["ps"], p["ps"])
