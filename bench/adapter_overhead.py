"""Per-call CPU overhead of the torch adapter: the public torch path of each op against the
bare binding `stnls._C` on the same, preallocated tensors, for inputs so small that the
kernel itself costs next to nothing.

Rows, for the search forward/backward and wpsum forward/backward:
  public    stnls.search.nls / nls_backward / stnls.agg.wpsum / wpsum_backward
  module    NonLocalSearch / WeightedPatchSum (forward only)
  autograd  torch.autograd.grad through the op (backward only; retain_graph)
  op        the torch.library custom op with prepacked arguments (what torch.compile sees)
  impl      the op's Python implementation, without the dispatcher (the eager path of
            the public calls, python/stnls/torch/_op.py)
  _C        the binding alone (preallocated outputs and workspace), handed the tensors
  _C caps   the same, handed DLPack capsules made beforehand: the kernel's own cost

    python bench/adapter_overhead.py [--device cpu|cuda] [--iters N] [--profile ROW]

Runs on CUDA when available (timings synchronise once per batch of calls, so the figure
is the CPU cost per call as long as the kernels keep up). `--profile search_fwd.public`
prints cProfile's top entries for that row.
"""
import argparse
import cProfile
import pstats
import time

import torch

import stnls
import stnls.torch.agg as tagg
import stnls.torch.search as tsearch
from stnls import _C
from stnls._params import normalize, pack, to_core
from stnls._patch_params import normalize as patch_normalize, to_core as patch_core


def caps(*tensors):
    """Unconsumed DLPack capsules (None stays None): the binding borrows them as they are,
    so one capsule serves every call."""
    return [None if t is None else torch.utils.dlpack.to_dlpack(t) for t in tensors]

CFG = dict(B=1, T=2, C=4, H=8, W=8, ws=3, wt=0, ps=1, k=4, stride0=1)


