// Times the CUDA search (forward and backward) through the C++ API with CUDA events on
// the benchmark configurations S1-S4 (random videos and flows, prod, stride1 = 1):
//   stnls_search_cuda_timing [reps [cfg]]
// (cfg, e.g. S2: that configuration only and no CPU check, for profilers.)
// Prints per config: forward median ms (and fwd_noshared_ms: the same call with the
// shared-sums forward switched off; fwd_warp_ms: with every layout but the warp-per-query
// kernels switched off), backward median ms (deterministic, the default; bwd_gather: with
// the fixed-point scatter off, so the gather runs, tap-split where the call allows;
// bwd_pixel: the gather one thread per pixel; bwd_nondet: deterministic = false, the atomic
// scatter where it is faster), TFLOP/s with FLOPs = 2*B*Q*st*ws^2*ps^2*
// pt*C, the fraction of the GPU's float32 FMA peak, and the backward workspace size.
// First, every configuration's parameters are checked on a small video against the CPU
// backend (prod and l2: indices identical, distances bitwise equal, gradients close, and
// the deterministic backward bitwise repeatable), so the paths these shapes take are
// verified where they run.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <cstdlib>
#include <random>
#include <vector>

#include "cuda/search_backward_fixed.h"
#include "cuda/search_backward_taps.h"
#include "cuda/search_forward_groups.h"
#include "cuda/search_forward_rows.h"
#include "cuda/search_forward_shared.h"
#include "cuda/search_forward_thread.h"
#include "stnls/search.h"

using namespace stnls;

#define CK(x)                                                                        \
  do {                                                                               \
    cudaError_t e_ = (x);                                                            \
    if (e_ != cudaSuccess) {                                                         \
      std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e_));                  \
      std::exit(1);                                                                  \
    }                                                                                \
  } while (0)

struct Config {
  const char* name;
  int64_t B, T, C, H, W;
  int ws, wt, ps, k, nheads, stride0;
};

