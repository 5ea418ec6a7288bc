// The CUDA backend of the patch ops (tile.h) and of the weighted patch sum (agg.h) against
// the CPU backend on random inputs, over a product of parameters: unfold / unfold_k
// bitwise equal, the folds and the sums within rounding, every output element written,
// deterministic mode bitwise repeatable, atomic mode close; strided inputs on a caller's
// stream; a short workspace rejected. Skipped, visibly, on a machine without a CUDA device.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "stnls/agg.h"
#include "stnls/error.h"
#include "stnls/tile.h"

using namespace stnls;

namespace {

bool gpu_present() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}
#define REQUIRE_CUDA_DEVICE() \
  if (!gpu_present()) GTEST_SKIP() << "no CUDA device"

// Device memory holding a copy of a host vector (freed on scope exit).
template <class T>
struct Dev {
  T* p = nullptr;
  size_t n = 0;
  explicit Dev(size_t count) : n(count) {
    if (cudaMalloc(&p, std::max<size_t>(1, n) * sizeof(T)) != cudaSuccess) p = nullptr;
  }
  explicit Dev(const std::vector<T>& v) : Dev(v.size()) {
    if (p) cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice);
  }
  ~Dev() { cudaFree(p); }
  std::vector<T> get() const {
    std::vector<T> v(n);
    cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
  }
  void set(const std::vector<T>& v) { cudaMemcpy(p, v.data(), n * sizeof(T), cudaMemcpyHostToDevice); }
  Dev(const Dev&) = delete;
  Dev& operator=(const Dev&) = delete;
};

template <class T>
constexpr DType dtype_of() {
  return sizeof(T) == 4 ? DType::Float32 : DType::Float64;
}

const Device kCpu{};
const Device kGpu{DeviceKind::CUDA, 0};

// A view with the given shape and strides (elements).
template <class D>
BasicView<D> strided(D* data, DType dt, std::vector<int64_t> shape, std::vector<int64_t> strides, Device dev) {
  BasicView<D> v;
  v.data = data;
  v.dtype = dt;
  v.ndim = static_cast<int>(shape.size());
  for (int i = 0; i < v.ndim; ++i) v.shape[i] = shape[i], v.strides[i] = strides[i];
  v.device = dev;
  return v;
}
template <class D>
BasicView<D> contiguous(D* data, DType dt, std::vector<int64_t> shape, Device dev) {
  std::vector<int64_t> st(shape.size());
  int64_t s = 1;
  for (int i = static_cast<int>(shape.size()) - 1; i >= 0; --i) st[i] = s, s *= shape[i];
  return strided(data, dt, shape, st, dev);
}

// Elements off the reference by more than tol * (1 + max |ref|); reports the first.
template <class T>
void expect_close(const std::vector<T>& ref, const std::vector<T>& got, const char* what) {
  ASSERT_EQ(ref.size(), got.size()) << what;
  double scale = 0;
  for (T x : ref) scale = std::max(scale, std::abs(double(x)));
  const double tol = (sizeof(T) == 4 ? 1e-4 : 1e-11) * (1 + scale);
  size_t bad = 0, first = ref.size();
  for (size_t i = 0; i < ref.size(); ++i)
    if (!(std::abs(double(ref[i]) - double(got[i])) <= tol)) {
      ++bad;
      if (first == ref.size()) first = i;
    }
  EXPECT_EQ(bad, 0u) << what << ": elements off the CPU (tol " << tol << "), first at " << first
                     << (first < ref.size() ? ": cpu " + std::to_string(double(ref[first])) + " cuda " +
                                                  std::to_string(double(got[first]))
                                            : "");
}
template <class T>
void expect_bitwise(const std::vector<T>& a, const std::vector<T>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i) bad += std::memcmp(&a[i], &b[i], sizeof(T)) != 0;
  EXPECT_EQ(bad, 0u) << what << ": elements not bitwise equal";
}

// One configuration of the product.
struct Cfg {
  int ps = 3, stride0 = 2, pt = 1, dilation = 1;
  bool reflect = true;
  bool six_d = false;   // videos passed as (B, HD, T, C/HD, H, W)
  bool f64 = false;
  int C = 10;           // channels of the whole video (HD = 2 heads for the neighbour ops)
  bool small = false;   // 3 x 4 frames: taps still outside after one reflection
};

