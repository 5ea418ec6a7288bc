// CUDA unfold / fold / unfold_k / fold_k (tile.h), and the inverse neighbour lists that
// the deterministic adjoints of unfold_k read (patch_common.cuh).
//  - unfold, unfold_k: one thread per patch element, a plain read.
//  - fold (query grid): gather, one thread per output pixel and channel group; the pixel's
//    preimages x taps name every query patch entry read from it (deterministic).
//  - fold_k, deterministic: gather over the inverse lists of inds (entries sorted by
//    neighbour location); otherwise a scatter with atomicAdd into a zeroed output.
// Everything runs on the caller's stream, on the device of the data.
#include <cuda_runtime.h>

#include <cub/device/device_radix_sort.cuh>

#include <climits>
#include <string>

#include "common/backends.h"
#include "common/dispatch.h"
#include "cuda/patch_common.cuh"

namespace stnls {
namespace cuda {
namespace patch {

// ------------------------------------------------------------------ inverse lists
namespace {

// Key of every entry (b, hd, q, k): its location flattened, or nloc (sorted last, in no
// list) for padding and out-of-range indices. Value: the entry's flat index.
__global__ void __launch_bounds__(kThreads) list_keys_kernel(const PatchArgs a, int32_t nloc, int32_t* keys,
                                                             int32_t* vals, int64_t n) {
  const int64_t e = thread_index();
  if (e >= n) return;
  const int64_t k = e % a.K, q = (e / a.K) % a.Q, bh = e / (a.K * a.Q);
  const Loc l = load_ind(a, bh / a.HD, bh % a.HD, q, k);
  const bool ok = detail::valid_ind(a, l.t, l.h, l.w);
  keys[e] = ok ? static_cast<int32_t>(((bh * a.T + l.t) * a.H + l.h) * a.W + l.w) : nloc;
  vals[e] = static_cast<int32_t>(e);
}

// start[l] = first sorted position whose key is >= l, l = 0..nloc (binary search).
__global__ void __launch_bounds__(kThreads) list_start_kernel(const int32_t* sorted, int64_t n, int32_t nloc,
                                                              int32_t* start) {
  const int64_t l = thread_index();
  if (l > nloc) return;
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (sorted[mid] < l) lo = mid + 1;
    else hi = mid;
  }
  start[l] = static_cast<int32_t>(lo);
}

}  // namespace

ListLayout list_layout(const PatchArgs& a, size_t base) {
  ListLayout L;
  L.n = a.B * a.HD * a.Q * a.K;
  L.nloc = a.B * a.HD * a.T * a.H * a.W;
  if (L.n >= INT32_MAX || L.nloc >= INT32_MAX)
    throw BackendError("inds: more than 2^31 neighbours or pixels in one deterministic call; split the batch "
                       "or use deterministic=false");
  while ((int64_t(1) << L.nbits) <= L.nloc) ++L.nbits;  // keys are 0..nloc
  const size_t nb = align256(static_cast<size_t>(L.n) * sizeof(int32_t));
  L.keys0 = align256(base);
  L.keys1 = L.keys0 + nb;
  L.vals0 = L.keys1 + nb;
  L.vals1 = L.vals0 + nb;
  L.start = L.vals1 + nb;
  L.cub = L.start + align256(static_cast<size_t>(L.nloc + 1) * sizeof(int32_t));
  if (L.n > 0) {
    cub::DoubleBuffer<int32_t> k(nullptr, nullptr), v(nullptr, nullptr);
    STNLS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, L.cub_bytes, k, v, static_cast<int>(L.n), 0, L.nbits));
  }
  L.end = L.cub + align256(L.cub_bytes);
  return L;
}

