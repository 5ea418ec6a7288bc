// CUDA forward of the non-local search (SPEC.md rules 1-7), computing exactly what the
// CPU backend computes: same geometry (common/geometry.h), same summation order
// (geo::channel_sums; one fused multiply-add per term), same selection order (rule 6).
//
// Layout of the work: one warp per query. The warp copies the query patch into shared
// memory, walks the flow-chained window centres, and then, for groups of searched
// frames, stages the window's pixels (bounds already applied) as a dense tile in shared
// memory. The warp keeps its best candidates in one sorted list spread over the lanes
// (lane m holds rank m); a candidate is inserted only when it beats the list's last
// entry, which after the first few rounds is rare, so the selection costs one compare
// per candidate. No distance volume ever reaches global memory.
//
// Two ways of computing the distances from the tile:
// - fast path (float, stride1 = dilation = 1, C per head in {3, 4, 8, 16}): the tile
//   is [frame][pk][row][col][channel] and each lane computes R horizontally adjacent
//   candidates of a window row; candidate j at tap pj reads the pixel that candidate j+1
//   reads at tap pj-1, so a lane keeps R pixels (all channels) in registers and loads one
//   new pixel per tap: each loaded value feeds R accumulators (the shared-memory loads
//   no longer bound the arithmetic). Channels go through 16-byte loads when C % 4 == 0.
//   Rows and frames of the tile are padded so that task t's pixel starts R * u * t units
//   into the tile, mod M (16-byte loads, C % 4 == 0: units of 16 bytes, u = cs / 4, M = 8,
//   the lanes of a quarter-warp; C = 3: units of one float, u = 3, M = 32): R and u are
//   odd, so the lanes of a load read distinct banks. Unpadded, S3 (ws = 9, ps = 7, 16
//   channels) spent 42% of its shared-memory wavefronts on such conflicts, S1 (ws = 21,
//   3 channels) 56% (3-way).
// - general path: the tile is [frame][pk][c][row][col] and each lane computes R
//   candidates anywhere in the window, one tile load per multiply-add. Its lanes walk
//   consecutive tile offsets when that costs no extra round (idle lanes reading their own
//   lane's offset), so a load's 32 lanes read 32 banks.
//
// K larger than 32 (k <= 0 = all, or a big k) is served by several passes: pass p
// recomputes the distances and keeps only candidates ranked after the last one emitted,
// so every pass emits the next (up to) 32 in the same total order.
// Windows whose tile does not fit in shared memory read vid1 straight from global memory.
//
// Large patches on a dense query grid (16 or more channels per head) take the shared-sums
// layout of search_forward_shared.cu, tried first below; small patches and windows (float,
// ps and channels of a compiled variant, k <= 16) the thread-per-query layout of
// search_forward_thread.cu; then the row-split layout of search_forward_rows.cu (PS lanes
// per query) for the larger patches of its compiled variants.
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <limits>
#include <string>

#include "common/backends.h"
#include "common/dispatch.h"
#include "common/geometry.h"
#include "common/rank_key.h"
#include "cuda/cuda_util.h"
#include "cuda/search_forward_common.cuh"
#include "cuda/search_forward_groups.h"
#include "cuda/search_forward_rows.h"
#include "cuda/search_forward_shared.h"
#include "cuda/search_forward_thread.h"

namespace stnls {

bool cuda_available() { return true; }

namespace cuda {
namespace {

using detail::SearchArgs;

constexpr unsigned kFull = 0xffffffffu;

// Everything a forward kernel reads, passed by value.
template <class T>
struct FwdArgs {
  const T* vid0;
  const T* vid1;
  const T* fflow;
  const T* bflow;
  T* dists;
  int32_t* inds;
  detail::Strides6 s0, s1;
  detail::Strides5 sf, sb;
  int64_t sd[4], si[5];
  int64_t nq;  // B*HD*Q queries = warps of work
  int HD, nT, C, H, W, nH, nW, Q, st, wh, ww, K;
  int ps, pt, dil, str0, str1, wt, ws;
  bool full_ws, reflect, anchor, remove_self;
  int offH0, offW0, offH1, offW1, o0;
  int th, tw;        // tile rows and columns (pixels) of one frame's window
  // General path: column radix of the lanes' slot walk. ww walks the window's candidates
  // row by row; tw walks the tile's offsets in order (columns ww..tw-1 idle), so the 32
  // lanes of a round read 32 consecutive offsets, one per shared-memory bank, where ww
  // packs rows tw apart into a round and offsets 32 apart collide. (On S4 this and the
  // idle lanes' offsets took the tile loads from 2 wavefronts to 1.)
  int cw;
  int cs;            // fast path: channel stride of a tile pixel (C padded against bank conflicts)
  int rs;            // fast path: scalars per tile row (tw * cs, padded against bank conflicts)
  int nseg;          // fast path: row segments of R candidates per window row
  int F;             // frames staged together
  int qelems;        // pt*ps*ps*C: query patch
  int tile_elems;    // one frame's tile (fast path: padded against bank conflicts)
  int warp_elems;    // qelems + F*tile_elems: scalars of shared memory per warp
  int warps;         // warps (queries) per block
  int tabn;          // entries of one frame's offset tables (tile only): pt + th + tw
  int aux_bytes;     // per warp after the scalars: window starts, then the offset tables
  int aux_tab;       // byte offset of the tables in it
  // Digits of 32 in the lane walks' radices (see Digits): query patch taps (pk, pi, pj),
  // offset tables (frame, entry), staging (frame, pk, row, column), fast-path tasks
  // (frame, row, segment), general-path candidates (frame, window row, window column).
  int qstep[3], xstep[2], sstep[4], tstep[3], cstep[3];
};

// Offset-table entry of a pixel coordinate outside the video: any sum of three entries
// with one of these is negative (the pixel reads 0).
constexpr int64_t kOut = INT64_MIN / 4;

// Lanes walk the flat indices e = lane, lane + 32, ... of a mixed-radix space by adding
// the digits of 32, one carry per digit, instead of dividing e by every radix: a 32-bit
// division by a run-time value costs about 20 instructions, and the staging loop used to
// spend three per element (it was the largest single cost of a query at ps = 1).
template <int N>
struct Digits {
  int v[N];  // most significant first; v[0] is unbounded (the loop's end test)
};
template <int N>
__host__ __device__ __forceinline__ Digits<N> digits_of(int e, const int (&radix)[N]) {
  Digits<N> d;
#pragma unroll
  for (int k = N - 1; k >= 1; --k) {
    d.v[k] = e % radix[k];
    e /= radix[k];
  }
  d.v[0] = e;
  return d;
}
// d += step (both digit vectors in `radix`); each digit stays below 2 * radix, one carry.
template <int N>
__device__ __forceinline__ void advance(Digits<N>& d, const int (&step)[N], const int (&radix)[N]) {
  int c = 0;
#pragma unroll
  for (int k = N - 1; k >= 1; --k) {
    d.v[k] += step[k] + c;
    c = d.v[k] >= radix[k];
    if (c) d.v[k] -= radix[k];
  }
  d.v[0] += step[0] + c;
}

// Rule 6 as one unsigned compare (common/rank_key.h).
template <bool L2, class T>
using RankT = rank::Rank<L2, T>;

// Warp shuffles of a rank: the function f moves each of its words (one for float, two for
// double).
template <bool L2, class F>
__device__ __forceinline__ RankT<L2, float> shuffle(const RankT<L2, float>& r, F f) {
  return {f(r.v)};
}
template <bool L2, class F>
__device__ __forceinline__ RankT<L2, double> shuffle(const RankT<L2, double>& r, F f) {
  return {f(r.k), f(r.o)};
}
template <class R>
__device__ __forceinline__ R shfl(const R& r, int src) {
  return shuffle(r, [src](auto x) { return __shfl_sync(kFull, x, src); });
}
template <class R>
__device__ __forceinline__ R shfl_xor(const R& r, int mask) {
  return shuffle(r, [mask](auto x) { return __shfl_xor_sync(kFull, x, mask); });
}
template <class R>
__device__ __forceinline__ R shfl_up(const R& r) {
  return shuffle(r, [](auto x) { return __shfl_up_sync(kFull, x, 1); });
}

// The warp's best `cap` (<= 32) candidates, sorted: lane m holds rank m. Empty entries
// are (NaN, kEmpty), after every real candidate (NaN distances included). `last` is the
// last entry, broadcast: a candidate not before it cannot enter.
template <bool L2, class T>
struct WarpList {
  RankT<L2, T> r, last;
  int cap, lane;

