// CUDA forward of the non-local search for small patches and windows: one thread per
// query (SPEC.md rules 1-7, computing exactly what the CPU backend computes: same
// geometry, same summation order (geo::channel_sums; one fused multiply-add per term), same
// selection order).
//
// Why a second layout: with a warp per query (search_forward.cu), a query of S2's shape
// (ws = 5, ps = 3, 8 channels per head) spent about 3.6 k of its 3.9 k warp instructions
// on per-query work spread over the lanes (staging, the flow chain, the warp top-k
// merges) and only 281 on the distances; here it takes about 920 (281 of them FFMA), and
// S2 runs in 0.29 ms instead of 1.19 on an H200. A thread owns a query:
// - the query patch (ps * ps * C values) lives in its registers;
// - it streams its window's pixels row by row, each pixel loaded once, into the
//   accumulators of every candidate whose patch covers it (a window row's candidates are
//   ps rows of WW accumulators, rotated as the rows pass). A candidate's pixels still
//   arrive in (pi, pj) order, so the sums are bitwise those of the CPU;
// - its best KM candidates sit in a sorted register list of 32-bit order keys and
//   ordinals (ThreadList), so there is no warp-wide selection.
// A block owns a kQH x kQW tile of the query grid in one frame. Per searched frame it walks
// its threads' flow chains, takes the union box of their windows (patch margins
// included), and stages that box once in shared memory, pixel-major ([row][col][c], with
// the channel groups placed by group_at), with the bounds rule already applied; every
// thread then reads its window from it. When the box does not fit (flows that scatter the
// tile's windows far apart), each thread's own window rectangle is staged instead, as many
// at a time as fit: same values, same order, more rounds.
//
// Taken when: float, stride1 = dilation = pt = 1, a finite ws whose window is WW columns
// wide (a compiled width: 5, 7, 9), k in [1, 16], no anchor_self, and the channels per head
// and ps of a compiled variant (launch_variant). Everything else runs the warp-per-query
// kernels.
#include "cuda/search_forward_thread.h"

#include <cuda_runtime.h>

#include <algorithm>
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

constexpr int kQH = 8, kQW = 16;       // block tile of the query grid
constexpr int kThreads = kQH * kQW;
constexpr int kWarps = kThreads / 32;
// Shared memory for one frame's box: the share of the SM that the blocks the registers
// allow leave to each block, at least 48 KB (GPUs whose SMs hold fewer blocks of that size
// keep the 48 KB box). On H100/H200, 54.9 KB with four blocks (1756 pixels of 8 channels):
// with 48 KB (1536 pixels), one S2 block in about 1600 missed the union of its windows
// four frames away under random 2 px flows, fell back to thread-by-thread rounds and,
// late in the grid, cost the whole kernel 8 % (through torch on the benchmark's seed: 0.262
// ms with 48 KB, 0.242 with 54.9 KB).
constexpr size_t kBoxMinBytes = 48 * 1024;
// The kernel's static shared memory (`part`, `wy`, `wx`), which shares the SM with the box.
constexpr size_t kStaticBytes = sizeof(int) * (kWarps * 4 + 2 * kThreads);

// Where channel c's group of 4 lies in a staged pixel of rectangle row `row` (floats from
// the pixel's start). A warp's lanes read pixels of scattered windows, 16 bytes at a time
// and 8 lanes per shared-memory wavefront; with 8 channels (32-byte pixels) a pixel's
// first 16 bytes fall in one of only 4 of the 8 bank groups. Odd rows keep their pixels'
// two halves swapped, so that lanes reading different rows spread over all 8. The swap is
// per row, not per pixel: a reader keeps two pointers per window (the halves of its first
// row) and constant offsets from them (a per-pixel swap cost hundreds of bytes of spills).
template <int CV>
__host__ __device__ constexpr int group_at(int row, int c) {
  return CV == 8 ? c ^ ((row & 1) << 2) : c;
}

