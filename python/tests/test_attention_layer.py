"""Tests of stnls.nn.NonLocalAttention: float64 gradcheck (input and every parameter),
equality with dense softmax attention written in plain torch (ps=1, stride0=1, ws=-1, k<=0),
padding handling, bad input, and CUDA against CPU."""
import pytest

torch = pytest.importorskip("torch")
stnls = pytest.importorskip("stnls")

from torch.func import functional_call  # noqa: E402

from stnls.nn import NonLocalAttention, masked_softmax  # noqa: E402


def _video(B, T, C, H, W, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, C, H, W, generator=g, dtype=dtype)


def _flows(B, T, H, W, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (2 * torch.randn(B, T, 2, H, W, generator=g, dtype=dtype),
            2 * torch.randn(B, T, 2, H, W, generator=g, dtype=dtype))


def _layer(seed=0, dtype=torch.float64, **kw):
    torch.manual_seed(seed)
    return NonLocalAttention(**kw).to(dtype)


def dense_attention(layer, vid, wt):
    """Softmax attention of every pixel of frame t over every pixel of the frames
    t_lo..t_lo+st-1 (SPEC search rule 2), with the layer's own qkv/proj weights."""
    B, T, C, H, W = vid.shape
    HD, c = layer.nheads, C // layer.nheads
    qkv = layer.qkv(vid.reshape(B * T, C, H, W)).view(B, T, 3, HD, c, H * W)
    # (B, HD, T, HW, c) per tensor
    q, k, v = (qkv[:, :, i].permute(0, 2, 1, 4, 3) for i in range(3))
    st = min(2 * wt + 1, T)
    outs = []
    for t in range(T):
        lo = min(max(t - wt, 0), T - st)
        kk = k[:, :, lo:lo + st].reshape(B, HD, st * H * W, c)
        vv = v[:, :, lo:lo + st].reshape(B, HD, st * H * W, c)
        qq = q[:, :, t]
        if layer.dist_type == "prod":
            logits = layer.scale * qq @ kk.transpose(-1, -2)
        else:
            logits = -layer.scale * ((qq[..., :, None, :] - kk[..., None, :, :]) ** 2).sum(-1)
        outs.append(torch.softmax(logits, -1) @ vv)  # (B, HD, HW, c)
    out = torch.stack(outs, 2)  # (B, HD, T, HW, c)
    out = out.permute(0, 2, 1, 4, 3).reshape(B * T, C, H, W)
    return layer.proj(out).view(B, T, C, H, W)


@pytest.mark.parametrize("T,wt", [(3, 0), (4, 1), (3, 2), (2, 1)])
@pytest.mark.parametrize("dist_type", ["prod", "l2"])
def test_dense_equality(T, wt, dist_type):
    B, C, H, W = 2, 4, 5, 6
    layer = _layer(dim=C, nheads=2, ws=-1, wt=wt, ps=1, k=-1, stride0=1, dist_type=dist_type)
    vid = _video(B, T, C, H, W)
    fflow, bflow = _flows(B, T, H, W)  # ws=-1 searches whole frames: flows change nothing
    ref = dense_attention(layer, vid, wt)
    for flows in ((None, None), (fflow, bflow)):
        out = layer(vid, *flows)
        assert out.shape == (B, T, C, H, W)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_dense_equality_gradients():
    B, T, C, H, W, wt = 1, 3, 4, 4, 5, 1
    layer = _layer(dim=C, nheads=2, ws=-1, wt=wt, ps=1, k=0, stride0=1)
    vid = _video(B, T, C, H, W).requires_grad_(True)
    g = torch.randn(B, T, C, H, W, dtype=torch.float64)
    grads = []
    for fn in (lambda x: layer(x), lambda x: dense_attention(layer, x, wt)):
        out = fn(vid)
        params = [vid] + list(layer.parameters())
        grads.append(torch.autograd.grad((out * g).sum(), params))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)


def _gradcheck_layer(layer, vid, fflow=None, bflow=None, fast_mode=False):
    names = [n for n, _ in layer.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_(True) for p in layer.parameters())

    def f(x, *ps):
        return functional_call(layer, dict(zip(names, ps)), (x, fflow, bflow))

    assert torch.autograd.gradcheck(f, (vid.requires_grad_(True),) + params, eps=1e-6,
                                    atol=1e-7, rtol=1e-5, fast_mode=fast_mode)


@pytest.mark.parametrize("cfg", [
    # full_ws=False at the borders leaves padded (-inf) neighbours in the softmax
    dict(ws=3, wt=1, ps=1, k=9, stride0=1, full_ws=False),
    dict(ws=3, wt=1, ps=3, k=5, stride0=2, dist_type="l2"),
    dict(ws=3, wt=1, ps=1, k=4, stride0=1, pt=2, dilation=2, reflect_bounds=False),
])
def test_gradcheck(cfg):
    # fast_mode checks random projections of the full Jacobian (input and all parameters)
    B, T, C, H, W = 1, 3, 4, 5, 5
    layer = _layer(dim=C, nheads=2, **cfg)
    vid = _video(B, T, C, H, W)
    fflow, bflow = _flows(B, T, H, W)
    _gradcheck_layer(layer, vid, fflow, bflow, fast_mode=True)


def test_gradcheck_full_jacobian():
    # Every Jacobian entry, at a size small enough to stay quick.
    B, T, C, H, W = 1, 2, 2, 4, 4
    layer = _layer(dim=C, nheads=2, ws=3, wt=1, ps=3, k=6, stride0=2, full_ws=False)
    vid = _video(B, T, C, H, W)
    fflow, bflow = _flows(B, T, H, W)
    _gradcheck_layer(layer, vid, fflow, bflow)


