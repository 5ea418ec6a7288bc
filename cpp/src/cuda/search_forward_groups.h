// The channel-group forward of the non-local search (search_forward_groups.cu): 4 lanes
// per query, one group of 8 channels of the whole patch each, for 32 channels per head with
// ps = 3.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "common/search_args.h"

namespace stnls {
namespace cuda {

// Bytes of workspace the call can use (search_forward_bands.h; 0: none).
size_t search_forward_groups_workspace_size(const detail::SearchArgs& a);

// Runs the forward when the layout covers the call and returns true; returns false
// (nothing launched) otherwise. With a workspace (search_forward_groups_workspace_size
// bytes, or nullptr: none) it reads vid1's rows from the ring.
bool search_forward_groups(const detail::SearchArgs& a, void* workspace, size_t workspace_bytes, cudaStream_t stream);

// Whether search_forward takes this path where it can (default true). Process-wide, for
// the GoogleTests and the timing program.
void set_forward_groups_enabled(bool on);

// For the GoogleTests: a forced ring size and margin for the workspace's bands
// (search_forward_bands.h; ring_rows 0: the budget's plan), so that small videos run in
// many bands and read rows from outside the ring.
void set_forward_bands(int ring_rows, int margin);

}  // namespace cuda
}  // namespace stnls
