// SPEC.md rule 6 (best distance first, ties to the smaller canonical ordinal, a NaN
// distance after every number) as an unsigned integer compare, so that the CUDA top-k
// list orders candidates without branches: the distance maps to an order-preserving
// unsigned key (l2 ascending, prod descending, -0 folded into +0, every NaN to the
// largest key) and the ordinal breaks ties. For float the two fit one 64-bit word; for
// double the rank is a (key, ordinal) pair compared lexicographically.
//
// Host and device share it so the CPU-only test suite can check the order against
// geo::better on special values.
#pragma once
#include <cstdint>
#include <cstring>

#include "common/hd.h"

namespace stnls {
namespace rank {

// The bits of x as type To (same size); memcpy compiles to a register move on both sides.
template <class To, class From>
STNLS_HD To bit_cast(From x) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast: sizes differ");
  To y;
  memcpy(&y, &x, sizeof y);
  return y;
}

// Order key of a distance: a < b as keys iff the distance of a ranks before that of b.
// U is the same-width unsigned type of T.
template <bool L2, class T, class U>
STNLS_HD U dist_key(T d) {
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  U u = bit_cast<U>(d);
  const bool nan = d != d;
  u = u == sign ? U(0) : u;              // -0 ranks as +0
  u = (u & sign) ? U(~u) : U(u | sign);  // numeric ascending as unsigned ascending
  u = L2 ? u : U(~u);                    // prod: larger first
  return nan ? U(~U(0)) : u;             // NaN last (no number maps there)
}

// The distance back from its key (NaN for the NaN key; -0 comes back as +0).
template <bool L2, class T, class U>
STNLS_HD T key_dist(U k) {
  constexpr U sign = U(1) << (8 * sizeof(U) - 1);
  if (k == U(~U(0))) return bit_cast<T>(U(~U(0)));  // all ones: a quiet NaN
  U u = L2 ? k : U(~k);
  u = (u & sign) ? U(u & ~sign) : U(~u);
  return bit_cast<T>(u);
}

// The rank of a (distance, ordinal) candidate; ordinals are in [0, INT32_MAX].
template <bool L2, class T>
struct Rank;

template <bool L2>
struct Rank<L2, float> {
  uint64_t v;
  STNLS_HD static Rank make(float d, int32_t o) {
    return {(static_cast<uint64_t>(dist_key<L2, float, uint32_t>(d)) << 32) | static_cast<uint32_t>(o)};
  }
  STNLS_HD float dist() const { return key_dist<L2, float, uint32_t>(static_cast<uint32_t>(v >> 32)); }
  STNLS_HD int32_t ord() const { return static_cast<int32_t>(static_cast<uint32_t>(v)); }
  STNLS_HD bool operator<(const Rank& r) const { return v < r.v; }
};

template <bool L2>
struct Rank<L2, double> {
  uint64_t k;
  int32_t o;
  STNLS_HD static Rank make(double d, int32_t o) { return {dist_key<L2, double, uint64_t>(d), o}; }
  STNLS_HD double dist() const { return key_dist<L2, double, uint64_t>(k); }
  STNLS_HD int32_t ord() const { return o; }
  STNLS_HD bool operator<(const Rank& r) const { return (k < r.k) | ((k == r.k) & (o < r.o)); }
};

}  // namespace rank
}  // namespace stnls