// Distances of one query's window in frame n (window start (y0, x0), WW x WW candidates:
// a finite ws makes the window as tall as it is wide) from a staged rectangle in shared
// memory (the window's first pixel at row row0, column col0; rows of `pitch` pixels, pixels
// of CV floats laid out by group_at), offered to the list. Window row r feeds candidate
// rows r - pi, pi < PS, whose accumulators rotate through acc[row % PS]; each pixel is
// loaded once and a candidate's pixels arrive in (pi, pj) order. Every loop is unrolled
// with compile-time bounds, so which accumulators a pixel feeds is known when compiling:
// no branch per row and patch row, and the multiply-adds of neighbouring pixels can
// interleave.
template <bool L2, int CV, int PS, int WW, int KM>
__device__ __forceinline__ void sweep_window(const float* rect, int row0, int col0, int pitch, int n, int y0, int x0,
                                             int qh, int qw, int H, int W, bool remove_self,
                                             const float (&qv)[PS * PS * CV],
                                             ThreadList<L2, KM>& list) {
  constexpr int WH = WW;
  // Which candidates are real ones (rule 4: inside the frame; remove_self in frame t).
  unsigned xok = 0;
#pragma unroll
  for (int j = 0; j < WW; ++j) xok |= (x0 + j >= 0 && x0 + j < W) ? 1u << j : 0u;
  const bool self_here = n == 0 && remove_self;
  float acc[PS][WW];
#pragma unroll
  for (int p = 0; p < PS; ++p)
#pragma unroll
    for (int j = 0; j < WW; ++j) acc[p][j] = 0.f;
  // Where the window's first row keeps channels 0-3 (`even`) and 4-7 (`odd`): group_at of
  // row0; rows r further down swap them on odd r.
  const float* first = rect + (row0 * pitch + col0) * CV;
  const float* even = first + group_at<CV>(row0, 0);
  const float* odd = first + group_at<CV>(row0, 4);
#pragma unroll
  for (int r = 0; r < WH + PS - 1; ++r) {
    const int ph = r % PS;
    // Channels 0-3 and 4-7 of the row's pixels: the row's parity is row0's, flipped on odd
    // r (with 8 channels only: other widths keep their groups in place).
    const bool flip = CV == 8 && (r & 1);
    const float* g0 = (flip ? odd : even) + r * pitch * CV;
    const float* g1 = (flip ? even : odd) + r * pitch * CV;
#pragma unroll
    for (int s = 0; s < WW + PS - 1; ++s) {
      float px[CV];
#pragma unroll
      for (int c = 0; c < CV; c += 4) {
        const float4 x = *reinterpret_cast<const float4*>((c == 4 ? g1 : c == 0 ? g0 : g0 + c) + s * CV);
        px[c] = x.x, px[c + 1] = x.y, px[c + 2] = x.z, px[c + 3] = x.w;
      }
#pragma unroll
      for (int pi = 0; pi < PS; ++pi) {
        const int i = r - pi;
        if (i < 0 || i >= WH) continue;
#pragma unroll
        for (int pj = 0; pj < PS; ++pj) {
          const int j = s - pj;
          if (j < 0 || j >= WW) continue;
          float& ac = acc[(ph - pi + PS) % PS][j];
          constexpr bool kCS = geo::channel_sums(CV);  // the summation order
          float sc = geo::pixel_start(kCS, ac);
#pragma unroll
          for (int c = 0; c < CV; ++c) sc = geo::dist_acc<L2>(sc, qv[(pi * PS + pj) * CV + c], px[c]);
          ac = geo::pixel_end(kCS, ac, sc);
        }
      }
    }
    // Candidate row r - (PS - 1) has all its terms.
    const int i = r - (PS - 1);
    if (i >= 0) {
      float(&done)[WW] = acc[(ph + 1) % PS];
      const int y = y0 + i;
      if (y >= 0 && y < H) {
        const int ord0 = (n * WH + i) * WW;
#pragma unroll
        for (int j = 0; j < WW; ++j) {
          const bool ok = ((xok >> j) & 1u) && !(self_here && y == qh && x0 + j == qw);
          list.offer(done[j], ord0 + j, ok);
        }
      }
#pragma unroll
      for (int j = 0; j < WW; ++j) done[j] = 0.f;
    }
  }
}

// Blocks per SM the registers must allow: four (128 registers each) while the values a
// thread keeps live (query patch, accumulators, list) stay within 107 registers, else
// three (168). S2's variant (8 channels, ps = 3, ws = 5, k <= 10: 72 + 15 + 20) spills 68
// bytes at four blocks and runs 0.320 -> 0.297 ms; with a 16-entry list or ws = 7 it spilt
// 0.5-1.3 KB, hence the cut.
constexpr int kMinBlocks(int CV, int PS, int WW, int KM) { return PS * PS * CV + PS * WW + 2 * KM <= 107 ? 4 : 3; }

