// CUDA forward of the non-local search for large patches on a dense query grid, sharing
// each pixel's channel sum between the queries that need it (SPEC.md rules 1-7, computing
// exactly what the CPU backend computes: same geometry, same summation order, same
// selection order).
//
// Why a fourth layout: with ps = 7 and stride0 = 1 (S3: 16 channels per head, ws = 9),
// every pixel sits in 49 queries' patches and the windows of neighbouring queries overlap,
// so the per-query layouts compute the same product vid0(p) . vid1(p + d) many times. With
// 16 or more channels per head the summation order (geo::channel_sums) sums each pixel's
// channels first, from 0, so that sum s(p, d) is one value whoever needs it. A block owns
// an 8 x 16 tile of queries in one frame (one thread per query) and, per searched frame:
// - walks its queries' flow chains and takes the box of their window offsets d (candidate
//   minus query), [DY0, DY1] x [DX0, DX1], and per offset row dy the columns some query
//   needs (narrower than the box under random flows);
// - for every row dy of the box and every chunk of 24 offset columns, computes s(p, d) for
//   the tile's footprint (the (8 + ps - 1) x (16 + ps - 1) pixels its patches read) and the
//   needed columns, into shared memory: a dense correlation in which each thread keeps an
//   8 pixel x 8 offset block of sums in registers, so each loaded value feeds 8
//   multiply-adds;
// - then each thread sums, for its query's candidates of that row and chunk, the ps^2
//   values s(p, d) of its patch pixels in (pi, pj) order (the pixel chain of the order),
//   two candidates at a time, and offers the distances to its sorted register list.
// vid0's footprint is staged once per block, channel-major; vid1's rows enter a ring of
// footprint-height rows (channel-major), one new row per dy step, copied asynchronously
// while the step computes.
// The work is the box, not the windows: with smooth flows the box is about one window and
// each sum serves up to ps^2 queries. With the benchmarks' random 2 px flows it is about
// 20 x 20 offsets one frame away, and S3 computes about 2.8x fewer multiply-adds than the
// per-query layouts (30.6 ms on an H200 against the row-split layout's 66).
//
// Taken when: float, stride1 = dilation = pt = 1, stride0 = 1, no patch offsets (off_*),
// 16 to 64 channels per head, a multiple of 4, ps 5, 7 or 9, a finite ws of at least 7,
// k in [1, 16], no anchor_self, and the buffers fit in shared memory.
#include "cuda/search_forward_shared.h"

#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <atomic>
#include <climits>
#include <limits>

#include "common/geometry.h"
#include "common/rank_key.h"
#include "cuda/cuda_util.h"
#include "cuda/search_forward_common.cuh"

