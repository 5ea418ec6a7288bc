// Pieces the CUDA forward layouts share: search_forward.cu (a warp per query),
// search_forward_thread.cu (a thread per query), search_forward_rows.cu (a few threads per
// query, one patch row each) and search_forward_groups.cu (4 threads per query, one
// channel group each).
#pragma once
#include <cuda_runtime.h>

#include <climits>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "common/geometry.h"
#include "common/rank_key.h"
#include "common/search_args.h"

namespace stnls {
namespace cuda {

constexpr int32_t kEmpty = INT32_MAX;  // ordinal of an empty list entry (ranks last)

// Loads the CV channels of one pixel / query tap into registers (16-byte loads when
// CV % 4 == 0; the caller keeps those addresses 16-byte aligned).
template <int CV>
__device__ __forceinline__ void load_px(float (&v)[CV], const float* p) {
  if constexpr (CV % 4 == 0) {
#pragma unroll
    for (int c = 0; c < CV; c += 4) {
      const float4 x = *reinterpret_cast<const float4*>(p + c);
      v[c] = x.x, v[c + 1] = x.y, v[c + 2] = x.z, v[c + 3] = x.w;
    }
  } else {
#pragma unroll
    for (int c = 0; c < CV; ++c) v[c] = p[c];
  }
}

// Arguments of the kernels that keep query patches in registers (float32, pt = 1,
// stride1 = dilation = 1): search_forward_thread.cu and search_forward_rows.cu.
struct ThrArgs {
  const float* vid0;
  const float* vid1;
  const float* fflow;
  const float* bflow;
  float* dists;
  int32_t* inds;
  detail::Strides6 s0, s1;
  detail::Strides5 sf, sb;
  int64_t sd[4], si[5];
  int HD, nT, H, W, nH, nW, st, wh, K, ws, wt, str0;
  bool full_ws, reflect, remove_self;
  int o0, offH0, offW0, offH1, offW1;
  int tilesH, tilesW;  // thread layout: block tiles per frame of the query grid
  int cap_px;          // thread layout: pixels the box may hold
  int64_t nq;          // rows layout: queries (B * HD * Q)
  int Q;               // rows layout: queries per frame sequence (T * nH * nW)
  int qs;              // rows layout: floats of one query's staged rows in shared memory
  // rows layout, pixel-major rows of vid1: a ring of pm_ring rows per frame, row y at
  // [b][hd][t][y % pm_ring][x + pm_P][C], rows [pm_lo, pm_hi) present (pm nullptr: none).
  const float* pm;
  int pm_lo, pm_hi, pm_ring, pm_P;
  int band_q0, band_nr;  // rows layout: queries of query rows [band_q0, +band_nr) only (0: all)
};

// The fields every such kernel reads, from the call.
inline ThrArgs thread_args(const detail::SearchArgs& a) {
  const SearchParams& p = a.p;
  const SearchShape& sh = a.sh;
  ThrArgs f{};
  f.vid0 = static_cast<const float*>(a.vid0);
  f.vid1 = static_cast<const float*>(a.vid1);
  f.fflow = static_cast<const float*>(a.fflow);
  f.bflow = static_cast<const float*>(a.bflow);
  f.dists = static_cast<float*>(a.dists);
  f.inds = static_cast<int32_t*>(a.inds);
  f.s0 = a.s0, f.s1 = a.s1, f.sf = a.sf, f.sb = a.sb;
  for (int i = 0; i < 4; ++i) f.sd[i] = a.sd[i];
  for (int i = 0; i < 5; ++i) f.si[i] = a.si[i];
  f.HD = static_cast<int>(sh.HD), f.nT = static_cast<int>(sh.T);
  f.H = static_cast<int>(sh.H), f.W = static_cast<int>(sh.W);
  f.nH = static_cast<int>(sh.nH), f.nW = static_cast<int>(sh.nW);
  f.st = static_cast<int>(sh.st), f.wh = static_cast<int>(sh.wh), f.K = static_cast<int>(sh.K);
  f.ws = p.ws, f.wt = p.wt, f.str0 = p.stride0;
  f.full_ws = p.full_ws, f.reflect = p.reflect_bounds, f.remove_self = p.remove_self;
  f.o0 = static_cast<int>(geo::patch_offset(0, p.ps, 1, p.use_adj));
  f.offH0 = p.off_H0, f.offW0 = p.off_W0, f.offH1 = p.off_H1, f.offW1 = p.off_W1;
  return f;
}

constexpr int kRegListMax = 16;  // the register lists' largest capacity: k <= 16

// Whether a call suits the kernels that keep query patches in registers, before their own
// variant checks: float32, stride1 = dilation = pt = 1, a finite ws, no anchor_self, k in
// [1, kRegListMax], and sizes within their 32-bit pixel, query and ordinal arithmetic
// (larger calls go to search_forward.cu, which reports them).
inline bool register_layouts_apply(const detail::SearchArgs& a) {
  const SearchParams& p = a.p;
  const SearchShape& sh = a.sh;
  if (a.dtype != DType::Float32 || p.stride1 != 1 || p.dilation != 1 || p.pt != 1 || p.ws <= 0 || p.anchor_self)
    return false;
  if (sh.K < 1 || sh.K > kRegListMax) return false;
  return sh.H * sh.W < INT32_MAX && sh.Q < INT32_MAX && sh.slots() < INT32_MAX;
}

// The compile-time choices of those kernels' variants: go(std::integral_constant) with
// the distance (L2 or not), the list capacity for k (10, the benchmarks' and the 2023 API's
// usual k, or 16: a longer list costs every offer that enters it a longer pass) and the
// window width (5, 7 or 9; false, nothing launched, for any other width).
template <class Go>
bool by_dist(DistType d, Go&& go) {
  return d == DistType::L2 ? go(std::true_type{}) : go(std::false_type{});
}
template <class Go>
bool by_list(int64_t k, Go&& go) {
  return k <= 10 ? go(std::integral_constant<int, 10>{}) : go(std::integral_constant<int, kRegListMax>{});
}
template <class Go>
bool by_width(int64_t ww, Go&& go) {
  switch (ww) {
    case 5: return go(std::integral_constant<int, 5>{});
    case 7: return go(std::integral_constant<int, 7>{});
    case 9: return go(std::integral_constant<int, 9>{});
    default: return false;  // no compiled width: the warp kernels take the call
  }
}

// A thread's best KM candidates, sorted best first: order keys of the distances
// (rank::dist_key) with their ordinals. offer() is for candidates offered in increasing
// ordinal order (frames, rows, columns in canonical order): a tie in the key goes after
// the entries already listed, so one 32-bit compare per entry orders the list (rule 6).
// offer_any() takes candidates in any order and breaks ties in the key by the ordinal: the
// same list, one compare more per entry. A NaN distance is listed with key kNaN, after
// every number and before the empty entries (kNone). Both take `ok`: false offers nothing
// (the callers' rule-4 checks join the list's own test: one branch per offer). take()
// merges another list's entry.
constexpr uint32_t kNaN = 0xfffffffeu, kNone = 0xffffffffu;

template <bool L2, int KM>
struct ThreadList {
  uint32_t key[KM];
  int32_t ord[KM];
  __device__ __forceinline__ void reset() {
#pragma unroll
    for (int m = 0; m < KM; ++m) key[m] = kNone, ord[m] = kEmpty;
  }
  __device__ __forceinline__ void offer(float d, int32_t o, bool ok = true) { insert<false>(key_of(d), o, ok); }
  __device__ __forceinline__ void offer_any(float d, int32_t o, bool ok = true) { insert<true>(key_of(d), o, ok); }
  // An entry of another list (key and ordinal as listed there; an empty one is skipped),
  // in any order: merging lists of disjoint candidates.
  __device__ __forceinline__ void take(uint32_t k, int32_t o) { insert<true>(k, o, k != kNone); }
  // The distance of a listed key.
  __device__ __forceinline__ static float dist(uint32_t k) { return rank::key_dist<L2, float, uint32_t>(k == kNaN ? kNone : k); }

