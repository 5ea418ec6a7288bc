// CUDA backward of the non-local search (SPEC.md rule 8), bitwise deterministic (the
// default, SearchParams::deterministic = true): every gradient element is written by one
// thread that sums its contributions in a fixed order (no float atomics).
// Calls of few terms, whose time the gather's fixed steps (list sort, packs, copies)
// dominate, scatter instead: deterministic = false with float atomics
// (search_backward_atomic.cu, no workspace, `use_atomic`), deterministic float32 with
// 64-bit fixed-point atomics, whose sums do not depend on the order
// (search_backward_fixed.cu, `use_fixed`).
//
// grad_vid0 (gather over queries): a pixel p of vid0 was read by query q at tap
// (pk, pi, pj) when bound(coordinate) == p on each axis; under one reflection each axis has
// up to 3 preimages (y, -y, 2(L-1)-y). For each such (q, tap) on the query grid and each
// neighbour k, add grad_dists[q,k] * d f / d a.
// grad_vid1 (gather over an inverse list): the (q, k) pairs are sorted by their candidate
// location (a stable radix sort of (location, q*K + k), so each location's list is in
// (q, k) order); a pixel p of vid1 enumerates the preimages of p, the taps, and the list
// of the candidate location each implies. The lists live in the caller's workspace.
//
// Fast path (float, C per head <= 32 rounding up to 4, 8, 16 or 32 channels): both videos
// are first copied into the workspace as [b][hd][t][y][x][c] (channels padded with zeros
// to CV), and one thread per pixel handles all its channels: every (query, neighbour)
// pair costs one index walk and CV/4 16-byte loads instead of C scattered 4-byte loads
// and C/4 index walks. Each (query, neighbour) pair is also packed once as an 8-byte
// record, (grad, patch code) of its candidate in (q, k) order for grad_vid0 and of its
// query in list order for grad_vid1: a patch that lies inside the video is its corner's
// pixel index, so a tap's pixel is that index plus a per-tap constant (no bounds rule, no
// divisions); border patches are decoded and bounded. The records reuse the memory of
// the lists' sort buffers, so the workspace is the lists plus the pixel-major copies.
//
// Tap-split path (search_backward_taps.cu): when the per-tap partial sums of both
// gradients fit a buffer of at most 64 MiB (S2's shape: ps 3, 8 channels per head), a
// thread per (query or location, tap) replaces the thread per pixel, and a fold per pixel
// adds the taps; grad_vid0's chain runs on a second stream beside the lists' sort
// (taps_chunk). S2 backward on the H200: 0.64 ms -> 0.38.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "common/backends.h"
#include "common/chunking.h"
#include "common/dispatch.h"
#include "common/geometry.h"
#include "cuda/cuda_util.h"
#include "cuda/inverse_lists.h"
#include "cuda/pixel_major.cuh"
#include "cuda/search_backward_args.h"
#include "cuda/search_backward_atomic.h"
#include "cuda/search_backward_fixed.h"
#include "cuda/search_backward_gather.cuh"
#include "cuda/search_backward_taps.h"
#include "cuda/side_stream.h"

