"""Frame alignment for the `stnls-demo` script: each frame is rebuilt from its neighbour's
pixels at the top-1 match of `stnls.search.nls`, searched with or without optical flow."""

import time

import numpy as np

# Value of the placeholder frame that the pair videos put where the search would otherwise
# look at the query's own frame (see `pair_videos`). Pixels lie in [0, 1], so one l2 patch
# term against it is >= (100 - 1)^2, more than any whole patch distance between real frames.
UNMATCHABLE = 100.0


def neighbours(T):
    """The frame each frame is aligned to: the next one, the previous one for the last."""
    return [t + 1 if t < T - 1 else t - 1 for t in range(T)]


def pair_videos(noisy, fflow, bflow):
    """Two-frame videos, one per frame t (in the batch axis), to search t in its neighbour n.

    nls always searches the query's own frame as well (SPEC rule 2), and the best match of
    a frame in itself is itself. The simplest exact way to keep only the neighbour: frame 0
    of each pair is the query frame t in vid0 but a constant far outside the pixel range in
    vid1, so under the l2 distance no candidate there can win and the top-1 of a query of
    frame 0 is its best match in frame 1 = n. (Queries of frame 1 are computed and unused.)

    noisy: (T, C, H, W); fflow, bflow: (1, T, 2, H, W).
    Returns vid0, vid1 (T, 2, C, H, W) and the pair flows (T, 2, 2, H, W).
    """
    T = noisy.shape[0]
    nbr = neighbours(T)
    vid0 = np.stack([np.stack([noisy[t], noisy[n]]) for t, n in enumerate(nbr)])
    vid1 = vid0.copy()
    vid1[:, 0] = UNMATCHABLE
    pf = np.zeros((T, 2) + fflow.shape[2:], np.float32)
    pb = np.zeros_like(pf)
    for t, n in enumerate(nbr):
        # Pair frame 0 -> 1 is t -> n, frame 1 -> 0 is n -> t.
        pf[t, 0] = fflow[0, t] if n == t + 1 else bflow[0, t]
        pb[t, 1] = bflow[0, n] if n == t + 1 else fflow[0, n]
    return vid0, vid1, pf, pb


def _to_device(arrays, device):
    """NumPy on the CPU (no torch needed); torch tensors on any other device."""
    if device == "cpu":
        return arrays, (lambda: None)
    import torch

    out = [None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device)
           for a in arrays]
    sync = torch.cuda.synchronize if str(device).startswith("cuda") else (lambda: None)
    return out, sync


def _numpy(x):
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def search_top1(vid0, vid1, fflow, bflow, ws, ps, device):
    """Top-1 l2 match of every pixel of the pairs' frame 0, and the search time in seconds.

    Returns inds (T, H, W, 3) int32 (t, h, w) inside the pair video, and the time.
    """
    from . import search

    T, _, C, H, W = vid0.shape
    kw = dict(ws=ws, wt=1, ps=ps, k=1, dist_type="l2", stride0=1)
    (v0, v1, ff, bf), sync = _to_device([vid0, vid1, fflow, bflow], device)
    # Warm up once on a tiny input so that the timing leaves out one-off costs
    # (module loading, CUDA context), then time the real search alone.
    (w0,), _ = _to_device([np.zeros((1, 2, C, 16, 16), np.float32)], device)
    search.nls(w0, w0, None, None, **{**kw, "ws": min(ws, 9)})
    sync()
    start = time.perf_counter()
    _, inds = search.nls(v0, v1, ff, bf, **kw)
    sync()
    seconds = time.perf_counter() - start
    inds = _numpy(inds)[:, 0, : H * W, 0].reshape(T, H, W, 3)
    if not (inds[..., 0] == 1).all():
        raise RuntimeError("nls returned a match outside the neighbour frame")
    return inds, seconds


def warp_from_neighbours(noisy, inds):
    """Frame t rebuilt from the noisy neighbour's pixels at the matched (h, w): (T, C, H, W)."""
    nbr = neighbours(noisy.shape[0])
    return np.stack([noisy[n][:, inds[t, ..., 1], inds[t, ..., 2]] for t, n in enumerate(nbr)])


def psnr(a, b):
    """PSNR in dB of a against b, pixel range 1, over the whole array."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)
