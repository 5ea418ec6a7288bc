// The tap-split gathers of the CUDA search backward (search_backward_taps.cu): the fast
// path's two gathers for calls whose per-tap partial sums fit a small buffer.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/search_args.h"
#include "cuda/search_backward_args.h"

namespace stnls {
namespace cuda {

// Bytes of the partial-sum buffer for a call with CV channels in the pixel-major copies, or
// 0 when the call does not take this path (switched off, fewer than 4 taps per patch, no
// neighbours, or a buffer past its cap).
size_t backward_taps_bytes(const detail::SearchArgs& a, int cv);

// grad_vid0 from the fast path's pixel-major copies pm0/pm1 ([bh][t][y][x][cv]), inds and
// grad_dists (no lists), with `buffer` of backward_taps_bytes.
void backward_taps_vid0(const detail::SearchArgs& a, const BwdArgs<float>& ba, int cv, const float* pm0,
                        const float* pm1, float* buffer, cudaStream_t stream);
// grad_vid1 from the copies, the lists in ba and the query records pp1 (list order), with
// the same buffer once backward_taps_vid0's work is done.
void backward_taps_vid1(const detail::SearchArgs& a, const BwdArgs<float>& ba, int cv, const float* pm0,
                        const float* pm1, const int2* pp1, float* buffer, cudaStream_t stream);

// Tests and benchmarks turn the path off to run the one-thread-per-pixel gathers.
void set_backward_taps_enabled(bool on);
bool backward_taps_enabled();

}  // namespace cuda
}  // namespace stnls