namespace stnls {
namespace cuda {
namespace {

using detail::SearchArgs;
using pixel::fast_channels;
using pixel::kNoPatch;
using pixel::load_cv;
using pixel::patch_code;
using pixel::tap_pixel;
using pixel::to_pixel_major_kernel;

// out[c * stride] = acc[c] for the n channels that exist (c < n) of a thread's N.
template <class T, int N>
__device__ __forceinline__ void store_channels(T* out, int64_t stride, const T (&acc)[N], int n) {
#pragma unroll
  for (int c = 0; c < N; ++c)
    if (c < n) out[c * stride] = acc[c];
}

// What a thread of the two gradient kernels owns: channels c0 .. c0 + nc - 1 (its group of
// CG) of pixel (t, y, x) of batch entry b, head hd; e is its flat index, x fastest. v0 and
// v1 point at the videos' (b, hd, c0).
template <class T, int CG>
struct GradPixel {
  int b, hd, c0, nc, t, y, x;
  const T* v0;
  const T* v1;
  __device__ GradPixel(const BwdArgs<T>& a, int64_t e) {
    x = static_cast<int>(e % a.W);
    y = static_cast<int>((e / a.W) % a.H);
    t = static_cast<int>((e / (static_cast<int64_t>(a.W) * a.H)) % a.nT);
    const int64_t r = e / (static_cast<int64_t>(a.W) * a.H * a.nT);
    hd = static_cast<int>((r / a.cgroups) % a.HD);
    b = static_cast<int>(r / (static_cast<int64_t>(a.cgroups) * a.HD));
    c0 = static_cast<int>(r % a.cgroups) * CG;
    nc = min(CG, a.C - c0);
    v0 = a.vid0 + b * a.s0.b + hd * a.s0.h + c0 * a.s0.c;
    v1 = a.vid1 + b * a.s1.b + hd * a.s1.h + c0 * a.s1.c;
  }
  // The thread's channels of v (v0 or v1, strides s) at its pixel; 0 past the last one.
  template <class S>
  __device__ void own(const T* v, const S& s, T (&out)[CG]) const {
#pragma unroll
    for (int c = 0; c < CG; ++c) out[c] = c < nc ? v[t * s.t + y * s.y + x * s.x + c * s.c] : T(0);
  }
};

// Thread per (b, hd, channel group, t, y, x) of vid0.
template <class T, bool L2, int CG>
__global__ void __launch_bounds__(256, 1) grad_vid0_kernel(const BwdArgs<T> a, int64_t total) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  const GradPixel<T, CG> p(a, e);
  const int b = p.b, hd = p.hd, c0 = p.c0, nc = p.nc, t = p.t, y = p.y, x = p.x;
  const T* v1 = p.v1;

  T va[CG], acc[CG] = {};
  p.own(p.v0, a.s0, va);
  for_each_query_tap(a, t, y, x, [&](int pk, int64_t q, int dy, int dx) {
    const int32_t* ie = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2];
    const T* ge = a.gd + b * a.sd[0] + hd * a.sd[1] + q * a.sd[2];
    for (int k = 0; k < a.K; ++k) {
      const int32_t* e3 = ie + k * a.si[3];
      const int u = e3[0], yy = e3[a.si[4]], xx = e3[2 * a.si[4]];
      if (u < 0 || u >= a.nT || yy < 0 || yy >= a.H || xx < 0 || xx >= a.W) continue;
      const T g = ge[k * a.sd[3]];
      const int64_t off = geo::pixel_offset(u + pk, yy + dy - a.offH1, xx + dx - a.offW1, a.nT, a.H, a.W,
                                            a.reflect, a.s1.t, a.s1.y, a.s1.x);
#pragma unroll
      for (int c = 0; c < CG; ++c) {
        if (c < nc) {
          const T vb = off < 0 ? T(0) : v1[off + c * a.s1.c];
          acc[c] += g * geo::dist_da<L2>(va[c], vb);
        }
      }
    }
  });
  store_channels(a.g0 + b * a.w0.b + hd * a.w0.h + c0 * a.w0.c + t * a.w0.t + y * a.w0.y + x * a.w0.x, a.w0.c, acc, nc);
}

// Thread per (b, hd, channel group, t, y, x) of vid1.
template <class T, bool L2, int CG>
__global__ void __launch_bounds__(256, 1) grad_vid1_kernel(const BwdArgs<T> a, int64_t total) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  const GradPixel<T, CG> p(a, e);
  const int b = p.b, hd = p.hd, c0 = p.c0, nc = p.nc, t = p.t, y = p.y, x = p.x;
  const T* v0 = p.v0;
  const int64_t plane = static_cast<int64_t>(a.H) * a.W;
  const int64_t loc_bh = (static_cast<int64_t>(b) * a.HD + hd) * a.nT * plane;

