// CUDA forward of the non-local search for patches too large for one thread's registers
// but not for PS threads' (SPEC.md rules 1-7, computing exactly what the CPU backend
// computes: same geometry, same summation order (geo::channel_sums; one fused multiply-add
// per term), same selection order).
//
// Why a third layout: with a warp per query (search_forward.cu), S4's shape (ps = 3, 32
// channels, ws = 7) ran the general path at about 12.4 k warp instructions per query for
// 2.6 k of distance arithmetic, and S3's (ps = 7, 16 channels, ws = 9) spent 19 other
// instructions per 48 FFMA plus its staging. The thread-per-query layout cannot hold their
// query patches (288 and 784 floats) in registers. Here PS neighbouring lanes own a query
// (and with pixel pairs one more, lanes_per_query), lane pi holding row pi of its patch
// (PS * CV floats):
// - the candidates of one window row (WW of them) pass down the lanes: lane pi adds the
//   terms of patch row pi (window row i + pi) to candidate row i's WW sums, then hands
//   them to lane pi + 1 (a shuffle), which adds row pi + 1 at the next step. A candidate's
//   pixels therefore still arrive in (pi, pj) order, and its sum is bitwise the CPU's;
// - at step s, lane pi works on candidate row n = s - pi (rows counted over the searched
//   frames in canonical order, wh per frame), so all lanes of a query read window row
//   r = s - F * wh of frame F = s / wh, except that in a frame's first PS - 1 steps some
//   read one of the previous frame's last PS - 1 rows (window row r + wh of frame F - 1):
//   two staged rows (slots) per query and step;
// - each pixel a lane reads feeds every candidate of its row whose patch covers it (up to
//   PS), one shared-memory load per value, or per two pixels (row_pitch);
// - lane PS - 1 completes a candidate row per step and offers it to its sorted register
//   list (ThreadList), in increasing ordinal order (rule 6).
// Each warp (QPW queries, consecutive in the query grid) stages its own rows with
// asynchronous copies, channel-major per row ([c][col], RP floats per channel), its lanes
// in groups of RW that each copy one query's row segment of a channel per instruction; a
// query's rows start RP floats (mod 32) after the previous query's, so that the queries'
// loads (distinct queries, same place) and the groups' copies (neighbouring queries, all
// of a segment) hit distinct banks.
//
// Taken when: float, stride1 = dilation = pt = 1, a finite ws whose window is WW columns
// wide (a compiled width: 5, 7, 9) and at least PS - 1 rows high, k in [1, 16], no
// anchor_self, the channels per head and ps of a compiled variant (launch_variant), and the
// thread-per-query layout does not take the call.
#include "cuda/search_forward_rows.h"

#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>

#include "common/geometry.h"
#include "cuda/cuda_util.h"
#include "cuda/search_forward_common.cuh"

