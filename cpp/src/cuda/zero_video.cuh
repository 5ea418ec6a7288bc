// Zero fill of a strided video [B, HD, T, C, H, W], before an atomic scatter into it
// (search backward, fold_k and wpsum backward with deterministic = false).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common/search_args.h"
#include "cuda/cuda_util.h"

namespace stnls {
namespace cuda {

template <class T>
__global__ void __launch_bounds__(256) zero_video_kernel(T* v, detail::Strides6 s, int64_t HD, int64_t TT, int64_t C,
                                                         int64_t H, int64_t W, int64_t total) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  const int64_t x = e % W, y = (e / W) % H, c = (e / (W * H)) % C, t = (e / (W * H * C)) % TT;
  const int64_t r = e / (W * H * C * TT);
  v[(r / HD) * s.b + (r % HD) * s.h + t * s.t + c * s.c + y * s.y + x * s.x] = T(0);
}

template <class T>
void zero_video(T* v, const detail::Strides6& s, int64_t B, int64_t HD, int64_t TT, int64_t C, int64_t H, int64_t W,
                cudaStream_t stream) {
  const int64_t total = B * HD * TT * C * H * W;
  if (total == 0) return;
  zero_video_kernel<T><<<static_cast<unsigned>(ceil_div(total, 256)), 256, 0, stream>>>(v, s, HD, TT, C, H, W, total);
  check_launch("zero_video_kernel");
}

}  // namespace cuda
}  // namespace stnls
