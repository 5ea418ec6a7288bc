// Internal: patch-tap addressing shared by the backends of the patch ops.
#pragma once
#include <cstdint>

#include "common/geometry.h"
#include "common/patch_args.h"

namespace stnls {
namespace detail {

// Query q's location (t, h, w) on the stride0 grid (search rule 1).
struct QueryLoc {
  int64_t t, h, w;
};
STNLS_HD QueryLoc query_loc(const PatchArgs& a, int64_t q) {
  return {q / (a.nH * a.nW), ((q / a.nW) % a.nH) * a.stride0, (q % a.nW) * a.stride0};
}

// Element offset of tap (pk, pi, pj) of the patch at (t, h, w) in a [T, H, W] plane with
// strides s (channel and batch excluded), or -1 when the tap reads 0.
STNLS_HD int64_t tap_offset(const PatchArgs& a, int64_t t, int64_t h, int64_t w, int64_t pk, int64_t pi,
                            int64_t pj, const Strides6& s) {
  const int64_t o = a.ps / 2;
  return geo::pixel_offset(t + pk, h + a.dilation * (pi - o), w + a.dilation * (pj - o), a.T, a.H, a.W,
                           a.reflect_bounds, s.t, s.y, s.x);
}

// Is the index triple a real location of the video (not -1 padding or garbage)?
STNLS_HD bool valid_ind(const PatchArgs& a, int64_t t, int64_t h, int64_t w) {
  return t >= 0 && t < a.T && h >= 0 && h < a.H && w >= 0 && w < a.W;
}

// fold(ones) along each axis (SPEC "Patches"): how many query-grid patch taps read frame
// t, row y, column x. The coverage count at pixel (t, y, x) is their product.
STNLS_HD int64_t coverage_t(const PatchArgs& a, int64_t t) {
  return geo::coverage(t, a.T, 1, a.T, a.pt, 1, 0, a.reflect_bounds);
}
STNLS_HD int64_t coverage_y(const PatchArgs& a, int64_t y) {
  return geo::coverage(y, a.H, a.stride0, a.nH, a.ps, a.dilation, a.ps / 2, a.reflect_bounds);
}
STNLS_HD int64_t coverage_x(const PatchArgs& a, int64_t x) {
  return geo::coverage(x, a.W, a.stride0, a.nW, a.ps, a.dilation, a.ps / 2, a.reflect_bounds);
}

// Offset of patch element [b, hd, q, k, pk, c, pi, pj].
STNLS_HD int64_t patch_elem(const PatchArgs& a, int64_t b, int64_t hd, int64_t q, int64_t k, int64_t pk,
                            int64_t c, int64_t pi, int64_t pj) {
  return b * a.sp[0] + hd * a.sp[1] + q * a.sp[2] + k * a.sp[3] + pk * a.sp[4] + c * a.sp[5] +
         pi * a.sp[6] + pj * a.sp[7];
}

}  // namespace detail
}  // namespace stnls
