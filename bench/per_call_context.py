"""What a search forward's time per call depends on besides the kernel: the inputs, and
the work that runs between calls (bench/NOTES.md, eighteenth and nineteenth sessions).

For one config (default S2 of search_cuda.py, prod, random flows) it prints, in ms:
- queued: the forward with --repeats calls back to back (one pair of CUDA events around
  all of them), for two input seeds of bench/common.make_inputs and, on CUDA, once through
  the bare binding (torch_call_breakdown.binding_cases): kernels that differ by seed point at
  the data (S2's seed 0 once hit the thread layout's box fallback);
- per call: synchronise, event, call, event, then some work before the next call:
  nothing, an 85 MB allocation, 0.4 ms of Python busy-waiting (the GPU idle), the
  autograd backward, eight 2048^2 matmuls (GPU work only). search_cuda.py's "fwd call"
  column is the "backward" row;
- on CUDA, the same loops under torch.profiler: per context the medians of the host's time
  from the call to the kernel's launch, of the launch's time to the kernel's start, and of
  the kernel itself, so that a slower call can be told apart from a slower kernel (the
  profiler adds its own host time to the first figure).

    python3 bench/per_call_context.py [--config S2] [--repeats 200] [--calls 60]

Without CUDA it says so and exits; --device cpu runs the same steps with wall-clock timers
(to test the script).
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from search_cuda import CONFIGS, Timer  # noqa: E402
from torch_call_breakdown import binding_cases  # noqa: E402

import stnls  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="S2", choices=sorted(CONFIGS))
    p.add_argument("--repeats", type=int, default=200, help="calls queued back to back")
    p.add_argument("--calls", type=int, default=60, help="per-call samples (median)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--shrink", type=int, default=1, help="divide H and W (CPU tests)")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("per_call_context.py: no CUDA device; nothing to time")
        return
    cfg = dict(CONFIGS[args.config])
    cfg["H"], cfg["W"] = cfg["H"] // args.shrink, cfg["W"] // args.shrink
    sargs, skw = common.search_args(cfg), common.search_kwargs(cfg)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def inputs(seed):
        v0, v1, ff, bf = common.make_inputs(cfg["B"], cfg["T"], cfg["C"], cfg["H"], cfg["W"], device, seed=seed)
        return v0.requires_grad_(), v1.requires_grad_(), ff, bf

    def queued(fn):
        for _ in range(3):
            fn()
        sync()
        t = Timer(device)
        t.start()
        for _ in range(args.repeats):
            fn()
        t.stop()
        sync()
        return t.elapsed() / args.repeats

    print(f"{args.config} {cfg} on {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}")
    for seed in (0, 1):
        v0, v1, ff, bf = inputs(seed)
        with torch.no_grad():
            ms = queued(lambda: stnls.search.nls(v0, v1, ff, bf, *sargs, **skw))
        print(f"queued, seed {seed}: {ms:.4f}")
    if device.type == "cuda":  # the binding's forward, capsules and outputs made beforehand
        d, inds = stnls.search.nls(v0, v1, ff, bf, *sargs, **skw)
        cases = dict(binding_cases(sargs, skw, v0.detach(), v1.detach(), ff, bf, d.detach(), inds,
                                   torch.ones_like(d)))
        print(f"queued, bare binding (seed 1): {queued(cases['_C forward']):.4f}")

    v0, v1, ff, bf = inputs(0)
    a = torch.randn(2048, 2048, device=device) if device.type == "cuda" else torch.randn(256, 256)

    def busy_wait(d):
        t = time.perf_counter()
        while time.perf_counter() - t < 4e-4:
            pass

    between = {
        "nothing": lambda d: None,
        "85 MB allocation": lambda d: torch.empty(85 << 20, dtype=torch.uint8, device=device),
        "0.4 ms Python busy-wait": busy_wait,
        "backward": lambda d: d.backward(torch.ones_like(d)),
        "8 matmuls": lambda d: [a @ a for _ in range(8)],
    }
    def per_call(work):
        samples = []
        for _ in range(args.calls):
            v0.grad = v1.grad = None
            sync()
            t = Timer(device)
            t.start()
            with torch.profiler.record_function("stnls call"):
                d, _ = stnls.search.nls(v0, v1, ff, bf, *sargs, **skw)
            t.stop()
            work(d)
            sync()
            samples.append(t.elapsed())
        return statistics.median(samples)

    for name, work in between.items():
        print(f"per call, then {name}: {per_call(work):.4f}")
    if device.type != "cuda":
        return
    print("under torch.profiler, medians in us: call -> launch, launch -> kernel start, kernel")
    for name, work in between.items():
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU,
                                                torch.profiler.ProfilerActivity.CUDA]) as prof:
            per_call(work)
        host, start, kernel = timeline(prof)
        print(f"  then {name}: {host:6.1f} {start:6.1f} {kernel:6.1f}")


def timeline(prof):
    """Medians over the "stnls call" regions of a profile: host time from the region's start
    to the forward kernel's launch, launch to kernel start, kernel duration (us)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    launches = {e["args"]["correlation"]: e for e in events
                if e.get("cat") == "cuda_runtime" and "Launch" in e.get("name", "") and "correlation" in e.get("args", {})}
    kernels = [e for e in events if e.get("cat") == "kernel" and "search_forward" in e.get("name", "")]
    calls = [e for e in events if e.get("cat") == "user_annotation" and e.get("name") == "stnls call"]
    rows = []
    for k in kernels:
        launch = launches.get(k["args"].get("correlation"))
        call = launch and next((c for c in calls if c["ts"] <= launch["ts"] <= c["ts"] + c["dur"]), None)
        if call:
            rows.append((launch["ts"] - call["ts"], k["ts"] - launch["ts"], k["dur"]))
    if not rows:
        return (float("nan"),) * 3
    return tuple(statistics.median(r[i] for r in rows) for i in range(3))


if __name__ == "__main__":
    main()
