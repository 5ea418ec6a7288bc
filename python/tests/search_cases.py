"""Seeded random search configurations and the comparison of a result with the reference,
shared by the forward and backward tests.

A case covers every parameter of SPEC.md's search. Sizes stay tiny so that the brute-force
reference is fast. Two kinds of data:
- "normal": random normal values (ties improbable);
- "grid": multiples of 1/4 in [-1, 1]; every product and sum is then exact in float32, so
  float32 results must match the float64 reference bit for bit, ties (frequent here)
  included, which tests the canonical tie rule on random configurations.
"""
import math

import numpy as np

import reference as ref

KEYS = ("dist_type", "stride0", "stride1", "dilation", "pt", "reflect_bounds", "full_ws",
        "anchor_self", "remove_self", "use_adj", "off_H0", "off_W0", "off_H1", "off_W1")


def random_case(seed):
    """One configuration: a dict with shapes, parameters, flow and data modes."""
    r = np.random.default_rng(seed)
    pick = lambda xs, p=None: xs[r.choice(len(xs), p=p)]  # noqa: E731
    nheads = int(pick([1, 2, 3], [0.5, 0.35, 0.15]))
    ch = int(pick([1, 2]))
    T = int(r.integers(1, 5))
    H = int(r.integers(2, 10))
    W = int(r.integers(2, 10))
    if r.random() < 0.05:
        H = 1
    ws = int(pick([-1, 1, 2, 3, 4, 5, 7], [0.15, 0.1, 0.1, 0.3, 0.1, 0.15, 0.1]))
    c = dict(
        B=int(pick([1, 2], [0.7, 0.3])), T=T, C=nheads * ch, H=H, W=W,
        ws=ws, wt=int(pick([0, 1, 2, 3], [0.25, 0.4, 0.2, 0.15])),
        ps=int(pick([1, 2, 3, 4], [0.3, 0.15, 0.4, 0.15])), nheads=nheads,
        dist_type=str(pick(["prod", "l2"])),
        stride0=int(pick([1, 2, 3, 4], [0.15, 0.35, 0.25, 0.25])),
        stride1=int(pick([1, 2, 3], [0.6, 0.3, 0.1])),
        dilation=int(pick([1, 2], [0.75, 0.25])),
        pt=int(pick([1, 2], [0.75, 0.25])),
        reflect_bounds=bool(r.random() < 0.6),
        full_ws=bool(r.random() < 0.6),
        use_adj=bool(r.random() < 0.2),
        dtype=str(pick(["float32", "float64"])),
        data=str(pick(["normal", "grid"], [0.7, 0.3])),
        flow=str(pick(["none", "zero", "small", "large", "nonfinite", "fwd_only"],
                      [0.15, 0.05, 0.3, 0.3, 0.1, 0.1])),
        seed=int(seed),
    )
    self_mode = pick(["none", "anchor", "remove"], [0.6, 0.2, 0.2])
    c["anchor_self"] = self_mode == "anchor"
    c["remove_self"] = self_mode == "remove"
    for key in ("off_H0", "off_W0", "off_H1", "off_W1"):
        c[key] = int(r.integers(-2, 3)) if r.random() < 0.15 else 0
    slots = ref.num_slots(ref.Params(ws, c["wt"], c["ps"], 0, stride1=c["stride1"]), T, H, W)
    c["k"] = int(pick([-1, 0, 1, slots, int(r.integers(1, slots + 1))], [0.2, 0.1, 0.1, 0.1, 0.5]))
    return c


def small_patch_case(seed, variants=((4, 3), (8, 3), (8, 1))):
    """A configuration of the CUDA backend's register-patch forwards (float32, channels per
    head and ps of a compiled variant, ws in 5, 7, 9, stride1 = dilation = pt = 1, k in
    [1, 16], no anchor_self): by default the thread-per-query variants; ROW_VARIANTS are the
    row-split ones. The rest is drawn as in random_case. On the CPU it is just one more
    random case."""
    c = random_case(seed)
    r = np.random.default_rng(50_000 + seed)
    ch, ps = variants[int(r.integers(0, len(variants)))]
    c.update(C=c["nheads"] * ch, ps=ps, ws=int(r.choice([5, 7, 9])), stride1=1, dilation=1, pt=1,
             dtype="float32", anchor_self=False, H=int(r.integers(3, 15)), W=int(r.integers(3, 15)))
    if c["nheads"] == 3:
        c.update(nheads=1, C=ch)
    slots = ref.num_slots(ref.Params(c["ws"], c["wt"], ps, 0, stride1=1), c["T"], c["H"], c["W"])
    c["k"] = int(r.integers(1, min(16, slots) + 1))
    return c