  __device__ __forceinline__ void reset(int capacity, int lane_id) {
    cap = capacity, lane = lane_id;
    r = last = empty();
  }
  // Every lane offers one candidate (valid = false: none). Lanes whose candidate beats the
  // last entry are inserted one at a time, lowest lane first; the test is repeated after
  // each insertion since the last entry moves up. When many beat it (the first offers of a
  // query), the offers are sorted and merged into the list instead (same resulting list:
  // the best `cap` of both, in rank order; ranks are distinct).
  __device__ __forceinline__ void offer(bool valid, const RankT<L2, T>& nr) {
    bool pending = valid;
    {
      const unsigned m = __ballot_sync(kFull, pending && nr < last);
      if (!m) return;
      if (__popc(m) >= kMergeOffers) return merge((m >> lane) & 1u ? nr : empty());
    }
    for (;;) {
      const unsigned m = __ballot_sync(kFull, pending && nr < last);
      if (!m) return;
      const int src = __ffs(m) - 1;
      const RankT<L2, T> br = shfl(nr, src);
      if (lane == src) pending = false;
      // The entries the new one ranks before form a suffix [first, cap) of the list.
      const bool bef = lane < cap && br < r;
      const RankT<L2, T> pr = shfl_up(r);
      const int first = __ffs(__ballot_sync(kFull, bef)) - 1;
      if (bef) r = lane == first ? br : pr;
      last = shfl(r, cap - 1);
    }
  }

 private:
  // An empty entry: ranks after every candidate.
  __device__ __forceinline__ static RankT<L2, T> empty() {
    return RankT<L2, T>::make(std::numeric_limits<T>::quiet_NaN(), kEmpty);
  }
  // From this many entering offers on, one sort and merge (about 170 instructions) costs
  // less than inserting them one at a time (about 25 each).
  static constexpr int kMergeOffers = 7;

  __device__ __forceinline__ static RankT<L2, T> lo(const RankT<L2, T>& x, const RankT<L2, T>& y) { return y < x ? y : x; }
  __device__ __forceinline__ static RankT<L2, T> hi(const RankT<L2, T>& x, const RankT<L2, T>& y) { return y < x ? x : y; }

