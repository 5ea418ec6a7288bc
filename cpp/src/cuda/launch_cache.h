// Host-side launch settings that the CUDA runtime computes slowly, kept per process: the
// warps per block the occupancy calculator picks for a kernel variant and its shared
// memory, and the dynamic shared memory limit already raised for a kernel. Asking the
// occupancy calculator costs tens of microseconds of host time per query (the search
// forward asked up to 5 times per call, about 0.15 ms of S1's 0.6 ms through torch).
// Thread-safe; keyed by device, since devices may differ.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <map>
#include <mutex>
#include <tuple>

#include "cuda/cuda_util.h"

namespace stnls {
namespace cuda {

// Warps per block (max_warps down to max_warps / 2) with the most resident warps per SM
// for `kernel` with `per_warp` bytes of dynamic shared memory per warp; a tie keeps the
// larger block. Also raises the kernel's dynamic shared memory limit to max_warps *
// per_warp when that exceeds the default 48 KB (never lowers it: another call of the
// same kernel may need more).
inline int block_warps(const void* kernel, int max_warps, size_t per_warp) {
  static std::mutex mutex;
  static std::map<std::tuple<int, const void*, int, size_t>, int> warps_of;
  static std::map<std::pair<int, const void*>, size_t> smem_limit;
  int device = 0;
  STNLS_CUDA_CHECK(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mutex);
  const size_t smem_max = max_warps * per_warp;
  size_t& limit = smem_limit[{device, kernel}];
  if (smem_max > 48 * 1024 && smem_max > limit) {
    STNLS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_max)));
    limit = smem_max;
  }
  const auto key = std::make_tuple(device, kernel, max_warps, per_warp);
  const auto hit = warps_of.find(key);
  if (hit != warps_of.end()) return hit->second;
  int warps = max_warps, best = 0;
  for (int w = max_warps; w >= 1 && w * 2 >= max_warps; --w) {
    int blocks = 0;
    STNLS_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, w * 32, w * per_warp));
    if (blocks * w > best) best = blocks * w, warps = w;
  }
  warps_of.emplace(key, warps);
  return warps;
}

}  // namespace cuda
}  // namespace stnls