def setup(device):
    """The closures to time, by (op, row)."""
    c = CFG
    g = torch.Generator().manual_seed(0)
    vid0 = torch.randn(c["B"], c["T"], c["C"], c["H"], c["W"], generator=g).to(device)
    vid1 = torch.randn(c["B"], c["T"], c["C"], c["H"], c["W"], generator=g).to(device)
    args = (c["ws"], c["wt"], c["ps"], c["k"])
    kw = dict(stride0=c["stride0"])
    p = normalize(*args, **kw)
    ints, bools, dist_type = pack(p)
    core = to_core(p)
    stream = torch.cuda.current_stream().cuda_stream if device.type == "cuda" else None

    dists, inds = stnls.search.nls(vid0, vid1, None, None, *args, **kw)
    grad_dists = torch.randn_like(dists)
    d_out, i_out = torch.empty_like(dists), torch.empty_like(inds)
    g0, g1 = torch.empty_like(vid0), torch.empty_like(vid1)
    nbytes = _C.search_backward_workspace_size(core, vid0, vid1, inds)
    ws = torch.empty(nbytes, dtype=torch.uint8, device=device) if nbytes else None
    module = stnls.search.NonLocalSearch(*args, **kw)
    v0g, v1g = vid0.clone().requires_grad_(), vid1.clone().requires_grad_()
    dg, _ = stnls.search.nls(v0g, v1g, None, None, *args, **kw)

    rows = {}
    rows["search_fwd"] = {
        "public": lambda: stnls.search.nls(vid0, vid1, None, None, *args, **kw),
        "module": lambda: module(vid0, vid1),
        "op": lambda: tsearch.search_forward.op(vid0, vid1, None, None, ints, bools, dist_type),
        "impl": lambda: tsearch.search_forward.impl(vid0, vid1, None, None, ints, bools, dist_type),
        "_C": lambda: _C.search_forward(core, vid0, vid1, None, None, d_out, i_out, stream=stream),
        "_C caps": lambda c=caps(vid0, vid1, d_out, i_out): _C.search_forward(core, c[0], c[1], None, None,
                                                                              c[2], c[3], stream=stream),
    }
    rows["search_bwd"] = {
        "public": lambda: stnls.search.nls_backward(grad_dists, inds, vid0, vid1, *args, **kw),
        "autograd": lambda: torch.autograd.grad(dg, (v0g, v1g), grad_dists, retain_graph=True),
        "op": lambda: tsearch.search_backward.op(grad_dists, inds, vid0, vid1, ints, bools, dist_type),
        "impl": lambda: tsearch.search_backward.impl(grad_dists, inds, vid0, vid1, ints, bools,
                                                          dist_type),
        "_C": lambda: _C.search_backward(core, grad_dists, inds, vid0, vid1, g0, g1, ws, stream=stream),
        "_C caps": lambda c=caps(grad_dists, inds, vid0, vid1, g0, g1, ws): _C.search_backward(core, *c,
                                                                                              stream=stream),
    }

    # wpsum over the search's own neighbours (ps=1, stride0=1: attention's A @ V).
    weights = torch.softmax(dists, -1).contiguous()
    pp = patch_normalize(c["ps"])
    pargs = (pp["ps"], pp["stride0"], pp["pt"], pp["dilation"], pp["reflect_bounds"])
    acore = patch_core(pp, "agg")
    out = torch.empty_like(vid0)
    grad_out = torch.randn_like(vid0)
    gw = torch.empty_like(weights)
    wnbytes = _C.wpsum_backward_workspace_size(acore, vid0, weights, inds)
    wws = torch.empty(wnbytes, dtype=torch.uint8, device=device) if wnbytes else None
    agg = stnls.agg.WeightedPatchSum(c["ps"])
    vg, wg = vid0.clone().requires_grad_(), weights.clone().requires_grad_()
    og = stnls.agg.wpsum(vg, wg, inds, c["ps"])
    rows["wpsum_fwd"] = {
        "public": lambda: stnls.agg.wpsum(vid0, weights, inds, c["ps"]),
        "module": lambda: agg(vid0, weights, inds),
        "op": lambda: tagg.wpsum_op.op(vid0, weights, inds, *pargs),
        "impl": lambda: tagg.wpsum_op.impl(vid0, weights, inds, *pargs),
        "_C": lambda: _C.wpsum_forward(acore, vid0, weights, inds, out, stream=stream),
        "_C caps": lambda c=caps(vid0, weights, inds, out): _C.wpsum_forward(acore, *c, stream=stream),
    }
    rows["wpsum_bwd"] = {
        "public": lambda: stnls.agg.wpsum_backward(grad_out, vid0, weights, inds, c["ps"]),
        "autograd": lambda: torch.autograd.grad(og, (vg, wg), grad_out, retain_graph=True),
        "op": lambda: tagg.wpsum_backward_op.op(grad_out, vid0, weights, inds, *pargs, True),
        "impl": lambda: tagg.wpsum_backward_op.impl(grad_out, vid0, weights, inds, *pargs, True),
        "_C": lambda: _C.wpsum_backward(acore, grad_out, vid0, weights, inds, g0, gw, wws, stream=stream),
        "_C caps": lambda c=caps(grad_out, vid0, weights, inds, g0, gw, wws): _C.wpsum_backward(acore, *c,
                                                                                               stream=stream),
    }
    return rows


def per_call_us(fns, iters, repeats, device):
    """{row: best of `repeats` batches of `iters` calls, in microseconds per call}. The rows
    take turns batch by batch, so a slow spell of the machine hits them all alike."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for fn in fns.values():
        for _ in range(max(10, iters // 10)):
            fn()
    sync()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(iters):
                fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: t / iters * 1e6 for name, t in best.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--iters", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--profile", metavar="OP.ROW", help="cProfile one row, e.g. search_fwd.public")
    ap.add_argument("--top", type=int, default=25)
    a = ap.parse_args()
    device = torch.device(a.device)
    rows = setup(device)
    torch.set_grad_enabled(True)

    if a.profile:
        op, row = a.profile.split(".")
        fn = rows[op][row]
        per_call_us({row: fn}, 100, 1, device)
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(a.iters):
            fn()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(a.top)
        return

    cfg = ", ".join(f"{k}={v}" for k, v in CFG.items())
    print(f"stnls adapter overhead, torch {torch.__version__}, {device}, {cfg}")
    print(f"{a.iters} calls x best of {a.repeats}; us per call (and above the kernel's own cost, "
          f"'_C caps')")
    names = ("public", "module", "autograd", "op", "impl", "_C", "_C caps")
    print(f"{'op':<12}" + "".join(f"{n:>17}" for n in names))
    for op, fns in rows.items():
        t = per_call_us(fns, a.iters, a.repeats, device)
        cells = []
        for n in names:
            if n not in t:
                cells.append(f"{'-':>17}")
            elif n == "_C caps":
                cells.append(f"{t[n]:>17.1f}")
            else:
                cells.append(f"{t[n]:>9.1f} (+{t[n] - t['_C caps']:5.1f})")
        print(f"{op:<12}" + "".join(cells))


if __name__ == "__main__":
    main()
