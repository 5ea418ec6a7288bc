// The thread-per-query forward of the non-local search (search_forward_thread.cu), for
// small patches and windows.
#pragma once
#include <cuda_runtime.h>

#include "common/search_args.h"

namespace stnls {
namespace cuda {

// Runs the forward when a compiled variant covers the call and returns true; returns
// false (nothing launched) otherwise.
bool search_forward_thread(const detail::SearchArgs& a, cudaStream_t stream);

// Whether search_forward takes this path where it can (default true). Process-wide, for
// the GoogleTests and the timing program, which run the same calls on both layouts.
void set_forward_thread_enabled(bool on);

}  // namespace cuda
}  // namespace stnls
