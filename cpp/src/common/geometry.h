// The geometry of SPEC.md, written once for both backends: frame order, flow-chained
// centres, window start, reflection, patch offsets and the patch distance term.
// Everything here is header-only and usable from host and device code.
#pragma once
#include <cstdint>
#include <math.h>

#include "hd.h"

namespace stnls {
namespace geo {

// Coordinate rules written once for any integer type I: int64_t is the reference; the
// CUDA kernels' hot loops use the 32-bit instances (`*32`), whose results are the same for
// every coordinate the backends accept (sizes below 2^31), at a fraction of the cost.

// reflect(x, L): one reflection; -1 when the coordinate is still outside [0, L).
template <class I>
STNLS_HD I reflect_t(I x, I L) {
  if (x < 0) x = -x;
  else if (x >= L) x = 2 * (L - 1) - x;
  return (x >= 0 && x < L) ? x : I(-1);
}
STNLS_HD int64_t reflect(int64_t x, int64_t L) { return reflect_t<int64_t>(x, L); }

// A pixel coordinate as read by a patch: reflected or (reflect off) -1 when outside.
template <class I>
STNLS_HD I bound_t(I x, I L, bool reflect_bounds) {
  if (reflect_bounds) return reflect_t<I>(x, L);
  return (x >= 0 && x < L) ? x : I(-1);
}
STNLS_HD int64_t bound(int64_t x, int64_t L, bool reflect_bounds) { return bound_t<int64_t>(x, L, reflect_bounds); }
STNLS_HD int bound32(int x, int L, bool reflect_bounds) { return bound_t<int>(x, L, reflect_bounds); }

template <class I>
STNLS_HD I clamp_t(I x, I lo, I hi) { return x < lo ? lo : (x > hi ? hi : x); }
STNLS_HD int64_t clamp(int64_t x, int64_t lo, int64_t hi) { return clamp_t<int64_t>(x, lo, hi); }

// Floor division for possibly negative numerators (positive divisor).
template <class I>
STNLS_HD I floordiv_t(I a, I b) {
  I q = a / b;
  return (q * b > a) ? q - 1 : q;
}
STNLS_HD int64_t floordiv(int64_t a, int64_t b) { return floordiv_t<int64_t>(a, b); }

// Frames searched (rule 2): st frames starting at t_lo.
struct Frames {
  int64_t st, t_lo, t_hi;
};
STNLS_HD Frames frames(int64_t t, int64_t T, int64_t wt) {
  Frames f;
  f.st = (2 * wt + 1 < T) ? 2 * wt + 1 : T;
  f.t_lo = clamp(t - wt, 0, T - f.st);
  f.t_hi = f.t_lo + f.st - 1;
  return f;
}
// The n-th frame in canonical order: t, t+1, ..., t_hi, t-1, ..., t_lo.
STNLS_HD int64_t frame_at(int64_t n, int64_t t, const Frames& f) {
  int64_t nfwd = f.t_hi - t + 1;
  return n < nfwd ? t + n : t - (n - nfwd + 1);
}

// round(v) = floor(v + 0.5) of a finite flow value, exact in v's own type: v - floor(v) is
// exact for every float and double (so is its compare with 0.5), whereas a sum such as
// c + v + 0.5 may round across an integer.
template <class F>
STNLS_HD F round_half_up(F v) {
  const F fl = floor(v);
  return (v - fl >= F(0.5)) ? fl + F(1) : fl;
}
// One axis of a flow step (rule 3): clamp(round(c + v), 0, L-1) = clamp(c + round(v)) for the
// integer centre c in [0, L); a non-finite v counts as 0. Flows of 2^31 pixels or more
// clamp without converting to an integer (no overflow for any finite v).
template <class I, class F>
STNLS_HD I flow_move_t(I c, F v, I L) {
  if (!isfinite(v)) return c;
  const F r = round_half_up(v);
  if (r >= F(2147483648.0)) return L - 1;
  if (r <= F(-2147483648.0)) return 0;
  const I m = static_cast<I>(r);
  if (m > L - 1 - c) return L - 1;
  if (m < -c) return 0;
  return c + m;
}
// One flow step (rule 3) from the integer centre (ch, cw), with the flow values read there.
template <class F>
STNLS_HD void flow_step(int64_t& ch, int64_t& cw, F flow_x, F flow_y, int64_t H, int64_t W) {
  ch = flow_move_t<int64_t>(ch, flow_y, H);
  cw = flow_move_t<int64_t>(cw, flow_x, W);
}
template <class F>
STNLS_HD void flow_step32(int& ch, int& cw, F flow_x, F flow_y, int H, int W) {
  ch = flow_move_t<int>(ch, flow_y, H);
  cw = flow_move_t<int>(cw, flow_x, W);
}

// Number of window slots along an axis of length L (rule 4; ws = -1: whole axis).
STNLS_HD int64_t window_slots(int64_t ws, int64_t L, int64_t s) { return ws < 0 ? (L + s - 1) / s : ws; }

// First candidate along an axis (rule 4): candidates are base + s*a, a = 0..slots-1.
// ws = -1: the lattice s*a of the whole axis.
template <class I>
STNLS_HD I window_base_t(I c, I L, I s, I ws, bool full_ws) {
  if (ws < 0) return 0;
  I half = ws / 2;
  I a0 = -half;
  if (full_ws) {
    // s = 1 (the usual stride) needs no division; the general formulas give the same.
    I lo = s == 1 ? -c : -(c / s);
    I hi = (s == 1 ? L - 1 - c : floordiv_t<I>(L - 1 - c, s)) - (ws - 1);
    a0 = (hi < lo) ? lo : clamp_t<I>(-half, lo, hi);
  }
  return c + s * a0;
}
STNLS_HD int64_t window_base(int64_t c, int64_t L, int64_t s, int64_t ws, bool full_ws) {
  return window_base_t<int64_t>(c, L, s, ws, full_ws);
}
STNLS_HD int window_base32(int c, int L, int s, int ws, bool full_ws) {
  return window_base_t<int>(c, L, s, ws, full_ws);
}

// Element offset of pixel (t, y, x) in a frame stack with strides (st, sy, sx), after the
// bounds rule of SPEC.md rule 5; -1 when the pixel reads as 0.
STNLS_HD int64_t pixel_offset(int64_t t, int64_t y, int64_t x, int64_t T, int64_t H, int64_t W,
                              bool reflect_bounds, int64_t st, int64_t sy, int64_t sx) {
  t = bound(t, T, reflect_bounds);
  y = bound(y, H, reflect_bounds);
  x = bound(x, W, reflect_bounds);
  if (t < 0 || y < 0 || x < 0) return -1;
  return t * st + y * sy + x * sx;
}

// Patch offset of tap i (rule 5): dilation*(i - o), o = ps/2 (use_adj: o = 2*(ps/2)).
STNLS_HD int64_t patch_offset(int64_t i, int64_t ps, int64_t dilation, bool use_adj) {
  int64_t o = use_adj ? 2 * (ps / 2) : ps / 2;
  return dilation * (i - o);
}

// The two patch-distance terms (rule 5) and their partial derivatives (rule 8). Each term
// is accumulated with one fused multiply-add, rounded once, on every backend (CUDA: fmaf /
// fma; CPU: std::fma, a vfmadd instruction in the x86-64-v3 clone of the CPU distance loop),
// so every backend rounds the same way and returns identical indices, and the GPU spends
// one instruction per prod term instead of a separate multiply and add.
STNLS_HD float fma_rn(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return fmaf(a, b, c);
#endif
}
STNLS_HD double fma_rn(double a, double b, double c) {
#if defined(__CUDA_ARCH__)
  return __fma_rn(a, b, c);
#else
  return fma(a, b, c);
#endif
}

// acc + f(a, b) in one rounding; f = a*b (prod) or (a-b)^2 (l2, the difference rounded first).
template <bool L2, class T>
STNLS_HD T dist_acc(T acc, T a, T b) {
  if (L2) {
    const T d = a - b;
    return fma_rn(d, d, acc);
  }
  return fma_rn(a, b, acc);
}

// The summation order of a patch distance. SPEC.md fixes which terms a distance sums, not
// their order; every backend and layout uses this one, so that their distances agree bit
// for bit and ties (rule 6) resolve alike:
// - fewer than kChannelSumMin channels per head: one chain over (pk, pi, pj, c), from 0;
// - from kChannelSumMin on: each pixel's channel terms are first summed in a chain of their
//   own (over c, from 0), and these pixel sums then form one chain over (pk, pi, pj), from 0;
// - from kGroupMin channels per head with ps <= kGroupMaxPs (channel_groups): the channels
//   form groups of kGroupC consecutive ones (the last may hold fewer); each group's terms
//   form one chain over (pk, pi, pj, c in the group), from 0, and the groups' chains are
//   added pairwise, adjacent ones first (GroupSum): (D0 + D1) + (D2 + D3) for four groups.
// The second order lets queries whose patches and windows overlap share a pixel's channel
// sum (search_forward_shared.cu computes each once per block, for ps >= 5); it costs one add
// per pixel elsewhere, which is small next to 16 or more multiply-adds, but not next to 3
// or 4. The third lets a query's patch be split over lanes by channel groups, each lane
// holding the whole patch for its group (search_forward_groups.cu, 32 channels with ps 3):
// the lanes' chains are combined by two shuffles per candidate.
constexpr int kChannelSumMin = 16;
STNLS_HD constexpr bool channel_sums(int64_t C) { return C >= kChannelSumMin; }
constexpr int kGroupMin = 32, kGroupC = 8, kGroupMaxPs = 4;
STNLS_HD constexpr bool channel_groups(int64_t C, int64_t ps) { return C >= kGroupMin && ps <= kGroupMaxPs; }

// The pairwise sum of the groups' chains, pushed in group order: a binary counter (a stack
// of partial sums of 1, 2, 4, ... groups; pushing group n adds as many as n has trailing
// one bits), folded from the top at the end. For any group count this is the adjacent
// pairwise tree: level by level, g + (g + 2^l) for g a multiple of 2^(l+1).
template <class T>
struct GroupSum {
  static constexpr int kDepth = 32;  // 2^31 groups at most
  T v[kDepth];
  int top = 0;
  uint32_t n = 0;  // groups pushed
  STNLS_HD void push(T d) {
    for (uint32_t m = n++; m & 1u; m >>= 1) d = v[--top] + d;
    v[top++] = d;
  }
  STNLS_HD T finish() {
    T d = v[--top];
    while (top > 0) d = v[--top] + d;
    return d;
  }
};
// One pixel's channel chain, in either order: it starts from pixel_start(cs, d) (d = the
// distance so far), and the distance afterwards is pixel_end(cs, d, chain).
template <class T>
STNLS_HD T pixel_start(bool cs, T d) { return cs ? T(0) : d; }
template <class T>
STNLS_HD T pixel_end(bool cs, T d, T chain) { return cs ? d + chain : chain; }

// d f / d a and d f / d b.
template <bool L2, class T>
STNLS_HD T dist_da(T a, T b) { return L2 ? T(2) * (a - b) : b; }
template <bool L2, class T>
STNLS_HD T dist_db(T a, T b) { return L2 ? T(2) * (b - a) : a; }

// Selection order (rule 6): is distance d better than e? A NaN distance ranks below
// every number (so sorting stays a strict weak order). Ties are decided by the caller by
// canonical position.
template <bool L2, class T>
STNLS_HD bool better(T d, T e) {
  if (isnan(d)) return false;
  if (isnan(e)) return true;
  return L2 ? d < e : d > e;
}

// The coordinates c with bound(c, L) == P (at most 3: P itself and, under reflection, its
// two mirror images). Returns how many were written to `out`. Gather-form kernels use it to
// find every read that lands on pixel P.
STNLS_HD int preimages(int64_t P, int64_t L, bool reflect_bounds, int64_t out[3]) {
  int n = 0;
  out[n++] = P;
  if (reflect_bounds) {
    if (P > 0) out[n++] = -P;
    if (2 * (L - 1) - P >= L) out[n++] = 2 * (L - 1) - P;
  }
  return n;
}

// Along one axis: how many (grid point g < n at g*s, tap i < ntap at offset dil*(i - o))
// pairs read pixel P. The coverage count fold(ones) is the product over the three axes.
STNLS_HD int64_t coverage(int64_t P, int64_t L, int64_t s, int64_t n, int64_t ntap, int64_t dil,
                          int64_t o, bool reflect_bounds) {
  int64_t pre[3];
  const int np = preimages(P, L, reflect_bounds, pre);
  int64_t count = 0;
  for (int64_t i = 0; i < ntap; ++i)
    for (int j = 0; j < np; ++j) {
      const int64_t d = pre[j] - dil * (i - o);
      if (d >= 0 && d % s == 0 && d / s < n) ++count;
    }
  return count;
}

}  // namespace geo
}  // namespace stnls