  T vb[CG], acc[CG] = {};
  p.own(p.v1, a.s1, vb);
  for_each_candidate_tap(a, t, y, x, [&](int pk, int u, int yy, int xx, int dy, int dx) {
    const int64_t loc = loc_bh + u * plane + static_cast<int64_t>(yy) * a.W + xx;
    const int32_t beg = a.list_start[loc], end = a.list_start[loc + 1];
    for (int32_t li = beg; li < end; ++li) {
      const int32_t qk = a.list_qk[li];
      const int k = qk % a.K;
      const int q = (qk / a.K) % a.Q;
      const int tq = q / (a.nH * a.nW);
      const int qh = ((q / a.nW) % a.nH) * a.str0, qw = (q % a.nW) * a.str0;
      const T g = a.gd[b * a.sd[0] + hd * a.sd[1] + q * a.sd[2] + k * a.sd[3]];
      const int64_t off = geo::pixel_offset(tq + pk, qh + dy - a.offH0, qw + dx - a.offW0, a.nT, a.H, a.W,
                                            a.reflect, a.s0.t, a.s0.y, a.s0.x);
#pragma unroll
      for (int c = 0; c < CG; ++c) {
        if (c < nc) {
          const T va = off < 0 ? T(0) : v0[off + c * a.s0.c];
          acc[c] += g * geo::dist_db<L2>(va, vb[c]);
        }
      }
    }
  });
  store_channels(a.g1 + b * a.w1.b + hd * a.w1.h + c0 * a.w1.c + t * a.w1.t + y * a.w1.y + x * a.w1.x, a.w1.c, acc, nc);
}


// pp0[e] for e = (b, hd, q, k) flat: the candidate's record (its patch in vid1).
template <class T>
__global__ void pack_candidates_kernel(const BwdArgs<T> a, int2* pp0, int64_t n) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n) return;
  const int k = static_cast<int>(e % a.K);
  const int64_t q = (e / a.K) % a.Q;
  pp0[e] = candidate_record(a, e / (static_cast<int64_t>(a.K) * a.Q), q, k);
}

// pp1[li] for list position li: the record of the entry's query (its patch in vid0).
template <class T>
__global__ void pack_queries_kernel(const BwdArgs<T> a, int2* pp1, int64_t n) {
  const int64_t li = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (li >= n) return;
  const int32_t qk = a.list_qk[li];
  const int k = qk % a.K;
  const int q = (qk / a.K) % a.Q;
  const int64_t bh = qk / (static_cast<int64_t>(a.K) * a.Q);
  const int b = static_cast<int>(bh / a.HD), hd = static_cast<int>(bh % a.HD);
  const int tq = q / (a.nH * a.nW);
  const int qh = ((q / a.nW) % a.nH) * a.str0, qw = (q % a.nW) * a.str0;
  const float g = static_cast<float>(a.gd[b * a.sd[0] + hd * a.sd[1] + q * a.sd[2] + k * a.sd[3]]);
  const int span = a.dil * (a.ps - 1);
  pp1[li] = make_int2(__float_as_int(g), patch_code(tq, qh, qw, a.nT, a.H, a.W, a.pt, a.o0, span, a.offH0, a.offW0));
}

// Resident 256-thread blocks per SM the fast gathers are compiled for (a register cap of
// 80 for three, 128 for two): what each variant reaches without spilling. Without the cap a
// few extra registers cost a whole block (8 warps) of residency.
template <bool L2, int CV>
constexpr int kGatherBlocks = (CV == 4 || (CV == 8 && !L2)) ? 3 : ((CV == 32 && L2) ? 1 : 2);

// grad_vid0, thread per (b, hd, t, y, x), every channel; pm0/pm1: pixel-major copies.
template <bool L2, int CV>
__global__ void __launch_bounds__(256, kGatherBlocks<L2, CV>) grad_vid0_fast_kernel(const BwdArgs<float> a, const float* pm0,
                                                                const float* pm1, const int2* pp0, int64_t total) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  const GatherPixel px_ = gather_pixel(a, e);
  const int x = px_.x, y = px_.y, t = px_.t, b = px_.b, hd = px_.hd;
  const int64_t bh = px_.bh;
  float va[CV], acc[CV] = {};
  load_cv<CV>(va, pm0 + e * CV);
  const int2* pb = pp0 + bh * a.Q * a.K;
  const int64_t plane = static_cast<int64_t>(a.H) * a.W;
  for_each_query_tap(a, t, y, x, [&](int pk, int64_t q, int dy, int dx) {
    const int2* pq = pb + q * a.K;
    const int ddy = dy - a.offH1, ddx = dx - a.offW1;
    const int64_t tap = pk * plane + static_cast<int64_t>(ddy) * a.W + ddx;
    for (int k = 0; k < a.K; ++k) {
      const int2 r = __ldg(pq + k);
      if (r.y == kNoPatch) continue;
      float vb[CV];
      const float g = record_pixel<CV>(a, r, bh, tap, pk, ddy, ddx, pm1, vb);
#pragma unroll
      for (int c = 0; c < CV; ++c) acc[c] += g * geo::dist_da<L2>(va[c], vb[c]);
    }
  });
  store_channels(a.g0 + b * a.w0.b + hd * a.w0.h + t * a.w0.t + y * a.w0.y + x * a.w0.x, a.w0.c, acc, a.C);
}

