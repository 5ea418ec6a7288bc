// CUDA forward of the non-local search (SPEC.md rules 1-7), computing exactly what the
// CPU backend computes: same geometry (common/geometry.h), same summation order
// (pk, pi, pj, c with separate multiply and add), same selection order (rule 6).
//
// Layout of the work: a block owns a QH x QW tile of the query grid of one (batch, head,
// frame); its threads first walk the flow-chained window centres of all these queries.
// Then, when the union of the queries' windows fits the block's shared memory, the block
// stages that union once for every searched frame (bounds already applied) and each warp
// serves its queries from it: neighbouring queries' windows overlap, so a pixel is copied
// once per block instead of once per query (per-query staging used to dominate small
// windows and ps = 1). Otherwise each warp stages its own query's window, a group of
// frames at a time. One warp computes one query at a time. The warp keeps its best candidates in one sorted list spread over the lanes
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
// - general path: the tile is [frame][pk][c][row][col] and each lane computes R
//   candidates anywhere in the window, one tile load per multiply-add.
//
// K larger than 32 (k <= 0 = all, or a big k) is served by several passes: pass p
// recomputes the distances and keeps only candidates ranked after the last one emitted,
// so every pass emits the next (up to) 32 in the same total order.
// Windows whose tile does not fit in shared memory read vid1 straight from global memory.
#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <limits>
#include <string>

#include "common/backends.h"
#include "common/dispatch.h"
#include "common/geometry.h"
#include "cuda/cuda_util.h"

namespace stnls {

bool cuda_available() { return true; }

namespace cuda {
namespace {

using detail::SearchArgs;

constexpr int32_t kEmpty = INT32_MAX;  // ordinal of an empty list entry (ranks last)
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
  int B, HD, nT, C, H, W, nH, nW, Q, st, wh, ww, K;
  int ps, pt, dil, str0, str1, wt, ws;
  bool full_ws, reflect, anchor, remove_self;
  int offH0, offW0, offH1, offW1, o0;
  int th, tw;        // tile rows and columns (pixels) of one query's window in one frame
  int cs;            // fast path: channel stride of a tile pixel (C padded against bank conflicts)
  int nseg;          // fast path: row segments of R candidates per window row
  int F;             // frames staged together by a warp for its own query
  int qelems;        // pt*ps*ps*C: query patch
  int tile_elems;    // one frame's tile of one query
  int qstride;       // scalars of shared memory per warp's query patch (16-byte multiple)
  int tile_cap;      // scalars of the block's tile region
  int warps;         // warps per block
  int QH, QW;        // the block's tile of the query grid
  int tilesH, tilesW;  // query tiles per frame
  bool try_union;    // stage the union of the block's windows when it fits
};

// Rule 6 as a strict total order on (distance, canonical ordinal): better distance first,
// ties to the smaller ordinal; a NaN distance ranks after every number.
template <bool L2, class T>
__device__ __forceinline__ bool before(T d1, int32_t o1, T d2, int32_t o2) {
  if (geo::better<L2>(d1, d2)) return true;
  if (geo::better<L2>(d2, d1)) return false;
  return o1 < o2;
}

// The warp's best `cap` (<= 32) candidates, sorted: lane m holds rank m. Empty entries
// are (NaN, kEmpty), after every real candidate (NaN distances included). (td, to) is
// the last entry, broadcast: a candidate not before it cannot enter.
template <bool L2, class T>
struct WarpList {
  T d, td;
  int32_t o, to;
  int cap, lane;

