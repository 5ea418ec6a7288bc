// Times the CUDA search (forward and backward) through the C++ API with CUDA events on
// the benchmark configurations S1-S4 (random videos and flows, prod, stride1 = 1):
//   stnls_search_cuda_timing [reps]
// Prints per config: forward and backward median ms, TFLOP/s with FLOPs = 2*B*Q*st*ws^2*
// ps^2*pt*C, the fraction of the GPU's float32 FMA peak, and the backward workspace size.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

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

int main(int argc, char** argv) {
  const int reps = argc > 1 ? std::atoi(argv[1]) : 20;
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
  std::printf("%-4s %10s %10s %9s %9s %9s %12s\n", "cfg", "fwd_ms", "bwd_ms", "fwd_TF/s", "fwd_%peak", "bwd_%fwd",
              "workspaceMB");
  for (const Config& c : cfgs) {
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
    size_t free0 = 0, total = 0;
    CK(cudaMemGetInfo(&free0, &total));
    const double fwd = median_ms([&] { search_forward(p, dv0, dv1, dff, dbf, ddv, div); }, reps);
    size_t free1 = 0;
    CK(cudaMemGetInfo(&free1, &total));
    float* gd = random_device(no, 5, 1.f);
    float *g0 = nullptr, *g1 = nullptr;
    CK(cudaMalloc(&g0, nv * sizeof(float)));
    CK(cudaMalloc(&g1, nv * sizeof(float)));
    ConstView cgd = make_view<const void>(gd, DType::Float32, {sh.B, sh.HD, sh.Q, sh.K}, gpu);
    ConstView cind = make_view<const void>(ind, DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3}, gpu);
    const size_t wsb = search_backward_workspace_size(p, dv0, dv1, cind);
    void* ws = nullptr;
    CK(cudaMalloc(&ws, std::max<size_t>(wsb, 1)));
    const double bwd = median_ms(
        [&] {
          search_backward(p, cgd, cind, dv0, dv1, make_view<void>(g0, DType::Float32, {c.B, c.T, c.C, c.H, c.W}, gpu),
                          make_view<void>(g1, DType::Float32, {c.B, c.T, c.C, c.H, c.W}, gpu), ws, wsb);
        },
        reps);
    CK(cudaDeviceSynchronize());
    const double flops = 2.0 * c.B * sh.Q * sh.st * double(c.ws) * c.ws * c.ps * c.ps * 1 * c.C;
    std::printf("%-4s %10.3f %10.3f %9.2f %9.1f %9.2f %12.1f   (forward extra memory %.1f MB)\n", c.name, fwd, bwd,
                flops / fwd / 1e9, 100.0 * flops / (fwd * 1e-3) / peak, bwd / fwd, wsb / 1e6,
                (double(free0) - double(free1)) / 1e6);
    for (void* x : {(void*)v0, (void*)v1, (void*)ff, (void*)bf, (void*)d, (void*)ind, (void*)gd, (void*)g0, (void*)g1, ws})
      CK(cudaFree(x));
  }
  return 0;
}
