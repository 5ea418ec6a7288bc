"""Summarises an Nsight Compute SASS source page (per-instruction counters) of one kernel:
warp instructions per work item by opcode, and the kernel's straight-line stretches (runs
of consecutive instructions executed equally often, i.e. one loop body or one block of
code) with their share of instructions and of stall samples; then shared-memory wavefronts
by opcode (with the excess over conflict-free access: bank conflicts, or for LDGSTS the
extra cache lines of scattered sources) and the stall reasons. That is where a kernel's
instructions go, without a GUI.

    ncu --kernel-name regex:search_forward --launch-skip 2 --launch-count 1 \\
        --section SourceCounters -o rep ./stnls_search_cuda_timing 1 S2
    ncu -i rep.ncu-rep --page source --csv --print-source sass > s2.csv
    python3 bench/sass_profile.py s2.csv --items 163840 [--min 25] [--top 25]

--items: what to divide by (the S1-S4 forwards: one warp per query, B*HD*Q queries).
"""
import argparse
import collections
import csv


def read(path):
    rows = list(csv.reader(open(path, newline="")))
    header = next(i for i, r in enumerate(rows) if "Instructions Executed" in r)
    h = rows[header]
    col = {k: h.index(k) for k in ("Source", "Instructions Executed", "Warp Stall Sampling (All Samples)")}
    wcol = [h.index(k) if k in h else None for k in ("L1 Wavefronts Shared", "L1 Wavefronts Shared Excessive")]
    stall_cols = {k[len("stall_"):]: i for i, k in enumerate(h) if k.startswith("stall_") and "Not Issued" not in k}
    out, waves, stalls = [], collections.defaultdict(lambda: [0.0, 0.0]), collections.Counter()
    for r in rows[header + 1:]:
        if len(r) <= max(col.values()):
            continue
        src = r[col["Source"]].split()
        op = ""
        if src:
            op = src[1] if src[0].startswith("@") and len(src) > 1 else src[0]
        out.append((op, float(r[col["Instructions Executed"]] or 0),
                    float(r[col["Warp Stall Sampling (All Samples)"]] or 0)))
        for k, c in enumerate(wcol):
            if c is not None and r[c]:
                waves[op.split(".")[0] if not op.startswith("LDS") else op][k] += float(r[c])
        for k, c in stall_cols.items():
            stalls[k] += float(r[c] or 0)
    return rows[0][1] if rows and len(rows[0]) > 1 else "", out, waves, stalls


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--items", type=float, default=1.0, help="work items to divide the counts by")
    ap.add_argument("--min", type=float, default=25.0, help="smallest stretch to list (instructions per item)")
    ap.add_argument("--top", type=int, default=25, help="opcodes to list")
    a = ap.parse_args()
    kernel, ins, waves, stalls = read(a.csv)
    total = sum(n for _, n, _ in ins) / a.items
    samples = sum(s for _, _, s in ins) or 1.0
    print(kernel[:160])
    print(f"{total:.1f} warp instructions per item, {len(ins)} SASS lines")
    ops = collections.Counter()
    for op, n, _ in ins:
        ops[op.split(".")[0]] += n / a.items
    print("by opcode:", ", ".join(f"{o} {n:.0f}" for o, n in ops.most_common(a.top)))
    # Stretches: consecutive lines executed the same number of times.
    runs = []
    for i, (op, n, s) in enumerate(ins):
        if runs and runs[-1]["each"] == n:
            r = runs[-1]
            r["last"], r["sum"], r["stall"] = i, r["sum"] + n, r["stall"] + s
            r["ops"][op.split(".")[0]] += 1
        else:
            runs.append(dict(first=i, last=i, each=n, sum=n, stall=s, ops=collections.Counter({op.split(".")[0]: 1})))
    print(f"{'lines':>11} {'times':>7} {'instr':>8} {'share':>6} {'stalls':>6}  most frequent opcodes")
    for r in runs:
        per = r["sum"] / a.items
        if per < a.min:
            continue
        common = " ".join(f"{o}:{c}" for o, c in r["ops"].most_common(6))
        print(f"{r['first']:5d}-{r['last']:5d} {r['each'] / a.items:7.2f} {per:8.1f} {per / total:6.1%} "
              f"{r['stall'] / samples:6.1%}  {common}")
    if waves:
        w_all = sum(w for w, _ in waves.values()) / a.items
        x_all = sum(x for _, x in waves.values()) / a.items
        print(f"shared-memory wavefronts per item: {w_all:.0f}, of which excess {x_all:.0f} ({x_all / (w_all or 1):.0%})")
        for op, (w, x) in sorted(waves.items(), key=lambda kv: -kv[1][0]):
            if w > 0:
                print(f"  {op:10s} {w / a.items:9.1f} excess {x / a.items:9.1f}")
    if stalls:
        n = sum(stalls.values()) or 1.0
        print("stall reasons:", ", ".join(f"{k} {v / n:.0%}" for k, v in stalls.most_common(8)))


if __name__ == "__main__":
    main()
