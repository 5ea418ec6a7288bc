// Small hand-checked cases of the CPU search (values worked out by hand from SPEC.md).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>

#include "search_fixture.h"

using stnls::DistType;
using stnls::SearchParams;

namespace {
std::vector<float> ramp(size_t n) {
  std::vector<float> v(n);
  std::iota(v.begin(), v.end(), 0.f);
  return v;
}
std::vector<int32_t> ind(const SearchRun& r, int64_t q, int64_t k) {
  const int32_t* e = &r.inds[(q * r.sh.K + k) * 3];
  return {e[0], e[1], e[2]};
}
}  // namespace

TEST(SearchCpu, ProdTopThreeOnRamp) {
  // One 3x3 frame holding 0..8; query (0,1,1) has value 4, so prod = 4*v.
  auto vid = ramp(9);
  SearchParams p;
  p.ws = 3, p.wt = 0, p.ps = 1, p.k = 3, p.stride0 = 1;
  SearchRun r = run_search(p, vid, 1, 1, 1, 3, 3);
  EXPECT_EQ(r.sh.Q, 9);
  EXPECT_FLOAT_EQ(r.dists[4 * 3 + 0], 32.f);
  EXPECT_FLOAT_EQ(r.dists[4 * 3 + 1], 28.f);
  EXPECT_FLOAT_EQ(r.dists[4 * 3 + 2], 24.f);
  EXPECT_EQ(ind(r, 4, 0), (std::vector<int32_t>{0, 2, 2}));
  EXPECT_EQ(ind(r, 4, 2), (std::vector<int32_t>{0, 2, 0}));
  // Query (0,0,0) has value 0: every candidate ties, canonical order wins.
  EXPECT_EQ(ind(r, 0, 0), (std::vector<int32_t>{0, 0, 0}));
  EXPECT_EQ(ind(r, 0, 1), (std::vector<int32_t>{0, 0, 1}));
  EXPECT_EQ(ind(r, 0, 2), (std::vector<int32_t>{0, 0, 2}));
}

