// Example consumer of the installed stnls library: searches a tiny patterned video
// against itself on the CPU and prints the best matches of the first queries.
// Uses host memory only, so it runs whether or not the library was built with CUDA.
#include <cstdio>
#include <exception>
#include <vector>

#include "stnls/error.h"
#include "stnls/search.h"
#include "stnls/view.h"

int main() {
  using namespace stnls;
  const int64_t B = 1, T = 2, C = 1, H = 8, W = 8;

  // A pattern that repeats every 4 pixels and shifts one column per frame, so each patch
  // has exact copies elsewhere in the window and in the next frame.
  std::vector<float> vid(B * T * C * H * W);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t w = 0; w < W; ++w)
        vid[(t * H + h) * W + w] = static_cast<float>(((h % 4) * 4 + (w + t) % 4)) / 16.f;

  SearchParams p;
  p.ws = 5;
  p.wt = 1;
  p.ps = 3;
  p.k = 4;
  p.stride0 = 4;
  p.dist_type = DistType::L2;

  try {
    ConstView v = make_view<const void>(vid.data(), DType::Float32, {B, T, C, H, W});
    ConstView no_flow;  // empty view = zero flow
    const SearchShape sh = search_shape(p, v, v);

    // [B, HD, Q, K] and [B, HD, Q, K, 3]: the caller owns the outputs.
    std::vector<float> dists(sh.B * sh.HD * sh.Q * sh.K);
    std::vector<int32_t> inds(dists.size() * 3);
    View d = make_view<void>(dists.data(), DType::Float32, {sh.B, sh.HD, sh.Q, sh.K});
    View i = make_view<void>(inds.data(), DType::Int32, {sh.B, sh.HD, sh.Q, sh.K, 3});
    search_forward(p, v, v, no_flow, no_flow, d, i);

    std::printf("stnls example: cuda_available=%d Q=%lld K=%lld\n", cuda_available() ? 1 : 0,
                static_cast<long long>(sh.Q), static_cast<long long>(sh.K));
    const int64_t shown = sh.Q < 3 ? sh.Q : 3;
    for (int64_t q = 0; q < shown; ++q) {
      std::printf("query %lld:", static_cast<long long>(q));
      for (int64_t k = 0; k < sh.K; ++k) {
        const int64_t j = q * sh.K + k;
        std::printf("  %.4f (%d,%d,%d)", dists[j], inds[3 * j], inds[3 * j + 1], inds[3 * j + 2]);
      }
      std::printf("\n");
    }
    // Searching a video against itself: the best L2 match of every query is exact.
    for (int64_t q = 0; q < sh.Q; ++q) {
      if (dists[q * sh.K] != 0.f) {
        std::fprintf(stderr, "query %lld: best distance %g, expected 0\n",
                     static_cast<long long>(q), dists[q * sh.K]);
        return 1;
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "stnls error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
