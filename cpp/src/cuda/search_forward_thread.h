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

// For the GoogleTests: the pixels a block's box may hold (px > 0; less than one window's
// rectangle makes the call take another layout), so that small calls reach the
// thread-by-thread rounds; 0 restores the size from the device's shared memory.
void set_forward_thread_box_px(int px);

}  // namespace cuda
}  // namespace stnls
