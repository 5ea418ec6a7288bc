"""Forward of stnls.search (nls, NonLocalSearch) against the brute-force reference, on
random small configurations covering every parameter, plus ties, layouts (6-d,
non-contiguous), batchsize, the legacy keywords and the README snippets."""
import numpy as np
import pytest

import reference as ref
import search_cases as sc

stnls = pytest.importorskip("stnls", reason="stnls is not built/installed")
torch = pytest.importorskip("torch")

N_TORCH_CASES = 400
N_NUMPY_CASES = 120
CASES = [sc.random_case(s) for s in range(N_TORCH_CASES)]
NUMPY_CASES = [sc.random_case(100_000 + s) for s in range(N_NUMPY_CASES)]


def run_lib(c, vid0, vid1, fflow, bflow, **extra):
    kw = sc.search_kwargs(c)
    kw.update(extra)
    return stnls.search.nls(vid0, vid1, fflow, bflow, c["ws"], c["wt"], c["ps"], c["k"],
                            c["nheads"], **kw)


def run_ref(c, vid0, vid1, fflow, bflow):
    return ref.nls(vid0, vid1, fflow, bflow, c["ws"], c["wt"], c["ps"], c["k"], c["nheads"],
                   **sc.search_kwargs(c))


def to_torch(arrays, device):
    return [None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device)
            for a in arrays]


# ----------------------------------------------------------------------------- random cases
@pytest.mark.parametrize("case", CASES, ids=sc.describe)
def test_torch_matches_reference(case, device):
    arrays = sc.make_inputs(case)
    ref_d, ref_i = run_ref(case, *arrays)
    vid0, vid1, fflow, bflow = to_torch(arrays, device)
    dists, inds = run_lib(case, vid0, vid1, fflow, bflow)
    assert isinstance(dists, torch.Tensor) and isinstance(inds, torch.Tensor)
    assert dists.device.type == device and inds.device.type == device
    sc.check_result(case, dists, inds, ref_d, ref_i, arrays[0], arrays[1])


SMALL_PATCH_CASES = [sc.small_patch_case(200_000 + s) for s in range(80)]


@pytest.mark.parametrize("case", SMALL_PATCH_CASES, ids=sc.describe)
def test_small_patches_match_reference(case, device):
    """Shapes of the CUDA thread-per-query forward (one thread per query, its own top-k
    list), grid data included, so that its tie order is checked against the spec's."""
    arrays = sc.make_inputs(case)
    ref_d, ref_i = run_ref(case, *arrays)
    dists, inds = run_lib(case, *to_torch(arrays, device))
    sc.check_result(case, dists, inds, ref_d, ref_i, arrays[0], arrays[1])


ROW_PATCH_CASES = [sc.small_patch_case(300_000 + s, sc.ROW_VARIANTS) for s in range(40)]


@pytest.mark.parametrize("case", ROW_PATCH_CASES, ids=sc.describe)
def test_row_split_patches_match_reference(case, device):
    """Shapes of the CUDA row-split forward (ps lanes per query, one patch row each, the
    candidates' sums handed down the lanes), grid data included (exact ties)."""
    arrays = sc.make_inputs(case)
    ref_d, ref_i = run_ref(case, *arrays)
    dists, inds = run_lib(case, *to_torch(arrays, device))
    sc.check_result(case, dists, inds, ref_d, ref_i, arrays[0], arrays[1])


GROUP_CASES = [sc.channel_group_case(500_000 + s) for s in range(40)]


@pytest.mark.parametrize("case", GROUP_CASES, ids=sc.describe)
def test_channel_groups_match_reference(case, device):
    """Wide heads with small patches (the channel-group summation order) against the
    brute-force reference, every parameter drawn as in the random cases."""
    arrays = sc.make_inputs(case)
    ref_d, ref_i = run_ref(case, *arrays)
    dists, inds = run_lib(case, *to_torch(arrays, device))
    sc.check_result(case, dists, inds, ref_d, ref_i, arrays[0], arrays[1])


