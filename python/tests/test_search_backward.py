"""Backward of stnls.search: float64 gradcheck of the torch path, gradients against the
reference (autograd through the brute-force distances), the array nls_backward against
torch, and inds carrying no gradient."""
import numpy as np
import pytest

import reference as ref
import search_cases as sc

stnls = pytest.importorskip("stnls", reason="stnls is not built/installed")
torch = pytest.importorskip("torch")

BASE = dict(ws=3, wt=1, ps=3, k=4, nheads=1, dist_type="prod", stride0=2, stride1=1,
            dilation=1, pt=1, reflect_bounds=True, full_ws=True, anchor_self=False,
            remove_self=False, use_adj=False, off_H0=0, off_W0=0, off_H1=0, off_W1=0,
            dtype="float64", data="normal", B=1, T=2, C=2, H=4, W=5, flow="small", seed=3)

GRADCHECK_CASES = {
    "prod-reflect": {},
    "l2-reflect": dict(dist_type="l2"),
    "prod-noreflect": dict(reflect_bounds=False),
    "l2-noreflect-pt2": dict(dist_type="l2", reflect_bounds=False, pt=2),
    # H=5: at H=4, dilation 2 reflects rows into mirrored patches that tie exactly
    "prod-pt2-dilation2": dict(pt=2, dilation=2, H=5),
    "l2-heads2": dict(dist_type="l2", nheads=2, C=4),
    "prod-anchor": dict(anchor_self=True),
    "l2-padding": dict(dist_type="l2", full_ws=False, k=-1),
    # reflection off: reflected borders plus shifted candidate patches create exact ties
    # (mirrored candidate patches), where a finite-difference step would change the selection
    "prod-remove-offsets": dict(remove_self=True, off_H0=1, off_W1=-1, use_adj=True,
                                reflect_bounds=False),
    "l2-use-adj": dict(dist_type="l2", use_adj=True, ps=2, wt=0),
    "l2-ws-1-stride1-2": dict(dist_type="l2", ws=-1, stride1=2, k=-1, wt=0, B=2),
}


def case(**over):
    c = dict(BASE)
    c.update(over)
    return c


def nls(c, vid0, vid1, fflow, bflow):
    return stnls.search.nls(vid0, vid1, fflow, bflow, c["ws"], c["wt"], c["ps"], c["k"],
                            c["nheads"], deterministic=c.get("deterministic", True),
                            **sc.search_kwargs(c))


def to_torch(arrays, device):
    return [None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device)
            for a in arrays]


@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "atomic"])
@pytest.mark.parametrize("name", sorted(GRADCHECK_CASES))
def test_gradcheck_float64(name, deterministic, device):
    c = case(**GRADCHECK_CASES[name], deterministic=deterministic)
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    _, inds = nls(c, vid0, vid1, fflow, bflow)
    valid = inds[..., 0] >= 0
    if name == "l2-padding":
        assert not valid.all(), "this case must contain padded entries"

    def f(v0, v1):
        d, i = nls(c, v0, v1, fflow, bflow)
        # the selection must not change under the finite-difference steps
        assert torch.equal(i, inds)
        return d[valid]

    v0 = vid0.clone().requires_grad_(True)
    v1 = vid1.clone().requires_grad_(True)
    # The atomic backward (deterministic=False, CUDA) may differ in the last bits between
    # two runs; gradcheck's reentrancy check allows that much.
    assert torch.autograd.gradcheck(f, (v0, v1), eps=1e-6, atol=1e-6, rtol=1e-5,
                                    nondet_tol=0.0 if deterministic else 1e-12)


def _ref_and_lib_grads(c, device):
    arrays = sc.make_inputs(c)
    vid0, vid1, fflow, bflow = to_torch(arrays, device)
    vid0.requires_grad_(True)
    vid1.requires_grad_(True)
    dists, inds = nls(c, vid0, vid1, fflow, bflow)
    g = torch.randn(dists.shape, dtype=dists.dtype,
                    generator=torch.Generator().manual_seed(c["seed"])).to(device)
    # padded entries get a non-zero gradient too: they must contribute nothing
    g0, g1 = torch.autograd.grad(dists, [vid0, vid1], grad_outputs=g)
    kw = sc.search_kwargs(c)
    args = (c["ws"], c["wt"], c["ps"], c["k"], c["nheads"])
    r0, r1 = ref.grads(g, inds, arrays[0], arrays[1], *args, **kw)
    if c["dtype"] == "float32":
        e0, e1 = ref.grads(g, inds, arrays[0], arrays[1], *args, dtype=np.float32, **kw)
        tol0 = 2 * np.abs(e0 - r0).max() + 1e-5 * max(1.0, np.abs(r0).max())
        tol1 = 2 * np.abs(e1 - r1).max() + 1e-5 * max(1.0, np.abs(r1).max())
    else:
        tol0 = 1e-10 * max(1.0, np.abs(r0).max())
        tol1 = 1e-10 * max(1.0, np.abs(r1).max())
    return (g0, g1), (r0, r1), (tol0, tol1), (g, inds, arrays)