std::string name_of(const Cfg& c) {
  std::ostringstream s;
  s << "ps" << c.ps << "_s" << c.stride0 << "_pt" << c.pt << "_d" << c.dilation << (c.reflect ? "_refl" : "_zero")
    << (c.six_d ? "_6d" : "_5d") << (c.f64 ? "_f64" : "_f32") << "_C" << c.C << (c.small ? "_small" : "_mid");
  return s.str();
}

// Random inds [B, HD, Q, K, 3]: mostly valid locations, some clustered in a corner (heavy
// overlap), some -1 padding and some out of range (both must add nothing).
std::vector<int32_t> random_inds(std::mt19937& rng, int64_t n, int64_t T, int64_t H, int64_t W) {
  std::vector<int32_t> inds(n * 3);
  std::uniform_int_distribution<int> kind(0, 9), ut(0, T - 1), uh(0, H - 1), uw(0, W - 1), u2(0, 1);
  for (int64_t e = 0; e < n; ++e) {
    int32_t* x = &inds[e * 3];
    const int k = kind(rng);
    x[0] = ut(rng), x[1] = uh(rng), x[2] = uw(rng);
    if (k == 0) {
      x[0] = x[1] = x[2] = -1;
    } else if (k == 1) {
      const int which = u2(rng);
      if (which == 0) x[1] = static_cast<int32_t>(H + 1);
      else x[2] = -2;
    } else if (k <= 4) {  // corner cluster
      x[1] = u2(rng), x[2] = u2(rng);
    }
  }
  return inds;
}

template <class T>
std::vector<T> random_vec(std::mt19937& rng, size_t n) {
  std::normal_distribution<double> nd(0.0, 1.0);
  std::vector<T> v(n);
  for (auto& x : v) x = T(nd(rng));
  return v;
}

// Runs one op's check; an error thrown by the library fails that op alone.
template <class F>
void op(const char* name, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    ADD_FAILURE() << name << " threw: " << e.what();
  }
}

