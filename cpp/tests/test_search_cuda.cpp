// The CUDA backend of the search against the CPU backend on random inputs: forward
// indices identical and distances bitwise equal over a product of parameters, backward
// close to the CPU and bitwise repeatable, work on a caller's stream, strided inputs.
// Every test is skipped, visibly, on a machine without a CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "cuda/search_backward_fixed.h"
#include "cuda/search_backward_taps.h"
#include "cuda/search_forward_groups.h"
#include "cuda/search_forward_rows.h"
#include "cuda/search_forward_shared.h"
#include "cuda/search_forward_thread.h"
#include "stnls/error.h"
#include "stnls/search.h"

using namespace stnls;

namespace {

bool has_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}
#define REQUIRE_GPU() \
  if (!has_gpu()) GTEST_SKIP() << "no CUDA device"

#define CUDA_OK(expr) ASSERT_EQ((expr), cudaSuccess) << #expr

// A device copy of a host vector (freed on scope exit).
template <class T>
struct DevBuf {
  T* p = nullptr;
  size_t n = 0;
  explicit DevBuf(size_t count) : n(count) {
    if (cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(T)) != cudaSuccess) p = nullptr;
  }
  explicit DevBuf(const std::vector<T>& v) : DevBuf(v.size()) {
    if (p) cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  }
  ~DevBuf() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> v(n);
    cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
  }
  DevBuf(const DevBuf&) = delete;
  DevBuf& operator=(const DevBuf&) = delete;
};

template <class T>
constexpr DType dtype_of() {
  return sizeof(T) == 4 ? DType::Float32 : DType::Float64;
}

struct Case {
  SearchParams p;
  int64_t B = 1, T = 3, C = 4, H = 11, W = 13;
  bool flows = true;
  bool f64 = false;
  bool same_video = false;
  bool channels_last = false;  // vid memory (B, T, H, W, C), passed with strides
  double flow_std = 1.5;       // pixels
  int levels = 0;              // > 0: video values drawn from that many integers (exact ties)
};

std::string describe(const Case& c) {
  const SearchParams& p = c.p;
  std::ostringstream s;
  s << "B" << c.B << "T" << c.T << "C" << c.C << "H" << c.H << "W" << c.W << " ws" << p.ws << " wt" << p.wt
    << " ps" << p.ps << " k" << p.k << " hd" << p.nheads << (p.dist_type == DistType::L2 ? " l2" : " prod")
    << " s0_" << p.stride0 << " s1_" << p.stride1 << " dil" << p.dilation << " pt" << p.pt
    << " refl" << p.reflect_bounds << " full" << p.full_ws << " anchor" << p.anchor_self << " rm"
    << p.remove_self << " adj" << p.use_adj << " off" << p.off_H0 << p.off_W0 << p.off_H1 << p.off_W1
    << (c.flows ? " flows" : "") << (c.f64 ? " f64" : " f32") << (c.channels_last ? " cl" : "")
    << (c.levels ? " levels" + std::to_string(c.levels) : "");
  return s.str();
}

// Views over a (B, T, C, H, W) video stored contiguous or channels-last.
template <class D>
BasicView<D> video_view(D* data, DType dt, const Case& c, Device dev) {
  BasicView<D> v = make_view<D>(data, dt, {c.B, c.T, c.C, c.H, c.W}, dev);
  if (c.channels_last) {
    v.strides[4] = c.C;
    v.strides[3] = c.C * c.W;
    v.strides[2] = 1;
    v.strides[1] = c.C * c.W * c.H;
    v.strides[0] = c.C * c.W * c.H * c.T;
  }
  return v;
}

size_t last_workspace_bytes = 0;          // of the latest check_case's backward
size_t last_forward_workspace_bytes = 0;  // and of its forward

