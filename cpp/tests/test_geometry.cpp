// Unit tests of the shared geometry (SPEC.md rules 2-5), hand-computed values.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "common/geometry.h"
#include "common/rank_key.h"

using namespace stnls::geo;

TEST(Geometry, ReflectOnce) {
  EXPECT_EQ(reflect(-1, 5), 1);
  EXPECT_EQ(reflect(-4, 5), 4);
  EXPECT_EQ(reflect(5, 5), 3);
  EXPECT_EQ(reflect(8, 5), 0);
  EXPECT_EQ(reflect(9, 5), -1);   // still outside after one reflection
  EXPECT_EQ(reflect(-5, 5), -1);
  EXPECT_EQ(reflect(1, 1), -1);
  EXPECT_EQ(bound(-1, 5, false), -1);
  EXPECT_EQ(bound(4, 5, false), 4);
}

TEST(Geometry, FramesAndOrder) {
  Frames f = frames(0, 5, 2);  // clamped to the start
  EXPECT_EQ(f.st, 5);
  EXPECT_EQ(f.t_lo, 0);
  f = frames(3, 10, 1);
  EXPECT_EQ(f.st, 3);
  EXPECT_EQ(f.t_lo, 2);
  EXPECT_EQ(frame_at(0, 3, f), 3);
  EXPECT_EQ(frame_at(1, 3, f), 4);
  EXPECT_EQ(frame_at(2, 3, f), 2);
  f = frames(9, 10, 2);  // clamped to the end: 9, 8, 7, 6, 5
  EXPECT_EQ(f.t_lo, 5);
  EXPECT_EQ(frame_at(0, 9, f), 9);
  EXPECT_EQ(frame_at(1, 9, f), 8);
  EXPECT_EQ(frame_at(4, 9, f), 5);
  f = frames(1, 2, 3);  // fewer frames than 2*wt+1
  EXPECT_EQ(f.st, 2);
  EXPECT_EQ(frame_at(1, 1, f), 0);
}

TEST(Geometry, WindowBase) {
  // full_ws keeps the window inside the frame.
  EXPECT_EQ(window_base(0, 10, 1, 5, true), 0);
  EXPECT_EQ(window_base(9, 10, 1, 5, true), 5);
  EXPECT_EQ(window_base(5, 10, 1, 5, true), 3);
  EXPECT_EQ(window_base(0, 10, 1, 5, false), -2);
  // stride1 = 2: candidates c + 2*(a0 + a)
  EXPECT_EQ(window_base(1, 10, 2, 3, true), 1);   // a0 = clamp(-1, 0, 4-2) = 0
  EXPECT_EQ(window_base(9, 10, 2, 3, true), 5);   // a0 = clamp(-1, -4, 0-2) = -2
  // window longer than the frame: a0 = -(c // s)
  EXPECT_EQ(window_base(4, 6, 1, 9, true), 0);
  EXPECT_EQ(window_base(5, 6, 2, 9, true), 1);
  // whole frame
  EXPECT_EQ(window_base(7, 10, 3, -1, true), 0);
  EXPECT_EQ(window_slots(-1, 10, 3), 4);
  EXPECT_EQ(window_slots(7, 10, 3), 7);
}

TEST(Geometry, FlowStepRoundsAndClamps) {
  int64_t h = 2, w = 2;
  flow_step(h, w, 1.6f, -0.4f, 5, 5);
  EXPECT_EQ(h, 2);
  EXPECT_EQ(w, 4);
  flow_step(h, w, 0.5f, -2.5f, 5, 5);  // round(4.5) = 5 -> clamp 4; round(-0.5) = 0
  EXPECT_EQ(w, 4);
  EXPECT_EQ(h, 0);
  h = 1, w = 1;
  flow_step(h, w, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(), 5, 5);
  EXPECT_EQ(h, 1);
  EXPECT_EQ(w, 1);
}

// round(v) = floor(v + 0.5), checked against the exact value: long double holds v + 0.5
// exactly for every float and every double of magnitude >= 2^-11 (smaller ones round to 0).
template <class F>
void expect_round_half_up_exact(F v) {
  const long double x = static_cast<long double>(v);
  const long double want = std::fabs(x) < 0x1p-11L ? 0.0L : std::floor(x + 0.5L);
  EXPECT_EQ(static_cast<long double>(round_half_up(v)), want) << static_cast<double>(v);
}