  __device__ __forceinline__ void reset(int capacity, int lane_id) {
    cap = capacity, lane = lane_id;
    d = td = std::numeric_limits<T>::quiet_NaN();
    o = to = kEmpty;
  }
  // Parks the list in shared memory (32 entries) and takes it back, for a warp that
  // serves several queries one stage of frames at a time.
  __device__ __forceinline__ void save(T* sd, int32_t* so) const { sd[lane] = d, so[lane] = o; }
  __device__ __forceinline__ void load(int capacity, int lane_id, const T* sd, const int32_t* so) {
    cap = capacity, lane = lane_id;
    d = sd[lane], o = so[lane];
    td = __shfl_sync(kFull, d, cap - 1);
    to = __shfl_sync(kFull, o, cap - 1);
  }
  // Every lane offers one candidate (valid = false: none). Lanes whose candidate beats the
  // last entry are inserted one at a time, lowest lane first; the test is repeated after
  // each insertion since the last entry moves up. (Measured: a bitonic sort-and-merge of
  // the warp's candidates when many win, and lanes offering their candidates sorted, cost
  // more than they saved: the attention layer's search 5-12% slower.)
  __device__ __forceinline__ void offer(bool valid, T nd, int32_t no) {
    bool pending = valid && before<L2>(nd, no, td, to);
    unsigned m = __ballot_sync(kFull, pending);
    if (!m) return;
    for (;;) {
      const int src = __ffs(m) - 1;
      const T bd = __shfl_sync(kFull, nd, src);
      const int32_t bo = __shfl_sync(kFull, no, src);
      if (lane == src) pending = false;
      // The entries the new one ranks before form a suffix [first, cap) of the list.
      const bool bef = lane < cap && before<L2>(bd, bo, d, o);
      const T pd = __shfl_up_sync(kFull, d, 1);
      const int32_t po = __shfl_up_sync(kFull, o, 1);
      const int first = __ffs(__ballot_sync(kFull, bef)) - 1;
      if (bef) {
        d = lane == first ? bd : pd;
        o = lane == first ? bo : po;
      }
      td = __shfl_sync(kFull, d, cap - 1);
      to = __shfl_sync(kFull, o, cap - 1);
      m = __ballot_sync(kFull, pending && before<L2>(nd, no, td, to));
      if (!m) return;
    }
  }
};

// The search state of the query a warp is serving: its list, its window starts and, in
// pass p > 0, the last candidate emitted so far (only candidates ranked after it count).
template <bool L2, class T>
struct QueryState {
  WarpList<L2, T> L;
  const int* base_y;
  const int* base_x;
  int qh, qw;
  bool has_thr = false;
  T thr_d = T(0);
  int32_t thr_o = 0;
};

// Loads the CV channels of one tile pixel / query tap into registers (16-byte loads when
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

// Copies the window tiles of the searched frames f0 .. f0+nf-1 into `tile` (frame f at
// f*tile_elems), bounds already applied; the work is split over the `nthr` threads of
// which this is `tid`. Tile pixel (r, s) of frame n is the pixel (oy[n] + r, ox[n] + s) of
// the window-start lattice, i.e. the virtual pixel (oy[n] + o0 - offH1 + r, ...).
// Fast path layout [f][pk][r][s][c] (channel stride cs); general [f][pk][c][r][s].
template <class T, int CV>
__device__ __forceinline__ void stage_tiles(const FwdArgs<T>& a, const T* v1, T* tile, int t, const geo::Frames& fr,
                                            int f0, int nf, const int* oy, const int* ox, int th, int tw,
                                            int tile_elems, int tid, int nthr) {
  const int P = th * tw;
  const int npix = a.pt * P;
  const int C = a.C;
  for (int e = tid; e < nf * npix; e += nthr) {
    const int f = e / npix;
    int rem = e - f * npix;
    const int pk = rem / P;
    rem -= pk * P;
    const int r = rem / tw, s = rem - r * tw;
    const int n = f0 + f;
    const int64_t u = geo::frame_at(n, t, fr);
    const int64_t off = geo::pixel_offset(u + pk, oy[n] + a.o0 - a.offH1 + r, ox[n] + a.o0 - a.offW1 + s, a.nT, a.H,
                                          a.W, a.reflect, a.s1.t, a.s1.y, a.s1.x);
    T* dst = tile + static_cast<int64_t>(f) * tile_elems +
             (CV > 0 ? (pk * P + r * tw + s) * a.cs : pk * C * P + r * tw + s);
    const int cstep = CV > 0 ? 1 : P;
    if (off < 0) {
      for (int c = 0; c < C; ++c) dst[c * cstep] = T(0);
    } else {
      // Asynchronous copies: every load is in flight at once (no load->store round trip).
      const T* src = v1 + off;
      for (int c = 0; c < C; ++c) __pipeline_memcpy_async(dst + c * cstep, src + c * a.s1.c, sizeof(T));
    }
  }
}

// CV == 0: general path (any T, stride1, dilation, C), R candidates per lane anywhere in
// the window. CV > 0: fast path (float, stride1 = dilation = 1, C == CV), R adjacent
// candidates of a window row per lane. TILE = false: no tile, global reads (R == 1).
// Two 256-thread blocks per SM (at most 128 registers) except for the variants whose
// register blocking needs more (they would spill: 16 channels of R pixels, or R = 4
// candidates on the general path).
template <int R, int CV>
constexpr int min_blocks() { return (CV == 16 || (CV == 0 && R == 4)) ? 1 : 2; }

template <class T, bool L2, int R, bool TILE, int CV>
__global__ void __launch_bounds__(256, (min_blocks<R, CV>())) search_forward_kernel(const FwdArgs<T> a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const int lane = threadIdx.x & 31;
  const int wib = threadIdx.x >> 5;
  const int QB = a.QH * a.QW;
  const int st = a.st;

  // Block -> (b, hd, t, query tile).
  int64_t blk = blockIdx.x;
  const int tx = static_cast<int>(blk % a.tilesW);
  blk /= a.tilesW;
  const int ty = static_cast<int>(blk % a.tilesH);
  blk /= a.tilesH;
  const int t = static_cast<int>(blk % a.nT);
  blk /= a.nT;
  const int hd = static_cast<int>(blk % a.HD);
  const int b = static_cast<int>(blk / a.HD);

  // Shared memory: query patches [QB][qstride], tiles [tile_cap], parked lists [QB][32]
  // (distances, then ordinals; union mode only), then ints: window starts [QB][st] (rows,
  // then columns), this warp's query origins in the tiles [warps][st], union origins [st]
  // (rows, then columns) and spreads [st] (rows, then columns).
  T* qps = reinterpret_cast<T*>(smem_raw);
  T* tiles = qps + QB * a.qstride;
  const int npark = a.try_union ? QB * 32 : 0;
  T* park_d = tiles + a.tile_cap;
  int32_t* park_o = reinterpret_cast<int32_t*>(park_d + npark);
  int* bys = park_o + npark;
  int* bxs = bys + QB * st;
  int* qoff = bxs + QB * st + wib * st;
  int* uy = bxs + QB * st + a.warps * st;
  int* ux = uy + st;
  int* spread = ux + st;

  const T* v0 = a.vid0 + b * a.s0.b + hd * a.s0.h;
  const T* v1 = a.vid1 + b * a.s1.b + hd * a.s1.h;
  const int C = a.C, ps = a.ps, pt = a.pt, dil = a.dil, o0 = a.o0;
  const geo::Frames fr = geo::frames(t, a.nT, a.wt);
  const int nfwd = static_cast<int>(fr.t_hi - t + 1);
  auto query_of = [&](int i, int& qy, int& qx) {
    qy = ty * a.QH + i / a.QW;
    qx = tx * a.QW + i % a.QW;
    return qy < a.nH && qx < a.nW;
  };

  // Without a union every warp touches only its own queries (wib, wib + warps, ...): it
  // prepares them itself and never waits for the block, so the latency of its flow reads
  // overlaps with other warps' work. With one, the block prepares all queries together.
  const bool warp_local = !(TILE && a.try_union);
  const int nmine = (QB - wib + a.warps - 1) / a.warps;  // queries of this warp
  const int nprep = warp_local ? nmine : QB;               // queries prepared by this thread's group
  const int ptid = warp_local ? lane : static_cast<int>(threadIdx.x);
  const int pthr = warp_local ? 32 : static_cast<int>(blockDim.x);
  auto prep_query = [&](int k) { return warp_local ? wib + k * a.warps : k; };

  // Window start of every searched frame of every query (rules 2-4), walked as the CPU
  // walks it. Two independent chains per query (forward frames from t, backward frames
  // restarting at the query), each of dependent flow reads, walked by two threads.
  for (int w = ptid; w < 2 * nprep; w += pthr) {
    const int i = prep_query(w % nprep), chain = w / nprep;
    int qy, qx;
    if (!query_of(i, qy, qx)) continue;
    const int qh = qy * a.str0, qw = qx * a.str0;
    int64_t ch = qh, cw = qw;
    for (int n = chain == 0 ? 0 : nfwd; n < (chain == 0 ? nfwd : st); ++n) {
      const int64_t u = geo::frame_at(n, t, fr);
      if (n > 0) {
        const int64_t prev = (u == t - 1) ? t : (u > t ? u - 1 : u + 1);
        if (u == t - 1) ch = qh, cw = qw;
        const T* fl = (u > t ? a.fflow : a.bflow);
        const detail::Strides5& sf = (u > t ? a.sf : a.sb);
        if (fl) {
          const T* f = fl + b * sf.b + prev * sf.t + ch * sf.y + cw * sf.x;
          geo::flow_step(ch, cw, f[0], f[sf.c], a.H, a.W);
        }
      }
      bys[i * st + n] = static_cast<int>(geo::window_base(ch, a.H, a.str1, a.ws, a.full_ws));
      bxs[i * st + n] = static_cast<int>(geo::window_base(cw, a.W, a.str1, a.ws, a.full_ws));
    }
  }
  // Query patches, layout [pk][pi][pj][c] (the summation order).
  for (int e = ptid; e < nprep * a.qelems; e += pthr) {
    const int k = e / a.qelems, el = e - k * a.qelems;
    const int i = prep_query(k);
    int qy, qx;
    if (!query_of(i, qy, qx)) continue;
    const int c = el % C, tap = el / C;
    const int pj = tap % ps, pi = (tap / ps) % ps, pk = tap / (ps * ps);
    const int64_t off = geo::pixel_offset(t + pk, qy * a.str0 + o0 + dil * pi - a.offH0, qx * a.str0 + o0 + dil * pj - a.offW0,
                                          a.nT, a.H, a.W, a.reflect, a.s0.t, a.s0.y, a.s0.x);
    T* dst = qps + i * a.qstride + el;
    if (off < 0) *dst = T(0);
    else __pipeline_memcpy_async(dst, v0 + off + c * a.s0.c, sizeof(T));
  }
  __pipeline_commit();
  __pipeline_wait_prior(0);
  if (warp_local) __syncwarp();
  else __syncthreads();

  // The union of the block's windows, frame by frame (warp w reduces frames w, w+warps, ..),
  // staged with one box size for all frames so that the per-query tile layout carries over.
  bool use_union = false;
  int uth = 0, utw = 0, ute = 0, Fu = 0;
  if (TILE && a.try_union) {
    for (int n = wib; n < st; n += a.warps) {
      int y0 = INT_MAX, y1 = INT_MIN, x0 = INT_MAX, x1 = INT_MIN;
      for (int i = lane; i < QB; i += 32) {
        int qy, qx;
        if (!query_of(i, qy, qx)) continue;
        y0 = min(y0, bys[i * st + n]), y1 = max(y1, bys[i * st + n]);
        x0 = min(x0, bxs[i * st + n]), x1 = max(x1, bxs[i * st + n]);
      }
      for (int m = 16; m > 0; m >>= 1) {
        y0 = min(y0, __shfl_xor_sync(kFull, y0, m)), y1 = max(y1, __shfl_xor_sync(kFull, y1, m));
        x0 = min(x0, __shfl_xor_sync(kFull, x0, m)), x1 = max(x1, __shfl_xor_sync(kFull, x1, m));
      }
      if (lane == 0) uy[n] = y0, ux[n] = x0, spread[n] = y1 - y0, spread[st + n] = x1 - x0;
    }
    __syncthreads();
    int sy = 0, sx = 0;
    for (int n = 0; n < st; ++n) sy = max(sy, spread[n]), sx = max(sx, spread[st + n]);
    // Row pitch and frame stride odd in bank units (16 bytes for 16-byte loads, else one
    // scalar), so that lanes reading different rows and frames hit different banks.
    const int bu = (CV > 0 && a.cs % 4 == 0) ? 4 : 1;
    uth = a.th + sy, utw = a.tw + sx;
    if (CV > 0 && (utw * a.cs / bu) % 2 == 0) ++utw;
    int64_t te = static_cast<int64_t>(pt) * uth * utw * (CV > 0 ? a.cs : C);
    if ((te / bu) % 2 == 0) te += bu;
    if (te <= a.tile_cap) {  // block-uniform
      use_union = true;
      ute = static_cast<int>(te);
      Fu = static_cast<int>(std::min<int64_t>(st, a.tile_cap / te));
    }
  }

  const int spf = a.wh * a.ww;  // slots per frame
  const bool skip_self = a.anchor || a.remove_self;
  const int kfirst = a.anchor ? a.K - 1 : a.K;  // neighbours the lists must supply
  // A lane's R candidates (frame n, row i, column j, distance d; ok = false: none) through
  // the filter of rule 6 into the query's list.
  auto offer_lane = [&](QueryState<L2, T>& q, const bool (&ok)[R], const int (&n)[R], const int (&i)[R],
                        const int (&j)[R], const T (&d)[R]) {
#pragma unroll
    for (int r = 0; r < R; ++r) {
      const int y = q.base_y[n[r]] + a.str1 * i[r], x = q.base_x[n[r]] + a.str1 * j[r];
      const int32_t ord = (n[r] * a.wh + i[r]) * a.ww + j[r];
      bool v = ok[r] && y >= 0 && y < a.H && x >= 0 && x < a.W &&
               !(skip_self && n[r] == 0 && y == q.qh && x == q.qw);  // n = 0 is t
      if (v && q.has_thr) v = before<L2>(q.thr_d, q.thr_o, d[r], ord);
      q.L.offer(v, d[r], ord);
    }
  };

  // Distances of the candidates of frames f0 .. f0+nf-1 of query q with patch qp, frame
  // f of the stage being tile + f*tile_elems (tw pixels per row) shifted by qo[f0 + f]
  // pixels (nullptr: 0). Every lane offers each of its candidates to q's list.
  auto distances = [&](QueryState<L2, T>& q, const T* qp, const T* tile, int tile_elems, int th, int tw, const int* qo,
                       int f0, int nf) {
    const int P = th * tw;  // one channel plane (general) / one pk slice (fast) of a frame's tile
    if constexpr (CV > 0) {
      // Fast path: task = (frame, window row i, segment of R columns from j0).
      constexpr int CS4 = CV % 4 == 0 ? 4 : 1;  // channels per load
      const int tpf = a.wh * a.nseg;
      const int ntask = nf * tpf;
      for (int tb = 0; tb < ntask; tb += 32) {
        const int task = tb + lane;
        const int tk = task < ntask ? task : 0;  // idle lanes redo task 0, offer nothing
        const int f = tk / tpf;
        const int rem = tk - f * tpf;
        const int i = rem / a.nseg;
        const int j0 = (rem - i * a.nseg) * R;
        const float* ftile = tile + static_cast<int64_t>(f) * tile_elems + static_cast<int64_t>(qo ? qo[f0 + f] : 0) * a.cs;
        float acc[R];
#pragma unroll
        for (int r = 0; r < R; ++r) acc[r] = 0.f;
        for (int pk = 0; pk < pt; ++pk)
          for (int pi = 0; pi < ps; ++pi) {
            const float* prow = ftile + (pk * P + (i + pi) * tw + j0) * a.cs;
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
                        acc[r] = geo::dist_acc<L2>(acc[r], qc[cc], buf[(ph + r) % R][c0 + cc]);
                  }
                }
              }
            }
          }
        bool ok[R];
        int nn[R], iv[R], jv[R];
        T dv[R];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          ok[r] = task < ntask && j0 + r < a.ww;
          nn[r] = f0 + f, iv[r] = i, jv[r] = j0 + r, dv[r] = static_cast<T>(acc[r]);
        }
        offer_lane(q, ok, nn, iv, jv, dv);
      }
    } else {
      const int nslots = (TILE ? nf : st) * spf;
      for (int sbase = 0; sbase < nslots; sbase += 32 * R) {
        int fi[R], ii[R], ji[R];
        T acc[R];
        int offr[R];  // tile offset of each candidate
#pragma unroll
        for (int r = 0; r < R; ++r) {
          const int slot = sbase + r * 32 + lane;
          const int sl = slot < nslots ? slot : 0;
          const int f = sl / spf;
          fi[r] = slot < nslots ? f : -1;
          const int rem = sl - f * spf;
          ii[r] = rem / a.ww;
          ji[r] = rem - ii[r] * a.ww;
          offr[r] = TILE ? f * tile_elems + (qo ? qo[f0 + f] : 0) + ii[r] * a.str1 * tw + ji[r] * a.str1 : 0;
          acc[r] = T(0);
        }
        if (TILE) {
          for (int pk = 0; pk < pt; ++pk)
            for (int pi = 0; pi < ps; ++pi)
              for (int pj = 0; pj < ps; ++pj) {
                const T* qrow = qp + ((pk * ps + pi) * ps + pj) * C;
                // Warp-uniform base + per-lane offset; two channels' loads are issued
                // before their arithmetic so the shared-memory latency overlaps.
                const T* trow = tile + pk * C * P + dil * pi * tw + dil * pj;
                int c = 0;
                for (; c + 2 <= C; c += 2) {
                  const T q0 = qrow[c], q1 = qrow[c + 1];
                  const T* t0 = trow + c * P;
                  const T* t1 = t0 + P;
                  T x0[R], x1[R];
#pragma unroll
                  for (int r = 0; r < R; ++r) x0[r] = t0[offr[r]];
#pragma unroll
                  for (int r = 0; r < R; ++r) x1[r] = t1[offr[r]];
#pragma unroll
                  for (int r = 0; r < R; ++r) acc[r] = geo::dist_acc<L2>(acc[r], q0, x0[r]);
#pragma unroll
                  for (int r = 0; r < R; ++r) acc[r] = geo::dist_acc<L2>(acc[r], q1, x1[r]);
                }
                if (c < C) {
                  const T q0 = qrow[c];
                  const T* t0 = trow + c * P;
#pragma unroll
                  for (int r = 0; r < R; ++r) acc[r] = geo::dist_acc<L2>(acc[r], q0, t0[offr[r]]);
                }
              }
        } else if (fi[0] >= 0) {
          // Global reads (R == 1): only in-frame candidates need a distance.
          const int n = f0 + fi[0];
          const int u = static_cast<int>(geo::frame_at(n, t, fr));
          const int y = q.base_y[n] + a.str1 * ii[0], x = q.base_x[n] + a.str1 * ji[0];
          if (y >= 0 && y < a.H && x >= 0 && x < a.W) {
            T d = T(0);
            for (int pk = 0; pk < pt; ++pk)
              for (int pi = 0; pi < ps; ++pi)
                for (int pj = 0; pj < ps; ++pj) {
                  const int64_t off = geo::pixel_offset(u + pk, y + o0 + dil * pi - a.offH1, x + o0 + dil * pj - a.offW1,
                                                        a.nT, a.H, a.W, a.reflect, a.s1.t, a.s1.y, a.s1.x);
                  const T* qrow = qp + ((pk * ps + pi) * ps + pj) * C;
                  for (int c = 0; c < C; ++c) d = geo::dist_acc<L2>(d, qrow[c], off < 0 ? T(0) : v1[off + c * a.s1.c]);
                }
            acc[0] = d;
          }
        }
        bool ok[R];
        int nn[R];
#pragma unroll
        for (int r = 0; r < R; ++r) ok[r] = fi[r] >= 0, nn[r] = f0 + (fi[r] >= 0 ? fi[r] : 0);
        offer_lane(q, ok, nn, ii, ji, acc);
      }
    }
  };

  // One query's outputs: the anchor (the query's own location first, with its distance in
  // the same summation order), then the list (lane m holds rank m), then padding.
  auto emit = [&](T* dq, int32_t* iq, int slot, T d, int u, int y, int x) {
    dq[slot * a.sd[3]] = d;
    int32_t* e = iq + slot * a.si[3];
    e[0] = u;
    e[a.si[4]] = y;
    e[2 * a.si[4]] = x;
  };
  auto emit_anchor = [&](T* dq, int32_t* iq, const T* qp, int qh, int qw) {
    if (lane == 0) {
      T d = T(0);
      for (int pk = 0; pk < pt; ++pk)
        for (int pi = 0; pi < ps; ++pi)
          for (int pj = 0; pj < ps; ++pj) {
            const int64_t off = geo::pixel_offset(t + pk, qh + o0 + dil * pi - a.offH1, qw + o0 + dil * pj - a.offW1,
                                                  a.nT, a.H, a.W, a.reflect, a.s1.t, a.s1.y, a.s1.x);
            const T* qrow = qp + ((pk * ps + pi) * ps + pj) * C;
            for (int c = 0; c < C; ++c) d = geo::dist_acc<L2>(d, qrow[c], off < 0 ? T(0) : v1[off + c * a.s1.c]);
          }
      emit(dq, iq, 0, d, t, qh, qw);
    }
  };
  // Emits the list's valid entries from slot `out`; returns how many.
  auto emit_list = [&](T* dq, int32_t* iq, const WarpList<L2, T>& L, int out, const int* base_y, const int* base_x) {
    const int got = __popc(__ballot_sync(kFull, lane < L.cap && L.o != kEmpty));
    if (lane < got) {
      const int n = L.o / spf, rem = L.o - n * spf;
      const int i = rem / a.ww, j = rem - i * a.ww;
      emit(dq, iq, out + lane, L.d, static_cast<int>(geo::frame_at(n, t, fr)), base_y[n] + a.str1 * i,
           base_x[n] + a.str1 * j);
    }
    return got;
  };
  auto emit_pad = [&](T* dq, int32_t* iq, int out) {
    const T pad = L2 ? std::numeric_limits<T>::infinity() : -std::numeric_limits<T>::infinity();
    for (int s = out + lane; s < a.K; s += 32) emit(dq, iq, s, pad, -1, -1, -1);
  };
  // Union mode (single pass, kfirst <= 32): stage after stage of Fu frames, the block
  // stages the union and every warp serves each of its queries from it, parking the
  // query's list in between. Per-query mode: each warp serves one query at a time, staging
  // its windows F frames at a time, and serves K > 32 in passes (pass p keeps only the
  // candidates ranked after the last one emitted). One loop nest for both, so that the
  // distance code is instantiated once.
  const int nstages = use_union ? (st + Fu - 1) / Fu : 0;
  T* tile = use_union ? tiles : tiles + static_cast<int64_t>(wib) * a.F * a.tile_elems;
  const int th = use_union ? uth : a.th, tw = use_union ? utw : a.tw, te = use_union ? ute : a.tile_elems;
  const int F = use_union ? Fu : a.F;
  for (int outer = 0; outer < (use_union ? nstages : nmine); ++outer) {
    if (use_union) {
      const int f0 = outer * Fu, nf = min(Fu, st - f0);
      if (outer > 0) __syncthreads();  // every warp is done with the previous stage's tiles
      stage_tiles<T, CV>(a, v1, tiles, t, fr, f0, nf, uy, ux, uth, utw, ute, threadIdx.x, blockDim.x);
      __pipeline_commit();
      __pipeline_wait_prior(0);
      __syncthreads();
    }
    for (int inner = 0; inner < (use_union ? nmine : 1); ++inner) {
      const int qi = wib + (use_union ? inner : outer) * a.warps;
      int qy, qx;
      if (!query_of(qi, qy, qx)) continue;  // warp-uniform
      QueryState<L2, T> q;
      q.base_y = bys + qi * st, q.base_x = bxs + qi * st;
      q.qh = qy * a.str0, q.qw = qx * a.str0;
      const T* qp = qps + qi * a.qstride;
      T* dq = a.dists + b * a.sd[0] + hd * a.sd[1] + ((t * a.nH + qy) * a.nW + qx) * a.sd[2];
      int32_t* iq = a.inds + b * a.si[0] + hd * a.si[1] + ((t * a.nH + qy) * a.nW + qx) * a.si[2];
      const int fbeg = use_union ? outer * Fu : 0, fend = use_union ? min(st, fbeg + Fu) : st;
      if (use_union) {
        __syncwarp();  // the previous query's reads of qoff are done
        for (int n = fbeg + lane; n < fend; n += 32) qoff[n] = (q.base_y[n] - uy[n]) * utw + (q.base_x[n] - ux[n]);
        __syncwarp();
      }
      int out = 0;  // next output slot (warp-uniform)
      if (a.anchor && !use_union) emit_anchor(dq, iq, qp, q.qh, q.qw), out = 1;
      int left = kfirst;
      while (left > 0) {
        const int cap = min(32, left);
        for (int f0 = fbeg; f0 < fend; f0 += F) {
          const int nf = min(F, fend - f0);
          if (TILE && !use_union) {
            __syncwarp();  // the previous stage's reads are done
            stage_tiles<T, CV>(a, v1, tile, t, fr, f0, nf, q.base_y, q.base_x, th, tw, te, lane, 32);
            __pipeline_commit();
            __pipeline_wait_prior(0);
            __syncwarp();
          }
          if (f0 == 0) q.L.reset(cap, lane);
          else if (use_union) q.L.load(cap, lane, park_d + qi * 32, park_o + qi * 32);
          distances(q, qp, tile, te, th, tw, use_union ? qoff : nullptr, f0, nf);
          if (!TILE) break;  // the global path covers every frame in one sweep
        }
        if (use_union) {
          q.L.save(park_d + qi * 32, park_o + qi * 32);
          break;
        }
        const int got = emit_list(dq, iq, q.L, out, q.base_y, q.base_x);
        if (got > 0) {
          q.thr_d = __shfl_sync(kFull, q.L.d, got - 1);
          q.thr_o = __shfl_sync(kFull, q.L.o, got - 1);
          q.has_thr = true;
        }
        out += got;
        left -= got;
        if (got < cap) break;  // fewer valid candidates than k: pad below
      }
      if (!use_union) emit_pad(dq, iq, out);
    }
  }
  if (use_union) {
    for (int qi = wib; qi < QB; qi += a.warps) {
      int qy, qx;
      if (!query_of(qi, qy, qx)) continue;
      const int* base_y = bys + qi * st;
      const int* base_x = bxs + qi * st;
      T* dq = a.dists + b * a.sd[0] + hd * a.sd[1] + ((t * a.nH + qy) * a.nW + qx) * a.sd[2];
      int32_t* iq = a.inds + b * a.si[0] + hd * a.si[1] + ((t * a.nH + qy) * a.nW + qx) * a.si[2];
      int out = 0;
      if (a.anchor) emit_anchor(dq, iq, qps + qi * a.qstride, qy * a.str0, qx * a.str0), out = 1;
      WarpList<L2, T> L;
      L.load(min(32, kfirst), lane, park_d + qi * 32, park_o + qi * 32);
      out += emit_list(dq, iq, L, out, base_y, base_x);
      emit_pad(dq, iq, out);
    }
  }
}

