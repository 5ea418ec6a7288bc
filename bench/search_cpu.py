"""CPU benchmark of the non-local search: stnls.search.nls on torch CPU tensors (autograd
backward) against the plain-PyTorch baseline bench/torch_search.py, side by side.

For each config it times the forward (inputs with requires_grad, as in training) and the
backward of sum(grad * dists) (median of --repeats runs after one warm-up), checks that
both return the same indices (up to ties), prints a table and writes JSON with --json.

    python3 bench/search_cpu.py [--configs seed,small,large] [--repeats 5]
                                [--torch-repeats 3] [--skip-torch] [--json out.json]
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from torch_search import nls_torch  # noqa: E402

CONFIGS = {
    # the seed's example: st = min(2*wt+1, T) = 3
    "seed": dict(B=1, T=3, C=12, H=128, W=128, ws=21, wt=3, ps=7, k=10, nheads=4, stride0=4),
    # smaller: a dense query grid on a small video
    "small": dict(B=1, T=4, C=16, H=64, W=64, ws=9, wt=1, ps=3, k=10, nheads=2, stride0=1),
    # larger: more frames, larger frames, more queries
    "large": dict(B=1, T=5, C=12, H=256, W=256, ws=9, wt=2, ps=3, k=10, nheads=4, stride0=2),
}


def run_one(fn, inputs, grad, repeats, warmup=1):
    """Median forward and backward seconds of fn(*inputs) -> (dists, inds)."""
    vid0, vid1, ff, bf = inputs
    fwd, bwd = [], []
    out = None
    for it in range(warmup + repeats):
        vid0.grad = vid1.grad = None
        t0 = time.perf_counter()
        out = fn(vid0, vid1, ff, bf)
        t1 = time.perf_counter()
        out[0].backward(grad)
        t2 = time.perf_counter()
        if it >= warmup:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    fwd.sort()
    bwd.sort()
    return fwd[len(fwd) // 2], bwd[len(bwd) // 2], out


def main():
    p = argparse.ArgumentParser(description="CPU search benchmark: stnls vs plain PyTorch")
    p.add_argument("--configs", default="seed,small,large",
                   help=f"comma-separated names from {list(CONFIGS)}")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of stnls")
    p.add_argument("--torch-repeats", type=int, default=3, help="timed runs of the baseline")
    p.add_argument("--torch-method", default=None, choices=["conv", "gather"],
                   help="baseline method (default: conv, its fastest on CPU)")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    import stnls

    info = common.machine_info()
    print(f"torch {info['torch']}, torch.get_num_threads() = {torch.get_num_threads()}, "
          f"os.cpu_count() = {info['cpu_count']}, load average {info.get('loadavg')}")
    names = [n.strip() for n in a.configs.split(",") if n.strip()]
    rows, records = [], []
    for name in names:
        cfg = CONFIGS[name]
        args, kw = common.search_args(cfg), common.search_kwargs(cfg)
        inputs = common.make_inputs(cfg["B"], cfg["T"], cfg["C"], cfg["H"], cfg["W"], "cpu")
        inputs[0].requires_grad_(True)
        inputs[1].requires_grad_(True)
        Q = common.num_queries(cfg["T"], cfg["H"], cfg["W"], cfg["stride0"])
        g = torch.Generator().manual_seed(1)
        grad = torch.randn(cfg["B"], cfg["nheads"], Q, cfg["k"], generator=g)

        def ours(v0, v1, ff, bf):
            return stnls.search.nls(v0, v1, ff, bf, *args, **kw)

        def base(v0, v1, ff, bf):
            return nls_torch(v0, v1, ff, bf, *args, method=a.torch_method, **kw)

        print(f"[{name}] {cfg}: stnls ...", flush=True)
        f_s, b_s, (d_s, i_s) = run_one(ours, inputs, grad, a.repeats)
        rec = dict(name=name, config=cfg, flops=common.search_flops(cfg),
                   stnls_fwd_ms=1e3 * f_s, stnls_bwd_ms=1e3 * b_s)
        f_t = b_t = mism = None
        if not a.skip_torch:
            print(f"[{name}] torch baseline ...", flush=True)
            f_t, b_t, (d_t, i_t) = run_one(base, inputs, grad, a.torch_repeats)
            mism, raw = common.index_mismatch(d_t, i_t, d_s, i_s)
            rec.update(torch_fwd_ms=1e3 * f_t, torch_bwd_ms=1e3 * b_t,
                       fwd_speedup=f_t / f_s, bwd_speedup=b_t / b_s,
                       index_mismatch=mism, index_differs_incl_ties=raw,
                       max_abs_dist_diff=(d_t - d_s).abs().max().item())
        records.append(rec)
        rows.append([name, Q, 1e3 * f_s, None if f_t is None else 1e3 * f_t,
                     None if f_t is None else f"{f_t / f_s:.1f}x",
                     1e3 * b_s, None if b_t is None else 1e3 * b_t,
                     None if b_t is None else f"{b_t / b_s:.1f}x",
                     None if mism is None else f"{mism:.4f}"])
    print()
    print(f"CPU, torch.get_num_threads() = {torch.get_num_threads()}; times in ms, "
          f"median of {a.repeats} (stnls) / {a.torch_repeats} (torch) runs after 1 warm-up")
    common.print_table(["config", "Q", "fwd stnls", "fwd torch", "fwd speedup",
                        "bwd stnls", "bwd torch", "bwd speedup", "idx mismatch"], rows)
    info["loadavg_after"] = os.getloadavg()
    common.write_json(a.json, dict(machine=info, device="cpu", results=records,
                                   torch_method=a.torch_method or "conv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
