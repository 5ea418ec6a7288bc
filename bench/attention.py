"""Benchmark of the attention layer: forward+backward time and peak memory of
stnls.nn.NonLocalAttention against two plain-PyTorch equivalents, side by side:

* ``torch-local``: the same layer (same qkv/proj convs, same window, flows, top-k, softmax,
  patch aggregation) written with ordinary torch ops: the search of bench/torch_search.py
  (gathered/unfolded candidate blocks + topk) and an aggregation that gathers the
  neighbours' patches, takes their weighted sum and folds it back with index_add;
* ``sdpa-dense``: dense attention over every pixel of the video, q/k/v from the same qkv
  conv, through torch.nn.functional.scaled_dot_product_attention (does not depend on ps).

    python bench/attention.py                      # CPU, small sizes
    python bench/attention.py --device cuda        # B=1 T=5 dim=64 nheads=4, 128^2 and 256^2
    python bench/attention.py --device cuda --big  # also 512^2
    python bench/attention.py --json out.json

Memory: on CUDA, torch.cuda.max_memory_allocated during one forward+backward minus what
was allocated before it (inputs and weights excluded); on the CPU, the growth of the peak
resident set size over one forward+backward, measured in a fresh child process per cell
(so one method's peak cannot hide another's). Out-of-memory cells print "oom".
Before timing, a float64 check compares torch-local with stnls (output and gradients).
"""
import argparse
import multiprocessing as mp
import os
import resource
import sys
import traceback

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import machine_info, median_time, print_table, write_json  # noqa: E402
from torch_search import _heads_layout, _query_pixels, nls_torch, tap_table  # noqa: E402

from stnls.nn import NonLocalAttention, masked_softmax  # noqa: E402

METHODS = ("stnls", "torch-local", "sdpa-dense")


# ----------------------------------------------------------------------------- baselines
def torch_wpsum(v, weights, inds, ps, stride0, pt=1, dilation=1, reflect_bounds=True):
    """Plain-torch stnls.agg.wpsum: out = fold(sum_k w_k * patch_k) / fold(ones)."""
    B, T, C, H, W = v.shape
    HD, Q, K = weights.shape[1:]
    Cd, THW = C // HD, T * H * W
    tap = tap_table(T, H, W, ps, pt, dilation, reflect_bounds, v.device)  # (THW+1, taps)
    vh = _heads_layout(v, HD)  # (B, HD, THW+1, Cd), last row zero
    ind = inds.long()
    ok = ind[..., 0] >= 0
    pix = torch.where(ok, ind[..., 0] * (H * W) + ind[..., 1] * W + ind[..., 2],
                      torch.full_like(ind[..., 0], THW))  # (B, HD, Q, K)
    bi = torch.arange(B, device=v.device)[:, None, None, None, None]
    hi = torch.arange(HD, device=v.device)[None, :, None, None, None]
    patches = vh[bi, hi, tap[pix]]  # (B, HD, Q, K, taps, Cd): the unfolded neighbours
    P = torch.einsum("bhqk,bhqktc->bhqtc", weights, patches)
    nH, nW = (H - 1) // stride0 + 1, (W - 1) // stride0 + 1
    qtap = tap[_query_pixels(torch.arange(Q, device=v.device), H, W, nH, nW, stride0)]
    qtap = qtap.reshape(-1)  # (Q*taps,) pixels the query patches are folded onto
    taps = P.shape[3]
    out = v.new_zeros(B, HD, THW + 1, Cd).index_add(2, qtap, P.reshape(B, HD, Q * taps, Cd))
    cnt = v.new_zeros(THW + 1).index_add(0, qtap, v.new_ones(Q * taps))
    out = out[:, :, :THW] / cnt[:THW].clamp_min(1)[:, None]
    return out.reshape(B, HD, T, H, W, Cd).permute(0, 2, 1, 5, 3, 4).reshape(B, T, C, H, W)