// grad_vid1, thread per (b, hd, t, y, x), every channel.
template <bool L2, int CV>
__global__ void __launch_bounds__(256, kGatherBlocks<L2, CV>) grad_vid1_fast_kernel(const BwdArgs<float> a, const float* pm0,
                                                                const float* pm1, const int2* pp1, int64_t total) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= total) return;
  const GatherPixel px_ = gather_pixel(a, e);
  const int x = px_.x, y = px_.y, t = px_.t, b = px_.b, hd = px_.hd;
  const int64_t bh = px_.bh;
  const int64_t plane = static_cast<int64_t>(a.H) * a.W;
  const int64_t loc_bh = bh * a.nT * plane;
  float vb[CV], acc[CV] = {};
  load_cv<CV>(vb, pm1 + e * CV);
  for_each_candidate_tap(a, t, y, x, [&](int pk, int u, int yy, int xx, int dy, int dx) {
    const int64_t loc = loc_bh + u * plane + static_cast<int64_t>(yy) * a.W + xx;
    const int32_t beg = __ldg(a.list_start + loc), end = __ldg(a.list_start + loc + 1);
    const int ddy = dy - a.offH0, ddx = dx - a.offW0;
    const int64_t tap = pk * plane + static_cast<int64_t>(ddy) * a.W + ddx;
    for (int32_t li = beg; li < end; ++li) {
      const int2 r = __ldg(pp1 + li);
      float va[CV];
      const float g = record_pixel<CV>(a, r, bh, tap, pk, ddy, ddx, pm0, va);
#pragma unroll
      for (int c = 0; c < CV; ++c) acc[c] += g * geo::dist_db<L2>(va[c], vb[c]);
    }
  });
  store_channels(a.g1 + b * a.w1.b + hd * a.w1.h + t * a.w1.t + y * a.w1.y + x * a.w1.x, a.w1.c, acc, a.C);
}

// Workspace layout: the inverse lists (inverse_lists.h); the fast path reuses their sort
// buffers once the lists are built (pp1, 8 bytes per pair, over the two key buffers; pp0
// over the two value buffers once pp1 has read the sorted entries) and puts the two
// pixel-major video copies [nloc][cv] over the sort's scratch. 256-byte aligned.
struct Layout {
  ListLayout lists;
  int64_t n, nloc;
  int cv;
  size_t pm0, pm1, pp0, pp1, taps, taps_bytes, total;
};

IndsView inds_view(const SearchArgs& a) {
  const SearchShape& sh = a.sh;
  IndsView in{static_cast<const int32_t*>(a.inds), {a.si[0], a.si[1], a.si[2], a.si[3], a.si[4]},
              sh.B, sh.HD, sh.Q, sh.K, sh.T, sh.H, sh.W};
  return in;
}

size_t scalar_bytes(const SearchArgs& a) { return a.dtype == DType::Float32 ? 4 : 8; }

Layout workspace_layout(const SearchArgs& a) {
  const SearchShape& sh = a.sh;
  Layout L{};
  L.lists = list_layout(inds_view(a), 0,
                        "search backward: more than 2^31 (query, neighbour) pairs or pixels in one (batch, head) "
                        "slice; split the video in time");
  L.n = L.lists.n;
  L.nloc = L.lists.nloc;
  L.cv = fast_channels(sh.C, scalar_bytes(a));
  L.total = L.lists.end;
  if (L.cv > 0) {
    // keys1 - keys0 = vals1 - vals0 = one buffer of n int32 (aligned): two hold n int2.
    L.pp1 = L.lists.keys0;
    L.pp0 = L.lists.vals0;
    const size_t pmb = align256(static_cast<size_t>(L.nloc) * L.cv * sizeof(float));
    // The tap-split gathers (with their buffer of partial sums) copy the videos while the
    // lists are sorted, so their copies get memory of their own; the per-pixel gathers
    // put them over the sort's scratch.
    L.taps_bytes = backward_taps_bytes(a, L.cv);
    L.pm0 = L.taps_bytes > 0 ? align256(L.lists.end) : L.lists.cub;
    L.pm1 = L.pm0 + pmb;
    L.total = std::max(L.total, L.pm1 + pmb);
    if (L.taps_bytes > 0) {
      L.taps = align256(L.total);
      L.total = L.taps + L.taps_bytes;
    }
  }
  return L;
}

