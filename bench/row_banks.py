"""Shared-memory wavefronts of the row-split forward's staging (search_forward_rows.cu).

A staged window row (slot) holds RW = ws + ps - 1 pixels of CV channels, pixel-major, each
pixel's 16-byte channel groups g stored at group g ^ (px mod CV/4); a query's two slots are
CV * RW + pad floats apart, and the warp's queries start qs floats apart. This counts, per
step of one warp, the wavefronts of the 16-byte stores (lane pi of each query stores
pixels pi, pi + ps, ..., one group per instruction) and of the 16-byte loads of the
distance loop (all lanes read the same pixel and group of their query's slot; half of
them from the other slot in a frame's first steps), and prints the best (pad, qs mod 32)
per compiled variant next to the one the kernel uses.
    python3 bench/row_banks.py
"""
import itertools

VARIANTS = [(16, 7, ww) for ww in (5, 7, 9)] + [(32, 3, ww) for ww in (5, 7, 9)]  # (CV, PS, WW)
USED = {16: (4, 8), 32: (4, 12)}  # CV -> (pad, qs mod 32), as in search_forward_rows.cu


def wavefronts(words):
    """Wavefronts of one 16-byte shared access: distinct chunks per group of 4 banks."""
    groups = {}
    for w in set(words):
        groups.setdefault((w // 4) % 8, set()).add(w)
    return max(len(v) for v in groups.values())


def count(cv, ps, ww, pad, qs_mod):
    rw, qpw, ng = ww + ps - 1, 32 // ps, cv // 4
    slot = cv * rw + pad
    qs = 2 * slot + (qs_mod - 2 * slot) % 32

    def at(qi, s, px, g):
        return qi * qs + s * slot + px * cv + ((g ^ (px % ng)) * 4)

    stores = sum(wavefronts([at(qi, 0, pi + k * ps, g) for qi in range(qpw) for pi in range(ps) if pi + k * ps < rw])
                 for k in range(-(-rw // ps)) for g in range(ng))
    loads = sum(wavefronts([at(qi, 1 if pi > ps // 2 else 0, px, g) for qi in range(qpw) for pi in range(ps)])
                for px in range(rw) for g in range(ng))
    return stores, loads, stores + loads


def main():
    print(f"{'CV':>3} {'PS':>3} {'WW':>3} | {'used (pad, qs)':>15} {'stores':>7} {'loads':>6} | "
          f"{'best (pad, qs)':>15} {'stores':>7} {'loads':>6} | scalar layout loads")
    for cv, ps, ww in VARIANTS:
        used = count(cv, ps, ww, *USED[cv])
        best = min(((count(cv, ps, ww, pad, q), (pad, q)) for pad, q in itertools.product(range(0, 32, 4), range(0, 32, 4))),
                   key=lambda t: t[0][2])
        print(f"{cv:>3} {ps:>3} {ww:>3} | {str(USED[cv]):>15} {used[0]:>7} {used[1]:>6} | "
              f"{str(best[1]):>15} {best[0][0]:>7} {best[0][1]:>6} | {(ww + ps - 1) * cv}")


if __name__ == "__main__":
    main()
