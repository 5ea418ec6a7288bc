// The scatter form of the CUDA search backward (SPEC.md rule 8): every (query, neighbour,
// tap, channel) term is added to the gradient pixel it belongs to, through a Sink that
// says how. search_backward_atomic.cu adds float atomics into the gradients
// (deterministic = false); search_backward_fixed.cu adds 64-bit fixed-point integers into
// its workspace, whose sums do not depend on the order of the adds (deterministic).
//
// One warp per query: lanes take the query's (pk, pi, pj, c) terms, ordered so that
// neighbouring lanes touch neighbouring addresses (pj or c fastest, whichever the gradient
// stores contiguously); lane k holds neighbour k's location and grad_dists, and the warp
// walks the neighbours with shuffles. A term's grad_vid0 contributions of all K
// neighbours are summed in a register first (in k order, so that value is the same on
// every run; one add per term), its grad_vid1 contributions take one add each. Reads and
// writes follow the CPU backend: a tap outside the video reads 0 and writes nothing,
// padding (-1) and out-of-range triples add nothing.
//
// A Sink has `Slice slice(b, hd) const`; a Slice has add0(t, y, x, c, v) (grad_vid0) and
// add1(t, y, x, c, v) (grad_vid1).
#pragma once
#include <cuda_runtime.h>

#include <cstdint>

#include "common/geometry.h"
#include "cuda/search_backward_args.h"

namespace stnls {
namespace cuda {

constexpr int kScatterWarps = 8;  // warps (queries) per block

template <class T, bool L2, class Sink>
__global__ void __launch_bounds__(kScatterWarps * 32)
    search_backward_scatter_kernel(const BwdArgs<T> a, const Sink sink, int64_t nq, bool c_fast) {
  // c_fast: terms ordered with the channel fastest (channels-last gradients)
  const int lane = threadIdx.x & 31;
  const int64_t wq = static_cast<int64_t>(blockIdx.x) * kScatterWarps + (threadIdx.x >> 5);
  if (wq >= nq) return;  // whole warps leave together
  const int q = static_cast<int>(wq % a.Q);
  const int64_t bh = wq / a.Q;
  const int hd = static_cast<int>(bh % a.HD);
  const int64_t b = bh / a.HD;
  const T* v0 = a.vid0 + b * a.s0.b + hd * a.s0.h;
  const T* v1 = a.vid1 + b * a.s1.b + hd * a.s1.h;
  const auto out = sink.slice(b, hd);
  const int32_t* ind = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2];
  const T* gdq = a.gd + b * a.sd[0] + hd * a.sd[1] + q * a.sd[2];

  const int t = q / (a.nH * a.nW);
  const int qy = ((q / a.nW) % a.nH) * a.str0 + a.o0 - a.offH0;  // query patch's first tap
  const int qx = (q % a.nW) * a.str0 + a.o0 - a.offW0;
  const int nterms = a.pt * a.ps * a.ps * a.C;

  for (int e = lane; e - lane < nterms; e += 32) {  // every lane runs every round (shuffles)
    const bool live = e < nterms;
    // The term's (pk, pi, pj, c).
    int pk, pi, pj, c;
    {
      int r = live ? e : 0;
      if (c_fast) {
        c = r % a.C, r /= a.C;
        pj = r % a.ps, r /= a.ps;
      } else {
        pj = r % a.ps, r /= a.ps;
        c = r % a.C, r /= a.C;
      }
      pi = r % a.ps, pk = r / a.ps;
    }
    const int dy = a.dil * pi, dx = a.dil * pj;
    const int tt = geo::bound32(t + pk, a.nT, a.reflect);
    const int ty = geo::bound32(qy + dy, a.H, a.reflect);
    const int tx = geo::bound32(qx + dx, a.W, a.reflect);
    const bool in0 = live && tt >= 0 && ty >= 0 && tx >= 0;
    const T va = in0 ? v0[tt * a.s0.t + ty * a.s0.y + tx * a.s0.x + c * a.s0.c] : T(0);
    T acc0 = T(0);
    for (int k0 = 0; k0 < a.K; k0 += 32) {
      // Lane j holds neighbour k0 + j: its candidate patch's first tap and grad_dists.
      int nu = -1, ny = 0, nx = 0;
      T ng = T(0);
      if (k0 + lane < a.K) {
        const int32_t* n = ind + (k0 + lane) * a.si[3];
        const int u = n[0], y = n[a.si[4]], x = n[2 * a.si[4]];
        if (u >= 0 && u < a.nT && y >= 0 && y < a.H && x >= 0 && x < a.W) {
          nu = u, ny = y + a.o0 - a.offH1, nx = x + a.o0 - a.offW1;
          ng = gdq[(k0 + lane) * a.sd[3]];
        }
      }
      const int nk = min(32, a.K - k0);
      for (int j = 0; j < nk; ++j) {
        const int u = __shfl_sync(0xffffffffu, nu, j);
        if (u < 0) continue;  // the same for every lane
        const int cy = __shfl_sync(0xffffffffu, ny, j), cx = __shfl_sync(0xffffffffu, nx, j);
        const T g = __shfl_sync(0xffffffffu, ng, j);
        if (!live) continue;
        const int ut = geo::bound32(u + pk, a.nT, a.reflect);
        const int uy = geo::bound32(cy + dy, a.H, a.reflect);
        const int ux = geo::bound32(cx + dx, a.W, a.reflect);
        const bool in1 = ut >= 0 && uy >= 0 && ux >= 0;
        const T vb = in1 ? v1[ut * a.s1.t + uy * a.s1.y + ux * a.s1.x + c * a.s1.c] : T(0);
        acc0 += g * geo::dist_da<L2>(va, vb);
        if (in1) out.add1(ut, uy, ux, c, g * geo::dist_db<L2>(va, vb));
      }
    }
    if (in0) out.add0(tt, ty, tx, c, acc0);
  }
}

}  // namespace cuda
}  // namespace stnls
