"""Summarises an Nsight Compute SASS source page (per-instruction counters) of one kernel:
warp instructions per work item by opcode, and the kernel's straight-line stretches (runs
of consecutive instructions executed equally often, i.e. one loop body or one block of
code) with their share of instructions and of stall samples. That is where a kernel's
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
    out = []
    for r in rows[header + 1:]:
        if len(r) <= max(col.values()):
            continue
        src = r[col["Source"]].split()
        op = ""
        if src:
            op = src[1] if src[0].startswith("@") and len(src) > 1 else src[0]
        out.append((op, float(r[col["Instructions Executed"]] or 0),
                    float(r[col["Warp Stall Sampling (All Samples)"]] or 0)))
    return rows[0][1] if rows and len(rows[0]) > 1 else "", out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("csv")
    ap.add_argument("--items", type=float, default=1.0, help="work items to divide the counts by")
    ap.add_argument("--min", type=float, default=25.0, help="smallest stretch to list (instructions per item)")
    ap.add_argument("--top", type=int, default=25, help="opcodes to list")
    a = ap.parse_args()
    kernel, ins = read(a.csv)
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


if __name__ == "__main__":
    main()