template <class T>
void check_all_ops(const Cfg& c, uint32_t seed) {
  SCOPED_TRACE(name_of(c));
  const DType dt = dtype_of<T>();
  std::mt19937 rng(seed);
  const int64_t B = 2, HD = 2, Tn = 3, H = c.small ? 3 : 9, W = c.small ? 4 : 10, K = 5, C = c.C, Ch = C / HD;
  const int64_t nH = (H - 1) / c.stride0 + 1, nW = (W - 1) / c.stride0 + 1, Q = Tn * nH * nW;
  const int64_t nv = B * Tn * C * H * W;
  TileParams tp;
  tp.ps = c.ps, tp.stride0 = c.stride0, tp.pt = c.pt, tp.dilation = c.dilation, tp.reflect_bounds = c.reflect;
  AggParams ap;
  ap.ps = c.ps, ap.stride0 = c.stride0, ap.pt = c.pt, ap.dilation = c.dilation, ap.reflect_bounds = c.reflect;

  // Video shapes: neighbour ops split C into HD heads; unfold/fold use one head (5-d) or
  // the 6-d head dimension.
  const std::vector<int64_t> vshape =
      c.six_d ? std::vector<int64_t>{B, HD, Tn, Ch, H, W} : std::vector<int64_t>{B, Tn, C, H, W};
  const std::vector<int64_t> pshape = c.six_d ? std::vector<int64_t>{B, HD, Q, c.pt, Ch, c.ps, c.ps}
                                              : std::vector<int64_t>{B, Q, c.pt, C, c.ps, c.ps};
  const int64_t np = B * Q * c.pt * C * c.ps * c.ps;
  const std::vector<int64_t> kshape{B, HD, Q, K, c.pt, Ch, c.ps, c.ps};
  const int64_t nkp = B * HD * Q * K * c.pt * Ch * c.ps * c.ps;
  const std::vector<int64_t> wshape{B, HD, Q, K}, ishape{B, HD, Q, K, 3};
  const int64_t nw = B * HD * Q * K;

  const std::vector<T> vid = random_vec<T>(rng, nv), pin = random_vec<T>(rng, np), kin = random_vec<T>(rng, nkp);
  const std::vector<T> wts = random_vec<T>(rng, nw), gout = random_vec<T>(rng, nv);
  const std::vector<int32_t> inds = random_inds(rng, nw, Tn, H, W);
  Dev<T> d_vid(vid), d_pin(pin), d_kin(kin), d_wts(wts), d_gout(gout);
  Dev<int32_t> d_inds(inds);
  ASSERT_TRUE(d_vid.p && d_pin.p && d_kin.p && d_wts.p && d_gout.p && d_inds.p);
  const std::vector<T> poison_v(nv, T(-12345)), poison_p(np, T(-12345)), poison_k(nkp, T(-12345)),
      poison_w(nw, T(-12345));

  auto cv = [&](const T* p, Device d, const std::vector<int64_t>& s) { return contiguous<const void>(p, dt, s, d); };
  auto mv = [&](T* p, Device d, const std::vector<int64_t>& s) { return contiguous<void>(p, dt, s, d); };
  const ConstView h_inds = contiguous<const void>(inds.data(), DType::Int32, ishape, kCpu);
  const ConstView g_inds = contiguous<const void>(d_inds.p, DType::Int32, ishape, kGpu);

  // unfold: bitwise.
  op("unfold", [&] {
    std::vector<T> ref(np);
    unfold(tp, cv(vid.data(), kCpu, vshape), mv(ref.data(), kCpu, pshape));
    Dev<T> out(poison_p);
    unfold(tp, cv(d_vid.p, kGpu, vshape), mv(out.p, kGpu, pshape));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expect_bitwise(ref, out.get(), "unfold");
  });
  // fold: close, and bitwise repeatable.
  op("fold", [&] {
    std::vector<T> ref(nv);
    fold(tp, cv(pin.data(), kCpu, pshape), mv(ref.data(), kCpu, vshape));
    std::vector<T> run[2];
    for (int r = 0; r < 2; ++r) {
      Dev<T> out(poison_v);
      fold(tp, cv(d_pin.p, kGpu, pshape), mv(out.p, kGpu, vshape));
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      run[r] = out.get();
    }
    expect_close(ref, run[0], "fold");
    expect_bitwise(run[0], run[1], "fold repeat");
  });

  // The neighbour ops take the whole video with HD heads (5-d: C split; 6-d: as is).
  // unfold_k: bitwise.
  op("unfold_k", [&] {
    std::vector<T> ref(nkp);
    unfold_k(tp, cv(vid.data(), kCpu, vshape), h_inds, mv(ref.data(), kCpu, kshape));
    Dev<T> out(poison_k);
    unfold_k(tp, cv(d_vid.p, kGpu, vshape), g_inds, mv(out.p, kGpu, kshape));
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    expect_bitwise(ref, out.get(), "unfold_k");
  });
  // fold_k: deterministic (close, bitwise repeatable) and atomic (close).
  op("fold_k", [&] {
    std::vector<T> ref(nv);
    fold_k(tp, cv(kin.data(), kCpu, kshape), h_inds, mv(ref.data(), kCpu, vshape));
    for (bool det : {true, false}) {
      TileParams q = tp;
      q.deterministic = det;
      std::vector<T> run[2];
      for (int r = 0; r < 2; ++r) {
        Dev<T> out(poison_v);
        const View o = mv(out.p, kGpu, vshape);
        const size_t wsb = fold_k_workspace_size(q, cv(d_kin.p, kGpu, kshape), g_inds, as_const(o));
        if (!det) EXPECT_EQ(wsb, 0u);
        Dev<char> ws(wsb);
        fold_k(q, cv(d_kin.p, kGpu, kshape), g_inds, o, ws.p, wsb);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        run[r] = out.get();
      }
      expect_close(ref, run[0], det ? "fold_k deterministic" : "fold_k atomic");
      if (det) expect_bitwise(run[0], run[1], "fold_k repeat");
    }
  });
  // wpsum forward: close, bitwise repeatable.
  op("wpsum forward", [&] {
    std::vector<T> ref(nv);
    wpsum_forward(ap, cv(vid.data(), kCpu, vshape), cv(wts.data(), kCpu, wshape), h_inds,
                  mv(ref.data(), kCpu, vshape));
    std::vector<T> run[2];
    for (int r = 0; r < 2; ++r) {
      Dev<T> out(poison_v);
      wpsum_forward(ap, cv(d_vid.p, kGpu, vshape), cv(d_wts.p, kGpu, wshape), g_inds, mv(out.p, kGpu, vshape));
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      run[r] = out.get();
    }
    expect_close(ref, run[0], "wpsum_forward");
    expect_bitwise(run[0], run[1], "wpsum_forward repeat");
  });
  // wpsum backward: deterministic (close, bitwise repeatable) and atomic (close).
  op("wpsum backward", [&] {
    std::vector<T> ref_v(nv), ref_w(nw);
    wpsum_backward(ap, cv(gout.data(), kCpu, vshape), cv(vid.data(), kCpu, vshape), cv(wts.data(), kCpu, wshape),
                   h_inds, mv(ref_v.data(), kCpu, vshape), mv(ref_w.data(), kCpu, wshape));
    for (bool det : {true, false}) {
      AggParams q = ap;
      q.deterministic = det;
      std::vector<T> rv[2], rw[2];
      for (int r = 0; r < 2; ++r) {
        Dev<T> gv(poison_v), gw(poison_w);
        const size_t wsb =
            wpsum_backward_workspace_size(q, cv(d_vid.p, kGpu, vshape), cv(d_wts.p, kGpu, wshape), g_inds);
        Dev<char> ws(wsb);
        wpsum_backward(q, cv(d_gout.p, kGpu, vshape), cv(d_vid.p, kGpu, vshape), cv(d_wts.p, kGpu, wshape), g_inds,
                       mv(gv.p, kGpu, vshape), mv(gw.p, kGpu, wshape), ws.p, wsb);
        ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
        rv[r] = gv.get();
        rw[r] = gw.get();
      }
      expect_close(ref_v, rv[0], det ? "wpsum grad_vid deterministic" : "wpsum grad_vid atomic");
      expect_close(ref_w, rw[0], det ? "wpsum grad_weights deterministic" : "wpsum grad_weights atomic");
      expect_bitwise(rw[0], rw[1], "wpsum grad_weights repeat");
      if (det) expect_bitwise(rv[0], rv[1], "wpsum grad_vid repeat");
    }
  });
}