template <bool L2, int CV, int PS, int WW, int KM>
__global__ void __launch_bounds__(kThreads, kMinBlocks(CV, PS, WW, KM)) search_forward_thread_kernel(const ThrArgs a) {
  extern __shared__ __align__(16) float box[];
  __shared__ int part[kWarps][4];  // per warp: min y0, max y0, min x0, max x0
  __shared__ int wy[kThreads], wx[kThreads];  // each thread's window start in this frame

  const int tid = threadIdx.x, lane = tid & 31, wib = tid >> 5;
  int blk = blockIdx.x;
  const int tj = blk % a.tilesW;
  blk /= a.tilesW;
  const int ti = blk % a.tilesH;
  blk /= a.tilesH;
  const int t = blk % a.nT;
  blk /= a.nT;
  const int hd = blk % a.HD, b = blk / a.HD;
  const int gi = ti * kQH + tid / kQW, gj = tj * kQW + tid % kQW;
  const bool mine = gi < a.nH && gj < a.nW;  // a query of the grid (others only stage)
  const int qh = (mine ? gi : 0) * a.str0, qw = (mine ? gj : 0) * a.str0;
  const int H = a.H, W = a.W;
  constexpr int wh = WW;  // a finite ws: square windows (the host checks)

  // Query patch in registers, [pi][pj][c] (pt = 1).
  float qv[PS * PS * CV];
  {
    const float* v0 = a.vid0 + b * a.s0.b + hd * a.s0.h + t * a.s0.t;
#pragma unroll
    for (int pi = 0; pi < PS; ++pi) {
      const int yy = geo::bound32(qh + a.o0 + pi - a.offH0, H, a.reflect);
#pragma unroll
      for (int pj = 0; pj < PS; ++pj) {
        const int xx = geo::bound32(qw + a.o0 + pj - a.offW0, W, a.reflect);
        const bool in = yy >= 0 && xx >= 0;
        const float* p = v0 + (in ? yy * a.s0.y + xx * a.s0.x : 0);
#pragma unroll
        for (int c = 0; c < CV; ++c) qv[(pi * PS + pj) * CV + c] = in ? p[c * a.s0.c] : 0.f;
      }
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
    const int y0 = geo::window_base32(ch, H, 1, a.ws, a.full_ws);
    const int x0 = geo::window_base32(cw, W, 1, a.ws, a.full_ws);

    // The block's union of window starts.
    wy[tid] = y0, wx[tid] = x0;
    int m4[4] = {mine ? y0 : INT_MAX, mine ? -y0 : INT_MAX, mine ? x0 : INT_MAX, mine ? -x0 : INT_MAX};
    block_min4<kWarps>(m4, part, lane, wib);  // its barrier (A): part, wy and wx are written
                                              // (the last frame's box reads are done)
    const int miny = m4[0], maxy = -m4[1], minx = m4[2], maxx = -m4[3];
    // The box: every pixel any of the block's candidate patches reads in frame u. When it
    // does not fit, each thread's own window rectangle (RH x RW pixels) is staged instead,
    // as many threads' at a time as fit (rounds).
    const int BH = maxy - miny + wh + PS - 1, BW = maxx - minx + WW + PS - 1;
    const bool shared_box = static_cast<int64_t>(BH) * BW <= a.cap_px;
    const int RH = wh + PS - 1, RW = WW + PS - 1;
    const int per_round = shared_box ? kThreads : a.cap_px / (RH * RW);  // the host ensures >= 1
    const float* vf = v1 + u * a.s1.t;
    // Pixels p = p0, p0 + pstep, ... of a rectangle of rows x cols pixels whose first pixel
    // is (y, x) in frame u (bounds rule applied), all CV channels each, stored
    // pixel-major at dst. Neighbouring lanes take neighbouring pixels: each channel's
    // global load is coalesced, and the bounds rule is paid once per pixel.
    auto stage = [&](float* dst, int p0, int pstep, int rows, int cols, int y, int x) {
      int r = p0 / cols, s = p0 - r * cols;
      const int rstep = pstep / cols, sstep = pstep - rstep * cols;
      while (r < rows) {
        const int yy = geo::bound32(y + r, H, a.reflect);
        const int xx = geo::bound32(x + s, W, a.reflect);
        float v[CV];
        if (yy < 0 || xx < 0) {
#pragma unroll
          for (int c = 0; c < CV; ++c) v[c] = 0.f;
        } else {
          const float* src = vf + yy * a.s1.y + xx * a.s1.x;
#pragma unroll
          for (int c = 0; c < CV; ++c, src += a.s1.c) v[c] = *src;
        }
        float* d = dst + (r * cols + s) * CV;
#pragma unroll
        for (int c = 0; c < CV; c += 4)
          *reinterpret_cast<float4*>(d + group_at<CV>(r, c)) = make_float4(v[c], v[c + 1], v[c + 2], v[c + 3]);
        r += rstep, s += sstep;
        if (s >= cols) s -= cols, ++r;
      }
    };
    for (int k0 = 0; k0 < kThreads; k0 += per_round) {
      if (k0 > 0) __syncthreads();  // the previous round's reads are done
      if (shared_box) {
        stage(box, tid, kThreads, BH, BW, miny + a.o0 - a.offH1, minx + a.o0 - a.offW1);
      } else {
        // Thread k0 + k's rectangle at box + k * RH * RW * CV; warp w stages threads w, w + 4, ...
        for (int k = wib; k < per_round && k0 + k < kThreads; k += kWarps)
          stage(box + k * RH * RW * CV, lane, 32, RH, RW, wy[k0 + k] + a.o0 - a.offH1, wx[k0 + k] + a.o0 - a.offW1);
      }
      __syncthreads();  // (B) the box is staged
      if (mine && tid >= k0 && tid < k0 + per_round) {
        // The staged rectangle, where the window starts in it, its pitch.
        const float* rect = shared_box ? box : box + (tid - k0) * RH * RW * CV;
        sweep_window<L2, CV, PS, WW, KM>(rect, shared_box ? y0 - miny : 0, shared_box ? x0 - minx : 0,
                                         shared_box ? BW : RW, n, y0, x0, qh, qw, H, W, a.remove_self, qv, list);
      }
    }
    // (A) of the next frame orders these reads before the next staging.
  }
  // Emit. The lists go through shared memory (the box is free now) so that the walk below
  // indexes them at run time: kept in registers, the unrolled walk held about 100 more.
  __syncthreads();  // every thread's last box reads are done
  uint2* lists = reinterpret_cast<uint2*>(box);  // [m][thread]: (key, ordinal)
#pragma unroll
  for (int m = 0; m < KM; ++m) lists[m * kThreads + tid] = make_uint2(list.key[m], static_cast<uint32_t>(list.ord[m]));
  if (!mine) return;
  const int q = (t * a.nH + gi) * a.nW + gj;
  float* dq = a.dists + b * a.sd[0] + hd * a.sd[1] + q * a.sd[2];
  int32_t* iq = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2];
  const int spf = wh * WW;
  const float pad = L2 ? std::numeric_limits<float>::infinity() : -std::numeric_limits<float>::infinity();
  for (int m = 0; m < a.K; ++m) {
    if (lists[m * kThreads + tid].x == kNone) {
      dq[m * a.sd[3]] = pad;
      int32_t* e = iq + m * a.si[3];
      e[0] = e[a.si[4]] = e[2 * a.si[4]] = -1;
    }
  }
  // Walk the chain again for the window starts of the listed frames.
  ch = qh, cw = qw;
  for (int n = 0; n < a.st; ++n) {
    const int u = n < nfwd ? t + n : t - (n - nfwd + 1);
    step(n, u, ch, cw);
    const int y0 = geo::window_base32(ch, H, 1, a.ws, a.full_ws);
    const int x0 = geo::window_base32(cw, W, 1, a.ws, a.full_ws);
    for (int m = 0; m < a.K; ++m) {
      const uint2 e = lists[m * kThreads + tid];
      const int32_t ord = static_cast<int32_t>(e.y);
      if (e.x == kNone || ord / spf != n) continue;
      const int rem = ord - n * spf, i = rem / WW, j = rem - i * WW;
      dq[m * a.sd[3]] = ThreadList<L2, KM>::dist(e.x);
      int32_t* ie = iq + m * a.si[3];
      ie[0] = u;
      ie[a.si[4]] = y0 + i;
      ie[2 * a.si[4]] = x0 + j;
    }
  }
}

