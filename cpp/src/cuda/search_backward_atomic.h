// The search backward for SearchParams::deterministic = false (search_backward_atomic.cu):
// atomic scatter into the zeroed gradients, no workspace.
#pragma once
#include <cuda_runtime.h>

#include "common/search_args.h"

namespace stnls {
namespace cuda {

void search_backward_atomic(const detail::SearchArgs& a, cudaStream_t stream);

}  // namespace cuda
}  // namespace stnls