// Instances over the patch geometry; each runs every combination of the remaining
// parameters (one process per instance under ctest keeps the CUDA start-ups few).
using Grid = std::tuple<int, int, int, int>;  // ps, stride0, pt, dilation

class PatchesCuda : public ::testing::TestWithParam<Grid> {};

std::string grid_name(const ::testing::TestParamInfo<Grid>& info) {
  std::ostringstream s;
  s << "ps" << std::get<0>(info.param) << "_s" << std::get<1>(info.param) << "_pt" << std::get<2>(info.param)
    << "_d" << std::get<3>(info.param);
  return s.str();
}

TEST_P(PatchesCuda, MatchesCpu) {
  REQUIRE_CUDA_DEVICE();
  Cfg c;
  std::tie(c.ps, c.stride0, c.pt, c.dilation) = GetParam();
  for (bool reflect : {true, false})
    for (bool six_d : {false, true})
      for (bool f64 : {false, true})
        for (int C : {2, 10, 20, 36})  // 1, 5, 10, 18 per head: every channel-group width
          for (bool small : {false, true}) {
            c.reflect = reflect, c.six_d = six_d, c.f64 = f64, c.C = C, c.small = small;
            const uint32_t seed = static_cast<uint32_t>(std::hash<std::string>()(name_of(c)));
            if (c.f64) check_all_ops<double>(c, seed);
            else check_all_ops<float>(c, seed);
          }
}

INSTANTIATE_TEST_SUITE_P(Grid, PatchesCuda,
                         ::testing::Combine(::testing::Values(1, 3, 4),  // ps
                                            ::testing::Values(1, 2, 3),  // stride0
                                            ::testing::Values(1, 2),     // pt
                                            ::testing::Values(1, 2)),    // dilation
                         grid_name);

