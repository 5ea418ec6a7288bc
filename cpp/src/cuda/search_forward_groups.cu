// CUDA forward of the non-local search for 32 channels per head and ps = 3 (S4's shape),
// in the channel-group summation order (common/geometry.h: a chain per group of 8
// channels over the whole patch, the 4 groups' chains added pairwise). The result is the
// CPU backend's bit for bit.
//
// Why a layout of its own: the row-split layout (search_forward_rows.cu) gives a query
// PS = 3 lanes, one patch row each, plus a fourth that repeats the third so that lane
// pairs share their loads; a quarter of its multiply-adds were that repetition (S4: 1932
// FFMA per query for 1323 needed). Here a query's 4 lanes hold one channel group each of
// the whole patch (9 pixels x 8 channels), so every lane's work counts:
// - frames run one after the other; at step w of a frame the query's window row w (its
//   patches' rows, RW pixels of 32 channels, pixel-major) is staged in shared memory and
//   feeds candidate rows w - d for the patch rows d = 0 .. PS - 1 that exist (the test is
//   warp-uniform: every query of a warp is at the same step); each lane reads a pixel's 8
//   channels of its group in two 16-byte loads;
// - the accumulators of the PS open candidate rows rotate after each step; the row that
//   completes (w - PS + 1) is combined over the 4 lanes by two xor shuffles, (D0 + D1) +
//   (D2 + D3) on every lane, and each lane offers every fourth column of it to a sorted
//   register list of its own, so that the inserts of all 4 lanes run at once (with lane 0
//   offering them all, the inserts were a quarter of S4's instructions, run by 8 of 32
//   lanes); at the end lane 0 merges the other three lists into its own by shuffles (ties
//   by the ordinal, rule 6);
// - one staged row per query (no second slot across frames: a frame's last rows are done
//   before the next frame starts).
// The rows come from the forward's workspace ring where it holds them (pixel-major,
// search_forward_bands.h; copied by the whole warp, 8 lanes per 128-byte pixel), else from
// vid1 (by the query's own lanes: 4-byte copies, the bounds rule per pixel).
//
// Taken when: float, stride1 = dilation = pt = 1, 32 channels per head, ps = 3, a finite
// ws whose window is 5, 7 or 9 columns wide, k in [1, 16], no anchor_self.
#include "cuda/search_forward_groups.h"

#include <cuda_pipeline.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>

#include "common/geometry.h"
#include "cuda/cuda_util.h"
#include "cuda/search_forward_bands.h"
#include "cuda/search_forward_common.cuh"

