"""CUDA benchmark of the non-local search: stnls.search.nls on CUDA tensors against the
plain-PyTorch baseline bench/torch_search.py on the same GPU.

Per config (S1..S4, prod, random flows) it reports the forward's and the backward's GPU time
per call ("gpu": --repeats calls queued back to back between one pair of CUDA events, so
that the host runs ahead as in a model; the backward's through stnls.search.nls_backward,
the op that autograd's backward runs), their time per call made right after a synchronisation ("call":
CUDA events around each call, warm-up, median of --repeats; the backward twice: the default
deterministic one and deterministic=False, which takes the atomic scatter on small calls),
the forward's peak extra GPU memory (max_memory_allocated after reset_peak_memory_stats,
minus the memory held before the call), achieved TFLOP/s of the forward's GPU time with
FLOPs = 2*B*Q*st*ws^2*ps^2*pt*C, the targets and pass/fail.

The targets are times on one GPU kind, so pass/fail reads the GPU time. A call's time adds
the host's work before the kernel starts: for S2 on an H200 the kernel runs 0.241-0.246 ms
whatever ran before it (torch.profiler), and the call reads 0.28-0.38 ms, because the
adapter's 0.03 ms of Python and torch before the launch takes 0.05-0.15 ms right after a
synchronisation, differently from run to run on the same machine, plus 0.01-0.02 ms from
the launch to the kernel's start (bench/NOTES.md, nineteenth session). On CPU the GPU time
is not measured and pass/fail reads the call's time.

Before timing, stnls's indices are checked against the baseline on a few query ranges
(mismatch = fraction of entries whose index differs where the distances do not tie), so
that a wrong kernel is not timed silently. The baseline may be slow or run out of memory:
an OOM prints "oom".

    python3 bench/search_cuda.py [--configs S1,S2,S3,S4] [--repeats 20] [--skip-torch]
                                 [--json out.json]

Without CUDA it prints the configs and their sizes and exits cleanly. ``--device cpu
--shrink 8`` runs the whole script on CPU at 1/8 of the frame size, to test the script.
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from torch_search import nls_torch  # noqa: E402

# (B, T, C, H, W | ws, wt, ps, k, nheads, stride0), prod, random flows
CONFIGS = {
    "S1": dict(B=1, T=3, C=12, H=128, W=128, ws=21, wt=3, ps=7, k=10, nheads=4, stride0=4),
    "S2": dict(B=1, T=5, C=16, H=128, W=128, ws=5, wt=2, ps=3, k=10, nheads=2, stride0=1),
    "S3": dict(B=1, T=5, C=64, H=256, W=256, ws=9, wt=2, ps=7, k=10, nheads=4, stride0=1),
    "S4": dict(B=1, T=4, C=32, H=480, W=854, ws=7, wt=1, ps=3, k=10, nheads=1, stride0=2),
}
# milliseconds
TARGET_FWD = {"S1": 0.5, "S2": 0.3, "S3": 32.0, "S4": 3.0}
TARGET_BWD = {"S1": 0.18, "S2": 0.43, "S3": 28.0, "S4": 4.6}
MEM_FACTOR = 1.5  # peak extra forward memory <= 1.5 x bytes(dists + inds)


def out_bytes(cfg, elt=4):
    Q = common.num_queries(cfg["T"], cfg["H"], cfg["W"], cfg["stride0"])
    return cfg["B"] * cfg["nheads"] * Q * cfg["k"] * (elt + 3 * 4)


class Timer:
    """Elapsed milliseconds of a region: CUDA events on CUDA, perf_counter on CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def start(self):
        if self.cuda:
            self.e0 = torch.cuda.Event(enable_timing=True)
            self.e1 = torch.cuda.Event(enable_timing=True)
            self.e0.record()
        else:
            self.t0 = time.perf_counter()

    def stop(self):
        if self.cuda:
            self.e1.record()
            return self

        self.ms = 1e3 * (time.perf_counter() - self.t0)
        return self

    def elapsed(self):
        if self.cuda:
            self.e1.synchronize()
            return self.e0.elapsed_time(self.e1)
        return self.ms


def time_fwd_bwd(fn, inputs, grad, repeats, warmup, device):
    """Median forward and backward milliseconds of fn(*inputs) -> (dists, inds)."""
    vid0, vid1 = inputs[0], inputs[1]
    fwd, bwd = [], []
    for it in range(warmup + repeats):
        vid0.grad = vid1.grad = None
        if device.type == "cuda":
            torch.cuda.synchronize()
        tf, tb = Timer(device), Timer(device)
        tf.start()
        d, _ = fn(*inputs)
        tf.stop()
        tb.start()
        d.backward(grad)
        tb.stop()
        if it >= warmup:
            fwd.append(tf.elapsed())
            bwd.append(tb.elapsed())
        del d
    return statistics.median(fwd), statistics.median(bwd)


