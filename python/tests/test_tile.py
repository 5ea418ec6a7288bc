"""Tests of the patch ops `stnls.tile.unfold/fold/unfold_k/fold_k` (SPEC.md, "Patches"):
against the independent reference in reference_patches.py over random configurations
(torch and numpy, float32/float64, 5-d and 6-d, every border case), the adjoint identities,
float64 gradcheck, the array backward functions, CPU vs CUDA, and bad inputs."""
import numpy as np
import pytest
import torch

import reference_patches as R
import stnls

N_RANDOM = 40


def _vid(rng, shape, dtype):
    return torch.from_numpy(rng.standard_normal(shape)).to(dtype)


def _close(got, want, dtype):
    rtol, atol = R.tolerance(dtype)
    torch.testing.assert_close(R.as_torch(got).to(torch.float64), want, rtol=rtol, atol=atol)


def _geometry(cfg):
    return dict(dilation=cfg["dilation"], reflect_bounds=cfg["reflect_bounds"])


# ----------------------------------------------------------------------------- the reference itself
def test_reference_by_hand():
    """Hand-computed values of SPEC rule 5 on a 3x3 frame holding 0..8 (row-major)."""
    vid = torch.arange(9, dtype=torch.float64).reshape(1, 1, 1, 3, 3)
    # Patch at (0, 0): rows/cols -1 reflect to 1 ...
    p = R.unfold(vid, 3, reflect_bounds=True)[0, 0, 0, 0]
    assert p.tolist() == [[4, 3, 4], [1, 0, 1], [4, 3, 4]]
    # ... or read 0 without reflection.
    p = R.unfold(vid, 3, reflect_bounds=False)[0, 0, 0, 0]
    assert p.tolist() == [[0, 0, 0], [0, 0, 1], [0, 3, 4]]
    # Even ps=4: offsets -2..1, so the patch at (0, 0) reads rows/cols 2, 1, 0, 1.
    p = R.unfold(vid, 4, reflect_bounds=True)[0, 0, 0, 0]
    assert p[0].tolist() == [8, 7, 6, 7] and p[:, 0].tolist() == [8, 5, 2, 5]
    # Coverage: per axis, row 1 is read directly by 3 queries and through reflection by 2.
    count = R.fold(torch.ones(1, 9, 1, 1, 3, 3, dtype=torch.float64), vid.shape)[0, 0, 0]
    assert count.tolist() == [[4, 10, 4], [10, 25, 10], [4, 10, 4]]
    # unfold_k: a -1 triple reads zeros; a triple reads the patch centred on it.
    inds = torch.tensor([[-1, -1, -1], [0, 1, 1]], dtype=torch.int32).reshape(1, 1, 1, 2, 3)
    pk = R.unfold_k(vid, inds, 3)
    assert pk[0, 0, 0, 0].abs().sum() == 0
    assert pk[0, 0, 0, 1, 0, 0].tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]


def test_library_by_hand():
    vid = torch.arange(9, dtype=torch.float64).reshape(1, 1, 1, 3, 3)
    assert stnls.tile.unfold(vid, 3)[0, 0, 0, 0].tolist() == [[4, 3, 4], [1, 0, 1], [4, 3, 4]]
    assert stnls.tile.unfold(vid, 3, reflect_bounds=False)[0, 0, 0, 0].tolist() == [[0, 0, 0], [0, 0, 1], [0, 3, 4]]
    count = stnls.tile.fold(torch.ones(1, 9, 1, 1, 3, 3, dtype=torch.float64), vid.shape)[0, 0, 0]
    assert count.tolist() == [[4, 10, 4], [10, 25, 10], [4, 10, 4]]


# ----------------------------------------------------------------------------- random configurations
def _unfold_case(seed):
    rng = np.random.default_rng(1000 + seed)
    cfg = R.random_config(rng)
    vid = _vid(rng, R.video_shape(cfg), cfg["dtype"])
    return rng, cfg, vid