// The launch configuration of one call.
struct FwdPlan {
  bool tile;
  int CV;  // fast path channels (0: general path)
  int R, F, warps;
  size_t smem;
};

constexpr size_t kWarpStageBytes = 16 * 1024;  // target tile bytes per warp (several frames when small)
constexpr size_t kWarpTileLimit = 64 * 1024;   // larger one-frame tiles read global memory

// Channel stride of a fast-path tile pixel: C % 4 == 0 pixels are read with 16-byte loads
// by 8 lanes at once, conflict-free when the stride in 16-byte units is odd (R odd too).
int fast_cs(int C) { return C % 4 != 0 ? C : ((C / 4) % 2 == 0 ? C + 4 : C); }

// Fast-path variants: C per head; R in {3, 5}.
// (C = 32 is left to the general path: 3 pixels x 32 channels of registers cost more
// occupancy than the reuse gains; measured 20.1 ms against 11.7 on S4.)
constexpr int kFastC[] = {3, 4, 8, 16};

template <class T>
FwdPlan plan_forward(FwdArgs<T>& f, int smem_optin, int smem_sm) {
  FwdPlan p{};
  const size_t bbytes = 2 * static_cast<size_t>(f.st) * sizeof(int);
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
    const int Rs[] = {3, 5};
    double best = 0;
    for (int R : Rs) {
      const int64_t nseg = ceil_div(f.ww, R);
      const int64_t tws = nseg * R + f.ps - 1;
      const size_t tb = static_cast<size_t>(f.pt) * th * tws * fast_cs(f.C) * sizeof(T);
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
    f.tile_elems = f.pt * f.th * f.tw * f.cs;
  } else {
    f.th = static_cast<int>(std::min<int64_t>(th, INT32_MAX));
    f.tw = static_cast<int>(std::min<int64_t>(tw, INT32_MAX));
    f.cs = 1;
    f.nseg = 1;
    f.tile_elems = static_cast<int>(std::min<int64_t>(static_cast<int64_t>(f.pt) * f.C * th * tw, INT32_MAX / 2));
  }
  const size_t tbytes = static_cast<size_t>(f.tile_elems) * sizeof(T);
  p.tile = qbytes + tbytes + bbytes <= kWarpTileLimit && qbytes + tbytes + bbytes <= static_cast<size_t>(smem_optin);
  p.F = 1;
  if (p.tile) {
    size_t room = kWarpStageBytes > qbytes + bbytes ? kWarpStageBytes - qbytes - bbytes : 0;
    p.F = static_cast<int>(std::max<size_t>(1, std::min<size_t>(f.st, room / tbytes)));
  } else {
    f.tile_elems = 0, f.th = 0, f.tw = 0;
  }
  // Shared memory of a block of QB queries and W warps: query patches, tiles, parked
  // lists (union mode), window starts, query origins and union extents.
  const size_t vec = 16 / sizeof(T);
  f.qstride = static_cast<int>((static_cast<size_t>(f.qelems) + vec - 1) / vec * vec);
  const size_t qsbytes = static_cast<size_t>(f.qstride) * sizeof(T);
  auto smem_of = [&](size_t QB, size_t W, size_t tile_cap, bool uni) {
    return QB * qsbytes + tile_cap * sizeof(T) + (uni ? QB * 32 * (sizeof(T) + sizeof(int32_t)) : 0) +
           (2 * QB + W + 4) * static_cast<size_t>(f.st) * sizeof(int);
  };
  const size_t per_warp = smem_of(1, 1, p.tile ? static_cast<size_t>(p.F) * f.tile_elems : 0, false);
  if (per_warp > static_cast<size_t>(smem_optin))
    throw BackendError("search: the query patch (pt*ps*ps*C/nheads = " + std::to_string(f.qelems) +
                       " values) does not fit in this GPU's shared memory");
  // Per-query mode: a row of W queries, each warp staging its own query's windows; two
  // blocks per SM when shared memory is what limits residency (1 KB reserved per block).
  const size_t half = smem_sm > 4096 ? static_cast<size_t>(smem_sm) / 2 - 1024 : 0;
  p.warps = static_cast<int>(std::max<size_t>(1, std::min<size_t>(8, half / per_warp)));
  auto pq_cap = [&](int W) { return p.tile ? static_cast<size_t>(W) * p.F * f.tile_elems : 0; };
  while (p.warps > 1 && smem_of(p.warps, p.warps, pq_cap(p.warps), false) > static_cast<size_t>(smem_optin)) --p.warps;
  f.QH = 1, f.QW = p.warps, f.try_union = false;
  f.tile_cap = static_cast<int>(pq_cap(p.warps));
  // Union mode (single pass: at most 32 listed neighbours): a QH x QW block of queries
  // shares one staged union of its windows. The block size is the one that stages the
  // fewest pixels per query, assuming the flows spread the block's windows by 10 pixels
  // (random flows of 2 pixels' deviation over two frames; measured: a union that saves
  // less than half of the per-query staging is slower than per-query mode),
  // among those whose union still fits as many frames per stage as per-query mode stages
  // (a warp round then keeps as many lanes busy) with a spread of 8 (the exact fit is
  // decided per block at run time, with per-query mode as the fallback).
  if (p.tile && f.K - (f.anchor ? 1 : 0) <= 32) {
    constexpr int W = 8;
    const double chan = p.CV > 0 ? f.cs : f.C;
    const double per_query = static_cast<double>(f.st) * f.tile_elems;
    double best = 0.5 * per_query;  // not worth the block synchronisation below that
    const int Fpq = p.F;             // frames per stage of per-query mode: keep the lanes as busy
    for (int QH : {1, 2, 4, 8})
      for (int QW : {4, 8, 16, 32}) {
        const int QB = QH * QW;
        if (QB > 64 || QB < W) continue;
        const size_t fixed = smem_of(QB, W, 0, true);
        if (fixed >= half) continue;
        const size_t cap = (half - fixed) / sizeof(T) / vec * vec;
        if (static_cast<size_t>(W) * f.tile_elems > cap) continue;  // the fallback must fit
        auto frame_elems = [&](int m) {
          return f.pt * (static_cast<double>(QH - 1) * f.str0 + f.th + m) * (static_cast<double>(QW - 1) * f.str0 + f.tw + m) *
                 chan;
        };
        if (frame_elems(8) * Fpq > static_cast<double>(cap)) continue;
        const double staged = frame_elems(10) * f.st / QB;
        if (staged < best) {
          best = staged;
          f.QH = QH, f.QW = QW, f.try_union = true, f.tile_cap = static_cast<int>(cap);
        }
      }
    if (f.try_union) {
      p.warps = W;
      p.F = static_cast<int>(std::min<size_t>(f.st, static_cast<size_t>(f.tile_cap) / (static_cast<size_t>(W) * f.tile_elems)));
    }
  }
  f.tilesH = static_cast<int>(ceil_div(f.nH, f.QH));
  f.tilesW = static_cast<int>(ceil_div(f.nW, f.QW));
  p.smem = smem_of(static_cast<size_t>(f.QH) * f.QW, p.warps, f.tile_cap, f.try_union);
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
  return p;
}

