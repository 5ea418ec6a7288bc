"""Tests of the weighted patch sum `stnls.agg.wpsum` / `WeightedPatchSum` (SPEC.md,
"Aggregation"): against the reference fold(P) / fold(ones) of reference_patches.py over
random configurations, its gradients (reference autograd, gradcheck, the array backward),
the module, the ps=1 attention identity A @ V, CPU vs CUDA, and bad inputs."""
import numpy as np
import pytest
import torch

import reference_patches as R
import stnls

N_RANDOM = 40


def _close(got, want, dtype):
    rtol, atol = R.tolerance(dtype)
    torch.testing.assert_close(R.as_torch(got).to(torch.float64), want, rtol=rtol, atol=atol)


def _params(cfg):
    return dict(ps=cfg["ps"], stride0=cfg["stride0"], pt=cfg["pt"], dilation=cfg["dilation"],
                reflect_bounds=cfg["reflect_bounds"])


def _case(seed, dtype=None):
    """(cfg, vid, weights, inds) of one random configuration; weights and inds live on the
    video's query grid (search rule 1) with HD heads."""
    rng = np.random.default_rng(3000 + seed)
    cfg = R.random_config(rng)
    if dtype is not None:
        cfg["dtype"] = dtype
    T, H, W = cfg["T"], cfg["H"], cfg["W"]
    Q = R.num_queries(T, H, W, cfg["stride0"])
    vid = torch.from_numpy(rng.standard_normal(R.video_shape(cfg))).to(cfg["dtype"])
    weights = torch.from_numpy(rng.standard_normal((cfg["B"], cfg["HD"], Q, cfg["K"]))).to(cfg["dtype"])
    inds = R.random_inds(rng, cfg["B"], cfg["HD"], Q, cfg["K"], T, H, W)
    return cfg, vid, weights, inds


# ----------------------------------------------------------------------------- forward
@pytest.mark.parametrize("seed", range(N_RANDOM))
def test_wpsum_matches_reference(seed):
    cfg, vid, weights, inds = _case(seed)
    f = cfg["frontend"]
    got = stnls.agg.wpsum(R.to_frontend(vid, f), R.to_frontend(weights, f), R.to_frontend(inds, f), **_params(cfg))
    assert type(got) is type(R.to_frontend(vid, f)), cfg
    assert tuple(got.shape) == tuple(vid.shape), cfg
    assert got.dtype == R.to_frontend(vid, f).dtype, cfg
    _close(got, R.wpsum(vid, weights, inds, **_params(cfg)), cfg["dtype"])


def test_uncovered_pixels_are_zero():
    """stride0 > ps without reflection leaves pixels no query patch covers: they are 0."""
    rng = np.random.default_rng(1)
    vid = torch.from_numpy(rng.standard_normal((1, 2, 2, 7, 7)))
    Q = R.num_queries(2, 7, 7, 3)
    weights = torch.from_numpy(rng.standard_normal((1, 1, Q, 2)))
    inds = R.random_inds(rng, 1, 1, Q, 2, 2, 7, 7, pad_frac=0.0)
    out = stnls.agg.wpsum(vid, weights, inds, ps=1, stride0=3, reflect_bounds=False)
    mask = torch.zeros(7, 7, dtype=torch.bool)
    mask[::3, ::3] = True
    assert (out[..., ~mask] == 0).all()
    assert (out[..., mask] != 0).all()
    assert torch.isfinite(out).all()


