// CPU weighted patch sum (forward and backward). Scatter form, one task per (batch, head,
// group of channels) for everything written to the video, one per query for the weight
// gradients: one writer per element, fixed sum order (q, k, tap), no scratch beyond small
// per-call tables. A task walks the indices once for all its channels; a query's taps
// (where each is folded into and the coverage count there) are tabulated once per query.
// Results do not depend on the grouping or the thread count.
#include <vector>

#include "common/backends.h"
#include "cpu/parallel.h"
#include "cpu/plane.h"
#include "common/dispatch.h"
#include "common/patch_geometry.h"

namespace stnls {
namespace cpu {
namespace {

using detail::PatchArgs;

// Per-axis coverage counts: fold(ones) at (t, y, x) is t_[t] * y_[y] * x_[x].
struct AxisCounts {
  std::vector<int64_t> t_, y_, x_;
  explicit AxisCounts(const PatchArgs& a) : t_(a.T), y_(a.H), x_(a.W) {
    for (int64_t i = 0; i < a.T; ++i) t_[i] = detail::coverage_t(a, i);
    for (int64_t i = 0; i < a.H; ++i) y_[i] = detail::coverage_y(a, i);
    for (int64_t i = 0; i < a.W; ++i) x_[i] = detail::coverage_x(a, i);
  }
  int64_t at(int64_t t, int64_t y, int64_t x) const { return t_[t] * y_[y] * x_[x]; }
};

// Query q's taps in (pk, pi, pj) order: the offset (strides s) of the pixel each is folded
// into, -1 outside the video, and the coverage count there.
struct QueryTaps {
  std::vector<int64_t> dst, count;
  explicit QueryTaps(const PatchArgs& a) : dst(a.pt * a.ps * a.ps), count(a.pt * a.ps * a.ps) {}
  void fill(const PatchArgs& a, const AxisCounts& cov, int64_t q, const detail::Strides6& s) {
    const detail::QueryLoc l = detail::query_loc(a, q);
    const int64_t o = a.ps / 2;
    int64_t i = 0;
    for (int64_t pk = 0; pk < a.pt; ++pk)
      for (int64_t pi = 0; pi < a.ps; ++pi)
        for (int64_t pj = 0; pj < a.ps; ++pj, ++i) {
          const int64_t tt = geo::bound(l.t + pk, a.T, a.reflect_bounds);
          const int64_t yy = geo::bound(l.h + a.dilation * (pi - o), a.H, a.reflect_bounds);
          const int64_t xx = geo::bound(l.w + a.dilation * (pj - o), a.W, a.reflect_bounds);
          const bool in = tt >= 0 && yy >= 0 && xx >= 0;
          dst[i] = in ? tt * s.t + yy * s.y + xx * s.x : -1;
          count[i] = in ? cov.at(tt, yy, xx) : 0;
        }
  }
};

// Neighbour k of query q in plane (b, hd); false for padding and indices outside the video.
bool neighbour(const PatchArgs& a, int64_t b, int64_t hd, int64_t q, int64_t k, int64_t& t, int64_t& h, int64_t& w) {
  const int32_t* e = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2] + k * a.si[3];
  t = e[0], h = e[a.si[4]], w = e[2 * a.si[4]];
  return detail::valid_ind(a, t, h, w);
}

template <class T>
T weight(const PatchArgs& a, int64_t b, int64_t hd, int64_t q, int64_t k) {
  return static_cast<const T*>(a.weights)[b * a.sw[0] + hd * a.sw[1] + q * a.sw[2] + k * a.sw[3]];
}

// Visits query q's valid neighbours and those of their taps that lie in the video on both
// sides, in (k, tap) order: f(k, tap, src, dst), src (strides s_src, tap table src_taps)
// in the neighbour's patch, dst where the query's tap is folded (qt, filled for q).
template <class F>
void for_each_neighbour_tap(const PatchArgs& a, const QueryTaps& qt, const PatchTaps& src_taps, int64_t b,
                            int64_t hd, int64_t q, const detail::Strides6& s_src, F&& f) {
  const int64_t ntap = a.pt * a.ps * a.ps, lo = a.dilation * (a.ps / 2);  // centre - first tap
  for (int64_t k = 0; k < a.K; ++k) {
    int64_t t, h, w;
    if (!neighbour(a, b, hd, q, k, t, h, w)) continue;
    if (src_taps.inside(t, h - lo, w - lo)) {
      const int64_t first = t * s_src.t + (h - lo) * s_src.y + (w - lo) * s_src.x;
      for (int64_t i = 0; i < ntap; ++i)
        if (qt.dst[i] >= 0) f(k, i, first + src_taps.off[i], qt.dst[i]);
      continue;
    }
    for (int64_t i = 0; i < ntap; ++i) {
      const int64_t pk = i / (a.ps * a.ps), pi = (i / a.ps) % a.ps, pj = i % a.ps;
      const int64_t src = detail::tap_offset(a, t, h, w, pk, pi, pj, s_src), dst = qt.dst[i];
      if (src >= 0 && dst >= 0) f(k, i, src, dst);
    }
  }
}

// Every (q, k, tap) of plane (b, hd) that for_each_neighbour_tap visits, queries in order:
// f(q, k, count, src, dst), dst with strides s_dst and count the coverage there.
template <class F>
void for_each_plane_tap(const PatchArgs& a, const AxisCounts& cov, int64_t b, int64_t hd,
                        const detail::Strides6& s_src, const detail::Strides6& s_dst, F&& f) {
  QueryTaps qt(a);
  const PatchTaps src_taps(a.pt, a.ps, a.dilation, a.T, a.H, a.W, s_src);
  for (int64_t q = 0; q < a.Q; ++q) {
    qt.fill(a, cov, q, s_dst);
    for_each_neighbour_tap(a, qt, src_taps, b, hd, q, s_src,
                           [&](int64_t k, int64_t i, int64_t src, int64_t dst) { f(q, k, qt.count[i], src, dst); });
  }
}

// Plane tasks of the patch arguments (cpu/parallel.h).
template <class F>
void for_each_channel_task(const PatchArgs& a, F&& f) {
  cpu::for_each_channel_task(a.B, a.HD, a.C, a.B * a.HD * a.C * a.Q * a.K * a.pt * a.ps * a.ps, f);
}

template <class T>
void forward_impl(const PatchArgs& a) {
  const T* vid = static_cast<const T*>(a.vid);
  T* out = static_cast<T*>(a.out);
  const AxisCounts cov(a);
  for_each_channel_task(a, [&](int64_t b, int64_t hd, int64_t c0, int64_t c1) {
    const T* v = vid + b * a.sv.b + hd * a.sv.h;
    T* o = out + b * a.so.b + hd * a.so.h;
    for (int64_t c = c0; c < c1; ++c) zero_plane(o + c * a.so.c, a.T, a.H, a.W, a.so);
    for_each_plane_tap(a, cov, b, hd, a.sv, a.so, [&](int64_t q, int64_t k, int64_t, int64_t src, int64_t dst) {
      const T wk = weight<T>(a, b, hd, q, k);
      for (int64_t c = c0; c < c1; ++c) o[dst + c * a.so.c] += wk * v[src + c * a.sv.c];
    });
    // Divide by the coverage count fold(ones); uncovered pixels stay 0.
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t t = 0; t < a.T; ++t)
        for (int64_t y = 0; y < a.H; ++y)
          for (int64_t x = 0; x < a.W; ++x) {
            const int64_t n = cov.at(t, y, x);
            if (n > 0) o[c * a.so.c + t * a.so.t + y * a.so.y + x * a.so.x] /= T(n);
          }
  });
}

template <class T>
void backward_impl(const PatchArgs& a) {
  const T* vid = static_cast<const T*>(a.vid);
  const T* gout = static_cast<const T*>(a.grad_out);
  T* gvid = static_cast<T*>(a.out);
  T* gw = static_cast<T*>(a.grad_weights);
  const AxisCounts cov(a);
  const int64_t ntap = a.pt * a.ps * a.ps;
  // The gradient reaching a tap is grad_out / count at the pixel the tap was folded into.
  // grad_weights[q, k] = sum over taps of (sum over channels of grad_out[dst] * vid[src]) / count.
  const int64_t nq = a.B * a.HD * a.Q;
#pragma omp parallel if (nq * a.K * a.C * ntap > kParallelWork)
  {
    QueryTaps qt(a);
    const PatchTaps src_taps(a.pt, a.ps, a.dilation, a.T, a.H, a.W, a.sv);
#pragma omp for schedule(static)
    for (int64_t g = 0; g < nq; ++g) {
      const int64_t b = g / (a.HD * a.Q), hd = (g / a.Q) % a.HD, q = g % a.Q;
      T* gwq = gw + b * a.sgw[0] + hd * a.sgw[1] + q * a.sgw[2];
      const T* v = vid + b * a.sv.b + hd * a.sv.h;
      const T* go = gout + b * a.sg.b + hd * a.sg.h;
      qt.fill(a, cov, q, a.sg);
      for (int64_t k = 0; k < a.K; ++k) gwq[k * a.sgw[3]] = T(0);
      for_each_neighbour_tap(a, qt, src_taps, b, hd, q, a.sv, [&](int64_t k, int64_t i, int64_t src, int64_t dst) {
        T s = T(0);
        for (int64_t c = 0; c < a.C; ++c) s += go[dst + c * a.sg.c] * v[src + c * a.sv.c];
        gwq[k * a.sgw[3]] += s / T(qt.count[i]);
      });
    }
  }

  // grad_vid[src] += weights[q, k] * grad_out[dst] / count(dst).
  for_each_channel_task(a, [&](int64_t b, int64_t hd, int64_t c0, int64_t c1) {
    const T* go = gout + b * a.sg.b + hd * a.sg.h;
    T* gv = gvid + b * a.so.b + hd * a.so.h;
    for (int64_t c = c0; c < c1; ++c) zero_plane(gv + c * a.so.c, a.T, a.H, a.W, a.so);
    for_each_plane_tap(a, cov, b, hd, a.so, a.sg, [&](int64_t q, int64_t k, int64_t count, int64_t src, int64_t dst) {
      const T wk = weight<T>(a, b, hd, q, k), n = T(count);
      for (int64_t c = c0; c < c1; ++c) gv[src + c * a.so.c] += wk * go[dst + c * a.sg.c] / n;
    });
  });
}

}  // namespace

void wpsum_forward(const PatchArgs& a) {
  STNLS_FLOAT_SWITCH(a.dtype, [&] { forward_impl<scalar_t>(a); });
}
void wpsum_backward(const PatchArgs& a) {
  STNLS_FLOAT_SWITCH(a.dtype, [&] { backward_impl<scalar_t>(a); });
}

}  // namespace cpu
}  // namespace stnls