TEST(SearchCpu, L2TieGoesToEarlierCandidate) {
  auto vid = ramp(9);
  SearchParams p;
  p.ws = 3, p.wt = 0, p.ps = 1, p.k = 3, p.stride0 = 1, p.dist_type = DistType::L2;
  SearchRun r = run_search(p, vid, 1, 1, 1, 3, 3);
  EXPECT_EQ(ind(r, 4, 0), (std::vector<int32_t>{0, 1, 1}));
  EXPECT_EQ(ind(r, 4, 1), (std::vector<int32_t>{0, 1, 0}));  // value 3, before 5
  EXPECT_EQ(ind(r, 4, 2), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_FLOAT_EQ(r.dists[4 * 3 + 1], 1.f);
}

TEST(SearchCpu, ReflectedPatchBorder) {
  // 1x3 frame [1, 2, 3], ps = 3, window of one slot: the distance is the patch norm.
  // Columns -1,0,1 read 2,1,2 (reflected); rows -1 and 1 reflect to -1: outside, 0.
  std::vector<float> vid = {1, 2, 3};
  SearchParams p;
  p.ws = 1, p.wt = 0, p.ps = 3, p.k = 1, p.stride0 = 1;
  SearchRun r = run_search(p, vid, 1, 1, 1, 1, 3);
  EXPECT_FLOAT_EQ(r.dists[0], 9.f);
  p.reflect_bounds = false;  // column -1 reads 0
  r = run_search(p, vid, 1, 1, 1, 1, 3);
  EXPECT_FLOAT_EQ(r.dists[0], 5.f);
}

TEST(SearchCpu, FlowMovesTheWindow) {
  // Two 5x5 frames, one-slot windows: the second frame's candidate is where the flow points.
  auto vid = ramp(2 * 25);
  std::vector<float> fflow(2 * 2 * 25, 0.f), bflow(2 * 2 * 25, 0.f);
  const int q = 2 * 5 + 2;           // pixel (2, 2) of frame 0
  fflow[0 * 25 + q] = 1.6f;          // x -> round(3.6) = 4
  fflow[1 * 25 + q] = -0.4f;         // y -> round(1.6) = 2
  bflow[(1 * 2 + 0) * 25 + q] = -9;  // frame 1 -> 0: x clamps to 0
  SearchParams p;
  p.ws = 1, p.wt = 1, p.ps = 1, p.k = 2, p.stride0 = 1;
  SearchRun r = run_search(p, vid, 1, 2, 1, 5, 5, &fflow, &bflow);
  // query (0,2,2): candidates (0,2,2) and (1,2,4) = 25+14 = 39 beats 12.
  EXPECT_EQ(ind(r, q, 0), (std::vector<int32_t>{1, 2, 4}));
  EXPECT_EQ(ind(r, q, 1), (std::vector<int32_t>{0, 2, 2}));
  EXPECT_FLOAT_EQ(r.dists[q * 2 + 0], 12.f * 39.f);
  // query (1,2,2): frames 1 then 0 through bflow -> (0,2,0).
  EXPECT_EQ(ind(r, 25 + q, 1), (std::vector<int32_t>{0, 2, 0}));
}

TEST(SearchCpu, AnchorRemoveAndPadding) {
  auto vid = ramp(9);
  SearchParams p;
  p.ws = 3, p.wt = 0, p.ps = 1, p.k = 9, p.stride0 = 1, p.remove_self = true;
  SearchRun r = run_search(p, vid, 1, 1, 1, 3, 3);
  // 8 others, then one padded slot.
  EXPECT_EQ(ind(r, 8, 0), (std::vector<int32_t>{0, 2, 1}));
  EXPECT_EQ(ind(r, 8, 8), (std::vector<int32_t>{-1, -1, -1}));
  EXPECT_TRUE(std::isinf(r.dists[8 * 9 + 8]) && r.dists[8 * 9 + 8] < 0);
  p.remove_self = false, p.anchor_self = true, p.k = 2;
  r = run_search(p, vid, 1, 1, 1, 3, 3);
  EXPECT_EQ(ind(r, 0, 0), (std::vector<int32_t>{0, 0, 0}));  // itself first
  EXPECT_EQ(ind(r, 0, 1), (std::vector<int32_t>{0, 0, 1}));  // first of the tied others
}

TEST(SearchCpu, BackwardProdHandChecked) {
  // d = v0[q] * v1[c] for ps = 1: d/dv0[q] = v1[c], d/dv1[c] = v0[q].
  using namespace stnls;
  std::vector<float> vid = {1, 2, 3, 4};
  SearchParams p;
  p.ws = 2, p.wt = 0, p.ps = 1, p.k = 1, p.stride0 = 1;
  SearchRun r = run_search(p, vid, 1, 1, 1, 2, 2);
  for (int q = 0; q < 4; ++q) EXPECT_EQ(ind(r, q, 0), (std::vector<int32_t>{0, 1, 1}));
  std::vector<float> gd = {1, 1, 1, 2}, g0(4), g1(4);
  ConstView v = make_view<const void>(vid.data(), DType::Float32, {1, 1, 1, 2, 2});
  search_backward(p, make_view<const void>(gd.data(), DType::Float32, {1, 1, 4, 1}),
                  make_view<const void>(r.inds.data(), DType::Int32, {1, 1, 4, 1, 3}), v, v,
                  make_view<void>(g0.data(), DType::Float32, {1, 1, 1, 2, 2}),
                  make_view<void>(g1.data(), DType::Float32, {1, 1, 1, 2, 2}));
  EXPECT_EQ(g0, (std::vector<float>{4, 4, 4, 8}));
  EXPECT_EQ(g1, (std::vector<float>{0, 0, 0, 1 + 2 + 3 + 2 * 4}));
}
