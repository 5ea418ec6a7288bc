// CUDA backward of the non-local search with SearchParams::deterministic = false: the
// gradients are zeroed and every (query, neighbour, tap, channel) term of SPEC.md rule 8 is
// added with atomicAdd, so there is no workspace, no inverse list and no sort, and the
// order in which terms reach a pixel (hence the float rounding) changes from run to run.
// The deterministic gather (search_backward.cu) is the default.
//
// One warp per query: lanes take the query's (pk, pi, pj, c) terms, ordered so that
// neighbouring lanes touch neighbouring addresses (pj or c fastest, whichever the gradient
// stores contiguously); lane k holds neighbour k's location and grad_dists, and the warp
// walks the neighbours with shuffles. A term's grad_vid0 contributions of all K
// neighbours are summed in a register first (one atomic per term), its grad_vid1
// contributions take one atomic each. Reads and writes follow the CPU backend: a tap
// outside the video reads 0 and writes nothing, padding (-1) and out-of-range triples add
// nothing.
#include <cuda_runtime.h>

#include "common/dispatch.h"
#include "common/geometry.h"
#include "cuda/cuda_util.h"
#include "cuda/search_backward_args.h"
#include "cuda/search_backward_atomic.h"
#include "cuda/zero_video.cuh"

namespace stnls {
namespace cuda {
namespace {

using detail::SearchArgs;

constexpr int kWarps = 8;  // warps (queries) per block

template <class T, bool L2>
__global__ void __launch_bounds__(kWarps * 32) search_backward_atomic_kernel(const BwdArgs<T> a, int64_t nq, bool c_fast) {
  // c_fast: terms ordered with the channel fastest (channels-last gradients)
  const int lane = threadIdx.x & 31;
  const int64_t wq = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (wq >= nq) return;  // whole warps leave together
  const int q = static_cast<int>(wq % a.Q);
  const int64_t bh = wq / a.Q;
  const int hd = static_cast<int>(bh % a.HD);
  const int64_t b = bh / a.HD;
  const T* v0 = a.vid0 + b * a.s0.b + hd * a.s0.h;
  const T* v1 = a.vid1 + b * a.s1.b + hd * a.s1.h;
  T* g0 = a.g0 + b * a.w0.b + hd * a.w0.h;
  T* g1 = a.g1 + b * a.w1.b + hd * a.w1.h;
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
        if (in1) atomicAdd(g1 + (ut * a.w1.t + uy * a.w1.y + ux * a.w1.x + c * a.w1.c), g * geo::dist_db<L2>(va, vb));
      }
    }
    if (in0) atomicAdd(g0 + (tt * a.w0.t + ty * a.w0.y + tx * a.w0.x + c * a.w0.c), acc0);
  }
}

template <class T, bool L2>
void backward_atomic_impl(const SearchArgs& a, cudaStream_t stream) {
  const SearchShape& sh = a.sh;
  const BwdArgs<T> f = backward_args<T>(a);
  const int64_t nq = sh.B * sh.HD * sh.Q;
  zero_video(f.g0, a.g0, sh.B, sh.HD, sh.T, sh.C, sh.H, sh.W, stream);
  zero_video(f.g1, a.g1, sh.B, sh.HD, sh.T, sh.C, sh.H, sh.W, stream);
  if (nq == 0 || f.K == 0) return;
  const int64_t blocks = ceil_div(nq, kWarps);
  if (blocks > INT32_MAX) throw BackendError("search backward: too many queries for one launch");
  search_backward_atomic_kernel<T, L2><<<static_cast<unsigned>(blocks), kWarps * 32, 0, stream>>>(f, nq, a.g1.c == 1);
  check_launch("search_backward_atomic_kernel");
}

}  // namespace

void search_backward_atomic(const SearchArgs& a, cudaStream_t stream) {
  STNLS_FLOAT_SWITCH(a.dtype, [&] {
    STNLS_DIST_SWITCH(a.p.dist_type, [&] { backward_atomic_impl<scalar_t, kL2>(a, stream); });
  });
}

}  // namespace cuda
}  // namespace stnls