SHARED_SUMS_CASES = [sc.shared_sums_case(400_000 + s) for s in range(24)]


@pytest.mark.parametrize("case", SHARED_SUMS_CASES, ids=sc.describe)
def test_shared_sums_match_reference(case, device):
    """Shapes of the CUDA shared-sums forward (a block of queries sums each pixel's
    channels once; 16 or more channels per head, so the pixel-sums summation order on
    every backend), grid data included (exact ties)."""
    arrays = sc.make_inputs(case)
    ref_d, ref_i = run_ref(case, *arrays)
    dists, inds = run_lib(case, *to_torch(arrays, device))
    sc.check_result(case, dists, inds, ref_d, ref_i, arrays[0], arrays[1])


@pytest.mark.parametrize("case", NUMPY_CASES, ids=sc.describe)
def test_numpy_matches_reference(case):
    arrays = sc.make_inputs(case)
    ref_d, ref_i = run_ref(case, *arrays)
    dists, inds = run_lib(case, *arrays)
    assert isinstance(dists, np.ndarray) and isinstance(inds, np.ndarray)
    sc.check_result(case, dists, inds, ref_d, ref_i, arrays[0], arrays[1])


# ----------------------------------------------------------------------------- ties
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("dist_type", ["prod", "l2"])
@pytest.mark.parametrize("ws,stride1,full_ws,anchor", [(3, 1, True, False), (4, 1, False, False),
                                                        (-1, 2, True, True), (5, 2, False, True)])
