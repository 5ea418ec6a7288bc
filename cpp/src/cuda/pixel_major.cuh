// Internal: the pixel-major fast path of the CUDA search backward. A video is copied once
// into [b][hd][t][y][x][CV] (channels padded with zeros to CV = 4, 8, 16 or 32) so that one
// thread per pixel reads a neighbour's channels with CV/4 16-byte loads, and every (query,
// neighbour) pair is packed once as an 8-byte record (a scalar, a patch code) so that the
// inner loops make one load per pair and, for patches inside the video, no bounds rule
// and no divisions. Kept apart so the other deterministic adjoints can take the same path
// (branch next/wpsum-gather).
#pragma once
#include <cuda_runtime.h>

#include <climits>
#include <cstddef>
#include <cstdint>

#include "common/geometry.h"
#include "common/search_args.h"

namespace stnls {
namespace cuda {
namespace pixel {

// Copies vid (b, hd, t, c, y, x; any strides) to dst [b][hd][t][y][x][CV], channels >= C zero.
template <int CV>
__global__ void to_pixel_major_kernel(const float* vid, detail::Strides6 s, int HD, int nT, int C, int H, int W,
                                      float* dst, int64_t npix) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= npix) return;
  const int x = static_cast<int>(e % W);
  const int y = static_cast<int>((e / W) % H);
  const int t = static_cast<int>((e / (static_cast<int64_t>(W) * H)) % nT);
  const int64_t bh = e / (static_cast<int64_t>(W) * H * nT);
  const int b = static_cast<int>(bh / HD), hd = static_cast<int>(bh % HD);
  const float* src = vid + b * s.b + hd * s.h + t * s.t + y * s.y + x * s.x;
  float4* out = reinterpret_cast<float4*>(dst + e * CV);
#pragma unroll
  for (int c = 0; c < CV; c += 4) {
    float4 v;
    v.x = c < C ? src[c * s.c] : 0.f;
    v.y = c + 1 < C ? src[(c + 1) * s.c] : 0.f;
    v.z = c + 2 < C ? src[(c + 2) * s.c] : 0.f;
    v.w = c + 3 < C ? src[(c + 3) * s.c] : 0.f;
    out[c / 4] = v;
  }
}

// The code of a patch at (t, y, x): its pixel index p = (t*H + y)*W + x in the (b, hd)
// slice when every tap of the patch lands inside the video, so a tap reads pixel p + tap
// offset with no bounds rule; ~p (negative) when some tap needs the rule (the reader
// decodes t, y, x); kNoPatch for padding and indices outside the video. Taps span rows
// y + lo - offH .. y + lo + span - offH (columns alike) and frames t .. t + pt - 1.
constexpr int32_t kNoPatch = INT32_MIN;  // ~p for p = INT32_MAX, which no pixel reaches

__device__ __forceinline__ int32_t patch_code(int t, int y, int x, int nT, int H, int W, int pt, int lo, int span,
                                              int offH, int offW) {
  const int32_t p = static_cast<int32_t>((static_cast<int64_t>(t) * H + y) * W + x);
  const bool inside = t + pt <= nT && y + lo - offH >= 0 && y + lo + span - offH < H && x + lo - offW >= 0 &&
                      x + lo + span - offW < W;
  return inside ? p : ~p;
}

template <int CV>
__device__ __forceinline__ void load_cv(float (&v)[CV], const float* p) {
#pragma unroll
  for (int c = 0; c < CV; c += 4) {
    const float4 x = __ldg(reinterpret_cast<const float4*>(p + c));
    v[c] = x.x, v[c + 1] = x.y, v[c + 2] = x.z, v[c + 3] = x.w;
  }
}

// Pixel index (b, hd, t, y, x) of a read after the bounds rule, -1 when it reads as 0.
__device__ __forceinline__ int64_t pixel_index(int64_t bh, int t, int y, int x, int nT, int H, int W, bool reflect) {
  const int64_t tt = geo::bound(t, nT, reflect), yy = geo::bound(y, H, reflect), xx = geo::bound(x, W, reflect);
  if (tt < 0 || yy < 0 || xx < 0) return -1;
  return ((bh * nT + tt) * H + yy) * W + xx;
}

// Pixel index of tap (pk, dy - offH, dx - offW) of the patch with record code `code`
// (patch_code) in slice bh; `tap` = pk*H*W + (dy - offH)*W + (dx - offW). -1: reads as 0.
__device__ __forceinline__ int64_t tap_pixel(int32_t code, int64_t bh, int64_t tap, int pk, int ddy, int ddx, int nT,
                                             int H, int W, bool reflect) {
  if (code >= 0) return bh * nT * H * W + code + tap;
  const int32_t p = ~code;  // border patch: decode and apply the bounds rule
  const int x = p % W, y = (p / W) % H, t = p / (W * H);
  return pixel_index(bh, t + pk, y + ddy, x + ddx, nT, H, W, reflect);
}

// Channels of the pixel-major copies for C channels per head (0: no fast path).
inline int fast_channels(int64_t C, size_t scalar_bytes) {
  if (scalar_bytes != 4) return 0;
  for (int cv : {4, 8, 16, 32})
    if (C <= cv) return cv;
  return 0;
}

}  // namespace pixel
}  // namespace cuda
}  // namespace stnls