namespace stnls {
namespace cuda {
namespace {

using detail::SearchArgs;

constexpr int kRowWarps = 2;  // warps per block (each independent)
constexpr int kRowThreads = 32 * kRowWarps;

// Floats between a staged row's channels: RW, or RW + 1 where RW is 1 mod 4. There the
// distance loop reads two pixels per 8-byte load (the pad column is never used), queries
// start RP floats (mod 32) apart, RP / 2 odd, so distinct queries' pairs fall in distinct
// bank pairs, and a query gets an even number of lanes (lanes_per_query).
__host__ __device__ constexpr int row_pitch(int rw) { return rw % 4 == 1 ? rw + 1 : rw; }

// Lanes per query: PS, or with pixel pairs PS rounded up to even, the extra lane repeating
// lane PS - 1's loads and offering nothing. Lane pairs (2i, 2i + 1) then load the same
// address, and the shared memory returns such an 8-byte load in one wavefront instead of
// two (ncu, S4: 461 wavefronts per query for the distance loads, against 835 as 4-byte
// loads and 766 as 8-byte loads with 3 lanes per query).
__host__ __device__ constexpr int lanes_per_query(int ps, int rw) { return row_pitch(rw) > rw ? ps + (ps & 1) : ps; }

// Floats between a query's two slots beyond the first slot's SS, with pixel pairs: in a
// frame's first PS - 1 steps (and the sweep's last PS - 1 steps) some of a query's lanes
// read slot 0 and some slot 1, so a warp's load asks for 2 * QPW pairs. Slot 1 starts this
// many floats later, the least shift that keeps all of them in distinct bank pairs
// (queries start RP / 2 pairs apart mod 16). S4 without it: 701 distance-load wavefronts
// per query instead of 461, 4.69 ms instead of 4.59. With 4-byte loads the same rule cut
// S4's wavefronts from 835 to 662 yet measured slower (4.79 -> 4.86 ms; S3 on the
// row-split 54.9 -> 56.7), so those variants keep slot 1 right after slot 0.
__host__ __device__ constexpr int slot1_shift(int rw, int qpw) {
  if (row_pitch(rw) == rw) return 0;
  const int u = row_pitch(rw) / 2;
  for (int d = 1; d < 16; ++d) {
    bool ok = 2 * qpw <= 16;
    for (int i = 0; i < qpw; ++i)
      for (int j = 0; j < qpw; ++j) ok = ok && ((u * (i - j) + d) % 16 + 16) % 16 != 0;
    if (ok) return 2 * d;
  }
  return 0;
}

// Floats of one warp's shared memory: QPW queries' staged rows (qs floats each), then
// their window starts (QPW * st int2), then their frames' first pixels in vid1 (QPW * st
// pointers).
__host__ __device__ constexpr int wins_offset(int qpw, int qs) { return (qpw * qs + 1) / 2 * 2; }
__host__ __device__ constexpr int frames_offset(int qpw, int qs, int st) { return wins_offset(qpw, qs) + 2 * qpw * st; }
__host__ __device__ constexpr int warp_floats(int qpw, int qs, int st) { return (frames_offset(qpw, qs, st) + 2 * qpw * st + 3) / 4 * 4; }

template <bool L2, int CV, int PS, int WW, int KM>
__global__ void __launch_bounds__(kRowThreads) search_forward_rows_kernel(const ThrArgs a) {
  extern __shared__ __align__(16) float smem[];
  constexpr int RW = WW + PS - 1;    // pixels of a window row
  constexpr int LQ = lanes_per_query(PS, RW);
  constexpr int QPW = 32 / LQ;       // queries per warp
  constexpr int RP = row_pitch(RW);  // floats between a staged row's channels
  constexpr int NP = RP > RW ? 2 : 1;  // pixels per shared load in the distance loop
  constexpr int SS = CV * RP;        // floats of one staged row
  constexpr int S1 = SS + slot1_shift(RW, QPW);  // slot 1's offset in a query's rows
  constexpr int G = 32 / RW;         // staging: groups of RW lanes, one row segment each
  constexpr bool kCS = geo::channel_sums(CV);
  // Two pixels' chains run side by side; each starts from 0 only with channel sums.
  static_assert(NP == 1 || kCS, "pixel pairs need the channel-sum order");
  const int lane = threadIdx.x & 31, wib = threadIdx.x >> 5;
  const bool live = lane < QPW * LQ;  // lanes past the warp's last query own none (they still stage)
  const int qi = live ? lane / LQ : 0, li = lane - (lane / LQ) * LQ;
  const int pi = li < PS ? li : PS - 1;  // patch row; the lane past PS repeats PS - 1
  const bool lead = li == PS - 1;        // the lane that offers and writes the query's row
  const int64_t g0 = (static_cast<int64_t>(blockIdx.x) * kRowWarps + wib) * QPW;
  if (g0 >= a.nq) return;  // whole warps only; no block-wide barrier below
  const bool mine = live && g0 + qi < a.nq;               // a query of the call (the others never emit)
  const int64_t g = mine ? g0 + qi : a.nq - 1;            // lanes without one repeat the last query
  float* rows = smem + static_cast<int64_t>(wib) * warp_floats(QPW, a.qs, a.st);
  int2* const all_wins = reinterpret_cast<int2*>(rows + wins_offset(QPW, a.qs));  // [query][frame]
  const float** const all_frames = reinterpret_cast<const float**>(rows + frames_offset(QPW, a.qs, a.st));
  int2* wins = all_wins + qi * a.st;  // window start per frame
  float* myrows = rows + qi * a.qs;  // [slot][c][col]
  const int cg = lane / RW, cpx = lane - cg * RW;  // staging: the lane's group and pixel

  const int b = static_cast<int>(g / (static_cast<int64_t>(a.HD) * a.Q));
  const int hd = static_cast<int>((g / a.Q) % a.HD);
  const int q = static_cast<int>(g % a.Q);
  const int t = q / (a.nH * a.nW);
  const int qh = ((q / a.nW) % a.nH) * a.str0, qw = (q % a.nW) * a.str0;
  const int H = a.H, W = a.W, wh = a.wh, st = a.st;

  // Row pi of the query patch in registers, [pj][c] (pt = 1).
  float qv[PS * CV];
  {
    const float* v0 = a.vid0 + b * a.s0.b + hd * a.s0.h + t * a.s0.t;
    const int yy = geo::bound32(qh + a.o0 + pi - a.offH0, H, a.reflect);
#pragma unroll
    for (int pj = 0; pj < PS; ++pj) {
      const int xx = geo::bound32(qw + a.o0 + pj - a.offW0, W, a.reflect);
      const bool in = yy >= 0 && xx >= 0;
      const float* p = v0 + (in ? yy * a.s0.y + xx * a.s0.x : 0);
#pragma unroll
      for (int c = 0; c < CV; ++c) qv[pj * CV + c] = in ? p[c * a.s0.c] : 0.f;
    }
  }

  // Window starts of every searched frame (rules 2-4): lane 0 of each query walks the flow
  // chain as search_forward_thread.cu does (forward frames chain from t, backward frames
  // restart at the query).
  const geo::Frames fr = geo::frames(t, a.nT, a.wt);
  const int nfwd = static_cast<int>(fr.t_hi - t + 1);  // frames t .. t_hi come first
  auto frame_at = [&](int n) { return n < nfwd ? t + n : t - (n - nfwd + 1); };  // geo::frame_at
  const float* v1 = a.vid1 + b * a.s1.b + hd * a.s1.h;
  if (live && li == 0) {
    int ch = qh, cw = qw;
    for (int n = 0; n < st; ++n) {
      flow_chain_step(a, b, t, qh, qw, n, frame_at(n), ch, cw);
      wins[n] = make_int2(geo::window_base32(ch, H, 1, a.ws, a.full_ws), geo::window_base32(cw, W, 1, a.ws, a.full_ws));
      all_frames[qi * st + n] = v1 + frame_at(n) * a.s1.t;
    }
  }
  if (NP == 2) {  // the pad columns, never copied nor used, read as zeros
    for (int i = lane; i < QPW * 2 * CV; i += 32) rows[(i / (2 * CV)) * a.qs + (i / CV) % 2 * (S1 - SS) + (i % (2 * CV)) * RP + RW] = 0.f;
  }
  __syncwarp();

  ThreadList<L2, KM> list;
  list.reset();
  float acc[WW];
#pragma unroll
  for (int j = 0; j < WW; ++j) acc[j] = 0.f;
  const int ncr = st * wh;  // candidate rows of all searched frames
  for (int s = 0; s < ncr + PS - 1; ++s) {
    const int F = s / wh, r = s - F * wh;
    // Stage window row r of frame F (slot 0) and, in a frame's first PS - 1 steps, row
    // r + wh of frame F - 1 (slot 1), for all the warp's queries at once: the lanes form G
    // groups of RW, and group cg copies pixel cpx of query j0 + cg's row, channel by
    // channel, so that one copy instruction reads G whole row segments. (Each query's
    // own PS lanes copying its row made every instruction gather from all QPW queries'
    // rows and read each segment in PS instructions: 448 of S4's 707 shared wavefronts per
    // query were that excess.)
    if (lane < G * RW) {
#pragma unroll
      for (int slot = 0; slot < 2; ++slot) {
        const int f = F - slot;
        if (slot == 0 ? F >= st : (F < 1 || r >= PS - 1)) continue;
        // Not unrolled: an unrolled copy per query group made the loop body larger than
        // the instruction cache holds (S4: 4968 SASS lines, 8% of the stalls waiting for
        // instructions; none rolled) and held 186 registers; rolled, 168 and 10 warps per SM
        // instead of 8 (S4 4.58 -> 4.52 ms). Rolling the slot and channel loops as well
        // measured slower (4.73, 4.63).
#pragma unroll 1
        for (int j0 = 0; j0 < QPW; j0 += G) {
          const int qj = j0 + cg;
          if (qj >= QPW) continue;
          const int2 w0 = all_wins[qj * st + f];
          const int yy = geo::bound32(w0.x + a.o0 - a.offH1 + r + slot * wh, H, a.reflect);
          const int xx = geo::bound32(w0.y + a.o0 - a.offW1 + cpx, W, a.reflect);
          float* d = rows + qj * a.qs + slot * S1 + cpx;
          if (yy < 0 || xx < 0) {
#pragma unroll
            for (int c = 0; c < CV; ++c) d[c * RP] = 0.f;
          } else {
            const float* src = all_frames[qj * st + f] + yy * a.s1.y + xx * a.s1.x;
#pragma unroll
            for (int c = 0; c < CV; ++c) __pipeline_memcpy_async(d + c * RP, src + c * a.s1.c, sizeof(float));
          }
        }
      }
    }
    __pipeline_commit();
    __pipeline_wait_prior(0);
    __syncwarp();

    // Patch row pi's terms of candidate row n = s - pi (a lane outside 0 <= n < ncr
    // computes on whatever slot 0 holds and its sums are never offered).
    const int n = s - pi;
    const bool valid = live && n >= 0 && n < ncr;
    const int fn = valid ? n / wh : F;
    const float* base = myrows + (fn == F ? 0 : S1);
    if (pi == 0) {
#pragma unroll
      for (int j = 0; j < WW; ++j) acc[j] = 0.f;
    }
    // Pixel px is tap pj of candidate px - pj: its channel chain for that candidate is
    // s[u][pj] (u = px - p0; geo::channel_sums; a compile-time choice here). With pixel
    // pairs the two pixels' chains interleave over c, and each candidate still adds its
    // pixel sums in pj order.
#pragma unroll
    for (int p0 = 0; p0 < RW; p0 += NP) {
      float s[NP][PS];
#pragma unroll
      for (int u = 0; u < NP; ++u) {
#pragma unroll
        for (int pj = 0; pj < PS; ++pj) {
          const int j = p0 + u - pj;
          s[u][pj] = j >= 0 && j < WW ? geo::pixel_start(kCS, acc[j]) : 0.f;
        }
      }
#pragma unroll
      for (int c = 0; c < CV; ++c) {
        float x[NP];
        if constexpr (NP == 2) {
          const float2 v = *reinterpret_cast<const float2*>(base + c * RP + p0);
          x[0] = v.x, x[1] = v.y;
        } else {
          x[0] = base[c * RP + p0];
        }
#pragma unroll
        for (int u = 0; u < NP; ++u) {
#pragma unroll
          for (int pj = 0; pj < PS; ++pj) {
            const int j = p0 + u - pj;
            if (j >= 0 && j < WW) s[u][pj] = geo::dist_acc<L2>(s[u][pj], qv[pj * CV + c], x[u]);
          }
        }
      }
#pragma unroll
      for (int u = 0; u < NP; ++u) {
#pragma unroll
        for (int pj = 0; pj < PS; ++pj) {
          const int j = p0 + u - pj;
          if (j >= 0 && j < WW) acc[j] = geo::pixel_end(kCS, acc[j], s[u][pj]);
        }
      }
    }
    __syncwarp();  // the slots' reads are done before the next step stages over them

    if (valid && lead) {
      // Candidate row n is complete: offer its real candidates (rule 4; remove_self in t).
      const int i = n - fn * wh;
      const int2 w0 = wins[fn];
      const int y = w0.x + i;
      if (y >= 0 && y < H) {
#pragma unroll
        for (int j = 0; j < WW; ++j) {
          const int x = w0.y + j;
          const bool ok = x >= 0 && x < W && !(a.remove_self && fn == 0 && y == qh && x == qw);
          list.offer(acc[j], n * WW + j, ok);
        }
      }
    }
    // Hand the sums down: lane pi + 1 adds patch row pi + 1 to them at the next step.
#pragma unroll
    for (int j = 0; j < WW; ++j) acc[j] = __shfl_up_sync(0xffffffffu, acc[j], 1);
  }

  if (!mine || !lead) return;
  emit_list<WW>(a, list, b, hd, q, wh, wins, frame_at);
}

// Compiled variants: channels per head and patch side (a patch row, PS * CV floats, stays
// in registers), each for window widths 5, 7 and 9.
template <bool L2, int CV, int PS, int KM>
bool launch_ww(const ThrArgs& f, int ww, cudaStream_t stream) {
  auto go = [&](auto kernel) {
    ThrArgs g = f;
    // A query's floats: its two slots, rounded up to RP mod 32 (banks, see the top).
    const int rw = ww + PS - 1, rp = row_pitch(rw), qpw = 32 / lanes_per_query(PS, rw);
    const int two = 2 * CV * rp + slot1_shift(rw, qpw);
    g.qs = two + ((rp - two) % 32 + 32) % 32;
    const size_t smem = static_cast<size_t>(kRowWarps) * warp_floats(qpw, g.qs, g.st) * sizeof(float);
    if (smem > static_cast<size_t>(max_optin_smem())) return false;  // very many frames: the warp kernels take it
    if (smem > 48 * 1024)
      STNLS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    const int64_t blocks = ceil_div(g.nq, static_cast<int64_t>(kRowWarps) * qpw);
    if (blocks > INT32_MAX) return false;
    kernel<<<static_cast<unsigned>(blocks), kRowThreads, smem, stream>>>(g);
    check_launch("search_forward_rows_kernel");
    return true;
  };
  return by_width(ww, [&](auto w) { return go(search_forward_rows_kernel<L2, CV, PS, decltype(w)::value, KM>); });
}

// Channels per head and ps; false (nothing launched) for any other. (32 channels with
// ps 3, where this layout began, sum in channel groups now: search_forward_groups.cu.)
template <bool L2, int KM>
bool launch_variant(const ThrArgs& f, int C, int ps, int ww, cudaStream_t stream) {
  if (ps == 7 && C == 16) return launch_ww<L2, 16, 7, KM>(f, ww, stream);
  return false;
}

std::atomic<bool> enabled{true};  // set_forward_rows_enabled

}  // namespace

void set_forward_rows_enabled(bool on) { enabled = on; }

bool search_forward_rows(const SearchArgs& a, cudaStream_t stream) {
  const SearchShape& sh = a.sh;
  if (!enabled || !register_layouts_apply(a)) return false;
  if (sh.wh < a.p.ps - 1) return false;  // a step would need rows of three frames
  ThrArgs f = thread_args(a);
  f.nq = sh.B * sh.HD * sh.Q;
  f.Q = static_cast<int>(sh.Q);
  const int C = static_cast<int>(sh.C), ps = a.p.ps, ww = static_cast<int>(sh.ww);
  return by_dist(a.p.dist_type, [&](auto l2) {
    return by_list(sh.K, [&](auto km) { return launch_variant<decltype(l2)::value, decltype(km)::value>(f, C, ps, ww, stream); });
  });
}

}  // namespace cuda
}  // namespace stnls
