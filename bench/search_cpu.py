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


class Timings:
    """Forward/backward wall times and forward process CPU times (all threads; less
    sensitive than wall time to other load on the machine) of one implementation."""

    def __init__(self, fn):
        self.fn = fn
        self.fwd, self.bwd, self.fcpu = [], [], []
        self.out = None

    def run(self, inputs, grad, record):
        vid0, vid1, ff, bf = inputs
        vid0.grad = vid1.grad = None
        c0 = time.process_time()
        t0 = time.perf_counter()
        out = self.fn(vid0, vid1, ff, bf)
        t1 = time.perf_counter()
        c1 = time.process_time()
        out[0].backward(grad)
        t2 = time.perf_counter()
        if record:
            self.fwd.append(t1 - t0)
            self.bwd.append(t2 - t1)
            self.fcpu.append(c1 - c0)
        self.out = (out[0].detach(), out[1])

    def summary(self, prefix):
        med = lambda x: sorted(x)[len(x) // 2]  # noqa: E731
        return {f"{prefix}_fwd_ms": 1e3 * med(self.fwd), f"{prefix}_bwd_ms": 1e3 * med(self.bwd),
                f"{prefix}_fwd_cpu_ms": 1e3 * med(self.fcpu),
                f"{prefix}_fwd_min_ms": 1e3 * min(self.fwd),
                f"{prefix}_bwd_min_ms": 1e3 * min(self.bwd), f"{prefix}_runs": len(self.fwd)}


def time_pair(ours, base, inputs, grad, repeats, torch_repeats, warmup=1):
    """Interleave the runs of both implementations so that both see the same load."""
    n = warmup + max(repeats, torch_repeats if base else 0)
    for it in range(n):
        if it < warmup + repeats:
            ours.run(inputs, grad, it >= warmup)
        if base is not None and it < warmup + torch_repeats:
            base.run(inputs, grad, it >= warmup)


def main():
    p = argparse.ArgumentParser(description="CPU search benchmark: stnls vs plain PyTorch")
    p.add_argument("--configs", default="seed,small,large",
                   help=f"comma-separated names from {list(CONFIGS)}")
    p.add_argument("--repeats", type=int, default=5, help="timed runs of stnls")
    p.add_argument("--torch-repeats", type=int, default=3, help="timed runs of the baseline")
    p.add_argument("--torch-method", default=None, choices=["conv", "gather"],
                   help="baseline method (default: conv, its fastest on CPU)")
    p.add_argument("--skip-torch", action="store_true")
    p.add_argument("--threads", type=int, default=None,
                   help="threads of both: torch.set_num_threads and OMP_NUM_THREADS for stnls")
    p.add_argument("--json", default=None)
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
        # stnls's OpenMP runtime reads this when the extension is first loaded (below)
        os.environ["OMP_NUM_THREADS"] = str(a.threads)
    import stnls

    info = common.machine_info()
    info["omp_num_threads_env"] = os.environ.get("OMP_NUM_THREADS")
    print(f"torch {info['torch']}, torch.get_num_threads() = {torch.get_num_threads()}, "
          f"OMP_NUM_THREADS = {info['omp_num_threads_env']}, "
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

        print(f"[{name}] {cfg} ...", flush=True)
        t_s = Timings(ours)
        t_t = None if a.skip_torch else Timings(base)
        time_pair(t_s, t_t, inputs, grad, a.repeats, a.torch_repeats)
        rec = dict(name=name, config=cfg, flops=common.search_flops(cfg), **t_s.summary("stnls"))
        f_s, b_s, c_s = rec["stnls_fwd_ms"], rec["stnls_bwd_ms"], rec["stnls_fwd_cpu_ms"]
        f_t = b_t = mism = None
        if t_t is not None:
            rec.update(t_t.summary("torch"))
            f_t, b_t = rec["torch_fwd_ms"], rec["torch_bwd_ms"]
            (d_s, i_s), (d_t, i_t) = t_s.out, t_t.out
            mism, raw = common.index_mismatch(d_t, i_t, d_s, i_s)
            rec.update(fwd_speedup=f_t / f_s, bwd_speedup=b_t / b_s,
                       fwd_cpu_time_ratio=rec["torch_fwd_cpu_ms"] / c_s,
                       index_mismatch=mism, index_differs_incl_ties=raw,
                       max_abs_dist_diff=(d_t - d_s).abs().max().item())
        records.append(rec)
        best = None if f_t is None else rec["torch_fwd_min_ms"] / rec["stnls_fwd_min_ms"]
        rows.append([name, Q, f_s, c_s, f_t, None if f_t is None else f"{f_t / f_s:.1f}x",
                     None if best is None else f"{best:.1f}x", b_s, b_t,
                     None if b_t is None else f"{b_t / b_s:.1f}x",
                     None if mism is None else f"{mism:.4f}"])
    print()
    print(f"CPU, torch.get_num_threads() = {torch.get_num_threads()}; times in ms, "
          f"median of {a.repeats} (stnls) / {a.torch_repeats} (torch) interleaved runs after 1 "
          f"warm-up; "
          f"(cpu time) = process CPU time of the stnls forward, all threads; (best/best) = "
          f"speedup of the fastest runs")
    common.print_table(["config", "Q", "fwd stnls", "(cpu time)", "fwd torch", "fwd speedup",
                        "(best/best)",
                        "bwd stnls", "bwd torch", "bwd speedup", "idx mismatch"], rows)
    info["loadavg_after"] = os.getloadavg()
    common.write_json(a.json, dict(machine=info, device="cpu", results=records,
                                   torch_method=a.torch_method or "conv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
