// CUDA unfold / fold / unfold_k / fold_k (tile.h), and the patch ops' access to the
// inverse neighbour lists (inverse_lists.h) that the deterministic adjoints read.
//  - unfold, unfold_k: one thread per patch element, a plain read.
//  - fold (query grid): gather, one thread per output pixel and channel group; the pixel's
//    preimages x taps name every query patch entry read from it (deterministic).
//  - fold_k, deterministic: gather over the inverse lists of inds (entries sorted by
//    neighbour location), per chunk of (batch, head) slices for large calls; otherwise a
//    scatter with atomicAdd into a zeroed output.
// Everything runs on the caller's stream, on the device of the data.
#include <cuda_runtime.h>

#include <string>

#include "common/backends.h"
#include "common/chunking.h"
#include "common/dispatch.h"
#include "cuda/patch_common.cuh"

namespace stnls {
namespace cuda {
namespace patch {

// ------------------------------------------------------------------ inverse lists
namespace {
IndsView inds_view(const PatchArgs& a) {
  IndsView in{a.inds, {a.si[0], a.si[1], a.si[2], a.si[3], a.si[4]}, a.B, a.HD, a.Q, a.K, a.T, a.H, a.W};
  return in;
}
}  // namespace

ListLayout list_layout(const PatchArgs& a, size_t base) {
  return cuda::list_layout(inds_view(a), base,
                           "inds: more than 2^31 neighbours or pixels in one deterministic call; split the batch "
                           "or use deterministic=false");
}

Lists build_lists(const PatchArgs& a, const ListLayout& L, char* ws, cudaStream_t stream) {
  return cuda::build_lists(inds_view(a), L, ws, stream);
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

// Deterministic fold_k: the inverse lists (about 16 bytes per (query, neighbour) pair) in
// the workspace, built and read per chunk of (batch, head) slices when the whole call's
// would exceed max(64 MiB, the output's size) (common/chunking.h); same result either way.
detail::Chunking fold_k_chunking(const PatchArgs& a) {
  if (!a.deterministic) return {a.HD, true, 0};
  const size_t out = static_cast<size_t>(a.B * a.HD * a.T * a.C * a.H * a.W) * (a.dtype == DType::Float32 ? 4 : 8);
  return detail::choose_chunking(
      a.B, a.HD, a.Q * a.K, a.T * a.H * a.W, out, [&] { return patch::list_layout(a, 0).end; },
      [&](int64_t h) { return patch::list_layout(patch::slice_args(a, 0, 0, h), 0).end; });
}

template <class T>
void fold_k_gather_chunk(const PatchArgs& a, char* ws, cudaStream_t stream) {
  const patch::ListLayout L = patch::list_layout(a, 0);
  const patch::Lists lists = patch::build_lists(a, L, ws, stream);
  if (patch::channel_group(a) == 4) launch_fold_k_gather<T, 4>(a, lists, stream);
  else launch_fold_k_gather<T, 1>(a, lists, stream);
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
  patch::run_chunks(a, fold_k_chunking(a), "fold_k", workspace, workspace_bytes,
                    [&](const PatchArgs& c, char* ws) { fold_k_gather_chunk<T>(c, ws, stream); });
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
  return fold_k_chunking(a).bytes;
}

void fold_k(const detail::PatchArgs& a, void* workspace, size_t workspace_bytes, void* stream) {
  DeviceGuard guard(a.device.index);
  STNLS_FLOAT_SWITCH(a.dtype,
                     [&] { launch_fold_k<scalar_t>(a, workspace, workspace_bytes, as_stream(stream)); });
}

}  // namespace cuda
}  // namespace stnls