@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_unfold_fold_match_reference(seed):
    rng, cfg, vid = _unfold_case(seed)
    kw = dict(stride0=cfg["stride0"], **_geometry(cfg))
    got = stnls.tile.unfold(R.to_frontend(vid, cfg["frontend"]), cfg["ps"], pt=cfg["pt"], **kw)
    want = R.unfold(vid, cfg["ps"], pt=cfg["pt"], **kw)
    assert type(got) is type(R.to_frontend(vid, cfg["frontend"])), cfg
    assert tuple(got.shape) == tuple(want.shape), cfg
    assert got.dtype == R.to_frontend(vid, cfg["frontend"]).dtype, cfg
    _close(got, want, cfg["dtype"])

    patches = _vid(rng, tuple(want.shape), cfg["dtype"])
    got = stnls.tile.fold(R.to_frontend(patches, cfg["frontend"]), vid.shape, **kw)
    assert tuple(got.shape) == tuple(vid.shape), cfg
    _close(got, R.fold(patches, vid.shape, **kw), cfg["dtype"])


def _unfold_k_case(seed):
    rng = np.random.default_rng(2000 + seed)
    cfg = R.random_config(rng)
    vid = _vid(rng, R.video_shape(cfg), cfg["dtype"])
    # unfold_k has no query grid: one row of neighbours per pixel here (stride 1).
    Q = R.num_queries(cfg["T"], cfg["H"], cfg["W"], 1)
    inds = R.random_inds(rng, cfg["B"], cfg["HD"], Q, cfg["K"], cfg["T"], cfg["H"], cfg["W"])
    return rng, cfg, vid, inds


@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_unfold_k_fold_k_match_reference(seed):
    rng, cfg, vid, inds = _unfold_k_case(seed)
    f = cfg["frontend"]
    got = stnls.tile.unfold_k(R.to_frontend(vid, f), R.to_frontend(inds, f), cfg["ps"], pt=cfg["pt"], **_geometry(cfg))
    want = R.unfold_k(vid, inds, cfg["ps"], pt=cfg["pt"], **_geometry(cfg))
    assert tuple(got.shape) == tuple(want.shape), cfg
    _close(got, want, cfg["dtype"])

    patches = _vid(rng, tuple(want.shape), cfg["dtype"])
    got = stnls.tile.fold_k(R.to_frontend(patches, f), R.to_frontend(inds, f), vid.shape, **_geometry(cfg))
    assert tuple(got.shape) == tuple(vid.shape), cfg
    _close(got, R.fold_k(patches, inds, vid.shape, **_geometry(cfg)), cfg["dtype"])


def test_unfold_k_with_inds_of_a_strided_search():
    """unfold_k/fold_k take no stride0: their Q is that of `inds`, e.g. a search with the
    default stride0=4 (SPEC "Patches": patches (B, HD, Q, K, ...) read at inds)."""
    rng = np.random.default_rng(7)
    T, H, W = 2, 8, 8
    vid = _vid(rng, (1, T, 4, H, W), torch.float64)
    Q = R.num_queries(T, H, W, 4)
    inds = R.random_inds(rng, 1, 2, Q, 3, T, H, W)
    got = stnls.tile.unfold_k(vid, inds, 3)
    _close(got, R.unfold_k(vid, inds, 3), torch.float64)
    _close(stnls.tile.fold_k(got, inds, vid.shape), R.fold_k(got.detach(), inds, vid.shape), torch.float64)


def test_unfold_k_out_of_video_triples_read_zero():
    """Triples outside the video (not only -1 padding) read zeros and receive nothing."""
    vid = torch.ones(1, 2, 1, 3, 3, dtype=torch.float64)
    bad = [[2, 0, 0], [0, 3, 0], [0, 0, -2], [-1, -1, -1], [0, 0, 3]]
    inds = torch.tensor([bad + [[1, 1, 1]]] * 18, dtype=torch.int32).reshape(1, 1, 18, 6, 3)
    got = stnls.tile.unfold_k(vid, inds, 3)
    assert got[..., :5, :, :, :, :].abs().sum() == 0
    assert (got[..., 5, :, :, :, :] == 1).all()
    back = stnls.tile.fold_k(torch.ones_like(got), inds, vid.shape)
    assert back.sum() == 18 * 9


