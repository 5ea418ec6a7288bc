// CUDA backward of the non-local search with SearchParams::deterministic = false, for
// calls of few terms (search_backward.cu decides): the gradients are zeroed and every
// (query, neighbour, tap, channel) term of SPEC.md rule 8 is added with a float atomicAdd
// (the scatter kernel of search_backward_scatter.cuh), so there is no workspace, no
// inverse list and no sort, and the order in which terms reach a pixel (hence the float
// rounding) changes from run to run.
#include <cuda_runtime.h>

#include "common/dispatch.h"
#include "common/geometry.h"
#include "cuda/cuda_util.h"
#include "cuda/search_backward_args.h"
#include "cuda/search_backward_atomic.h"
#include "cuda/search_backward_scatter.cuh"
#include "cuda/zero_video.cuh"

namespace stnls {
namespace cuda {
namespace {

using detail::SearchArgs;

// Float atomics straight into the gradients.
template <class T>
struct FloatSink {
  T* g0;
  T* g1;
  detail::Strides6 w0, w1;
  struct Slice {
    T* g0;
    T* g1;
    detail::Strides6 w0, w1;
    __device__ void add0(int t, int y, int x, int c, T v) const {
      atomicAdd(g0 + (t * w0.t + y * w0.y + x * w0.x + c * w0.c), v);
    }
    __device__ void add1(int t, int y, int x, int c, T v) const {
      atomicAdd(g1 + (t * w1.t + y * w1.y + x * w1.x + c * w1.c), v);
    }
  };
  __device__ Slice slice(int64_t b, int hd) const {
    return {g0 + b * w0.b + hd * w0.h, g1 + b * w1.b + hd * w1.h, w0, w1};
  }
};

template <class T, bool L2>
void backward_atomic_impl(const SearchArgs& a, cudaStream_t stream) {
  const SearchShape& sh = a.sh;
  const BwdArgs<T> f = backward_args<T>(a);
  const int64_t nq = sh.B * sh.HD * sh.Q;
  zero_video(f.g0, a.g0, sh.B, sh.HD, sh.T, sh.C, sh.H, sh.W, stream);
  zero_video(f.g1, a.g1, sh.B, sh.HD, sh.T, sh.C, sh.H, sh.W, stream);
  if (nq == 0 || f.K == 0) return;
  const int64_t blocks = ceil_div(nq, kScatterWarps);
  if (blocks > INT32_MAX) throw BackendError("search backward: too many queries for one launch");
  const FloatSink<T> sink{f.g0, f.g1, f.w0, f.w1};
  search_backward_scatter_kernel<T, L2><<<static_cast<unsigned>(blocks), kScatterWarps * 32, 0, stream>>>(
      f, sink, nq, a.g1.c == 1);
  check_launch("search_backward_scatter_kernel (float atomics)");
}

}  // namespace

void search_backward_atomic(const SearchArgs& a, cudaStream_t stream) {
  STNLS_FLOAT_SWITCH(a.dtype, [&] {
    STNLS_DIST_SWITCH(a.p.dist_type, [&] { backward_atomic_impl<scalar_t, kL2>(a, stream); });
  });
}

}  // namespace cuda
}  // namespace stnls
