// The arguments of the CUDA search backward kernels (deterministic gathers in
// search_backward.cu, atomic scatter in search_backward_atomic.cu), filled once from the
// checked SearchArgs.
#pragma once
#include <cstdint>

#include "common/geometry.h"
#include "common/search_args.h"

namespace stnls {
namespace cuda {

template <class T>
struct BwdArgs {
  const T* vid0;
  const T* vid1;
  const T* gd;
  const int32_t* inds;
  T* g0;
  T* g1;
  detail::Strides6 s0, s1, w0, w1;  // reads (s) and gradient writes (w)
  int64_t sd[4], si[5];
  int B, HD, nT, C, H, W, nH, nW, Q, K;
  int ps, pt, dil, str0;
  bool reflect;
  int offH0, offW0, offH1, offW1, o0;
  int cgroups;  // channel groups of CG channels
  // inverse lists (grad_vid1)
  const int32_t* list_start;  // [B*HD*T*H*W + 1]
  const int32_t* list_qk;     // (q, k) flat indices (b, hd, q, k) sorted by location
};

// Everything but the lists and channel groups (set by the gathers).
template <class T>
BwdArgs<T> backward_args(const detail::SearchArgs& a) {
  const SearchParams& p = a.p;
  const SearchShape& sh = a.sh;
  BwdArgs<T> ba{};
  ba.vid0 = static_cast<const T*>(a.vid0);
  ba.vid1 = static_cast<const T*>(a.vid1);
  ba.gd = static_cast<const T*>(a.grad_dists);
  ba.inds = static_cast<const int32_t*>(a.inds);
  ba.g0 = static_cast<T*>(a.grad0);
  ba.g1 = static_cast<T*>(a.grad1);
  ba.s0 = a.s0, ba.s1 = a.s1, ba.w0 = a.g0, ba.w1 = a.g1;
  for (int i = 0; i < 4; ++i) ba.sd[i] = a.sd[i];
  for (int i = 0; i < 5; ++i) ba.si[i] = a.si[i];
  ba.B = static_cast<int>(sh.B), ba.HD = static_cast<int>(sh.HD), ba.nT = static_cast<int>(sh.T);
  ba.C = static_cast<int>(sh.C), ba.H = static_cast<int>(sh.H), ba.W = static_cast<int>(sh.W);
  ba.nH = static_cast<int>(sh.nH), ba.nW = static_cast<int>(sh.nW), ba.Q = static_cast<int>(sh.Q);
  ba.K = static_cast<int>(sh.K);
  ba.ps = p.ps, ba.pt = p.pt, ba.dil = p.dilation, ba.str0 = p.stride0;
  ba.reflect = p.reflect_bounds;
  ba.offH0 = p.off_H0, ba.offW0 = p.off_W0, ba.offH1 = p.off_H1, ba.offW1 = p.off_W1;
  ba.o0 = static_cast<int>(geo::patch_offset(0, p.ps, p.dilation, p.use_adj));
  return ba;
}

}  // namespace cuda
}  // namespace stnls
