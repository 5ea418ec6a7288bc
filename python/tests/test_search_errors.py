"""Bad inputs to stnls.search raise ValueError (shapes, values, ranges) or TypeError (dtypes)
with a message naming the argument, for NumPy arrays and torch tensors alike."""
import numpy as np
import pytest

stnls = pytest.importorskip("stnls", reason="stnls is not built/installed")

B, T, C, H, W = 1, 3, 4, 7, 6
GOOD = dict(ws=3, wt=1, ps=3, k=5, nheads=2)


def inputs(dtype=np.float32):
    r = np.random.default_rng(0)
    vid0 = r.normal(size=(B, T, C, H, W)).astype(dtype)
    vid1 = r.normal(size=(B, T, C, H, W)).astype(dtype)
    fflow = r.normal(size=(B, T, 2, H, W)).astype(dtype)
    bflow = r.normal(size=(B, T, 2, H, W)).astype(dtype)
    return dict(vid0=vid0, vid1=vid1, fflow=fflow, bflow=bflow)


def with_arrays(**over):
    def build():
        a = inputs()
        a.update({k: (v() if callable(v) else v) for k, v in over.items()})
        return a
    return build


# (id, arrays builder, parameter overrides, exception, regex the message must match)
BAD = [
    ("C-not-divisible", with_arrays(), dict(nheads=3), ValueError, "nheads"),
    ("vid-shape-mismatch", with_arrays(vid1=lambda: np.zeros((B, T, C, H + 1, W), np.float32)),
     {}, ValueError, "vid1|vid0"),
    ("vid-T-mismatch", with_arrays(vid1=lambda: np.zeros((B, T - 1, C, H, W), np.float32)),
     {}, ValueError, "vid1|vid0"),
    ("vid-channels-mismatch", with_arrays(vid1=lambda: np.zeros((B, T, C + 2, H, W), np.float32)),
     {}, ValueError, "vid1|vid0"),
    ("fflow-channels", with_arrays(fflow=lambda: np.zeros((B, T, 3, H, W), np.float32)),
     {}, ValueError, "fflow"),
    ("bflow-size", with_arrays(bflow=lambda: np.zeros((B, T, 2, H, W + 1), np.float32)),
     {}, ValueError, "bflow"),
    ("fflow-ndim", with_arrays(fflow=lambda: np.zeros((T, 2, H, W), np.float32)),
     {}, ValueError, "fflow"),
    ("fflow-batch", with_arrays(fflow=lambda: np.zeros((B + 1, T, 2, H, W), np.float32)),
     {}, ValueError, "fflow"),
    ("k-too-large", with_arrays(), dict(k=3 * 3 * 3 + 1), ValueError, r"\bk\b"),
    ("k-too-large-ws-1", with_arrays(), dict(ws=-1, k=3 * H * W + 1), ValueError, r"\bk\b"),
    ("ws-zero", with_arrays(), dict(ws=0), ValueError, r"\bws\b"),
    ("ws-minus-2", with_arrays(), dict(ws=-2), ValueError, r"\bws\b"),
    ("ps-zero", with_arrays(), dict(ps=0), ValueError, r"\bps\b"),
    ("ps-negative", with_arrays(), dict(ps=-1), ValueError, r"\bps\b"),
    ("wt-negative", with_arrays(), dict(wt=-1), ValueError, r"\bwt\b"),
    ("anchor-and-remove", with_arrays(), dict(anchor_self=True, remove_self=True), ValueError,
     "anchor_self|remove_self"),
    ("integer-videos", with_arrays(vid0=lambda: np.ones((B, T, C, H, W), np.int32),
                                   vid1=lambda: np.ones((B, T, C, H, W), np.int32)),
     {}, TypeError, "vid0|vid1"),
    ("integer-vid1", with_arrays(vid1=lambda: np.ones((B, T, C, H, W), np.int64)),
     {}, TypeError, "vid1"),
    ("float16-videos", with_arrays(vid0=lambda: np.ones((B, T, C, H, W), np.float16),
                                   vid1=lambda: np.ones((B, T, C, H, W), np.float16)),
     {}, TypeError, "vid0|vid1"),
    ("vid0-4d", with_arrays(vid0=lambda: np.zeros((T, C, H, W), np.float32)),
     {}, ValueError, "vid0"),
    ("vid1-7d", with_arrays(vid1=lambda: np.zeros((B, 2, T, 2, H, W, 1), np.float32)),
     {}, ValueError, "vid1"),
    ("mixed-float-dtypes", with_arrays(vid1=lambda: np.zeros((B, T, C, H, W), np.float64)),
     {}, TypeError, "vid1|vid0"),
    ("complex-flow", with_arrays(fflow=lambda: np.zeros((B, T, 2, H, W), np.complex64)),
     {}, TypeError, "fflow"),
    ("integer-flow", with_arrays(bflow=lambda: np.zeros((B, T, 2, H, W), np.int32)),
     {}, TypeError, "bflow"),
    ("stride0-negative", with_arrays(), dict(stride0=-1), ValueError, "stride0"),
    ("stride0-zero", with_arrays(), dict(stride0=0), ValueError, "stride0"),
    ("stride1-zero", with_arrays(), dict(stride1=0), ValueError, "stride1"),
    ("dilation-zero", with_arrays(), dict(dilation=0), ValueError, "dilation"),
    ("pt-zero", with_arrays(), dict(pt=0), ValueError, r"\bpt\b"),
    ("nheads-zero", with_arrays(), dict(nheads=0), ValueError, "nheads"),
    ("dist-type", with_arrays(), dict(dist_type="cosine"), ValueError, "dist_type"),
    ("6d-nheads-mismatch",
     with_arrays(vid0=lambda: np.zeros((B, 2, T, 2, H, W), np.float32),
                 vid1=lambda: np.zeros((B, 2, T, 2, H, W), np.float32)),
     dict(nheads=4), ValueError, "nheads|vid0"),
]
# Every integer and boolean parameter (nls passes them on positionally: a value reaching the
# wrong parameter would be named wrongly here).
INT_NAMES = ("ws", "wt", "ps", "k", "nheads", "stride0", "stride1", "dilation", "pt", "off_H0",
             "off_W0", "off_H1", "off_W1")