// Every (q, k) of a query grid points at one of two pixels: lists thousands long, each
// output pixel summing many entries. Deterministic runs must repeat bit for bit.
TEST(PatchesCudaSpecial, HeavyOverlapRepeatable) {
  REQUIRE_CUDA_DEVICE();
  const int64_t B = 1, HD = 1, Tn = 2, C = 4, H = 16, W = 16, K = 16;
  AggParams ap;
  ap.ps = 5, ap.stride0 = 1;
  const int64_t Q = Tn * H * W, nv = B * Tn * C * H * W, nw = B * HD * Q * K;
  std::mt19937 rng(7);
  const std::vector<float> vid = random_vec<float>(rng, nv), wts = random_vec<float>(rng, nw),
                           gout = random_vec<float>(rng, nv);
  std::vector<int32_t> inds(nw * 3);
  for (int64_t e = 0; e < nw; ++e) inds[e * 3] = 0, inds[e * 3 + 1] = 1, inds[e * 3 + 2] = static_cast<int32_t>(e % 2);
  const std::vector<int64_t> vshape{B, Tn, C, H, W}, wshape{B, HD, Q, K}, ishape{B, HD, Q, K, 3};
  Dev<float> d_vid(vid), d_wts(wts), d_gout(gout);
  Dev<int32_t> d_inds(inds);
  const ConstView gv = contiguous<const void>(d_vid.p, DType::Float32, vshape, kGpu);
  const ConstView gw = contiguous<const void>(d_wts.p, DType::Float32, wshape, kGpu);
  const ConstView gg = contiguous<const void>(d_gout.p, DType::Float32, vshape, kGpu);
  const ConstView gi = contiguous<const void>(d_inds.p, DType::Int32, ishape, kGpu);
  std::vector<float> ref_v(nv), ref_w(nw);
  wpsum_backward(ap, contiguous<const void>(gout.data(), DType::Float32, vshape, kCpu),
                 contiguous<const void>(vid.data(), DType::Float32, vshape, kCpu),
                 contiguous<const void>(wts.data(), DType::Float32, wshape, kCpu),
                 contiguous<const void>(inds.data(), DType::Int32, ishape, kCpu),
                 contiguous<void>(ref_v.data(), DType::Float32, vshape, kCpu),
                 contiguous<void>(ref_w.data(), DType::Float32, wshape, kCpu));
  std::vector<float> rv[3];
  for (int r = 0; r < 3; ++r) {
    Dev<float> ov(nv), ow(nw);
    const size_t wsb = wpsum_backward_workspace_size(ap, gv, gw, gi);
    Dev<char> ws(wsb);
    wpsum_backward(ap, gg, gv, gw, gi, contiguous<void>(ov.p, DType::Float32, vshape, kGpu),
                   contiguous<void>(ow.p, DType::Float32, wshape, kGpu), ws.p, wsb);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    rv[r] = ov.get();
  }
  expect_close(ref_v, rv[0], "grad_vid");
  expect_bitwise(rv[0], rv[1], "grad_vid repeat 1");
  expect_bitwise(rv[0], rv[2], "grad_vid repeat 2");
}