template <class T, bool L2, int CG>
void launch_grads(const BwdArgs<T>& ba, int64_t pixels, cudaStream_t stream) {
  const int64_t total = pixels * ba.cgroups;
  const unsigned blocks = static_cast<unsigned>(ceil_div(total, 256));
  grad_vid0_kernel<T, L2, CG><<<blocks, 256, 0, stream>>>(ba, total);
  check_launch("grad_vid0_kernel");
  grad_vid1_kernel<T, L2, CG><<<blocks, 256, 0, stream>>>(ba, total);
  check_launch("grad_vid1_kernel");
}

template <bool L2, int CV>
void launch_fast(const BwdArgs<float>& ba, char* ws, const Layout& L, int64_t pixels, cudaStream_t stream) {
  float* pm0 = reinterpret_cast<float*>(ws + L.pm0);
  float* pm1 = reinterpret_cast<float*>(ws + L.pm1);
  int2* pp0 = reinterpret_cast<int2*>(ws + L.pp0);
  int2* pp1 = reinterpret_cast<int2*>(ws + L.pp1);
  if (L.n > 0) {
    // Order matters: pp1 overwrites the sorted keys (already turned into list starts) and
    // reads the sorted entries, which pp0 then overwrites.
    const unsigned nb = static_cast<unsigned>(ceil_div(L.n, 256));
    pack_queries_kernel<float><<<nb, 256, 0, stream>>>(ba, pp1, L.n);
    check_launch("pack_queries_kernel");
    pack_candidates_kernel<float><<<nb, 256, 0, stream>>>(ba, pp0, L.n);
    check_launch("pack_candidates_kernel");
  }
  if (pixels == 0) return;
  const unsigned blocks = static_cast<unsigned>(ceil_div(pixels, 256));
  to_pixel_major_kernel<CV><<<blocks, 256, 0, stream>>>(ba.vid0, ba.s0, ba.HD, ba.nT, ba.C, ba.H, ba.W, pm0, pixels);
  check_launch("to_pixel_major_kernel");
  to_pixel_major_kernel<CV><<<blocks, 256, 0, stream>>>(ba.vid1, ba.s1, ba.HD, ba.nT, ba.C, ba.H, ba.W, pm1, pixels);
  check_launch("to_pixel_major_kernel");
  grad_vid0_fast_kernel<L2, CV><<<blocks, 256, 0, stream>>>(ba, pm0, pm1, pp0, pixels);
  check_launch("grad_vid0_fast_kernel");
  grad_vid1_fast_kernel<L2, CV><<<blocks, 256, 0, stream>>>(ba, pm0, pm1, pp1, pixels);
  check_launch("grad_vid1_fast_kernel");
}