template <class T>
void check_case(const Case& c, uint32_t seed, cudaStream_t stream = nullptr) {
  SCOPED_TRACE(describe(c));
  const DType dt = dtype_of<T>();
  const Device cpu{}, gpu{DeviceKind::CUDA, 0};
  std::mt19937 rng(seed);
  std::normal_distribution<double> nd(0.0, 1.0);
  const size_t nv = c.B * c.T * c.C * c.H * c.W, nf = c.B * c.T * 2 * c.H * c.W;
  std::vector<T> v0(nv), v1(nv), ff(nf), bf(nf);
  // With levels, integers: every sum exact, equal distances common.
  std::uniform_int_distribution<int> lv(0, std::max(c.levels - 1, 0));
  auto value = [&] { return c.levels > 0 ? T(lv(rng) - c.levels / 2) : T(nd(rng)); };
  for (auto& x : v0) x = value();
  for (auto& x : v1) x = value();
  if (c.same_video) v1 = v0;
  for (auto& x : ff) x = T(c.flow_std * nd(rng));
  for (auto& x : bf) x = T(c.flow_std * nd(rng));

  ConstView hv0 = video_view<const void>(v0.data(), dt, c, cpu), hv1 = video_view<const void>(v1.data(), dt, c, cpu);
  ConstView hff, hbf;
  if (c.flows) {
    hff = make_view<const void>(ff.data(), dt, {c.B, c.T, 2, c.H, c.W});
    hbf = make_view<const void>(bf.data(), dt, {c.B, c.T, 2, c.H, c.W});
  }
  const SearchShape sh = search_shape(c.p, hv0, hv1);
  const size_t nd_ = sh.B * sh.HD * sh.Q * sh.K;
  std::vector<T> dcpu(nd_);
  std::vector<int32_t> icpu(nd_ * 3);
  search_forward(c.p, hv0, hv1, hff, hbf, make_view<void>(dcpu.data(), dt, {sh.B, sh.HD, sh.Q, sh.K}),
                 make_view<void>(icpu.data(), DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3}));

  DevBuf<T> g0(v0), g1(v1), gff(ff), gbf(bf);
  std::vector<T> poison(nd_, T(-12345));
  std::vector<int32_t> ipoison(nd_ * 3, -777);
  DevBuf<T> gd(poison);
  DevBuf<int32_t> gi(ipoison);
  ASSERT_TRUE(g0.p && g1.p && gd.p && gi.p);
  ConstView dv0 = video_view<const void>(g0.p, dt, c, gpu), dv1 = video_view<const void>(g1.p, dt, c, gpu);
  ConstView dff, dbf;
  if (c.flows) {
    dff = make_view<const void>(gff.p, dt, {c.B, c.T, 2, c.H, c.W}, gpu);
    dbf = make_view<const void>(gbf.p, dt, {c.B, c.T, 2, c.H, c.W}, gpu);
  }
  View ddv = make_view<void>(gd.p, dt, {sh.B, sh.HD, sh.Q, sh.K}, gpu);
  View div = make_view<void>(gi.p, DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3}, gpu);
  const size_t wsf = search_forward_workspace_size(c.p, dv0, dv1);
  last_forward_workspace_bytes = wsf;
  DevBuf<char> wfp(wsf);
  search_forward(c.p, dv0, dv1, dff, dbf, ddv, div, wfp.p, wsf, stream);
  CUDA_OK(cudaStreamSynchronize(stream));
  std::vector<T> dgpu = gd.get();
  std::vector<int32_t> igpu = gi.get();
  size_t bad_i = 0, bad_d = 0;
  for (size_t i = 0; i < icpu.size(); ++i) bad_i += icpu[i] != igpu[i];
  for (size_t i = 0; i < dcpu.size(); ++i) bad_d += std::memcmp(&dcpu[i], &dgpu[i], sizeof(T)) != 0;
  EXPECT_EQ(bad_i, 0u) << "index entries differing from the CPU";
  EXPECT_EQ(bad_d, 0u) << "distances not bitwise equal to the CPU";
  for (size_t i = 0; i < icpu.size() && bad_i; ++i)
    if (icpu[i] != igpu[i]) {
      ADD_FAILURE() << "first differing index entry " << i << " (q=" << i / 3 / sh.K % sh.Q << ", k="
                    << i / 3 % sh.K << "): cpu " << icpu[i] << " cuda " << igpu[i];
      break;
    }

  // Backward: grad_dists random; a few indices replaced by padding / out-of-range triples.
  std::vector<T> gdist(nd_);
  for (auto& x : gdist) x = T(nd(rng));
  std::vector<int32_t> binds = icpu;
  std::uniform_int_distribution<size_t> pick(0, nd_ - 1);
  for (int m = 0; m < 3 && nd_ > 4; ++m) {
    size_t e = pick(rng);
    binds[e * 3] = binds[e * 3 + 1] = binds[e * 3 + 2] = -1;
    e = pick(rng);
    binds[e * 3 + 1] = static_cast<int32_t>(c.H + 3);
  }
  std::vector<T> hg0(nv, T(7)), hg1(nv, T(7));
  ConstView hgd = make_view<const void>(gdist.data(), dt, {sh.B, sh.HD, sh.Q, sh.K});
  ConstView hbi = make_view<const void>(binds.data(), DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3});
  search_backward(c.p, hgd, hbi, hv0, hv1, video_view<void>(hg0.data(), dt, c, cpu),
                  video_view<void>(hg1.data(), dt, c, cpu));

  DevBuf<T> dgd(gdist);
  DevBuf<int32_t> dbi(binds);
  ConstView cgd = make_view<const void>(dgd.p, dt, {sh.B, sh.HD, sh.Q, sh.K}, gpu);
  ConstView cbi = make_view<const void>(dbi.p, DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3}, gpu);
  const size_t wsb = search_backward_workspace_size(c.p, dv0, dv1, cbi);
  last_workspace_bytes = wsb;
  DevBuf<char> wsp(wsb);
  std::vector<T> run[2];
  for (int rep = 0; rep < 2; ++rep) {
    DevBuf<T> o0(std::vector<T>(nv, T(7))), o1(std::vector<T>(nv, T(7)));
    search_backward(c.p, cgd, cbi, dv0, dv1, video_view<void>(o0.p, dt, c, gpu), video_view<void>(o1.p, dt, c, gpu),
                    wsp.p, wsb, stream);
    CUDA_OK(cudaStreamSynchronize(stream));
    run[rep] = o0.get();
    std::vector<T> b1 = o1.get();
    run[rep].insert(run[rep].end(), b1.begin(), b1.end());
  }
  std::vector<T> ref = hg0;
  ref.insert(ref.end(), hg1.begin(), hg1.end());
  double scale = 0;
  for (T x : ref) scale = std::max(scale, std::abs(double(x)));
  const double tol = (sizeof(T) == 4 ? 2e-5 : 1e-12) * (1 + scale);
  size_t bad_g = 0, first = ref.size();
  for (size_t i = 0; i < ref.size(); ++i)
    if (!(std::abs(double(ref[i]) - double(run[0][i])) <= tol)) {
      ++bad_g;
      if (first == ref.size()) first = i;
    }
  EXPECT_EQ(bad_g, 0u) << "gradient entries off the CPU (tol " << tol << "); first " << first
                       << (first < ref.size() ? " cpu " + std::to_string(double(ref[first])) + " cuda " +
                                                    std::to_string(double(run[0][first]))
                                              : "");
  if (c.p.deterministic)
    EXPECT_EQ(std::memcmp(run[0].data(), run[1].data(), run[0].size() * sizeof(T)), 0)
        << "backward not bitwise repeatable";
  else
    EXPECT_EQ(wsb, 0u) << "the atomic backward needs no workspace";
}

// A reproducible sample of the parameter product.
std::vector<Case> sampled_cases() {
  std::vector<Case> out;
  std::mt19937 rng(1234);
  auto pick = [&](std::initializer_list<int> v) { return *(v.begin() + rng() % v.size()); };
  for (int n = 0; n < 64; ++n) {
    Case c;
    SearchParams& p = c.p;
    c.T = pick({1, 3, 4});
    c.H = pick({9, 12});
    c.W = pick({10, 13});
    p.nheads = pick({1, 2});
    c.C = p.nheads * pick({1, 3, 4});
    c.B = pick({1, 2});
    p.ws = pick({1, 3, 4, 5, 7, -1});
    p.wt = pick({0, 1, 2});
    p.ps = pick({1, 2, 3, 5});
    p.stride0 = pick({1, 2, 3});
    p.stride1 = pick({1, 1, 2});
    p.dilation = pick({1, 1, 2});
    p.pt = pick({1, 1, 2});
    p.dist_type = pick({0, 1}) ? DistType::L2 : DistType::Prod;
    p.reflect_bounds = pick({0, 1, 1});
    p.full_ws = pick({0, 1, 1});
    int self = pick({0, 0, 1, 2});
    p.anchor_self = self == 1;
    p.remove_self = self == 2;
    p.use_adj = pick({0, 0, 1});
    if (pick({0, 0, 1})) p.off_H0 = pick({-1, 1, 2}), p.off_W0 = pick({-2, 1}), p.off_H1 = pick({1, -1}), p.off_W1 = pick({0, 3});
    c.flows = pick({0, 1, 1});
    c.f64 = pick({0, 0, 1});
    c.same_video = pick({0, 1});
    c.channels_last = pick({0, 0, 0, 1});
    // k within the number of window slots (and sometimes all of them).
    const int64_t st = std::min<int64_t>(2 * p.wt + 1, c.T);
    const int64_t wh = p.ws < 0 ? (c.H + p.stride1 - 1) / p.stride1 : p.ws;
    const int64_t ww = p.ws < 0 ? (c.W + p.stride1 - 1) / p.stride1 : p.ws;
    const int64_t slots = st * wh * ww;
    int kk = pick({1, 3, 7, 10, 16, 20, 40, -1});
    if (kk > slots) kk = static_cast<int>(slots);
    p.k = kk;
    out.push_back(c);
  }
  return out;
}

