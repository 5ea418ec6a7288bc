// CPU backward of the non-local search. Work is split over (batch, head, channel group)
// (cpu/parallel.h): each task owns its channel planes of both gradients, so no two threads
// write the same element and the sum order is fixed (bitwise deterministic, no atomics,
// no scratch); the index walk and bounds of a (query, neighbour, tap) serve every channel
// of the task.
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
  const int64_t work = sh.B * sh.HD * sh.C * sh.Q * sh.K * pt * ps * ps;

  // Patches inside the video read their taps through offset tables (one per strides);
  // border patches go through the bounds rule. Same offsets either way, so the same sums.
  const int64_t ntap = pt * ps * ps;
  const PatchTaps tap_s0(pt, ps, dil, T_, H, W, a.s0), tap_s1(pt, ps, dil, T_, H, W, a.s1);
  const PatchTaps tap_g0(pt, ps, dil, T_, H, W, a.g0), tap_g1(pt, ps, dil, T_, H, W, a.g1);
  const bool refl = p.reflect_bounds;

  for_each_channel_task(sh.B, sh.HD, sh.C, work, [&](int64_t b, int64_t hd, int64_t c0, int64_t c1) {
    const T* v0 = vid0 + b * a.s0.b + hd * a.s0.h;
    const T* v1 = vid1 + b * a.s1.b + hd * a.s1.h;
    T* d0 = g0 + b * a.g0.b + hd * a.g0.h;
    T* d1 = g1 + b * a.g1.b + hd * a.g1.h;
    for (int64_t c = c0; c < c1; ++c) {
      zero_plane(d0 + c * a.g0.c, T_, H, W, a.g0);
      zero_plane(d1 + c * a.g1.c, T_, H, W, a.g1);
    }
    // Adds tap pair (r0, r1) read, (w0, w1) written (-1: outside) for every channel.
    auto add = [&](T g, int64_t r0, int64_t r1, int64_t w0, int64_t w1) {
      for (int64_t c = c0; c < c1; ++c) {
        const T va = r0 < 0 ? T(0) : v0[r0 + c * a.s0.c];
        const T vb = r1 < 0 ? T(0) : v1[r1 + c * a.s1.c];
        if (w0 >= 0) d0[w0 + c * a.g0.c] += g * geo::dist_da<L2>(va, vb);
        if (w1 >= 0) d1[w1 + c * a.g1.c] += g * geo::dist_db<L2>(va, vb);
      }
    };
    for (int64_t q = 0; q < sh.Q; ++q) {
      const int64_t t = q / (sh.nH * sh.nW);
      const int64_t qh = ((q / sh.nW) % sh.nH) * p.stride0, qw = (q % sh.nW) * p.stride0;
      const int64_t qy = qh + o0 - p.off_H0, qx = qw + o0 - p.off_W0;  // query patch's first tap
      const bool q_in = tap_s0.inside(t, qy, qx);
      const int64_t q_s0 = t * a.s0.t + qy * a.s0.y + qx * a.s0.x, q_g0 = t * a.g0.t + qy * a.g0.y + qx * a.g0.x;
      for (int64_t k = 0; k < sh.K; ++k) {
        const int32_t* e = inds + b * a.si[0] + hd * a.si[1] + q * a.si[2] + k * a.si[3];
        const int64_t u = e[0], y = e[a.si[4]], x = e[2 * a.si[4]];
        // Padding (-1) and any index outside the video contribute nothing.
        if (u < 0 || u >= T_ || y < 0 || y >= H || x < 0 || x >= W) continue;
        const T g = gd[b * a.sd[0] + hd * a.sd[1] + q * a.sd[2] + k * a.sd[3]];
        const int64_t cy = y + o0 - p.off_H1, cx = x + o0 - p.off_W1;  // candidate's first tap
        if (q_in && tap_s0.inside(u, cy, cx)) {
          const int64_t c_s1 = u * a.s1.t + cy * a.s1.y + cx * a.s1.x, c_g1 = u * a.g1.t + cy * a.g1.y + cx * a.g1.x;
          for (int64_t i = 0; i < ntap; ++i)
            add(g, q_s0 + tap_s0.off[i], c_s1 + tap_s1.off[i], q_g0 + tap_g0.off[i], c_g1 + tap_g1.off[i]);
          continue;
        }
        for (int64_t pk = 0; pk < pt; ++pk)
          for (int64_t pi = 0; pi < ps; ++pi)
            for (int64_t pj = 0; pj < ps; ++pj) {
              const int64_t ty = qy + dil * pi, tx = qx + dil * pj, uy = cy + dil * pi, ux = cx + dil * pj;
              const int64_t r0 = geo::pixel_offset(t + pk, ty, tx, T_, H, W, refl, a.s0.t, a.s0.y, a.s0.x);
              const int64_t r1 = geo::pixel_offset(u + pk, uy, ux, T_, H, W, refl, a.s1.t, a.s1.y, a.s1.x);
              // Write to the gradient at the same pixel that was read (strides may differ).
              const int64_t w0 = r0 < 0 ? -1 : geo::pixel_offset(t + pk, ty, tx, T_, H, W, refl, a.g0.t, a.g0.y, a.g0.x);
              const int64_t w1 = r1 < 0 ? -1 : geo::pixel_offset(u + pk, uy, ux, T_, H, W, refl, a.g1.t, a.g1.y, a.g1.x);
              add(g, r0, r1, w0, w1);
            }
      }
    }
  });
}

}  // namespace

void search_backward(const detail::SearchArgs& a) {
  STNLS_FLOAT_SWITCH(a.dtype, [&] {
    STNLS_DIST_SWITCH(a.p.dist_type, [&] { backward_impl<scalar_t, kL2>(a); });
  });
}

}  // namespace cpu
}  // namespace stnls