template <class T, bool L2, int R, bool TILE, int CV>
void launch(const FwdArgs<T>& f, const FwdPlan& p, cudaStream_t stream) {
  auto kernel = search_forward_kernel<T, L2, R, TILE, CV>;
  if (p.smem > 48 * 1024)
    STNLS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(p.smem)));
  const int64_t blocks = static_cast<int64_t>(f.B) * f.HD * f.nT * f.tilesH * f.tilesW;
  if (blocks > INT32_MAX) throw BackendError("search: too many queries for one launch; use batchsize");
  kernel<<<static_cast<unsigned>(blocks), p.warps * 32, p.smem, stream>>>(f);
  check_launch("search_forward_kernel");

}

template <class T, bool L2, int CV>
void launch_fast(const FwdArgs<T>& f, const FwdPlan& p, cudaStream_t stream) {
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
  f.B = static_cast<int>(sh.B);
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

  int optin = 0, smem_sm = 0;
  STNLS_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, a.device.index));
  STNLS_CUDA_CHECK(cudaDeviceGetAttribute(&smem_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, a.device.index));
  const FwdPlan plan = plan_forward(f, optin, smem_sm);
  f.F = plan.F;
  f.warps = plan.warps;
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

void search_forward(const SearchArgs& a, void* stream) {
  DeviceGuard guard(a.device.index);
  STNLS_FLOAT_SWITCH(a.dtype, [&] {
    STNLS_DIST_SWITCH(a.p.dist_type, [&] { forward_impl<scalar_t, kL2>(a, as_stream(stream)); });
  });
}

}  // namespace cuda
}  // namespace stnls