// The tap-split path (search_backward_taps.cu). grad_vid0's chain (the pixel-major copies,
// the query taps and their fold) reads no list, so it runs on a second stream beside the
// lists' keys, sort and query records (S2: about 0.13 ms each), and grad_vid1's chain
// follows both.
template <bool L2, int CV>
void taps_chunk(const SearchArgs& a, char* ws, const Layout& L, cudaStream_t stream) {
  const SearchShape& sh = a.sh;
  BwdArgs<float> ba = backward_args<float>(a);
  const int64_t pixels = sh.B * sh.HD * sh.T * sh.H * sh.W;
  float* pm0 = reinterpret_cast<float*>(ws + L.pm0);
  float* pm1 = reinterpret_cast<float*>(ws + L.pm1);
  int2* pp1 = reinterpret_cast<int2*>(ws + L.pp1);
  float* buf = reinterpret_cast<float*>(ws + L.taps);
  Fork fork(stream);
  if (pixels > 0) {
    const unsigned blocks = static_cast<unsigned>(ceil_div(pixels, 256));
    to_pixel_major_kernel<CV><<<blocks, 256, 0, fork.side()>>>(ba.vid0, ba.s0, ba.HD, ba.nT, ba.C, ba.H, ba.W, pm0,
                                                               pixels);
    check_launch("to_pixel_major_kernel");
    to_pixel_major_kernel<CV><<<blocks, 256, 0, fork.side()>>>(ba.vid1, ba.s1, ba.HD, ba.nT, ba.C, ba.H, ba.W, pm1,
                                                               pixels);
    check_launch("to_pixel_major_kernel");
  }
  backward_taps_vid0(a, ba, CV, pm0, pm1, buf, fork.side());
  const Lists lists = build_lists(inds_view(a), L.lists, ws, stream);
  ba.list_start = lists.start;
  ba.list_qk = lists.entries;
  if (L.n > 0) {
    pack_queries_kernel<float><<<static_cast<unsigned>(ceil_div(L.n, 256)), 256, 0, stream>>>(ba, pp1, L.n);
    check_launch("pack_queries_kernel");
  }
  fork.join();  // the copies are made and P is folded: the buffer can take W
  backward_taps_vid1(a, ba, CV, pm0, pm1, pp1, buf, stream);
}

template <class T, bool L2>
void backward_chunk(const SearchArgs& a, char* ws, cudaStream_t stream) {
  const SearchShape& sh = a.sh;
  const Layout L = workspace_layout(a);
  if constexpr (sizeof(T) == 4) {
    if (L.taps_bytes > 0) {
      switch (L.cv) {
        case 4: return taps_chunk<L2, 4>(a, ws, L, stream);
        case 8: return taps_chunk<L2, 8>(a, ws, L, stream);
        case 16: return taps_chunk<L2, 16>(a, ws, L, stream);
        default: return taps_chunk<L2, 32>(a, ws, L, stream);
      }
    }
  }
  const Lists lists = build_lists(inds_view(a), L.lists, ws, stream);
  BwdArgs<T> ba = backward_args<T>(a);
  ba.list_start = lists.start;
  ba.list_qk = lists.entries;
  const int64_t pixels = sh.B * sh.HD * sh.T * sh.H * sh.W;
  if constexpr (sizeof(T) == 4) {
    if (L.cv > 0) {
      switch (L.cv) {
        case 4: return launch_fast<L2, 4>(ba, ws, L, pixels, stream);
        case 8: return launch_fast<L2, 8>(ba, ws, L, pixels, stream);
        case 16: return launch_fast<L2, 16>(ba, ws, L, pixels, stream);
        default: return launch_fast<L2, 32>(ba, ws, L, pixels, stream);
      }
    }
  }
  // Channel groups share the index walk; 4 channels at a time when they divide evenly.
  if (sh.C % 4 == 0) {
    ba.cgroups = static_cast<int>(sh.C / 4);
    launch_grads<T, L2, 4>(ba, pixels, stream);
  } else {
    ba.cgroups = static_cast<int>(sh.C);
    launch_grads<T, L2, 1>(ba, pixels, stream);
  }
}


// Large calls run in chunks of (batch, head) slices (common/chunking.h).
using detail::Chunking;

SearchArgs chunk_args(const SearchArgs& a, int64_t b, int64_t h0, int64_t nb, int64_t nh) {
  SearchArgs c = a;
  const size_t es = scalar_bytes(a);
  auto shift = [&](const void* ptr, int64_t sb, int64_t sh, size_t bytes) {
    return static_cast<const void*>(static_cast<const char*>(ptr) + (b * sb + h0 * sh) * static_cast<int64_t>(bytes));
  };
  c.vid0 = shift(a.vid0, a.s0.b, a.s0.h, es);
  c.vid1 = shift(a.vid1, a.s1.b, a.s1.h, es);
  c.grad_dists = shift(a.grad_dists, a.sd[0], a.sd[1], es);
  c.inds = const_cast<void*>(shift(a.inds, a.si[0], a.si[1], sizeof(int32_t)));
  c.grad0 = const_cast<void*>(shift(a.grad0, a.g0.b, a.g0.h, es));
  c.grad1 = const_cast<void*>(shift(a.grad1, a.g1.b, a.g1.h, es));
  c.sh.B = nb;
  c.sh.HD = nh;
  return c;
}