class TorchLocalAttention(torch.nn.Module):
    """NonLocalAttention in plain torch, sharing the convs of an stnls layer."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, vid, fflow=None, bflow=None):
        L = self.layer
        B, T, C, H, W = vid.shape
        q, k, v = L.qkv(vid.reshape(B * T, C, H, W)).view(B, T, 3, C, H, W).unbind(2)
        dists, inds = nls_torch(q, k, fflow, bflow, **L.search_args, **L.search_kwargs)
        valid = inds[..., 0] >= 0
        dists = torch.where(valid, dists, torch.zeros_like(dists))
        sign = L.scale if L.dist_type == "prod" else -L.scale
        w = masked_softmax(sign * dists, valid)
        out = torch_wpsum(v, w, inds, **L.agg_kwargs)
        return L.proj(out.reshape(B * T, C, H, W)).view(B, T, C, H, W)


class DenseSDPA(torch.nn.Module):
    """Dense softmax attention over all T*H*W pixels with the layer's convs."""

    def __init__(self, layer):
        super().__init__()
        self.layer = layer

    def forward(self, vid, fflow=None, bflow=None):
        L = self.layer
        B, T, C, H, W = vid.shape
        HD, Cd = L.nheads, C // L.nheads
        qkv = L.qkv(vid.reshape(B * T, C, H, W)).view(B, T, 3, HD, Cd, H * W)
        q, k, v = (qkv[:, :, i].permute(0, 2, 1, 4, 3).reshape(B, HD, T * H * W, Cd)
                   for i in range(3))
        out = F.scaled_dot_product_attention(q, k, v, scale=L.scale)
        out = out.reshape(B, HD, T, H * W, Cd).permute(0, 2, 1, 4, 3).reshape(B * T, C, H, W)
        return L.proj(out).view(B, T, C, H, W)


def build(method, cfg, device, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    layer = NonLocalAttention(cfg["dim"], cfg["nheads"], cfg["ws"], cfg["wt"], ps=cfg["ps"],
                              k=cfg["k"], stride0=cfg["stride0"]).to(device, dtype)
    model = {"stnls": lambda: layer, "torch-local": lambda: TorchLocalAttention(layer),
             "sdpa-dense": lambda: DenseSDPA(layer)}[method]()
    g = torch.Generator().manual_seed(seed + 1)
    shape = (cfg["B"], cfg["T"], cfg["dim"], cfg["H"], cfg["W"])
    vid = torch.randn(shape, generator=g, dtype=dtype).to(device).requires_grad_(True)
    fshape = (cfg["B"], cfg["T"], 2, cfg["H"], cfg["W"])
    fflow = (2 * torch.randn(fshape, generator=g, dtype=dtype)).to(device)
    bflow = (2 * torch.randn(fshape, generator=g, dtype=dtype)).to(device)
    grad = torch.randn(shape, generator=g, dtype=dtype).to(device)
    return model, vid, fflow, bflow, grad


# ----------------------------------------------------------------------------- measuring
def _step(model, vid, fflow, bflow, grad):
    vid.grad = None
    for p in model.parameters():
        p.grad = None
    model(vid, fflow, bflow).backward(grad)
    if vid.is_cuda:
        torch.cuda.synchronize(vid.device)


def _rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def measure(method, cfg, device, repeats):
    """{"ms": median fwd+bwd time, "mb": peak memory} or {"error": "oom" / message}."""
    try:
        # A tiny run first: loading kernels and libraries must not count as the cell's memory.
        _step(*build(method, dict(cfg, T=min(cfg["T"], 2), H=12, W=12, k=min(cfg["k"], 9),
                                  ws=min(cfg["ws"], 5), wt=min(cfg["wt"], 1)), device))
        model, vid, fflow, bflow, grad = build(method, cfg, device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            _step(model, vid, fflow, bflow, grad)
            mb = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
        else:
            base = _rss_mb()
            _step(model, vid, fflow, bflow, grad)
            mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
        ms = 1e3 * median_time(lambda: _step(model, vid, fflow, bflow, grad), repeats, warmup=0)
        return {"ms": ms, "mb": mb}
    except torch.OutOfMemoryError:
        return {"error": "oom"}
    except (MemoryError, RuntimeError) as e:
        if "out of memory" in str(e).lower() or isinstance(e, MemoryError):
            return {"error": "oom"}
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:80]}"}
    finally:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()


def _child(conn, method, cfg, device, repeats, threads):
    torch.set_num_threads(threads)
    try:  # the library's OpenMP pool, if it was not fixed by OMP_NUM_THREADS already
        import ctypes
        ctypes.CDLL("libgomp.so.1").omp_set_num_threads(threads)
    except (OSError, AttributeError):
        pass
    try:
        conn.send(measure(method, cfg, device, repeats))
    except BaseException:  # report, never hang the parent
        conn.send({"error": traceback.format_exc().splitlines()[-1][:80]})


def measure_isolated(method, cfg, device, repeats):
    """CPU: run the cell in a fresh process so its peak RSS is its own."""
    ctx = mp.get_context("spawn")
    recv, send = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_child, args=(send, method, cfg, device, repeats,
                                         torch.get_num_threads()))
    p.start()
    send.close()
    p.join()
    try:
        return recv.recv()
    except EOFError:  # killed (the OOM killer, most likely)
        return {"error": "oom" if p.exitcode == -9 else f"exit {p.exitcode}"}