BOOL_NAMES = ("reflect_bounds", "full_ws", "anchor_self", "remove_self", "use_adj", "deterministic")
NON_INTEGER = ([(f"{n}-float", {n: 1.5}, rf"^{n}: expected an integer") for n in INT_NAMES]
               + [(f"{n}-true", {n: True}, rf"^{n}: expected an integer") for n in INT_NAMES[:2]]
               + [(f"{n}-2", {n: 2}, rf"^{n}: expected a bool") for n in BOOL_NAMES]
               + [("deterministic-string", dict(deterministic="no"), "^deterministic: expected a bool"),
                  ("dist_type", dict(dist_type="l1"), "^dist_type: expected 'prod' or 'l2'"),
                  ("batchsize-float", dict(batchsize=2.5), "^batchsize: expected an integer"),
                  ("unknown-keyword", dict(wss=3), "unexpected keyword argument.*wss")])


def convert(arrays, backend):
    if backend == "numpy":
        return arrays
    torch = pytest.importorskip("torch")
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}


def call_nls(a, params):
    p = dict(GOOD)
    p.update(params)
    ws, wt, ps, k, nheads = (p.pop(x) for x in ("ws", "wt", "ps", "k", "nheads"))
    return stnls.search.nls(a["vid0"], a["vid1"], a["fflow"], a["bflow"], ws, wt, ps, k,
                            nheads, **p)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name,build,params,exc,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises(name, build, params, exc, pattern, backend):
    a = convert(build(), backend)
    with pytest.raises(exc, match=pattern):
        call_nls(a, params)


