// Non-local search (SPEC.md, "Non-local search", integer mode): for each query patch of
// vid0, the k best patches of vid1 in a space-time window whose centre follows the flow.
//
// Shapes (any strides; views of one device; videos float32 or float64, the same for all):
//   vid0, vid1   [B, T, C, H, W]  (heads split the channels: C % nheads == 0)
//             or [B, HD, T, C/HD, H, W]  (6-d: per-head layout, nheads must equal HD)
//   fflow, bflow [B, T, 2, H, W]  same float dtype; empty view (data == nullptr) = zero flow
//   dists        [B, HD, Q, K]    video dtype;  Q = T*nH*nW, nH = (H-1)/stride0 + 1
//   inds         [B, HD, Q, K, 3] int32 (t, h, w), -1 where padded
#pragma once
#include <cstddef>
#include <cstdint>

#include "stnls/view.h"

namespace stnls {

enum class DistType : int { Prod = 0, L2 = 1 };

// Every parameter of SPEC.md with its default. Offsets off_* shift the rows/columns read
// for the query (0) and candidate (1) patches; use_adj starts patch offsets at -2*(ps/2).
struct SearchParams {
  int ws = -1;      // spatial window side; -1 = whole frame
  int wt = 0;       // frames each way
  int ps = 1;       // patch side
  int k = -1;       // neighbours; <= 0 = all window slots
  int nheads = 1;
  DistType dist_type = DistType::Prod;
  int stride0 = 4;  // query grid
  int stride1 = 1;  // candidate grid
  int dilation = 1;
  int pt = 1;       // patch length in time
  bool reflect_bounds = true;
  bool full_ws = true;
  bool anchor_self = false;
  bool remove_self = false;
  bool use_adj = false;
  int off_H0 = 0, off_W0 = 0, off_H1 = 0, off_W1 = 0;
  // Backward only. true: gradients summed in a fixed order, bitwise repeatable. false
  // (CUDA): a small call (up to 40M query x neighbour x tap x channel terms) scatters with
  // float atomics instead, needs no workspace, and varies in the last bits between runs;
  // larger calls and the CPU are deterministic either way.
  bool deterministic = true;
};

// Sizes derived from the parameters and the video shape.
struct SearchShape {
  int64_t B = 0, HD = 0, T = 0, C = 0 /* per head */, H = 0, W = 0;
  int64_t nH = 0, nW = 0, Q = 0;  // query grid
  int64_t st = 0;                 // frames searched per query
  int64_t wh = 0, ww = 0;         // window slots along H and W
  int64_t K = 0;                  // neighbours returned
  int64_t slots() const { return st * wh * ww; }
};

// Checks the parameters against the video shape (no data needed) and returns the sizes;
// throws ValueError naming the argument on a bad value.
SearchShape search_shape(const SearchParams& p, const ConstView& vid0, const ConstView& vid1);

// Bytes of scratch memory search_forward can use on the data's device (0 when none). On
// CUDA: pixel-major copies of vid1's rows for the float32 calls with 32 channels per head
// and ps = 3 (a ring of rows, filled band by band), at most 7/16 of the size of the
// outputs (dists + inds). The forward runs without it too, slower on those calls.
size_t search_forward_workspace_size(const SearchParams& p, const ConstView& vid0, const ConstView& vid1);

// dists/inds are written completely. `stream` is a cudaStream_t for CUDA data (nullptr =
// the default stream) and is ignored on the CPU. `workspace` holds
// search_forward_workspace_size(...) bytes on the data's device, 16-byte aligned (or is
// nullptr: the forward then takes no workspace).
void search_forward(const SearchParams& p, const ConstView& vid0, const ConstView& vid1,
                    const ConstView& fflow, const ConstView& bflow, const View& dists,
                    const View& inds, void* workspace, size_t workspace_bytes, void* stream = nullptr);
// The same without a workspace.
void search_forward(const SearchParams& p, const ConstView& vid0, const ConstView& vid1,
                    const ConstView& fflow, const ConstView& bflow, const View& dists,
                    const View& inds, void* stream = nullptr);

// Bytes of scratch memory search_backward needs on the data's device (0 when none). On
// CUDA: the inverse neighbour lists, about 16 bytes per (query, neighbour) pair plus two
// pixel-major copies of the videos. A call needing more than max(64 MiB, G) (G: the size
// of grad_vid0 + grad_vid1) runs in chunks of (batch, head) slices that each need at
// most max(16 MiB, G) (at least one slice), and asks for one chunk's worth. A small
// deterministic float32 call (up to 40M query-neighbour-tap-channel terms) takes the
// fixed-point scatter instead when its 17 bytes per element of grad_vid0 and grad_vid1
// stay within 64 MiB; deterministic = false on such a call needs none.
size_t search_backward_workspace_size(const SearchParams& p, const ConstView& vid0,
                                      const ConstView& vid1, const ConstView& inds);

// Gradients of sum(grad_dists * dists) w.r.t. vid0 and vid1, given the forward's inds.
// grad_vid0/grad_vid1 have the shapes of vid0/vid1 and are overwritten (not accumulated).
// Index triples outside the video (or -1) contribute nothing. `workspace` holds
// search_backward_workspace_size(...) bytes on the data's device, 16-byte aligned.
void search_backward(const SearchParams& p, const ConstView& grad_dists, const ConstView& inds,
                     const ConstView& vid0, const ConstView& vid1, const View& grad_vid0,
                     const View& grad_vid1, void* workspace = nullptr, size_t workspace_bytes = 0,
                     void* stream = nullptr);

// True when this build of the library contains the CUDA backend.
bool cuda_available();

}  // namespace stnls