Lists build_lists(const PatchArgs& a, const ListLayout& L, char* ws, cudaStream_t stream) {
  Lists out;
  int32_t* start = reinterpret_cast<int32_t*>(ws + L.start);
  out.start = start;
  if (L.n == 0) {
    STNLS_CUDA_CHECK(cudaMemsetAsync(start, 0, static_cast<size_t>(L.nloc + 1) * sizeof(int32_t), stream));
    return out;
  }
  int32_t* k0 = reinterpret_cast<int32_t*>(ws + L.keys0);
  int32_t* k1 = reinterpret_cast<int32_t*>(ws + L.keys1);
  int32_t* v0 = reinterpret_cast<int32_t*>(ws + L.vals0);
  int32_t* v1 = reinterpret_cast<int32_t*>(ws + L.vals1);
  list_keys_kernel<<<blocks_for(L.n), kThreads, 0, stream>>>(a, static_cast<int32_t>(L.nloc), k0, v0, L.n);
  check_launch("list_keys_kernel");
  // Radix sort is stable: entries of one location keep their (b, hd, q, k) order.
  cub::DoubleBuffer<int32_t> kb(k0, k1), vb(v0, v1);
  size_t cub_bytes = L.cub_bytes;
  STNLS_CUDA_CHECK(
      cub::DeviceRadixSort::SortPairs(ws + L.cub, cub_bytes, kb, vb, static_cast<int>(L.n), 0, L.nbits, stream));
  list_start_kernel<<<blocks_for(L.nloc + 1), kThreads, 0, stream>>>(kb.Current(), L.n,
                                                                       static_cast<int32_t>(L.nloc), start);
  check_launch("list_start_kernel");
  out.entries = vb.Current();
  return out;
}

void check_workspace(const char* op, size_t need, const void* workspace, size_t bytes) {
  if (bytes < need || (need > 0 && workspace == nullptr))
    throw ValueError(std::string("workspace: expected ") + std::to_string(need) + " bytes (" + op +
                     "_workspace_size), got " + std::to_string(bytes) + (workspace ? "" : " and a null pointer"));
}

}  // namespace patch