Chunking chunking(const SearchArgs& a) {
  const SearchShape& sh = a.sh;
  const size_t grads = 2 * static_cast<size_t>(sh.B * sh.HD * sh.T * sh.C * sh.H * sh.W) * scalar_bytes(a);
  // The tap-split buffer is capped on its own (search_backward_taps.cu); the whole call
  // keeps it (S2: 0.40 ms whole against 0.49 in two chunks of one head).
  const Layout whole = workspace_layout(a);
  return detail::choose_chunking(
      sh.B, sh.HD, sh.Q * sh.K, sh.T * sh.H * sh.W, grads, [&] { return whole.total; },
      [&](int64_t h) { return workspace_layout(chunk_args(a, 0, 0, 1, h)).total; }, whole.taps_bytes);
}

template <class T, bool L2>
void backward_impl(const SearchArgs& a, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  const Chunking ch = chunking(a);
  if (workspace_bytes < ch.bytes || (ch.bytes > 0 && workspace == nullptr))
    throw ValueError("workspace: expected " + std::to_string(ch.bytes) +
                     " bytes (search_backward_workspace_size), got " + std::to_string(workspace_bytes));
  char* ws = static_cast<char*>(workspace);
  if (ch.whole) return backward_chunk<T, L2>(a, ws, stream);
  detail::for_each_chunk(a.sh.B, a.sh.HD, ch, [&](int64_t b, int64_t h0, int64_t nh) {
    backward_chunk<T, L2>(chunk_args(a, b, h0, 1, nh), ws, stream);
  });
}

// The scatters cost about one L2 atomic per term (B*HD*Q*K*pt*ps^2*C of them; H200:
// S1's 18M terms 0.145 ms with float atomics against the gather's 0.405, S2's 118M terms
// 1.08 ms against 0.64, S3 and S4 twice the gather's time), the gather a fixed ~0.25 ms
// plus far less per term: break-even near 40M terms.
constexpr double kScatterMaxTerms = 40e6;
// The fixed-point scatter's workspace (17 bytes per gradient element) stays small.
constexpr size_t kFixedMaxWorkspace = size_t(64) << 20;

bool few_terms(const SearchArgs& a) {
  const SearchShape& sh = a.sh;
  const double terms = static_cast<double>(sh.B * sh.HD * sh.Q) * sh.K * a.p.pt * a.p.ps * a.p.ps * sh.C;
  return terms <= kScatterMaxTerms;
}

// deterministic = false: float atomics.
bool use_atomic(const SearchArgs& a) { return !a.p.deterministic && few_terms(a); }

// deterministic, float32: fixed-point atomics (search_backward_fixed.cu).
bool use_fixed(const SearchArgs& a) {
  return a.p.deterministic && a.dtype == DType::Float32 && backward_fixed_enabled() && few_terms(a) &&
         search_backward_fixed_workspace_size(a) <= kFixedMaxWorkspace;
}

}  // namespace

size_t search_backward_workspace_size(const SearchArgs& a) {
  if (use_atomic(a)) return 0;
  if (use_fixed(a)) return search_backward_fixed_workspace_size(a);
  DeviceGuard guard(a.device.index);
  return chunking(a).bytes;
}

void search_backward(const SearchArgs& a, void* workspace, size_t workspace_bytes, void* stream) {
  DeviceGuard guard(a.device.index);
  if (use_atomic(a)) return search_backward_atomic(a, as_stream(stream));
  // 16-byte loads and 64-bit atomics on it (every allocator aligns at least this much)
  if (reinterpret_cast<uintptr_t>(workspace) % 16 != 0)
    throw ValueError("workspace: must be 16-byte aligned (as cudaMalloc and tensor allocators return it)");
  if (use_fixed(a)) return search_backward_fixed(a, workspace, workspace_bytes, as_stream(stream));
  STNLS_FLOAT_SWITCH(a.dtype, [&] {
    STNLS_DIST_SWITCH(a.p.dist_type, [&] {
      backward_impl<scalar_t, kL2>(a, workspace, workspace_bytes, as_stream(stream));
    });
  });
}

}  // namespace cuda
}  // namespace stnls
