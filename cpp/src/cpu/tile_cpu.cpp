// CPU unfold / fold / unfold_k / fold_k. The folds run one task per (batch, head, channel
// group) (cpu/parallel.h), so each output element has one writer and a fixed sum order
// (deterministic), and a tap's bounds serve all the task's channels.
#include "common/backends.h"
#include "cpu/parallel.h"
#include "cpu/plane.h"
#include "common/dispatch.h"
#include "common/patch_geometry.h"

namespace stnls {
namespace cpu {
namespace {

using detail::PatchArgs;

// Reads patches at query-grid locations (neighbours = false) or at inds (true).
template <class T>
void unfold_impl(const PatchArgs& a, bool neighbours) {
  const T* vid = static_cast<const T*>(a.vid);
  T* out = static_cast<T*>(a.patches_out);
  const int64_t n = a.B * a.HD * a.Q * a.K;
#pragma omp parallel for schedule(static) if (n * a.C * a.pt * a.ps * a.ps > kParallelWork)
  for (int64_t g = 0; g < n; ++g) {
    const int64_t b = g / (a.HD * a.Q * a.K), hd = (g / (a.Q * a.K)) % a.HD, q = (g / a.K) % a.Q, k = g % a.K;
    int64_t t, h, w;
    if (neighbours) {
      const int32_t* e = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2] + k * a.si[3];
      t = e[0], h = e[a.si[4]], w = e[2 * a.si[4]];
    } else {
      const detail::QueryLoc l = detail::query_loc(a, q);
      t = l.t, h = l.h, w = l.w;
    }
    const bool ok = !neighbours || detail::valid_ind(a, t, h, w);
    const T* v = vid + b * a.sv.b + hd * a.sv.h;
    T* o = out + detail::patch_elem(a, b, hd, q, k, 0, 0, 0, 0);
    for (int64_t pk = 0; pk < a.pt; ++pk)
      for (int64_t pi = 0; pi < a.ps; ++pi)
        for (int64_t pj = 0; pj < a.ps; ++pj) {
          const int64_t off = ok ? detail::tap_offset(a, t, h, w, pk, pi, pj, a.sv) : -1;
          T* dst = o + pk * a.sp[4] + pi * a.sp[6] + pj * a.sp[7];
          for (int64_t c = 0; c < a.C; ++c) dst[c * a.sp[5]] = off < 0 ? T(0) : v[off + c * a.sv.c];
        }
  }
}

// Adds every patch element to the pixel it was read from.
template <class T>
void fold_impl(const PatchArgs& a, bool neighbours) {
  const T* in = static_cast<const T*>(a.patches_in);
  T* vid = static_cast<T*>(a.out);
  const int64_t work = a.B * a.HD * a.C * a.Q * a.K * a.pt * a.ps * a.ps;
  for_each_channel_task(a.B, a.HD, a.C, work, [&](int64_t b, int64_t hd, int64_t c0, int64_t c1) {
    T* v = vid + b * a.so.b + hd * a.so.h;
    for (int64_t c = c0; c < c1; ++c) zero_plane(v + c * a.so.c, a.T, a.H, a.W, a.so);
    for (int64_t q = 0; q < a.Q; ++q)
      for (int64_t k = 0; k < a.K; ++k) {
        int64_t t, h, w;
        if (neighbours) {
          const int32_t* e = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2] + k * a.si[3];
          t = e[0], h = e[a.si[4]], w = e[2 * a.si[4]];
          if (!detail::valid_ind(a, t, h, w)) continue;
        } else {
          const detail::QueryLoc l = detail::query_loc(a, q);
          t = l.t, h = l.h, w = l.w;
        }
        for (int64_t pk = 0; pk < a.pt; ++pk)
          for (int64_t pi = 0; pi < a.ps; ++pi)
            for (int64_t pj = 0; pj < a.ps; ++pj) {
              const int64_t off = detail::tap_offset(a, t, h, w, pk, pi, pj, a.so);
              if (off < 0) continue;
              const T* src = in + detail::patch_elem(a, b, hd, q, k, pk, 0, pi, pj);
              for (int64_t c = c0; c < c1; ++c) v[off + c * a.so.c] += src[c * a.sp[5]];
            }
      }
  });
}

}  // namespace

void unfold(const PatchArgs& a) {
  STNLS_FLOAT_SWITCH(a.dtype, [&] { unfold_impl<scalar_t>(a, false); });
}
void fold(const PatchArgs& a) {
  STNLS_FLOAT_SWITCH(a.dtype, [&] { fold_impl<scalar_t>(a, false); });
}
void unfold_k(const PatchArgs& a) {
  STNLS_FLOAT_SWITCH(a.dtype, [&] { unfold_impl<scalar_t>(a, true); });
}
void fold_k(const PatchArgs& a) {
  STNLS_FLOAT_SWITCH(a.dtype, [&] { fold_impl<scalar_t>(a, true); });
}

}  // namespace cpu
}  // namespace stnls
