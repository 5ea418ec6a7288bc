// Inverse neighbour lists for the deterministic CUDA adjoints (search backward, fold_k,
// wpsum backward): every (b, hd, q, k) entry of `inds` is listed under the location it
// names, lists in (b, hd, q, k) order, so a thread per pixel can sum its contributions in a
// fixed order without atomics. They live in the caller's workspace.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

namespace stnls {
namespace cuda {

inline size_t align256(size_t x) { return (x + 255) / 256 * 256; }

// The lists of one call: entries[start[l] .. start[l+1]) are the flat (b, hd, q, k) indices
// naming location l = ((b*HD + hd)*T + t)*H*W + y*W + x.
struct Lists {
  const int32_t* start = nullptr;    // [nloc + 1]
  const int32_t* entries = nullptr;  // [n]
};

// Where the lists and their sort scratch live in a workspace, from byte `base` on; `end` is
// the first byte after them.
struct ListLayout {
  int64_t n = 0, nloc = 0;
  int nbits = 1;
  size_t keys0 = 0, keys1 = 0, vals0 = 0, vals1 = 0, start = 0, cub = 0, cub_bytes = 0, end = 0;
};

// The indices [B, HD, Q, K, 3] (element strides si) and the video sizes they point into.
struct IndsView {
  const int32_t* inds;
  int64_t si[5];
  int64_t B, HD, Q, K, T, H, W;
};

// Throws BackendError with `too_big` when n or nloc reaches 2^31 (the lists use int32).
ListLayout list_layout(const IndsView& in, size_t base, const char* too_big);

// Builds the lists in `workspace` on `stream` (indices outside the video are in no list).
Lists build_lists(const IndsView& in, const ListLayout& L, char* workspace, cudaStream_t stream);

}  // namespace cuda
}  // namespace stnls