ROW_VARIANTS = ((32, 3), (16, 7))  # the row-split forward's (channels per head, ps)


def channel_group_case(seed):
    """A random case with 32 or more channels per head and ps <= 4: the channel-group
    summation order (common/geometry.h), whole groups of 8 channels or a last smaller one,
    on every layout that takes such calls (any dtype, dilation, stride1, pt, anchor_self;
    the CUDA warp-per-query kernels unless it is the channel-group variant's shape)."""
    c = random_case(seed)
    r = np.random.default_rng(70_000 + seed)
    ch = int(r.choice([32, 36, 40, 64]))
    nheads = int(r.choice([1, 2]))
    c.update(nheads=nheads, C=nheads * ch, ps=int(r.choice([1, 2, 3, 4])), H=int(r.integers(2, 9)),
             W=int(r.integers(2, 9)), T=int(r.integers(1, 4)))
    slots = ref.num_slots(ref.Params(c["ws"], c["wt"], c["ps"], 0, stride1=c["stride1"]), c["T"], c["H"], c["W"])
    c["k"] = int(r.choice([-1, 1, int(r.integers(1, slots + 1))]))
    return c


def shared_sums_case(seed):
    """A configuration of the CUDA backend's shared-sums forward (float32, stride0 = 1,
    16 to 32 channels per head, ps 5, 7 or 9, ws 7 or 9, stride1 = dilation = pt = 1, no
    patch offsets, k in [1, 16], no anchor_self), on frames up to 3 of its 8 x 16 query
    tiles wide so that several blocks share a frame. On the CPU it is one more random case
    with 16 or more channels per head (the pixel-sums summation order)."""
    c = random_case(seed)
    r = np.random.default_rng(60_000 + seed)
    ch, ps = [(16, 7), (20, 5), (32, 9), (16, 5)][int(r.integers(0, 4))]
    nheads = int(r.choice([1, 2]))
    c.update(nheads=nheads, C=nheads * ch, ps=ps, ws=int(r.choice([7, 9])), stride0=1, stride1=1,
             dilation=1, pt=1, dtype="float32", anchor_self=False, off_H0=0, off_W0=0, off_H1=0,
             off_W1=0, T=int(r.integers(1, 4)), H=int(r.integers(3, 20)), W=int(r.integers(3, 40)))
    slots = ref.num_slots(ref.Params(c["ws"], c["wt"], ps, 0, stride1=1), c["T"], c["H"], c["W"])
    c["k"] = int(r.integers(1, min(16, slots) + 1))
    return c


def describe(c):
    """A short id for pytest output: enough to rebuild the case (seed) and read it."""
    return (f"seed{c['seed']}-{c['dtype']}-{c['dist_type']}-B{c['B']}T{c['T']}C{c['C']}"
            f"H{c['H']}W{c['W']}-ws{c['ws']}wt{c['wt']}ps{c['ps']}k{c['k']}hd{c['nheads']}")


def search_kwargs(c):
    """Keyword arguments of nls beyond (ws, wt, ps, k, nheads)."""
    return {key: c[key] for key in KEYS}


def make_inputs(c):
    """NumPy inputs (vid0, vid1, fflow, bflow) for a case, in the case's dtype."""
    r = np.random.default_rng(10_000 + c["seed"])
    shape = (c["B"], c["T"], c["C"], c["H"], c["W"])
    if c["data"] == "grid":
        vid0 = r.integers(-4, 5, size=shape) / 4.0
        vid1 = r.integers(-4, 5, size=shape) / 4.0
    else:
        vid0 = r.normal(size=shape)
        vid1 = r.normal(size=shape)
    fshape = (c["B"], c["T"], 2, c["H"], c["W"])
    scale = {"none": 0.0, "zero": 0.0, "small": 1.0, "large": 0.6 * max(c["H"], c["W"]),
             "nonfinite": 2.0, "fwd_only": 2.0}[c["flow"]]
    fflow = r.normal(scale=scale, size=fshape) if scale else np.zeros(fshape)
    bflow = r.normal(scale=scale, size=fshape) if scale else np.zeros(fshape)
    if c["flow"] == "nonfinite":
        for f in (fflow, bflow):
            bad = r.random(fshape) < 0.2
            f[bad] = r.choice([np.nan, np.inf, -np.inf], size=int(bad.sum()))
    dt = np.dtype(c["dtype"])
    vid0, vid1, fflow, bflow = (a.astype(dt) for a in (vid0, vid1, fflow, bflow))
    if c["flow"] == "none":
        fflow = bflow = None
    elif c["flow"] == "fwd_only":
        bflow = None
    return vid0, vid1, fflow, bflow


