// Internal: what the CUDA patch kernels (tile.cu, agg.cu) share.
//  - Gather enumerators. A pixel P of a video is touched by a patch tap when bound() maps
//    the tap's coordinate onto P, i.e. when the coordinate is one of P's preimages (at most
//    3 per axis under one reflection). Enumerating preimages x taps lets every output
//    element be written by one thread that sums in a fixed order (no atomics).
//  - Inverse lists of a search's neighbours: the (b, hd, q, k) entries sorted by their
//    location (a stable radix sort, so each location's list is in (q, k) order), for the
//    deterministic adjoints of reads at arbitrary neighbour locations (fold_k, the
//    weighted patch sum's grad_vid). Built in tile.cu into the caller's workspace.
//  - Launch helpers and the zero fill of strided video planes (atomic paths).
#pragma once
#include "cuda/inverse_lists.h"
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/chunking.h"
#include "common/patch_args.h"
#include "common/patch_geometry.h"
#include "cuda/cuda_util.h"
#include "cuda/zero_video.cuh"

namespace stnls {
namespace cuda {
namespace patch {

using detail::PatchArgs;

constexpr int kThreads = 256;

inline unsigned blocks_for(int64_t total) { return static_cast<unsigned>(ceil_div(total, kThreads)); }

__device__ __forceinline__ int64_t thread_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}

// The r-th preimage (r = 0, 1, 2) of coordinate P under bound() on an axis of length L, in
// the order of geo::preimages: P, -P (P > 0), 2(L-1)-P (when >= L). False when the r-th
// does not exist. Computed on the fly so that no small array is indexed at run time.
__device__ __forceinline__ bool preimage(int r, int P, int L, bool reflect, int& z) {
  if (r == 0) {
    z = P;
    return true;
  }
  if (!reflect) return false;
  if (r == 1) {
    z = -P;
    return P > 0;
  }
  z = 2 * (L - 1) - P;
  return z >= L;
}

// Along a spatial axis of the query grid: the grid index g of the query whose tap i reads
// coordinate z (g*stride + dil*(i - o) == z), or -1 when there is none.
__device__ __forceinline__ int grid_index(int z, int i, int o, int dil, int stride, int n) {
  const int d = z - dil * (i - o);
  if (d < 0) return -1;
  const int g = d / stride;
  return (g * stride == d && g < n) ? g : -1;
}

// Calls f(q, pk, pi, pj) for every query q of the stride0 grid and tap (pk, pi, pj) of its
// patch that reads pixel (t, y, x), in a fixed order. The number of calls is fold(ones)
// at the pixel (the coverage count).
template <class F>
__device__ __forceinline__ void for_each_query_tap(const PatchArgs& a, int t, int y, int x, F&& f) {
  const int T = static_cast<int>(a.T), H = static_cast<int>(a.H), W = static_cast<int>(a.W);
  const int nH = static_cast<int>(a.nH), nW = static_cast<int>(a.nW);
  const int ps = static_cast<int>(a.ps), pt = static_cast<int>(a.pt), o = static_cast<int>(a.ps / 2);
  const int dil = static_cast<int>(a.dilation), s0 = static_cast<int>(a.stride0);
  const bool refl = a.reflect_bounds;
  for (int rt = 0; rt < 3; ++rt) {
    int zt;
    if (!preimage(rt, t, T, refl, zt)) continue;
    for (int pk = 0; pk < pt; ++pk) {
      const int tq = zt - pk;
      if (tq < 0 || tq >= T) continue;
      for (int ry = 0; ry < 3; ++ry) {
        int zy;
        if (!preimage(ry, y, H, refl, zy)) continue;
        for (int pi = 0; pi < ps; ++pi) {
          const int gy = grid_index(zy, pi, o, dil, s0, nH);
          if (gy < 0) continue;
          for (int rx = 0; rx < 3; ++rx) {
            int zx;
            if (!preimage(rx, x, W, refl, zx)) continue;
            for (int pj = 0; pj < ps; ++pj) {
              const int gx = grid_index(zx, pj, o, dil, s0, nW);
              if (gx < 0) continue;
              const int64_t q = (static_cast<int64_t>(tq) * nH + gy) * nW + gx;
              f(q, pk, pi, pj);
            }
          }
        }
      }
    }
  }
}

// Calls f(loc, pk, pi, pj) for every location (u, v, w) inside the video and tap
// (pk, pi, pj) whose read bound((u, v, w) + tap offset) is pixel (t, y, x), in a fixed
// order; loc = (u*H + v)*W + w.
template <class F>
__device__ __forceinline__ void for_each_source_tap(const PatchArgs& a, int t, int y, int x, F&& f) {
  const int T = static_cast<int>(a.T), H = static_cast<int>(a.H), W = static_cast<int>(a.W);
  const int ps = static_cast<int>(a.ps), pt = static_cast<int>(a.pt), o = static_cast<int>(a.ps / 2);
  const int dil = static_cast<int>(a.dilation);
  const bool refl = a.reflect_bounds;
  for (int rt = 0; rt < 3; ++rt) {
    int zt;
    if (!preimage(rt, t, T, refl, zt)) continue;
    for (int pk = 0; pk < pt; ++pk) {
      const int u = zt - pk;
      if (u < 0 || u >= T) continue;
      for (int ry = 0; ry < 3; ++ry) {
        int zy;
        if (!preimage(ry, y, H, refl, zy)) continue;
        for (int pi = 0; pi < ps; ++pi) {
          const int v = zy - dil * (pi - o);
          if (v < 0 || v >= H) continue;
          for (int rx = 0; rx < 3; ++rx) {
            int zx;
            if (!preimage(rx, x, W, refl, zx)) continue;
            for (int pj = 0; pj < ps; ++pj) {
              const int w = zx - dil * (pj - o);
              if (w < 0 || w >= W) continue;
              f((static_cast<int64_t>(u) * H + v) * W + w, pk, pi, pj);
            }
          }
        }
      }
    }
  }
}

// The neighbour location (t, h, w) of entry (b, hd, q, k) of inds.
struct Loc {
  int t, h, w;
};
__device__ __forceinline__ Loc load_ind(const PatchArgs& a, int64_t b, int64_t hd, int64_t q, int64_t k) {
  const int32_t* e = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2] + k * a.si[3];
  return {e[0], e[a.si[4]], e[2 * a.si[4]]};
}

// Output elements of a video-shaped gather: one thread per (b, hd, channel group, t, y, x),
// x fastest so that neighbouring threads write neighbouring pixels.
struct PixelTask {
  int64_t b, hd;
  int c0, nc;  // first channel of the group and channels in it
  int t, y, x;
};
__device__ __forceinline__ PixelTask pixel_task(const PatchArgs& a, int64_t e, int cg_size, int groups) {
  PixelTask p;
  p.x = static_cast<int>(e % a.W);
  int64_t r = e / a.W;
  p.y = static_cast<int>(r % a.H);
  r /= a.H;
  p.t = static_cast<int>(r % a.T);
  r /= a.T;
  const int g = static_cast<int>(r % groups);
  r /= groups;
  p.hd = r % a.HD;
  p.b = r / a.HD;
  p.c0 = g * cg_size;
  p.nc = min(cg_size, static_cast<int>(a.C) - p.c0);
  return p;
}

// Channels per thread of a gather: the index walk is shared by up to 4 channels.
inline int channel_group(const PatchArgs& a) { return a.C >= 4 ? 4 : 1; }
inline int channel_groups(const PatchArgs& a, int cg) { return static_cast<int>(ceil_div(a.C, cg)); }

// Zeroes the output video before an atomic scatter (cuda/zero_video.cuh).
template <class T>
void zero_video(const PatchArgs& a, T* v, const detail::Strides6& s, cudaStream_t stream) {
  cuda::zero_video(v, s, a.B, a.HD, a.T, a.C, a.H, a.W, stream);
}

// The call restricted to batch entry b and heads h0 .. h0 + nh - 1 (a chunk of a large
// deterministic call, common/chunking.h): every tensor the call names is shifted there.
inline PatchArgs slice_args(const PatchArgs& a, int64_t b, int64_t h0, int64_t nh) {
  PatchArgs c = a;
  const int64_t es = a.dtype == DType::Float32 ? 4 : 8;
  auto at = [&](const void* p, int64_t sb, int64_t sh, int64_t bytes) -> const char* {
    return p ? static_cast<const char*>(p) + (b * sb + h0 * sh) * bytes : nullptr;
  };
  c.vid = at(a.vid, a.sv.b, a.sv.h, es);
  c.out = const_cast<char*>(at(a.out, a.so.b, a.so.h, es));
  c.grad_out = at(a.grad_out, a.sg.b, a.sg.h, es);
  c.patches_in = at(a.patches_in, a.sp[0], a.sp[1], es);
  c.patches_out = const_cast<char*>(at(a.patches_out, a.sp[0], a.sp[1], es));
  c.weights = at(a.weights, a.sw[0], a.sw[1], es);
  c.grad_weights = const_cast<char*>(at(a.grad_weights, a.sgw[0], a.sgw[1], es));
  c.inds = reinterpret_cast<const int32_t*>(at(a.inds, a.si[0], a.si[1], sizeof(int32_t)));
  c.B = 1;
  c.HD = nh;
  return c;
}

// Inverse lists in the workspace. start[l] .. start[l+1] are the positions in `entries` of
// the entries whose location is l = ((b*HD + hd)*T + t)*H*W + h*W + w; entries hold the
// flat index ((b*HD + hd)*Q + q)*K + k. Padding and out-of-range indices are in no list.
using cuda::align256;
using cuda::ListLayout;
using cuda::Lists;

// The inverse lists of a's inds (defined in tile.cu).
ListLayout list_layout(const PatchArgs& a, size_t base);
Lists build_lists(const PatchArgs& a, const ListLayout& L, char* workspace, cudaStream_t stream);

// Throws unless the caller's workspace holds `need` bytes.
void check_workspace(const char* op, size_t need, const void* workspace, size_t bytes);

// A deterministic op on the caller's workspace: chunk(args, ws) for the whole call, or for
// each chunk of (batch, head) slices that `ch` chose (common/chunking.h), one after the
// other on the same scratch.
template <class Chunk>
void run_chunks(const PatchArgs& a, const detail::Chunking& ch, const char* op, void* workspace, size_t bytes,
                Chunk chunk) {
  check_workspace(op, ch.bytes, workspace, bytes);
  char* ws = static_cast<char*>(workspace);
  if (ch.whole) return chunk(a, ws);
  detail::for_each_chunk(a.B, a.HD, ch,
                         [&](int64_t b, int64_t h0, int64_t nh) { chunk(slice_args(a, b, h0, nh), ws); });
}

}  // namespace patch
}  // namespace cuda
}  // namespace stnls
