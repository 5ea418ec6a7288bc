"""Where the time of one search call through torch goes, on the benchmark configurations:
the CUDA-event time of the public call (what search_cuda.py reports), the GPU time of its
kernels (torch profiler), and the host time of the call when the GPU is not waited for
(perf_counter over many calls, one synchronisation at the end). When the event time exceeds
the kernels' time, the GPU waited for the host.

    python3 bench/torch_call_breakdown.py [--configs S1,S2] [--repeats 50]

Rows: forward without autograd (no_grad), forward recording autograd (inputs requiring
grad), backward (deterministic, then deterministic=False), each as event ms / kernel ms /
host ms per call.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from search_cuda import CONFIGS  # noqa: E402


def event_ms(fn, repeats):
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        fn()
        e1.record()
        e1.synchronize()
        times.append(e0.elapsed_time(e1))
    return statistics.median(times)


def kernel_ms(fn, repeats):
    """GPU time of the kernels one call launches (profiler), median over calls."""
    from torch.profiler import ProfilerActivity, profile

    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    # Self device time is the kernels' (and copies') own; summed over the repeats.
    total_us = sum(e.self_device_time_total for e in prof.key_averages())
    return total_us / repeats / 1e3


def host_ms(fn, repeats):
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    host = (time.perf_counter() - t) / repeats * 1e3
    torch.cuda.synchronize()
    return host


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default="S1,S2")
    p.add_argument("--repeats", type=int, default=50)
    a = p.parse_args()
    if not torch.cuda.is_available():
        print("needs CUDA")
        return 0
    import stnls

    rows = []
    for name in a.configs.split(","):
        cfg = CONFIGS[name]
        args, kw = common.search_args(cfg), common.search_kwargs(cfg)
        v0, v1, ff, bf = common.make_inputs(cfg["B"], cfg["T"], cfg["C"], cfg["H"], cfg["W"], "cuda")
        g0, g1 = v0.clone().requires_grad_(True), v1.clone().requires_grad_(True)

        def fwd_nograd():
            with torch.no_grad():
                return stnls.search.nls(v0, v1, ff, bf, *args, **kw)

        def fwd_grad():
            return stnls.search.nls(g0, g1, ff, bf, *args, **kw)

        d, _ = fwd_grad()
        grad = torch.randn_like(d)

        def bwd(det):
            dd, _ = stnls.search.nls(g0, g1, ff, bf, *args, deterministic=det, **kw)

            def run():
                torch.autograd.grad(dd, (g0, g1), grad, retain_graph=True)
            return run

        cases = [("forward (no_grad)", fwd_nograd), ("forward (autograd)", fwd_grad),
                 ("backward", bwd(True)), ("backward nondet", bwd(False))]
        for label, fn in cases:
            for _ in range(3):
                fn()
            rows.append([name, label, event_ms(fn, a.repeats), kernel_ms(fn, a.repeats),
                         host_ms(fn, a.repeats)])
    print(f"{torch.cuda.get_device_name()}: ms per call, median of {a.repeats} (event), "
          f"mean (kernels, host)")
    common.print_table(["cfg", "call", "event ms", "kernels ms", "host ms"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