  // x: one offer per lane (empty() where none). Bitonic sort of the offers (ascending over
  // the lanes), then the list and the reversed offers give, lane by lane, the 32 best of
  // both as a bitonic sequence, which a bitonic merge sorts.
  __device__ __forceinline__ void merge(RankT<L2, T> x) {
#pragma unroll
    for (int k = 2; k <= 32; k <<= 1)
#pragma unroll
      for (int j = k >> 1; j > 0; j >>= 1) {
        const RankT<L2, T> y = shfl_xor(x, j);
        x = (((lane & j) == 0) == ((lane & k) == 0)) ? lo(x, y) : hi(x, y);
      }
    RankT<L2, T> z = lo(r, shfl(x, 31 - lane));
#pragma unroll
    for (int j = 16; j > 0; j >>= 1) {
      const RankT<L2, T> y = shfl_xor(z, j);
      z = (lane & j) == 0 ? lo(z, y) : hi(z, y);
    }
    r = lane < cap ? z : empty();
    last = shfl(r, cap - 1);
  }
};

// The distance of the query patch qp ([pk][pi][pj][C]) to the patch at (u, y, x) of vid1's
// slice v1, read from global memory with the bounds rule, in the call's summation order
// (common/geometry.h): the anchor_self distance and the kernel's global path.
template <bool L2, class T>
__device__ T global_distance(const FwdArgs<T>& a, const T* qp, const T* v1, int u, int y, int x, int C) {
  const int ps = a.ps;
  auto chain = [&](T d, int c0, int c1, bool sums) {  // over (pk, pi, pj, c in [c0, c1))
    for (int pk = 0; pk < a.pt; ++pk)
      for (int pi = 0; pi < ps; ++pi)
        for (int pj = 0; pj < ps; ++pj) {
          const int64_t off = geo::pixel_offset(u + pk, y + a.o0 + a.dil * pi - a.offH1, x + a.o0 + a.dil * pj - a.offW1,
                                                a.nT, a.H, a.W, a.reflect, a.s1.t, a.s1.y, a.s1.x);
          const T* qrow = qp + ((pk * ps + pi) * ps + pj) * C;
          T s = geo::pixel_start(sums, d);
          for (int c = c0; c < c1; ++c) s = geo::dist_acc<L2>(s, qrow[c], off < 0 ? T(0) : v1[off + c * a.s1.c]);
          d = geo::pixel_end(sums, d, s);
        }
    return d;
  };
  if (!geo::channel_groups(C, ps)) return chain(T(0), 0, C, geo::channel_sums(C));
  geo::GroupSum<T> sum_of;
  for (int c0 = 0; c0 < C; c0 += geo::kGroupC) sum_of.push(chain(T(0), c0, min(C, c0 + geo::kGroupC), false));
  return sum_of.finish();
}

// CV == 0: general path (any T, stride1, dilation, C), R candidates per lane anywhere in
// the window. CV > 0: fast path (float, stride1 = dilation = 1, C == CV), R adjacent
// candidates of a window row per lane. TILE = false: no tile, global reads (R == 1).
template <class T, bool L2, int R, bool TILE, int CV>
__global__ void __launch_bounds__(256, 1) search_forward_kernel(const FwdArgs<T> a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int lane = threadIdx.x & 31;
  const int wib = threadIdx.x >> 5;
  const int64_t g = static_cast<int64_t>(blockIdx.x) * a.warps + wib;
  if (g >= a.nq) return;  // whole warps only; no block-wide barrier below

  T* qp = reinterpret_cast<T*>(smem_raw) + static_cast<int64_t>(wib) * a.warp_elems;  // [pt][ps][ps][C]
  T* tile = qp + a.qelems;  // see the two layouts above
  unsigned char* aux = smem_raw + static_cast<int64_t>(a.warps) * a.warp_elems * sizeof(T) + wib * a.aux_bytes;
  int* base_y = reinterpret_cast<int*>(aux);  // window start of every searched frame
  int* base_x = base_y + a.st;
  // Per staged frame f: [pt] frame offsets, [th] row offsets, [tw] column offsets in vid1.
  int64_t* tab = reinterpret_cast<int64_t*>(aux + a.aux_tab);

  const int b = static_cast<int>(g / (static_cast<int64_t>(a.HD) * a.Q));
  const int hd = static_cast<int>((g / a.Q) % a.HD);
  const int q = static_cast<int>(g % a.Q);
  const int t = q / (a.nH * a.nW);
  const int qh = ((q / a.nW) % a.nH) * a.str0;
  const int qw = (q % a.nW) * a.str0;
  const T* v0 = a.vid0 + b * a.s0.b + hd * a.s0.h;
  const T* v1 = a.vid1 + b * a.s1.b + hd * a.s1.h;
  const int C = CV > 0 ? CV : a.C;  // the fast path's C is a constant: unrolled channel loops
  const bool csum = geo::channel_sums(C);  // the summation order (common/geometry.h)
  const bool groups = geo::channel_groups(C, a.ps);
  const int ps = a.ps, pt = a.pt, dil = a.dil, o0 = a.o0;

  // Query patch, layout [pk][pi][pj][c] (the summation order): one tap per lane, all its
  // channels (the bounds rule once per tap, not per value).
  {
    const int qrad[3] = {0, ps, ps};
    Digits<3> d = digits_of<3>(lane, qrad);  // (pk, pi, pj) of tap e
    for (int e = lane; e < pt * ps * ps; e += 32, advance<3>(d, a.qstep, qrad)) {
      const int pk = d.v[0], pi = d.v[1], pj = d.v[2];
      const int tt = geo::bound32(t + pk, a.nT, a.reflect);
      const int yy = geo::bound32(qh + o0 + dil * pi - a.offH0, a.H, a.reflect);
      const int xx = geo::bound32(qw + o0 + dil * pj - a.offW0, a.W, a.reflect);
      T* dst = qp + e * C;
      // Asynchronous copies: every load of the warp is in flight at once (no load->store
      // round trip per value); completed by the wait before the first distance.
      if (tt < 0 || yy < 0 || xx < 0) {
        for (int c = 0; c < C; ++c) dst[c] = T(0);
      } else {
        const T* src = v0 + tt * a.s0.t + yy * a.s0.y + xx * a.s0.x;
        for (int c = 0; c < C; ++c) __pipeline_memcpy_async(dst + c, src + c * a.s0.c, sizeof(T));
      }
    }
  }
  __pipeline_commit();
  // Window start of every searched frame (rules 2-4), walked as the CPU walks it.
  const geo::Frames fr = geo::frames(t, a.nT, a.wt);
  const int nfwd = static_cast<int>(fr.t_hi - t + 1);  // frames t .. t_hi come first
  // Two independent chains (forward frames from t, backward frames restarting at the
  // query), each of dependent flow reads: lane 0 walks one, lane 1 the other.
  if (lane < 2) {
    int ch = qh, cw = qw;
    for (int n = lane == 0 ? 0 : nfwd; n < (lane == 0 ? nfwd : a.st); ++n) {
      const int u = n < nfwd ? t + n : t - (n - nfwd + 1);  // geo::frame_at
      if (n > 0) {
        const int prev = (u == t - 1) ? t : (u > t ? u - 1 : u + 1);
        if (u == t - 1) ch = qh, cw = qw;
        const T* fl = (u > t ? a.fflow : a.bflow);
        const detail::Strides5& sf = (u > t ? a.sf : a.sb);
        if (fl) {
          const T* f = fl + b * sf.b + prev * sf.t + ch * sf.y + cw * sf.x;
          geo::flow_step32(ch, cw, f[0], f[sf.c], a.H, a.W);
        }
      }
      base_y[n] = geo::window_base32(ch, a.H, a.str1, a.ws, a.full_ws);
      base_x[n] = geo::window_base32(cw, a.W, a.str1, a.ws, a.full_ws);
    }
  }
  __pipeline_wait_prior(0);
  __syncwarp();

  T* dq = a.dists + b * a.sd[0] + hd * a.sd[1] + q * a.sd[2];
  int32_t* iq = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2];
  auto emit = [&](int slot, T d, int u, int y, int x) {
    dq[slot * a.sd[3]] = d;
    int32_t* e = iq + slot * a.si[3];
    e[0] = u;
    e[a.si[4]] = y;
    e[2 * a.si[4]] = x;
  };

  int out = 0;  // next output slot (warp-uniform)
  if (a.anchor) {
    // The query's own location first, with its distance (same summation order as above).
    if (lane == 0) emit(0, global_distance<L2>(a, qp, v1, t, qh, qw, C), t, qh, qw);
    out = 1;
  }