BACKWARD_CASES = [sc.random_case(50_000 + s) for s in range(80)]


@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "atomic"])
@pytest.mark.parametrize("c", BACKWARD_CASES, ids=sc.describe)
def test_backward_matches_reference(c, deterministic, device):
    if not deterministic and device == "cpu":
        pytest.skip("the CPU backward has one (deterministic) path; gradcheck covers the flag")
    c = dict(c, deterministic=deterministic)
    (g0, g1), (r0, r1), (tol0, tol1), _ = _ref_and_lib_grads(c, device)
    assert g0.dtype == (torch.float32 if c["dtype"] == "float32" else torch.float64)
    for name, got, exp, tol in (("grad_vid0", g0, r0, tol0), ("grad_vid1", g1, r1, tol1)):
        got = sc.to_numpy(got)
        assert got.shape == exp.shape
        err = np.abs(got - exp)
        if err.max() > tol:
            pos = tuple(int(x) for x in np.argwhere(err == err.max())[0])
            raise AssertionError(f"{name} off by {err.max():.3g} > {tol:.3g} at {pos}: "
                                 f"expected {exp[pos]!r}, got {got[pos]!r}")


@pytest.mark.parametrize("shape", ["S2", "ps2-dil2-noreflect", "l2-pt2-stride2"])
def test_large_backward_matches_reference(shape, device):
    # Calls of more (query, neighbour, tap, channel) terms than the CUDA scatters take
    # (40 M): the CUDA backward gathers, with one thread per (query or location, tap) at
    # these sizes (the tap-split gathers) for both values of deterministic.
    if device == "cpu":
        pytest.skip("sizes that choose among the CUDA backward paths; the CPU has one path")
    over = {"S2": {},  # S2's parameters on a 96 x 96 video: 66 M terms
            "ps2-dil2-noreflect": dict(ps=2, dilation=2, reflect_bounds=False, C=32, nheads=1, k=12),
            "l2-pt2-stride2": dict(dist_type="l2", pt=2, stride0=2, C=8, nheads=1, k=16, H=144, W=144)}
    for deterministic in (True, False):
        c = case(**dict(dict(ws=5, wt=2, ps=3, k=10, nheads=2, stride0=1, dtype="float32", B=1, T=5,
                             C=16, H=96, W=96, flow="small", seed=7), **over[shape]),
                 deterministic=deterministic)
        (g0, g1), (r0, r1), (tol0, tol1), _ = _ref_and_lib_grads(c, device)
        np.testing.assert_allclose(sc.to_numpy(g0), r0, rtol=0, atol=tol0)
        np.testing.assert_allclose(sc.to_numpy(g1), r1, rtol=0, atol=tol1)


@pytest.mark.parametrize("seed", range(12))
def test_numpy_backward_equals_torch(seed):
    c = sc.random_case(60_000 + seed)
    (g0, g1), (r0, r1), (tol0, tol1), (g, inds, arrays) = _ref_and_lib_grads(c, "cpu")
    n0, n1 = stnls.search.nls_backward(g.numpy(), inds.numpy(), arrays[0], arrays[1], c["ws"],
                                       c["wt"], c["ps"], c["k"], c["nheads"],
                                       **sc.search_kwargs(c))
    assert isinstance(n0, np.ndarray) and isinstance(n1, np.ndarray)
    assert n0.dtype == arrays[0].dtype and n1.dtype == arrays[1].dtype
    assert n0.shape == arrays[0].shape and n1.shape == arrays[1].shape
    # one core computes both: identical up to summation order
    np.testing.assert_allclose(n0, g0.numpy(), rtol=0, atol=tol0)
    np.testing.assert_allclose(n1, g1.numpy(), rtol=0, atol=tol1)
    np.testing.assert_allclose(n0, r0, rtol=0, atol=tol0)
    np.testing.assert_allclose(n1, r1, rtol=0, atol=tol1)


