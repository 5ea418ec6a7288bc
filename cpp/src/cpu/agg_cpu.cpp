// CPU weighted patch sum (forward and backward). Scatter form, one task per
// (batch, head, channel) plane for everything written to the video, one per query for the
// weight gradients: one writer per element, fixed sum order, no scratch memory.
#include "common/backends.h"
#include "cpu/parallel.h"
#include "cpu/plane.h"
#include "common/dispatch.h"
#include "common/patch_geometry.h"

namespace stnls {
namespace cpu {
namespace {

using detail::PatchArgs;

// Visits every (q, k, tap) of plane (b, hd) with a valid neighbour:
// f(q, k, src, dst) with src/dst the tap's offsets in the input/output planes (-1: none).
template <class F>
void for_each_tap(const PatchArgs& a, int64_t b, int64_t hd, int64_t q, const detail::Strides6& s_src,
                  const detail::Strides6& s_dst, F&& f) {
  const detail::QueryLoc l = detail::query_loc(a, q);
  for (int64_t k = 0; k < a.K; ++k) {
    const int32_t* e = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2] + k * a.si[3];
    const int64_t t = e[0], h = e[a.si[4]], w = e[2 * a.si[4]];
    if (!detail::valid_ind(a, t, h, w)) continue;
    for (int64_t pk = 0; pk < a.pt; ++pk)
      for (int64_t pi = 0; pi < a.ps; ++pi)
        for (int64_t pj = 0; pj < a.ps; ++pj)
          f(k, detail::tap_offset(a, t, h, w, pk, pi, pj, s_src), detail::tap_offset(a, l.t, l.h, l.w, pk, pi, pj, s_dst));
  }
}

template <class T>
T weight(const PatchArgs& a, int64_t b, int64_t hd, int64_t q, int64_t k) {
  return static_cast<const T*>(a.weights)[b * a.sw[0] + hd * a.sw[1] + q * a.sw[2] + k * a.sw[3]];
}

template <class T>
void forward_impl(const PatchArgs& a) {
  const T* vid = static_cast<const T*>(a.vid);
  T* out = static_cast<T*>(a.out);
  const int64_t ntask = a.B * a.HD * a.C;
#pragma omp parallel for schedule(dynamic, 1) if (a.B * a.HD * a.C * a.Q * a.K * a.pt * a.ps * a.ps > kParallelWork)
  for (int64_t task = 0; task < ntask; ++task) {
    const int64_t b = task / (a.HD * a.C), hd = (task / a.C) % a.HD, c = task % a.C;
    const T* v = vid + b * a.sv.b + hd * a.sv.h + c * a.sv.c;
    T* o = out + b * a.so.b + hd * a.so.h + c * a.so.c;
    zero_plane(o, a.T, a.H, a.W, a.so);
    for (int64_t q = 0; q < a.Q; ++q)
      for_each_tap(a, b, hd, q, a.sv, a.so, [&](int64_t k, int64_t src, int64_t dst) {
        if (dst >= 0 && src >= 0) o[dst] += weight<T>(a, b, hd, q, k) * v[src];
      });
    // Divide by the coverage count fold(ones); uncovered pixels stay 0.
    for (int64_t t = 0; t < a.T; ++t)
      for (int64_t y = 0; y < a.H; ++y)
        for (int64_t x = 0; x < a.W; ++x) {
          const int64_t n = detail::coverage_count(a, t, y, x);
          if (n > 0) o[t * a.so.t + y * a.so.y + x * a.so.x] /= T(n);
        }
  }
}

template <class T>
void backward_impl(const PatchArgs& a) {
  const T* vid = static_cast<const T*>(a.vid);
  const T* gout = static_cast<const T*>(a.grad_out);
  T* gvid = static_cast<T*>(a.out);
  T* gw = static_cast<T*>(a.grad_weights);
  // The gradient reaching a tap is grad_out / count at the pixel the tap was folded into.
  // grad_weights[q, k] = sum over taps and channels of (grad_out/count)[dst] * vid[src].
  const int64_t nq = a.B * a.HD * a.Q;
#pragma omp parallel for schedule(static) if (nq * a.K * a.C * a.pt * a.ps * a.ps > kParallelWork)
  for (int64_t g = 0; g < nq; ++g) {
    const int64_t b = g / (a.HD * a.Q), hd = (g / a.Q) % a.HD, q = g % a.Q;
    T* gwq = gw + b * a.sgw[0] + hd * a.sgw[1] + q * a.sgw[2];
    for (int64_t k = 0; k < a.K; ++k) gwq[k * a.sgw[3]] = T(0);
    const T* v = vid + b * a.sv.b + hd * a.sv.h;
    const T* go = gout + b * a.sg.b + hd * a.sg.h;
    const detail::QueryLoc l = detail::query_loc(a, q);
    for (int64_t k = 0; k < a.K; ++k) {
      const int32_t* e = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2] + k * a.si[3];
      const int64_t t = e[0], h = e[a.si[4]], w = e[2 * a.si[4]];
      if (!detail::valid_ind(a, t, h, w)) continue;
      T acc = T(0);
      for (int64_t pk = 0; pk < a.pt; ++pk)
        for (int64_t pi = 0; pi < a.ps; ++pi)
          for (int64_t pj = 0; pj < a.ps; ++pj) {
            const int64_t src = detail::tap_offset(a, t, h, w, pk, pi, pj, a.sv);
            const int64_t dst = detail::tap_offset(a, l.t, l.h, l.w, pk, pi, pj, a.sg);
            if (src < 0 || dst < 0) continue;
            const int64_t n = detail::tap_count(a, l.t, l.h, l.w, pk, pi, pj);
            T s = T(0);
            for (int64_t c = 0; c < a.C; ++c) s += go[dst + c * a.sg.c] * v[src + c * a.sv.c];
            acc += s / T(n);
          }
      gwq[k * a.sgw[3]] = acc;
    }
  }