def test_ps1_stride1_is_attention():
    """ps=1, stride0=1: out = A @ V per head, V gathered at inds (SPEC "Aggregation")."""
    rng = np.random.default_rng(2)
    B, T, HD, C, H, W, K = 2, 2, 2, 3, 4, 5, 6
    vid = torch.from_numpy(rng.standard_normal((B, T, HD * C, H, W)))
    Q = T * H * W
    A = torch.softmax(torch.from_numpy(rng.standard_normal((B, HD, Q, K))), -1)
    inds = R.random_inds(rng, B, HD, Q, K, T, H, W)
    # V[b, h, q, k, c] = vid[b, t, h*C + c, y, x] at inds[b, h, q, k]; padding reads 0.
    v6 = vid.reshape(B, T, HD, C, H, W).permute(0, 2, 1, 4, 5, 3).reshape(B, HD, T * H * W, C)
    i = inds.long()
    lin = ((i[..., 0] * H + i[..., 1]) * W + i[..., 2]).clamp(min=0)
    V = torch.stack([v6[b, h][lin[b, h]] for b in range(B) for h in range(HD)]).reshape(B, HD, Q, K, C)
    V = V * (inds[..., 0] >= 0)[..., None]
    AV = torch.einsum("bhqk,bhqkc->bhqc", A, V)                   # (B, HD, Q, C), q = (t, y, x)
    want = AV.reshape(B, HD, T, H, W, C).permute(0, 2, 1, 5, 3, 4).reshape(B, T, HD * C, H, W)
    got = stnls.agg.wpsum(vid, A, inds, ps=1, stride0=1)
    _close(got, want, torch.float64)


def test_module_equals_functional():
    cfg, vid, weights, inds = _case(5, torch.float64)
    mod = stnls.agg.WeightedPatchSum(**_params(cfg))
    assert isinstance(mod, torch.nn.Module)
    assert torch.equal(mod(vid, weights, inds), stnls.agg.wpsum(vid, weights, inds, **_params(cfg)))
    assert "ps=" in repr(mod)


def test_module_reads_its_attributes():
    """Each call reads the module's attributes, as the 2023 module did."""
    cfg, vid, weights, inds = _case(5, torch.float64)
    p = _params(cfg)
    mod = stnls.agg.WeightedPatchSum(**{**p, "ps": p["ps"] + 2})
    mod.ps = p["ps"]
    assert torch.equal(mod(vid, weights, inds), stnls.agg.wpsum(vid, weights, inds, **p))
    mod.ps = 0
    with pytest.raises(ValueError, match="^ps: expected >= 1"):
        mod(vid, weights, inds)


def test_inds_outside_the_video_add_nothing():
    vid = torch.ones(1, 1, 1, 2, 2, dtype=torch.float64)
    weights = torch.ones(1, 1, 4, 3, dtype=torch.float64)
    inds = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 2, 5]] * 4, dtype=torch.int32).reshape(1, 1, 4, 3, 3)
    out = stnls.agg.wpsum(vid, weights, inds, ps=1)
    assert torch.equal(out, torch.ones_like(vid))


# ----------------------------------------------------------------------------- backward
@pytest.mark.parametrize("seed", range(16))
def test_autograd_matches_reference_autograd(seed):
    """Gradients to vid and weights equal those of the differentiable reference."""
    cfg, vid, weights, inds = _case(seed)
    vid.requires_grad_(True)
    weights.requires_grad_(True)
    out = stnls.agg.wpsum(vid, weights, inds, **_params(cfg))
    g = torch.randn_like(out)
    gv, gw = torch.autograd.grad((out * g).sum(), (vid, weights))
    v64 = vid.detach().double().requires_grad_(True)
    w64 = weights.detach().double().requires_grad_(True)
    ref = R.wpsum(v64, w64, inds, **_params(cfg))
    rv, rw = torch.autograd.grad((ref * g.double()).sum(), (v64, w64))
    assert gv.dtype == vid.dtype and gw.dtype == weights.dtype
    _close(gv, rv, cfg["dtype"])
    _close(gw, rw, cfg["dtype"])


