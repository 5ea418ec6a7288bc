// Internal: the pixel-major fast path of the CUDA weighted patch sum's deterministic
// backward (agg.cu), for float videos with C per head <= 32. It is the search backward's
// scheme (pixel_major.cuh) applied to the aggregation:
//  - grad_out / count and vid are copied once to [b][hd][t][y][x][CV] (channels padded with
//    zeros), so one thread reads a pixel's channels with CV/4 16-byte loads;
//  - every sorted list entry (b, hd, q, k) is packed once as an 8-byte record
//    (weights[q, k], patch code of query q): the gather thread of a pixel then makes one
//    load per entry and, for queries whose patch lies inside the video, finds the pixel a
//    tap is folded into as code + a per-tap constant (no divisions, no bounds rule);
//  - one thread per pixel sums every channel of grad_vid, walking each list once instead
//    of once per channel group; one thread per (q, k) sums grad_weights from the copies.
// Summation order is fixed (deterministic); the per-tap division by the coverage count is
// folded into the copy of grad_out, so results match the general path to rounding.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common/patch_args.h"
#include "common/patch_geometry.h"
#include "cuda/patch_common.cuh"
#include "cuda/pixel_major.cuh"

namespace stnls {
namespace cuda {
namespace agg_fast {

using detail::PatchArgs;
using pixel::load_cv;
using pixel::patch_code;
using pixel::tap_pixel;

// Patch code (pixel_major.cuh) of the patch at (t, y, x): taps span rows
// y - dil*o .. y + dil*(ps-1-o), columns alike, frames t .. t + pt - 1.
__device__ __forceinline__ int32_t code_of(const PatchArgs& a, int64_t t, int64_t y, int64_t x) {
  const int o = static_cast<int>(a.ps / 2), dil = static_cast<int>(a.dilation);
  return patch_code(static_cast<int>(t), static_cast<int>(y), static_cast<int>(x), static_cast<int>(a.T),
                    static_cast<int>(a.H), static_cast<int>(a.W), static_cast<int>(a.pt), -dil * o,
                    dil * static_cast<int>(a.ps - 1), 0, 0);
}

// The global pixel index of tap (pk, pi, pj) of the patch with code `code` in slice bh,
// after the bounds rule; -1 when the tap reads 0.
__device__ __forceinline__ int64_t tap_of(const PatchArgs& a, int32_t code, int64_t bh, int pk, int pi, int pj) {
  const int o = static_cast<int>(a.ps / 2), dil = static_cast<int>(a.dilation);
  const int W = static_cast<int>(a.W), H = static_cast<int>(a.H);
  const int ddy = dil * (pi - o), ddx = dil * (pj - o);
  const int64_t tap = static_cast<int64_t>(pk) * H * W + static_cast<int64_t>(ddy) * W + ddx;
  return tap_pixel(code, bh, tap, pk, ddy, ddx, static_cast<int>(a.T), H, W, a.reflect_bounds);
}

// g[e] = grad_out / count at pixel e = (bh, t, y, x), channels padded with zeros to CV.
// A pixel no tap is folded into (count 0) is never read; it gets zeros.
template <int CV>
__global__ void __launch_bounds__(256) scaled_grad_kernel(const PatchArgs a, const int32_t* cov, float* g,
                                                          int64_t npix) {
  const int64_t e = patch::thread_index();
  if (e >= npix) return;
  const int64_t x = e % a.W, y = (e / a.W) % a.H, t = (e / (a.W * a.H)) % a.T, bh = e / (a.W * a.H * a.T);
  const float* src = static_cast<const float*>(a.grad_out) + (bh / a.HD) * a.sg.b + (bh % a.HD) * a.sg.h +
                     t * a.sg.t + y * a.sg.y + x * a.sg.x;
  const int32_t count = cov[t] * cov[a.T + y] * cov[a.T + a.H + x];
  float4* out = reinterpret_cast<float4*>(g + e * CV);
  float v[CV];
#pragma unroll
  for (int c = 0; c < CV; ++c) v[c] = (c < a.C && count > 0) ? src[c * a.sg.c] / static_cast<float>(count) : 0.f;
#pragma unroll
  for (int c = 0; c < CV; c += 4) out[c / 4] = make_float4(v[c], v[c + 1], v[c + 2], v[c + 3]);
}

// rec[i] = (weights[b, hd, q, k], code of query q) for the i-th sorted list entry.
__global__ void __launch_bounds__(256) pack_records_kernel(const PatchArgs a, const int32_t* entries, int2* rec,
                                                           int64_t n) {
  const int64_t i = patch::thread_index();
  if (i >= n) return;
  const int64_t en = entries[i];
  const int64_t k = en % a.K, q = (en / a.K) % a.Q, bh = en / (a.K * a.Q);
  const float w = static_cast<const float*>(a.weights)[(bh / a.HD) * a.sw[0] + (bh % a.HD) * a.sw[1] +
                                                        q * a.sw[2] + k * a.sw[3]];
  const detail::QueryLoc l = detail::query_loc(a, q);
  rec[i] = make_int2(__float_as_int(w), code_of(a, l.t, l.h, l.w));
}

// grad_vid at pixel (bh, t, y, x), every channel: for each (location, tap) whose read lands
// here and each entry listed at that location, weight * g[pixel the tap is folded into].
template <int CV>
__global__ void __launch_bounds__(256, 2) grad_vid_kernel(const PatchArgs a, const int32_t* start, const int2* rec,
                                                       const float* g, int64_t npix) {
  const int64_t e = patch::thread_index();
  if (e >= npix) return;
  const int x = static_cast<int>(e % a.W), y = static_cast<int>((e / a.W) % a.H);
  const int t = static_cast<int>((e / (a.W * a.H)) % a.T);
  const int64_t bh = e / (a.W * a.H * a.T);
  const int64_t loc0 = bh * a.T * a.H * a.W;
  float acc[CV];
#pragma unroll
  for (int c = 0; c < CV; ++c) acc[c] = 0.f;
  patch::for_each_source_tap(a, t, y, x, [&](int64_t loc, int pk, int pi, int pj) {
    const int32_t beg = __ldg(start + loc0 + loc), end = __ldg(start + loc0 + loc + 1);
    for (int32_t li = beg; li < end; ++li) {
      const int2 r = __ldg(rec + li);
      const int64_t pix = tap_of(a, r.y, bh, pk, pi, pj);
      if (pix < 0) continue;
      const float w = __int_as_float(r.x);
      float v[CV];
      load_cv<CV>(v, g + pix * CV);
#pragma unroll
      for (int c = 0; c < CV; ++c) acc[c] += w * v[c];
    }
  });
  float* out = static_cast<float*>(a.out) + (bh / a.HD) * a.so.b + (bh % a.HD) * a.so.h + t * a.so.t +
               y * a.so.y + x * a.so.x;
#pragma unroll
  for (int c = 0; c < CV; ++c)
    if (c < a.C) out[c * a.so.c] = acc[c];
}

// grad_weights[q, k] = sum over taps of sum_c g[query tap, c] * v[neighbour tap, c].
// Thread per (b, hd, q, k), k fastest (the threads of a query share its g reads).
template <int CV>
__global__ void __launch_bounds__(256, 2) grad_weights_kernel(const PatchArgs a, const float* g, const float* v,
                                                           int64_t total) {
  const int64_t e = patch::thread_index();
  if (e >= total) return;
  const int64_t k = e % a.K, q = (e / a.K) % a.Q, bh = e / (a.K * a.Q);
  const int64_t b = bh / a.HD, hd = bh % a.HD;
  float* gw = static_cast<float*>(a.grad_weights) + b * a.sgw[0] + hd * a.sgw[1] + q * a.sgw[2] + k * a.sgw[3];
  const patch::Loc l = patch::load_ind(a, b, hd, q, k);
  if (!detail::valid_ind(a, l.t, l.h, l.w)) {
    *gw = 0.f;
    return;
  }
  const detail::QueryLoc ql = detail::query_loc(a, q);
  const int32_t qcode = code_of(a, ql.t, ql.h, ql.w), ncode = code_of(a, l.t, l.h, l.w);
  float acc = 0.f;
  for (int pk = 0; pk < a.pt; ++pk)
    for (int pi = 0; pi < a.ps; ++pi)
      for (int pj = 0; pj < a.ps; ++pj) {
        const int64_t dst = tap_of(a, qcode, bh, pk, pi, pj), src = tap_of(a, ncode, bh, pk, pi, pj);
        if (dst < 0 || src < 0) continue;
        float gd[CV], vs[CV];
        load_cv<CV>(gd, g + dst * CV);
        load_cv<CV>(vs, v + src * CV);
        float s = 0.f;
#pragma unroll
        for (int c = 0; c < CV; ++c) s += gd[c] * vs[c];
        acc += s;
      }
  *gw = acc;
}

// Runs the fast backward: cov holds the coverage tables, start/entries the built lists,
// rec room for n records (it may alias the lists' sort keys), g and v npix*CV floats each.
template <int CV>
void backward(const PatchArgs& a, const int32_t* cov, const int32_t* start, const int32_t* entries, int64_t n,
              int2* rec, float* g, float* v, cudaStream_t stream) {
  const int64_t npix = a.B * a.HD * a.T * a.H * a.W, nqk = a.B * a.HD * a.Q * a.K;
  if (npix == 0) return;
  const unsigned pix_blocks = patch::blocks_for(npix);
  scaled_grad_kernel<CV><<<pix_blocks, 256, 0, stream>>>(a, cov, g, npix);
  check_launch("scaled_grad_kernel");
  pixel::to_pixel_major_kernel<CV><<<pix_blocks, 256, 0, stream>>>(
      static_cast<const float*>(a.vid), a.sv, static_cast<int>(a.HD), static_cast<int>(a.T),
      static_cast<int>(a.C), static_cast<int>(a.H), static_cast<int>(a.W), v, npix);
  check_launch("to_pixel_major_kernel");
  if (nqk > 0) {
    grad_weights_kernel<CV><<<patch::blocks_for(nqk), 256, 0, stream>>>(a, g, v, nqk);
    check_launch("grad_weights_kernel");
  }
  if (n > 0) {
    pack_records_kernel<<<patch::blocks_for(n), 256, 0, stream>>>(a, entries, rec, n);
    check_launch("pack_records_kernel");
  }
  grad_vid_kernel<CV><<<pix_blocks, 256, 0, stream>>>(a, start, rec, g, npix);
  check_launch("grad_vid_kernel");
}

}  // namespace agg_fast
}  // namespace cuda
}  // namespace stnls
