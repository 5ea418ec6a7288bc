"""CUDA work runs on the caller's current stream and on the device that holds the tensors.

Skipped (visibly) without a GPU; the two-device case needs two GPUs."""
import pytest

torch = pytest.importorskip("torch")
import stnls  # noqa: E402

cuda = pytest.mark.skipif(not torch.cuda.is_available() or not stnls.cuda_available(),
                          reason="needs a CUDA GPU and a CUDA build of stnls")


def _inputs(device, seed=0):
    g = torch.Generator().manual_seed(seed)
    B, T, C, H, W = 1, 4, 8, 40, 36
    vid0 = torch.randn(B, T, C, H, W, generator=g).to(device)
    vid1 = torch.randn(B, T, C, H, W, generator=g).to(device)
    fflow = (3 * torch.randn(B, T, 2, H, W, generator=g)).to(device)
    bflow = (3 * torch.randn(B, T, 2, H, W, generator=g)).to(device)
    return vid0, vid1, fflow, bflow


def _run(vid0, vid1, fflow, bflow):
    v0, v1 = vid0.clone().requires_grad_(), vid1.clone().requires_grad_()
    dists, inds = stnls.search.nls(v0, v1, fflow, bflow, 7, 1, 3, 6, 2, stride0=2)
    weights = torch.softmax(dists, -1)
    out = stnls.agg.wpsum(v1, weights, inds, ps=3, stride0=2)
    (dists.square().sum() + out.square().sum()).backward()
    return dists, inds, out, v0.grad, v1.grad


@cuda
def test_non_default_stream_gives_the_same_results():
    args = _inputs("cuda")
    ref = _run(*args)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        got = _run(*args)
    torch.cuda.synchronize()
    for r, g in zip(ref, got):
        assert torch.equal(r, g)


@cuda
def test_cuda_matches_cpu():
    args = _inputs("cpu")
    ref = _run(*args)
    got = _run(*[a.cuda() for a in args])
    assert torch.equal(ref[1], got[1].cpu())
    for r, g in zip(ref[:1] + ref[2:], got[:1] + got[2:]):
        torch.testing.assert_close(g.cpu(), r, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2
                    or not stnls.cuda_available(), reason="needs two CUDA GPUs")
def test_runs_on_the_device_of_the_data():
    args = _inputs("cuda:0")
    ref = _run(*args)
    torch.cuda.set_device(0)
    got = _run(*[a.to("cuda:1") for a in args])
    assert torch.cuda.current_device() == 0
    for r, g in zip(ref, got):
        assert g.device == torch.device("cuda:1")
        assert torch.equal(r, g.to("cuda:0"))