  // grad_vid[src] += weights[q, k] * (grad_out/count)[dst], one task per channel plane.
  const int64_t ntask = a.B * a.HD * a.C;
#pragma omp parallel for schedule(dynamic, 1) if (ntask * a.Q * a.K * a.pt * a.ps * a.ps > kParallelWork)
  for (int64_t task = 0; task < ntask; ++task) {
    const int64_t b = task / (a.HD * a.C), hd = (task / a.C) % a.HD, c = task % a.C;
    const T* go = gout + b * a.sg.b + hd * a.sg.h + c * a.sg.c;
    T* gv = gvid + b * a.so.b + hd * a.so.h + c * a.so.c;
    zero_plane(gv, a.T, a.H, a.W, a.so);
    for (int64_t q = 0; q < a.Q; ++q) {
      const detail::QueryLoc l = detail::query_loc(a, q);
      for (int64_t k = 0; k < a.K; ++k) {
        const int32_t* e = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2] + k * a.si[3];
        const int64_t t = e[0], h = e[a.si[4]], w = e[2 * a.si[4]];
        if (!detail::valid_ind(a, t, h, w)) continue;
        const T wk = weight<T>(a, b, hd, q, k);
        for (int64_t pk = 0; pk < a.pt; ++pk)
          for (int64_t pi = 0; pi < a.ps; ++pi)
            for (int64_t pj = 0; pj < a.ps; ++pj) {
              const int64_t src = detail::tap_offset(a, t, h, w, pk, pi, pj, a.so);
              const int64_t dst = detail::tap_offset(a, l.t, l.h, l.w, pk, pi, pj, a.sg);
              if (src < 0 || dst < 0) continue;
              const int64_t n = detail::tap_count(a, l.t, l.h, l.w, pk, pi, pj);
              gv[src] += wk * go[dst] / T(n);
            }
      }
    }
  }
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