@pytest.mark.parametrize("seed", range(6))
def test_array_backward_equals_torch_autograd(seed):
    cfg, vid, weights, inds = _case(seed, torch.float64)
    vid.requires_grad_(True)
    weights.requires_grad_(True)
    out = stnls.agg.wpsum(vid, weights, inds, **_params(cfg))
    g = torch.randn_like(out)
    gv, gw = torch.autograd.grad((out * g).sum(), (vid, weights))
    nv, nw = stnls.agg.wpsum_backward(g.numpy(), vid.detach().numpy(), weights.detach().numpy(),
                                      inds.numpy(), **_params(cfg))
    assert isinstance(nv, np.ndarray) and isinstance(nw, np.ndarray)
    _close(nv, gv, torch.float64)
    _close(nw, gw, torch.float64)
    tv, tw = stnls.agg.wpsum_backward(g, vid.detach(), weights.detach(), inds, **_params(cfg))
    _close(tv, gv, torch.float64)
    _close(tw, gw, torch.float64)


GRAD_CASES = [  # (ps, stride0, pt, dilation, reflect_bounds, ndim, fast)
    (1, 1, 1, 1, True, 5, False),
    (3, 1, 2, 1, True, 6, True),
    (2, 2, 1, 2, False, 5, True),
    (3, 2, 2, 1, True, 5, True),
]


@pytest.mark.parametrize("ps,stride0,pt,dil,refl,ndim,fast", GRAD_CASES)
def test_gradcheck(ps, stride0, pt, dil, refl, ndim, fast):
    """float64 gradcheck to vid and weights; full on the smallest case, fast_mode (a random
    projection) elsewhere since full gradcheck costs one call per input and output entry."""
    rng = np.random.default_rng(ps + 10 * stride0)
    B, HD, T, C, H, W, K = 1, 2, 2, 1, 2, 3, 2
    if not fast:
        T, H, W = 1, 2, 2
    shape = (B, T, HD * C, H, W) if ndim == 5 else (B, HD, T, C, H, W)
    Q = R.num_queries(T, H, W, stride0)
    vid = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(B, HD, Q, K, dtype=torch.float64, requires_grad=True)
    inds = R.random_inds(rng, B, HD, Q, K, T, H, W)
    fn = lambda v, w: stnls.agg.wpsum(v, w, inds, ps, stride0, pt, dil, refl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (vid, weights), fast_mode=fast)


# ----------------------------------------------------------------------------- devices
@pytest.mark.parametrize("seed", range(6))
def test_device_matches_reference(device, seed):
    cfg, vid, weights, inds = _case(seed)
    p = _params(cfg)
    v = vid.to(device).requires_grad_(True)
    w = weights.to(device).requires_grad_(True)
    out = stnls.agg.wpsum(v, w, inds.to(device), **p)
    assert out.device.type == device
    _close(out.detach().cpu(), R.wpsum(vid, weights, inds, **p), cfg["dtype"])
    g = torch.randn(out.shape, dtype=out.dtype)
    gv, gw = torch.autograd.grad((out * g.to(device)).sum(), (v, w))
    v64 = vid.double().requires_grad_(True)
    w64 = weights.double().requires_grad_(True)
    rv, rw = torch.autograd.grad((R.wpsum(v64, w64, inds, **p) * g.double()).sum(), (v64, w64))
    _close(gv.cpu(), rv, cfg["dtype"])
    _close(gw.cpu(), rw, cfg["dtype"])
    for det in (True, False):
        dv, dw = stnls.agg.wpsum_backward(g.to(device), v.detach(), w.detach(), inds.to(device),
                                          deterministic=det, **p)
        _close(dv.cpu(), rv, cfg["dtype"])
        _close(dw.cpu(), rw, cfg["dtype"])
    # deterministic=True (the default) is bitwise repeatable.
    runs = [stnls.agg.wpsum_backward(g.to(device), v.detach(), w.detach(), inds.to(device), **p) for _ in range(2)]
    assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