@pytest.mark.parametrize("name,build,params,exc,pattern", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_module(name, build, params, exc, pattern):
    torch = pytest.importorskip("torch")  # noqa: F841
    a = convert(build(), "torch")
    p = dict(GOOD)
    p.update(params)
    ws, wt, ps, k, nheads = (p.pop(x) for x in ("ws", "wt", "ps", "k", "nheads"))
    with pytest.raises(exc, match=pattern):
        search = stnls.search.NonLocalSearch(ws, wt, ps, k, nheads, **p)
        search(a["vid0"], a["vid1"], a["fflow"], a["bflow"])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name,params,pattern", NON_INTEGER, ids=[n[0] for n in NON_INTEGER])
def test_non_integer_parameter(name, params, pattern, backend):
    a = convert(inputs(), backend)
    with pytest.raises((TypeError, ValueError), match=pattern):
        call_nls(a, params)


@pytest.mark.parametrize("name,params,pattern", NON_INTEGER, ids=[n[0] for n in NON_INTEGER])
def test_non_integer_parameter_backward(name, params, pattern):
    a = inputs(np.float64)
    d, i = call_nls(a, {})
    p = dict(GOOD)
    p.update(params)
    ws, wt, ps, k, nheads = (p.pop(x) for x in ("ws", "wt", "ps", "k", "nheads"))
    with pytest.raises((TypeError, ValueError), match=pattern):
        stnls.search.nls_backward(np.ones_like(d), i, a["vid0"], a["vid1"], ws, wt, ps, k, nheads, **p)


def test_packed_parameters_equal_the_checked_dict():
    """nls takes plain ints and bools as they are (no dict per call); other integer types,
    0/1 for bools, tuning knobs and batchsize=None go through normalize, with the same
    result."""
    from stnls._params import BOOL_PARAMS, DEFAULTS, INT_PARAMS, normalize, pack, packed

    cases = [{}, dict(nheads=np.int64(2), stride0=np.int32(1)), dict(reflect_bounds=0, full_ws=1),
             dict(dist_type="l2", batchsize=None), dict(rbwd=True, exact=False, batchsize=4),
             dict(off_H1=np.int16(-2), use_adj=np.int8(1))]
    for over in cases:
        full = {**DEFAULTS, "batchsize": -1, **GOOD, **over}
        tuning = {n: v for n, v in full.items() if n not in DEFAULTS and n not in INT_PARAMS
                  and n != "batchsize"}
        got = packed(tuple(full[n] for n in INT_PARAMS), tuple(full[n] for n in BOOL_PARAMS),
                     full["dist_type"], full["batchsize"], tuning)
        kw = {n: v for n, v in full.items() if n not in ("ws", "wt", "ps", "k")}
        want = pack(normalize(full["ws"], full["wt"], full["ps"], full["k"], **kw))
        assert got == want, over
        assert all(type(v) is int for v in got[0]) and all(type(v) is bool for v in got[1])


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_flow_of_other_float_precision_is_cast(backend):
    """A float flow of the other precision is accepted and cast to the videos' dtype (the
    library's documented choice: flows often come from a float32 network)."""
    a = inputs()
    d0, i0 = call_nls(convert(a, backend), {})
    a64 = dict(a, fflow=a["fflow"].astype(np.float64), bflow=a["bflow"].astype(np.float64))
    d1, i1 = call_nls(convert(a64, backend), {})
    assert str(d1.dtype).endswith("float32")
    np.testing.assert_array_equal(np.asarray(d0), np.asarray(d1))
    np.testing.assert_array_equal(np.asarray(i0), np.asarray(i1))


def test_good_inputs_do_not_raise():
    """The baseline of the table above is valid (so each failure is due to its one change)."""
    call_nls(inputs(), {})
    call_nls(convert(inputs(), "torch"), {})


def test_backward_bad_inputs():
    a = inputs(np.float64)
    d, i = call_nls(a, {})
    g = np.ones_like(d)
    args = (3, 1, 3, 5, 2)
    stnls.search.nls_backward(g, i, a["vid0"], a["vid1"], *args)  # the baseline is valid
    with pytest.raises(ValueError, match="grad_dists"):
        stnls.search.nls_backward(g[..., :-1], i, a["vid0"], a["vid1"], *args)
    with pytest.raises(ValueError, match="inds"):
        stnls.search.nls_backward(g, i[..., :2], a["vid0"], a["vid1"], *args)
    with pytest.raises(TypeError, match="inds"):
        stnls.search.nls_backward(g, i.astype(np.float64), a["vid0"], a["vid1"], *args)
    with pytest.raises(TypeError, match="grad_dists"):
        stnls.search.nls_backward(g.astype(np.float32), i, a["vid0"], a["vid1"], *args)


def test_mixed_devices():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("cuda: torch.cuda.is_available() is False on this machine")
    a = convert(inputs(), "torch")
    a["vid1"] = a["vid1"].cuda()
    with pytest.raises(ValueError, match="vid1|device"):
        call_nls(a, {})


@pytest.mark.parametrize("name", ["vid0", "vid1"])
@pytest.mark.parametrize("axis", [1, 3, 4])
def test_videos_walking_backwards_are_refused(name, axis):
    """A video view with a negative T, H or W stride (NumPy's a[..., ::-1]) is refused with
    the argument's name, never read as zeros; a contiguous copy of it is accepted. (Negative
    batch and channel strides work: test_search_forward.test_non_contiguous_numpy.)"""
    a = inputs()
    a[name] = np.flip(a[name], axis)
    with pytest.raises(ValueError, match=rf"^{name}: expected non-negative strides along T, H and W"):
        call_nls(a, {})
    a[name] = np.ascontiguousarray(a[name])
    call_nls(a, {})


@pytest.mark.parametrize("name", ["fflow", "bflow"])
def test_flows_with_negative_strides_are_read_as_they_are(name):
    a = inputs()
    a[name] = a[name][..., ::-1]
    d0, i0 = call_nls(a, {})
    a[name] = np.ascontiguousarray(a[name])
    d1, i1 = call_nls(a, {})
    np.testing.assert_array_equal(d0, d1)
    np.testing.assert_array_equal(i0, i1)
