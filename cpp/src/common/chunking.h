// Internal: how the deterministic CUDA backwards (search, wpsum) split a large call. Their
// workspace grows with the (query, neighbour) pairs (the inverse lists) and the pixels, so a
// large call runs over chunks of (batch, head) slices, which are independent (a slice's
// gradients read only that slice's indices), reusing one workspace:
//  - the whole call at once when its workspace is at most max(64 MiB, G) + E, G = the size
//    of the gradients the call writes, E = bytes a path may add on top, capped on its own
//    (the search backward's tap-split buffer, whose speed comes from one launch over the
//    whole call): small calls keep a single launch of each kernel;
//  - else one batch entry and as many heads per chunk as keep the workspace at most
//    max(16 MiB, G), at least one head.
// A call whose lists would not fit int32 positions is chunked too, so only a single slice
// that large is refused (by the layout function, which throws). Results do not depend on
// the chunking. Host-only, so the rule is tested without a GPU (test_chunking.cpp).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace stnls {
namespace detail {

struct Chunking {
  int64_t heads;  // heads per chunk; == HD with whole
  bool whole;     // one chunk: the call as it is
  size_t bytes;   // workspace: the largest chunk's
};

// B x HD slices of `pairs` (query, neighbour) pairs and `pixels` pixels each; `grads` bytes
// of gradients in all. whole_bytes() is the whole call's workspace, chunk_bytes(h) that of
// one batch entry and h heads; whole_extra is E above.
template <class WholeBytes, class ChunkBytes>
Chunking choose_chunking(int64_t B, int64_t HD, int64_t pairs, int64_t pixels, size_t grads, WholeBytes whole_bytes,
                         ChunkBytes chunk_bytes, size_t whole_extra = 0) {
  constexpr int64_t kMax = INT32_MAX;
  const bool one_slice = B == 1 && HD == 1;
  if (one_slice || (B * HD * pairs < kMax && B * HD * pixels < kMax)) {
    const size_t all = whole_bytes();
    if (all <= std::max<size_t>(size_t(64) << 20, grads) + whole_extra || one_slice) return {HD, true, all};
  }
  const size_t budget = std::max<size_t>(size_t(16) << 20, grads);
  int64_t h = HD;
  size_t bytes = 0;
  for (; h >= 1; --h) {
    if (h > 1 && (h * pairs >= kMax || h * pixels >= kMax)) continue;
    bytes = chunk_bytes(h);
    if (bytes <= budget || h == 1) break;
  }
  return {h, false, bytes};
}

// Calls run(b, h0, nh) for every chunk of a call that `ch` splits (batch entry b, heads
// h0 .. h0 + nh - 1), in order.
template <class Run>
void for_each_chunk(int64_t B, int64_t HD, const Chunking& ch, Run run) {
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h0 = 0; h0 < HD; h0 += ch.heads) run(b, h0, std::min(ch.heads, HD - h0));
}

}  // namespace detail
}  // namespace stnls
