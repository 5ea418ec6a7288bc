// Internal: pixel-major rows of vid1 for the row-split forward (search_forward_rows.cu),
// kept in a caller-provided ring and filled band by band.
//
// Why: the row-split layout stages each query's window rows in shared memory. From vid1's
// channel-major rows that takes one 4-byte copy per channel and pixel (S4: about 1780 of
// 5640 warp instructions per query); from pixel-major rows a pixel is CV / 4 16-byte
// copies, and the distance loop reads 4 channels per shared load. A whole pixel-major copy
// of vid1 would exceed the forward's memory budget (S4: 210 MB against outputs of 66 MB),
// so the rows live in a ring of `ring` rows per frame (row y at y % ring) within 7/16 of
// the outputs' size, and the queries run in bands of query rows whose windows, with a
// margin for the flows, fit in the ring. A staged row outside the ring's rows is copied
// from vid1 as before: the result never depends on the plan.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/search_args.h"

namespace stnls {
namespace cuda {

constexpr int kBandCV = 32;  // channels per head of the calls with a plan (the fill kernel's)

struct BandPlan {
  int ring = 0;        // rows per frame in the ring (0: no plan)
  int P = 0;           // columns of padding on each side of a row
  int margin = 0;      // rows beyond a band's query rows that it keeps present
  int nr = 0;          // query rows per band
  int64_t row_bytes = 0;  // one row of every frame, all (batch, head) slices
  size_t bytes() const { return static_cast<size_t>(ring) * static_cast<size_t>(row_bytes); }
};

// The plan for a float32 call with kBandCV channels per head, or ring 0 when the budget
// holds too few rows for bands worth running.
BandPlan band_plan(const detail::SearchArgs& a);

// Throws ValueError unless `workspace` holds plan.bytes() bytes, 16-byte aligned.
void check_workspace(const BandPlan& plan, const void* workspace, size_t workspace_bytes);

// Copies rows [r0, r1) of every frame of vid1 into the ring (no-op when r1 <= r0).
void fill_band_rows(const detail::SearchArgs& a, const BandPlan& plan, int r0, int r1, cudaStream_t stream, float* ring);

// For the GoogleTests: a forced ring size and margin (ring_rows 0: the budget's plan), so
// that small videos run in many bands and read rows from outside the ring.
void set_forward_bands(int ring_rows, int margin);

}  // namespace cuda
}  // namespace stnls