# ----------------------------------------------------------------------------- check
def check(device, ps):
    """float64: torch-local must equal stnls (output and gradients) on a small case."""
    cfg = dict(B=1, T=3, dim=8, nheads=2, H=12, W=11, ws=5, wt=1, k=6, ps=ps, stride0=1)
    res = []
    for method in ("stnls", "torch-local"):
        model, vid, fflow, bflow, grad = build(method, cfg, device, torch.float64)
        out = model(vid, fflow, bflow)
        params = [vid] + list(model.parameters())
        res.append([out] + list(torch.autograd.grad(out, params, grad)))
    return max((a - b).abs().max().item() for a, b in zip(*res))


# ----------------------------------------------------------------------------- main
def configs(device, big):
    if device.startswith("cuda"):
        base = dict(B=1, T=5, dim=64, nheads=4, ws=9, wt=2, k=16, stride0=1)
        sizes = [128, 256] + ([512] if big else [])
    else:
        base = dict(B=1, T=3, dim=16, nheads=2, ws=9, wt=2, k=16, stride0=1)
        sizes = [32] + ([64] if big else [])
    return [dict(base, H=s, W=s, ps=ps) for s in sizes for ps in (1, 3)]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--big", action="store_true", help="add the larger size (512^2 on CUDA)")
    p.add_argument("--repeats", type=int, default=None, help="timed runs (median)")
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch and the library (OpenMP); default: torch's")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--dense-max-pixels", type=int, default=5 * 256 * 256,
                   help="skip sdpa-dense above this many T*H*W pixels (its time grows as their "
                        "square: at 5x512x512 one step takes minutes)")
    a = p.parse_args(argv)
    if a.threads:
        # the library's CPU kernels use OpenMP; children inherit the environment
        os.environ["OMP_NUM_THREADS"] = str(a.threads)
        torch.set_num_threads(a.threads)
    cuda = a.device.startswith("cuda")
    repeats = a.repeats or (10 if cuda else 3)
    methods = [m for m in a.methods.split(",") if m]
    info = machine_info()
    if cuda:
        info["gpu"] = torch.cuda.get_device_name(a.device)
    print(" ".join(f"{k}={v}" for k, v in info.items()))

    try:
        diffs = {ps: check(a.device, ps) for ps in (1, 3)}
    except Exception as e:  # report and still time: the check is not the benchmark
        print(f"check failed to run: {type(e).__name__}: {e}")
        diffs = {ps: float("nan") for ps in (1, 3)}
    ok = all(d < 1e-9 for d in diffs.values())
    print("check torch-local == stnls (float64, output and grads): "
          + ", ".join(f"ps={ps} max|diff|={d:.1e}" for ps, d in diffs.items())
          + (" OK" if ok else " MISMATCH"))

    rows, records, dense_done = [], [], {}
    for cfg in configs(a.device, a.big):
        for method in methods:
            key = (cfg["H"], cfg["W"])
            if method == "sdpa-dense" and cfg["T"] * cfg["H"] * cfg["W"] > a.dense_max_pixels:
                r = {"error": "skipped"}
            elif method == "sdpa-dense" and key in dense_done:
                r = dense_done[key]  # independent of ps: measured once per size
            else:
                r = (measure if cuda else measure_isolated)(method, cfg, a.device, repeats)
                if method == "sdpa-dense":
                    dense_done[key] = r
            records.append(dict(cfg, method=method, **r))
            size = f"{cfg['T']}x{cfg['H']}x{cfg['W']}"
            cells = ([r["ms"], r["mb"]] if "error" not in r
                     else [r["error"] if r["error"] in ("oom", "skipped") else "error", None])
            rows.append([size, cfg["ps"], method] + cells)
            # each cell as it finishes, so a run stopped at a time limit still reports
            print(f"  {size} ps={cfg['ps']} {method}: "
                  + (f"{r['ms']:.2f} ms, {r['mb']:.1f} MB" if "error" not in r else r["error"]))
            sys.stdout.flush()
    c0 = configs(a.device, a.big)[0]
    print(f"\nforward+backward, B={c0['B']} dim={c0['dim']} nheads={c0['nheads']} "
          f"ws={c0['ws']} wt={c0['wt']} k={c0['k']} stride0=1, float32, "
          f"median of {repeats}; peak = "
          + ("max_memory_allocated growth" if cuda else "peak RSS growth (own process)"))
    print_table(["T x H x W", "ps", "method", "time ms", "peak MB"], rows)
    write_json(a.json, dict(machine=info, device=a.device, repeats=repeats,
                            check_max_abs_diff={str(k): v for k, v in diffs.items()},
                            results=records))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
