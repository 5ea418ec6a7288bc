// The deterministic search backward for small float32 calls (search_backward_fixed.cu):
// a scatter into 64-bit fixed-point sums in the caller's workspace.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "common/search_args.h"

namespace stnls {
namespace cuda {

// Workspace bytes of the fixed-point backward (both gradients' sums and their flags).
size_t search_backward_fixed_workspace_size(const detail::SearchArgs& a);
void search_backward_fixed(const detail::SearchArgs& a, void* workspace, size_t workspace_bytes, cudaStream_t stream);

// Tests and benchmarks turn the fixed-point path off to run the gather on small calls.
void set_backward_fixed_enabled(bool on);
bool backward_fixed_enabled();

}  // namespace cuda
}  // namespace stnls
