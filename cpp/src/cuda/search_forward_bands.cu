// Pixel-major rows of vid1 for the row-split forward: the ring plan and the kernel that
// fills it (see search_forward_bands.h).
#include "cuda/search_forward_bands.h"
#include "cuda/search_forward_groups.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "common/geometry.h"
#include "cuda/cuda_util.h"
#include "stnls/error.h"

namespace stnls {
namespace cuda {
namespace {

std::atomic<int> forced_ring{0}, forced_margin{0};  // set_forward_bands

constexpr int kMaxBands = 64;  // more bands than this: no plan (launches would dominate)
constexpr int kFlowRows = 6;   // margin rows for the flows (S4's 2 px flows: 6 measured best of 4, 6, 8)

// Rows r0 + blockIdx.y of every frame (blockIdx.z), 32 columns per block (blockIdx.x),
// padded by P columns each side with the bounds rule applied: ring[bt][y % ring][x + P][CV].
// Read channel by channel along the row (coalesced), written as whole pixels.
template <int CV>
__global__ void __launch_bounds__(256) fill_rows_kernel(const float* vid, detail::Strides6 s, int HD, int nT, int H,
                                                        int W, bool reflect, int r0, int ring, int P, float* dst) {
  __shared__ float tile[CV][33];
  const int pw = W + 2 * P;
  const int xb = blockIdx.x * 32, y = r0 + static_cast<int>(blockIdx.y);
  const int bt = blockIdx.z, t = bt % nT, bh = bt / nT, b = bh / HD, hd = bh % HD;
  const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  const int yy = geo::bound32(y, H, reflect), xx = geo::bound32(xb + lane - P, W, reflect);
  const bool in = yy >= 0 && xx >= 0 && xb + lane < pw;
  const float* src = vid + b * s.b + hd * s.h + t * s.t + (in ? yy * s.y + xx * s.x : 0);
#pragma unroll
  for (int c = wid; c < CV; c += 8) tile[c][lane] = in ? src[c * s.c] : 0.f;
  __syncthreads();
  float4* out = reinterpret_cast<float4*>(dst + ((static_cast<int64_t>(bt) * ring + y % ring) * pw + xb) * CV);
  for (int k = threadIdx.x; k < 32 * CV / 4; k += 256) {
    const int px = k / (CV / 4), c4 = (k - px * (CV / 4)) * 4;
    if (xb + px < pw) out[k] = make_float4(tile[c4][px], tile[c4 + 1][px], tile[c4 + 2][px], tile[c4 + 3][px]);
  }
}

}  // namespace

void set_forward_bands(int ring_rows, int margin) {
  forced_ring = ring_rows;
  forced_margin = margin;
}

BandPlan band_plan(const detail::SearchArgs& a) {
  const SearchParams& p = a.p;
  const SearchShape& sh = a.sh;
  BandPlan plan;
  if (sh.B * sh.HD * sh.T > 65535 || sh.H > 65535) return plan;  // the fill kernel's grid
  // Columns: a staged row starts at window column + o0 - off_W1 with o0 in [-(ps - 1), 0].
  plan.P = p.ps - 1 + std::abs(p.off_W1);
  plan.row_bytes = sh.B * sh.HD * sh.T * (sh.W + 2 * plan.P) * kBandCV * static_cast<int64_t>(sizeof(float));
  // Rows a query row's windows read: window radius and patch rows, plus the flows' shift.
  plan.margin = p.ws / 2 + p.ps / 2 + std::abs(p.off_H1) + kFlowRows;
  const int64_t outputs = sh.B * sh.HD * sh.Q * sh.K * (sizeof(float) + 3 * sizeof(int32_t));
  int64_t ring = std::min<int64_t>(sh.H, outputs * 7 / 16 / plan.row_bytes);
  if (forced_ring > 0) ring = std::min<int64_t>(sh.H, forced_ring), plan.margin = forced_margin;
  if (ring < 1) return BandPlan{};
  plan.ring = static_cast<int>(ring);
  if (ring == sh.H) {  // every row: one band
    plan.nr = static_cast<int>(sh.nH);
    return plan;
  }
  // Two consecutive bands' rows, (2 nr - 1) stride0 + 2 margin + 1, fit in the ring.
  plan.nr = static_cast<int>(((ring - 2 * plan.margin - 1) / p.stride0 + 1) / 2);
  if (plan.nr < 1 || (forced_ring == 0 && (sh.nH + plan.nr - 1) / plan.nr > kMaxBands)) return BandPlan{};
  return plan;
}

void check_workspace(const BandPlan& plan, const void* workspace, size_t workspace_bytes) {
  if (workspace_bytes < plan.bytes())
    throw ValueError("workspace: expected at least " + std::to_string(plan.bytes()) +
                     " bytes (search_forward_workspace_size), got " + std::to_string(workspace_bytes));
  if (reinterpret_cast<uintptr_t>(workspace) % 16 != 0) throw ValueError("workspace: expected a 16-byte aligned address");
}

void fill_band_rows(const detail::SearchArgs& a, const BandPlan& plan, int r0, int r1, cudaStream_t stream,
                    float* ring) {
  if (r1 <= r0) return;
  const SearchShape& sh = a.sh;
  const int pw = static_cast<int>(sh.W) + 2 * plan.P;
  const dim3 grid(static_cast<unsigned>((pw + 31) / 32), static_cast<unsigned>(r1 - r0),
                  static_cast<unsigned>(sh.B * sh.HD * sh.T));
  fill_rows_kernel<kBandCV><<<grid, 256, 0, stream>>>(static_cast<const float*>(a.vid1), a.s1, static_cast<int>(sh.HD),
                                                 static_cast<int>(sh.T), static_cast<int>(sh.H), static_cast<int>(sh.W),
                                                 a.p.reflect_bounds, r0, plan.ring, plan.P, ring);
  check_launch("fill_rows_kernel");
}

}  // namespace cuda
}  // namespace stnls
