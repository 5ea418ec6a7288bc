// CUDA backward of the non-local search, bitwise deterministic, for float32 calls of few
// terms (search_backward.cu decides): the scatter kernel of search_backward_scatter.cuh
// adds every term, as a 64-bit fixed-point integer, into sums in the caller's workspace.
// Integer additions are associative, so the sums (and the gradients) do not depend on the
// order in which the atomics land: the result is the same on every run, at the speed of
// the atomic scatter, without the gather's inverse lists and sort.
//
// Scale: a first pass finds the largest finite |vid0|, |vid1| and |grad_dists| (of the
// neighbours the scatter adds: padding's grad_dists do not count). Every term is at most
// 2 |g| (|a| + |b|) (the L2 and prod derivatives alike), and one gradient element receives
// at most N = Q * K * pt * ps^2 of them, so with 2^e above N times that bound, terms scaled
// by 2^s, s = 62 - e, never sum past 2^62. Each term is rounded to the nearest multiple of
// 2^-s (at most 2^-41 of the bound at S1's size, far below float32's rounding of the
// bound); the final sum is rounded once to float.
// Non-finite terms (a NaN or an infinity in the inputs, or a term past the float range)
// are not added: they set a flag of their element (NaN, +inf, -inf), and the element
// becomes what a float sum would make of them (NaN for a NaN or for both infinities).
//
// Workspace: [4 x u32 maxima][grad_vid0 sums: n x i64][grad_vid1 sums][grad_vid0 flags:
// 4 bits per element][grad_vid1 flags], n = B*HD*T*C*H*W, sums in [b][hd][t][c][y][x]
// order; zeroed by one memset per call.
#include "cuda/search_backward_fixed.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <initializer_list>
#include <string>

#include "common/dispatch.h"
#include "common/geometry.h"
#include "cuda/cuda_util.h"
#include "cuda/search_backward_args.h"
#include "cuda/search_backward_scatter.cuh"