# ----------------------------------------------------------------------------- adjoint identities
@pytest.mark.parametrize("seed", range(12))
def test_fold_is_adjoint_of_unfold(seed):
    rng, cfg, vid = _unfold_case(seed)
    vid = vid.double()
    kw = dict(stride0=cfg["stride0"], **_geometry(cfg))
    u = stnls.tile.unfold(vid, cfg["ps"], pt=cfg["pt"], **kw)
    y = _vid(rng, tuple(u.shape), torch.float64)
    lhs = (u * y).sum()
    rhs = (vid * stnls.tile.fold(y, vid.shape, **kw)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", range(12))
def test_fold_k_is_adjoint_of_unfold_k(seed):
    rng, cfg, vid, inds = _unfold_k_case(seed)
    vid = vid.double()
    u = stnls.tile.unfold_k(vid, inds, cfg["ps"], pt=cfg["pt"], **_geometry(cfg))
    y = _vid(rng, tuple(u.shape), torch.float64)
    lhs = (u * y).sum()
    rhs = (vid * stnls.tile.fold_k(y, inds, vid.shape, **_geometry(cfg))).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-10, atol=1e-10)


def test_fold_of_ones_is_coverage_count():
    """fold(ones) is the per-pixel coverage count (SPEC "Patches"), reflected taps included."""
    vid_shape = (1, 3, 2, 5, 6)
    for ps, stride0, pt, dil, refl in [(3, 1, 1, 1, True), (4, 2, 2, 1, True), (3, 2, 3, 2, False)]:
        u = R.unfold(torch.zeros(vid_shape, dtype=torch.float64), ps, stride0, pt, dil, refl)
        got = stnls.tile.fold(torch.ones_like(u), vid_shape, stride0, dil, refl)
        want = R.fold(torch.ones_like(u), vid_shape, stride0, dil, refl)
        assert torch.equal(got, want), (ps, stride0, pt, dil, refl)


# ----------------------------------------------------------------------------- gradients
# Full gradcheck costs one call per input and per output element, so it runs on the
# smallest case; the others use fast_mode (a random projection of the Jacobian). The
# adjoint tests above already pin the whole Jacobian of these linear maps.
GRAD_CASES = [  # (ps, stride0, pt, dilation, reflect_bounds, ndim, fast)
    (3, 1, 1, 1, True, 5, False),
    (2, 2, 2, 1, False, 6, True),
    (3, 2, 2, 2, True, 6, True),
    (4, 1, 2, 1, True, 5, True),
]


def _grad_shape(ndim, full):
    if full:
        return (1, 1, 1, 2, 2) if ndim == 5 else (1, 1, 1, 1, 2, 2)
    return (1, 2, 2, 3, 3) if ndim == 5 else (1, 2, 2, 1, 3, 3)


@pytest.mark.parametrize("ps,stride0,pt,dil,refl,ndim,fast", GRAD_CASES)
def test_gradcheck_unfold_fold(ps, stride0, pt, dil, refl, ndim, fast):
    shape = _grad_shape(ndim, not fast)
    vid = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: stnls.tile.unfold(v, ps, stride0, pt, dil, refl), (vid,),
                                    fast_mode=fast)
    n = R.unfold(vid.detach(), ps, stride0, pt, dil, refl).shape
    patches = torch.randn(n, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: stnls.tile.fold(p, shape, stride0, dil, refl), (patches,),
                                    fast_mode=fast)


@pytest.mark.parametrize("ps,stride0,pt,dil,refl,ndim,fast", GRAD_CASES)
def test_gradcheck_unfold_k_fold_k(ps, stride0, pt, dil, refl, ndim, fast):
    rng = np.random.default_rng(ps * 10 + pt)
    shape = _grad_shape(ndim, not fast)
    B, T, H, W = shape[0], shape[-4], shape[-2], shape[-1]
    HD = 1 if not fast else 2
    inds = R.random_inds(rng, B, HD, T * H * W, 2, T, H, W)
    vid = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: stnls.tile.unfold_k(v, inds, ps, pt, dil, refl), (vid,),
                                    fast_mode=fast)
    n = R.unfold_k(vid.detach(), inds, ps, pt, dil, refl).shape
    patches = torch.randn(n, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda p: stnls.tile.fold_k(p, inds, shape, dil, refl), (patches,),
                                    fast_mode=fast)


