// Internal: the arguments of the patch ops (tile.h, agg.h) after validation, in the
// normalised form both backends read. Videos are 6-d strided [B, HD, T, C/HD, H, W]
// (a 5-d video is one head for unfold/fold, `nheads` heads for the others).
#pragma once
#include <cstdint>

#include "common/search_args.h"
#include "stnls/view.h"

namespace stnls {
namespace detail {

struct PatchArgs {
  // parameters
  int64_t ps = 1, stride0 = 1, pt = 1, dilation = 1;
  bool reflect_bounds = true, deterministic = true;
  // sizes
  int64_t B = 0, HD = 0, T = 0, C = 0 /* per head */, H = 0, W = 0, nH = 0, nW = 0, Q = 0, K = 0;
  DType dtype = DType::Float32;
  Device device{};
  // video-shaped tensors: [B, HD, T, C, H, W]
  const void* vid = nullptr;  // input video (unfold, unfold_k, wpsum)
  Strides6 sv{};
  void* out = nullptr;        // output video (fold, fold_k, wpsum) or grad_vid
  Strides6 so{};
  const void* grad_out = nullptr;  // wpsum backward
  Strides6 sg{};
  // patches: [B, HD, Q, K, pt, C, ps, ps] (K = 1 for unfold/fold)
  const void* patches_in = nullptr;
  void* patches_out = nullptr;
  int64_t sp[8] = {};
  // search outputs: [B, HD, Q, K] and [B, HD, Q, K, 3]
  const void* weights = nullptr;
  int64_t sw[4] = {};
  void* grad_weights = nullptr;
  int64_t sgw[4] = {};
  const int32_t* inds = nullptr;
  int64_t si[5] = {};

  int64_t o() const { return ps / 2; }  // tap index of the patch centre
};

}  // namespace detail
}  // namespace stnls
