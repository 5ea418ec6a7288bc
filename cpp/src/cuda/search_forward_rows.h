// The row-split forward of the non-local search (search_forward_rows.cu): PS lanes per
// query, one patch row each, for patches too large for one thread's registers.
#pragma once
#include <cuda_runtime.h>

#include "common/search_args.h"

namespace stnls {
namespace cuda {

// Runs the forward when a compiled variant covers the call and returns true; returns
// false (nothing launched) otherwise.
bool search_forward_rows(const detail::SearchArgs& a, cudaStream_t stream);

// Whether search_forward takes this path where it can (default true). Process-wide, for
// the GoogleTests and the timing program, which run the same calls on every layout.
void set_forward_rows_enabled(bool on);

}  // namespace cuda
}  // namespace stnls
