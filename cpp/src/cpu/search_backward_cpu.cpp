// CPU backward of the non-local search. Work is split over (batch, head, channel): each
// task owns one channel plane of both gradients, so no two threads write the same
// element and the sum order is fixed (bitwise deterministic, no atomics, no scratch).
#include "common/backends.h"
#include "cpu/parallel.h"
#include "cpu/plane.h"
#include "common/dispatch.h"
#include "common/geometry.h"

namespace stnls {
namespace cpu {
namespace {

using detail::SearchArgs;

template <class T, bool L2>
void backward_impl(const SearchArgs& a) {
  const SearchParams& p = a.p;
  const SearchShape& sh = a.sh;
  const T* vid0 = static_cast<const T*>(a.vid0);
  const T* vid1 = static_cast<const T*>(a.vid1);
  const T* gd = static_cast<const T*>(a.grad_dists);
  const int32_t* inds = static_cast<const int32_t*>(a.inds);
  T* g0 = static_cast<T*>(a.grad0);
  T* g1 = static_cast<T*>(a.grad1);
  const int64_t T_ = sh.T, H = sh.H, W = sh.W;
  const int64_t ps = p.ps, pt = p.pt, dil = p.dilation;
  const int64_t o0 = geo::patch_offset(0, ps, dil, p.use_adj);
  const int64_t ntask = sh.B * sh.HD * sh.C;

#pragma omp parallel for schedule(dynamic, 1) if (ntask * sh.Q * sh.K * pt * ps * ps > kParallelWork)
  for (int64_t task = 0; task < ntask; ++task) {
    const int64_t b = task / (sh.HD * sh.C), hd = (task / sh.C) % sh.HD, c = task % sh.C;
    const T* v0 = vid0 + b * a.s0.b + hd * a.s0.h + c * a.s0.c;
    const T* v1 = vid1 + b * a.s1.b + hd * a.s1.h + c * a.s1.c;
    T* d0 = g0 + b * a.g0.b + hd * a.g0.h + c * a.g0.c;
    T* d1 = g1 + b * a.g1.b + hd * a.g1.h + c * a.g1.c;
    zero_plane(d0, T_, H, W, a.g0);
    zero_plane(d1, T_, H, W, a.g1);
    for (int64_t q = 0; q < sh.Q; ++q) {
      const int64_t t = q / (sh.nH * sh.nW);
      const int64_t qh = ((q / sh.nW) % sh.nH) * p.stride0, qw = (q % sh.nW) * p.stride0;
      for (int64_t k = 0; k < sh.K; ++k) {
        const int32_t* e = inds + b * a.si[0] + hd * a.si[1] + q * a.si[2] + k * a.si[3];
        const int64_t u = e[0], y = e[a.si[4]], x = e[2 * a.si[4]];
        // Padding (-1) and any index outside the video contribute nothing.
        if (u < 0 || u >= T_ || y < 0 || y >= H || x < 0 || x >= W) continue;
        const T g = gd[b * a.sd[0] + hd * a.sd[1] + q * a.sd[2] + k * a.sd[3]];
        for (int64_t pk = 0; pk < pt; ++pk)
          for (int64_t pi = 0; pi < ps; ++pi)
            for (int64_t pj = 0; pj < ps; ++pj) {
              const int64_t dy = o0 + dil * pi, dx = o0 + dil * pj;
              const int64_t r0 = geo::pixel_offset(t + pk, qh + dy - p.off_H0, qw + dx - p.off_W0, T_, H, W,
                                                   p.reflect_bounds, a.s0.t, a.s0.y, a.s0.x);
              const int64_t r1 = geo::pixel_offset(u + pk, y + dy - p.off_H1, x + dx - p.off_W1, T_, H, W,
                                                   p.reflect_bounds, a.s1.t, a.s1.y, a.s1.x);
              const T va = r0 < 0 ? T(0) : v0[r0];
              const T vb = r1 < 0 ? T(0) : v1[r1];
              // Write to the gradient at the same pixel that was read (strides may differ).
              if (r0 >= 0) {
                const int64_t w0 = geo::pixel_offset(t + pk, qh + dy - p.off_H0, qw + dx - p.off_W0, T_, H, W,
                                                     p.reflect_bounds, a.g0.t, a.g0.y, a.g0.x);
                d0[w0] += g * geo::dist_da<L2>(va, vb);
              }
              if (r1 >= 0) {
                const int64_t w1 = geo::pixel_offset(u + pk, y + dy - p.off_H1, x + dx - p.off_W1, T_, H, W,
                                                     p.reflect_bounds, a.g1.t, a.g1.y, a.g1.x);
                d1[w1] += g * geo::dist_db<L2>(va, vb);
              }
            }
      }
    }
  }
}

}  // namespace

void search_backward(const detail::SearchArgs& a) {
  STNLS_FLOAT_SWITCH(a.dtype, [&] {
    STNLS_DIST_SWITCH(a.p.dist_type, [&] { backward_impl<scalar_t, kL2>(a); });
  });
}

}  // namespace cpu
}  // namespace stnls