def test_ties_follow_canonical_order(dtype, dist_type, ws, stride1, full_ws, anchor, device):
    """A constant video ties every candidate: indices must come in canonical order."""
    rng = np.random.default_rng(7)
    vid = np.full((2, 3, 2, 7, 6), 0.5, dtype=dtype)
    fflow = rng.normal(scale=3.0, size=(2, 3, 2, 7, 6)).astype(dtype)
    bflow = rng.normal(scale=3.0, size=(2, 3, 2, 7, 6)).astype(dtype)
    c = dict(ws=ws, wt=1, ps=3, k=-1, nheads=2, dist_type=dist_type, stride0=2, stride1=stride1,
             dilation=1, pt=1, reflect_bounds=True, full_ws=full_ws, anchor_self=anchor,
             remove_self=False, use_adj=False, off_H0=0, off_W0=0, off_H1=0, off_W1=0,
             dtype=dtype, data="grid")
    ref_d, ref_i = run_ref(c, vid, vid, fflow, bflow)
    dists, inds = run_lib(c, *to_torch([vid, vid, fflow, bflow], device))
    sc.check_result(c, dists, inds, ref_d, ref_i)
    # and in canonical order indeed: reconstruct it for one query from the spec's rules
    b, t, h, w = 1, 2, 2, 4
    q = t * 4 * 3 + (h // 2) * 3 + w // 2
    cands = [(u, y, x) for (u, y, x, ok) in
             ref.candidates(ref.Params(ws, 1, 3, -1, stride1=stride1, full_ws=full_ws),
                            fflow, bflow, b, t, h, w, 3, 7, 6) if ok]
    if anchor:
        cands = [(t, h, w)] + [x for x in cands if x != (t, h, w)]
    got = [tuple(x) for x in sc.to_numpy(inds)[b, 0, q] if x[0] >= 0]
    assert got == cands[:len(got)]


@pytest.mark.parametrize("dist_type", ["prod", "l2"])
def test_anchor_self_with_k1_returns_the_query_only(dist_type, device):
    """k=1 with anchor_self leaves no room for other candidates: the self entry only."""
    c = small_case(k=1, anchor_self=True, dist_type=dist_type, nheads=1, C=2, stride0=3)
    arrays = sc.make_inputs(c)
    ref_d, ref_i = run_ref(c, *arrays)
    dists, inds = run_lib(c, *to_torch(arrays, device))
    sc.check_result(c, dists, inds, ref_d, ref_i, arrays[0], arrays[1])
    q = ref.query_grid(3, 9, 8, 3)
    np.testing.assert_array_equal(sc.to_numpy(inds)[0, 0, :, 0], q)


# ----------------------------------------------------------------------------- API forms
def small_case(**over):
    c = dict(ws=5, wt=1, ps=3, k=7, nheads=2, dist_type="prod", stride0=2, stride1=1,
             dilation=1, pt=1, reflect_bounds=True, full_ws=True, anchor_self=False,
             remove_self=False, use_adj=False, off_H0=0, off_W0=0, off_H1=0, off_W1=0,
             dtype="float64", data="normal", B=2, T=3, C=4, H=9, W=8, flow="large", seed=5)
    c.update(over)
    return c


@pytest.mark.parametrize("dist_type", ["prod", "l2"])
def test_module_equals_functional(dist_type, device):
    c = small_case(dist_type=dist_type, anchor_self=True, pt=2, dilation=2)
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    kw = sc.search_kwargs(c)
    search = stnls.search.NonLocalSearch(c["ws"], c["wt"], c["ps"], c["k"], c["nheads"], **kw)
    assert isinstance(search, torch.nn.Module)
    d1, i1 = search(vid0, vid1, fflow, bflow)
    d2, i2 = run_lib(c, vid0, vid1, fflow, bflow)
    assert torch.equal(d1, d2) and torch.equal(i1, i2)


def test_module_reads_its_attributes(device):
    """As the 2023 module did, each call reads the parameters from the attributes: one
    changed after construction changes the next search (against the reference) and is
    checked as at construction."""
    c = small_case(k=5, nheads=1, C=2, stride0=2, ws=5)
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    search = stnls.search.NonLocalSearch(3, 1, 3, 7, 1, stride0=2)
    search.ws, search.k = 5, 5
    assert search.params["ws"] == 5 and "k=5" in repr(search)
    d, i = search(vid0, vid1, fflow, bflow)
    ref_d, ref_i = run_ref(c, *sc.make_inputs(c))
    sc.check_result(c, d, i, ref_d, ref_i)
    search.k = 2.5
    with pytest.raises(TypeError, match="^k: expected an integer"):
        search(vid0, vid1, fflow, bflow)


def test_defaults_match_spec(device):
    """nls and NonLocalSearch default to prod, stride0=4, ..., anchor_self=False."""
    c = small_case(k=5, nheads=1, C=2, stride0=4)
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    d, i = stnls.search.nls(vid0, vid1, fflow, bflow, 5, 1, 3, 5)
    d2, i2 = stnls.search.NonLocalSearch(5, 1, 3, 5)(vid0, vid1, fflow, bflow)
    ref_d, ref_i = run_ref(c, *sc.make_inputs(c))
    sc.check_result(c, d, i, ref_d, ref_i)
    sc.check_result(c, d2, i2, ref_d, ref_i)


def test_six_d_equals_five_d(device):
    c = small_case(nheads=2, C=6)
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    d5, i5 = run_lib(c, vid0, vid1, fflow, bflow)
    B, T, C, H, W = vid0.shape
    as6 = lambda v: v.view(B, T, 2, C // 2, H, W).permute(0, 2, 1, 3, 4, 5)  # noqa: E731
    d6, i6 = run_lib(c, as6(vid0), as6(vid1), fflow, bflow)  # strided view
    assert torch.equal(d5, d6) and torch.equal(i5, i6)
    d6, i6 = run_lib(c, as6(vid0).contiguous(), as6(vid1).contiguous(), fflow, bflow)
    assert torch.equal(d5, d6) and torch.equal(i5, i6)


def test_six_d_numpy_equals_five_d():
    c = small_case(nheads=2, C=4)
    vid0, vid1, fflow, bflow = sc.make_inputs(c)
    d5, i5 = run_lib(c, vid0, vid1, fflow, bflow)
    B, T, C, H, W = vid0.shape
    as6 = lambda v: v.reshape(B, T, 2, C // 2, H, W).transpose(0, 2, 1, 3, 4, 5)  # noqa: E731
    d6, i6 = run_lib(c, as6(vid0), as6(vid1), fflow, bflow)
    np.testing.assert_array_equal(d5, d6)
    np.testing.assert_array_equal(i5, i6)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_non_contiguous_torch(dtype, device):
    c = small_case(dtype=dtype, dist_type="l2", full_ws=False)
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    base, _ = run_lib(c, vid0, vid1, fflow, bflow)
    base_i = run_lib(c, vid0, vid1, fflow, bflow)[1]
    # a channel slice of a larger video
    big0 = torch.randn(2, 3, 9, 9, 8, dtype=vid0.dtype, device=device)
    big0[:, :, 1:9:2] = vid0
    big1 = torch.randn(2, 3, 9, 9, 8, dtype=vid0.dtype, device=device)
    big1[:, :, 3:7] = vid1
    d, i = run_lib(c, big0[:, :, 1:9:2], big1[:, :, 3:7], fflow, bflow)
    assert torch.equal(d, base) and torch.equal(i, base_i)
    # transposed storage (H and W swapped in memory), flows included
    tr = lambda v: v.transpose(-1, -2).contiguous().transpose(-1, -2)  # noqa: E731
    assert not tr(vid0).is_contiguous()
    d, i = run_lib(c, tr(vid0), tr(vid1), tr(fflow), tr(bflow))
    assert torch.equal(d, base) and torch.equal(i, base_i)
    # batch-reversed view (negative stride is not expressible in torch; use a permuted batch)
    perm = lambda v: v.permute(1, 0, 2, 3, 4).contiguous().permute(1, 0, 2, 3, 4)  # noqa: E731
    d, i = run_lib(c, perm(vid0), perm(vid1), perm(fflow), perm(bflow))
    assert torch.equal(d, base) and torch.equal(i, base_i)


def test_non_contiguous_numpy():
    c = small_case(dtype="float32", anchor_self=True)
    vid0, vid1, fflow, bflow = sc.make_inputs(c)
    base_d, base_i = run_lib(c, vid0, vid1, fflow, bflow)
    big = np.zeros((2, 3, 8, 9, 8), dtype=np.float32)
    big[:, :, ::2] = vid0
    d, i = run_lib(c, big[:, :, ::2], vid1, fflow, bflow)
    np.testing.assert_array_equal(d, base_d)
    np.testing.assert_array_equal(i, base_i)
    # negative strides (reversed batch) and Fortran order
    d, i = run_lib(c, vid0[::-1], vid1[::-1], fflow[::-1], bflow[::-1])
    np.testing.assert_array_equal(d, base_d[::-1])
    np.testing.assert_array_equal(i, base_i[::-1])
    d, i = run_lib(c, np.asfortranarray(vid0), np.asfortranarray(vid1), fflow, bflow)
    np.testing.assert_array_equal(d, base_d)
    np.testing.assert_array_equal(i, base_i)


@pytest.mark.parametrize("batchsize", [1, 3, 7, 50, -1])
def test_batchsize_does_not_change_results(batchsize, device):
    c = small_case(k=-1, remove_self=True, dtype="float32")
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    d0, i0 = run_lib(c, vid0, vid1, fflow, bflow)
    d, i = run_lib(c, vid0, vid1, fflow, bflow, batchsize=batchsize)
    assert torch.equal(d, d0) and torch.equal(i, i0)
    search = stnls.search.NonLocalSearch(c["ws"], c["wt"], c["ps"], c["k"], c["nheads"],
                                         **sc.search_kwargs(c))
    d, i = search(vid0, vid1, fflow, bflow, batchsize=batchsize)
    assert torch.equal(d, d0) and torch.equal(i, i0)


def test_flow_none_equals_zero_flow(device):
    c = small_case(flow="zero")
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    d0, i0 = run_lib(c, vid0, vid1, fflow, bflow)
    d1, i1 = run_lib(c, vid0, vid1, None, None)
    assert torch.equal(d0, d1) and torch.equal(i0, i1)


def test_repeatable(device):
    c = small_case(dtype="float32", k=-1)
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    d0, i0 = run_lib(c, vid0, vid1, fflow, bflow)
    for _ in range(3):
        d, i = run_lib(c, vid0, vid1, fflow, bflow)
        assert torch.equal(d, d0) and torch.equal(i, i0)


def test_legacy_tuning_keywords_have_no_effect(device):
    c = small_case()
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    d0, i0 = run_lib(c, vid0, vid1, fflow, bflow)
    knobs = dict(rbwd=True, nbwd=1, exact=False, queries_per_thread=4, neigh_per_thread=4,
                 channel_groups=-1)
    d, i = run_lib(c, vid0, vid1, fflow, bflow, **knobs)
    assert torch.equal(d, d0) and torch.equal(i, i0)
    search = stnls.search.NonLocalSearch(c["ws"], c["wt"], c["ps"], c["k"], c["nheads"],
                                         **sc.search_kwargs(c), **knobs)
    d, i = search(vid0, vid1, fflow, bflow)
    assert torch.equal(d, d0) and torch.equal(i, i0)


def test_numpy_in_numpy_out_keeps_dtype():
    for dtype in ("float32", "float64"):
        c = small_case(dtype=dtype)
        d, i = run_lib(c, *sc.make_inputs(c))
        assert isinstance(d, np.ndarray) and d.dtype == np.dtype(dtype)
        assert isinstance(i, np.ndarray) and i.dtype == np.int32


def test_numpy_equals_torch():
    c = small_case(dtype="float32", dist_type="l2", pt=2)
    arrays = sc.make_inputs(c)
    dn, inn = run_lib(c, *arrays)
    dt, it = run_lib(c, *to_torch(arrays, "cpu"))
    np.testing.assert_array_equal(dn, dt.numpy())
    np.testing.assert_array_equal(inn, it.numpy())


def test_cuda_equals_cpu(device):
    if device != "cuda":
        pytest.skip("compares the cuda backend with the cpu one")
    for seed in range(40):
        c = sc.random_case(seed) if seed % 2 else sc.channel_group_case(seed)
        arrays = sc.make_inputs(c)
        dc, ic = run_lib(c, *to_torch(arrays, "cpu"))
        dg, ig = run_lib(c, *to_torch(arrays, "cuda"))
        assert torch.equal(ic, ig.cpu()), sc.describe(c)
        torch.testing.assert_close(dg.cpu(), dc, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stride0,k,H,dist_type", [(1, 16, 64, "prod"), (2, 10, 256, "l2")])
def test_cuda_bands_equal_cpu(stride0, k, H, dist_type, device):
    """Calls large enough for the channel-group forward's workspace plan (32 channels per
    head, ps 3): vid1's rows pixel-major in a ring, in several bands on two streams, through
    the torch adapter (which allocates the workspace), against the CPU backend bit for bit."""
    if device != "cuda":
        pytest.skip("compares the cuda backend with the cpu one")
    from stnls import _C
    from stnls._params import normalize, to_core
    g = torch.Generator().manual_seed(stride0)
    vid0, vid1 = (torch.randn(1, 2, 32, H, 72, generator=g) for _ in range(2))
    fflow, bflow = (2.0 * torch.randn(1, 2, 2, H, 72, generator=g) for _ in range(2))
    kw = dict(stride0=stride0, dist_type=dist_type)
    core = to_core(normalize(7, 1, 3, k, **kw))
    assert _C.search_forward_workspace_size(core, vid0.cuda(), vid1.cuda()) > 0
    dc, ic = stnls.search.nls(vid0, vid1, fflow, bflow, 7, 1, 3, k, 1, **kw)
    dg, ig = stnls.search.nls(vid0.cuda(), vid1.cuda(), fflow.cuda(), bflow.cuda(), 7, 1, 3, k, 1, **kw)
    assert torch.equal(ig.cpu(), ic)
    assert torch.equal(dg.cpu(), dc)


# ----------------------------------------------------------------------------- README
def test_readme_snippets(device):
    """The seed's usage, unchanged (smaller sizes)."""
    ws, wt, ps, k, nheads = 9, 1, 3, 10, 2
    B, T, C, H, W = 1, 3, 8, 16, 16
    g = torch.Generator().manual_seed(0)
    vid0 = torch.randn(B, T, C, H, W, generator=g).to(device)
    vid1 = torch.randn(B, T, C, H, W, generator=g).to(device)
    fflow = torch.randn(B, T, 2, H, W, generator=g).to(device)
    bflow = torch.randn(B, T, 2, H, W, generator=g).to(device)

    search = stnls.search.NonLocalSearch(ws, wt, ps, k, nheads)
    dists, inds = search(vid0, vid1, fflow, bflow)

    Q = T * ((H - 1) // 4 + 1) * ((W - 1) // 4 + 1)
    assert dists.shape == (B, nheads, Q, k) and inds.shape == (B, nheads, Q, k, 3)
    assert inds.dtype == torch.int32 and dists.dtype == torch.float32

    dists2, inds2 = stnls.search.nls(vid0, vid1, fflow, bflow, ws, wt, ps, k, nheads)
    assert torch.equal(dists, dists2) and torch.equal(inds, inds2)

    c = small_case(ws=ws, wt=wt, ps=ps, k=k, nheads=nheads, stride0=4, dtype="float32")
    ref_d, ref_i = ref.nls(*(sc.to_numpy(v) for v in (vid0, vid1, fflow, bflow)),
                           ws, wt, ps, k, nheads)
    sc.check_result(c, dists, inds, ref_d, ref_i, sc.to_numpy(vid0), sc.to_numpy(vid1))


def test_autograd_flags(device):
    c = small_case()
    vid0, vid1, fflow, bflow = to_torch(sc.make_inputs(c), device)
    vid0.requires_grad_(True)
    vid1.requires_grad_(True)
    dists, inds = run_lib(c, vid0, vid1, fflow, bflow)
    assert dists.requires_grad
    assert not inds.requires_grad
    with torch.no_grad():
        d, _ = run_lib(c, vid0, vid1, fflow, bflow)
    assert not d.requires_grad
    assert torch.equal(d, dists.detach())


def test_inputs_not_modified(device):
    """The search writes only its outputs (forward and backward)."""
    c = small_case(flow="nonfinite", k=-1, dist_type="l2")
    arrays = sc.make_inputs(c)
    tensors = to_torch(arrays, device)
    before = [t.clone() for t in tensors]
    tensors[0].requires_grad_(True)
    dists, _ = run_lib(c, *tensors)
    dists.backward(torch.ones_like(dists))
    for t, b in zip(tensors, before):
        assert torch.equal(t.detach(), b) or (torch.isnan(b).any() and
                                              torch.equal(t.detach().nan_to_num(), b.nan_to_num()))
    copies = [a.copy() for a in arrays]
    d, i = run_lib(c, *arrays)
    stnls.search.nls_backward(np.ones_like(d), i, arrays[0], arrays[1], c["ws"], c["wt"],
                              c["ps"], c["k"], c["nheads"], **sc.search_kwargs(c))
    for a, b in zip(arrays, copies):
        np.testing.assert_array_equal(a, b)
