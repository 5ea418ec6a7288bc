"""Where the time of one search call through torch goes, on the benchmark configurations:
the CUDA-event time of the public call (what search_cuda.py reports), the GPU time of its
kernels (torch profiler), and the host time of the call when the GPU is not waited for
(perf_counter over many calls, one synchronisation at the end). When the event time exceeds
the kernels' time, the GPU waited for the host.

    python3 bench/torch_call_breakdown.py [--configs S1,S2] [--repeats 50]

Rows: forward without autograd (no_grad), forward recording autograd (inputs requiring
grad), backward (deterministic, then deterministic=False), each as event ms / kernel ms /
host ms per call; then the binding alone (`_C`, preallocated outputs and workspace, DLPack
capsules made beforehand), whose host time is the C++ side's: the rest of a public call's
host time is torch's and the adapter's.

`--profile S1:backward` prints, for one of those cases, where its host time goes: torch's
profiler (CPU ops, self time) and cProfile (Python functions, own time).
"""
import argparse
import cProfile
import os
import pstats
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


def binding_cases(args, kw, v0, v1, ff, bf, d, inds, grad):
    """The binding alone, handed capsules made beforehand (the C++ side's own host time)."""
    from torch.utils.dlpack import to_dlpack

    from stnls import _C
    from stnls._params import normalize, to_core

    stream = torch.cuda.current_stream().cuda_stream
    cases = []
    for det in (True, False):
        core = to_core(normalize(*args, deterministic=det, **kw))
        g0, g1 = torch.empty_like(v0), torch.empty_like(v1)
        nbytes = _C.search_backward_workspace_size(core, v0, v1, inds)
        ws = torch.empty(max(nbytes, 1), dtype=torch.uint8, device=v0.device)
        fbytes = _C.search_forward_workspace_size(core, v0, v1)
        wsf = torch.empty(max(fbytes, 1), dtype=torch.uint8, device=v0.device)
        c = [None if t is None else to_dlpack(t) for t in (v0, v1, ff, bf, d, inds, grad, g0, g1, ws, wsf)]
        if det:
            cases.append(("_C forward", lambda c=c, core=core, w=c[10] if fbytes else None: _C.search_forward(
                core, c[0], c[1], c[2], c[3], c[4], c[5], w, stream=stream)))
        label = "_C backward" if det else "_C backward nondet"
        w = c[9] if nbytes else None
        cases.append((label, lambda c=c, core=core, w=w: (
            _C.search_backward_workspace_size(core, c[0], c[1], c[5]),
            _C.search_backward(core, c[6], c[5], c[0], c[1], c[7], c[8], w, stream=stream))))
    return cases


def profile(fn, repeats):
    """Where one case's host time goes: torch's CPU ops, then Python functions."""
    from torch.profiler import ProfilerActivity, profile as tprofile

    with tprofile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(repeats):
            fn()
        torch.cuda.synchronize()
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    cp = cProfile.Profile()
    cp.enable()
    for _ in range(repeats):
        fn()
    cp.disable()
    torch.cuda.synchronize()
    pstats.Stats(cp).sort_stats("tottime").print_stats(25)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--configs", default="S1,S2")
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--profile", metavar="CFG:CALL", help="e.g. S1:backward (a call label)")
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
        with torch.no_grad():
            d, inds = stnls.search.nls(v0, v1, ff, bf, *args, **kw)
        cases += binding_cases(args, kw, v0, v1, ff, bf, d, inds, grad)
        if a.profile:
            pcfg, plabel = a.profile.split(":")
            if pcfg == name:
                fn = dict(cases)[plabel]
                for _ in range(3):
                    fn()
                print(f"== {name} {plabel}")
                profile(fn, a.repeats)
            continue
        for label, fn in cases:
            for _ in range(3):
                fn()
            rows.append([name, label, event_ms(fn, a.repeats), kernel_ms(fn, a.repeats),
                         host_ms(fn, a.repeats)])
    if a.profile:
        return 0
    print(f"{torch.cuda.get_device_name()}: ms per call, median of {a.repeats} (event), "
          f"mean (kernels, host)")
    common.print_table(["cfg", "call", "event ms", "kernels ms", "host ms"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