  const int spf = a.wh * a.ww;  // slots per frame
  const bool skip_self = a.anchor || a.remove_self;
  const int P = a.th * a.tw;    // general path: one channel plane of the tile
  int left = a.anchor ? a.K - 1 : a.K;
  bool has_thr = false;  // pass > 0: keep only candidates ranked after thr
  RankT<L2, T> thr = RankT<L2, T>::make(T(0), 0);

  // Offers candidate (frame n, row i, column j) with distance d when it is a real one.
  WarpList<L2, T> L;
  auto offer = [&](bool ok, int n, int i, int j, T d) {
    int32_t ord = 0;
    RankT<L2, T> cr{};  // unused when !ok
    if (ok) {
      const int y = base_y[n] + a.str1 * i, x = base_x[n] + a.str1 * j;
      ok = y >= 0 && y < a.H && x >= 0 && x < a.W && !(skip_self && n == 0 && y == qh && x == qw);  // n = 0 is t
      ord = (n * a.wh + i) * a.ww + j;
      cr = RankT<L2, T>::make(d, ord);
      if (has_thr) ok = ok && thr < cr;
    }
    L.offer(ok, cr);
  };

  while (left > 0) {
    const int cap = min(32, left);
    L.reset(cap, lane);
    for (int f0 = 0; f0 < a.st; f0 += a.F) {
      const int nf = min(a.F, a.st - f0);
      if (TILE) {
        __syncwarp();  // the previous stage's reads (tile and tables) are done
        // The bounds rule once per frame, row and column of the stage (not once per staged
        // pixel): entry (f, j) is frame offset j < pt, tile row j - pt < th, or tile column.
        const int xrad[2] = {0, a.tabn};
        for (Digits<2> d = digits_of<2>(lane, xrad); d.v[0] < nf; advance<2>(d, a.xstep, xrad)) {
          const int f = d.v[0], j = d.v[1];
          const int n = f0 + f;
          int64_t off;
          if (j < pt) {
            const int u = n < nfwd ? t + n : t - (n - nfwd + 1);  // geo::frame_at
            const int tt = geo::bound32(u + j, a.nT, a.reflect);
            off = tt < 0 ? kOut : tt * a.s1.t;
          } else if (j < pt + a.th) {
            const int yy = geo::bound32(base_y[n] + o0 - a.offH1 + (j - pt), a.H, a.reflect);
            off = yy < 0 ? kOut : yy * a.s1.y;
          } else {
            const int xx = geo::bound32(base_x[n] + o0 - a.offW1 + (j - pt - a.th), a.W, a.reflect);
            off = xx < 0 ? kOut : xx * a.s1.x;
          }
          tab[f * a.tabn + j] = off;
        }
        __syncwarp();
        // Element (f, pk, r, s): frame f0 + f, frame offset pk, tile row r, tile column s.
        const int srad[4] = {0, pt, a.th, a.tw};
        for (Digits<4> d = digits_of<4>(lane, srad); d.v[0] < nf; advance<4>(d, a.sstep, srad)) {
          const int f = d.v[0], pk = d.v[1], r = d.v[2], s = d.v[3];
          const int64_t* tf = tab + f * a.tabn;
          const int64_t off = tf[pk] + tf[pt + r] + tf[pt + a.th + s];
          // fast path: [f][pk][r][s][c] (channel stride cs); general: [f][pk][c][r][s]
          const int fp = f * pt + pk;
          T* dst = CV > 0 ? tile + f * a.tile_elems + (pk * a.th + r) * a.rs + s * a.cs : tile + fp * C * P + r * a.tw + s;
          const int cstep = CV > 0 ? 1 : P;
          if (off < 0) {
            for (int c = 0; c < C; ++c) dst[c * cstep] = T(0);
          } else {
            const T* src = v1 + off;
            for (int c = 0; c < C; ++c) __pipeline_memcpy_async(dst + c * cstep, src + c * a.s1.c, sizeof(T));
          }
        }
        __pipeline_commit();
        __pipeline_wait_prior(0);
        __syncwarp();
      }
      if constexpr (CV > 0) {
        // Fast path: task = (frame, window row i, segment of R columns from j0).
        constexpr int CS4 = CV % 4 == 0 ? 4 : 1;  // channels per load
        constexpr bool kCS = geo::channel_sums(CV);
        const int trad[3] = {0, a.wh, a.nseg};
        const int ntask = nf * a.wh * a.nseg;
        Digits<3> d = digits_of<3>(lane, trad);  // task tb + lane = (frame, row, segment)
        // An idle lane (past the stage's last task) computes a staged task congruent to its
        // lane mod M, the lanes that share a load's banks (8 for 16-byte loads, 32 for
        // scalar ones): the banks its own task would have had. Task lane mod M of the first
        // frame when the window has it, else the last such task of the stage (task 0 when
        // the stage has none).
        constexpr int M = CV % 4 == 0 ? 8 : 32;
        const int nt0 = a.wh * a.nseg;
        const int t0 = lane & (M - 1);
        const bool first_frame = t0 < nt0;
        const int idle_i = first_frame ? t0 / a.nseg : 0;
        const int idle_j0 = first_frame ? (t0 - idle_i * a.nseg) * R : 0;
        for (int tb = 0; tb < ntask; tb += 32, advance<3>(d, a.tstep, trad)) {
          const bool live = d.v[0] < nf;  // idle lanes offer nothing
          int f = live ? d.v[0] : 0;
          int i = live ? d.v[1] : idle_i;
          int j0 = live ? d.v[2] * R : idle_j0;
          if (!live && !first_frame) {  // tiny windows: several frames per stage
            const int it = max(0, ntask - 1 - ((ntask - 1 - lane) & (M - 1)));
            f = it / nt0;
            i = (it - f * nt0) / a.nseg;
            j0 = (it - f * nt0 - i * a.nseg) * R;
          }
          float acc[R];
#pragma unroll
          for (int r = 0; r < R; ++r) acc[r] = 0.f;
          for (int pk = 0; pk < pt; ++pk)
            for (int pi = 0; pi < ps; ++pi) {
              const float* prow = tile + f * a.tile_elems + (pk * a.th + i + pi) * a.rs + j0 * a.cs;
              const float* qrow = qp + (pk * ps + pi) * ps * CV;
              // buf[(pj + r) % R] holds pixel j0 + pj + r (all channels) at tap pj.
              float buf[R][CV];
#pragma unroll
              for (int m = 0; m < R - 1; ++m) load_px<CV>(buf[m], prow + m * a.cs);
              for (int pj0 = 0; pj0 < ps; pj0 += R) {
#pragma unroll
                for (int ph = 0; ph < R; ++ph) {
                  const int pj = pj0 + ph;
                  if (pj < ps) {
                    load_px<CV>(buf[(ph + R - 1) % R], prow + (pj + R - 1) * a.cs);
                    const float* qv = qrow + pj * CV;
                    float s[R];  // this pixel's channel chains (geo::channel_sums)
#pragma unroll
                    for (int r = 0; r < R; ++r) s[r] = geo::pixel_start(kCS, acc[r]);
#pragma unroll
                    for (int c0 = 0; c0 < CV; c0 += CS4) {
                      float qc[CS4];
                      if constexpr (CS4 == 4) {
                        const float4 x = *reinterpret_cast<const float4*>(qv + c0);
                        qc[0] = x.x, qc[1] = x.y, qc[2] = x.z, qc[3] = x.w;
                      } else {
                        qc[0] = qv[c0];
                      }
#pragma unroll
                      for (int cc = 0; cc < CS4; ++cc)
#pragma unroll
                        for (int r = 0; r < R; ++r)
                          s[r] = geo::dist_acc<L2>(s[r], qc[cc], buf[(ph + r) % R][c0 + cc]);
                    }
#pragma unroll
                    for (int r = 0; r < R; ++r) acc[r] = geo::pixel_end(kCS, acc[r], s[r]);
                  }
                }
              }
            }
#pragma unroll
          for (int r = 0; r < R; ++r) offer(live && j0 + r < a.ww, f0 + f, i, j0 + r, static_cast<T>(acc[r]));
        }
      } else {
        const int nfs = TILE ? nf : a.st;  // frames of this sweep
        const int nslots = nfs * a.wh * a.cw;
        const int crad[3] = {0, a.wh, a.cw};
        Digits<3> w = digits_of<3>(lane, crad);  // slot sbase + r*32 + lane = (frame, row, column)
        // An idle lane reads the tile at its lane's offset (within the first frame's window,
        // so every tap stays inside the tile): a bank no live lane of its load uses.
        const int idle_off = min(lane, (a.wh - 1) * a.str1 * a.tw + (a.ww - 1) * a.str1);
        for (int sbase = 0; sbase < nslots; sbase += 32 * R) {
          int fi[R], ii[R], ji[R];
          T acc[R];
          int offr[R];  // tile offset of each candidate
#pragma unroll
          for (int r = 0; r < R; ++r, advance<3>(w, a.cstep, crad)) {
            const bool live = w.v[0] < nfs && w.v[2] < a.ww;  // idle slots read idle_off, offer nothing
            fi[r] = live ? w.v[0] : -1;
            ii[r] = live ? w.v[1] : 0;
            ji[r] = live ? w.v[2] : 0;
            offr[r] = live ? w.v[0] * a.tile_elems + ii[r] * a.str1 * a.tw + ji[r] * a.str1 : idle_off;
            acc[r] = T(0);
          }
          if (TILE) {
            // Channels [c, c1) of tap (pk, pi, pj) into the chains s[r].
            auto taps = [&](T (&s)[R], int pk, int pi, int pj, int c, const int c1) {
              const T* qrow = qp + ((pk * ps + pi) * ps + pj) * C;
              // Warp-uniform base + per-lane offset; two channels' loads are issued
              // before their arithmetic so the shared-memory latency overlaps.
              const T* trow = tile + pk * C * P + dil * pi * a.tw + dil * pj;
              if constexpr (sizeof(T) == 4) {
                // float, C % 4 == 0: the query's 4 channels in one broadcast 16-byte
                // load (qp is 16-byte aligned, a tap C floats) instead of 4 scalar
                // ones; the shared-memory pipe is what S4 (C = 32) waits on.
                if (C % 4 == 0) {
                  for (; c < c1; c += 4) {
                    const float4 q4 = *reinterpret_cast<const float4*>(qrow + c);
                    const float qc[4] = {q4.x, q4.y, q4.z, q4.w};
                    const T* t0 = trow + c * P;
                    T x[4][R];
#pragma unroll
                    for (int cc = 0; cc < 4; ++cc)
#pragma unroll
                      for (int r = 0; r < R; ++r) x[cc][r] = t0[cc * P + offr[r]];
#pragma unroll
                    for (int cc = 0; cc < 4; ++cc)
#pragma unroll
                      for (int r = 0; r < R; ++r) s[r] = geo::dist_acc<L2>(s[r], qc[cc], x[cc][r]);
                  }
                }
              }
              for (; c + 2 <= c1; c += 2) {
                const T q0 = qrow[c], q1 = qrow[c + 1];
                const T* t0 = trow + c * P;
                const T* t1 = t0 + P;
                T x0[R], x1[R];
#pragma unroll
                for (int r = 0; r < R; ++r) x0[r] = t0[offr[r]];
#pragma unroll
                for (int r = 0; r < R; ++r) x1[r] = t1[offr[r]];
#pragma unroll
                for (int r = 0; r < R; ++r) s[r] = geo::dist_acc<L2>(s[r], q0, x0[r]);
#pragma unroll
                for (int r = 0; r < R; ++r) s[r] = geo::dist_acc<L2>(s[r], q1, x1[r]);
              }
              if (c < c1) {
                const T q0 = qrow[c];
                const T* t0 = trow + c * P;
#pragma unroll
                for (int r = 0; r < R; ++r) s[r] = geo::dist_acc<L2>(s[r], q0, t0[offr[r]]);
              }
            };
            if (groups) {
              // A chain per group of channels over all taps, the groups summed pairwise.
              geo::GroupSum<T> sum_of[R];
              for (int c0 = 0; c0 < C; c0 += geo::kGroupC) {
                const int c1 = min(C, c0 + geo::kGroupC);
                T s[R];
#pragma unroll
                for (int r = 0; r < R; ++r) s[r] = T(0);
                for (int pk = 0; pk < pt; ++pk)
                  for (int pi = 0; pi < ps; ++pi)
                    for (int pj = 0; pj < ps; ++pj) taps(s, pk, pi, pj, c0, c1);
#pragma unroll
                for (int r = 0; r < R; ++r) sum_of[r].push(s[r]);
              }
#pragma unroll
              for (int r = 0; r < R; ++r) acc[r] = sum_of[r].finish();
            } else {
              for (int pk = 0; pk < pt; ++pk)
                for (int pi = 0; pi < ps; ++pi)
                  for (int pj = 0; pj < ps; ++pj) {
                    T s[R];  // this pixel's channel chains (geo::channel_sums)
#pragma unroll
                    for (int r = 0; r < R; ++r) s[r] = geo::pixel_start(csum, acc[r]);
                    taps(s, pk, pi, pj, 0, C);
#pragma unroll
                    for (int r = 0; r < R; ++r) acc[r] = geo::pixel_end(csum, acc[r], s[r]);
                  }
            }
          } else if (fi[0] >= 0) {
            // Global reads (R == 1): only in-frame candidates need a distance.
            const int n = f0 + fi[0];
            const int u = static_cast<int>(geo::frame_at(n, t, fr));
            const int y = base_y[n] + a.str1 * ii[0], x = base_x[n] + a.str1 * ji[0];
            if (y >= 0 && y < a.H && x >= 0 && x < a.W) acc[0] = global_distance<L2>(a, qp, v1, u, y, x, C);
          }
#pragma unroll
          for (int r = 0; r < R; ++r) offer(fi[r] >= 0, f0 + fi[r], ii[r], ji[r], acc[r]);
        }
      }
      if (!TILE) break;  // the global path covers every frame in one sweep
    }

    // The list is sorted: lane m emits rank m.
    const int32_t lo = L.r.ord();
    const int got = __popc(__ballot_sync(kFull, lane < cap && lo != kEmpty));
    if (lane < got) {
      const int n = lo / spf, rem = lo - n * spf;
      const int i = rem / a.ww, j = rem - i * a.ww;
      emit(out + lane, L.r.dist(), static_cast<int>(geo::frame_at(n, t, fr)), base_y[n] + a.str1 * i,
           base_x[n] + a.str1 * j);
    }
    if (got > 0) {
      thr = shfl(L.r, got - 1);
      has_thr = true;
    }
    out += got;
    left -= got;
    if (got < cap) break;  // fewer valid candidates than k: pad below
  }