// Turns the fixed-point backward off for its scope: small deterministic float32 calls then
// take the gather, as larger ones do.
struct FixedPointOff {
  FixedPointOff() { cuda::set_backward_fixed_enabled(false); }
  ~FixedPointOff() { cuda::set_backward_fixed_enabled(true); }
};

// Turns the tap-split gathers off for its scope: the fast path then gathers one thread per
// pixel.
struct TapsOff {
  TapsOff() { cuda::set_backward_taps_enabled(false); }
  ~TapsOff() { cuda::set_backward_taps_enabled(true); }
};

class SearchCudaVsCpu : public ::testing::TestWithParam<int> {};

TEST_P(SearchCudaVsCpu, ForwardExactBackwardClose) {
  // float32: the deterministic backward every way, fixed-point scatter, gather (tap-split
  // where the call allows) and gather one thread per pixel.
  REQUIRE_GPU();
  const Case c = sampled_cases()[GetParam()];
  if (c.f64) {
    check_case<double>(c, 100 + GetParam());
  } else {
    check_case<float>(c, 100 + GetParam());
    FixedPointOff gather;
    check_case<float>(c, 100 + GetParam());
    TapsOff per_pixel;
    check_case<float>(c, 100 + GetParam());
  }
}
INSTANTIATE_TEST_SUITE_P(Sampled, SearchCudaVsCpu, ::testing::Range(0, 64));

// deterministic = false: the atomic backward, same cases, same tolerance against the CPU.
class SearchCudaAtomicVsCpu : public ::testing::TestWithParam<int> {};

TEST_P(SearchCudaAtomicVsCpu, BackwardClose) {
  REQUIRE_GPU();
  Case c = sampled_cases()[GetParam()];
  c.p.deterministic = false;
  if (c.f64) check_case<double>(c, 300 + GetParam());
  else check_case<float>(c, 300 + GetParam());
}
INSTANTIATE_TEST_SUITE_P(Sampled, SearchCudaAtomicVsCpu, ::testing::Range(0, 64));

TEST(SearchCuda, AtomicBackwardHeavyOverlap) {
  // Every pixel is read by many (query, neighbour, tap) terms (stride0 = 1, ps = 7, k = 32
  // on a small video): lost atomic updates would show here.
  REQUIRE_GPU();
  Case c;
  c.T = 3, c.H = 14, c.W = 15, c.C = 3, c.flow_std = 0.5;
  c.p.ws = 5, c.p.wt = 1, c.p.ps = 7, c.p.k = 32, c.p.stride0 = 1, c.p.deterministic = false;
  check_case<float>(c, 19);
  c.p.dist_type = DistType::L2, c.p.reflect_bounds = false, c.channels_last = true;
  check_case<double>(c, 20);
}

TEST(SearchCuda, FixedPointBackwardHeavyOverlap) {
  // The deterministic float32 backward of a small call (the fixed-point scatter) where
  // every pixel receives many terms, against the CPU and bitwise repeatable.
  REQUIRE_GPU();
  Case c;
  c.T = 3, c.H = 14, c.W = 15, c.C = 3, c.flow_std = 0.5;
  c.p.ws = 5, c.p.wt = 1, c.p.ps = 7, c.p.k = 32, c.p.stride0 = 1;
  check_case<float>(c, 21);
  EXPECT_GT(last_workspace_bytes, 0u);
  c.p.dist_type = DistType::L2, c.p.reflect_bounds = false, c.channels_last = true, c.p.nheads = 3, c.C = 6;
  check_case<float>(c, 22);
}

TEST(SearchCuda, TapSplitBackward) {
  // The tap-split gathers (thread per (query or location, tap), then a fold per pixel)
  // against the CPU, bitwise repeatable, on the shapes that take them: S2's (ps 3, 8
  // channels per head, stride0 1, k 10) and its variations through every rule the fold
  // walks (reflection and zero padding, stride0, dilation, pt, offsets, use_adj,
  // channels-last strides, L2). The workspace grows by the partial sums when the path is
  // taken, which the test checks against the path switched off.
  REQUIRE_GPU();
  FixedPointOff gather;
  Case base;
  base.T = 4, base.H = 13, base.W = 14, base.C = 16, base.flow_std = 2.0;
  base.p.ws = 5, base.p.wt = 2, base.p.ps = 3, base.p.k = 10, base.p.nheads = 2, base.p.stride0 = 1;
  std::vector<Case> cases;
  for (DistType dist : {DistType::Prod, DistType::L2}) {
    Case c = base;
    c.p.dist_type = dist;
    cases.push_back(c);
    Case d = c;
    d.p.reflect_bounds = false, d.channels_last = true, d.C = 6, d.p.nheads = 1;
    cases.push_back(d);
    d = c;
    d.p.stride0 = 2, d.p.dilation = 2, d.p.ps = 2, d.C = 32, d.p.nheads = 1, d.p.k = 7;
    cases.push_back(d);
    d = c;
    d.p.pt = 2, d.p.use_adj = true, d.p.off_H0 = 1, d.p.off_W0 = -1, d.p.off_H1 = -1, d.p.off_W1 = 2, d.C = 4,
    d.p.nheads = 1;
    cases.push_back(d);
    d = c;
    d.B = 2, d.p.ps = 4, d.p.stride0 = 3, d.p.k = 16, d.p.ws = 7, d.flow_std = 0.3;  // heavy overlap
    cases.push_back(d);
  }
  uint32_t seed = 60;
  for (const Case& c : cases) {
    check_case<float>(c, seed);
    const size_t with_taps = last_workspace_bytes;
    {
      TapsOff per_pixel;
      check_case<float>(c, seed);
    }
    EXPECT_GT(with_taps, last_workspace_bytes) << describe(c) << ": the tap-split path was not taken";
    ++seed;
  }
  // On a stream of the caller's: grad_vid0's chain runs on a second stream that the call
  // joins back, so the results are complete once the caller's stream is.
  cudaStream_t stream = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  check_case<float>(cases[0], seed, stream);
  check_case<float>(cases[1], seed + 1, stream);
  CUDA_OK(cudaStreamDestroy(stream));
}

