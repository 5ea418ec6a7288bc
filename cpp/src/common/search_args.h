// Internal: the search arguments after validation, in one normalised form that both
// backends read: videos as 6-d strided views [B, HD, T, C/HD, H, W], flows as
// [B, T, 2, H, W] (null = zero flow), outputs [B, HD, Q, K] and [B, HD, Q, K, 3].
#pragma once
#include <cstdint>

#include "stnls/search.h"

namespace stnls {
namespace detail {

struct Strides6 {
  int64_t b, h, t, c, y, x;
};
struct Strides5 {
  int64_t b, t, c, y, x;
};

struct SearchArgs {
  SearchParams p;
  SearchShape sh;
  DType dtype;
  Device device;
  const void* vid0;
  const void* vid1;
  Strides6 s0, s1;
  const void* fflow;  // may be null
  const void* bflow;  // may be null
  Strides5 sf, sb;
  // forward outputs / backward inputs
  void* dists;
  const void* grad_dists;
  int64_t sd[4];
  void* inds;
  int64_t si[5];
  // backward outputs
  void* grad0;
  void* grad1;
  Strides6 g0, g1;
};

// Validation shared by every backend (search_check.cpp). Throws on bad input.
// The inputs of the forward alone (enough to size its workspace).
SearchArgs check_search_forward_inputs(const SearchParams& p, const ConstView& vid0, const ConstView& vid1);
SearchArgs check_search_forward(const SearchParams& p, const ConstView& vid0, const ConstView& vid1,
                                const ConstView& fflow, const ConstView& bflow, const View& dists,
                                const View& inds);
// The inputs of the backward alone (enough to size its workspace).
SearchArgs check_search_backward_inputs(const SearchParams& p, const ConstView& inds,
                                        const ConstView& vid0, const ConstView& vid1);
SearchArgs check_search_backward(const SearchParams& p, const ConstView& grad_dists,
                                 const ConstView& inds, const ConstView& vid0, const ConstView& vid1,
                                 const View& grad_vid0, const View& grad_vid1);

}  // namespace detail
}  // namespace stnls
