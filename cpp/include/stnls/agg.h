// Aggregation (SPEC.md, "Aggregation"): the weighted patch sum of a search's neighbours.
// Per head, out = fold(P) / fold(ones) with P_q = sum_k weights[q,k] * unfold_k(vid, inds)[q,k];
// pixels no query patch covers are 0. Fused: the (Q, K, patch) stack is never stored.
//
// Shapes (any strides; float32 or float64; one device):
//   vid, out      [B, T, C, H, W] (HD = inds.shape[1] heads split C) or [B, HD, T, C/HD, H, W]
//   weights       [B, HD, Q, K]
//   inds          [B, HD, Q, K, 3] int32 (t, h, w); -1 (or outside the video) adds nothing
//   Q = T * nH * nW, nH = (H-1)/stride0 + 1 (search rule 1).
#pragma once
#include <cstddef>

#include "stnls/view.h"

namespace stnls {

struct AggParams {
  int ps = 1;
  int stride0 = 1;
  int pt = 1;
  int dilation = 1;
  bool reflect_bounds = true;
  // Backward on CUDA: sum in a fixed order (bitwise repeatable) instead of with atomics.
  bool deterministic = true;
};

// out is overwritten.
void wpsum_forward(const AggParams& p, const ConstView& vid, const ConstView& weights,
                   const ConstView& inds, const View& out, void* stream = nullptr);

// Bytes of scratch wpsum_backward needs on the data's device (0 when none). CUDA,
// deterministic: the inverse lists of inds (about 16 bytes per (query, neighbour) pair) and,
// for float videos with at most 32 channels per head, pixel-major copies of grad_out and
// vid; a call whose scratch would exceed max(64 MiB, the gradients' size) runs over chunks
// of (batch, head) slices and needs only the largest chunk's (results do not change).
size_t wpsum_backward_workspace_size(const AggParams& p, const ConstView& vid, const ConstView& weights,
                                     const ConstView& inds);

// Gradients of sum(grad_out * out) w.r.t. vid and weights (both overwritten).
void wpsum_backward(const AggParams& p, const ConstView& grad_out, const ConstView& vid,
                    const ConstView& weights, const ConstView& inds, const View& grad_vid,
                    const View& grad_weights, void* workspace = nullptr, size_t workspace_bytes = 0,
                    void* stream = nullptr);

}  // namespace stnls