namespace stnls {
namespace cuda {
namespace {

using detail::SearchArgs;
using detail::Strides6;
using u64 = unsigned long long;

constexpr unsigned kNaN = 1, kPosInf = 2, kNegInf = 4;  // element flags (4 bits each)

struct Layout {
  int64_t n;  // elements of one gradient
  size_t acc0, acc1, flags0, flags1, total;
};
Layout layout(const SearchShape& sh) {
  Layout L;
  L.n = sh.B * sh.HD * sh.T * sh.C * sh.H * sh.W;
  const size_t flag_bytes = static_cast<size_t>((L.n + 7) / 8) * 4;
  L.acc0 = 16;
  L.acc1 = L.acc0 + 8 * static_cast<size_t>(L.n);
  L.flags0 = L.acc1 + 8 * static_cast<size_t>(L.n);
  L.flags1 = L.flags0 + flag_bytes;
  L.total = L.flags1 + flag_bytes;
  return L;
}

// Terms one gradient element can receive: Q * K * pt * ps^2.
double max_terms(const SearchArgs& a) {
  return std::max(1.0, static_cast<double>(a.sh.Q) * a.sh.K * a.p.pt * a.p.ps * a.p.ps);
}

// s: sums of terms scaled by 2^s stay below 2^62 (see the top).
__device__ int scale_exponent(const unsigned* maxbits, double nterms) {
  const double m0 = __uint_as_float(maxbits[0]), m1 = __uint_as_float(maxbits[1]), mg = __uint_as_float(maxbits[2]);
  const double bound = nterms * 2.0 * mg * (m0 + m1) * (1.0 + 1e-4);  // margin for the terms' float rounding
  if (!(bound > 0.0)) return 0;  // every term is 0
  // bound < 2^e with e = frexp's exponent, read from the (normal) double's bits
  const int e = static_cast<int>((__double_as_longlong(bound) >> 52) & 0x7ff) - 1022;
  return 62 - e;
}

// The dense [b][hd][t][c][y][x] position r of an element as the offset of a strided video
// (32-bit arithmetic: a call takes this path only with n < 2^31 elements).
__device__ int64_t strided_offset(int r, const Strides6& s, int HD, int T, int C, int H, int W) {
  const int x = r % W, y = (r / W) % H, c = (r / (W * H)) % C;
  const int r2 = r / (W * H * C);
  const int t = r2 % T, bh = r2 / T;
  return (bh / HD) * s.b + (bh % HD) * s.h + t * s.t + c * s.c + y * s.y + x * s.x;
}

// What the maxima pass reads of vid0 and vid1 (and grad_dists), len[i] elements each: a
// dense video view (contiguous, channels-last, any order of dimensions without gaps: its
// span of memory holds exactly its count of elements) straight through from its first
// element, other views element by element (32-bit decode).
struct Spans {
  int64_t len[3];
  bool linear[3];
};

// Fills span i for sizes `n` and strides `s` (count elements).
void set_span(Spans& sp, int i, std::initializer_list<int64_t> n, std::initializer_list<int64_t> s) {
  int64_t count = 1, extent = 1;
  bool ok = true;
  for (auto ni = n.begin(), si = s.begin(); ni != n.end(); ++ni, ++si) {
    count *= *ni;
    ok = ok && *si >= 0;
    extent += (*ni - 1) * *si;
  }
  sp.linear[i] = ok && extent == count;
  sp.len[i] = count;
}

// The largest finite |vid0|, |vid1| and |grad_dists| of the used neighbours (as float
// bits, which order like the values for non-negative floats) into maxbits[0..2].
__global__ void __launch_bounds__(256) maxima_kernel(const BwdArgs<float> a, const Spans sp, unsigned* maxbits) {
  float m[3] = {0.f, 0.f, 0.f};
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  const int64_t e1 = sp.len[0], e2 = e1 + sp.len[1], total = e2 + sp.len[2];
  for (int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; e < total; e += stride) {
    float v;
    const int which = e < e1 ? 0 : e < e2 ? 1 : 2;
    if (which == 0) {
      v = sp.linear[0] ? a.vid0[e] : a.vid0[strided_offset(static_cast<int>(e), a.s0, a.HD, a.nT, a.C, a.H, a.W)];
    } else if (which == 1) {
      const int64_t r = e - e1;
      v = sp.linear[1] ? a.vid1[r] : a.vid1[strided_offset(static_cast<int>(r), a.s1, a.HD, a.nT, a.C, a.H, a.W)];
    } else {
      // Only the neighbours the scatter adds: padding and out-of-range triples are skipped
      // (their grad_dists, finite or not, would only loosen the bound).
      const int64_t r = e - e2;  // [b][hd][q][k]
      const int64_t k = r % a.K, q = (r / a.K) % a.Q, bh = r / (static_cast<int64_t>(a.K) * a.Q);
      const int64_t b = bh / a.HD, hd = bh % a.HD;
      const int32_t* n = a.inds + b * a.si[0] + hd * a.si[1] + q * a.si[2] + k * a.si[3];
      const int u = n[0], y = n[a.si[4]], x = n[2 * a.si[4]];
      const bool used = u >= 0 && u < a.nT && y >= 0 && y < a.H && x >= 0 && x < a.W;
      v = used ? a.gd[b * a.sd[0] + hd * a.sd[1] + q * a.sd[2] + k * a.sd[3]] : 0.f;
    }
    const float av = isfinite(v) ? fabsf(v) : 0.f;
#pragma unroll
    for (int i = 0; i < 3; ++i) m[i] = which == i ? fmaxf(m[i], av) : m[i];  // no indexing by which (registers)
  }
#pragma unroll
  for (int i = 0; i < 3; ++i) {
    for (int o = 16; o > 0; o >>= 1) m[i] = fmaxf(m[i], __shfl_xor_sync(0xffffffffu, m[i], o));
    if ((threadIdx.x & 31) == 0 && m[i] > 0.f) atomicMax(maxbits + i, __float_as_uint(m[i]));
  }
}

// The scatter's sink: fixed-point atomics into the workspace sums, flags for non-finite
// terms.
struct FixedSink {
  u64* acc0;
  u64* acc1;
  unsigned* flags0;
  unsigned* flags1;
  const unsigned* maxbits;
  double nterms;
  int HD, T, C, H, W;
  struct Slice {
    u64* acc0;
    u64* acc1;
    unsigned* flags0;
    unsigned* flags1;
    int64_t base;  // the (b, hd) slice's first element
    int C, H, W, s;
    __device__ int64_t at(int t, int y, int x, int c) const {
      return base + ((static_cast<int64_t>(t) * C + c) * H + y) * W + x;
    }
    __device__ void add(u64* acc, unsigned* flags, int64_t e, float v) const {
      if (isfinite(v))
        atomicAdd(acc + e, static_cast<u64>(__float2ll_rn(scalbnf(v, s))));  // two's complement: signed sums
      else
        atomicOr(flags + (e >> 3), (isnan(v) ? kNaN : v > 0.f ? kPosInf : kNegInf) << ((e & 7) * 4));
    }
    __device__ void add0(int t, int y, int x, int c, float v) const { add(acc0, flags0, at(t, y, x, c), v); }
    __device__ void add1(int t, int y, int x, int c, float v) const { add(acc1, flags1, at(t, y, x, c), v); }
  };
  __device__ Slice slice(int64_t b, int hd) const {
    const int64_t base = (b * HD + hd) * (static_cast<int64_t>(T) * C * H * W);
    return {acc0, acc1, flags0, flags1, base, C, H, W, scale_exponent(maxbits, nterms)};
  }
};

// Element r's sum (and flags) as the float gradient value.
__device__ float to_float(const u64* acc, const unsigned* flags, int r, int s) {
  const unsigned f = (flags[r >> 3] >> ((r & 7) * 4)) & 7u;
  if ((f & kNaN) || f == (kPosInf | kNegInf)) return __int_as_float(0x7fc00000);
  if (f) return f == kPosInf ? __int_as_float(0x7f800000) : __int_as_float(0xff800000);
  return scalbnf(__ll2float_rn(static_cast<long long>(acc[r])), -s);  // one rounding of the exact sum
}

// Sums to float gradients: thread per element, grad_vid0 in blockIdx.y 0, grad_vid1 in 1.
__global__ void __launch_bounds__(256) to_float_kernel(const BwdArgs<float> a, FixedSink k, int n) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n) return;
  const int r = static_cast<int>(e), s = scale_exponent(k.maxbits, k.nterms);
  if (blockIdx.y == 0)
    a.g0[strided_offset(r, a.w0, a.HD, a.nT, a.C, a.H, a.W)] = to_float(k.acc0, k.flags0, r, s);
  else
    a.g1[strided_offset(r, a.w1, a.HD, a.nT, a.C, a.H, a.W)] = to_float(k.acc1, k.flags1, r, s);
}

std::atomic<bool> enabled{true};  // set_backward_fixed_enabled

}  // namespace

