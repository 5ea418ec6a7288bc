"""Shared pieces of the search benchmarks: random inputs, the FLOP count, index
comparison, a median timer, table printing and the JSON record of the machine."""
import datetime
import json
import os
import platform
import statistics
import time

import torch


def make_inputs(B, T, C, H, W, device, dtype=torch.float32, flows=True, seed=0):
    """Random videos and (if flows) random flows of a few pixels, on device."""
    g = torch.Generator().manual_seed(seed)
    vid0 = torch.randn(B, T, C, H, W, generator=g, dtype=dtype)
    vid1 = torch.randn(B, T, C, H, W, generator=g, dtype=dtype)
    fflow = bflow = None
    if flows:
        fflow = 2.0 * torch.randn(B, T, 2, H, W, generator=g, dtype=dtype)
        bflow = 2.0 * torch.randn(B, T, 2, H, W, generator=g, dtype=dtype)
    mv = lambda x: None if x is None else x.to(device)  # noqa: E731
    return mv(vid0), mv(vid1), mv(fflow), mv(bflow)


def num_queries(T, H, W, stride0):
    return T * ((H - 1) // stride0 + 1) * ((W - 1) // stride0 + 1)


def search_flops(cfg):
    """2 * B * Q * st * ws^2 * ps^2 * pt * C: one multiply and one add per channel tap of
    every candidate patch."""
    st = min(2 * cfg["wt"] + 1, cfg["T"])
    Q = num_queries(cfg["T"], cfg["H"], cfg["W"], cfg["stride0"])
    return 2 * cfg["B"] * Q * st * cfg["ws"] ** 2 * cfg["ps"] ** 2 * cfg.get("pt", 1) * cfg["C"]


def search_kwargs(cfg):
    """The keyword arguments of stnls.search.nls / nls_torch for a config dict."""
    return dict(nheads=cfg["nheads"], dist_type=cfg.get("dist_type", "prod"),
                stride0=cfg["stride0"])


def search_args(cfg):
    return cfg["ws"], cfg["wt"], cfg["ps"], cfg["k"]


def index_mismatch(d_ref, i_ref, d, i, rtol=1e-4):
    """Fraction of (query, k) entries whose index differs from the reference where the
    distances do not tie (a tie within rtol may legally swap two neighbours)."""
    d_ref = d_ref.detach().double().cpu()
    d = d.detach().double().cpu()
    diff = (i.cpu() != i_ref.cpu()).any(-1)
    tie = ((d - d_ref).abs() <= rtol * (1 + d_ref.abs())) | (d == d_ref)
    bad = diff & ~tie
    return bad.double().mean().item(), diff.double().mean().item()


def median_time(fn, repeats, warmup=1):
    """Median wall time of fn() in seconds (fn must synchronise itself if needed)."""
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def machine_info():
    info = dict(
        date=datetime.date.today().isoformat(),
        platform=platform.platform(),
        machine=platform.machine(),
        cpu_count=os.cpu_count(),
        torch=torch.__version__,
        torch_threads=torch.get_num_threads(),
        python=platform.python_version(),
    )
    try:
        info["loadavg"] = os.getloadavg()
    except OSError:
        pass
    try:
        import stnls
        info["stnls"] = getattr(stnls, "__version__", "unknown")
    except Exception as e:  # report, do not fail: the torch part still runs
        info["stnls"] = f"unavailable ({type(e).__name__})"
    return info


def fmt(x, nd=2):
    """Table cell: numbers with nd decimals, strings as they are, None as '-'."""
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return str(x)
    return f"{x:.{nd}f}"


def print_table(headers, rows):
    cells = [[fmt(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[j]) for r in cells)) for j, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    print(line)
    print("-" * len(line))
    for r in cells:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths)))


def write_json(path, record):
    if path:
        with open(path, "w") as f:
            json.dump(record, f, indent=2)
        print(f"wrote {path}")