def test_inds_not_differentiable(device):
    c = case()
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    vid0.requires_grad_(True)
    vid1.requires_grad_(True)
    dists, inds = nls(c, vid0, vid1, fflow, bflow)
    assert dists.requires_grad and dists.grad_fn is not None
    assert not inds.requires_grad and inds.grad_fn is None
    assert inds.dtype == torch.int32


def test_grad_to_one_input_only(device):
    c = case(dist_type="l2")
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    vid1.requires_grad_(True)
    dists, inds = nls(c, vid0, vid1, fflow, bflow)
    g = torch.ones_like(dists)
    (g1,) = torch.autograd.grad(dists, [vid1], grad_outputs=g)
    _, r1 = ref.grads(g, inds, vid0, vid1, c["ws"], c["wt"], c["ps"], c["k"], c["nheads"],
                      **sc.search_kwargs(c))
    np.testing.assert_allclose(sc.to_numpy(g1), r1, rtol=0, atol=1e-10 * max(1, np.abs(r1).max()))


def test_same_video_both_sides(device):
    """nls(v, v): the gradient is the sum of both sides' contributions."""
    c = case(k=-1)
    vid0, _, fflow, bflow = to_torch(sc.make_inputs(c), device)
    v = vid0.clone().requires_grad_(True)
    dists, inds = nls(c, v, v, fflow, bflow)
    g = torch.randn(dists.shape, dtype=dists.dtype, generator=torch.Generator().manual_seed(1))
    (gv,) = torch.autograd.grad(dists, [v], grad_outputs=g.to(device))
    r0, r1 = ref.grads(g, inds, vid0, vid0, c["ws"], c["wt"], c["ps"], c["k"], c["nheads"],
                       **sc.search_kwargs(c))
    np.testing.assert_allclose(sc.to_numpy(gv), r0 + r1, rtol=0, atol=1e-10 * max(1, np.abs(r0 + r1).max()))


def test_six_d_backward_equals_five_d(device):
    c = case(nheads=2, C=4, dist_type="l2")
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    B, T, C, H, W = vid0.shape
    as6 = lambda v: v.view(B, T, 2, C // 2, H, W).permute(0, 2, 1, 3, 4, 5)  # noqa: E731
    a0, a1 = vid0.clone().requires_grad_(True), vid1.clone().requires_grad_(True)
    d5, _ = nls(c, a0, a1, fflow, bflow)
    g = torch.randn(d5.shape, dtype=d5.dtype, generator=torch.Generator().manual_seed(2)).to(device)
    g50, g51 = torch.autograd.grad(d5, [a0, a1], grad_outputs=g)
    b0, b1 = as6(vid0).clone().requires_grad_(True), as6(vid1).clone().requires_grad_(True)
    d6, _ = nls(c, b0, b1, fflow, bflow)
    g60, g61 = torch.autograd.grad(d6, [b0, b1], grad_outputs=g)
    assert g60.shape == b0.shape
    torch.testing.assert_close(as6(g50), g60, rtol=0, atol=1e-12)
    torch.testing.assert_close(as6(g51), g61, rtol=0, atol=1e-12)


def test_backward_repeatable(device):
    c = case(k=-1, dtype="float32", dist_type="l2", B=2, T=3, H=7, W=7, stride0=1)
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    vid0.requires_grad_(True)
    vid1.requires_grad_(True)
    dists, _ = nls(c, vid0, vid1, fflow, bflow)
    g = torch.randn(dists.shape, generator=torch.Generator().manual_seed(3)).to(device)
    first = torch.autograd.grad(dists, [vid0, vid1], grad_outputs=g, retain_graph=True)
    for _ in range(3):
        again = torch.autograd.grad(dists, [vid0, vid1], grad_outputs=g, retain_graph=True)
        assert all(torch.equal(a, b) for a, b in zip(first, again))


def test_atomic_backward_heavy_overlap(device):
    # Many (query, neighbour, tap) terms per pixel (stride0 = 1, ps = 5, every candidate):
    # the atomic backward must lose no update.
    c = case(k=-1, ps=5, ws=5, dtype="float32", B=1, T=3, C=3, H=9, W=9, stride0=1,
             deterministic=False)
    (g0, g1), (r0, r1), (tol0, tol1), _ = _ref_and_lib_grads(c, device)
    np.testing.assert_allclose(sc.to_numpy(g0), r0, rtol=0, atol=tol0)
    np.testing.assert_allclose(sc.to_numpy(g1), r1, rtol=0, atol=tol1)