// The backward alone, from random index triples (some padding, with grad_dists 1e30, some
// out of range), of float32 videos scaled by `scale`, with NaN and infinities placed in
// the inputs when `nonfinite`, and with the videos and grad_dists stored every other
// element when `spread` (the elements between hold 1e30, which must not be read): the CUDA
// gradients (fixed-point scatter, or the gather with it off) against the CPU's, NaN where
// the CPU has NaN, the same infinity where it has one, elsewhere within 2e-5 of the
// largest finite CPU gradient; and bitwise repeatable.
void check_backward_values(const Case& c, uint32_t seed, float scale, bool nonfinite, bool spread = false) {
  SCOPED_TRACE(describe(c) + " scale " + std::to_string(scale) + (nonfinite ? " nonfinite" : "") +
               (spread ? " spread" : ""));
  const Device cpu{}, gpu{DeviceKind::CUDA, 0};
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, 1.f);
  const size_t nv = c.B * c.T * c.C * c.H * c.W;
  std::vector<float> v0(nv), v1(nv);
  for (auto& x : v0) x = scale * nd(rng);
  for (auto& x : v1) x = scale * nd(rng);
  const SearchShape sh = search_shape(c.p, video_view<const void>(v0.data(), DType::Float32, c, cpu),
                                      video_view<const void>(v1.data(), DType::Float32, c, cpu));
  const size_t no = sh.B * sh.HD * sh.Q * sh.K;
  std::vector<float> gd(no);
  for (auto& x : gd) x = nd(rng);
  std::vector<int32_t> inds(no * 3);
  for (size_t e = 0; e < no; ++e) {
    const bool pad = rng() % 8 == 0;
    if (pad) gd[e] = 1e30f;  // adds nothing, so must not set the fixed-point scale either
    inds[3 * e] = pad ? -1 : static_cast<int32_t>(rng() % c.T);
    inds[3 * e + 1] = pad ? -1 : static_cast<int32_t>(rng() % (c.H + (rng() % 16 == 0)));  // some out of range
    inds[3 * e + 2] = pad ? -1 : static_cast<int32_t>(rng() % c.W);
  }
  if (nonfinite) {
    const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
    v0[rng() % nv] = nan, v0[rng() % nv] = inf;
    v1[rng() % nv] = -inf, v1[rng() % nv] = inf;
    gd[rng() % no] = nan, gd[rng() % no] = inf;
  }
  // Storage (every other element when spread) and views over it.
  const int64_t step = spread ? 2 : 1;
  auto store = [&](const std::vector<float>& v) {
    std::vector<float> m(v.size() * step, 1e30f);
    for (size_t i = 0; i < v.size(); ++i) m[i * step] = v[i];
    return m;
  };
  auto stretch = [&](auto view) {
    for (int d = 0; d < view.ndim; ++d) view.strides[d] *= step;
    return view;
  };
  const std::vector<float> m0 = store(v0), m1 = store(v1), mg = store(gd);
  auto vid = [&](const float* p, Device dev) { return stretch(video_view<const void>(p, DType::Float32, c, dev)); };
  auto gdv = [&](const float* p, Device dev) {
    return stretch(make_view<const void>(p, DType::Float32, {sh.B, sh.HD, sh.Q, sh.K}, dev));
  };

  std::vector<float> r0(nv), r1(nv);
  const ConstView hind = make_view<const void>(inds.data(), DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3});
  search_backward(c.p, gdv(mg.data(), cpu), hind, vid(m0.data(), cpu), vid(m1.data(), cpu),
                  video_view<void>(r0.data(), DType::Float32, c, cpu), video_view<void>(r1.data(), DType::Float32, c, cpu));
  std::vector<float> ref = r0;
  ref.insert(ref.end(), r1.begin(), r1.end());

  DevBuf<float> d0(m0), d1(m1), dgd(mg);
  DevBuf<int32_t> dind(inds);
  ConstView dv0 = vid(d0.p, gpu), dv1 = vid(d1.p, gpu), cgd = gdv(dgd.p, gpu);
  ConstView cind = make_view<const void>(dind.p, DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3}, gpu);
  const size_t wsb = search_backward_workspace_size(c.p, dv0, dv1, cind);
  DevBuf<char> ws(wsb);
  std::vector<float> run[2];
  for (int rep = 0; rep < 2; ++rep) {
    DevBuf<float> o0(std::vector<float>(nv, 7.f)), o1(std::vector<float>(nv, 7.f));
    search_backward(c.p, cgd, cind, dv0, dv1, video_view<void>(o0.p, DType::Float32, c, gpu),
                    video_view<void>(o1.p, DType::Float32, c, gpu), ws.p, wsb);
    CUDA_OK(cudaDeviceSynchronize());
    run[rep] = o0.get();
    const std::vector<float> b1 = o1.get();
    run[rep].insert(run[rep].end(), b1.begin(), b1.end());
  }
  double big = 0;
  size_t special = 0;
  for (float x : ref) {
    if (std::isfinite(x)) big = std::max(big, std::abs(double(x)));
    else ++special;
  }
  if (nonfinite) EXPECT_GT(special, 0u) << "the injected values reach no gradient";
  const double tol = 2e-5 * big;
  size_t bad = 0, first = ref.size();
  for (size_t i = 0; i < ref.size(); ++i) {
    const float a = ref[i], b = run[0][i];
    const bool ok = std::isnan(a) ? std::isnan(b) : std::isinf(a) ? a == b : std::abs(double(a) - double(b)) <= tol;
    if (!ok && bad++ == 0) first = i;
  }
  EXPECT_EQ(bad, 0u) << "gradient entries off the CPU (tol " << tol << "); first " << first
                     << (first < ref.size() ? " cpu " + std::to_string(ref[first]) + " cuda " + std::to_string(run[0][first])
                                            : "");
  EXPECT_EQ(std::memcmp(run[0].data(), run[1].data(), run[0].size() * sizeof(float)), 0)
      << "backward not bitwise repeatable";
}

TEST(SearchCuda, FixedPointBackwardScalesAndNonFinite) {
  // The fixed-point scale follows the inputs' magnitude (tiny and huge videos keep float32
  // accuracy), NaN / infinities in the inputs come out as a float sum makes them, strided
  // (not dense) views are read element by element; the gather on the same calls too.
  REQUIRE_GPU();
  Case c;
  c.T = 3, c.H = 12, c.W = 13, c.C = 4;
  c.p.ws = 5, c.p.wt = 1, c.p.ps = 3, c.p.k = 6, c.p.stride0 = 1;
  auto run_all = [&](uint32_t seed) {
    for (DistType dist : {DistType::Prod, DistType::L2}) {
      c.p.dist_type = dist;
      for (float scale : {1.f, 1e-12f, 1e12f}) check_backward_values(c, seed++, scale, false);
      check_backward_values(c, seed++, 1.f, true);
      check_backward_values(c, seed++, 1.f, false, true);  // strided views (not dense)
      Case d = c;
      d.p.nheads = 2, d.channels_last = true, d.p.ps = 7, d.p.stride0 = 2, d.p.reflect_bounds = false;
      check_backward_values(d, seed++, 1.f, true);
      check_backward_values(d, seed++, 1e3f, true, true);
    }
  };
  run_all(40);
  FixedPointOff gather;
  run_all(40);
  TapsOff per_pixel;
  run_all(40);
}