TEST(Geometry, FlowRoundingIsExact) {
  // Values whose v + 0.5 rounds to an integer in the flow's own type (or in c + v + 0.5).
  for (float v : {0.49999997f, -0.50000006f, -0.5f, 0.5f, 2.5f, -2.5f, -0.49999997f, 1e-40f, -1e-40f, 8388607.5f,
                  -8388607.5f, 16777215.f, 3e9f, -3e9f})
    expect_round_half_up_exact(v);
  for (double v : {0.49999999999999994, -0.5000000000000001, -0.5, 0.5, 4503599627370495.5, -4503599627370495.5,
                   1e-300, -1e-300})
    expect_round_half_up_exact(v);
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uf(-64.f, 64.f);
  std::uniform_real_distribution<double> ud(-1e6, 1e6);
  for (int i = 0; i < 100000; ++i) {
    const float f = uf(rng);
    expect_round_half_up_exact(f);
    expect_round_half_up_exact(std::nextafter(std::floor(f) + 0.5f, f));  // just beside a half
    const double d = ud(rng);
    expect_round_half_up_exact(d);
    expect_round_half_up_exact(std::nextafter(std::floor(d) + 0.5, d));
  }
  // Finite flows of any size clamp to the frame; no integer overflow.
  for (float v : {1e30f, 2147483648.f, 2147483520.f, 1e10f}) EXPECT_EQ(flow_move_t<int>(2, v, 5), 4);
  for (float v : {-1e30f, -2147483648.f, -2147483520.f, -1e10f}) EXPECT_EQ(flow_move_t<int>(2, v, 5), 0);
  EXPECT_EQ(flow_move_t<int64_t>(2, 1e300, int64_t{5}), 4);
  EXPECT_EQ(flow_move_t<int64_t>(2, -1e300, int64_t{5}), 0);
  EXPECT_EQ(flow_move_t<int>(2147483600, 40.f, 2147483640), 2147483639);  // no int32 overflow
  EXPECT_EQ(flow_move_t<int>(5, -2147483520.f, 2147483640), 0);
  EXPECT_EQ(flow_move_t<int>(3, 1.5f, 10), 5);
  EXPECT_EQ(flow_move_t<int>(3, -3.5f, 10), 0);
  EXPECT_EQ(flow_move_t<int>(3, -3.4f, 10), 0);
  EXPECT_EQ(flow_move_t<int>(3, -2.5f, 10), 1);
}

TEST(Geometry, PatchOffsets) {
  EXPECT_EQ(patch_offset(0, 3, 1, false), -1);
  EXPECT_EQ(patch_offset(2, 3, 2, false), 2);
  EXPECT_EQ(patch_offset(0, 3, 1, true), -2);
  EXPECT_EQ(patch_offset(0, 4, 1, false), -2);
}

TEST(Geometry, BetterRanksNaNLast) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE((better<false, float>(2.f, 1.f)));
  EXPECT_TRUE((better<true, float>(1.f, 2.f)));
  EXPECT_FALSE((better<false, float>(nan, 1.f)));
  EXPECT_TRUE((better<false, float>(1.f, nan)));
  EXPECT_FALSE((better<false, float>(1.f, 1.f)));
}

// The CUDA top-k list's integer rank (common/rank_key.h) must order candidates exactly as
// rule 6 does: geo::better on the distance, ties (and equal NaN-ness) to the smaller
// ordinal. Checked on every pair of special and ordinary values, both orders, both types.
template <bool L2, class T>
static void check_rank_order() {
  const T inf = std::numeric_limits<T>::infinity(), nan = std::numeric_limits<T>::quiet_NaN();
  const T den = std::numeric_limits<T>::denorm_min(), big = std::numeric_limits<T>::max();
  const T vals[] = {T(0), -T(0), T(1), T(-1), T(2.5), T(-2.5), den, -den, big, -big, inf, -inf, nan, -nan,
                    T(1e-30), T(-1e-30), T(3.25), T(3.2500001)};
  for (T a : vals)
    for (T b : vals)
      for (int32_t oa : {0, 7, INT32_MAX - 1})
        for (int32_t ob : {0, 7, INT32_MAX}) {
          bool expect;
          if (better<L2>(a, b)) expect = true;
          else if (better<L2>(b, a)) expect = false;
          else expect = oa < ob;
          const auto ra = stnls::rank::Rank<L2, T>::make(a, oa), rb = stnls::rank::Rank<L2, T>::make(b, ob);
          ASSERT_EQ(ra < rb, expect) << a << "#" << oa << " vs " << b << "#" << ob << " l2=" << L2;
        }
  for (T a : vals) {
    const auto r = stnls::rank::Rank<L2, T>::make(a, 5);
    EXPECT_EQ(r.ord(), 5);
    if (std::isnan(a)) EXPECT_TRUE(std::isnan(r.dist()));
    else EXPECT_EQ(r.dist(), a);  // -0 comes back as +0, which compares equal
    if (!std::isnan(a)) EXPECT_FALSE(std::signbit(r.dist()) && a == T(0));
  }
}

TEST(Geometry, RankKeyMatchesRule6) {
  check_rank_order<true, float>();
  check_rank_order<false, float>();
  check_rank_order<true, double>();
  check_rank_order<false, double>();
}
