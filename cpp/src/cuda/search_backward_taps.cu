// Tap-split gathers of the CUDA search backward (fast path: float32, pixel-major copies of
// the videos, see search_backward.cu). The one-thread-per-pixel gathers walk every
// (tap, neighbour) term of a pixel in one thread: ps^2 * K dependent record and pixel loads
// in a row (S2: 90), at the occupancy their CV accumulators allow, so they wait on memory
// latency. Here each tap is a thread of its own and the pixel's sum is folded afterwards:
//
//   grad_vid0: thread per (b, hd, q, tap) sums its K neighbours in k order,
//              P[q][tap][c] = sum_k grad_dists[q,k] * df/da(vid0 at q's tap, vid1 at k's tap);
//              then thread per vid0 pixel adds the P[q][tap] of for_each_query_tap in its order.
//   grad_vid1: thread per (candidate location l, tap) sums l's list in list order,
//              W[l][tap][c] = sum grad_dists[q,k] * df/db(vid0 at q's tap, vid1 at l's tap);
//              then thread per vid1 pixel adds the W[l][tap] of for_each_candidate_tap.
//
// Every sum has a fixed order, so the gradients are bitwise the same on every run (they
// round differently from the per-pixel gathers: each tap's neighbours are summed first).
// grad_vid0's pass reads no list (its records come straight from inds and grad_dists), so
// search_backward.cu runs it on a second stream while the lists are sorted. P and W share
// one buffer in the caller's workspace (grad_vid1's pass starts once grad_vid0's fold is
// done), CV floats per (query or location, tap): the path is taken while that buffer stays
// under kMaxBytes (S2: 47 MB).
#include "cuda/search_backward_taps.h"

#include <algorithm>
#include <atomic>
#include <type_traits>

#include "common/dispatch.h"
#include "common/geometry.h"
#include "cuda/cuda_util.h"
#include "cuda/pixel_major.cuh"
#include "cuda/search_backward_gather.cuh"