TEST(SearchCuda, AllCandidatesWholeFrame) {
  // k <= 0 with ws = -1: every candidate, sorted (several passes of the lane lists).
  REQUIRE_GPU();
  Case c;
  c.T = 2, c.H = 9, c.W = 10, c.C = 3;
  c.p.ws = -1, c.p.wt = 1, c.p.ps = 3, c.p.k = -1, c.p.stride0 = 2;
  check_case<float>(c, 1);
  c.p.dist_type = DistType::L2, c.p.remove_self = true;
  check_case<double>(c, 2);
}

TEST(SearchCuda, BigWindowAndTopK) {
  REQUIRE_GPU();
  Case c;
  c.T = 3, c.H = 40, c.W = 36, c.C = 12;
  c.p.ws = 21, c.p.wt = 3, c.p.ps = 7, c.p.k = 10, c.p.nheads = 4, c.p.stride0 = 4;
  check_case<float>(c, 3);
  c.p.k = 100, c.p.anchor_self = true;  // several passes
  check_case<float>(c, 4);
}

TEST(SearchCuda, SevenCandidatesPerLane) {
  // Wide windows with 3 or 4 channels per head: the fast path's 7-candidate segments
  // (the plan's cost model picks R = 7 for these shapes), including a last segment that
  // runs past the window (ws = 20 = 3 x 7 - 1), reflected borders and pt = 2.
  REQUIRE_GPU();
  Case c;
  c.T = 3, c.H = 26, c.W = 31, c.C = 6;
  c.p.ws = 14, c.p.wt = 1, c.p.ps = 3, c.p.k = 12, c.p.nheads = 2, c.p.stride0 = 2;
  check_case<float>(c, 15);
  c.p.dist_type = DistType::L2;
  check_case<float>(c, 16);
  c.C = 4, c.p.nheads = 1, c.p.ws = 20, c.p.ps = 5, c.p.stride0 = 3, c.p.pt = 2, c.p.k = 20;
  check_case<float>(c, 17);
  c.p.dist_type = DistType::Prod, c.channels_last = true, c.p.remove_self = true;
  check_case<float>(c, 18);
}

TEST(SearchCuda, ThirtyTwoChannelsPerHead) {
  // C = 32 per head (S4's shape on the general path; a 2-candidate fast path was tried),
  // prod and l2, reflected and zero borders, channels-last videos, the anchor slot.
  REQUIRE_GPU();
  Case c;
  c.T = 3, c.H = 21, c.W = 26, c.C = 64;
  c.p.ws = 7, c.p.wt = 1, c.p.ps = 3, c.p.k = 10, c.p.nheads = 2, c.p.stride0 = 2;
  check_case<float>(c, 21);
  c.p.dist_type = DistType::L2, c.p.reflect_bounds = false;
  check_case<float>(c, 22);
  c.C = 32, c.p.nheads = 1, c.p.ws = 6, c.p.ps = 1, c.channels_last = true, c.p.anchor_self = true;
  check_case<float>(c, 23);
}

TEST(SearchCuda, PixelSumsOrderInDouble) {
  // float64 with 16 and 20 channels per head (the pixel-sums summation order on the
  // general path, whose order is chosen at run time), the anchor slot (its distance is
  // summed apart), both distances, zero borders.
  REQUIRE_GPU();
  Case c;
  c.T = 3, c.H = 13, c.W = 17, c.C = 32;
  c.p.ws = 5, c.p.wt = 1, c.p.ps = 3, c.p.k = 12, c.p.nheads = 2, c.p.stride0 = 2, c.p.anchor_self = true;
  check_case<double>(c, 41);
  c.C = 40, c.p.dist_type = DistType::L2, c.p.reflect_bounds = false, c.p.anchor_self = false, c.p.stride0 = 1;
  check_case<double>(c, 42);
}

TEST(SearchCuda, GeneralPathChannelsInFours) {
  // The general path for float with C % 4 == 0 (the query read 4 channels per load), not a
  // fast-path shape: 12, 20 and 32 channels per head, stride1 and dilation 2 (which keep
  // even 4 or 16 channels off the fast path), pt = 2, prod and l2, several candidates per
  // lane (k = 0: every candidate, in passes), channels-last videos.
  REQUIRE_GPU();
  Case c;
  c.T = 3, c.H = 19, c.W = 23, c.C = 24;
  c.p.ws = 5, c.p.wt = 1, c.p.ps = 3, c.p.k = 8, c.p.nheads = 2, c.p.stride0 = 2;
  check_case<float>(c, 31);  // 12 per head
  c.C = 40, c.p.dist_type = DistType::L2, c.p.dilation = 2;
  check_case<float>(c, 32);  // 20 per head
  c.C = 32, c.p.nheads = 2, c.p.dilation = 1, c.p.stride1 = 2, c.p.pt = 2, c.p.k = 0;
  check_case<float>(c, 33);  // 16 per head, stride1 = 2
  c.C = 4, c.p.nheads = 1, c.p.stride1 = 1, c.p.dilation = 2, c.p.pt = 1, c.p.k = 12, c.channels_last = true;
  check_case<float>(c, 34);  // 4 channels, dilation 2
  c.C = 32, c.p.ws = 9, c.p.ps = 5, c.p.dilation = 1, c.p.dist_type = DistType::Prod, c.p.anchor_self = true;
  check_case<float>(c, 35);  // 32 channels
  // Tiny windows: several frames staged together, idle lanes past the last candidate.
  c.T = 5, c.C = 24, c.p.ws = 2, c.p.wt = 2, c.p.ps = 1, c.p.k = 0, c.p.anchor_self = false, c.p.stride1 = 2;
  check_case<float>(c, 36);  // 12 per head, 2 x 2 window
  c.p.ws = 3, c.p.ps = 2, c.p.stride1 = 1, c.p.dilation = 2, c.p.k = 5, c.p.dist_type = DistType::L2;
  check_case<float>(c, 37);  // even patch
}

// Every forward layout that can take the call: the shared-sums path where it applies
// (search_forward_shared.cu), the thread-per-query or row-split path
// (search_forward_thread.cu, search_forward_rows.cu), and the warp-per-query kernels.
template <class T>
void check_both_layouts(const Case& c, uint32_t seed) {
  check_case<T>(c, seed);
  cuda::set_forward_shared_enabled(false);
  check_case<T>(c, seed);
  cuda::set_forward_thread_enabled(false);
  cuda::set_forward_rows_enabled(false);
  cuda::set_forward_groups_enabled(false);
  check_case<T>(c, seed);
  cuda::set_forward_shared_enabled(true);
  cuda::set_forward_thread_enabled(true);
  cuda::set_forward_rows_enabled(true);
  cuda::set_forward_groups_enabled(true);
}

