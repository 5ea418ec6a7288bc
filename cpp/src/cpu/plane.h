// Host helpers shared by the CPU backends.
#pragma once
#include <cstdint>

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

}  // namespace cpu
}  // namespace stnls
