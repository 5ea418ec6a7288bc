// CUDA weighted patch sum (agg.h), forward and backward.
//  - Forward, fused gather: one thread per output pixel and channel group enumerates the
//    (query, tap) pairs that fold into it (preimages x taps), sums
//    weights[q,k] * vid[bound(inds[q,k] + tap)] over k, and divides by how many pairs it
//    met (the coverage count fold(ones)). No (Q, K, patch) stack, no scratch, no atomics.
//  - Backward. The gradient reaching a tap is grad_out / count at the pixel the tap is
//    folded into; the per-axis coverage counts are tabulated in the workspace.
//    grad_weights: one thread per (q, k), taps and channels summed in the CPU's order.
//    grad_vid, deterministic: gather over the inverse lists of inds (tile.cu); otherwise a
//    scatter with atomicAdd into a zeroed output. Float with C per head <= 32 takes the
//    pixel-major path of agg_backward_fast.cuh (both gradients). Large deterministic calls
//    run in chunks of (batch, head) slices to bound the workspace (common/chunking.h).
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <string>
#include <type_traits>

#include "common/backends.h"
#include "common/chunking.h"
#include "common/dispatch.h"
#include "cuda/agg_backward_fast.cuh"
#include "cuda/patch_common.cuh"

namespace stnls {
namespace cuda {
namespace {

using detail::PatchArgs;
using patch::kThreads;

// Channels per thread of the forward: each (query, tap, neighbour) costs an index walk
// (indices, weight, bounds) that is shared by the thread's channels, so a thread takes up
// to 16 of them (attention heads are typically 8-32 channels wide; 128x128 attention,
// ps=3: 5.9 -> 4.5 ms on an H100); two blocks per SM leave 128 registers, enough for 16
// accumulators without spills.
inline int wide_channel_group(const PatchArgs& a) { return a.C >= 16 ? 16 : a.C >= 8 ? 8 : a.C >= 4 ? 4 : 1; }

// ------------------------------------------------------------------ forward
template <class T, int CG>
__global__ void __launch_bounds__(kThreads, 2) wpsum_forward_kernel(const PatchArgs a, int groups, int64_t total) {
  const int64_t e = patch::thread_index();
  if (e >= total) return;
  const patch::PixelTask p = patch::pixel_task(a, e, CG, groups);
  const T* vid = static_cast<const T*>(a.vid) + p.b * a.sv.b + p.hd * a.sv.h + p.c0 * a.sv.c;
  const T* wts = static_cast<const T*>(a.weights) + p.b * a.sw[0] + p.hd * a.sw[1];
  T acc[CG];
#pragma unroll
  for (int c = 0; c < CG; ++c) acc[c] = T(0);
  int64_t count = 0;
  patch::for_each_query_tap(a, p.t, p.y, p.x, [&](int64_t q, int pk, int pi, int pj) {
    ++count;
    for (int64_t k = 0; k < a.K; ++k) {
      const patch::Loc l = patch::load_ind(a, p.b, p.hd, q, k);
      if (!detail::valid_ind(a, l.t, l.h, l.w)) continue;
      const int64_t src = detail::tap_offset(a, l.t, l.h, l.w, pk, pi, pj, a.sv);
      if (src < 0) continue;
      const T w = wts[q * a.sw[2] + k * a.sw[3]];
#pragma unroll
      for (int c = 0; c < CG; ++c)
        if (c < p.nc) acc[c] += w * vid[src + c * a.sv.c];
    }
  });
  T* out = static_cast<T*>(a.out) + p.b * a.so.b + p.hd * a.so.h + p.c0 * a.so.c + p.t * a.so.t + p.y * a.so.y +
           p.x * a.so.x;
#pragma unroll
  for (int c = 0; c < CG; ++c)
    if (c < p.nc) out[c * a.so.c] = count > 0 ? acc[c] / T(count) : T(0);
}

// ------------------------------------------------------------------ backward
// Per-axis coverage counts: cov[0..T) time, cov[T..T+H) rows, cov[T+H..T+H+W) columns;
// fold(ones) at (t, y, x) is their product.
__global__ void __launch_bounds__(kThreads) coverage_kernel(const PatchArgs a, int32_t* cov) {
  const int64_t i = patch::thread_index();
  const int64_t o = a.ps / 2;
  if (i < a.T) {
    cov[i] = static_cast<int32_t>(geo::coverage(i, a.T, 1, a.T, a.pt, 1, 0, a.reflect_bounds));
  } else if (i < a.T + a.H) {
    cov[i] = static_cast<int32_t>(geo::coverage(i - a.T, a.H, a.stride0, a.nH, a.ps, a.dilation, o, a.reflect_bounds));
  } else if (i < a.T + a.H + a.W) {
    cov[i] = static_cast<int32_t>(
        geo::coverage(i - a.T - a.H, a.W, a.stride0, a.nW, a.ps, a.dilation, o, a.reflect_bounds));
  }
}

// Where tap (pk, pi, pj) of query q is folded into: its offset in grad_out's plane and the
// coverage count there; false when the tap lies outside the video.
struct Dst {
  int64_t off, count;
};
__device__ __forceinline__ bool query_dst(const PatchArgs& a, const int32_t* cov, int64_t q, int64_t pk, int64_t pi,
                                          int64_t pj, Dst& d) {
  const detail::QueryLoc l = detail::query_loc(a, q);
  const int64_t o = a.ps / 2;
  const int64_t tt = geo::bound(l.t + pk, a.T, a.reflect_bounds);
  const int64_t yy = geo::bound(l.h + a.dilation * (pi - o), a.H, a.reflect_bounds);
  const int64_t xx = geo::bound(l.w + a.dilation * (pj - o), a.W, a.reflect_bounds);
  if (tt < 0 || yy < 0 || xx < 0) return false;
  d.off = tt * a.sg.t + yy * a.sg.y + xx * a.sg.x;
  d.count = static_cast<int64_t>(cov[tt]) * cov[a.T + yy] * cov[a.T + a.H + xx];
  return true;
}

// grad_weights[q, k] = sum over taps of (sum_c grad_out[dst, c] * vid[src, c]) / count(dst).
// Thread per (b, hd, q, k), k fastest (threads of one query share grad_out reads).
template <class T>
__global__ void __launch_bounds__(kThreads) grad_weights_kernel(const PatchArgs a, const int32_t* cov, int64_t total) {
  const int64_t e = patch::thread_index();
  if (e >= total) return;
  const int64_t k = e % a.K, q = (e / a.K) % a.Q, bh = e / (a.K * a.Q);
  const int64_t b = bh / a.HD, hd = bh % a.HD;
  T* gw = static_cast<T*>(a.grad_weights) + b * a.sgw[0] + hd * a.sgw[1] + q * a.sgw[2] + k * a.sgw[3];
  const patch::Loc l = patch::load_ind(a, b, hd, q, k);
  if (!detail::valid_ind(a, l.t, l.h, l.w)) {
    *gw = T(0);
    return;
  }
  const T* v = static_cast<const T*>(a.vid) + b * a.sv.b + hd * a.sv.h;
  const T* go = static_cast<const T*>(a.grad_out) + b * a.sg.b + hd * a.sg.h;
  T acc = T(0);
  for (int64_t pk = 0; pk < a.pt; ++pk)
    for (int64_t pi = 0; pi < a.ps; ++pi)
      for (int64_t pj = 0; pj < a.ps; ++pj) {
        const int64_t src = detail::tap_offset(a, l.t, l.h, l.w, pk, pi, pj, a.sv);
        Dst d;
        if (src < 0 || !query_dst(a, cov, q, pk, pi, pj, d)) continue;
        T s = T(0);
        for (int64_t c = 0; c < a.C; ++c) s += go[d.off + c * a.sg.c] * v[src + c * a.sv.c];
        acc += s / T(d.count);
      }
  *gw = acc;
}

// grad_vid, deterministic: thread per (b, hd, channel group, t, y, x); every (q, k, tap)
// that read this pixel adds weights[q,k] * grad_out[dst] / count(dst).
template <class T, int CG>
__global__ void __launch_bounds__(kThreads) grad_vid_gather_kernel(const PatchArgs a, const int32_t* cov,
                                                                  const patch::Lists lists, int groups,
                                                                  int64_t total) {
  const int64_t e = patch::thread_index();
  if (e >= total) return;
  const patch::PixelTask p = patch::pixel_task(a, e, CG, groups);
  const T* go = static_cast<const T*>(a.grad_out) + p.b * a.sg.b + p.hd * a.sg.h + p.c0 * a.sg.c;
  const T* wts = static_cast<const T*>(a.weights) + p.b * a.sw[0] + p.hd * a.sw[1];
  const int64_t loc0 = (p.b * a.HD + p.hd) * a.T * a.H * a.W;
  T acc[CG];
#pragma unroll
  for (int c = 0; c < CG; ++c) acc[c] = T(0);
  patch::for_each_source_tap(a, p.t, p.y, p.x, [&](int64_t loc, int pk, int pi, int pj) {
    const int32_t beg = lists.start[loc0 + loc], end = lists.start[loc0 + loc + 1];
    for (int32_t li = beg; li < end; ++li) {
      const int64_t en = lists.entries[li];
      const int64_t k = en % a.K, q = (en / a.K) % a.Q;
      Dst d;
      if (!query_dst(a, cov, q, pk, pi, pj, d)) continue;
      const T w = wts[q * a.sw[2] + k * a.sw[3]];
#pragma unroll
      for (int c = 0; c < CG; ++c)
        if (c < p.nc) acc[c] += w * go[d.off + c * a.sg.c] / T(d.count);
    }
  });
  T* out = static_cast<T*>(a.out) + p.b * a.so.b + p.hd * a.so.h + p.c0 * a.so.c + p.t * a.so.t + p.y * a.so.y +
           p.x * a.so.x;
#pragma unroll
  for (int c = 0; c < CG; ++c)
    if (c < p.nc) out[c * a.so.c] = acc[c];
}

// grad_vid with atomics: thread per (b, hd, q, k, pk, pi, pj), looping over channels.
template <class T>
__global__ void __launch_bounds__(kThreads) grad_vid_atomic_kernel(const PatchArgs a, const int32_t* cov,
                                                                  int64_t total) {
  const int64_t e = patch::thread_index();
  if (e >= total) return;
  const int64_t pj = e % a.ps, pi = (e / a.ps) % a.ps, pk = (e / (a.ps * a.ps)) % a.pt;
  const int64_t r = e / (a.ps * a.ps * a.pt);
  const int64_t k = r % a.K, q = (r / a.K) % a.Q, bh = r / (a.K * a.Q);
  const int64_t b = bh / a.HD, hd = bh % a.HD;
  const patch::Loc l = patch::load_ind(a, b, hd, q, k);
  if (!detail::valid_ind(a, l.t, l.h, l.w)) return;
  const int64_t src = detail::tap_offset(a, l.t, l.h, l.w, pk, pi, pj, a.so);
  Dst d;
  if (src < 0 || !query_dst(a, cov, q, pk, pi, pj, d)) return;
  const T w = static_cast<const T*>(a.weights)[b * a.sw[0] + hd * a.sw[1] + q * a.sw[2] + k * a.sw[3]];
  const T* go = static_cast<const T*>(a.grad_out) + b * a.sg.b + hd * a.sg.h + d.off;
  T* gv = static_cast<T*>(a.out) + b * a.so.b + hd * a.so.h + src;
  for (int64_t c = 0; c < a.C; ++c) atomicAdd(gv + c * a.so.c, w * go[c * a.sg.c] / T(d.count));
}

// ------------------------------------------------------------------ launches
template <class T, int CG>
void launch_forward_cg(const PatchArgs& a, cudaStream_t stream) {
  const int groups = patch::channel_groups(a, CG);
  const int64_t total = a.B * a.HD * groups * a.T * a.H * a.W;
  if (total == 0) return;
  wpsum_forward_kernel<T, CG><<<patch::blocks_for(total), kThreads, 0, stream>>>(a, groups, total);
  check_launch("wpsum_forward_kernel");
}

template <class T, int CG>
void launch_grad_vid_gather(const PatchArgs& a, const int32_t* cov, const patch::Lists& lists, cudaStream_t stream) {
  const int groups = patch::channel_groups(a, CG);
  const int64_t total = a.B * a.HD * groups * a.T * a.H * a.W;
  if (total == 0) return;
  grad_vid_gather_kernel<T, CG><<<patch::blocks_for(total), kThreads, 0, stream>>>(a, cov, lists, groups, total);
  check_launch("grad_vid_gather_kernel");
}

// Workspace: the coverage tables, then (deterministic) the inverse lists. The fast path
// (float, C per head <= 32) packs its records over the lists' two sort key buffers once
// the list starts are built, and puts its two pixel-major copies over the sort's scratch.
struct BwdLayout {
  size_t cov_bytes = 0;
  patch::ListLayout lists;
  int cv = 0;              // fast path channels (0: general path)
  size_t g = 0, v = 0;     // fast path: pixel-major grad_out / count and vid
  size_t total = 0;
};
BwdLayout backward_layout(const PatchArgs& a) {
  BwdLayout L;
  L.cov_bytes = patch::align256(static_cast<size_t>(a.T + a.H + a.W) * sizeof(int32_t));
  L.total = L.cov_bytes;
  if (!a.deterministic) return L;
  L.lists = patch::list_layout(a, L.cov_bytes);
  L.total = L.lists.end;
  L.cv = pixel::fast_channels(a.C, a.dtype == DType::Float32 ? 4 : 8);
  if (L.cv > 0) {
    const size_t copy = patch::align256(static_cast<size_t>(a.B * a.HD * a.T * a.H * a.W) * L.cv * sizeof(float));
    L.g = L.lists.cub;
    L.v = L.g + copy;
    L.total = std::max(L.total, L.v + copy);
  }
  return L;
}

template <class T>
void backward_chunk(const PatchArgs& a, char* ws, cudaStream_t stream) {
  const BwdLayout L = backward_layout(a);
  int32_t* cov = reinterpret_cast<int32_t*>(ws);
  coverage_kernel<<<patch::blocks_for(a.T + a.H + a.W), kThreads, 0, stream>>>(a, cov);
  check_launch("coverage_kernel");

  const int64_t nqk = a.B * a.HD * a.Q * a.K;
  if (!a.deterministic) {
    if (nqk > 0) {
      grad_weights_kernel<T><<<patch::blocks_for(nqk), kThreads, 0, stream>>>(a, cov, nqk);
      check_launch("grad_weights_kernel");
    }
    patch::zero_video(a, static_cast<T*>(a.out), a.so, stream);
    const int64_t total = nqk * a.pt * a.ps * a.ps;
    if (total == 0) return;
    grad_vid_atomic_kernel<T><<<patch::blocks_for(total), kThreads, 0, stream>>>(a, cov, total);
    check_launch("grad_vid_atomic_kernel");
    return;
  }
  const patch::Lists lists = patch::build_lists(a, L.lists, ws, stream);
  if constexpr (sizeof(T) == 4) {
    if (L.cv > 0) {
      int2* rec = reinterpret_cast<int2*>(ws + L.lists.keys0);
      float* g = reinterpret_cast<float*>(ws + L.g);
      float* v = reinterpret_cast<float*>(ws + L.v);
      const auto run = [&](auto cv) {
        agg_fast::backward<decltype(cv)::value>(a, cov, lists.start, lists.entries, L.lists.n, rec, g, v, stream);
      };
      switch (L.cv) {
        case 4: return run(std::integral_constant<int, 4>{});
        case 8: return run(std::integral_constant<int, 8>{});
        case 16: return run(std::integral_constant<int, 16>{});
        default: return run(std::integral_constant<int, 32>{});
      }
    }
  }
  if (nqk > 0) {
    grad_weights_kernel<T><<<patch::blocks_for(nqk), kThreads, 0, stream>>>(a, cov, nqk);
    check_launch("grad_weights_kernel");
  }
  // Four channels per thread here: 16 measured 9% slower (its list walk is latency-bound,
  // and a quarter of the threads hide less of it).
  if (patch::channel_group(a) == 4) launch_grad_vid_gather<T, 4>(a, cov, lists, stream);
  else launch_grad_vid_gather<T, 1>(a, cov, lists, stream);
}

// Large deterministic calls run in chunks of (batch, head) slices (common/chunking.h); the
// workspace holds the lists (16 bytes per pair) and, on the fast path, two pixel-major copies.
using detail::Chunking;

Chunking chunking(const PatchArgs& a) {
  if (!a.deterministic) return {a.HD, true, backward_layout(a).total};
  const size_t es = a.dtype == DType::Float32 ? 4 : 8;
  const size_t grads = static_cast<size_t>(a.B * a.HD * (a.T * a.C * a.H * a.W + a.Q * a.K)) * es;
  return detail::choose_chunking(
      a.B, a.HD, a.Q * a.K, a.T * a.H * a.W, grads, [&] { return backward_layout(a).total; },
      [&](int64_t h) { return backward_layout(patch::slice_args(a, 0, 0, h)).total; });
}

template <class T>
void backward_impl(const PatchArgs& a, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  patch::run_chunks(a, chunking(a), "wpsum_backward", workspace, workspace_bytes,
                    [&](const PatchArgs& c, char* ws) { backward_chunk<T>(c, ws, stream); });
}

}  // namespace

// ------------------------------------------------------------------ entry points
void wpsum_forward(const detail::PatchArgs& a, void* stream) {
  DeviceGuard guard(a.device.index);
  STNLS_FLOAT_SWITCH(a.dtype, [&] {
    switch (wide_channel_group(a)) {
      case 16: return launch_forward_cg<scalar_t, 16>(a, as_stream(stream));
      case 8: return launch_forward_cg<scalar_t, 8>(a, as_stream(stream));
      case 4: return launch_forward_cg<scalar_t, 4>(a, as_stream(stream));
      default: return launch_forward_cg<scalar_t, 1>(a, as_stream(stream));
    }
  });
}

size_t wpsum_backward_workspace_size(const detail::PatchArgs& a) {
  DeviceGuard guard(a.device.index);
  return chunking(a).bytes;
}

void wpsum_backward(const detail::PatchArgs& a, void* workspace, size_t workspace_bytes, void* stream) {
  DeviceGuard guard(a.device.index);
  STNLS_FLOAT_SWITCH(a.dtype, [&] { backward_impl<scalar_t>(a, workspace, workspace_bytes, as_stream(stream)); });
}

}  // namespace cuda
}  // namespace stnls