// A random call for one variant of a register-patch forward (cv channels per head, patch
// side ps, window ws): rep 0 draws small frames, others frames of big_h x big_w; rep 2 has
// 40 px flows. The other parameters: query strides, frames, borders (reflected or zero,
// windows clamped or not), use_adj and patch offsets, remove_self, k from 1 to 16, heads,
// channels-last videos, flows or none, vid1 equal to vid0.
Case register_case(std::mt19937& rng, int cv, int ps, int ws, int rep, std::initializer_list<int> big_h,
                   std::initializer_list<int> big_w, std::initializer_list<int> strides) {
  auto pick = [&](std::initializer_list<int> v) { return *(v.begin() + rng() % v.size()); };
  Case c;
  SearchParams& p = c.p;
  p.nheads = pick({1, 2});
  c.C = p.nheads * cv;
  p.ps = ps;
  p.ws = ws;
  c.B = pick({1, 2});
  c.T = pick({1, 3, 5});
  c.H = rep == 0 ? pick({6, 8}) : pick(big_h);
  c.W = rep == 0 ? pick({7, 12}) : pick(big_w);
  p.wt = pick({0, 1, 2});
  p.stride0 = pick(strides);
  p.dist_type = pick({0, 1}) ? DistType::L2 : DistType::Prod;
  p.reflect_bounds = pick({0, 1, 1});
  p.full_ws = pick({0, 1, 1});
  p.remove_self = pick({0, 0, 1});
  p.use_adj = pick({0, 0, 1});
  if (pick({0, 0, 1})) p.off_H0 = pick({-1, 2}), p.off_W0 = pick({-2, 1}), p.off_H1 = pick({1, -1}), p.off_W1 = pick({0, 3});
  c.flows = pick({0, 1, 1, 1});
  c.flow_std = rep == 2 ? 40.0 : 1.5;
  c.same_video = pick({0, 0, 1});
  c.channels_last = pick({0, 0, 1});
  p.k = pick({1, 7, 10, 16});
  return c;
}

// Three random calls (register_case) for each (channels per head, ps) variant and window
// width, on every layout that takes them, against the CPU (seeds seed0, seed0 + 1, ...).
void check_register_variants(uint32_t rng_seed, std::initializer_list<std::pair<int, int>> variants,
                             std::initializer_list<int> widths, std::initializer_list<int> big_h,
                             std::initializer_list<int> big_w, std::initializer_list<int> strides, uint32_t seed0) {
  std::mt19937 rng(rng_seed);
  uint32_t n = 0;
  for (const auto& cp : variants)
    for (int ws : widths)
      for (int rep = 0; rep < 3; ++rep, ++n)
        check_both_layouts<float>(register_case(rng, cp.first, cp.second, ws, rep, big_h, big_w, strides), seed0 + n);
}

TEST(SearchCuda, ThreadPerQueryPath) {
  // Every compiled variant of the thread-per-query forward (channels per head and ps:
  // 4 and 3, 8 and 3, 8 and 1; window widths 5, 7, 9) against the CPU, three random calls
  // each (register_case): frames narrower than the window, and 40 px flows that scatter
  // the windows over the frame (boxes too large for shared memory, staged thread by
  // thread).
  REQUIRE_GPU();
  check_register_variants(4242, {{4, 3}, {8, 3}, {8, 1}}, {5, 7, 9}, {19, 33, 48}, {21, 40, 64}, {1, 1, 2, 3}, 500);
}

TEST(SearchCuda, ThreadPerQueryScatteredWindows) {
  // Frames large enough that 40 px flows spread a block's windows past its shared-memory
  // box (8 channels per head), next to small flows where one box serves the block.
  REQUIRE_GPU();
  for (double flow_std : {1.0, 40.0}) {
    Case c;
    c.T = 3, c.H = 72, c.W = 90, c.C = 8, c.flow_std = flow_std;
    c.p.ws = 9, c.p.wt = 1, c.p.ps = 1, c.p.k = 16, c.p.stride0 = 1;
    check_both_layouts<float>(c, 60);  // ps = 1
    c.C = 8, c.p.ps = 3, c.p.ws = 5, c.p.k = 10, c.p.dist_type = DistType::L2;
    check_both_layouts<float>(c, 61);  // ps = 3
  }
}

TEST(SearchCuda, ThreadPerQueryBoxSizes) {
  // The thread-per-query forward with its box limited (set_forward_thread_box_px): without
  // flows a block's box is 14 x 22 pixels (ws 5, ps 3, the 8 x 16 tile) and a thread's
  // rectangle 7 x 7, so 450 stages the block's box, 120 and 49 thread by thread (two and
  // one rectangle per round); flows of 3 and 12 px mix the two between blocks and frames.
  // 38 rows leave the last tile row's fourth warp without queries (its windows are staged
  // all the same in the thread-by-thread rounds). Against the CPU, both
  // distance types, with and without remove_self; then the box the device's shared memory
  // allows again.
  REQUIRE_GPU();
  uint32_t seed = 700;
  for (int px : {450, 120, 49, 0}) {
    cuda::set_forward_thread_box_px(px);
    for (double flow_std : {0.0, 3.0, 12.0}) {
      Case c;
      c.T = 5, c.H = 38, c.W = 45, c.C = 16, c.flow_std = flow_std, c.flows = flow_std > 0;
      c.p.ws = 5, c.p.wt = 2, c.p.ps = 3, c.p.k = 10, c.p.nheads = 2, c.p.stride0 = 1;
      c.p.dist_type = seed % 2 ? DistType::L2 : DistType::Prod;
      c.p.remove_self = seed % 3 == 0;
      SCOPED_TRACE("box px " + std::to_string(px) + ", flow std " + std::to_string(flow_std));
      check_case<float>(c, seed++);
    }
  }
  cuda::set_forward_thread_box_px(0);
}

TEST(SearchCuda, RowSplitPath) {
  // Every compiled variant of the row-split forward (16 channels per head with ps 7) and
  // of the channel-group forward (32 with ps 3), window widths 5, 7, 9, against the CPU,
  // three random calls each (register_case): frames 1 to 5 (the frame changes inside a
  // step's rows), and query counts rarely a multiple of a warp's queries, so the last warp
  // has lanes without a query.
  REQUIRE_GPU();
  check_register_variants(5151, {{32, 3}, {16, 7}}, {5, 7, 9}, {19, 33}, {21, 40}, {1, 2, 3}, 700);
}