namespace stnls {
namespace cuda {
namespace {

using detail::SearchArgs;

constexpr int kTH = 8, kTW = 16;     // the query tile: rows x columns
constexpr int kThreads = kTH * kTW;  // one thread per query of the tile
// The footprint's columns (kTW + ps - 1 <= 24 for ps <= 9), in blocks of 8: the
// correlation's unit is 8 pixels x 8 offsets (64 sums in registers; per channel 2 + 4
// 16-byte loads feed 64 multiply-adds).
constexpr int kFX = 24, kFXB = kFX / 8;
constexpr int kDXC = 24;               // offset columns per chunk (3 blocks of 8)
constexpr int kRWS = kFX + kDXC;       // ring row: staged columns per channel
constexpr int kMaxRows = 64;           // offset rows whose column range is tracked per row
// Sums s(p, d) of one dy row and chunk: [fy][dx][fx], fx padded to 32 and each fy row 16
// floats past a multiple of 32, so that the 32 queries of a warp (two tile rows of 16)
// read 32 distinct banks whatever their offsets.
constexpr int kFXP = 32;
constexpr int kSFY = kDXC * kFXP + 16;

struct ShArgs {
  ThrArgs f;
  int C;           // channels per head
  int FH;          // footprint rows (kTH + ps - 1)
  int V0P, RSP;    // floats per footprint row of vid0 and per ring slot (C * columns + 4)
  int tilesH, tilesW;
};

// Shared memory, in floats: vid0's footprint [fy][c][fx], the ring of FH + 1 vid1 rows
// [slot][c][col] (both channel-major, rows an odd number of 16-byte units apart), the sums.
__host__ __device__ inline int v0_floats(const ShArgs& s) { return s.FH * s.V0P; }
__host__ __device__ inline int ring_floats(const ShArgs& s) { return (s.FH + 1) * s.RSP; }
__host__ __device__ inline int sum_floats(const ShArgs& s) { return s.FH * kSFY; }

template <bool L2, int PS, int KM>
__global__ void __launch_bounds__(kThreads, 2) search_forward_shared_kernel(const ShArgs s) {
  extern __shared__ __align__(16) float smem[];
  __shared__ int part[kThreads / 32][4];     // per warp: min dy0, max dy0, min dx0, max dx0
  __shared__ int row_lo[kMaxRows], row_hi[kMaxRows];  // per offset row: the queries' dx range
  const ThrArgs& a = s.f;
  float* v0s = smem;                    // [fy][c][fx]
  float* ring = v0s + v0_floats(s);     // [slot][c][col]
  float* sums = ring + ring_floats(s);  // [fy][dx][fx] (kSFY per fy)
  const int tid = threadIdx.x, lane = tid & 31, wib = tid >> 5;
  const int C = s.C, FH = s.FH, V0P = s.V0P, RSP = s.RSP;

  int blk = blockIdx.x;
  const int tj = blk % s.tilesW;
  blk /= s.tilesW;
  const int ti = blk % s.tilesH;
  blk /= s.tilesH;
  const int t = blk % a.nT;
  blk /= a.nT;
  const int hd = blk % a.HD, b = blk / a.HD;
  const int qi = tid / kTW, qj = tid % kTW;  // the thread's query in the tile
  const int gi = ti * kTH + qi, gj = tj * kTW + qj;
  const bool mine = gi < a.nH && gj < a.nW;  // a query of the grid (others only compute sums)
  const int qh = mine ? gi : 0, qw = mine ? gj : 0;  // stride0 = 1
  const int H = a.H, W = a.W, wh = a.wh, ww = a.ws;
  // Footprint pixel (fy, fx) is (FY0 + fy, FX0 + fx) before the bounds rule.
  const int FY0 = ti * kTH + a.o0, FX0 = tj * kTW + a.o0;

  // vid0's footprint, bounds applied (columns past kTW + PS - 1 are staged too: they feed
  // sums no query reads).
  {
    const float* v0 = a.vid0 + b * a.s0.b + hd * a.s0.h + t * a.s0.t;
    for (int e = tid; e < FH * C * kFX; e += kThreads) {
      const int fx = e % kFX, r = e / kFX, c = r % C, fy = r / C;
      const int yy = geo::bound32(FY0 + fy, H, a.reflect), xx = geo::bound32(FX0 + fx, W, a.reflect);
      v0s[fy * V0P + c * kFX + fx] = yy < 0 || xx < 0 ? 0.f : v0[yy * a.s0.y + xx * a.s0.x + c * a.s0.c];
    }
  }

  const geo::Frames fr = geo::frames(t, a.nT, a.wt);
  const int nfwd = static_cast<int>(fr.t_hi - t + 1);  // frames t .. t_hi come first
  const float* v1 = a.vid1 + b * a.s1.b + hd * a.s1.h;
  ThreadList<L2, KM> list;
  list.reset();

  auto step = [&](int n, int u, int& ch, int& cw) { flow_chain_step(a, b, t, qh, qw, n, u, ch, cw); };

  int ch = qh, cw = qw;
  for (int n = 0; n < a.st; ++n) {
    const int u = n < nfwd ? t + n : t - (n - nfwd + 1);  // geo::frame_at
    step(n, u, ch, cw);
    const int dy0 = geo::window_base32(ch, H, 1, a.ws, a.full_ws) - qh;
    const int dx0 = geo::window_base32(cw, W, 1, a.ws, a.full_ws) - qw;

    // The block's box of offsets.
    int m4[4] = {mine ? dy0 : INT_MAX, mine ? -dy0 : INT_MAX, mine ? dx0 : INT_MAX, mine ? -dx0 : INT_MAX};
    block_min4<kThreads / 32>(m4, part, lane, wib);  // its barrier (A): the previous frame's
                                                     // reads of everything are done
    const int DY0 = m4[0], DY1 = -m4[1] + wh - 1, DX0 = m4[2], DX1 = -m4[3] + ww - 1;
    // Per offset row, the columns any query of the tile needs (with random flows, narrower
    // than the box); rows past kMaxRows use the box.
    const bool rows_tracked = DY1 - DY0 < kMaxRows;
    if (rows_tracked) {
      if (tid < kMaxRows) row_lo[tid] = INT_MAX, row_hi[tid] = INT_MIN;
      __syncthreads();
      if (mine)
        for (int i = 0; i < wh; ++i) {
          atomicMin(&row_lo[dy0 - DY0 + i], dx0);
          atomicMax(&row_hi[dy0 - DY0 + i], dx0 + ww - 1);
        }
      __syncthreads();
    }
    const float* vf = v1 + u * a.s1.t;
    // With one chunk, this frame's candidates reach the list in increasing ordinal order
    // (rows, then columns), after every earlier frame's: the cheaper in-order insertion
    // gives the same list. With several, a row's later chunks come after later rows.
    const bool one_chunk = DX1 - DX0 < kDXC;
    auto offer = [&](float d, int32_t o, bool ok) { one_chunk ? list.offer(d, o, ok) : list.offer_any(d, o, ok); };

    for (int xc = DX0; xc <= DX1; xc += kDXC) {
      // Ring row for footprint row fy at step dy: pixel row FY0 + fy + dy, in slot
      // (fy + dy - DY0) mod (FH + 1); column col is pixel column FX0 + xc + col. Threads
      // below 2 * kRWS stage one column each (its bounds resolved once per chunk), every
      // other channel: per value one asynchronous copy and two adds.
      if (xc > DX0) __syncthreads();  // the previous chunk's reads of the ring are done
      const int scol = tid % kRWS, sc0 = tid / kRWS;
      const int sxx = geo::bound32(FX0 + xc + scol, W, a.reflect);
      const int64_t sxo = sxx < 0 ? -1 : sxx * a.s1.x;
      auto stage_row = [&](int rel) {  // rel = fy + dy - DY0
        if (sc0 >= 2) return;
        const int yy = geo::bound32(FY0 + DY0 + rel, H, a.reflect);
        float* d = ring + (rel % (FH + 1)) * RSP + sc0 * kRWS + scol;  // [c][col]
        if (yy < 0 || sxo < 0) {
          for (int c = sc0; c < C; c += 2, d += 2 * kRWS) *d = 0.f;
        } else {
          const float* src = vf + yy * a.s1.y + sxo + sc0 * a.s1.c;
          for (int c = sc0; c < C; c += 2, d += 2 * kRWS, src += 2 * a.s1.c)
            __pipeline_memcpy_async(d, src, sizeof(float));
        }
      };
      for (int r = 0; r < FH; ++r) stage_row(r);
      __pipeline_commit();

      for (int dy = DY0; dy <= DY1; ++dy) {
        __pipeline_wait_prior(0);
        __syncthreads();  // (B) the ring holds rows dy .. dy + FH - 1; the last gather is done
        if (dy < DY1) stage_row(dy - DY0 + FH);  // the next step's new row, into the free slot
        __pipeline_commit();
        // The offset columns of this row and chunk that some query needs: [lo, hi].
        const int lo = max(xc, rows_tracked ? row_lo[dy - DY0] : DX0);
        const int hi = min(xc + kDXC - 1, rows_tracked ? row_hi[dy - DY0] : DX1);
        if (lo > hi) continue;  // (every thread skips alike)
        const int b0 = (lo - xc) / 8, nb = (hi - xc) / 8 - b0 + 1;

        // s(p, (dy, xc + dx)) for the footprint's pixels p and the blocks of 8 offsets
        // columns in [lo, hi]: unit (dxb, fxb, fy) computes fx = 8 fxb + m, dx = 8 dxb + k
        // (m, k < 8), summing its channels in order from 0. dxb varies fastest across
        // lanes, so neighbouring lanes share vid0's loads (broadcast); S3 34.8 ms against
        // 36.6 with fxb fastest.
        for (int un = tid; un < kFXB * FH * nb; un += kThreads) {
          const int dxb = b0 + un % nb, r = un / nb, fxb = r % kFXB, fy = r / kFXB;
          const float* pa = v0s + fy * V0P + fxb * 8;
          const float* pb = ring + ((fy + dy - DY0) % (FH + 1)) * RSP + (fxb + dxb) * 8;
          float acc[8][8];
#pragma unroll
          for (int m = 0; m < 8; ++m)
#pragma unroll
            for (int k = 0; k < 8; ++k) acc[m][k] = 0.f;
#pragma unroll 2
          for (int c = 0; c < C; ++c) {
            float va[8], vb[16];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
              const float4 x = *reinterpret_cast<const float4*>(pa + c * kFX + 4 * h);
              va[4 * h] = x.x, va[4 * h + 1] = x.y, va[4 * h + 2] = x.z, va[4 * h + 3] = x.w;
            }
#pragma unroll
            for (int h = 0; h < 4; ++h) {
              const float4 x = *reinterpret_cast<const float4*>(pb + c * kRWS + 4 * h);
              vb[4 * h] = x.x, vb[4 * h + 1] = x.y, vb[4 * h + 2] = x.z, vb[4 * h + 3] = x.w;
            }
#pragma unroll
            for (int m = 0; m < 8; ++m)
#pragma unroll
              for (int k = 0; k < 8; ++k) acc[m][k] = geo::dist_acc<L2>(acc[m][k], va[m], vb[m + k]);
          }
          float* out = sums + fy * kSFY + dxb * 8 * kFXP + fxb * 8;
#pragma unroll
          for (int k = 0; k < 8; ++k)
#pragma unroll
            for (int h = 0; h < 2; ++h)
              *reinterpret_cast<float4*>(out + k * kFXP + 4 * h) =
                  make_float4(acc[4 * h][k], acc[4 * h + 1][k], acc[4 * h + 2][k], acc[4 * h + 3][k]);
        }
        __syncthreads();  // (C) the sums are written

        // This query's candidates in window row i = dy - dy0 whose offset column dx0 + j
        // lies in [lo, hi], three at a time (three independent chains; ws 9: 3 rounds of 3
        // instead of 5 of 2, S3 30.5 -> 30.0 ms), each summing its PS x PS pixel sums in
        // (pi, pj) order.
        const int i = dy - dy0, y = qh + dy;
        if (mine && i >= 0 && i < wh && y >= 0 && y < H) {
          const int jlo = max(0, lo - dx0), jhi = min(ww, hi + 1 - dx0);
          const float* base = sums + qi * kSFY + qj;
          const int ord0 = (n * wh + i) * ww;
          const bool self = a.remove_self && n == 0 && dy == 0;
          for (int j = jlo; j < jhi; j += 3) {
            const int j1 = min(j + 1, jhi - 1), j2 = min(j + 2, jhi - 1);
            const float* s0 = base + (dx0 + j - xc) * kFXP;
            const float* s1 = base + (dx0 + j1 - xc) * kFXP;
            const float* s2 = base + (dx0 + j2 - xc) * kFXP;
            float d0 = 0.f, d1 = 0.f, d2 = 0.f;
#pragma unroll
            for (int pi = 0; pi < PS; ++pi)
#pragma unroll
              for (int pj = 0; pj < PS; ++pj) {
                d0 += s0[pi * kSFY + pj];
                d1 += s1[pi * kSFY + pj];
                d2 += s2[pi * kSFY + pj];
              }
            const int x0 = qw + dx0 + j, x1 = qw + dx0 + j1, x2 = qw + dx0 + j2;
            offer(d0, ord0 + j, x0 >= 0 && x0 < W && !(self && x0 == qw));
            offer(d1, ord0 + j1, j1 != j && x1 >= 0 && x1 < W && !(self && x1 == qw));
            offer(d2, ord0 + j2, j2 != j1 && x2 >= 0 && x2 < W && !(self && x2 == qw));
          }
        }
      }
    }
  }

