// Inverse neighbour lists (inverse_lists.h): a key per entry (its location), a stable radix
// sort of (key, entry), and a binary search for each list's start.
#include "cuda/inverse_lists.h"

#include <cub/device/device_radix_sort.cuh>

#include <climits>

#include "cuda/cuda_util.h"
#include "stnls/error.h"

namespace stnls {
namespace cuda {
namespace {

constexpr int kThreads = 256;

// Key of entry e = (b, hd, q, k): its location flattened, or nloc (sorted last, in no
// list) for padding and indices outside the video. Value: e.
__global__ void __launch_bounds__(kThreads) list_keys_kernel(const IndsView in, int32_t nloc, int32_t* keys,
                                                             int32_t* vals, int64_t n) {
  const int64_t e = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (e >= n) return;
  const int64_t k = e % in.K, q = (e / in.K) % in.Q, bh = e / (in.K * in.Q);
  const int32_t* ie = in.inds + (bh / in.HD) * in.si[0] + (bh % in.HD) * in.si[1] + q * in.si[2] + k * in.si[3];
  const int64_t t = ie[0], y = ie[in.si[4]], x = ie[2 * in.si[4]];
  const bool ok = t >= 0 && t < in.T && y >= 0 && y < in.H && x >= 0 && x < in.W;
  keys[e] = ok ? static_cast<int32_t>(((bh * in.T + t) * in.H + y) * in.W + x) : nloc;
  vals[e] = static_cast<int32_t>(e);
}

// start[l] = first sorted position whose key is >= l, l = 0..nloc (binary search).
__global__ void __launch_bounds__(kThreads) list_start_kernel(const int32_t* sorted, int64_t n, int32_t nloc,
                                                              int32_t* start) {
  const int64_t l = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (l > nloc) return;
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) / 2;
    if (sorted[mid] < l) lo = mid + 1;
    else hi = mid;
  }
  start[l] = static_cast<int32_t>(lo);
}

}  // namespace

ListLayout list_layout(const IndsView& in, size_t base, const char* too_big) {
  ListLayout L;
  L.n = in.B * in.HD * in.Q * in.K;
  L.nloc = in.B * in.HD * in.T * in.H * in.W;
  if (L.n >= INT32_MAX || L.nloc >= INT32_MAX) throw BackendError(too_big);
  while ((int64_t(1) << L.nbits) <= L.nloc) ++L.nbits;  // keys are 0..nloc
  const size_t nb = align256(static_cast<size_t>(L.n) * sizeof(int32_t));
  L.keys0 = align256(base);
  L.keys1 = L.keys0 + nb;
  L.vals0 = L.keys1 + nb;
  L.vals1 = L.vals0 + nb;
  L.start = L.vals1 + nb;
  L.cub = L.start + align256(static_cast<size_t>(L.nloc + 1) * sizeof(int32_t));
  if (L.n > 0) {
    cub::DoubleBuffer<int32_t> k(nullptr, nullptr), v(nullptr, nullptr);
    STNLS_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, L.cub_bytes, k, v, static_cast<int>(L.n), 0, L.nbits));
  }
  L.end = L.cub + align256(L.cub_bytes);
  return L;
}

Lists build_lists(const IndsView& in, const ListLayout& L, char* ws, cudaStream_t stream) {
  Lists out;
  int32_t* start = reinterpret_cast<int32_t*>(ws + L.start);
  out.start = start;
  if (L.n == 0) {
    STNLS_CUDA_CHECK(cudaMemsetAsync(start, 0, static_cast<size_t>(L.nloc + 1) * sizeof(int32_t), stream));
    return out;
  }
  int32_t* k0 = reinterpret_cast<int32_t*>(ws + L.keys0);
  int32_t* k1 = reinterpret_cast<int32_t*>(ws + L.keys1);
  int32_t* v0 = reinterpret_cast<int32_t*>(ws + L.vals0);
  int32_t* v1 = reinterpret_cast<int32_t*>(ws + L.vals1);
  list_keys_kernel<<<static_cast<unsigned>(ceil_div(L.n, kThreads)), kThreads, 0, stream>>>(
      in, static_cast<int32_t>(L.nloc), k0, v0, L.n);
  check_launch("list_keys_kernel");
  // Radix sort is stable: entries of one location keep their (b, hd, q, k) order.
  cub::DoubleBuffer<int32_t> kb(k0, k1), vb(v0, v1);
  size_t cub_bytes = L.cub_bytes;
  STNLS_CUDA_CHECK(
      cub::DeviceRadixSort::SortPairs(ws + L.cub, cub_bytes, kb, vb, static_cast<int>(L.n), 0, L.nbits, stream));
  list_start_kernel<<<static_cast<unsigned>(ceil_div(L.nloc + 1, kThreads)), kThreads, 0, stream>>>(
      kb.Current(), L.n, static_cast<int32_t>(L.nloc), start);
  check_launch("list_start_kernel");
  out.entries = vb.Current();
  return out;
}

}  // namespace cuda
}  // namespace stnls
