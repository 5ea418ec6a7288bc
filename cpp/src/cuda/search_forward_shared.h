// The shared-sums forward of the non-local search (search_forward_shared.cu): a block of
// queries computes each pixel's channel sum once for all of them, for large patches on a
// dense query grid.
#pragma once
#include <cuda_runtime.h>

#include "common/search_args.h"

namespace stnls {
namespace cuda {

// Runs the forward when the layout covers the call and returns true; returns false
// (nothing launched) otherwise.
bool search_forward_shared(const detail::SearchArgs& a, cudaStream_t stream);

// Whether search_forward takes this path where it can (default true). Process-wide, for
// the GoogleTests and the timing program, which run the same calls on every layout.
void set_forward_shared_enabled(bool on);

}  // namespace cuda
}  // namespace stnls