// Channels-last videos, transposed weights and inds, all on a caller's stream (float: the
// pixel-major wpsum backward; double: the general path).
template <class T>
void strided_on_stream() {
  const int64_t B = 2, HD = 2, Tn = 3, C = 6, H = 7, W = 9, K = 4;
  AggParams ap;
  ap.ps = 3, ap.stride0 = 2, ap.pt = 2, ap.dilation = 2;
  TileParams tp;
  tp.ps = 3, tp.stride0 = 2, tp.pt = 2, tp.dilation = 2;
  const int64_t nH = (H - 1) / 2 + 1, nW = (W - 1) / 2 + 1, Q = Tn * nH * nW;
  const int64_t nv = B * Tn * C * H * W, nw = B * HD * Q * K;
  std::mt19937 rng(11);
  const std::vector<T> vid = random_vec<T>(rng, nv), wts = random_vec<T>(rng, nw),
                            gout = random_vec<T>(rng, nv);
  const std::vector<int32_t> inds = random_inds(rng, nw, Tn, H, W);
  // Video memory (B, T, H, W, C); weights memory (B, HD, K, Q); inds memory (3, B, HD, Q, K).
  const std::vector<int64_t> vshape{B, Tn, C, H, W}, vstr{Tn * H * W * C, H * W * C, 1, W * C, C};
  const std::vector<int64_t> wshape{B, HD, Q, K}, wstr{HD * K * Q, K * Q, 1, Q};
  const std::vector<int64_t> ishape{B, HD, Q, K, 3}, istr{HD * Q * K, Q * K, K, 1, B * HD * Q * K};
  std::vector<T> vid_cl(nv), gout_cl(nv), wts_t(nw);
  std::vector<int32_t> inds_t(nw * 3);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t t = 0; t < Tn; ++t)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t y = 0; y < H; ++y)
          for (int64_t x = 0; x < W; ++x) {
            const int64_t i = (((b * Tn + t) * C + c) * H + y) * W + x;
            const int64_t j = b * vstr[0] + t * vstr[1] + c * vstr[2] + y * vstr[3] + x * vstr[4];
            vid_cl[j] = vid[i], gout_cl[j] = gout[i];
          }
  for (int64_t e = 0; e < nw; ++e) {
    const int64_t k = e % K, q = (e / K) % Q, bh = e / (K * Q);
    wts_t[bh * K * Q + k * Q + q] = wts[e];
    for (int d = 0; d < 3; ++d) inds_t[d * nw + e] = inds[e * 3 + d];
  }
  const DType f64 = dtype_of<T>();
  const ConstView h_vid = contiguous<const void>(vid.data(), f64, vshape, kCpu);
  const ConstView h_gout = contiguous<const void>(gout.data(), f64, vshape, kCpu);
  const ConstView h_wts = contiguous<const void>(wts.data(), f64, wshape, kCpu);
  const ConstView h_inds = contiguous<const void>(inds.data(), DType::Int32, ishape, kCpu);
  Dev<T> d_vid(vid_cl), d_gout(gout_cl), d_wts(wts_t);
  Dev<int32_t> d_inds(inds_t);
  const ConstView g_vid = strided<const void>(d_vid.p, f64, vshape, vstr, kGpu);
  const ConstView g_gout = strided<const void>(d_gout.p, f64, vshape, vstr, kGpu);
  const ConstView g_wts = strided<const void>(d_wts.p, f64, wshape, wstr, kGpu);
  const ConstView g_inds = strided<const void>(d_inds.p, DType::Int32, ishape, istr, kGpu);
  cudaStream_t stream;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);

  // Outputs channels-last too; read back and transposed to (B, T, C, H, W).
  auto to_bcthw = [&](const std::vector<T>& cl) {
    std::vector<T> v(nv);
    for (int64_t i = 0; i < nv; ++i) {
      const int64_t x = i % W, y = (i / W) % H, c = (i / (W * H)) % C, t = (i / (W * H * C)) % Tn, b = i / (W * H * C * Tn);
      v[i] = cl[b * vstr[0] + t * vstr[1] + c * vstr[2] + y * vstr[3] + x * vstr[4]];
    }
    return v;
  };
  {
    std::vector<T> ref(nv);
    wpsum_forward(ap, h_vid, h_wts, h_inds, contiguous<void>(ref.data(), f64, vshape, kCpu));
    Dev<T> out(std::vector<T>(nv, -12345.0));
    wpsum_forward(ap, g_vid, g_wts, g_inds, strided<void>(out.p, f64, vshape, vstr, kGpu), stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    expect_close(ref, to_bcthw(out.get()), "strided wpsum_forward");
  }
  {
    std::vector<T> ref_v(nv), ref_w(nw);
    wpsum_backward(ap, h_gout, h_vid, h_wts, h_inds, contiguous<void>(ref_v.data(), f64, vshape, kCpu),
                   contiguous<void>(ref_w.data(), f64, wshape, kCpu));
    Dev<T> ov(std::vector<T>(nv, -12345.0)), ow(std::vector<T>(nw, -12345.0));
    const size_t wsb = wpsum_backward_workspace_size(ap, g_vid, g_wts, g_inds);
    Dev<char> ws(wsb);
    wpsum_backward(ap, g_gout, g_vid, g_wts, g_inds, strided<void>(ov.p, f64, vshape, vstr, kGpu),
                   strided<void>(ow.p, f64, wshape, wstr, kGpu), ws.p, wsb, stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    expect_close(ref_v, to_bcthw(ov.get()), "strided grad_vid");
    const std::vector<T> gw_t = ow.get();
    std::vector<T> gw(nw);
    for (int64_t e = 0; e < nw; ++e) gw[e] = gw_t[(e / (K * Q)) * K * Q + (e % K) * Q + (e / K) % Q];
    expect_close(ref_w, gw, "strided grad_weights");
  }
  {
    // unfold_k then fold_k through channels-last videos and strided inds.
    const std::vector<int64_t> kshape{B, HD, Q, K, 2, C / HD, 3, 3};
    const int64_t nkp = B * HD * Q * K * 2 * (C / HD) * 9;
    std::vector<T> ref(nkp), ref_f(nv);
    unfold_k(tp, h_vid, h_inds, contiguous<void>(ref.data(), f64, kshape, kCpu));
    fold_k(tp, contiguous<const void>(ref.data(), f64, kshape, kCpu), h_inds,
           contiguous<void>(ref_f.data(), f64, vshape, kCpu));
    Dev<T> pk(std::vector<T>(nkp, -12345.0)), of(std::vector<T>(nv, -12345.0));
    unfold_k(tp, g_vid, g_inds, contiguous<void>(pk.p, f64, kshape, kGpu), stream);
    const View o = strided<void>(of.p, f64, vshape, vstr, kGpu);
    const ConstView pkv = contiguous<const void>(pk.p, f64, kshape, kGpu);
    const size_t wsb = fold_k_workspace_size(tp, pkv, g_inds, as_const(o));
    Dev<char> ws(wsb);
    fold_k(tp, pkv, g_inds, o, ws.p, wsb, stream);
    ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
    expect_bitwise(ref, pk.get(), "strided unfold_k");
    expect_close(ref_f, to_bcthw(of.get()), "strided fold_k");
  }
  cudaStreamDestroy(stream);
}

TEST(PatchesCudaSpecial, StridedOnStream) {
  REQUIRE_CUDA_DEVICE();
  strided_on_stream<double>();
  strided_on_stream<float>();
}

// A deterministic wpsum backward whose lists would need more than 64 MiB (and more than the
// gradients' size) runs per (batch, head) slice reusing one workspace: 2 x 3 slices of
// 0.88M pairs (float: one head per chunk; double: one batch entry per chunk). Float takes the pixel-major path, double the general one.
template <class T>
void chunked_wpsum_backward(uint32_t seed) {
  const int64_t B = 2, HD = 3, Tn = 3, C = 12, H = 96, W = 96, K = 32, Q = Tn * H * W;
  AggParams ap;
  ap.ps = 3, ap.stride0 = 1;
  const int64_t nv = B * Tn * C * H * W, nw = B * HD * Q * K;
  std::mt19937 rng(seed);
  const std::vector<T> vid = random_vec<T>(rng, nv), wts = random_vec<T>(rng, nw), gout = random_vec<T>(rng, nv);
  const std::vector<int32_t> inds = random_inds(rng, nw, Tn, H, W);
  const std::vector<int64_t> vshape{B, Tn, C, H, W}, wshape{B, HD, Q, K}, ishape{B, HD, Q, K, 3};
  const DType dt = dtype_of<T>();
  std::vector<T> ref_v(nv), ref_w(nw);
  wpsum_backward(ap, contiguous<const void>(gout.data(), dt, vshape, kCpu),
                 contiguous<const void>(vid.data(), dt, vshape, kCpu),
                 contiguous<const void>(wts.data(), dt, wshape, kCpu),
                 contiguous<const void>(inds.data(), DType::Int32, ishape, kCpu),
                 contiguous<void>(ref_v.data(), dt, vshape, kCpu), contiguous<void>(ref_w.data(), dt, wshape, kCpu));
  Dev<T> d_vid(vid), d_wts(wts), d_gout(gout), ov(std::vector<T>(nv, T(-12345))), ow(std::vector<T>(nw, T(-12345)));
  Dev<int32_t> d_inds(inds);
  const ConstView gv = contiguous<const void>(d_vid.p, dt, vshape, kGpu);
  const ConstView gw = contiguous<const void>(d_wts.p, dt, wshape, kGpu);
  const ConstView gi = contiguous<const void>(d_inds.p, DType::Int32, ishape, kGpu);
  const size_t wsb = wpsum_backward_workspace_size(ap, gv, gw, gi);
  // The whole call's lists alone take 16 bytes x 5.3M pairs = 85 MB; a chunk stays within
  // max(16 MiB, the gradients: 24 MB in float, 48 MB in double).
  EXPECT_LE(wsb, std::max(size_t(16) << 20, static_cast<size_t>(nv + nw) * sizeof(T)));
  Dev<char> ws(wsb);
  wpsum_backward(ap, contiguous<const void>(d_gout.p, dt, vshape, kGpu), gv, gw, gi,
                 contiguous<void>(ov.p, dt, vshape, kGpu), contiguous<void>(ow.p, dt, wshape, kGpu), ws.p, wsb);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_close(ref_v, ov.get(), "chunked grad_vid");
  expect_close(ref_w, ow.get(), "chunked grad_weights");
}

TEST(PatchesCudaSpecial, ChunkedWpsumBackward) {
  REQUIRE_CUDA_DEVICE();
  chunked_wpsum_backward<float>(21);
  chunked_wpsum_backward<double>(22);
}

// fold_k with lists too large for one workspace (2 x 2 slices of 2.1M pairs: 134 MB of
// lists for a 0.5 MB output) runs per (batch, head) slice within one slice's workspace,
// with the CPU's result.
TEST(PatchesCudaSpecial, ChunkedFoldK) {
  REQUIRE_CUDA_DEVICE();
  const int64_t B = 2, HD = 2, Tn = 2, C = 2, H = 128, W = 128, K = 64, Q = Tn * H * W;
  TileParams tp;
  const int64_t nv = B * Tn * C * H * W, np = B * HD * Q * K * C / HD;
  std::mt19937 rng(23);
  const std::vector<float> pk = random_vec<float>(rng, np);
  const std::vector<int32_t> inds = random_inds(rng, B * HD * Q * K, Tn, H, W);
  const std::vector<int64_t> vshape{B, Tn, C, H, W}, kshape{B, HD, Q, K, 1, C / HD, 1, 1}, ishape{B, HD, Q, K, 3};
  std::vector<float> ref(nv);
  fold_k(tp, contiguous<const void>(pk.data(), DType::Float32, kshape, kCpu),
         contiguous<const void>(inds.data(), DType::Int32, ishape, kCpu),
         contiguous<void>(ref.data(), DType::Float32, vshape, kCpu));
  Dev<float> d_pk(pk), out(std::vector<float>(nv, -12345.f));
  Dev<int32_t> d_inds(inds);
  const ConstView p = contiguous<const void>(d_pk.p, DType::Float32, kshape, kGpu);
  const ConstView i = contiguous<const void>(d_inds.p, DType::Int32, ishape, kGpu);
  const View o = contiguous<void>(out.p, DType::Float32, vshape, kGpu);
  const size_t wsb = fold_k_workspace_size(tp, p, i, as_const(o));
  EXPECT_LE(wsb, size_t(40) << 20) << "one slice's lists (2.1M pairs), not the call's 8.4M";
  Dev<char> ws(wsb);
  fold_k(tp, p, i, o, ws.p, wsb);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  expect_close(ref, out.get(), "chunked fold_k");
}

// A workspace shorter than *_workspace_size asks for is refused before any kernel runs.
TEST(PatchesCudaSpecial, ShortWorkspaceRejected) {
  REQUIRE_CUDA_DEVICE();
  const int64_t B = 1, HD = 1, Tn = 2, C = 2, H = 5, W = 5, K = 2, Q = Tn * H * W;
  TileParams tp;
  const std::vector<int64_t> vshape{B, Tn, C, H, W}, kshape{B, HD, Q, K, 1, C, 1, 1}, ishape{B, HD, Q, K, 3};
  Dev<float> vid(B * Tn * C * H * W), pk(B * HD * Q * K * C);
  Dev<int32_t> inds(std::vector<int32_t>(Q * K * 3, 0));
  const View o = contiguous<void>(vid.p, DType::Float32, vshape, kGpu);
  const ConstView p = contiguous<const void>(pk.p, DType::Float32, kshape, kGpu);
  const ConstView i = contiguous<const void>(inds.p, DType::Int32, ishape, kGpu);
  const size_t wsb = fold_k_workspace_size(tp, p, i, as_const(o));
  ASSERT_GT(wsb, 0u);
  Dev<char> ws(wsb);
  EXPECT_THROW(fold_k(tp, p, i, o, ws.p, wsb - 1), ValueError);
  EXPECT_THROW(fold_k(tp, p, i, o, nullptr, 0), ValueError);
  EXPECT_NO_THROW(fold_k(tp, p, i, o, ws.p, wsb));
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

}  // namespace
