// The row-split forward of the non-local search (search_forward_rows.cu): PS lanes per
// query, one patch row each, for patches too large for one thread's registers.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "common/search_args.h"

namespace stnls {
namespace cuda {

// Bytes of workspace the call can use (search_forward_bands.h; 0: none).
size_t search_forward_rows_workspace_size(const detail::SearchArgs& a);

// Runs the forward when a compiled variant covers the call and returns true; returns
// false (nothing launched) otherwise. With a workspace (search_forward_rows_workspace_size
// bytes, or nullptr: none) the 32-channel, ps 3 calls read vid1's rows pixel-major.
bool search_forward_rows(const detail::SearchArgs& a, void* workspace, size_t workspace_bytes, cudaStream_t stream);

// Whether search_forward takes this path where it can (default true). Process-wide, for
// the GoogleTests and the timing program, which run the same calls on every layout.
void set_forward_rows_enabled(bool on);

}  // namespace cuda
}  // namespace stnls