  // Emit: walk the chain again for the window starts of the listed frames.
  if (!mine) return;
  const int q = (t * a.nH + gi) * a.nW + gj;
  float* dq = a.dists + b * a.sd[0] + hd * a.sd[1] + q * a.sd[2];
  int32_t* iq = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2];
  const int spf = wh * ww;
  const float pad = L2 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
  for (int m = 0; m < a.K; ++m) {
    dq[m * a.sd[3]] = pad;
    int32_t* e = iq + m * a.si[3];
    e[0] = e[a.si[4]] = e[2 * a.si[4]] = -1;
  }
  ch = qh, cw = qw;
  for (int n = 0; n < a.st; ++n) {
    const int u = n < nfwd ? t + n : t - (n - nfwd + 1);
    step(n, u, ch, cw);
    const int y0 = geo::window_base32(ch, H, 1, a.ws, a.full_ws);
    const int x0 = geo::window_base32(cw, W, 1, a.ws, a.full_ws);
#pragma unroll
    for (int m = 0; m < KM; ++m) {
      const int32_t ord = list.ord[m];
      if (m >= a.K || list.key[m] == kNone || ord / spf != n) continue;
      const int rem = ord - n * spf, i = rem / ww, j = rem - i * ww;
      dq[m * a.sd[3]] = ThreadList<L2, KM>::dist(list.key[m]);
      int32_t* ie = iq + m * a.si[3];
      ie[0] = u;
      ie[a.si[4]] = y0 + i;
      ie[2 * a.si[4]] = x0 + j;
    }
  }
}

std::atomic<bool> enabled{true};  // set_forward_shared_enabled

}  // namespace