def test_array_backward_functions():
    """The explicit backward functions (numpy) equal the adjoints of the reference."""
    rng = np.random.default_rng(3)
    shape, ps, stride0, pt, dil, refl = (1, 2, 4, 5, 4), 3, 2, 2, 1, True
    vid = _vid(rng, shape, torch.float64)
    g = _vid(rng, tuple(R.unfold(vid, ps, stride0, pt, dil, refl).shape), torch.float64)
    _close(stnls.tile.unfold_backward(g.numpy(), shape, stride0, dil, refl),
           R.fold(g, shape, stride0, dil, refl), torch.float64)
    _close(stnls.tile.fold_backward(vid.numpy(), ps, stride0, pt, dil, refl),
           R.unfold(vid, ps, stride0, pt, dil, refl), torch.float64)
    inds = R.random_inds(rng, 1, 2, 2 * 5 * 4, 3, 2, 5, 4)
    gk = _vid(rng, tuple(R.unfold_k(vid, inds, ps, pt, dil, refl).shape), torch.float64)
    _close(stnls.tile.unfold_k_backward(gk.numpy(), inds.numpy(), shape, dil, refl),
           R.fold_k(gk, inds, shape, dil, refl), torch.float64)
    _close(stnls.tile.fold_k_backward(vid.numpy(), inds.numpy(), ps, pt, dil, refl),
           R.unfold_k(vid, inds, ps, pt, dil, refl), torch.float64)


# ----------------------------------------------------------------------------- layouts and devices
def test_non_contiguous_inputs():
    """Strided views are read through their strides (SPEC "Bad input": never read wrongly)."""
    rng = np.random.default_rng(5)
    base = _vid(rng, (1, 4, 5, 3, 2), torch.float64)             # (B, W, H, C, T)
    vid = base.permute(0, 4, 3, 2, 1)                             # (B, T, C, H, W), non-contiguous
    _close(stnls.tile.unfold(vid, 3, 2), R.unfold(vid.contiguous(), 3, 2), torch.float64)
    inds = R.random_inds(rng, 1, 3, 2 * 5 * 4, 2, 2, 5, 4)
    inds_t = inds.transpose(2, 3).contiguous().transpose(2, 3)    # same values, other strides
    _close(stnls.tile.unfold_k(vid, inds_t, 2), R.unfold_k(vid.contiguous(), inds, 2), torch.float64)


