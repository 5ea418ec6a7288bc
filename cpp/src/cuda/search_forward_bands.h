// Internal: pixel-major rows of vid1 for the channel-group forward
// (search_forward_groups.cu), kept in a caller-provided ring and filled band by band.
//
// Why: the row-split and channel-group layouts stage each query's window rows in shared
// memory. From vid1's
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

#include <algorithm>

#include "common/search_args.h"
#include "cuda/search_forward_common.cuh"
#include "cuda/side_stream.h"

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

// Runs run(f, stream) once per band of plan.nr query rows (f's band fields set), each band
// after copying the rows that enter the ring. Two bands' rows fit in the ring together,
// so consecutive bands go to two streams: a band's copies and first blocks overlap the
// previous band's last blocks (S4: 4.27 ms on one stream, where each band's launch ends
// in a tail; 3.77 on two). A band waits for the previous band's copies (some of its rows
// came with them, and the copies before them waited alike); its own copies overwrite only
// rows below the previous band's, which the bands before that, done on its stream or
// before the previous band's copies on the other, have finished with.
template <class Run>
void run_in_bands(const detail::SearchArgs& a, const BandPlan& plan, float* ring, ThrArgs f, cudaStream_t stream,
                  Run&& run) {
  const SearchShape& sh = a.sh;
  f.pm = ring;
  f.pm_ring = plan.ring, f.pm_P = plan.P;
  const int nbands = static_cast<int>((sh.nH + plan.nr - 1) / plan.nr);
  if (nbands == 1) {
    fill_band_rows(a, plan, 0, f.H, stream, ring);
    f.pm_lo = 0, f.pm_hi = f.H;
    run(f, stream);
    return;
  }
  Fork fork(stream);
  Event copied;
  int prev_hi = 0;
  for (int band = 0; band < nbands; ++band) {
    const cudaStream_t s = band % 2 ? fork.side() : stream;
    const int hq0 = band * plan.nr, hq1 = std::min(f.nH, hq0 + plan.nr);
    const int lo = std::max(0, hq0 * f.str0 - plan.margin);
    const int hi = std::min(f.H, (hq1 - 1) * f.str0 + plan.margin + 1);
    if (band > 0) copied.wait(s);
    fill_band_rows(a, plan, std::max(prev_hi, lo), hi, s, ring);
    copied.record(s);
    prev_hi = hi;
    f.pm_lo = lo, f.pm_hi = hi;
    f.band_q0 = hq0, f.band_nr = hq1 - hq0;
    f.nq = sh.B * sh.HD * sh.T * (hq1 - hq0) * f.nW;
    run(f, s);
  }
  fork.join();
}

// set_forward_bands (the tests' knob) is declared in search_forward_groups.h.

}  // namespace cuda
}  // namespace stnls