// ------------------------------------------------------------------ kernels
namespace {

using detail::PatchArgs;
using patch::kThreads;

// Thread per patch element, in the patch order (b, hd, q, k, pk, c, pi, pj).
struct PatchElem {
  int64_t b, hd, q, k, pk, c, pi, pj;
};
__device__ __forceinline__ PatchElem patch_elem_at(const PatchArgs& a, int64_t e) {
  PatchElem p;
  p.pj = e % a.ps;
  e /= a.ps;
  p.pi = e % a.ps;
  e /= a.ps;
  p.c = e % a.C;
  e /= a.C;
  p.pk = e % a.pt;
  e /= a.pt;
  p.k = e % a.K;
  e /= a.K;
  p.q = e % a.Q;
  e /= a.Q;
  p.hd = e % a.HD;
  p.b = e / a.HD;
  return p;
}

// Offset (in the [T, H, W] plane with strides s) of the pixel element p reads, or -1.
__device__ __forceinline__ int64_t read_offset(const PatchArgs& a, const PatchElem& p, bool neighbours,
                                               const detail::Strides6& s) {
  if (neighbours) {
    const patch::Loc l = patch::load_ind(a, p.b, p.hd, p.q, p.k);
    if (!detail::valid_ind(a, l.t, l.h, l.w)) return -1;
    return detail::tap_offset(a, l.t, l.h, l.w, p.pk, p.pi, p.pj, s);
  }
  const detail::QueryLoc l = detail::query_loc(a, p.q);
  return detail::tap_offset(a, l.t, l.h, l.w, p.pk, p.pi, p.pj, s);
}

template <class T, bool kNeighbours>
__global__ void __launch_bounds__(kThreads) unfold_kernel(const PatchArgs a, int64_t total) {
  const int64_t e = patch::thread_index();
  if (e >= total) return;
  const PatchElem p = patch_elem_at(a, e);
  const int64_t off = read_offset(a, p, kNeighbours, a.sv);
  const T* v = static_cast<const T*>(a.vid) + p.b * a.sv.b + p.hd * a.sv.h + p.c * a.sv.c;
  static_cast<T*>(a.patches_out)[detail::patch_elem(a, p.b, p.hd, p.q, p.k, p.pk, p.c, p.pi, p.pj)] =
      off < 0 ? T(0) : v[off];
}

// fold: thread per (b, hd, channel group, t, y, x).
template <class T, int CG>
__global__ void __launch_bounds__(kThreads) fold_kernel(const PatchArgs a, int groups, int64_t total) {
  const int64_t e = patch::thread_index();
  if (e >= total) return;
  const patch::PixelTask p = patch::pixel_task(a, e, CG, groups);
  const T* in = static_cast<const T*>(a.patches_in);
  T acc[CG];
#pragma unroll
  for (int c = 0; c < CG; ++c) acc[c] = T(0);
  patch::for_each_query_tap(a, p.t, p.y, p.x, [&](int64_t q, int pk, int pi, int pj) {
    const T* src = in + detail::patch_elem(a, p.b, p.hd, q, 0, pk, p.c0, pi, pj);
#pragma unroll
    for (int c = 0; c < CG; ++c)
      if (c < p.nc) acc[c] += src[c * a.sp[5]];
  });
  T* out = static_cast<T*>(a.out) + p.b * a.so.b + p.hd * a.so.h + p.c0 * a.so.c + p.t * a.so.t + p.y * a.so.y +
           p.x * a.so.x;
#pragma unroll
  for (int c = 0; c < CG; ++c)
    if (c < p.nc) out[c * a.so.c] = acc[c];
}

// fold_k, deterministic: thread per (b, hd, channel group, t, y, x), summing the entries
// of the inverse lists of every location whose tap reads this pixel.
template <class T, int CG>
__global__ void __launch_bounds__(kThreads) fold_k_gather_kernel(const PatchArgs a, const patch::Lists lists,
                                                                int groups, int64_t total) {
  const int64_t e = patch::thread_index();
  if (e >= total) return;
  const patch::PixelTask p = patch::pixel_task(a, e, CG, groups);
  const T* in = static_cast<const T*>(a.patches_in);
  const int64_t loc0 = (p.b * a.HD + p.hd) * a.T * a.H * a.W;
  T acc[CG];
#pragma unroll
  for (int c = 0; c < CG; ++c) acc[c] = T(0);
  patch::for_each_source_tap(a, p.t, p.y, p.x, [&](int64_t loc, int pk, int pi, int pj) {
    const int32_t beg = lists.start[loc0 + loc], end = lists.start[loc0 + loc + 1];
    for (int32_t li = beg; li < end; ++li) {
      const int64_t en = lists.entries[li];
      const int64_t k = en % a.K, q = (en / a.K) % a.Q;
      const T* src = in + detail::patch_elem(a, p.b, p.hd, q, k, pk, p.c0, pi, pj);
#pragma unroll
      for (int c = 0; c < CG; ++c)
        if (c < p.nc) acc[c] += src[c * a.sp[5]];
    }
  });
  T* out = static_cast<T*>(a.out) + p.b * a.so.b + p.hd * a.so.h + p.c0 * a.so.c + p.t * a.so.t + p.y * a.so.y +
           p.x * a.so.x;
#pragma unroll
  for (int c = 0; c < CG; ++c)
    if (c < p.nc) out[c * a.so.c] = acc[c];
}

// fold_k with atomics: thread per patch element, added to the pixel it was read from.
template <class T>
__global__ void __launch_bounds__(kThreads) fold_k_atomic_kernel(const PatchArgs a, int64_t total) {
  const int64_t e = patch::thread_index();
  if (e >= total) return;
  const PatchElem p = patch_elem_at(a, e);
  const int64_t off = read_offset(a, p, true, a.so);
  if (off < 0) return;
  const T val = static_cast<const T*>(a.patches_in)[detail::patch_elem(a, p.b, p.hd, p.q, p.k, p.pk, p.c, p.pi, p.pj)];
  atomicAdd(static_cast<T*>(a.out) + p.b * a.so.b + p.hd * a.so.h + p.c * a.so.c + off, val);
}

int64_t patch_elems(const PatchArgs& a) { return a.B * a.HD * a.Q * a.K * a.pt * a.C * a.ps * a.ps; }

template <class T, bool kNeighbours>
void launch_unfold(const PatchArgs& a, cudaStream_t stream) {
  const int64_t total = patch_elems(a);
  if (total == 0) return;
  unfold_kernel<T, kNeighbours><<<patch::blocks_for(total), kThreads, 0, stream>>>(a, total);
  check_launch("unfold_kernel");
}

template <class T, int CG>
void launch_fold_cg(const PatchArgs& a, cudaStream_t stream) {
  const int groups = patch::channel_groups(a, CG);
  const int64_t total = a.B * a.HD * groups * a.T * a.H * a.W;
  if (total == 0) return;
  fold_kernel<T, CG><<<patch::blocks_for(total), kThreads, 0, stream>>>(a, groups, total);
  check_launch("fold_kernel");
}

template <class T, int CG>
void launch_fold_k_gather(const PatchArgs& a, const patch::Lists& lists, cudaStream_t stream) {
  const int groups = patch::channel_groups(a, CG);
  const int64_t total = a.B * a.HD * groups * a.T * a.H * a.W;
  if (total == 0) return;
  fold_k_gather_kernel<T, CG><<<patch::blocks_for(total), kThreads, 0, stream>>>(a, lists, groups, total);
  check_launch("fold_k_gather_kernel");
}

template <class T>
void launch_fold(const PatchArgs& a, cudaStream_t stream) {
  if (patch::channel_group(a) == 4) launch_fold_cg<T, 4>(a, stream);
  else launch_fold_cg<T, 1>(a, stream);
}

template <class T>
void launch_fold_k(const PatchArgs& a, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  if (!a.deterministic) {
    patch::zero_video(a, static_cast<T*>(a.out), a.so, stream);
    const int64_t total = patch_elems(a);
    if (total == 0) return;
    fold_k_atomic_kernel<T><<<patch::blocks_for(total), kThreads, 0, stream>>>(a, total);
    check_launch("fold_k_atomic_kernel");
    return;
  }
  const patch::ListLayout L = patch::list_layout(a, 0);
  patch::check_workspace("fold_k", L.end, workspace, workspace_bytes);
  const patch::Lists lists = patch::build_lists(a, L, static_cast<char*>(workspace), stream);
  if (patch::channel_group(a) == 4) launch_fold_k_gather<T, 4>(a, lists, stream);
  else launch_fold_k_gather<T, 1>(a, lists, stream);
}

}  // namespace