  const T pad = L2 ? std::numeric_limits<T>::infinity() : -std::numeric_limits<T>::infinity();
  for (int s = out + lane; s < a.K; s += 32) emit(s, pad, -1, -1, -1);
}

// The launch configuration of one call.
struct FwdPlan {
  bool tile;
  int CV;  // fast path channels (0: general path)
  int R, F;
  int warps;        // most warps per block (shared memory allows)
  size_t per_warp;  // shared memory bytes per warp
};

constexpr size_t kWarpStageBytes = 16 * 1024;  // target tile bytes per warp (several frames when small)
constexpr size_t kWarpTileLimit = 64 * 1024;   // larger one-frame tiles read global memory

// Channel stride of a fast-path tile pixel: C % 4 == 0 pixels are read with 16-byte loads
// by 8 lanes at once, conflict-free when the stride in 16-byte units is odd (R odd too).
int fast_cs(int C) { return C % 4 != 0 ? C : ((C / 4) % 2 == 0 ? C + 4 : C); }

// Fast-path variants: C per head and the R compiled for it (launch_fast): 3 and 5; 7 as
// well for C <= 4 (7 pixels of up to 4 channels fit in registers; ws = 21 is then 3 full
// segments instead of 5 partly idle). C = 32 is left to the general path: R = 3 needed
// 162 registers (S4 20.1 ms against 11.7, v4), R = 2 130 registers and was 2% slower
// than the general path (S4 9.06 against 8.86 ms, v11).
constexpr int kFastC[] = {3, 4, 8, 16};
constexpr int kFastMaxR(int C) { return C <= 4 ? 7 : 5; }

// Bytes of one staged frame's offset tables (pt + th + tw entries).
size_t table_bytes(int64_t pt, int64_t th, int64_t tw) { return static_cast<size_t>(pt + th + tw) * sizeof(int64_t); }

template <class T>
FwdPlan plan_forward(FwdArgs<T>& f, int smem_optin) {
  FwdPlan p{};
  const size_t bbytes = (2 * static_cast<size_t>(f.st) * sizeof(int) + 7) / 8 * 8;  // window starts
  p.CV = 0;
  if (sizeof(T) == 4 && f.str1 == 1 && f.dil == 1) {
    for (int c : kFastC)
      if (f.C == c) p.CV = c;
  }
  // The general tile.
  const int64_t th = static_cast<int64_t>(f.str1) * (f.wh - 1) + f.dil * (f.ps - 1) + 1;
  const int64_t tw = static_cast<int64_t>(f.str1) * (f.ww - 1) + f.dil * (f.ps - 1) + 1;
  const size_t qbytes = static_cast<size_t>(f.qelems) * sizeof(T);
  if (p.CV > 0) {
    // R per lane: cost of one window row-tap per warp round, the larger of the float
    // issue (2*R*C/4 per clock) and the shared-memory wavefronts ((R-1+ps)*C tile values
    // plus the broadcast query loads), times the rounds of every stage of F frames (a
    // round is paid in full however few lanes it keeps busy).
    const int Rs[] = {3, 5, 7};
    double best = 0;
    for (int R : Rs) {
      if (R > kFastMaxR(f.C)) continue;
      const int64_t nseg = ceil_div(f.ww, R);
      const int64_t tws = nseg * R + f.ps - 1;
      // (+ the most the bank padding below can add: M - 1 units per row and frame)
      const size_t padb = static_cast<size_t>(f.pt * th + 1) * (fast_cs(f.C) % 4 == 0 ? 7 * 16 : 31 * sizeof(T));
      const size_t tb = static_cast<size_t>(f.pt) * th * tws * fast_cs(f.C) * sizeof(T) + padb + table_bytes(f.pt, th, tws);
      if (qbytes + tb + bbytes > kWarpTileLimit || qbytes + tb + bbytes > static_cast<size_t>(smem_optin)) continue;
      const size_t room = kWarpStageBytes > qbytes + bbytes ? kWarpStageBytes - qbytes - bbytes : 0;
      const int F = static_cast<int>(std::max<size_t>(1, std::min<size_t>(f.st, room / tb)));
      int64_t rounds = 0;
      for (int f0 = 0; f0 < f.st; f0 += F) rounds += ceil_div(static_cast<int64_t>(std::min(F, f.st - f0)) * f.wh * nseg, 32);
      const double fp = 2.0 * R * f.C * f.ps / 4.0;
      const double lds = static_cast<double>(R - 1 + f.ps) * f.C + f.ps * (f.C % 4 == 0 ? f.C / 4 : f.C);
      const double cost = static_cast<double>(rounds) * std::max(fp, lds);
      if (best == 0 || cost < best) best = cost, p.R = R;
    }
    if (best == 0) p.CV = 0;
  }
  if (p.CV > 0) {
    f.nseg = static_cast<int>(ceil_div(f.ww, p.R));
    f.th = static_cast<int>(th);
    f.tw = f.nseg * p.R + f.ps - 1;
    f.cs = fast_cs(f.C);
    f.rs = f.tw * f.cs;
    f.tile_elems = f.pt * f.th * f.rs;
    // Pad rows and frames (see the banks above) so that task t = (frame, row, segment)
    // starts at R * u * t units, mod M; skipped where that would grow the tile by more
    // than a quarter (narrow rows of 3 channels: up to 31 floats a row).
    const int unit = f.cs % 4 == 0 ? 4 : 1, M = f.cs % 4 == 0 ? 8 : 32;
    const int u = f.cs / unit, step = p.R * u;
    auto pad = [M](int have, int want) { return ((want - have) % M + M) % M; };
    const int rs = f.rs + unit * pad(f.tw * u, step * f.nseg);
    int te = f.pt * f.th * rs;
    te += unit * pad(te / unit, step * f.wh * f.nseg);
    if (4 * te <= 5 * f.tile_elems) f.rs = rs, f.tile_elems = te;
  } else {
    f.th = static_cast<int>(std::min<int64_t>(th, INT32_MAX));
    f.tw = static_cast<int>(std::min<int64_t>(tw, INT32_MAX));
    f.cs = 1;
    f.rs = 0;
    f.nseg = 1;
    f.tile_elems = static_cast<int>(std::min<int64_t>(static_cast<int64_t>(f.pt) * f.C * th * tw, INT32_MAX / 2));
  }
  // One staged frame: its tile and its offset tables.
  const size_t tbytes = static_cast<size_t>(f.tile_elems) * sizeof(T) + table_bytes(f.pt, f.th, f.tw);
  p.tile = qbytes + tbytes + bbytes <= kWarpTileLimit && qbytes + tbytes + bbytes <= static_cast<size_t>(smem_optin);
  p.F = 1;
  if (p.tile) {
    size_t room = kWarpStageBytes > qbytes + bbytes ? kWarpStageBytes - qbytes - bbytes : 0;
    p.F = static_cast<int>(std::max<size_t>(1, std::min<size_t>(f.st, room / tbytes)));
  } else {
    f.tile_elems = 0, f.th = 0, f.tw = 0;
  }
  f.tabn = p.tile ? f.pt + f.th + f.tw : 0;
  // Scalars per warp rounded to 16 bytes: every warp's tile stays 16-byte aligned.
  const size_t welems = (static_cast<size_t>(f.qelems) + (p.tile ? p.F * static_cast<size_t>(f.tile_elems) : 0) +
                         16 / sizeof(T) - 1) / (16 / sizeof(T)) * (16 / sizeof(T));
  const size_t abytes = bbytes + (p.tile ? p.F * table_bytes(f.pt, f.th, f.tw) : 0);
  f.aux_tab = static_cast<int>(bbytes);
  f.aux_bytes = static_cast<int>(abytes);
  const size_t per_warp = welems * sizeof(T) + abytes;
  if (per_warp > static_cast<size_t>(smem_optin))
    throw BackendError("search: the query patch (pt*ps*ps*C/nheads = " + std::to_string(f.qelems) +
                       " values) does not fit in this GPU's shared memory");
  // Up to 8 warps per block; launch() picks how many from the kernel's occupancy.
  p.warps = static_cast<int>(std::min<size_t>(8, smem_optin / per_warp));
  if (p.warps > f.nq) p.warps = static_cast<int>(f.nq);
  p.per_warp = per_warp;
  f.warp_elems = static_cast<int>(welems);
  // General path, candidates per lane: each lane-round costs R tile reads plus one query
  // read, and a partly filled round wastes its idle slots.
  if (p.CV == 0) {
    p.R = 1;
    if (p.tile) {
      const int Rs[] = {1, 2, 4};
      double best = 0;
      for (int R : Rs) {
        double cost = 0;
        for (int f0 = 0; f0 < f.st; f0 += p.F) {
          const int64_t n = static_cast<int64_t>(std::min(p.F, f.st - f0)) * f.wh * f.ww;
          cost += static_cast<double>(ceil_div(n, 32 * R) * 32 * R) * (1.0 + 1.0 / R);
        }
        if (R == 1 || cost < best) best = cost, p.R = R;
      }
    }
  }
  // The slot walk in tile-offset order when it takes no more rounds than row order.
  f.cw = f.ww;
  if (p.CV == 0 && p.tile && f.str1 == 1) {
    int64_t rounds_ww = 0, rounds_tw = 0;
    for (int f0 = 0; f0 < f.st; f0 += p.F) {
      const int64_t rows = static_cast<int64_t>(std::min(p.F, f.st - f0)) * f.wh;
      rounds_ww += ceil_div(rows * f.ww, 32 * p.R);
      rounds_tw += ceil_div(rows * f.tw, 32 * p.R);
    }
    if (rounds_tw == rounds_ww) f.cw = f.tw;
  }
  return p;
}

// The lane walks' steps: the digits of 32 in each walk's radices.
template <class T>
void set_steps(FwdArgs<T>& f) {
  const int qrad[3] = {0, f.ps, f.ps};
  const int xrad[2] = {0, std::max(f.tabn, 1)};                          // no tile: unused
  const int srad[4] = {0, f.pt, std::max(f.th, 1), std::max(f.tw, 1)};  // no tile: unused
  const int trad[3] = {0, f.wh, std::max(f.nseg, 1)};
  const int crad[3] = {0, f.wh, f.cw};
  const Digits<3> q = digits_of<3>(32, qrad), t = digits_of<3>(32, trad), c = digits_of<3>(32, crad);
  const Digits<2> x = digits_of<2>(32, xrad);
  const Digits<4> s = digits_of<4>(32, srad);
  for (int k = 0; k < 2; ++k) f.xstep[k] = x.v[k];
  for (int k = 0; k < 4; ++k) f.sstep[k] = s.v[k];
  for (int k = 0; k < 3; ++k) f.qstep[k] = q.v[k], f.tstep[k] = t.v[k], f.cstep[k] = c.v[k];
}

template <class T, bool L2, int R, bool TILE, int CV>
void launch(FwdArgs<T> f, const FwdPlan& p, cudaStream_t stream) {
  auto kernel = search_forward_kernel<T, L2, R, TILE, CV>;
  const size_t smem_max = p.warps * p.per_warp;
  if (smem_max > 48 * 1024)
    STNLS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem_max)));
  // Warps per block: the most resident warps per SM under this variant's registers and
  // the call's shared memory (e.g. 7-warp blocks fit 3 per SM where 8-warp blocks fit 2);
  // a tie keeps the larger block.
  int warps = p.warps, best = 0;
  for (int w = p.warps; w >= 1 && w * 2 >= p.warps; --w) {
    int blocks = 0;
    STNLS_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&blocks, kernel, w * 32, w * p.per_warp));
    if (blocks * w > best) best = blocks * w, warps = w;
  }
  f.warps = warps;
  const size_t smem = warps * p.per_warp;
  const int64_t blocks = ceil_div(f.nq, warps);
  if (blocks > INT32_MAX) throw BackendError("search: too many queries for one launch; use batchsize");
  kernel<<<static_cast<unsigned>(blocks), warps * 32, smem, stream>>>(f);
  check_launch("search_forward_kernel");
}