std::atomic<int> forced_box_px{0};  // set_forward_thread_box_px

// Bytes of shared memory for the box of a variant whose registers allow `blocks` blocks per
// SM (kBoxMinBytes above), 3 or 4 (kMinBlocks). Cached per device, so that a call makes no
// attribute queries.
size_t box_bytes(int blocks) {
  constexpr int kDevices = 64;
  static std::atomic<uint32_t> cache[kDevices][2];  // [device][blocks == 4]; 0: not asked yet
  int dev = 0;
  STNLS_CUDA_CHECK(cudaGetDevice(&dev));
  std::atomic<uint32_t>* slot = dev < kDevices ? &cache[dev][blocks == 4] : nullptr;
  if (slot && slot->load(std::memory_order_relaxed)) return slot->load(std::memory_order_relaxed);
  int per_sm = 0, reserved = 0;
  STNLS_CUDA_CHECK(cudaDeviceGetAttribute(&per_sm, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
  STNLS_CUDA_CHECK(cudaDeviceGetAttribute(&reserved, cudaDevAttrReservedSharedMemoryPerBlock, dev));
  const int64_t share = static_cast<int64_t>(per_sm) / blocks - reserved - static_cast<int64_t>(kStaticBytes);
  const int64_t optin = static_cast<int64_t>(max_optin_smem()) - static_cast<int64_t>(kStaticBytes);
  const int64_t bytes = std::max<int64_t>(kBoxMinBytes, std::min(share, optin) / 16 * 16);
  if (slot) slot->store(static_cast<uint32_t>(bytes), std::memory_order_relaxed);
  return static_cast<size_t>(bytes);
}

// Compiled variants: channels per head and patch side (the query patch, PS * PS * CV
// floats, stays in registers), each for window widths 5, 7 and 9. `need`: the most pixels a
// box can need in this call (the tile's windows spread over the whole frame).
template <bool L2, int CV, int PS, int KM>
bool launch_ww(ThrArgs f, int ww, int64_t need, unsigned blocks, cudaStream_t stream) {
  auto go = [&](auto kernel, int min_blocks) {
    const int forced = forced_box_px.load();
    const int64_t px = forced > 0 ? forced : static_cast<int64_t>(box_bytes(min_blocks) / (CV * sizeof(float)));
    f.cap_px = static_cast<int>(std::min(px, need));
    if (f.cap_px < (ww + PS - 1) * (ww + PS - 1)) return false;  // one window must fit
    // (and at least the block's lists, which pass through it at the end)
    const size_t smem = std::max(static_cast<size_t>(f.cap_px) * CV * sizeof(float), sizeof(uint64_t) * kRegListMax * kThreads);
    // (the static shared memory, about 1 KB, counts against the 48 KB default too)
    if (smem > 40 * 1024)
      STNLS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
    kernel<<<blocks, kThreads, smem, stream>>>(f);
    check_launch("search_forward_thread_kernel");
    return true;
  };
  return by_width(ww, [&](auto w) {
    constexpr int WW = decltype(w)::value;
    return go(search_forward_thread_kernel<L2, CV, PS, WW, KM>, kMinBlocks(CV, PS, WW, KM));
  });
}

// Channels per head and ps; false (nothing launched) for any other. Not 16 channels with ps = 1, the
// attention layer's shape: its 48 KB box holds 768 pixels of 16 channels, less than the
// union of a block's 9 x 9 windows under the benchmarks' random 2 px flows (about 950
// pixels one frame away, 1300 two frames away), so most frames fell back to per-thread
// rounds; with a 64 KB box the 256^2 attention layer measured 28.3 -> 29.4 ms. It stays on
// the warp kernels until a finer fallback (per-warp boxes) is measured.
template <bool L2, int KM>
bool launch_variant(const ThrArgs& f, int C, int ps, int ww, int64_t need, unsigned blocks, cudaStream_t stream) {
  if (ps == 3 && C == 4) return launch_ww<L2, 4, 3, KM>(f, ww, need, blocks, stream);
  if (ps == 3 && C == 8) return launch_ww<L2, 8, 3, KM>(f, ww, need, blocks, stream);
  if (ps == 1 && C == 8) return launch_ww<L2, 8, 1, KM>(f, ww, need, blocks, stream);
  return false;
}

std::atomic<bool> enabled{true};  // set_forward_thread_enabled

}  // namespace

void set_forward_thread_enabled(bool on) { enabled = on; }

void set_forward_thread_box_px(int px) { forced_box_px = px; }

bool search_forward_thread(const SearchArgs& a, cudaStream_t stream) {
  const SearchParams& p = a.p;
  const SearchShape& sh = a.sh;
  if (!enabled || !register_layouts_apply(a) || sh.wh != sh.ww) return false;
  ThrArgs f = thread_args(a);
  f.tilesH = static_cast<int>(ceil_div(sh.nH, kQH));
  f.tilesW = static_cast<int>(ceil_div(sh.nW, kQW));
  // The box never needs more than the tile's windows spread over the whole frame.
  const int64_t need = (sh.H + sh.wh + p.ps) * (sh.W + sh.ww + p.ps);
  const int64_t blocks = sh.B * sh.HD * sh.T * f.tilesH * f.tilesW;
  if (blocks > INT32_MAX) return false;
  const unsigned nb = static_cast<unsigned>(blocks);
  const int C = static_cast<int>(sh.C), ww = static_cast<int>(sh.ww);
  return by_dist(p.dist_type, [&](auto l2) {
    return by_list(sh.K, [&](auto km) {
      return launch_variant<decltype(l2)::value, decltype(km)::value>(f, C, p.ps, ww, need, nb, stream);
    });
  });
}

}  // namespace cuda
}  // namespace stnls