@pytest.mark.parametrize("seed", range(6))
def test_device_matches_reference(device, seed):
    rng, cfg, vid, inds = _unfold_k_case(seed)
    geo = _geometry(cfg)
    kw = dict(stride0=cfg["stride0"], **geo)
    v = vid.to(device)
    got = stnls.tile.unfold(v, cfg["ps"], pt=cfg["pt"], **kw)
    assert got.device.type == device
    _close(got.cpu(), R.unfold(vid, cfg["ps"], pt=cfg["pt"], **kw), cfg["dtype"])
    p = _vid(rng, tuple(got.shape), cfg["dtype"])
    _close(stnls.tile.fold(p.to(device), vid.shape, **kw).cpu(), R.fold(p, vid.shape, **kw), cfg["dtype"])
    got = stnls.tile.unfold_k(v, inds.to(device), cfg["ps"], pt=cfg["pt"], **geo)
    _close(got.cpu(), R.unfold_k(vid, inds, cfg["ps"], pt=cfg["pt"], **geo), cfg["dtype"])
    p = _vid(rng, tuple(got.shape), cfg["dtype"])
    want = R.fold_k(p, inds, vid.shape, **geo)
    for det in (True, False):
        got = stnls.tile.fold_k(p.to(device), inds.to(device), vid.shape, deterministic=det, **geo)
        _close(got.cpu(), want, cfg["dtype"])
    # deterministic=True (the default) is bitwise repeatable.
    runs = [stnls.tile.fold_k(p.to(device), inds.to(device), vid.shape, **geo) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


def test_device_gradients(device):
    vid = torch.randn(1, 2, 4, 4, 5, dtype=torch.float64, device=device, requires_grad=True)
    inds = R.random_inds(np.random.default_rng(1), 1, 2, 2 * 4 * 5, 3, 2, 4, 5).to(device)
    u = stnls.tile.unfold_k(vid, inds, 3, pt=2)
    g = torch.randn_like(u)
    (gv,) = torch.autograd.grad((u * g).sum(), vid)
    _close(gv.cpu(), R.fold_k(g.cpu(), inds.cpu(), vid.shape), torch.float64)


# ----------------------------------------------------------------------------- bad inputs
def _bad_cases(xp):
    f64 = np.float64
    vid = np.zeros((1, 2, 4, 5, 5), f64)
    inds = np.zeros((1, 2, 2 * 5 * 5, 3, 3), np.int32)
    arr = (lambda a: a) if xp == "numpy" else torch.from_numpy
    T = stnls.tile
    return [
        ("vid", TypeError, lambda: T.unfold(arr(vid.astype(np.int32)), 3)),
        ("vid", (ValueError, TypeError), lambda: T.unfold(arr(np.zeros((2, 4, 5, 5), f64)), 3)),
        ("vid", (ValueError, TypeError), lambda: T.unfold_k(arr(np.zeros((2, 4, 5, 5), f64)), arr(inds), 3)),
        ("inds", TypeError, lambda: T.unfold_k(arr(vid), arr(inds.astype(f64)), 3)),
        ("inds", ValueError, lambda: T.unfold_k(arr(vid), arr(inds[..., :2].copy()), 3)),
        # patches and inds disagree on Q
        ("patches", ValueError, lambda: T.fold_k(arr(np.zeros((1, 2, 50, 3, 1, 2, 3, 3), f64)),
                                              arr(inds[:, :, 1:].copy()), vid.shape)),
        ("vid", ValueError, lambda: T.unfold_k(arr(np.zeros((1, 2, 3, 5, 5), f64)), arr(inds), 3)),
        ("patches", ValueError, lambda: T.fold(arr(np.zeros((1, 50, 1, 4, 3, 2), f64)), vid.shape)),
        ("patches", ValueError, lambda: T.fold_k(arr(np.zeros((1, 2, 50, 3, 1, 2, 3, 2), f64)), arr(inds), vid.shape)),
        ("patches", ValueError, lambda: T.fold(arr(np.zeros((1, 49, 1, 4, 3, 3), f64)), vid.shape)),
        ("patches", TypeError, lambda: T.fold(arr(np.zeros((1, 50, 1, 4, 3, 3), np.int64)), vid.shape)),
        ("vid_shape", ValueError, lambda: T.fold(arr(np.zeros((1, 50, 1, 4, 3, 3), f64)), (2, 4, 5, 5))),
        ("ps", ValueError, lambda: T.unfold(arr(vid), 0)),
        ("stride0", ValueError, lambda: T.unfold(arr(vid), 3, stride0=0)),
        ("dilation", ValueError, lambda: T.unfold(arr(vid), 3, dilation=0)),
        ("pt", ValueError, lambda: T.unfold(arr(vid), 3, pt=0)),
        ("ps", TypeError, lambda: T.unfold(arr(vid), 2.5)),
    ]


@pytest.mark.parametrize("xp", ["numpy", "torch"])
@pytest.mark.parametrize("case", range(len(_bad_cases("numpy"))))
def test_bad_inputs_raise_naming_the_argument(xp, case):
    name, exc, call = _bad_cases(xp)[case]
    with pytest.raises(exc) as info:
        call()
    assert name in str(info.value), f"{name!r} not in message {str(info.value)!r}"