 private:
  __device__ __forceinline__ static uint32_t key_of(float d) {
    const uint32_t k = rank::dist_key<L2, float, uint32_t>(d);
    return k == kNone ? kNaN : k;
  }
  template <bool BY_ORD>
  __device__ __forceinline__ void insert(uint32_t k, int32_t o, bool ok) {
    // Most offers rank after the last entry once the list has filled: they branch out
    // here (with the row-split and shared-sums layouts, whole warps often do).
    if (!(ok && (k < key[KM - 1] || (BY_ORD && k == key[KM - 1] && o < ord[KM - 1])))) return;
    // before[m]: the new entry ranks before entry m. The list is sorted, so `before` is
    // false up to the new entry's place and true from there on; entry m then takes entry
    // m - 1's place, or the new entry's. Every `before` compares the new entry with the
    // list as it was: the compares are independent and each entry's update is two selects
    // deep, where a bubble that carries the displaced entry from place to place makes one
    // chain of KM compares and selects, which the next offer waits for.
    bool before[KM];
#pragma unroll
    for (int m = 0; m < KM; ++m) before[m] = k < key[m] || (BY_ORD && k == key[m] && o < ord[m]);
#pragma unroll
    for (int m = KM - 1; m > 0; --m) {
      key[m] = before[m] ? (before[m - 1] ? key[m - 1] : k) : key[m];
      ord[m] = before[m] ? (before[m - 1] ? ord[m - 1] : o) : ord[m];
    }
    key[0] = before[0] ? k : key[0];
    ord[0] = before[0] ? o : ord[0];
  }
};

// Writes a query's list as its dists and inds (padding past the last entry): ordinal
// (n * wh + i) * WW + j is window row i, column j of the n-th searched frame, whose window
// starts at wins[n] (row, column) in frame frame_at(n).
template <int WW, bool L2, int KM, class FrameAt>
__device__ __forceinline__ void emit_list(const ThrArgs& a, const ThreadList<L2, KM>& list, int b, int hd, int q, int wh,
                                          const int2* wins, FrameAt frame_at) {
  float* dq = a.dists + b * a.sd[0] + hd * a.sd[1] + q * a.sd[2];
  int32_t* iq = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2];
  const int spf = wh * WW;
  const float pad = L2 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
#pragma unroll
  for (int m = 0; m < KM; ++m) {
    if (m >= a.K) break;
    int32_t* e = iq + m * a.si[3];
    if (list.key[m] == kNone) {
      dq[m * a.sd[3]] = pad;
      e[0] = e[a.si[4]] = e[2 * a.si[4]] = -1;
    } else {
      const int ord = list.ord[m];
      const int fo = ord / spf, rem = ord - fo * spf, i = rem / WW, j = rem - i * WW;
      const int2 w0 = wins[fo];
      dq[m * a.sd[3]] = ThreadList<L2, KM>::dist(list.key[m]);
      e[0] = frame_at(fo);
      e[a.si[4]] = w0.x + i;
      e[2 * a.si[4]] = w0.y + j;
    }
  }
}

// One step of a query's flow chain (rule 3) to frame u, the n-th searched frame (n > 0 takes
// a step; n = 0 is frame t itself): forward frames chain from t, backward frames restart at
// the query (qh, qw). (ch, cw) is the centre in the previous frame of the order, then in u.
__device__ __forceinline__ void flow_chain_step(const ThrArgs& a, int b, int t, int qh, int qw, int n, int u, int& ch,
                                                int& cw) {
  if (n == 0) return;
  if (u == t - 1) ch = qh, cw = qw;
  const int prev = (u == t - 1) ? t : (u > t ? u - 1 : u + 1);
  const float* fl = u > t ? a.fflow : a.bflow;
  const detail::Strides5& sf = u > t ? a.sf : a.sb;
  if (fl) {
    const float* f = fl + b * sf.b + prev * sf.t + ch * sf.y + cw * sf.x;
    geo::flow_step32(ch, cw, f[0], f[sf.c], a.H, a.W);
  }
}

// The elementwise minimum of v[0..3] over a block of WARPS warps (every thread gets it):
// warp shuffles, then `part` in shared memory. Ends with the block barrier that publishes
// `part`; the caller's earlier reads of `part` must be done before it is called.
template <int WARPS>
__device__ __forceinline__ void block_min4(int (&v)[4], int (*part)[4], int lane, int wib) {
#pragma unroll
  for (int k = 0; k < 4; ++k)
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v[k] = min(v[k], __shfl_xor_sync(0xffffffffu, v[k], o));
  if (lane == 0)
#pragma unroll
    for (int k = 0; k < 4; ++k) part[wib][k] = v[k];
  __syncthreads();
#pragma unroll
  for (int k = 0; k < 4; ++k) {
    v[k] = part[0][k];
#pragma unroll
    for (int w = 1; w < WARPS; ++w) v[k] = min(v[k], part[w][k]);
  }
}

}  // namespace cuda
}  // namespace stnls
