"""Search parameters: defaults of SPEC.md, argument checks that name the argument, and the
packing used by the torch ops. Shared by the array and torch adapters."""
from __future__ import annotations

import functools
import numbers

# Keywords of the 2023 API accepted without effect on results (they tuned the old kernels).
TUNING_KNOBS = ("rbwd", "nbwd", "exact", "queries_per_thread", "neigh_per_thread", "channel_groups")

# Integer and boolean parameters in the order the torch ops pack them.
INT_PARAMS = ("ws", "wt", "ps", "k", "nheads", "stride0", "stride1", "dilation", "pt",
              "off_H0", "off_W0", "off_H1", "off_W1")
# deterministic only affects the backward (CUDA: False = atomic scatter, see README).
BOOL_PARAMS = ("reflect_bounds", "full_ws", "anchor_self", "remove_self", "use_adj", "deterministic")

DEFAULTS = dict(nheads=1, dist_type="prod", stride0=4, stride1=1, dilation=1, pt=1,
                reflect_bounds=True, full_ws=True, anchor_self=False, remove_self=False,
                use_adj=False, off_H0=0, off_W0=0, off_H1=0, off_W1=0, deterministic=True)


def check_int(name: str, value) -> int:
    if type(value) is int:  # the usual case, without the slower abstract-class checks
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {value!r}")
    return int(value)


def check_bool(name: str, value) -> bool:
    if value is True or value is False:
        return value
    if not isinstance(value, (bool, numbers.Integral)) or value not in (0, 1):
        raise TypeError(f"{name}: expected a bool, got {value!r}")
    return bool(value)


# Every keyword normalize accepts; built once, as normalize runs on every torch call.
_KNOWN = frozenset(DEFAULTS) | frozenset(TUNING_KNOBS) | {"batchsize"}


def normalize(ws, wt, ps, k, **kw) -> dict:
    """All search parameters as a checked dict (tuning knobs dropped, batchsize checked)."""
    if not _KNOWN.issuperset(kw):
        unknown = set(kw) - _KNOWN
        raise TypeError(f"unexpected keyword argument(s): {', '.join(sorted(unknown))}")
    p = dict(DEFAULTS)
    p.update({key: v for key, v in kw.items() if key in DEFAULTS})
    p.update(ws=ws, wt=wt, ps=ps, k=k)
    for name in INT_PARAMS:
        if type(p[name]) is not int:  # plain ints (the usual case) need no call
            p[name] = check_int(name, p[name])
    for name in BOOL_PARAMS:
        if p[name] is not True and p[name] is not False:
            p[name] = check_bool(name, p[name])
    if p["dist_type"] not in ("prod", "l2"):
        raise ValueError(f"dist_type: expected 'prod' or 'l2', got {p['dist_type']!r}")
    if "batchsize" in kw and kw["batchsize"] is not None:
        check_int("batchsize", kw["batchsize"])
    return p


_DIST_TYPES = ("prod", "l2")


def packed(ints: tuple, bools: tuple, dist_type, batchsize=None, tuning=None):
    """pack(normalize(...)) as tuples, for a call's values in INT_PARAMS and BOOL_PARAMS order
    (ints[:4] = ws, wt, ps, k). Plain ints and bools, a known dist_type and no tuning knobs
    (the usual call) are taken as they are, without a dict; anything else goes through
    normalize, so checks and errors are the same."""
    if not tuning and (batchsize is None or type(batchsize) is int) and dist_type in _DIST_TYPES:
        for v in ints:
            if type(v) is not int:
                break
        else:
            for v in bools:
                if v is not True and v is not False:
                    break
            else:
                return ints, bools, dist_type
    kw = dict(zip(INT_PARAMS[4:], ints[4:]))
    kw.update(zip(BOOL_PARAMS, bools))
    return pack(normalize(*ints[:4], dist_type=dist_type, batchsize=batchsize, **kw, **(tuning or {})))


def packed_attrs(module):
    """packed() for a module's attributes (NonLocalSearch: every parameter by its name;
    getattr, which torch.compile traces, where an itemgetter on __dict__ breaks its graph)."""
    return packed(tuple([getattr(module, n) for n in INT_PARAMS]), tuple([getattr(module, n) for n in BOOL_PARAMS]),
                  module.dist_type)


def to_core(p: dict):
    """The binding's SearchParams object for a normalized dict (shared: never modify it)."""
    ints, bools, dist_type = pack(p)
    return core_of(tuple(ints), tuple(bools), dist_type)


@functools.lru_cache(maxsize=256)
def core_of(ints: tuple, bools: tuple, dist_type: str):
    """The SearchParams of packed parameters. Setting its 20 fields through the binding costs
    several microseconds, on every call of an op, so each distinct set is built once; the
    object is shared between calls and must not be modified."""
    from . import _C

    c = _C.SearchParams()
    for name, value in zip(INT_PARAMS + BOOL_PARAMS, ints + bools):
        setattr(c, name, value)
    c.dist_type = dist_type
    return c


def pack(p: dict):
    """(int tuple, bool tuple, dist_type): what packed() returns, and the torch op schema's
    int[] and bool[] arguments."""
    return tuple(p[n] for n in INT_PARAMS), tuple(p[n] for n in BOOL_PARAMS), p["dist_type"]


def unpack(ints, bools, dist_type) -> dict:
    p = dict(zip(INT_PARAMS, ints))
    p.update(zip(BOOL_PARAMS, bools))
    p["dist_type"] = dist_type
    return p


def output_sizes(shape, p: dict):
    """(B, HD, Q, K) of the outputs for a video shape, as the core computes them
    (used where the core cannot be called, e.g. torch's fake tensors)."""
    if len(shape) == 5:
        B, T, C, H, W = shape
        HD = p["nheads"]
    else:
        B, HD, T, C, H, W = shape
    nH = (H - 1) // p["stride0"] + 1
    nW = (W - 1) // p["stride0"] + 1
    st = min(2 * p["wt"] + 1, T)
    if p["ws"] < 0:
        slots = st * (-(-H // p["stride1"])) * (-(-W // p["stride1"]))
    else:
        slots = st * p["ws"] * p["ws"]
    K = p["k"] if p["k"] > 0 else slots
    return B, HD, T * nH * nW, K