template <class T, bool L2, int CV>
void launch_fast(const FwdArgs<T>& f, const FwdPlan& p, cudaStream_t stream) {
  if constexpr (kFastMaxR(CV) >= 7)
    if (p.R == 7) return launch<T, L2, 7, true, CV>(f, p, stream);
  if (p.R == 5) return launch<T, L2, 5, true, CV>(f, p, stream);
  return launch<T, L2, 3, true, CV>(f, p, stream);
}

template <class T, bool L2>
void forward_impl(const SearchArgs& a, cudaStream_t stream) {
  const SearchParams& p = a.p;
  const SearchShape& sh = a.sh;
  if (sh.slots() >= INT32_MAX || sh.H * sh.W >= INT32_MAX || sh.T * sh.nH * sh.nW >= INT32_MAX)
    throw BackendError("search: the video is too large for the CUDA backend (more than 2^31 candidates)");
  FwdArgs<T> f{};
  f.vid0 = static_cast<const T*>(a.vid0);
  f.vid1 = static_cast<const T*>(a.vid1);
  f.fflow = static_cast<const T*>(a.fflow);
  f.bflow = static_cast<const T*>(a.bflow);
  f.dists = static_cast<T*>(a.dists);
  f.inds = static_cast<int32_t*>(a.inds);
  f.s0 = a.s0, f.s1 = a.s1, f.sf = a.sf, f.sb = a.sb;
  for (int i = 0; i < 4; ++i) f.sd[i] = a.sd[i];
  for (int i = 0; i < 5; ++i) f.si[i] = a.si[i];
  f.nq = sh.B * sh.HD * sh.Q;
  f.HD = static_cast<int>(sh.HD), f.nT = static_cast<int>(sh.T), f.C = static_cast<int>(sh.C);
  f.H = static_cast<int>(sh.H), f.W = static_cast<int>(sh.W);
  f.nH = static_cast<int>(sh.nH), f.nW = static_cast<int>(sh.nW), f.Q = static_cast<int>(sh.Q);
  f.st = static_cast<int>(sh.st), f.wh = static_cast<int>(sh.wh), f.ww = static_cast<int>(sh.ww);
  f.K = static_cast<int>(sh.K);
  f.ps = p.ps, f.pt = p.pt, f.dil = p.dilation, f.str0 = p.stride0, f.str1 = p.stride1;
  f.wt = p.wt, f.ws = p.ws;
  f.full_ws = p.full_ws, f.reflect = p.reflect_bounds, f.anchor = p.anchor_self, f.remove_self = p.remove_self;
  f.offH0 = p.off_H0, f.offW0 = p.off_W0, f.offH1 = p.off_H1, f.offW1 = p.off_W1;
  f.o0 = static_cast<int>(geo::patch_offset(0, p.ps, p.dilation, p.use_adj));
  const int64_t qelems = static_cast<int64_t>(p.pt) * p.ps * p.ps * sh.C;
  if (qelems >= INT32_MAX) throw BackendError("search: patch too large for the CUDA backend");
  f.qelems = static_cast<int>(qelems);

  int optin = 0;
  STNLS_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, a.device.index));
  const FwdPlan plan = plan_forward(f, optin);
  f.F = plan.F;
  set_steps(f);
  if (!plan.tile) return launch<T, L2, 1, false, 0>(f, plan, stream);
  if constexpr (sizeof(T) == 4) {
    switch (plan.CV) {
      case 3: return launch_fast<T, L2, 3>(f, plan, stream);
      case 4: return launch_fast<T, L2, 4>(f, plan, stream);
      case 8: return launch_fast<T, L2, 8>(f, plan, stream);
      case 16: return launch_fast<T, L2, 16>(f, plan, stream);
      default: break;
    }
  }
  switch (plan.R) {
    case 1: return launch<T, L2, 1, true, 0>(f, plan, stream);
    case 2: return launch<T, L2, 2, true, 0>(f, plan, stream);
    default: return launch<T, L2, 4, true, 0>(f, plan, stream);
  }
}

}  // namespace

size_t search_forward_workspace_size(const SearchArgs& a) {
  DeviceGuard guard(a.device.index);
  // Only the channel-group layout takes one; neither layout tried before it takes those
  // calls (shared-sums: ps >= 5; thread-per-query: 4 or 8 channels).
  return search_forward_groups_workspace_size(a);
}

void search_forward(const SearchArgs& a, void* workspace, size_t workspace_bytes, void* stream) {
  DeviceGuard guard(a.device.index);
  if (search_forward_shared(a, as_stream(stream))) return;
  if (search_forward_thread(a, as_stream(stream))) return;
  if (search_forward_groups(a, workspace, workspace_bytes, as_stream(stream))) return;
  if (search_forward_rows(a, as_stream(stream))) return;
  STNLS_FLOAT_SWITCH(a.dtype, [&] {
    STNLS_DIST_SWITCH(a.p.dist_type, [&] { forward_impl<scalar_t, kL2>(a, as_stream(stream)); });
  });
}

}  // namespace cuda
}  // namespace stnls