# ----------------------------------------------------------------------------- bad inputs
def _bad_cases(xp):
    f64 = np.float64
    B, T, C, H, W, HD, K = 1, 2, 4, 5, 5, 2, 3
    Q = R.num_queries(T, H, W, 2)
    vid = np.zeros((B, T, C, H, W), f64)
    weights = np.zeros((B, HD, Q, K), f64)
    inds = np.zeros((B, HD, Q, K, 3), np.int32)
    arr = (lambda a: a) if xp == "numpy" else torch.from_numpy
    w = lambda v, wt, i, **kw: stnls.agg.wpsum(arr(v), arr(wt), arr(i), **{"stride0": 2, **kw})  # noqa: E731
    return [
        ("weights", ValueError, lambda: w(vid, weights[:, :, 1:].copy(), inds)),            # Q off the grid
        ("weights", ValueError, lambda: w(vid, weights[..., 1:].copy(), inds)),             # K differs from inds
        ("inds", ValueError, lambda: w(vid, weights, inds, stride0=1)),                     # grid of stride0=1
        ("inds", ValueError, lambda: w(vid, weights, inds[..., :2].copy())),                # last dim 2
        ("inds", TypeError, lambda: w(vid, weights, inds.astype(f64))),                     # float inds
        ("vid", TypeError, lambda: w(vid.astype(np.int32), weights, inds)),                 # int video
        ("weights", TypeError, lambda: w(vid, weights.astype(np.float32), inds)),           # dtype mix
        ("vid", ValueError, lambda: w(np.zeros((B, T, 3, H, W), f64), weights, inds)),      # C % HD
        ("vid", (ValueError, TypeError), lambda: w(np.zeros((T, C, H, W), f64), weights, inds)),  # 4-d
        ("vid", ValueError, lambda: w(np.zeros((B, 3, T, 2, H, W), f64), weights, inds)),  # 6-d, HD != 2
        ("ps", ValueError, lambda: w(vid, weights, inds, ps=0)),
        ("dilation", ValueError, lambda: w(vid, weights, inds, dilation=-1)),
    ]


@pytest.mark.parametrize("xp", ["numpy", "torch"])
@pytest.mark.parametrize("case", range(len(_bad_cases("numpy"))))
def test_bad_inputs_raise_naming_the_argument(xp, case):
    name, exc, call = _bad_cases(xp)[case]
    with pytest.raises(exc) as info:
        call()
    assert name in str(info.value), f"{name!r} not in message {str(info.value)!r}"


def test_backward_bad_grad_shape():
    vid = np.zeros((1, 1, 2, 3, 3))
    weights = np.zeros((1, 1, 9, 2))
    inds = np.zeros((1, 1, 9, 2, 3), np.int32)
    with pytest.raises(ValueError, match="grad"):
        stnls.agg.wpsum_backward(np.zeros((1, 1, 2, 3, 4)), vid, weights, inds)


def test_negative_strides():
    """A video walking its frames, rows or columns backwards (negative T, H or W stride) is
    refused with the argument's name by wpsum and the patch ops; weights and inds views with
    negative strides are read as they are (same result as a contiguous copy)."""
    rng = np.random.default_rng(0)
    vid = rng.standard_normal((1, 2, 4, 5, 6))
    weights = rng.standard_normal((1, 2, 60, 3))
    inds = np.stack([rng.integers(0, n, (1, 2, 60, 3)) for n in (2, 5, 6)], -1).astype(np.int32)
    for axis in (1, 3, 4):
        with pytest.raises(ValueError, match=r"^vid: expected non-negative strides along T, H and W"):
            stnls.agg.wpsum(np.flip(vid, axis), weights, inds)
        with pytest.raises(ValueError, match=r"^vid: expected non-negative strides along T, H and W"):
            stnls.tile.unfold(np.flip(vid, axis), 3)
    want = stnls.agg.wpsum(vid, np.ascontiguousarray(weights[:, :, ::-1]), np.ascontiguousarray(inds[:, :, :, ::-1]))
    got = stnls.agg.wpsum(vid, weights[:, :, ::-1], inds[:, :, :, ::-1])
    np.testing.assert_array_equal(got, want)
