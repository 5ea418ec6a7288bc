"""The torch ops as torch sees them (python/stnls/torch/_op.py): each is a registered custom
op that passes torch.library.opcheck (schema, fake implementation, autograd registration),
torch.compile traces through the public calls without a graph break, and the direct eager
path gives exactly what the custom op gives, gradients included. Which path a call takes
is checked too: plain eager tensors and parameters go direct; FakeTensor, a default-device
context, vmap and torch.jit.trace go through the custom op."""
import pytest
import torch

import stnls
from stnls.torch import agg as tagg
from stnls.torch import search as tsearch
from stnls.torch import tile as ttile
from stnls.torch._op import _direct
from stnls._params import normalize, pack
from stnls._patch_params import normalize as patch_normalize

SEARCH = dict(ws=3, wt=1, ps=3, k=4)
SEARCH_KW = dict(nheads=2, stride0=2)


def _videos(device, dtype=torch.float64, grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    vid0 = torch.randn(1, 3, 4, 9, 10, generator=g, dtype=dtype).to(device)
    vid1 = torch.randn(1, 3, 4, 9, 10, generator=g, dtype=dtype).to(device)
    flow = (1.5 * torch.randn(1, 3, 2, 9, 10, generator=g, dtype=dtype)).to(device)
    if grad:
        vid0.requires_grad_(True)
        vid1.requires_grad_(True)
    return vid0, vid1, flow, -flow


def _search_args(vid0, vid1, fflow, bflow, **kw):
    ints, bools, dist_type = pack(normalize(*SEARCH.values(), **{**SEARCH_KW, **kw}))
    return (vid0, vid1, fflow, bflow, ints, bools, dist_type)


def _op_samples(device):
    """(Op, args) for every op, inputs requiring grad where the op has a gradient."""
    vid0, vid1, ff, bf = _videos(device, grad=True)
    args = _search_args(vid0, vid1, ff, bf)
    dists, search_inds = tsearch.search_forward(*[a.detach() if isinstance(a, torch.Tensor) else a for a in args])
    grad_dists = torch.randn_like(dists)
    # The patch ops take the neighbours of every pixel (stride0 = 1).
    _, inds = tsearch.search_forward(*_search_args(vid0.detach(), vid1.detach(), ff, bf, stride0=1))
    p = patch_normalize(3, stride0=1)
    pargs = (p["ps"], p["stride0"], p["pt"], p["dilation"], p["reflect_bounds"])
    weights = torch.rand(inds.shape[:-1], dtype=vid0.dtype, device=device, requires_grad=True)
    patches = ttile.unfold_op(vid0.detach(), *pargs).requires_grad_(True)
    pk = ttile.unfold_k_op(vid0.detach(), inds, 3, 1, 1, True).requires_grad_(True)
    shape = list(vid0.shape)
    return [
        (tsearch.search_forward, args),
        (tsearch.search_backward, (grad_dists, search_inds, vid0.detach(), vid1.detach()) + args[4:]),
        (tagg.wpsum_op, (vid0, weights, inds) + pargs),
        (tagg.wpsum_backward_op, (torch.randn_like(vid0.detach()), vid0.detach(), weights.detach(), inds)
         + pargs + (True,)),
        (ttile.unfold_op, (vid0,) + pargs),
        (ttile.fold_op, (patches, shape, 1, 1, True)),
        (ttile.unfold_k_op, (vid0, inds, 3, 1, 1, True)),
        (ttile.fold_k_op, (pk, inds, shape, 1, True, True)),
    ]


@pytest.mark.parametrize("index", range(8))
def test_opcheck(device, index):
    op, args = _op_samples(device)[index]
    torch.library.opcheck(op.op, args)


@pytest.mark.parametrize("index", range(8))
def test_direct_path_equals_custom_op(device, index):
    op, args = _op_samples(device)[index]
    got, want = op(*args), op.op(*args)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        assert torch.equal(g, w)
        assert g.requires_grad == w.requires_grad
    diff = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
    outs = [(g, w) for g, w in zip(got, want) if g.requires_grad]
    if not diff:
        return
    seeds = [torch.randn_like(g) for g, _ in outs]
    g_direct = torch.autograd.grad([g for g, _ in outs], diff, seeds)
    g_op = torch.autograd.grad([w for _, w in outs], diff, seeds)
    for a, b in zip(g_direct, g_op):
        assert torch.equal(a, b)


def test_search_gradcheck_on_the_direct_path(device):
    vid0, vid1, ff, bf = _videos(device, grad=True)
    assert _direct((vid0, vid1))

    def f(a, b):
        return stnls.search.nls(a, b, ff, bf, *SEARCH.values(), **SEARCH_KW)[0]

    assert torch.autograd.gradcheck(f, (vid0, vid1))


def test_tile_double_backward(device):
    """The patch ops' gradients are ops too: second derivatives go through them."""
    vid0, _, _, _ = _videos(device, grad=True)
    p = patch_normalize(3, stride0=2)
    assert torch.autograd.gradgradcheck(lambda v: stnls.tile.unfold(v, *p.values()), (vid0,))


def test_which_path():
    from torch._subclasses.fake_tensor import FakeTensorMode

    x = torch.zeros(2)
    assert _direct((x, 3, "prod"))
    with torch.device("cpu"):  # a torch function mode
        assert not _direct((x,))
    with FakeTensorMode() as mode:
        assert not _direct((mode.from_tensor(x),))
    seen = []
    torch.vmap(lambda v: seen.append(_direct((v,))) or v)(torch.zeros(2, 3))
    assert seen == [None]


@pytest.mark.filterwarnings("ignore:`torch.jit.trace` is deprecated")
def test_parameters_go_direct_and_jit_trace_sees_the_op():
    x = torch.zeros(2)
    assert _direct((torch.nn.Parameter(x),))
    vid0, vid1, ff, bf = _videos("cpu", dtype=torch.float32)

    def f(a, b):
        return stnls.search.nls(a, b, ff, bf, *SEARCH.values(), **SEARCH_KW)[0]

    # torch.jit.trace sees the custom op: either the trace records it (and replays it on new
    # videos) or, where TorchScript cannot take its bool[] argument, tracing raises; it
    # never records the implementation's inner calls instead.
    try:
        traced = torch.jit.trace(f, (vid0, vid1), check_trace=False)
    except RuntimeError as e:
        assert "bool" in str(e)
        return
    assert "stnls::search_forward" in str(traced.graph)
    other = _videos("cpu", dtype=torch.float32, seed=1)
    assert torch.equal(traced(other[0], other[1]), f(other[0], other[1]))


def test_without_torch_probes_every_call_takes_the_custom_op(monkeypatch):
    from stnls.torch import _op

    monkeypatch.setattr(_op, "_HAVE_PROBES", False)
    assert not _direct((torch.zeros(2),))
    vid0, vid1, ff, bf = _videos("cpu", grad=True)
    dists, _ = stnls.search.nls(vid0, vid1, ff, bf, *SEARCH.values(), **SEARCH_KW)
    assert "stnls_search_forward" in type(dists.grad_fn).__name__  # the custom op's autograd
    grads = torch.autograd.grad(dists.sum(), (vid0, vid1))
    monkeypatch.setattr(_op, "_HAVE_PROBES", True)
    dists2, _ = stnls.search.nls(vid0, vid1, ff, bf, *SEARCH.values(), **SEARCH_KW)
    assert torch.equal(dists, dists2)
    for a, b in zip(grads, torch.autograd.grad(dists2.sum(), (vid0, vid1))):
        assert torch.equal(a, b)


def test_fake_tensor_goes_through_the_custom_op():
    from torch._subclasses.fake_tensor import FakeTensorMode

    vid0, vid1, ff, bf = _videos("cpu", dtype=torch.float32)
    with FakeTensorMode() as mode:
        fake = [mode.from_tensor(t) for t in (vid0, vid1, ff, bf)]
        dists, inds = stnls.search.nls(*fake, *SEARCH.values(), **SEARCH_KW)
    real = stnls.search.nls(vid0, vid1, ff, bf, *SEARCH.values(), **SEARCH_KW)
    assert dists.shape == real[0].shape and inds.shape == real[1].shape
    assert inds.dtype == torch.int32


def test_compile_fullgraph():
    """torch.compile sees the ops (no graph break) and computes what eager computes."""
    search = stnls.search.NonLocalSearch(*SEARCH.values(), **{**SEARCH_KW, "stride0": 1})
    wpsum = stnls.agg.WeightedPatchSum(1)

    def layer(a, b, ff, bf):
        dists, inds = search(a, b, ff, bf)
        # and the functional forms, whose parameter handling is traced too
        d2, _ = stnls.search.nls(a, b, ff, bf, *SEARCH.values(), **SEARCH_KW)
        out = stnls.agg.wpsum(b, torch.softmax(dists, -1), inds, ps=1)
        return wpsum(b, torch.softmax(dists, -1), inds).sum() + dists.square().sum() + d2.sum() + out.mean()

    vid0, vid1, ff, bf = _videos("cpu", grad=True)
    compiled = torch.compile(layer, backend="aot_eager", fullgraph=True)
    want = layer(vid0, vid1, ff, bf)
    got = compiled(vid0, vid1, ff, bf)
    assert torch.allclose(got, want)
    g_want = torch.autograd.grad(want, (vid0, vid1))
    g_got = torch.autograd.grad(got, (vid0, vid1))
    for a, b in zip(g_got, g_want):
        assert torch.allclose(a, b)