TEST(SearchCuda, RowSplitTies) {
  // Videos of three integer levels, so that many candidates of a query have equal
  // distances (a tie at the k-th place in 25-48% of the queries): the tie rule (rule 6:
  // the lower ordinal first) through every row-split and channel-group variant (whose four
  // lists per query merge at the end), and the other layouts, against the CPU.
  REQUIRE_GPU();
  uint32_t seed = 800;
  for (const auto& cp : {std::pair<int, int>{32, 3}, {16, 7}})
    for (int ws : {5, 7, 9})
      for (int k : {7, 16}) {
        Case c;
        c.T = 3, c.H = 19, c.W = 23, c.C = cp.first, c.levels = 3;
        c.p.ps = cp.second, c.p.ws = ws, c.p.wt = 1, c.p.k = k, c.p.stride0 = 2;
        c.p.dist_type = k == 7 ? DistType::L2 : DistType::Prod;
        check_both_layouts<float>(c, seed++);
      }
}

TEST(SearchCuda, ChannelGroupBands) {
  // The channel-group forward (32 channels per head, ps 3) with vid1's rows in
  // the workspace's ring (search_forward_bands.h), against the CPU: random calls
  // (register_case) under forced ring sizes and margins, so that small videos run in one
  // band (every row), in many bands on two streams (margins that keep the windows' rows,
  // small ones and none: rows outside the ring are copied from vid1), or without a plan
  // (a ring too small for one band: no workspace); videos of three levels (ties); and the
  // budget's own plan on a video large enough for several bands.
  REQUIRE_GPU();
  std::mt19937 rng(7070);
  uint32_t seed = 1300;
  for (const auto& rm : {std::pair<int, int>{1000, 0}, {24, 6}, {12, 2}, {9, 0}, {16, 10}}) {
    cuda::set_forward_bands(rm.first, rm.second);
    size_t planned = 0;
    for (int ws : {5, 7, 9})
      for (int rep = 0; rep < 3; ++rep) {
        const Case rc = register_case(rng, 32, 3, ws, rep, {19, 33}, {21, 40}, {1, 2});
        check_case<float>(rc, seed++);
        planned += last_forward_workspace_bytes > 0;
        // A ring of 16 rows holds a whole frame of up to 16 rows (one band), no band with
        // margin 10 in a taller one.
        if (rm.second == 10 && rc.H > rm.first) EXPECT_EQ(last_forward_workspace_bytes, 0u) << describe(rc);
      }
    Case c;
    c.T = 3, c.H = 19, c.W = 23, c.C = 32, c.levels = 3;
    c.p.ps = 3, c.p.ws = 7, c.p.wt = 1, c.p.k = 16, c.p.stride0 = 1;
    check_case<float>(c, seed++);
    planned += last_forward_workspace_bytes > 0;
    EXPECT_GT(planned, 0u) << "no call ran with a workspace under ring " << rm.first;
  }
  cuda::set_forward_bands(0, 0);
  Case c;
  c.T = 2, c.H = 64, c.W = 64, c.C = 32, c.flow_std = 2.0;
  c.p.ps = 3, c.p.ws = 7, c.p.wt = 1, c.p.k = 16, c.p.stride0 = 1;
  check_case<float>(c, seed++);
  EXPECT_GT(last_forward_workspace_bytes, 0u) << "the budget's plan took no workspace";
}

TEST(SearchCuda, SharedSumsPath) {
  // The shared-sums forward (16, 20 and 32 channels per head; ps 5, 7, 9; ws 7, 9, 11;
  // stride0 = 1) against the CPU, three random calls each (register_case): frames smaller
  // than a block's 8 x 16 query tile, 40 px flows whose offset boxes span several
  // 24-column chunks, both distances, zero and reflected borders, remove_self. Calls with
  // patch offsets (which it does not take) run the other layouts.
  REQUIRE_GPU();
  check_register_variants(6262, {{16, 7}, {20, 5}, {32, 9}}, {7, 9, 11}, {19, 33}, {21, 40}, {1}, 900);
}

TEST(SearchCuda, SharedSumsSmallVideo) {
  // One small call per distance through the shared-sums forward (two blocks per frame,
  // 40 px flows: several chunks): small enough for compute-sanitizer's racecheck.
  REQUIRE_GPU();
  Case c;
  c.T = 2, c.H = 10, c.W = 20, c.C = 16, c.flow_std = 40.0;
  c.p.ws = 7, c.p.wt = 1, c.p.ps = 5, c.p.k = 10, c.p.stride0 = 1;
  check_case<float>(c, 90);
  c.p.dist_type = DistType::L2, c.p.remove_self = true;
  check_case<float>(c, 91);
}

TEST(SearchCuda, SharedSumsLargeFrames) {
  // Many blocks per frame (tiles at the right and bottom edges partly outside the grid),
  // S3's shape at a smaller size, with small flows (one chunk) and 40 px flows (boxes of
  // more offset rows than the kernel tracks one by one, and several chunks).
  REQUIRE_GPU();
  for (double flow_std : {2.0, 40.0}) {
    Case c;
    c.T = 3, c.H = 80, c.W = 60, c.C = 32, c.flow_std = flow_std;
    c.p.ws = 9, c.p.wt = 1, c.p.ps = 7, c.p.k = 10, c.p.nheads = 2, c.p.stride0 = 1;
    check_both_layouts<float>(c, 80);
    c.p.dist_type = DistType::L2, c.p.k = 16, c.p.remove_self = true, c.p.reflect_bounds = false;
    check_both_layouts<float>(c, 81);
  }
}

TEST(SearchCuda, BlockSharedWindows) {
  // Videos large enough for many blocks of queries, with small flows and with flows that
  // scatter neighbouring queries' windows across the frame (and clamp them at its edges),
  // on the fast and the general path.
  REQUIRE_GPU();
  for (double flow_std : {1.5, 40.0}) {
    Case c;
    c.T = 4, c.H = 37, c.W = 45, c.C = 16, c.flow_std = flow_std;
    c.p.ws = 5, c.p.wt = 2, c.p.ps = 3, c.p.k = 10, c.p.nheads = 2, c.p.stride0 = 1;
    check_case<float>(c, 8);  // fast path, 8 channels
    c.p.ps = 1, c.p.ws = 9, c.p.k = 16, c.p.nheads = 1;
    check_case<float>(c, 9);  // fast path, 16 channels, ps = 1
    c.C = 10, c.p.nheads = 2, c.p.ps = 3, c.p.ws = 7, c.p.stride0 = 2;
    c.p.dist_type = DistType::L2, c.p.anchor_self = true;
    check_case<float>(c, 10);  // general path (5 channels)
    check_case<double>(c, 11);
    c.p.stride1 = 2, c.p.dilation = 2, c.p.anchor_self = false, c.p.remove_self = true, c.p.reflect_bounds = false;
    check_case<float>(c, 12);
  }
}