static float* random_device(size_t n, uint32_t seed, float scale) {
  std::vector<float> h(n);
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(0.f, scale);
  for (auto& x : h) x = nd(rng);
  float* d = nullptr;
  CK(cudaMalloc(&d, n * sizeof(float)));
  CK(cudaMemcpy(d, h.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  return d;
}

template <class F>
static double median_ms(F&& f, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  for (int i = 0; i < 2; ++i) f();
  CK(cudaDeviceSynchronize());
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CK(cudaEventRecord(a));
    f();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float t = 0;
    CK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  CK(cudaEventDestroy(a));
  CK(cudaEventDestroy(b));
  return ms[ms.size() / 2];
}


// Small-video check of one configuration's parameters against the CPU backend; returns
// the number of mismatches (printed).
static size_t check_vs_cpu(const Config& c, DistType dist, bool deterministic) {
  SearchParams p;
  p.deterministic = deterministic;
  p.ws = c.ws, p.wt = c.wt, p.ps = c.ps, p.k = c.k, p.nheads = c.nheads, p.stride0 = c.stride0;
  p.dist_type = dist;
  const int64_t T = c.T, C = c.C, H = 29, W = 37;
  const size_t nv = c.B * T * C * H * W, nf = c.B * T * 2 * H * W;
  std::mt19937 rng(7);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v0(nv), v1(nv), ff(nf), bf(nf);
  for (auto& x : v0) x = nd(rng);
  for (auto& x : v1) x = nd(rng);
  for (auto& x : ff) x = 2.f * nd(rng);
  for (auto& x : bf) x = 2.f * nd(rng);
  const Device cpu{}, gpu{DeviceKind::CUDA, 0};
  ConstView h0 = make_view<const void>(v0.data(), DType::Float32, {c.B, T, C, H, W}, cpu);
  ConstView h1 = make_view<const void>(v1.data(), DType::Float32, {c.B, T, C, H, W}, cpu);
  ConstView hf = make_view<const void>(ff.data(), DType::Float32, {c.B, T, 2, H, W}, cpu);
  ConstView hb = make_view<const void>(bf.data(), DType::Float32, {c.B, T, 2, H, W}, cpu);
  const SearchShape sh = search_shape(p, h0, h1);
  const size_t no = sh.B * sh.HD * sh.Q * sh.K;
  std::vector<float> dc(no), dg(no);
  std::vector<int32_t> ic(no * 3), ig(no * 3);
  search_forward(p, h0, h1, hf, hb, make_view<void>(dc.data(), DType::Float32, {sh.B, sh.HD, sh.Q, sh.K}, cpu),
                 make_view<void>(ic.data(), DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3}, cpu));
  auto up = [](const void* h, size_t bytes) {
    void* d = nullptr;
    CK(cudaMalloc(&d, std::max<size_t>(bytes, 1)));
    CK(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    return d;
  };
  void* g0 = up(v0.data(), nv * 4);
  void* g1 = up(v1.data(), nv * 4);
  void* gf = up(ff.data(), nf * 4);
  void* gb = up(bf.data(), nf * 4);
  void* gd = up(dg.data(), no * 4);
  void* gi = up(ig.data(), no * 12);
  ConstView d0 = make_view<const void>(g0, DType::Float32, {c.B, T, C, H, W}, gpu);
  ConstView d1 = make_view<const void>(g1, DType::Float32, {c.B, T, C, H, W}, gpu);
  const size_t wsf = search_forward_workspace_size(p, d0, d1);
  void* gw = nullptr;
  CK(cudaMalloc(&gw, std::max<size_t>(wsf, 1)));
  search_forward(p, d0, d1, make_view<const void>(gf, DType::Float32, {c.B, T, 2, H, W}, gpu),
                 make_view<const void>(gb, DType::Float32, {c.B, T, 2, H, W}, gpu),
                 make_view<void>(gd, DType::Float32, {sh.B, sh.HD, sh.Q, sh.K}, gpu),
                 make_view<void>(gi, DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3}, gpu), gw, wsf);
  CK(cudaFree(gw));
  CK(cudaMemcpy(dg.data(), gd, no * 4, cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(ig.data(), gi, no * 12, cudaMemcpyDeviceToHost));
  size_t bad_i = 0, bad_d = 0;
  for (size_t i = 0; i < ic.size(); ++i) bad_i += ic[i] != ig[i];
  for (size_t i = 0; i < no; ++i) bad_d += std::memcmp(&dc[i], &dg[i], 4) != 0;
  // Backward from the CPU's indices.
  std::vector<float> grd(no);
  for (auto& x : grd) x = nd(rng);
  std::vector<float> hg0(nv), hg1(nv);
  ConstView hgd = make_view<const void>(grd.data(), DType::Float32, {sh.B, sh.HD, sh.Q, sh.K}, cpu);
  ConstView hci = make_view<const void>(ic.data(), DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3}, cpu);
  search_backward(p, hgd, hci, h0, h1, make_view<void>(hg0.data(), DType::Float32, {c.B, T, C, H, W}, cpu),
                  make_view<void>(hg1.data(), DType::Float32, {c.B, T, C, H, W}, cpu));
  void* ggd = up(grd.data(), no * 4);
  void* gci = up(ic.data(), no * 12);
  ConstView cgd = make_view<const void>(ggd, DType::Float32, {sh.B, sh.HD, sh.Q, sh.K}, gpu);
  ConstView cci = make_view<const void>(gci, DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3}, gpu);
  const size_t wsb = search_backward_workspace_size(p, d0, d1, cci);
  void* ws = nullptr;
  CK(cudaMalloc(&ws, std::max<size_t>(wsb, 1)));
  std::vector<float> outs[2];
  for (int rep = 0; rep < 2; ++rep) {
    void* o0 = nullptr;
    void* o1 = nullptr;
    CK(cudaMalloc(&o0, nv * 4));
    CK(cudaMalloc(&o1, nv * 4));
    search_backward(p, cgd, cci, d0, d1, make_view<void>(o0, DType::Float32, {c.B, T, C, H, W}, gpu),
                    make_view<void>(o1, DType::Float32, {c.B, T, C, H, W}, gpu), ws, wsb);
    outs[rep].resize(2 * nv);
    CK(cudaMemcpy(outs[rep].data(), o0, nv * 4, cudaMemcpyDeviceToHost));
    CK(cudaMemcpy(outs[rep].data() + nv, o1, nv * 4, cudaMemcpyDeviceToHost));
    CK(cudaFree(o0));
    CK(cudaFree(o1));
  }
  double scale = 0;
  for (float x : hg0) scale = std::max(scale, std::fabs(double(x)));
  for (float x : hg1) scale = std::max(scale, std::fabs(double(x)));
  const double tol = 2e-5 * (1 + scale);
  size_t bad_g = 0;
  for (size_t i = 0; i < nv; ++i) {
    bad_g += !(std::fabs(double(hg0[i]) - outs[0][i]) <= tol);
    bad_g += !(std::fabs(double(hg1[i]) - outs[0][nv + i]) <= tol);
  }
  // The atomic backward is not meant to repeat bitwise.
  const bool rep_ok = !deterministic || std::memcmp(outs[0].data(), outs[1].data(), 2 * nv * 4) == 0;
  std::printf("check %s %s%s: index mismatches %zu, distance mismatches %zu, gradient mismatches %zu, repeatable %s\n",
              c.name, dist == DistType::L2 ? "l2" : "prod", deterministic ? "" : " atomic", bad_i, bad_d, bad_g,
              deterministic ? (rep_ok ? "yes" : "NO") : "n/a");
  for (void* x : {g0, g1, gf, gb, gd, gi, ggd, gci, ws}) CK(cudaFree(x));
  return bad_i + bad_d + bad_g + (rep_ok ? 0 : 1);
}

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 20;
  const char* only = argc > 2 ? argv[2] : nullptr;
  cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  int clock_khz = 0;
  CK(cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, 0));
  // float32 FMA peak: 128 lanes per SM on sm_80+/sm_90 (2 FLOPs per FMA).
  const double peak = 2.0 * 128 * prop.multiProcessorCount * clock_khz * 1e3;
  std::printf("device %s, %d SMs, %.0f MHz, fp32 FMA peak %.1f TFLOP/s\n", prop.name, prop.multiProcessorCount,
              clock_khz / 1e3, peak / 1e12);
  const Config cfgs[] = {
      {"S1", 1, 3, 12, 128, 128, 21, 3, 7, 10, 4, 4},
      {"S2", 1, 5, 16, 128, 128, 5, 2, 3, 10, 2, 1},
      {"S3", 1, 5, 64, 256, 256, 9, 2, 7, 10, 4, 1},
      {"S4", 1, 4, 32, 480, 854, 7, 1, 3, 10, 1, 2},
  };
  const Device gpu{DeviceKind::CUDA, 0};
  size_t bad = 0;
  if (!only) {
    for (const Config& c : cfgs)
      for (DistType dist : {DistType::Prod, DistType::L2})
        for (bool det : {true, false}) bad += check_vs_cpu(c, dist, det);
    std::printf("check vs CPU: %s\n", bad ? "FAILED" : "all equal");
  }
  std::printf("%-4s %10s %11s %15s %11s %10s %10s %10s %10s %9s %9s %9s %12s\n", "cfg", "fwd_ms", "fwd_nows_ms", "fwd_noshared_ms", "fwd_warp_ms", "bwd_ms",
              "bwd_gather", "bwd_pixel", "bwd_nondet", "fwd_TF/s", "fwd_%peak", "bwd_%fwd", "workspaceMB");
  for (const Config& c : cfgs) {
    if (only && std::strcmp(only, c.name) != 0) continue;
    SearchParams p;
    p.ws = c.ws, p.wt = c.wt, p.ps = c.ps, p.k = c.k, p.nheads = c.nheads, p.stride0 = c.stride0;
    p.dist_type = DistType::Prod;
    const size_t nv = c.B * c.T * c.C * c.H * c.W, nf = c.B * c.T * 2 * c.H * c.W;
    float* v0 = random_device(nv, 1, 1.f);
    float* v1 = random_device(nv, 2, 1.f);
    float* ff = random_device(nf, 3, 2.f);
    float* bf = random_device(nf, 4, 2.f);
    ConstView dv0 = make_view<const void>(v0, DType::Float32, {c.B, c.T, c.C, c.H, c.W}, gpu);
    ConstView dv1 = make_view<const void>(v1, DType::Float32, {c.B, c.T, c.C, c.H, c.W}, gpu);
    ConstView dff = make_view<const void>(ff, DType::Float32, {c.B, c.T, 2, c.H, c.W}, gpu);
    ConstView dbf = make_view<const void>(bf, DType::Float32, {c.B, c.T, 2, c.H, c.W}, gpu);
    const SearchShape sh = search_shape(p, dv0, dv1);
    const size_t no = sh.B * sh.HD * sh.Q * sh.K;
    float* d = nullptr;
    int32_t* ind = nullptr;
    CK(cudaMalloc(&d, no * sizeof(float)));
    CK(cudaMalloc(&ind, no * 3 * sizeof(int32_t)));
    View ddv = make_view<void>(d, DType::Float32, {sh.B, sh.HD, sh.Q, sh.K}, gpu);
    View div = make_view<void>(ind, DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3}, gpu);
    // The forward with its workspace (search_forward_workspace_size), and without one.
    const size_t wsf = search_forward_workspace_size(p, dv0, dv1);
    void* wf = nullptr;
    CK(cudaMalloc(&wf, std::max<size_t>(wsf, 1)));
    const double fwd = median_ms([&] { search_forward(p, dv0, dv1, dff, dbf, ddv, div, wf, wsf); }, reps);
    const double fwd_nows = median_ms([&] { search_forward(p, dv0, dv1, dff, dbf, ddv, div); }, reps);
    stnls::cuda::set_forward_shared_enabled(false);
    const double fwd_noshared = median_ms([&] { search_forward(p, dv0, dv1, dff, dbf, ddv, div, wf, wsf); }, reps);
    stnls::cuda::set_forward_thread_enabled(false);
    stnls::cuda::set_forward_rows_enabled(false);
    stnls::cuda::set_forward_groups_enabled(false);
    const double fwd_warp = median_ms([&] { search_forward(p, dv0, dv1, dff, dbf, ddv, div); }, reps);
    stnls::cuda::set_forward_shared_enabled(true);
    stnls::cuda::set_forward_thread_enabled(true);
    stnls::cuda::set_forward_rows_enabled(true);
    stnls::cuda::set_forward_groups_enabled(true);
    float* gd = random_device(no, 5, 1.f);
    float *g0 = nullptr, *g1 = nullptr;
    CK(cudaMalloc(&g0, nv * sizeof(float)));
    CK(cudaMalloc(&g1, nv * sizeof(float)));
    ConstView cgd = make_view<const void>(gd, DType::Float32, {sh.B, sh.HD, sh.Q, sh.K}, gpu);
    ConstView cind = make_view<const void>(ind, DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3}, gpu);
    const size_t wsb = search_backward_workspace_size(p, dv0, dv1, cind);
    stnls::cuda::set_backward_fixed_enabled(false);
    const size_t wsb_gather = search_backward_workspace_size(p, dv0, dv1, cind);
    stnls::cuda::set_backward_taps_enabled(false);
    const size_t wsb_pixel = search_backward_workspace_size(p, dv0, dv1, cind);
    stnls::cuda::set_backward_taps_enabled(true);
    stnls::cuda::set_backward_fixed_enabled(true);
    const size_t wsb_max = std::max({wsb, wsb_gather, wsb_pixel});
    void* ws = nullptr;
    CK(cudaMalloc(&ws, std::max<size_t>(wsb_max, 1)));
    auto backward = [&](const SearchParams& bp) {
      return median_ms(
          [&] {
            search_backward(bp, cgd, cind, dv0, dv1, make_view<void>(g0, DType::Float32, {c.B, c.T, c.C, c.H, c.W}, gpu),
                            make_view<void>(g1, DType::Float32, {c.B, c.T, c.C, c.H, c.W}, gpu), ws, wsb_max);
          },
          reps);
    };
    const double bwd = backward(p);  // small calls: the fixed-point scatter
    stnls::cuda::set_backward_fixed_enabled(false);
    const double bwd_gather = backward(p);
    stnls::cuda::set_backward_taps_enabled(false);
    const double bwd_pixel = backward(p);
    stnls::cuda::set_backward_taps_enabled(true);
    stnls::cuda::set_backward_fixed_enabled(true);
    SearchParams pa = p;
    pa.deterministic = false;  // the atomic scatter where it is faster (small calls)
    const double bwd_atomic = backward(pa);
    CK(cudaDeviceSynchronize());
    const double flops = 2.0 * c.B * sh.Q * sh.st * double(c.ws) * c.ws * c.ps * c.ps * 1 * c.C;
    std::printf("%-4s %10.3f %11.3f %15.3f %11.3f %10.3f %10.3f %10.3f %10.3f %9.2f %9.1f %9.2f %12.1f   (forward workspace %.1f MB)\n",
                c.name, fwd, fwd_nows, fwd_noshared, fwd_warp, bwd, bwd_gather, bwd_pixel, bwd_atomic, flops / fwd / 1e9,
                100.0 * flops / (fwd * 1e-3) / peak, bwd / fwd, wsb / 1e6, wsf / 1e6);
    for (void* x : {(void*)v0, (void*)v1, (void*)ff, (void*)bf, (void*)d, (void*)ind, (void*)gd, (void*)g0, (void*)g1, ws, wf})
      CK(cudaFree(x));
  }
  return bad ? 1 : 0;
}
