// Host helpers shared by the CPU backends.
#pragma once
#include <cstdint>
#include <vector>

#include "common/search_args.h"

namespace stnls {
namespace cpu {

// Zeroes a [T, H, W] plane with strides s (element offsets).
template <class T>
void zero_plane(T* v, int64_t nt, int64_t nh, int64_t nw, const detail::Strides6& s) {
  for (int64_t t = 0; t < nt; ++t)
    for (int64_t y = 0; y < nh; ++y)
      for (int64_t x = 0; x < nw; ++x) v[t * s.t + y * s.y + x * s.x] = T(0);
}

// A patch's taps (pk, dil*pi, dil*pj) as offsets from its first tap for strides s, in
// (pk, pi, pj) order. A patch whose first tap (t, y, x) passes inside() lies in the
// T x H x W video, so its tap i is at the first tap's offset + off[i], no bounds rule.
struct PatchTaps {
  std::vector<int64_t> off;
  int64_t pt, span, T, H, W;
  PatchTaps(int64_t pt_, int64_t ps, int64_t dil, int64_t T_, int64_t H_, int64_t W_, const detail::Strides6& s)
      : off(pt_ * ps * ps), pt(pt_), span(dil * (ps - 1)), T(T_), H(H_), W(W_) {
    for (int64_t i = 0; i < pt * ps * ps; ++i)
      off[i] = i / (ps * ps) * s.t + dil * ((i / ps) % ps) * s.y + dil * (i % ps) * s.x;
  }
  bool inside(int64_t t, int64_t y, int64_t x) const {
    return t + pt <= T && y >= 0 && y + span < H && x >= 0 && x + span < W;
  }
};

}  // namespace cpu
}  // namespace stnls