namespace stnls {
namespace cuda {
namespace {

using detail::SearchArgs;
using pixel::kNoPatch;
using pixel::load_cv;
using pixel::pixel_index;

constexpr size_t kMaxBytes = size_t(64) << 20;
constexpr int kThreads = 256;

std::atomic<bool> enabled{true};  // set_backward_taps_enabled

// Tap (pk, pi, pj) of a patch and its offsets dy = o0 + dil*pi, dx = o0 + dil*pj.
struct Tap {
  int pk, dy, dx;
};
__device__ __forceinline__ Tap tap_of(const BwdArgs<float>& a, int tap) {
  const int pj = tap % a.ps, pi = (tap / a.ps) % a.ps;
  return {tap / (a.ps * a.ps), a.o0 + a.dil * pi, a.o0 + a.dil * pj};
}
__device__ __forceinline__ int tap_index(const BwdArgs<float>& a, int pk, int dy, int dx) {
  return (pk * a.ps + (dy - a.o0) / a.dil) * a.ps + (dx - a.o0) / a.dil;
}

template <int CV>
__device__ __forceinline__ void store_cv(float* p, const float (&v)[CV]) {
#pragma unroll
  for (int c = 0; c < CV; c += 4) *reinterpret_cast<float4*>(p + c) = make_float4(v[c], v[c + 1], v[c + 2], v[c + 3]);
}

// A gradient pixel's C channels (strides w) from the fold's sums.
template <int CV>
__device__ __forceinline__ void write_pixel(float* g, const detail::Strides6& w, const GatherPixel& px, int C,
                                            const float (&acc)[CV]) {
  float* out = g + px.b * w.b + px.hd * w.h + px.t * w.t + px.y * w.y + px.x * w.x;
#pragma unroll
  for (int c = 0; c < CV; ++c)
    if (c < C) out[c * w.c] = acc[c];
}

// The CV channels of pixel `pix` of a pixel-major copy (zeros for -1, a read outside).
template <int CV>
__device__ __forceinline__ void load_pixel(float (&v)[CV], const float* pm, int64_t pix) {
  if (pix < 0) {
#pragma unroll
    for (int c = 0; c < CV; ++c) v[c] = 0.f;
  } else {
    load_cv<CV>(v, pm + pix * CV);
  }
}

// P[e], e = (b, hd, q) * NT + tap.
template <bool L2, int CV>
__global__ void __launch_bounds__(kThreads) query_taps_kernel(const BwdArgs<float> a, const float* pm0, const float* pm1,
                                                              float* P, int64_t total) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (e >= total) return;
  const int NT = a.pt * a.ps * a.ps;
  const int64_t bq = e / NT;
  const Tap tp = tap_of(a, static_cast<int>(e % NT));
  const int64_t bh = bq / a.Q;
  const int q = static_cast<int>(bq % a.Q);
  const int64_t plane = static_cast<int64_t>(a.H) * a.W;
  float va[CV] = {}, acc[CV];
  if constexpr (L2) {  // vid0 at the query's tap (df/da of the L2 distance reads it)
    const int tq = q / (a.nH * a.nW);
    const int qh = ((q / a.nW) % a.nH) * a.str0, qw = (q % a.nW) * a.str0;
    load_pixel<CV>(va, pm0,
                   pixel_index(bh, tq + tp.pk, qh + tp.dy - a.offH0, qw + tp.dx - a.offW0, a.nT, a.H, a.W, a.reflect));
  }
#pragma unroll
  for (int c = 0; c < CV; ++c) acc[c] = 0.f;
  const int ddy = tp.dy - a.offH1, ddx = tp.dx - a.offW1;
  const int64_t toff = tp.pk * plane + static_cast<int64_t>(ddy) * a.W + ddx;
  for (int k = 0; k < a.K; ++k) {
    // The record straight from inds and grad_dists (the tap threads of a query read the
    // same elements): no packed records, so this pass need not wait for the sort whose
    // buffers they would reuse.
    const int2 r = candidate_record(a, bh, q, k);
    if (r.y == kNoPatch) continue;
    float vb[CV];
    const float g = record_pixel<CV>(a, r, bh, toff, tp.pk, ddy, ddx, pm1, vb);
#pragma unroll
    for (int c = 0; c < CV; ++c) acc[c] += g * geo::dist_da<L2>(va[c], vb[c]);
  }
  store_cv<CV>(P + e * CV, acc);
}

// W[e], e = location * NT + tap (location = ((b*HD + hd)*T + t)*H*W + y*W + x).
template <bool L2, int CV>
__global__ void __launch_bounds__(kThreads) candidate_taps_kernel(const BwdArgs<float> a, const float* pm0,
                                                                  const float* pm1, const int2* pp1, float* Wb,
                                                                  int64_t total) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (e >= total) return;
  const int NT = a.pt * a.ps * a.ps;
  const int64_t loc = e / NT;
  const Tap tp = tap_of(a, static_cast<int>(e % NT));
  const int64_t plane = static_cast<int64_t>(a.H) * a.W;
  const int64_t bh = loc / (a.nT * plane);
  float vb[CV] = {}, acc[CV];
  if constexpr (L2) {  // vid1 at the candidate's tap
    const int64_t r = loc % (a.nT * plane);
    const int u = static_cast<int>(r / plane), yy = static_cast<int>((r / a.W) % a.H), xx = static_cast<int>(r % a.W);
    load_pixel<CV>(vb, pm1, pixel_index(bh, u + tp.pk, yy + tp.dy - a.offH1, xx + tp.dx - a.offW1, a.nT, a.H, a.W,
                                        a.reflect));
  }
#pragma unroll
  for (int c = 0; c < CV; ++c) acc[c] = 0.f;
  const int ddy = tp.dy - a.offH0, ddx = tp.dx - a.offW0;
  const int64_t toff = tp.pk * plane + static_cast<int64_t>(ddy) * a.W + ddx;
  const int32_t beg = __ldg(a.list_start + loc), end = __ldg(a.list_start + loc + 1);
  for (int32_t li = beg; li < end; ++li) {
    float va[CV];
    const float g = record_pixel<CV>(a, __ldg(pp1 + li), bh, toff, tp.pk, ddy, ddx, pm0, va);
#pragma unroll
    for (int c = 0; c < CV; ++c) acc[c] += g * geo::dist_db<L2>(va[c], vb[c]);
  }
  store_cv<CV>(Wb + e * CV, acc);
}

// grad_vid0 from P, thread per vid0 pixel (b, hd, t, y, x).
template <int CV>
__global__ void __launch_bounds__(kThreads) fold_query_taps_kernel(const BwdArgs<float> a, const float* P,
                                                                   int64_t pixels) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (e >= pixels) return;
  const GatherPixel px = gather_pixel(a, e);
  const int NT = a.pt * a.ps * a.ps;
  const float* pb = P + px.bh * a.Q * NT * CV;
  float acc[CV];
#pragma unroll
  for (int c = 0; c < CV; ++c) acc[c] = 0.f;
  for_each_query_tap(a, px.t, px.y, px.x, [&](int pk, int64_t q, int dy, int dx) {
    float v[CV];
    load_cv<CV>(v, pb + (q * NT + tap_index(a, pk, dy, dx)) * CV);
#pragma unroll
    for (int c = 0; c < CV; ++c) acc[c] += v[c];
  });
  write_pixel<CV>(a.g0, a.w0, px, a.C, acc);
}

// grad_vid1 from W, thread per vid1 pixel (b, hd, t, y, x).
template <int CV>
__global__ void __launch_bounds__(kThreads) fold_candidate_taps_kernel(const BwdArgs<float> a, const float* Wb,
                                                                       int64_t pixels) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (e >= pixels) return;
  const GatherPixel px = gather_pixel(a, e);
  const int NT = a.pt * a.ps * a.ps;
  const int64_t plane = static_cast<int64_t>(a.H) * a.W;
  const int64_t loc_bh = px.bh * a.nT * plane;
  float acc[CV];