def time_queued(call, repeats, device):
    """GPU milliseconds per call when `repeats` calls are queued back to back between one
    pair of CUDA events: the host runs ahead, as in a model, so this is the GPU's time. The
    per-call medians of time_fwd_bwd add the host's time before each kernel (module
    docstring). None on CPU."""
    if device.type != "cuda":
        return None
    call()
    torch.cuda.synchronize()
    t = Timer(device)
    t.start()
    for _ in range(repeats):
        call()
    t.stop()
    return t.elapsed() / repeats


def peak_forward_bytes(fn, inputs, device):
    """Peak memory the forward allocates beyond what is held before it (CUDA only)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    out = fn(*inputs)
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated() - base
    del out
    return peak


def is_oom(e):
    return isinstance(e, torch.OutOfMemoryError) or "out of memory" in str(e).lower()


def check_indices(ours, inputs, cfg, nq, torch_method):
    """Mismatch of stnls's indices against the baseline on queries [0, nq) and
    [Q/2, Q/2 + nq). Returns (mismatch fraction, raw index-differs fraction)."""
    args, kw = common.search_args(cfg), common.search_kwargs(cfg)
    Q = common.num_queries(cfg["T"], cfg["H"], cfg["W"], cfg["stride0"])
    with torch.no_grad():
        d_s, i_s = ours(*inputs)
        bad = raw = n = 0
        for qa in sorted({0, Q // 2}):
            qb = min(Q, qa + nq)
            d_t, i_t = nls_torch(*inputs, *args, method=torch_method, queries=(qa, qb), **kw)
            m, r = common.index_mismatch(d_t, i_t, d_s[:, :, qa:qb], i_s[:, :, qa:qb])
            bad += m * (qb - qa)
            raw += r * (qb - qa)
            n += qb - qa
    return bad / n, raw / n


def main():
    p = argparse.ArgumentParser(description="CUDA search benchmark: stnls vs plain PyTorch")
    p.add_argument("--configs", default="S1,S2,S3,S4")
    p.add_argument("--repeats", type=int, default=20, help="timed runs of stnls")
    p.add_argument("--torch-repeats", type=int, default=5, help="timed runs of the baseline")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--skip-torch", action="store_true",
                   help="do not time the baseline (the index check still uses it)")
    p.add_argument("--torch-method", default="gather", choices=["conv", "gather"],
                   help="baseline method: gather (index_select + bmm, default) or conv "
                        "(grouped conv2d per query; faster on CPU, untested on cuDNN here)")
    p.add_argument("--check-queries", type=int, default=512,
                   help="queries per range in the index check (0: no check)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--shrink", type=int, default=1,
                   help="divide H and W by this (script tests on small devices)")
    p.add_argument("--json", default=None)
    a = p.parse_args()

    names = [n.strip() for n in a.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in CONFIGS]
    if unknown:
        p.error(f"--configs: unknown {unknown}, expected names from {list(CONFIGS)}")
    cfgs = {}
    for n in names:
        cfg = dict(CONFIGS[n])
        cfg["H"] = max(cfg["ws"], cfg["H"] // a.shrink)
        cfg["W"] = max(cfg["ws"], cfg["W"] // a.shrink)
        cfgs[n] = cfg

    device = torch.device(a.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available (torch %s): nothing to time. The configs:" % torch.__version__)
        for n, cfg in cfgs.items():
            print(f"  {n}: {cfg}  Q={common.num_queries(cfg['T'], cfg['H'], cfg['W'], cfg['stride0'])}"
                  f"  GFLOP={common.search_flops(cfg) / 1e9:.1f}"
                  f"  dists+inds={out_bytes(cfg) / 2**20:.1f} MiB"
                  f"  targets fwd<={TARGET_FWD[n]} ms bwd<={TARGET_BWD[n]} ms")
        return 0

    import stnls

    info = common.machine_info()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    print(f"device {info.get('gpu', 'cpu')}, torch {info['torch']}, stnls {info['stnls']}")
    rows, records = [], []
    for name, cfg in cfgs.items():
        args, kw = common.search_args(cfg), common.search_kwargs(cfg)
        inputs = common.make_inputs(cfg["B"], cfg["T"], cfg["C"], cfg["H"], cfg["W"], device)
        inputs[0].requires_grad_(True)
        inputs[1].requires_grad_(True)
        Q = common.num_queries(cfg["T"], cfg["H"], cfg["W"], cfg["stride0"])
        grad = torch.randn(cfg["B"], cfg["nheads"], Q, cfg["k"], device=device)
        flops = common.search_flops(cfg)
        obytes = out_bytes(cfg)

        def ours(v0, v1, ff, bf):
            return stnls.search.nls(v0, v1, ff, bf, *args, **kw)

        def ours_nondet(v0, v1, ff, bf):
            return stnls.search.nls(v0, v1, ff, bf, *args, deterministic=False, **kw)

        def base(v0, v1, ff, bf):
            return nls_torch(v0, v1, ff, bf, *args, method=a.torch_method, **kw)

        rec = dict(name=name, config=cfg, flops=flops, out_bytes=obytes,
                   target_fwd_ms=TARGET_FWD[name], target_bwd_ms=TARGET_BWD[name])
        print(f"[{name}] {cfg}", flush=True)
        # 1. correctness spot check
        check = "-"
        if a.check_queries > 0:
            try:
                mism, raw = check_indices(ours, inputs, cfg, a.check_queries, a.torch_method)
                rec.update(index_mismatch=mism, index_differs_incl_ties=raw)
                check = "ok" if mism == 0 else f"{mism:.4f}"
            except RuntimeError as e:
                if not is_oom(e):
                    raise
                check = "oom"
            if device.type == "cuda":
                torch.cuda.empty_cache()
        rec["check"] = check
        # 2. stnls
        f_s, b_s = time_fwd_bwd(ours, inputs, grad, a.repeats, a.warmup, device)
        m_s = peak_forward_bytes(ours, inputs, device)
        f_q = time_queued(lambda: ours(*inputs), a.repeats, device)
        with torch.no_grad():
            inds = ours(*inputs)[1]
        # The backward op itself (the autograd backward runs it), without autograd's engine.
        b_q = time_queued(lambda: stnls.search.nls_backward(grad, inds, inputs[0], inputs[1], *args, **kw),
                          a.repeats, device)
        del inds
        _, b_n = time_fwd_bwd(ours_nondet, inputs, grad, a.repeats, a.warmup, device)
        f_v, b_v = (f_s, b_s) if f_q is None else (f_q, b_q)  # what pass/fail reads
        rec.update(stnls_fwd_ms=f_s, stnls_fwd_gpu_ms=f_q, stnls_bwd_ms=b_s, stnls_bwd_gpu_ms=b_q,
                   stnls_bwd_nondet_ms=b_n, stnls_peak_bytes=m_s,
                   stnls_tflops=flops / (f_v * 1e-3) / 1e12,
                   pass_fwd=f_v <= TARGET_FWD[name], pass_bwd=b_v <= TARGET_BWD[name],
                   pass_fwd_call=f_s <= TARGET_FWD[name], pass_bwd_call=b_s <= TARGET_BWD[name],
                   pass_bwd_nondet_call=b_n <= TARGET_BWD[name],
                   pass_mem=None if m_s is None else m_s <= MEM_FACTOR * obytes)
        # 3. baseline
        f_t = b_t = m_t = None
        if not a.skip_torch:
            try:
                f_t, b_t = time_fwd_bwd(base, inputs, grad, a.torch_repeats, 1, device)
                m_t = peak_forward_bytes(base, inputs, device)
                rec.update(torch_fwd_ms=f_t, torch_bwd_ms=b_t, torch_peak_bytes=m_t,
                           torch_tflops=flops / (f_t * 1e-3) / 1e12,
                           fwd_speedup=f_t / f_s, bwd_speedup=b_t / b_s)
            except RuntimeError as e:
                if not is_oom(e):
                    raise
                f_t = b_t = m_t = "oom"
                rec.update(torch_fwd_ms="oom", torch_bwd_ms="oom")
            if device.type == "cuda":
                torch.cuda.empty_cache()
        records.append(rec)

        def pf(ok):
            return "-" if ok is None else ("PASS" if ok else "FAIL")

        def mib(x):
            return x if x is None or isinstance(x, str) else x / 2**20

        num = lambda x: isinstance(x, float)  # noqa: E731
        rows.append([
            name, check,
            f_q, f_s, pf(rec["pass_fwd_call"]), f_t, f"{f_t / f_s:.1f}x" if num(f_t) else None, TARGET_FWD[name],
            pf(rec["pass_fwd"]),
            b_q, b_s, pf(rec["pass_bwd_call"]), b_t, f"{b_t / b_s:.1f}x" if num(b_t) else None, TARGET_BWD[name],
            pf(rec["pass_bwd"]),
            b_n, pf(rec["pass_bwd_nondet_call"]),
            mib(m_s), mib(m_t), MEM_FACTOR * obytes / 2**20, pf(rec["pass_mem"]),
            rec["stnls_tflops"], flops / (f_t * 1e-3) / 1e12 if num(f_t) else None,
        ])
        del inputs, grad
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print()
    print(f"{info.get('gpu', 'cpu')}: times in ms, memory in MiB (peak extra of the forward), "
          f"TFLOP/s of the forward's GPU time. gpu = GPU time per call ({a.repeats} calls queued "
          f"back to back); call = median of {a.repeats} stnls / {a.torch_repeats} torch calls, each "
          f"right after a synchronisation (host time included), with its own pass/fail (call<=); "
          f"fwd / bwd = pass/fail of the GPU time (the call's on CPU); check = index mismatch "
          f"against the baseline; x = torch call / stnls call")
    common.print_table(["cfg", "check",
                        "fwd gpu", "fwd call", "call<=", "fwd torch", "fwd x", "fwd tgt", "fwd",
                        "bwd gpu", "bwd call", "call<=", "bwd torch", "bwd x", "bwd tgt", "bwd",
                        "bwd nondet", "call<=",
                        "mem ours", "mem torch", "mem tgt", "mem",
                        "TF/s ours", "TF/s torch"], rows)
    common.write_json(a.json, dict(machine=info, device=str(device), results=records,
                                   torch_method=a.torch_method, repeats=a.repeats,
                                   torch_repeats=a.torch_repeats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
