// The CPU backend's results must not depend on the number of OpenMP threads: the plane
// kernels group channels by the thread count, but every output element keeps one writer
// and one sum order. Each op runs with 1 and with 3 threads on the same random inputs and
// must agree bit for bit (search backward, wpsum forward and backward, fold_k).
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <random>
#include <vector>

#include "search_fixture.h"
#include "stnls/agg.h"
#include "stnls/tile.h"

using namespace stnls;

namespace {

// One batch entry and one head: the channel grouping then follows the thread count (2
// groups with 1 thread, 6 with 3), and the calls are large enough to go parallel.
constexpr int64_t B = 1, T = 3, C = 12, H = 9, W = 10, HD = 1;

std::vector<float> random_vec(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = nd(rng);
  return v;
}

// Everything the ops write, with `threads` OpenMP threads, concatenated.
std::vector<float> run_all(int threads) {
  omp_set_num_threads(threads);
  std::vector<float> vid = random_vec(B * T * C * H * W, 1), vid1 = random_vec(B * T * C * H * W, 2);
  SearchParams sp;
  sp.ws = 5, sp.wt = 1, sp.ps = 3, sp.k = 7, sp.nheads = HD, sp.stride0 = 1;
  const SearchRun r = run_search(sp, vid, B, T, C, H, W);
  const int64_t Q = r.sh.Q, K = r.sh.K;
  const ConstView v0 = make_view<const void>(vid.data(), DType::Float32, {B, T, C, H, W});
  const ConstView v1 = make_view<const void>(vid1.data(), DType::Float32, {B, T, C, H, W});
  const ConstView iv = make_view<const void>(r.inds.data(), DType::Int32, {B, HD, Q, K, 3});
  std::vector<float> gd = random_vec(B * HD * Q * K, 3), g0(vid.size()), g1(vid.size());
  search_backward(sp, make_view<const void>(gd.data(), DType::Float32, {B, HD, Q, K}), iv, v0, v1,
                  make_view<void>(g0.data(), DType::Float32, {B, T, C, H, W}),
                  make_view<void>(g1.data(), DType::Float32, {B, T, C, H, W}));

  AggParams ap;
  ap.ps = 3, ap.stride0 = 1;
  std::vector<float> wts = random_vec(B * HD * Q * K, 4), out(vid.size()), go = random_vec(vid.size(), 5);
  std::vector<float> gv(vid.size()), gw(wts.size());
  const ConstView wv = make_view<const void>(wts.data(), DType::Float32, {B, HD, Q, K});
  wpsum_forward(ap, v1, wv, iv, make_view<void>(out.data(), DType::Float32, {B, T, C, H, W}));
  wpsum_backward(ap, make_view<const void>(go.data(), DType::Float32, {B, T, C, H, W}), v1, wv, iv,
                 make_view<void>(gv.data(), DType::Float32, {B, T, C, H, W}),
                 make_view<void>(gw.data(), DType::Float32, {B, HD, Q, K}));

  TileParams tp;
  tp.ps = 3;
  const int64_t Ch = C / HD;
  std::vector<float> patches = random_vec(B * HD * Q * K * Ch * 9, 6), folded(vid.size());
  fold_k(tp, make_view<const void>(patches.data(), DType::Float32, {B, HD, Q, K, 1, Ch, 3, 3}), iv,
         make_view<void>(folded.data(), DType::Float32, {B, T, C, H, W}));

  std::vector<float> all;
  for (const auto* v : {&g0, &g1, &out, &gv, &gw, &folded}) all.insert(all.end(), v->begin(), v->end());
  return all;
}

}  // namespace

TEST(CpuThreads, ResultsIndependentOfThreadCount) {
  const int before = omp_get_max_threads();
  const std::vector<float> one = run_all(1), three = run_all(3);
  omp_set_num_threads(before);
  ASSERT_EQ(one.size(), three.size());
  EXPECT_EQ(std::memcmp(one.data(), three.data(), one.size() * sizeof(float)), 0);
  double norm = 0;
  for (float x : one) norm += std::abs(x);
  EXPECT_GT(norm, 0.0);  // the ops wrote something
}
