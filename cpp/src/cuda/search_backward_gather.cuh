// Device pieces shared by the gather kernels of the CUDA search backward
// (search_backward.cu, search_backward_taps.cu): which (query or candidate, tap) pairs read
// a pixel, in a fixed order, and how a fast-path thread finds its pixel and a record's.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/pixel_major.cuh"
#include "cuda/search_backward_args.h"

namespace stnls {
namespace cuda {

// The preimages of coordinate x under bound() on an axis of length L, in a fixed order.
struct Pre {
  int z[3];
  int n;
};
__device__ __forceinline__ Pre preimages(int x, int L, bool reflect) {
  Pre p;
  p.z[0] = x;
  p.n = 1;
  if (reflect) {
    if (x > 0) p.z[p.n++] = -x;
    if (x < L - 1) p.z[p.n++] = 2 * (L - 1) - x;
  }
  return p;
}

// The taps i of one axis whose query coordinate z - (o0 + dil*i) + off can lie on the query
// grid (a multiple of str0): with dil = 1 every str0-th tap from i0 (no test needed);
// otherwise every tap, each tested (`test`).
struct GridTaps {
  int i0, step;
  bool test;
};
__device__ __forceinline__ GridTaps grid_taps(int z, int o0, int off, int dil, int str0) {
  if (str0 == 1) return {0, 1, false};
  if (dil != 1) return {0, 1, true};
  int r = (z - o0 + off) % str0;  // z - o0 - i + off == 0 (mod str0) <=> i == r (mod str0)
  if (r < 0) r += str0;
  return {r, str0, false};
}

// The taps through which pixel (t, y, x) of vid0 was read: f(pk, q, dy, dx) for every query
// q on the query grid whose patch reads it at tap (pk, pi, pj), dy = o0 + dil*pi and
// dx = o0 + dil*pj, in a fixed order (each gradient element sums in that order).
template <class T, class F>
__device__ __forceinline__ void for_each_query_tap(const BwdArgs<T>& a, int t, int y, int x, F f) {
  const Pre pt_ = preimages(t, a.nT, a.reflect);
  const Pre py = preimages(y, a.H, a.reflect);
  const Pre px = preimages(x, a.W, a.reflect);
  for (int it = 0; it < pt_.n; ++it)
    for (int pk = 0; pk < a.pt; ++pk) {
      const int tq = pt_.z[it] - pk;
      if (tq < 0 || tq >= a.nT) continue;
      for (int iy = 0; iy < py.n; ++iy) {
        const GridTaps gy = grid_taps(py.z[iy], a.o0, a.offH0, a.dil, a.str0);
        for (int pi = gy.i0; pi < a.ps; pi += gy.step) {
          const int dy = a.o0 + a.dil * pi;
          const int qh = py.z[iy] - dy + a.offH0;
          if (qh < 0 || qh >= a.H || (gy.test && qh % a.str0)) continue;
          for (int ix = 0; ix < px.n; ++ix) {
            const GridTaps gx = grid_taps(px.z[ix], a.o0, a.offW0, a.dil, a.str0);
            for (int pj = gx.i0; pj < a.ps; pj += gx.step) {
              const int dx = a.o0 + a.dil * pj;
              const int qw = px.z[ix] - dx + a.offW0;
              if (qw < 0 || qw >= a.W || (gx.test && qw % a.str0)) continue;
              f(pk, (static_cast<int64_t>(tq) * a.nH + qh / a.str0) * a.nW + qw / a.str0, dy, dx);
            }
          }
        }
      }
    }
}

// The taps through which pixel (t, y, x) of vid1 was read: f(pk, u, yy, xx, dy, dx) for
// every candidate location (u, yy, xx) whose patch reads it at tap (pk, pi, pj), in a
// fixed order.
template <class T, class F>
__device__ __forceinline__ void for_each_candidate_tap(const BwdArgs<T>& a, int t, int y, int x, F f) {
  const Pre pt_ = preimages(t, a.nT, a.reflect);
  const Pre py = preimages(y, a.H, a.reflect);
  const Pre px = preimages(x, a.W, a.reflect);
  for (int it = 0; it < pt_.n; ++it)
    for (int pk = 0; pk < a.pt; ++pk) {
      const int u = pt_.z[it] - pk;
      if (u < 0 || u >= a.nT) continue;
      for (int iy = 0; iy < py.n; ++iy)
        for (int pi = 0; pi < a.ps; ++pi) {
          const int dy = a.o0 + a.dil * pi;
          const int yy = py.z[iy] - dy + a.offH1;
          if (yy < 0 || yy >= a.H) continue;
          for (int ix = 0; ix < px.n; ++ix)
            for (int pj = 0; pj < a.ps; ++pj) {
              const int dx = a.o0 + a.dil * pj;
              const int xx = px.z[ix] - dx + a.offW1;
              if (xx < 0 || xx >= a.W) continue;
              f(pk, u, yy, xx, dy, dx);
            }
        }
    }
}

// The pixel (b, hd, t, y, x) of a fast gather's thread e; bh = b * HD + hd.
struct GatherPixel {
  int x, y, t, b, hd;
  int64_t bh;
};
__device__ __forceinline__ GatherPixel gather_pixel(const BwdArgs<float>& a, int64_t e) {
  GatherPixel p;
  p.x = static_cast<int>(e % a.W);
  p.y = static_cast<int>((e / a.W) % a.H);
  p.t = static_cast<int>((e / (static_cast<int64_t>(a.W) * a.H)) % a.nT);
  p.bh = e / (static_cast<int64_t>(a.W) * a.H * a.nT);
  p.b = static_cast<int>(p.bh / a.HD), p.hd = static_cast<int>(p.bh % a.HD);
  return p;
}

// The record of neighbour k of query q in slice bh: (grad_dists as int bits, the code of
// its candidate patch in vid1; kNoPatch for padding and out-of-range triples).
template <class T>
__device__ __forceinline__ int2 candidate_record(const BwdArgs<T>& a, int64_t bh, int64_t q, int k) {
  const int b = static_cast<int>(bh / a.HD), hd = static_cast<int>(bh % a.HD);
  const int32_t* ie = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2] + k * a.si[3];
  const int u = ie[0], y = ie[a.si[4]], x = ie[2 * a.si[4]];
  const bool ok = u >= 0 && u < a.nT && y >= 0 && y < a.H && x >= 0 && x < a.W;
  const float g = static_cast<float>(a.gd[b * a.sd[0] + hd * a.sd[1] + q * a.sd[2] + k * a.sd[3]]);
  const int span = a.dil * (a.ps - 1);
  return make_int2(__float_as_int(g), ok ? pixel::patch_code(u, y, x, a.nT, a.H, a.W, a.pt, a.o0, span, a.offH1,
                                                             a.offW1)
                                         : pixel::kNoPatch);
}

// A record's grad_dists and the CV channels of its patch's pixel at the given tap in the
// pixel-major copy pm (zeros when the tap falls outside the video).
template <int CV>
__device__ __forceinline__ float record_pixel(const BwdArgs<float>& a, int2 r, int64_t bh, int64_t tap, int pk,
                                              int ddy, int ddx, const float* pm, float (&v)[CV]) {
  const float g = __int_as_float(r.x);
  const int64_t pix = pixel::tap_pixel(r.y, bh, tap, pk, ddy, ddx, a.nT, a.H, a.W, a.reflect);
  if (pix < 0) {
#pragma unroll
    for (int c = 0; c < CV; ++c) v[c] = 0.f;
  } else {
    pixel::load_cv<CV>(v, pm + pix * CV);
  }
  return g;
}

}  // namespace cuda
}  // namespace stnls
