// CPU forward of the non-local search (OpenMP over queries). Per query and searched frame
// it gathers the window's pixels (bounds applied) into a small dense tile, so the distance
// loop runs over contiguous memory and vectorises across the candidates of a window row;
// the top-k is kept on the fly (never the whole distance volume).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/backends.h"
#include "cpu/parallel.h"
#include "common/dispatch.h"
#include "common/geometry.h"
#include "common/topk.h"

namespace stnls {
namespace cpu {
namespace {

using detail::SearchArgs;

// Sizes of the distance loop over one window tile.
struct Dims {
  int64_t pt, ps, C, dil, s1, wh, ww, th, tw;
};

// Term (pk, pi, pj, c) of every candidate of the window, added to its chain (chain[i, j]).
// The innermost loop runs over the candidates of a window row, so it vectorises without
// changing any candidate's order.
template <bool L2, class T>
__attribute__((always_inline)) inline void add_term(T* chain, const T* qpatch, const T* tile, const Dims& d, int64_t pk,
                                                     int64_t pi, int64_t pj, int64_t c) {
  const T qv = qpatch[((pk * d.ps + pi) * d.ps + pj) * d.C + c];
  const T* trow = &tile[((pk * d.C + c) * d.th + d.dil * pi) * d.tw + d.dil * pj];
  for (int64_t i = 0; i < d.wh; ++i) {
    T* arow = &chain[i * d.ww];
    const T* src = trow + i * d.s1 * d.tw;
    if (d.s1 == 1) {
      for (int64_t j = 0; j < d.ww; ++j) arow[j] = geo::dist_acc<L2>(arow[j], qv, src[j]);
    } else {
      for (int64_t j = 0; j < d.ww; ++j) arow[j] = geo::dist_acc<L2>(arow[j], qv, src[j * d.s1]);
    }
  }
}

// acc[i, j] = the distance of the candidate at window slot (i, j), its terms summed in the
// order of geo::channel_sums: one chain over (pk, pi, pj, c), or, with CS, a chain over
// (pk, pi, pj) of per-pixel channel chains (built in sum[]).
template <bool L2, bool CS, class T>
__attribute__((always_inline)) inline void accumulate_impl(T* acc, T* sum, const T* qpatch, const T* tile,
                                                            const Dims& d) {
  const int64_t n = d.wh * d.ww;
  for (int64_t i = 0; i < n; ++i) acc[i] = T(0);
  T* const chain = CS ? sum : acc;  // where the channel terms go
  for (int64_t pk = 0; pk < d.pt; ++pk)
    for (int64_t pi = 0; pi < d.ps; ++pi)
      for (int64_t pj = 0; pj < d.ps; ++pj) {
        if (CS)
          for (int64_t i = 0; i < n; ++i) sum[i] = T(0);
        for (int64_t c = 0; c < d.C; ++c) add_term<L2>(chain, qpatch, tile, d, pk, pi, pj, c);
        if (CS)
          for (int64_t i = 0; i < n; ++i) acc[i] += sum[i];
      }
}

// The same with geo::channel_groups: each group of kGroupC channels in a chain of its own
// (grp[g], n floats each, over (pk, pi, pj, c in g)), then the groups added pairwise level
// by level (the tree of geo::GroupSum), into acc.
template <bool L2, class T>
__attribute__((always_inline)) inline void accumulate_groups(T* acc, T* grp, const T* qpatch, const T* tile,
                                                              const Dims& d) {
  const int64_t n = d.wh * d.ww, ng = (d.C + geo::kGroupC - 1) / geo::kGroupC;
  for (int64_t g = 0; g < ng; ++g) {
    T* const chain = grp + g * n;
    for (int64_t i = 0; i < n; ++i) chain[i] = T(0);
    const int64_t c1 = std::min<int64_t>(d.C, (g + 1) * geo::kGroupC);
    for (int64_t pk = 0; pk < d.pt; ++pk)
      for (int64_t pi = 0; pi < d.ps; ++pi)
        for (int64_t pj = 0; pj < d.ps; ++pj)
          for (int64_t c = g * geo::kGroupC; c < c1; ++c) add_term<L2>(chain, qpatch, tile, d, pk, pi, pj, c);
  }
  for (int64_t step = 1; step < ng; step *= 2)
    for (int64_t g = 0; g + step < ng; g += 2 * step) {
      T* const left = grp + g * n;
      const T* const right = grp + (g + step) * n;
      for (int64_t i = 0; i < n; ++i) left[i] = left[i] + right[i];
    }
  for (int64_t i = 0; i < n; ++i) acc[i] = grp[i];
}

// One copy per instruction set where the compiler can dispatch at load time: on x86-64-v3
// machines (AVX2 + FMA) each term is one vector fused multiply-add; the baseline copy
// calls fmaf / fma per term (slower, rounded the same), so every backend agrees.
// (GCC 11 and later: "arch=x86-64-v3" is dispatched on the CPU's features.)
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11 && defined(__x86_64__) && defined(__linux__)
#define STNLS_CPU_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define STNLS_CPU_CLONES
#endif
// The summation order of a call (geo::channel_sums, geo::channel_groups).
enum class Order { Chain, PixelSums, Groups };

template <bool L2, class T>
__attribute__((always_inline)) inline void accumulate_any(Order o, T* acc, T* sum, const T* q, const T* tile,
                                                           const Dims& d) {
  if (o == Order::Groups) return accumulate_groups<L2>(acc, sum, q, tile, d);
  o == Order::PixelSums ? accumulate_impl<L2, true>(acc, sum, q, tile, d) : accumulate_impl<L2, false>(acc, sum, q, tile, d);
}
STNLS_CPU_CLONES void accumulate_f32(bool l2, Order o, float* acc, float* sum, const float* q, const float* tile,
                                     const Dims& d) {
  l2 ? accumulate_any<true>(o, acc, sum, q, tile, d) : accumulate_any<false>(o, acc, sum, q, tile, d);
}
STNLS_CPU_CLONES void accumulate_f64(bool l2, Order o, double* acc, double* sum, const double* q,
                                     const double* tile, const Dims& d) {
  l2 ? accumulate_any<true>(o, acc, sum, q, tile, d) : accumulate_any<false>(o, acc, sum, q, tile, d);
}
template <bool L2>
void accumulate(Order o, float* acc, float* sum, const float* q, const float* tile, const Dims& d) {
  accumulate_f32(L2, o, acc, sum, q, tile, d);
}
template <bool L2>
void accumulate(Order o, double* acc, double* sum, const double* q, const double* tile, const Dims& d) {
  accumulate_f64(L2, o, acc, sum, q, tile, d);
}

template <class T, bool L2>
void forward_impl(const SearchArgs& a) {
  const SearchParams& p = a.p;
  const SearchShape& sh = a.sh;
  const T* vid0 = static_cast<const T*>(a.vid0);
  const T* vid1 = static_cast<const T*>(a.vid1);
  const T* fflow = static_cast<const T*>(a.fflow);
  const T* bflow = static_cast<const T*>(a.bflow);
  T* dists = static_cast<T*>(a.dists);
  int32_t* inds = static_cast<int32_t*>(a.inds);
  const int64_t T_ = sh.T, H = sh.H, W = sh.W, C = sh.C;
  const int64_t ps = p.ps, pt = p.pt, dil = p.dilation, s1 = p.stride1;
  const int64_t wh = sh.wh, ww = sh.ww, K = sh.K;
  const int64_t o0 = geo::patch_offset(0, ps, dil, p.use_adj);
  // Tile rows/cols: every pixel a window's patches read.
  const int64_t th = s1 * (wh - 1) + dil * (ps - 1) + 1;
  // Window rows are computed padded to a multiple of 8 candidates (the extra ones are
  // discarded): the row loop then vectorises with no scalar tail.
  const int64_t wwp = (ww + 7) / 8 * 8;
  const int64_t tw = s1 * (wwp - 1) + dil * (ps - 1) + 1;
  const T pad = L2 ? std::numeric_limits<T>::infinity() : -std::numeric_limits<T>::infinity();
  const int64_t nq = sh.B * sh.HD * sh.Q;
  const bool anchor = p.anchor_self;
  const int64_t nrest = anchor ? K - 1 : K;
  const bool cs = geo::channel_sums(C), groups = geo::channel_groups(C, ps);
  const Order order = groups ? Order::Groups : cs ? Order::PixelSums : Order::Chain;
  const int64_t ng = (C + geo::kGroupC - 1) / geo::kGroupC;

#pragma omp parallel if (nq * sh.slots() * C * pt * ps * ps > kParallelWork)
  {
    std::vector<T> qpatch(pt * ps * ps * C);  // [pt, ps, ps, C]
    std::vector<T> tile(pt * C * th * tw);     // [pt, C, th, tw]
    std::vector<T> acc(wh * wwp), sum(wh * wwp * (groups ? ng : 1));  // groups: a chain per group
    std::vector<int64_t> base_y(sh.st), base_x(sh.st);  // window start of each searched frame
    std::vector<int64_t> row_off(th), col_off(tw);       // tile rows/columns in vid1, -1 = 0
    detail::TopK<L2, T> top;

#pragma omp for schedule(dynamic, 8)
    for (int64_t g = 0; g < nq; ++g) {
      const int64_t b = g / (sh.HD * sh.Q), hd = (g / sh.Q) % sh.HD, q = g % sh.Q;
      const int64_t t = q / (sh.nH * sh.nW);
      const int64_t qh = ((q / sh.nW) % sh.nH) * p.stride0, qw = (q % sh.nW) * p.stride0;
      const T* v0 = vid0 + b * a.s0.b + hd * a.s0.h;
      const T* v1 = vid1 + b * a.s1.b + hd * a.s1.h;

      // Query patch, layout [pk, pi, pj, c].
      for (int64_t pk = 0; pk < pt; ++pk)
        for (int64_t pi = 0; pi < ps; ++pi)
          for (int64_t pj = 0; pj < ps; ++pj) {
            int64_t off = geo::pixel_offset(t + pk, qh + o0 + dil * pi - p.off_H0,
                                            qw + o0 + dil * pj - p.off_W0, T_, H, W,
                                            p.reflect_bounds, a.s0.t, a.s0.y, a.s0.x);
            T* dst = &qpatch[((pk * ps + pi) * ps + pj) * C];
            for (int64_t c = 0; c < C; ++c) dst[c] = off < 0 ? T(0) : v0[off + c * a.s0.c];
          }

      top.reset(nrest);
      const geo::Frames fr = geo::frames(t, T_, p.wt);
      int64_t ch = qh, cw = qw;  // flow-chained centre of the current frame
      for (int64_t n = 0; n < fr.st; ++n) {
        const int64_t u = geo::frame_at(n, t, fr);
        if (n > 0) {
          // Step from the previous frame in canonical order (restart at the query going back).
          const int64_t prev = (u == t - 1) ? t : (u > t ? u - 1 : u + 1);
          if (u == t - 1) ch = qh, cw = qw;
          const T* fl = (u > t ? fflow : bflow);
          const detail::Strides5& sf = (u > t ? a.sf : a.sb);
          if (fl) {
            const T* f = fl + b * sf.b + prev * sf.t + ch * sf.y + cw * sf.x;
            geo::flow_step(ch, cw, f[0], f[sf.c], H, W);
          }
        }
        const int64_t y0 = base_y[n] = geo::window_base(ch, H, s1, p.ws, p.full_ws);
        const int64_t x0 = base_x[n] = geo::window_base(cw, W, s1, p.ws, p.full_ws);
        // Gather the tile: tile row r is pixel row y0 + o0 - off_H1 + r. Bounds are resolved
        // once per row, column and frame (-1: reads 0), not once per pixel.
        for (int64_t r = 0; r < th; ++r) {
          const int64_t y = geo::bound(y0 + o0 - p.off_H1 + r, H, p.reflect_bounds);
          row_off[r] = y < 0 ? -1 : y * a.s1.y;
        }
        for (int64_t s = 0; s < tw; ++s) {
          const int64_t x = geo::bound(x0 + o0 - p.off_W1 + s, W, p.reflect_bounds);
          col_off[s] = x < 0 ? -1 : x * a.s1.x;
        }
        // Columns inside the frame and unit-strided (the usual case): rows copy contiguously.
        const int64_t xs = x0 + o0 - p.off_W1;
        const bool contiguous_cols = a.s1.x == 1 && xs >= 0 && xs + tw <= W;
        for (int64_t pk = 0; pk < pt; ++pk) {
          const int64_t f = geo::bound(u + pk, T_, p.reflect_bounds);
          for (int64_t c = 0; c < C; ++c)
            for (int64_t r = 0; r < th; ++r) {
              T* dst = &tile[((pk * C + c) * th + r) * tw];
              if (f < 0 || row_off[r] < 0) {
                for (int64_t s = 0; s < tw; ++s) dst[s] = T(0);
                continue;
              }
              const T* src = v1 + f * a.s1.t + row_off[r] + c * a.s1.c;
              if (contiguous_cols) {
                for (int64_t s = 0; s < tw; ++s) dst[s] = src[xs + s];
                continue;
              }
              for (int64_t s = 0; s < tw; ++s) dst[s] = col_off[s] < 0 ? T(0) : src[col_off[s]];
            }
        }
        accumulate<L2>(order, acc.data(), sum.data(), qpatch.data(), tile.data(), Dims{pt, ps, C, dil, s1, wh, wwp, th, tw});
        for (int64_t i = 0; i < wh; ++i) {
          const int64_t y = y0 + s1 * i;
          if (y < 0 || y >= H) continue;
          for (int64_t j = 0; j < ww; ++j) {
            const int64_t x = x0 + s1 * j;
            if (x < 0 || x >= W) continue;
            if ((anchor || p.remove_self) && u == t && y == qh && x == qw) continue;
            top.offer(acc[i * wwp + j], (n * wh + i) * ww + j);  // canonical ordinal
          }
        }
      }

      T* dq = dists + b * a.sd[0] + hd * a.sd[1] + q * a.sd[2];
      int32_t* iq = inds + b * a.si[0] + hd * a.si[1] + q * a.si[2];
      int64_t slot = 0;
      auto emit = [&](T d, int64_t u, int64_t y, int64_t x) {
        dq[slot * a.sd[3]] = d;
        int32_t* e = iq + slot * a.si[3];
        e[0] = static_cast<int32_t>(u);
        e[a.si[4]] = static_cast<int32_t>(y);
        e[2 * a.si[4]] = static_cast<int32_t>(x);
        ++slot;
      };
      if (anchor) {
        // The query's own location first, with its distance (same summation order).
        auto chain = [&](T d, int64_t c0, int64_t c1, bool sums) {  // over (pk, pi, pj, c in [c0, c1))
          for (int64_t pk = 0; pk < pt; ++pk)
            for (int64_t pi = 0; pi < ps; ++pi)
              for (int64_t pj = 0; pj < ps; ++pj) {
                int64_t off = geo::pixel_offset(t + pk, qh + o0 + dil * pi - p.off_H1,
                                                qw + o0 + dil * pj - p.off_W1, T_, H, W,
                                                p.reflect_bounds, a.s1.t, a.s1.y, a.s1.x);
                const T* qv = &qpatch[((pk * ps + pi) * ps + pj) * C];
                T s = geo::pixel_start(sums, d);
                for (int64_t c = c0; c < c1; ++c) s = geo::dist_acc<L2>(s, qv[c], off < 0 ? T(0) : v1[off + c * a.s1.c]);
                d = geo::pixel_end(sums, d, s);
              }
          return d;
        };
        T d = T(0);
        if (groups) {
          geo::GroupSum<T> sum_of;
          for (int64_t c0 = 0; c0 < C; c0 += geo::kGroupC) sum_of.push(chain(T(0), c0, std::min<int64_t>(C, c0 + geo::kGroupC), false));
          d = sum_of.finish();
        } else {
          d = chain(T(0), 0, C, cs);
        }
        emit(d, t, qh, qw);
      }
      for (const auto& e : top.finish()) {
        const int64_t n = e.id / (wh * ww), i = (e.id / ww) % wh, j = e.id % ww;
        emit(e.d, geo::frame_at(n, t, fr), base_y[n] + s1 * i, base_x[n] + s1 * j);
      }
      while (slot < K) emit(pad, -1, -1, -1);
    }
  }
}

}  // namespace

void search_forward(const detail::SearchArgs& a) {
  STNLS_FLOAT_SWITCH(a.dtype, [&] {
    STNLS_DIST_SWITCH(a.p.dist_type, [&] { forward_impl<scalar_t, kL2>(a); });
  });
}

}  // namespace cpu
}  // namespace stnls
