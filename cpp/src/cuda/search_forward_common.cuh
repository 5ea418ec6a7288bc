// Pieces both CUDA forward layouts share: search_forward.cu (a warp per query) and
// search_forward_thread.cu (a thread per query).
#pragma once
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>

namespace stnls {
namespace cuda {

constexpr int32_t kEmpty = INT32_MAX;  // ordinal of an empty list entry (ranks last)

// Loads the CV channels of one pixel / query tap into registers (16-byte loads when
// CV % 4 == 0; the caller keeps those addresses 16-byte aligned).
template <int CV>
__device__ __forceinline__ void load_px(float (&v)[CV], const float* p) {
  if constexpr (CV % 4 == 0) {
#pragma unroll
    for (int c = 0; c < CV; c += 4) {
      const float4 x = *reinterpret_cast<const float4*>(p + c);
      v[c] = x.x, v[c + 1] = x.y, v[c + 2] = x.z, v[c + 3] = x.w;
    }
  } else {
#pragma unroll
    for (int c = 0; c < CV; ++c) v[c] = p[c];
  }
}

}  // namespace cuda
}  // namespace stnls