void set_backward_fixed_enabled(bool on) { enabled = on; }
bool backward_fixed_enabled() { return enabled; }

size_t search_backward_fixed_workspace_size(const SearchArgs& a) { return layout(a.sh).total; }

void search_backward_fixed(const SearchArgs& a, void* workspace, size_t workspace_bytes, cudaStream_t stream) {
  const SearchShape& sh = a.sh;
  const Layout L = layout(sh);
  if (workspace == nullptr || workspace_bytes < L.total)
    throw ValueError("workspace: expected " + std::to_string(L.total) +
                     " bytes (search_backward_workspace_size), got " + std::to_string(workspace_bytes));
  const BwdArgs<float> f = backward_args<float>(a);
  if (L.n == 0) return;
  if (L.n > INT32_MAX) throw BackendError("search backward: too many elements for the fixed-point path");
  char* ws = static_cast<char*>(workspace);
  STNLS_CUDA_CHECK(cudaMemsetAsync(ws, 0, L.total, stream));
  unsigned* maxbits = reinterpret_cast<unsigned*>(ws);
  const FixedSink sink{reinterpret_cast<u64*>(ws + L.acc0),
                       reinterpret_cast<u64*>(ws + L.acc1),
                       reinterpret_cast<unsigned*>(ws + L.flags0),
                       reinterpret_cast<unsigned*>(ws + L.flags1),
                       maxbits,
                       max_terms(a),
                       f.HD, f.nT, f.C, f.H, f.W};
  const int64_t nq = sh.B * sh.HD * sh.Q;
  if (nq > 0 && f.K > 0) {
    Spans sp;
    set_span(sp, 0, {sh.B, sh.HD, sh.T, sh.C, sh.H, sh.W}, {a.s0.b, a.s0.h, a.s0.t, a.s0.c, a.s0.y, a.s0.x});
    set_span(sp, 1, {sh.B, sh.HD, sh.T, sh.C, sh.H, sh.W}, {a.s1.b, a.s1.h, a.s1.t, a.s1.c, a.s1.y, a.s1.x});
    sp.len[2] = nq * f.K, sp.linear[2] = false;  // grad_dists: read with its neighbour's indices
    const int64_t items = sp.len[0] + sp.len[1] + sp.len[2];
    maxima_kernel<<<static_cast<unsigned>(std::min<int64_t>(ceil_div(items, 256), 1024)), 256, 0, stream>>>(f, sp,
                                                                                                          maxbits);
    check_launch("maxima_kernel");
    const int64_t blocks = ceil_div(nq, kScatterWarps);
    if (blocks > INT32_MAX) throw BackendError("search backward: too many queries for one launch");
    STNLS_DIST_SWITCH(a.p.dist_type, [&] {
      search_backward_scatter_kernel<float, kL2><<<static_cast<unsigned>(blocks), kScatterWarps * 32, 0, stream>>>(
          f, sink, nq, a.g1.c == 1);
    });
    check_launch("search_backward_scatter_kernel (fixed point)");
  }
  const dim3 grid(static_cast<unsigned>(ceil_div(L.n, 256)), 2);  // y: grad_vid0, grad_vid1
  to_float_kernel<<<grid, 256, 0, stream>>>(f, sink, static_cast<int>(L.n));
  check_launch("to_float_kernel");
}

}  // namespace cuda
}  // namespace stnls
