"""Where one forward+backward of the attention layer spends its GPU time: CUDA kernel
times from torch.profiler, grouped by kernel and summed over 5 steps (divided by 5), and
the step's peak extra memory. Same layer and inputs as bench/attention.py.

    python bench/attention_breakdown.py                 # B=1 T=5 dim=64 nheads=4 ws=9 wt=2 k=16
    python bench/attention_breakdown.py --size 256 --ps 3
"""
import argparse
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attention import _step, build  # noqa: E402


def breakdown(size, ps, steps=5, top=14):
    cfg = dict(B=1, T=5, dim=64, nheads=4, ws=9, wt=2, k=16, stride0=1, H=size, W=size, ps=ps)
    model, vid, fflow, bflow, grad = build("stnls", cfg, "cuda")
    for _ in range(2):  # warm-up: kernels loaded, caching allocator filled
        _step(model, vid, fflow, bflow, grad)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    _step(model, vid, fflow, bflow, grad)
    peak = (torch.cuda.max_memory_allocated() - base) / 2 ** 20
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(steps):
            _step(model, vid, fflow, bflow, grad)
    rows = [(e.key, e.device_time_total / steps / 1e3, e.count // steps) for e in prof.key_averages()
            if e.device_time_total > 0]
    rows.sort(key=lambda r: -r[1])
    total = sum(r[1] for r in rows)
    print(f"\n{size}x{size} ps={ps}: GPU {total:.2f} ms per step, peak extra memory {peak:.0f} MiB")
    for name, ms, n in rows[:top]:
        print(f"  {ms:8.3f} ms  x{n:<3d} {name[:90]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", type=int, nargs="*", default=[128])
    p.add_argument("--ps", type=int, nargs="*", default=[1, 3])
    a = p.parse_args()
    print(torch.cuda.get_device_name())
    for s in a.size:
        for ps in a.ps:
            breakdown(s, ps)


if __name__ == "__main__":
    main()