void set_forward_shared_enabled(bool on) { enabled = on; }

// Compiled patch sides (the sums a candidate adds are unrolled), each for lists of 10 and 16.
template <bool L2, int KM>
bool launch_ps(const ShArgs& s, int ps, size_t smem, unsigned blocks, cudaStream_t stream) {
  auto go = [&](auto kernel) {
    if (smem > 40 * 1024)
      STNLS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    kernel<<<blocks, kThreads, smem, stream>>>(s);
    check_launch("search_forward_shared_kernel");
    return true;
  };
  switch (ps) {
    case 5: return go(search_forward_shared_kernel<L2, 5, KM>);
    case 7: return go(search_forward_shared_kernel<L2, 7, KM>);
    case 9: return go(search_forward_shared_kernel<L2, 9, KM>);
    default: return false;
  }
}

bool search_forward_shared(const SearchArgs& a, cudaStream_t stream) {
  const SearchParams& p = a.p;
  const SearchShape& sh = a.sh;
  if (!enabled || !register_layouts_apply(a)) return false;
  if (p.stride0 != 1 || p.off_H0 || p.off_W0 || p.off_H1 || p.off_W1) return false;
  if (sh.C % 4 != 0 || !geo::channel_sums(sh.C) || sh.C > 64) return false;
  if (p.ps < 5 || p.ps > 9 || p.ws < 7 || sh.wh != p.ws || sh.ww != p.ws) return false;
  ShArgs s{};
  s.f = thread_args(a);
  s.C = static_cast<int>(sh.C);
  s.FH = kTH + p.ps - 1;
  s.V0P = s.C * kFX + 4;   // kFX and kRWS are multiples of 8: C * columns / 4 units is even,
  s.RSP = s.C * kRWS + 4;  // + 1 unit makes it odd
  s.tilesH = static_cast<int>(ceil_div(sh.nH, kTH));
  s.tilesW = static_cast<int>(ceil_div(sh.nW, kTW));
  const size_t smem = static_cast<size_t>(v0_floats(s) + ring_floats(s) + sum_floats(s)) * sizeof(float);
  if (smem + 1024 > static_cast<size_t>(max_optin_smem())) return false;
  const int64_t blocks = sh.B * sh.HD * sh.T * s.tilesH * s.tilesW;
  if (blocks > INT32_MAX) return false;
  return by_dist(p.dist_type, [&](auto l2) {
    return by_list(sh.K, [&](auto km) {
      return launch_ps<decltype(l2)::value, decltype(km)::value>(s, p.ps, smem, static_cast<unsigned>(blocks), stream);
    });
  });
}

}  // namespace cuda
}  // namespace stnls