TEST(SearchCuda, ChunkedBackward) {
  // Backwards whose inverse lists would need more than 64 MiB (and more than the
  // gradients' size) run in chunks of (batch, head) slices of at most 16 MiB each,
  // reusing one workspace: here 3 x 3 slices of 0.44M pairs (chunks of 2 heads, then 1),
  // then 2 x 3 slices of 0.88M pairs (one head per chunk).
  REQUIRE_GPU();
  Case c;
  c.B = 3, c.T = 3, c.C = 12, c.H = 68, c.W = 68;
  c.p.ws = 9, c.p.wt = 1, c.p.ps = 3, c.p.k = 32, c.p.nheads = 3, c.p.stride0 = 1;
  check_case<float>(c, 13);  // fast path (4 channels per head)
  EXPECT_LE(last_workspace_bytes, size_t(16) << 20);
  c.B = 2, c.H = c.W = 96;
  c.p.dist_type = DistType::L2, c.p.reflect_bounds = false, c.p.ps = 1;
  check_case<double>(c, 14);  // general path
  EXPECT_LE(last_workspace_bytes, size_t(16) << 20);
}

TEST(SearchCuda, GlobalMemoryPath) {
  // A window tile too large for shared memory reads vid1 from global memory.
  REQUIRE_GPU();
  Case c;
  c.T = 2, c.H = 70, c.W = 75, c.C = 4;
  c.p.ws = -1, c.p.wt = 0, c.p.ps = 3, c.p.k = 5, c.p.stride0 = 16;
  check_case<float>(c, 5);
  c.p.dist_type = DistType::L2, c.p.anchor_self = true, c.p.k = 40;
  check_case<double>(c, 6);
}

TEST(SearchCuda, CallerStream) {
  REQUIRE_GPU();
  cudaStream_t s = nullptr;
  CUDA_OK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  Case c;
  c.T = 3, c.H = 16, c.W = 16, c.C = 8;
  c.p.ws = 5, c.p.wt = 1, c.p.ps = 3, c.p.k = 8, c.p.nheads = 2, c.p.stride0 = 1;
  check_case<float>(c, 7, s);
  CUDA_OK(cudaStreamDestroy(s));
}

TEST(SearchCuda, WorkspaceTooSmallIsAnError) {
  REQUIRE_GPU();
  const Device gpu{DeviceKind::CUDA, 0};
  DevBuf<float> v(1 * 1 * 1 * 4 * 4), d(16), g0(16), g1(16);
  DevBuf<int32_t> i(16 * 3);
  SearchParams p;
  p.ws = 3, p.ps = 1, p.k = 1, p.stride0 = 1;
  ConstView vv = make_view<const void>(v.p, DType::Float32, {1, 1, 1, 4, 4}, gpu);
  ConstView iv = make_view<const void>(i.p, DType::Int32, {1, 1, 16, 1, 3}, gpu);
  ASSERT_GT(search_backward_workspace_size(p, vv, vv, iv), 0u);
  EXPECT_THROW(search_backward(p, make_view<const void>(d.p, DType::Float32, {1, 1, 16, 1}, gpu), iv, vv, vv,
                               make_view<void>(g0.p, DType::Float32, {1, 1, 1, 4, 4}, gpu),
                               make_view<void>(g1.p, DType::Float32, {1, 1, 1, 4, 4}, gpu), nullptr, 0),
               ValueError);
}

TEST(SearchCuda, MisalignedWorkspaceIsAnError) {
  // The fixed-point path (this small float32 call) and the gather (with it off) both refuse
  // a workspace that is not 16-byte aligned, before launching anything.
  REQUIRE_GPU();
  const Device gpu{DeviceKind::CUDA, 0};
  DevBuf<float> v(4 * 4), d(16), g0(16), g1(16);
  DevBuf<int32_t> i(16 * 3);
  SearchParams p;
  p.ws = 3, p.ps = 1, p.k = 1, p.stride0 = 1;
  ConstView vv = make_view<const void>(v.p, DType::Float32, {1, 1, 1, 4, 4}, gpu);
  ConstView iv = make_view<const void>(i.p, DType::Int32, {1, 1, 16, 1, 3}, gpu);
  auto run = [&] {
    const size_t wsb = search_backward_workspace_size(p, vv, vv, iv);
    DevBuf<char> ws(wsb + 16);
    search_backward(p, make_view<const void>(d.p, DType::Float32, {1, 1, 16, 1}, gpu), iv, vv, vv,
                    make_view<void>(g0.p, DType::Float32, {1, 1, 1, 4, 4}, gpu),
                    make_view<void>(g1.p, DType::Float32, {1, 1, 1, 4, 4}, gpu), ws.p + 4, wsb + 12);
  };
  EXPECT_THROW(run(), ValueError);
  FixedPointOff gather;
  EXPECT_THROW(run(), ValueError);
}

TEST(SearchCuda, ForwardWorkspaceChecked) {
  // A forward workspace smaller than search_forward_workspace_size or not 16-byte aligned
  // is refused before anything runs (a ring plan forced on a small 32-channel call).
  REQUIRE_GPU();
  const Device gpu{DeviceKind::CUDA, 0};
  DevBuf<float> v(1 * 2 * 32 * 8 * 8), d(2 * 64 * 4);
  DevBuf<int32_t> i(2 * 64 * 4 * 3);
  SearchParams p;
  p.ws = 5, p.wt = 1, p.ps = 3, p.k = 4, p.stride0 = 1;
  ConstView vv = make_view<const void>(v.p, DType::Float32, {1, 2, 32, 8, 8}, gpu);
  cuda::set_forward_bands(1000, 0);
  const size_t wsf = search_forward_workspace_size(p, vv, vv);
  cuda::set_forward_bands(0, 0);
  ASSERT_GT(wsf, 0u);
  DevBuf<char> ws(wsf + 16);
  auto run = [&](char* w, size_t bytes) {
    cuda::set_forward_bands(1000, 0);
    try {
      search_forward(p, vv, vv, ConstView{}, ConstView{}, make_view<void>(d.p, DType::Float32, {1, 1, 128, 4}, gpu),
                     make_view<void>(i.p, DType::Int32, {1, 1, 128, 4, 3}, gpu), w, bytes);
    } catch (...) {
      cuda::set_forward_bands(0, 0);
      throw;
    }
    cuda::set_forward_bands(0, 0);
  };
  EXPECT_THROW(run(ws.p, wsf - 1), ValueError);
  EXPECT_THROW(run(ws.p + 4, wsf), ValueError);
  EXPECT_NO_THROW(run(ws.p, wsf));
}

TEST(SearchCuda, Available) { EXPECT_TRUE(cuda_available()); }

}  // namespace