def test_every_parameter_gets_a_gradient():
    layer = _layer(dim=4, nheads=2, ws=3, wt=1, ps=3, k=5, dtype=torch.float32)
    vid = _video(1, 3, 4, 6, 6, dtype=torch.float32)
    layer(vid).square().sum().backward()
    for name, p in layer.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_padding_gets_zero_weight():
    # The search pads with -inf distances; the layer must equal its own computation with
    # the padded entries dropped by hand, and stay finite.
    B, T, C, H, W = 1, 2, 4, 5, 5
    layer = _layer(dim=C, nheads=2, ws=5, wt=1, ps=1, k=-1, full_ws=False)
    vid = _video(B, T, C, H, W)
    out = layer(vid)
    assert torch.isfinite(out).all()
    qkv = layer.qkv(vid.reshape(B * T, C, H, W)).view(B, T, 3, C, H, W)
    q, k, v = qkv.unbind(2)
    dists, inds = stnls.search.nls(q, k, None, None, 5, 1, 1, -1, nheads=2, stride0=1,
                                   full_ws=False)
    assert torch.isinf(dists).any(), "the case must contain padding"
    w = torch.softmax(layer.scale * dists, -1)  # exp(-inf) = 0 where a row has a valid entry
    ref = stnls.agg.wpsum(v, w, inds)
    ref = layer.proj(ref.reshape(B * T, C, H, W)).view(B, T, C, H, W)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)


def test_masked_softmax_all_padded_row():
    logits = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64,
                          requires_grad=True)
    valid = torch.tensor([[True, True, False], [False, False, False]])
    w = masked_softmax(logits, valid)
    assert torch.equal(w[1], torch.zeros(3, dtype=torch.float64))
    assert w[0, 2] == 0
    torch.testing.assert_close(w[0, :2], torch.softmax(logits[0, :2], 0))
    w.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_scale_default_and_given():
    assert _layer(dim=8, nheads=2, ws=3, wt=0).scale == pytest.approx(4 ** -0.5)
    assert _layer(dim=8, nheads=2, ws=3, wt=0, scale=0.25).scale == 0.25


def test_no_bias():
    layer = _layer(dim=4, nheads=1, ws=3, wt=0, k=5, bias=False)
    assert layer.qkv.bias is None and layer.proj.bias is None
    assert layer(_video(1, 1, 4, 4, 4)).shape == (1, 1, 4, 4, 4)


@pytest.mark.parametrize("dim,nheads", [(6, 4), (5, 2)])
def test_bad_dim_nheads(dim, nheads):
    with pytest.raises(ValueError, match="dim.*nheads|nheads.*dim"):
        NonLocalAttention(dim, nheads, ws=3, wt=0)


def test_bad_constructor_values():
    with pytest.raises(ValueError, match="nheads"):
        NonLocalAttention(4, 0, ws=3, wt=0)
    with pytest.raises(ValueError, match="dim"):
        NonLocalAttention(0, 1, ws=3, wt=0)
    with pytest.raises(ValueError, match="dist_type"):
        NonLocalAttention(4, 1, ws=3, wt=0, dist_type="cos")


@pytest.mark.parametrize("shape", [(3, 4, 5, 5), (1, 1, 3, 4, 5, 5), (1, 3, 5, 5, 5)])
def test_bad_vid_shape(shape):
    layer = _layer(dim=4, nheads=2, ws=3, wt=0, dtype=torch.float32)
    with pytest.raises(ValueError, match="vid"):
        layer(torch.zeros(shape))


def test_bad_vid_type():
    layer = _layer(dim=4, nheads=2, ws=3, wt=0, dtype=torch.float32)
    with pytest.raises(TypeError, match="vid"):
        layer([[0.0]])


def test_bad_flow_shape_is_reported_by_the_search():
    layer = _layer(dim=4, nheads=2, ws=3, wt=1, dtype=torch.float32)
    vid = torch.zeros(1, 2, 4, 5, 5)
    with pytest.raises(ValueError, match="fflow"):
        layer(vid, torch.zeros(1, 2, 2, 4, 4), None)


def _cuda_or_skip():
    if not torch.cuda.is_available():
        pytest.skip("cuda: torch.cuda.is_available() is False on this machine")
    if not stnls.cuda_available():
        pytest.skip("cuda: this build of stnls has no CUDA backend (CPU-only build)")


@pytest.mark.parametrize("cfg", [
    dict(ws=5, wt=1, ps=1, k=8, stride0=1),
    dict(ws=5, wt=1, ps=3, k=8, stride0=2, dist_type="l2", full_ws=False),
])
def test_cuda_matches_cpu(cfg):
    _cuda_or_skip()
    B, T, C, H, W = 1, 3, 8, 9, 11
    layer = _layer(dim=C, nheads=2, **cfg)
    vid = _video(B, T, C, H, W)
    fflow, bflow = _flows(B, T, H, W)
    g = torch.randn(B, T, C, H, W, dtype=torch.float64)
    results = []
    for dev in ("cpu", "cuda"):
        m = layer.to(dev)
        x = vid.to(dev).requires_grad_(True)
        out = m(x, fflow.to(dev), bflow.to(dev))
        grads = torch.autograd.grad((out * g.to(dev)).sum(), [x] + list(m.parameters()))
        results.append([out.detach().cpu()] + [t.cpu() for t in grads])
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)
