// Small hand-checked cases of the CPU search (values worked out by hand from SPEC.md).
#include <gtest/gtest.h>

#include <cmath>
#include <numeric>
#include <random>

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

// The distances follow the documented rounding exactly (README: one fused multiply-add per
// term, in a fixed order starting from 0: with fewer than 16 channels per head one chain
// over time, row, column, channel; from 16 on, each pixel's channels in a chain of their
// own, then one chain over the pixel sums), which is what keeps the CPU and CUDA backends
// bitwise equal. The expected value of every returned (query, neighbour) is recomputed
// here from SPEC.md rule 5 with std::fma, and must match to the bit; reflected borders,
// pt = 2, two heads and both metrics included, with 3 and with 16 channels per head.
static void check_documented_order(int64_t C) {
  const int64_t B = 1, T = 3, H = 7, W = 9, HD = 2, Ch = C / HD;
  const bool pixel_sums = Ch >= 16;
  std::mt19937 rng(11);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> vid(B * T * C * H * W);
  for (float& x : vid) x = nd(rng);
  auto reflect = [](int64_t x, int64_t L) {  // SPEC.md: one reflection, else outside (-1)
    if (x < 0) x = -x;
    else if (x >= L) x = 2 * (L - 1) - x;
    return (x >= 0 && x < L) ? x : int64_t{-1};
  };
  auto at = [&](int64_t hd, int64_t t, int64_t c, int64_t y, int64_t x) {
    t = reflect(t, T), y = reflect(y, H), x = reflect(x, W);
    if (t < 0 || y < 0 || x < 0) return 0.f;
    return vid[(((t * C) + hd * Ch + c) * H + y) * W + x];
  };
  for (DistType dt : {DistType::Prod, DistType::L2}) {
    SearchParams p;
    p.ws = 5, p.wt = 1, p.ps = 3, p.pt = 2, p.k = 0, p.nheads = static_cast<int>(HD), p.stride0 = 2;
    p.dist_type = dt;
    SearchRun r = run_search(p, vid, B, T, C, H, W);
    int64_t checked = 0;
    for (int64_t hd = 0; hd < HD; ++hd)
      for (int64_t q = 0; q < r.sh.Q; ++q) {
        const int64_t t = q / (r.sh.nH * r.sh.nW);
        const int64_t h = (q / r.sh.nW) % r.sh.nH * p.stride0, w = q % r.sh.nW * p.stride0;
        for (int64_t k = 0; k < r.sh.K; ++k) {
          const int64_t e = (hd * r.sh.Q + q) * r.sh.K + k;
          const int32_t* id = &r.inds[e * 3];
          if (id[0] < 0) continue;  // padding
          float d = 0.f;
          for (int64_t pk = 0; pk < p.pt; ++pk)
            for (int64_t pi = 0; pi < p.ps; ++pi)
              for (int64_t pj = 0; pj < p.ps; ++pj) {
                float s = pixel_sums ? 0.f : d;  // the chain this pixel's channels extend
                for (int64_t c = 0; c < Ch; ++c) {
                  const float a = at(hd, t + pk, c, h + pi - 1, w + pj - 1);
                  const float b = at(hd, id[0] + pk, c, id[1] + pi - 1, id[2] + pj - 1);
                  if (dt == DistType::Prod) {
                    s = std::fma(a, b, s);
                  } else {
                    const float diff = a - b;
                    s = std::fma(diff, diff, s);
                  }
                }
                d = pixel_sums ? d + s : s;
              }
          ASSERT_EQ(r.dists[e], d) << "C/HD " << Ch << " head " << hd << " query " << q << " neighbour " << k;
          ++checked;
        }
      }
    EXPECT_GT(checked, 1000);
  }
}

TEST(SearchCpu, DistancesRoundInTheDocumentedOrder) {
  check_documented_order(6);   // 3 channels per head: one chain
  check_documented_order(32);  // 16 per head: pixel sums first
}