namespace stnls {
namespace cuda {
namespace {

using detail::SearchArgs;

constexpr int kWarps = 2;                // warps per block (each independent)
// Blocks per SM the registers must allow: 6 caps them at 168 (12 warps per SM, as the
// row-split's), with 24-48 bytes of spills; unbounded the kernel takes 182 (10 warps).
// Not measured yet: A/B both.
constexpr int kMinBlocks = 6;
constexpr int kCV = kBandCV, kPS = 3;    // the variant's channels per head and ps
constexpr int kG = geo::kGroupC;         // channels per group
constexpr int kLanes = kCV / kG;         // lanes per query: one per group
constexpr int kQPW = 32 / kLanes;        // queries per warp
static_assert(kLanes == 4, "the combination below is two xor-shuffle levels");
static_assert(kCV == 32 && kQPW % 4 == 0, "the ring copies: 8 lanes per 128-byte pixel, 4 queries per instruction");

// Floats per query: one staged row of RW pixels, rounded to 4 mod 8: 16-byte aligned, and
// the two queries of an 8-lane phase read 16-byte pieces in distinct bank quads.
__host__ __device__ constexpr int query_floats(int rw) { return (rw * kCV + 4 + 7) / 8 * 8 - 4; }
// A warp's floats: its queries' rows, their window starts (int2 per frame), their frames'
// first pixels in vid1 (a pointer per frame) ...
__host__ __device__ constexpr int wins_offset(int qs) { return (kQPW * qs + 1) / 2 * 2; }
__host__ __device__ constexpr int frames_offset(int qs, int st) { return wins_offset(qs) + 2 * kQPW * st; }
// ... and the ring rows of the warp's queries at the current step (a pointer per query).
__host__ __device__ constexpr int srcs_offset(int qs, int st) { return frames_offset(qs, st) + 2 * kQPW * st; }
__host__ __device__ constexpr int warp_floats(int qs, int st) { return (srcs_offset(qs, st) + 2 * kQPW + 3) / 4 * 4; }

template <bool L2, int WW, int KM>
__global__ void __launch_bounds__(32 * kWarps, kMinBlocks) search_forward_groups_kernel(const ThrArgs a) {
  extern __shared__ __align__(16) float smem[];
  constexpr int RW = WW + kPS - 1;  // pixels of a window row
  constexpr int NCH = RW * kCV / 4;  // 16-byte pieces of a staged row
  const int lane = threadIdx.x & 31, wib = threadIdx.x >> 5;
  const int qi = lane / kLanes, grp = lane - qi * kLanes;
  const bool lead = grp == 0;  // merges the lanes' lists and writes the query's row
  const int64_t g0 = (static_cast<int64_t>(blockIdx.x) * kWarps + wib) * kQPW;
  if (g0 >= a.nq) return;  // whole warps only; no block-wide barrier below
  const bool mine = g0 + qi < a.nq;  // a query of the call (the others never emit)
  int64_t g = mine ? g0 + qi : a.nq - 1;
  if (a.band_nr) {  // the launch's queries: query rows [band_q0, band_q0 + band_nr) of every frame
    const int64_t per = static_cast<int64_t>(a.band_nr) * a.nW, bt = g / per;
    const int rem = static_cast<int>(g - bt * per);
    g = bt * a.nH * a.nW + static_cast<int64_t>(a.band_q0 + rem / a.nW) * a.nW + rem % a.nW;
  }
  float* const rows = smem + static_cast<int64_t>(wib) * warp_floats(a.qs, a.st);
  int2* const wins = reinterpret_cast<int2*>(rows + wins_offset(a.qs)) + qi * a.st;  // window start per frame
  const float** const frames = reinterpret_cast<const float**>(rows + frames_offset(a.qs, a.st)) + qi * a.st;
  const float** const srcs = reinterpret_cast<const float**>(rows + srcs_offset(a.qs, a.st));
  float* const myrow = rows + qi * a.qs;  // [col][c]

  const int b = static_cast<int>(g / (static_cast<int64_t>(a.HD) * a.Q));
  const int hd = static_cast<int>((g / a.Q) % a.HD);
  const int q = static_cast<int>(g % a.Q);
  const int t = q / (a.nH * a.nW);
  const int qh = ((q / a.nW) % a.nH) * a.str0, qw = (q % a.nW) * a.str0;
  const int H = a.H, W = a.W, wh = a.wh, st = a.st;

  // The lane's group of the query patch, [pi][pj][c] (pt = 1).
  float qv[kPS * kPS * kG];
  {
    const float* v0 = a.vid0 + b * a.s0.b + hd * a.s0.h + t * a.s0.t + grp * kG * a.s0.c;
#pragma unroll
    for (int pi = 0; pi < kPS; ++pi) {
      const int yy = geo::bound32(qh + a.o0 + pi - a.offH0, H, a.reflect);
#pragma unroll
      for (int pj = 0; pj < kPS; ++pj) {
        const int xx = geo::bound32(qw + a.o0 + pj - a.offW0, W, a.reflect);
        const bool in = yy >= 0 && xx >= 0;
        const float* p = v0 + (in ? yy * a.s0.y + xx * a.s0.x : 0);
#pragma unroll
        for (int c = 0; c < kG; ++c) qv[(pi * kPS + pj) * kG + c] = in ? p[c * a.s0.c] : 0.f;
      }
    }
  }

  // Window starts of every searched frame (rules 2-4), walked by the query's lead lane as
  // search_forward_thread.cu walks them.
  const geo::Frames fr = geo::frames(t, a.nT, a.wt);
  const int nfwd = static_cast<int>(fr.t_hi - t + 1);  // frames t .. t_hi come first
  auto frame_at = [&](int n) { return n < nfwd ? t + n : t - (n - nfwd + 1); };  // geo::frame_at
  const float* v1 = a.vid1 + b * a.s1.b + hd * a.s1.h;
  if (lead) {
    int ch = qh, cw = qw;
    for (int n = 0; n < st; ++n) {
      flow_chain_step(a, b, t, qh, qw, n, frame_at(n), ch, cw);
      wins[n] = make_int2(geo::window_base32(ch, H, 1, a.ws, a.full_ws), geo::window_base32(cw, W, 1, a.ws, a.full_ws));
      frames[n] = v1 + frame_at(n) * a.s1.t;
    }
  }
  __syncwarp();

  ThreadList<L2, KM> list;
  list.reset();
  const int pw = W + 2 * a.pm_P;  // ring row width in pixels
  for (int n = 0; n < st; ++n) {
    const int2 w0 = wins[n];
    const int xs = w0.y + a.o0 - a.offW1;  // the staged rows' first column
    // acc[d][j]: the lane's group chain of candidate (w - d, j), d = 0 .. PS - 1.
    float acc[kPS][WW];
#pragma unroll
    for (int d = 0; d < kPS; ++d)
#pragma unroll
      for (int j = 0; j < WW; ++j) acc[d][j] = 0.f;
    for (int w = 0; w < wh + kPS - 1; ++w) {
      // Stage window row w. Rows the ring holds are copied by the whole warp together: 8
      // lanes per pixel (128 bytes), four queries' pixels per instruction (4 source lines,
      // where each query's own 4 lanes would touch 8). A row outside the ring is copied by
      // its query's lanes from vid1.
      const int yy = geo::bound32(w0.x + a.o0 - a.offH1 + w, H, a.reflect);
      const bool in_ring = a.pm != nullptr && yy >= a.pm_lo && yy < a.pm_hi && xs >= -a.pm_P && xs + RW <= W + a.pm_P;
      if (lead)
        srcs[qi] = in_ring ? a.pm + (((static_cast<int64_t>(b) * a.HD + hd) * a.nT + frame_at(n)) * a.pm_ring + yy % a.pm_ring) * pw * kCV +
                                 (xs + a.pm_P) * kCV
                           : nullptr;
      __syncwarp();
#pragma unroll
      for (int h = 0; h < kQPW / 4; ++h) {
        const int qq = 4 * h + (lane >> 3), piece = (lane & 7) * 4;
        const float* const src = srcs[qq];
        float* const dst = rows + qq * a.qs + piece;
        if (src != nullptr)
#pragma unroll
          for (int px = 0; px < RW; ++px) __pipeline_memcpy_async(dst + px * kCV, src + piece + px * kCV, 16);
      }
      if (!in_ring) {
        float* const d0 = myrow + grp * 4;
#pragma unroll 1
        for (int m = 0; m < NCH / kLanes; ++m) {
          const int k = kLanes * m + grp, px = k / (kCV / 4), c0 = (k - px * (kCV / 4)) * 4;
          const int xx = geo::bound32(xs + px, W, a.reflect);
          float* dk = d0 + m * kLanes * 4;
          if (yy < 0 || xx < 0) {
            dk[0] = dk[1] = dk[2] = dk[3] = 0.f;
          } else {
            const float* src = frames[n] + yy * a.s1.y + xx * a.s1.x + c0 * a.s1.c;
#pragma unroll
            for (int e = 0; e < 4; ++e) __pipeline_memcpy_async(dk + e, src + e * a.s1.c, sizeof(float));
          }
        }
      }
      __pipeline_commit();
      __pipeline_wait_prior(0);
      __syncwarp();

      // Patch row d of candidate row w - d (where that row exists): pixel px is tap pj of
      // candidate px - pj, its group's channels in order.
#pragma unroll
      for (int d = 0; d < kPS; ++d) {
        if (w - d < 0 || w - d >= wh) continue;  // warp-uniform
#pragma unroll
        for (int px = 0; px < RW; ++px) {
          float x[kG];
          load_px<kG>(x, myrow + px * kCV + grp * kG);
#pragma unroll
          for (int pj = 0; pj < kPS; ++pj) {
            const int j = px - pj;
            if (j < 0 || j >= WW) continue;
#pragma unroll
            for (int c = 0; c < kG; ++c) acc[d][j] = geo::dist_acc<L2>(acc[d][j], qv[(d * kPS + pj) * kG + c], x[c]);
          }
        }
      }
      __syncwarp();  // the row's reads are done before the next step stages over it

      // Candidate row i = w - (PS - 1) is complete: its groups summed pairwise, (D0 + D1) +
      // (D2 + D3) on every lane (an add is commutative bit for bit). Each of the query's
      // lanes offers the columns j = grp, grp + 4, ... to a list of its own (in increasing
      // ordinal order), so that all lanes insert at once; the lists merge at the end.
      const int i = w - (kPS - 1);
      if (i >= 0) {
        float dist[WW];
#pragma unroll
        for (int j = 0; j < WW; ++j) {
          float v = acc[kPS - 1][j];
          v = v + __shfl_xor_sync(0xffffffffu, v, 1);
          dist[j] = v + __shfl_xor_sync(0xffffffffu, v, 2);
        }
        const int y = w0.x + i;
        if (mine && y >= 0 && y < H) {
#pragma unroll
          for (int jj = 0; jj < (WW + kLanes - 1) / kLanes; ++jj) {
            const int j = grp + kLanes * jj, x = w0.y + j;
            float v = dist[kLanes * jj];  // dist[j], selected without indexing by a runtime j
#pragma unroll
            for (int e = 1; e < kLanes; ++e)
              if (kLanes * jj + e < WW && grp == e) v = dist[kLanes * jj + e];
            const bool ok = j < WW && x >= 0 && x < W && !(a.remove_self && n == 0 && y == qh && x == qw);
            list.offer(v, (n * wh + i) * WW + j, ok);
          }
        }
      }
#pragma unroll
      for (int d = kPS - 1; d > 0; --d)
#pragma unroll
        for (int j = 0; j < WW; ++j) acc[d][j] = acc[d - 1][j];
#pragma unroll
      for (int j = 0; j < WW; ++j) acc[0][j] = 0.f;
    }
  }

  // The lead merges the other lanes' lists into its own (ties by the ordinal, rule 6).
#pragma unroll
  for (int m = 0; m < KM; ++m)
#pragma unroll
    for (int e = 1; e < kLanes; ++e) {
      const uint32_t k = __shfl_down_sync(0xffffffffu, list.key[m], e);
      const int32_t o = __shfl_down_sync(0xffffffffu, list.ord[m], e);
      if (lead) list.take(k, o);
    }
  if (!mine || !lead) return;
  emit_list<WW>(a, list, b, hd, q, wh, wins, frame_at);
}

std::atomic<bool> enabled{true};  // set_forward_groups_enabled

// Whether the kernel takes the call, and its shared memory per block.
bool takes(const SearchArgs& a, size_t* smem) {
  const SearchShape& sh = a.sh;
  if (!enabled || !register_layouts_apply(a)) return false;
  if (sh.C != kCV || a.p.ps != kPS || (sh.ww != 5 && sh.ww != 7 && sh.ww != 9)) return false;
  const int qs = query_floats(static_cast<int>(sh.ww) + kPS - 1);
  *smem = static_cast<size_t>(kWarps) * warp_floats(qs, static_cast<int>(sh.st)) * sizeof(float);
  return *smem <= static_cast<size_t>(max_optin_smem()) && ceil_div(sh.B * sh.HD * sh.Q, int64_t{kWarps * kQPW}) <= INT32_MAX;
}

template <bool L2, int KM>
void launch(const ThrArgs& f, int ww, size_t smem, cudaStream_t stream) {
  by_width(ww, [&](auto w) {
    auto kernel = search_forward_groups_kernel<L2, decltype(w)::value, KM>;
    if (smem > 48 * 1024)
      STNLS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    const int64_t blocks = ceil_div(f.nq, static_cast<int64_t>(kWarps * kQPW));
    kernel<<<static_cast<unsigned>(blocks), 32 * kWarps, smem, stream>>>(f);
    check_launch("search_forward_groups_kernel");
    return true;
  });
}

}  // namespace

void set_forward_groups_enabled(bool on) { enabled = on; }

size_t search_forward_groups_workspace_size(const SearchArgs& a) {
  size_t smem = 0;
  return takes(a, &smem) ? band_plan(a).bytes() : 0;
}

bool search_forward_groups(const SearchArgs& a, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  size_t smem = 0;
  if (!takes(a, &smem)) return false;
  const SearchShape& sh = a.sh;
  ThrArgs f = thread_args(a);
  f.nq = sh.B * sh.HD * sh.Q;
  f.Q = static_cast<int>(sh.Q);
  f.qs = query_floats(static_cast<int>(sh.ww) + kPS - 1);
  const int ww = static_cast<int>(sh.ww);
  auto run = [&](const ThrArgs& g, cudaStream_t s) {
    by_dist(a.p.dist_type, [&](auto l2) {
      return by_list(sh.K, [&](auto km) {
        launch<decltype(l2)::value, decltype(km)::value>(g, ww, smem, s);
        return true;
      });
    });
  };
  const BandPlan plan = workspace != nullptr ? band_plan(a) : BandPlan{};
  if (plan.ring == 0) {
    run(f, stream);
    return true;
  }
  check_workspace(plan, workspace, workspace_bytes);
  run_in_bands(a, plan, static_cast<float*>(workspace), f, stream, run);
  return true;
}

}  // namespace cuda
}  // namespace stnls