#pragma unroll
  for (int c = 0; c < CV; ++c) acc[c] = 0.f;
  for_each_candidate_tap(a, px.t, px.y, px.x, [&](int pk, int u, int yy, int xx, int dy, int dx) {
    const int64_t loc = loc_bh + u * plane + static_cast<int64_t>(yy) * a.W + xx;
    float v[CV];
    load_cv<CV>(v, Wb + (loc * NT + tap_index(a, pk, dy, dx)) * CV);
#pragma unroll
    for (int c = 0; c < CV; ++c) acc[c] += v[c];
  });
  write_pixel<CV>(a.g1, a.w1, px, a.C, acc);
}

unsigned blocks_for(int64_t n) { return static_cast<unsigned>(ceil_div(n, kThreads)); }

template <bool L2, int CV>
void run_vid0(const SearchArgs& a, const BwdArgs<float>& ba, const float* pm0, const float* pm1, float* P,
              cudaStream_t stream) {
  const SearchShape& sh = a.sh;
  const int64_t pixels = sh.B * sh.HD * sh.T * sh.H * sh.W;
  const int64_t nq = sh.B * sh.HD * sh.Q * a.p.pt * a.p.ps * a.p.ps;
  if (pixels == 0) return;
  if (nq > 0) {
    query_taps_kernel<L2, CV><<<blocks_for(nq), kThreads, 0, stream>>>(ba, pm0, pm1, P, nq);
    check_launch("query_taps_kernel");
  }
  fold_query_taps_kernel<CV><<<blocks_for(pixels), kThreads, 0, stream>>>(ba, P, pixels);
  check_launch("fold_query_taps_kernel");
}

template <bool L2, int CV>
void run_vid1(const SearchArgs& a, const BwdArgs<float>& ba, const float* pm0, const float* pm1, const int2* pp1,
              float* Wb, cudaStream_t stream) {
  const SearchShape& sh = a.sh;
  const int64_t pixels = sh.B * sh.HD * sh.T * sh.H * sh.W;
  const int64_t nl = pixels * a.p.pt * a.p.ps * a.p.ps;
  if (pixels == 0) return;
  candidate_taps_kernel<L2, CV><<<blocks_for(nl), kThreads, 0, stream>>>(ba, pm0, pm1, pp1, Wb, nl);
  check_launch("candidate_taps_kernel");
  fold_candidate_taps_kernel<CV><<<blocks_for(pixels), kThreads, 0, stream>>>(ba, Wb, pixels);
  check_launch("fold_candidate_taps_kernel");
}

// Calls run(l2 tag, cv tag) for the call's distance and channel count.
template <class Run>
void dispatch(const SearchArgs& a, int cv, Run run) {
  STNLS_DIST_SWITCH(a.p.dist_type, [&] {
    using L = std::integral_constant<bool, kL2>;
    switch (cv) {
      case 4: return run(L{}, std::integral_constant<int, 4>{});
      case 8: return run(L{}, std::integral_constant<int, 8>{});
      case 16: return run(L{}, std::integral_constant<int, 16>{});
      default: return run(L{}, std::integral_constant<int, 32>{});
    }
  });
}

}  // namespace

void set_backward_taps_enabled(bool on) { enabled = on; }
bool backward_taps_enabled() { return enabled; }

size_t backward_taps_bytes(const SearchArgs& a, int cv) {
  const SearchShape& sh = a.sh;
  const int64_t NT = a.p.pt * a.p.ps * a.p.ps;
  // Under 4 taps per patch (ps 1) there is little to split: the per-pixel gathers do about
  // the same work without the buffer.
  if (!enabled || cv == 0 || NT < 4 || sh.K == 0) return 0;
  const double rows =
      std::max(static_cast<double>(sh.B * sh.HD * sh.Q), static_cast<double>(sh.B * sh.HD * sh.T * sh.H * sh.W));
  const double bytes = rows * static_cast<double>(NT) * cv * sizeof(float);
  return bytes <= static_cast<double>(kMaxBytes) ? static_cast<size_t>(bytes) : 0;
}

void backward_taps_vid0(const SearchArgs& a, const BwdArgs<float>& ba, int cv, const float* pm0, const float* pm1,
                        float* buffer, cudaStream_t stream) {
  dispatch(a, cv, [&](auto l2, auto c) {
    run_vid0<decltype(l2)::value, decltype(c)::value>(a, ba, pm0, pm1, buffer, stream);
  });
}

void backward_taps_vid1(const SearchArgs& a, const BwdArgs<float>& ba, int cv, const float* pm0, const float* pm1,
                        const int2* pp1, float* buffer, cudaStream_t stream) {
  dispatch(a, cv, [&](auto l2, auto c) {
    run_vid1<decltype(l2)::value, decltype(c)::value>(a, ba, pm0, pm1, pp1, buffer, stream);
  });
}

}  // namespace cuda
}  // namespace stnls