// ------------------------------------------------------------------ entry points
void unfold(const detail::PatchArgs& a, void* stream) {
  DeviceGuard guard(a.device.index);
  STNLS_FLOAT_SWITCH(a.dtype, [&] { launch_unfold<scalar_t, false>(a, as_stream(stream)); });
}

void fold(const detail::PatchArgs& a, void* stream) {
  DeviceGuard guard(a.device.index);
  STNLS_FLOAT_SWITCH(a.dtype, [&] { launch_fold<scalar_t>(a, as_stream(stream)); });
}

void unfold_k(const detail::PatchArgs& a, void* stream) {
  DeviceGuard guard(a.device.index);
  STNLS_FLOAT_SWITCH(a.dtype, [&] { launch_unfold<scalar_t, true>(a, as_stream(stream)); });
}

size_t fold_k_workspace_size(const detail::PatchArgs& a) {
  if (!a.deterministic) return 0;
  DeviceGuard guard(a.device.index);
  return patch::list_layout(a, 0).end;
}

void fold_k(const detail::PatchArgs& a, void* workspace, size_t workspace_bytes, void* stream) {
  DeviceGuard guard(a.device.index);
  STNLS_FLOAT_SWITCH(a.dtype,
                     [&] { launch_fold_k<scalar_t>(a, workspace, workspace_bytes, as_stream(stream)); });
}

}  // namespace cuda
}  // namespace stnls
