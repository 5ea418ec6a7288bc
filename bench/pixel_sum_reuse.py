"""How much arithmetic a search could share between neighbouring queries (a planning tool,
no GPU): the pixel-level channel sums s(p, u, d) = sum_c vid0(p)[c] * vid1_u(p + d)[c] and
the patch-row sums r(p, u, d) = sum_pj s(p + (0, pj), u, d) that the (query, tap, candidate)
terms of the benchmark configurations need, counted with the benchmark's random flows
(2 px standard deviation per pixel, chained over frames as SPEC.md rule 3 says) on a
block of interior queries.

Until the ninth session every query summed its own ps^2 * C terms per candidate, one FMA
chain in (pi, pj, c) order, which CPU and CUDA shared so that their distances agreed bit for
bit. This counted what a summation order of channel sums first (each level a fixed sequential
order, implemented by every backend) would let queries share; the order now in use
(geo::channel_sums, from 16 channels per head) has the channel-sum level and one chain over
the pixels, and search_forward_shared.cu shares s for S3.
    python3 bench/pixel_sum_reuse.py [--block 32]
"""
import argparse

import numpy as np

# name: (T, C per head, H, W, ws, wt, ps, stride0), as in search_cuda.py
CONFIGS = {"S1": (3, 3, 128, 128, 21, 3, 7, 4), "S2": (5, 8, 128, 128, 5, 2, 3, 1),
           "S3": (5, 16, 256, 256, 9, 2, 7, 1), "S4": (4, 32, 480, 854, 7, 1, 3, 2)}


def centres(y, x, t, T, H, W, wt, ff, bf):
    """Window centre per searched frame (rule 3), interior queries (no frame clamping)."""
    lo = max(0, min(t - wt, T - (2 * wt + 1)))
    hi = min(T - 1, lo + 2 * wt)
    out = {t: (y, x)}
    for direction, flow, end in ((1, ff, hi), (-1, bf, lo)):
        cy, cx, u = y, x, t
        while u != end:
            f = flow[u, :, cy, cx]
            cy = int(np.clip(np.floor(cy + f[1] + 0.5), 0, H - 1))
            cx = int(np.clip(np.floor(cx + f[0] + 0.5), 0, W - 1))
            u += direction
            out[u] = (cy, cx)
    return out


def count(name, block, seed=0):
    T, C, H, W, ws, wt, ps, s0 = CONFIGS[name]
    rng = np.random.default_rng(seed)
    ff, bf = (2.0 * rng.standard_normal((T, 2, H, W)) for _ in range(2))
    t, y0, x0 = T // 2, H // 2 - block * s0 // 2, W // 2 - block * s0 // 2
    taps = np.array([(pi, pj) for pi in range(ps) for pj in range(ps)])
    rows = np.array([(pi, 0) for pi in range(ps)])
    win = np.array([(i, j) for i in range(ws) for j in range(ws)]) - ws // 2
    s_keys, r_keys = [], []
    for y in range(y0, y0 + block * s0, s0):
        for x in range(x0, x0 + block * s0, s0):
            for u, (cy, cx) in centres(y, x, t, T, H, W, wt, ff, bf).items():
                d = np.array([cy - y, cx - x]) + win
                dk = (d[None, :, 0] + 64) * 128 + (d[None, :, 1] + 64)
                for pts, keys in ((taps, s_keys), (rows, r_keys)):
                    p = np.array([y, x]) + pts
                    pk = ((p[:, None, 0] * 1024 + p[:, None, 1]) * 16 + u) * 16384
                    keys.append((pk + dk).ravel())
    s_keys, r_keys = np.concatenate(s_keys), np.concatenate(r_keys)
    terms = s_keys.size  # (query, tap, candidate)
    s_distinct, r_distinct = np.unique(s_keys).size, np.unique(r_keys).size
    now = terms * C  # FMAs per block today
    shared = s_distinct * C + r_distinct * (ps - 1) + r_keys.size  # channel FMAs + row adds + row combination adds
    print(f"{name}: {block}x{block} queries, {terms / block**2:.0f} (tap, candidate) pairs per query; channel sums "
          f"shared {terms / s_distinct:.1f}x, row sums {r_keys.size / r_distinct:.1f}x; arithmetic per query "
          f"{now / block**2:.0f} FMA today, {shared / block**2:.0f} operations with shared sums ({now / shared:.1f}x less)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--block", type=int, default=32)
    ap.add_argument("--configs", default="S1,S2,S3,S4")
    args = ap.parse_args()
    for name in args.configs.split(","):
        count(name, args.block)


if __name__ == "__main__":
    main()