def tolerance(c, ref_dists):
    """Absolute tolerance on distances: exact-ish in float64 (and for grid data), 1e-5
    relative to the magnitude of the case's distances in float32."""
    finite = ref_dists[np.isfinite(ref_dists)]
    scale = max(1.0, float(np.abs(finite).max())) if finite.size else 1.0
    if c["dtype"] == "float64":
        return 1e-10 * scale
    if c["data"] == "grid":
        return 0.0
    return 1e-5 * scale


def to_numpy(x):
    if hasattr(x, "detach"):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def check_result(c, dists, inds, ref_d, ref_i, vid0=None, vid1=None):
    """Assert that a library result equals the reference for case c.

    Indices must be equal exactly for "grid" data (exact arithmetic: every tie is exact and
    must follow the canonical order). For "normal" data, a swap of candidates whose reference
    distances agree within the tolerance is accepted: besides float32 rounding, some
    candidates tie mathematically (e.g. a palindromic query patch at a reflected border
    against two mirrored candidate patches), and summation order then decides; the
    swapped-in candidate's reference distance must match the reference at that rank."""
    dists, inds = to_numpy(dists), to_numpy(inds)
    assert dists.dtype == np.dtype(c["dtype"]), f"dists dtype {dists.dtype}"
    assert inds.dtype == np.int32, f"inds dtype {inds.dtype}"
    assert dists.shape == ref_d.shape, f"dists shape {dists.shape} != {ref_d.shape}"
    assert inds.shape == ref_i.shape, f"inds shape {inds.shape} != {ref_i.shape}"
    tol = tolerance(c, ref_d)
    pad = ref_i[..., 0] < 0
    got_pad = inds[..., 0] < 0
    assert (pad == got_pad).all(), _first_diff("padding", pad, got_pad, ref_i, inds)
    assert (inds[pad] == -1).all(), "padded inds must be -1 in all three coordinates"
    inf = -math.inf if c["dist_type"] == "prod" else math.inf
    assert (dists[pad] == inf).all(), f"padded dists must be {inf}"
    same = (inds == ref_i).all(-1)
    if not same.all():
        if c["data"] == "grid" or vid0 is None:
            raise AssertionError(_first_diff("inds", ref_i, inds, ref_d, dists))
        # near-tie swaps only: the library's candidate must be as good as the reference's
        import torch

        kw = search_kwargs(c)
        at, _ = ref.dists_at(torch.tensor(to_numpy(vid0), dtype=torch.float64),
                             torch.tensor(to_numpy(vid1), dtype=torch.float64), inds,
                             c["ws"], c["wt"], c["ps"], c["k"], c["nheads"], **kw)
        at = at.numpy()
        bad = ~same & (np.abs(at - ref_d) > 2 * tol)
        assert not bad.any(), _first_diff("inds (beyond near-ties)", ref_i, inds, ref_d, dists, bad)
        assert not (~same[..., 0] & c["anchor_self"]).any(), "anchor must be first"
    fin = ~pad
    err = np.abs(dists[fin].astype(np.float64) - ref_d[fin])
    if err.size and err.max() > tol:
        where = np.zeros_like(pad)
        where[fin] = err > tol
        raise AssertionError(f"dists off by {err.max():.3g} > tol {tol:.3g}; "
                             + _first_diff("dists", ref_d, dists, ref_i, inds, where))


def _first_diff(what, expect, got, expect_other, got_other, mask=None):
    """Message locating the first differing (b, head, q, k) entry."""
    if mask is None:
        m = expect != got
        while m.ndim > 4:
            m = m.any(-1)
    else:
        m = mask
    pos = tuple(int(x) for x in np.argwhere(m)[0])
    b, h, q = pos[:3]
    return (f"{what} differ first at (b={b}, head={h}, q={q}, k={pos[3]}):\n"
            f"  expected row {expect[b, h, q].tolist()}\n  got      row {got[b, h, q].tolist()}\n"
            f"  expected other {expect_other[b, h, q].tolist()}\n"
            f"  got      other {got_other[b, h, q].tolist()}")
