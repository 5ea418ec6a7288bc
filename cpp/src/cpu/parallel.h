// How the CPU backends split their work over OpenMP threads.
#pragma once
#include <algorithm>
#include <cstdint>

#if defined(_OPENMP)
#include <omp.h>
#endif

namespace stnls {
namespace cpu {

// Starting an OpenMP team costs far more than small calls take, so calls below this many
// inner-loop steps run on the calling thread.
constexpr int64_t kParallelWork = int64_t(1) << 16;

// Kernels that write whole video planes split them into (batch, head, channel group)
// tasks: one writer per element, and one walk over the indices per task shared by all
// its channels. Groups are as wide as leaves every thread (twice over) a task; the sum
// order of each element is the same whatever the grouping, so results do not depend on
// the thread count.
inline int64_t channel_groups(int64_t planes, int64_t C) {
#if defined(_OPENMP)
  const int64_t threads = omp_get_max_threads();
#else
  const int64_t threads = 1;
#endif
  planes = std::max<int64_t>(1, planes);
  return std::max<int64_t>(1, std::min<int64_t>(C, (2 * threads + planes - 1) / planes));
}

// Runs f(b, hd, c0, c1) for every task of (B, HD) planes of C channels; `work` (inner
// steps of the whole call) decides whether to go parallel.
template <class F>
void for_each_channel_task(int64_t B, int64_t HD, int64_t C, int64_t work, F&& f) {
  const int64_t G = channel_groups(B * HD, C), per = (C + G - 1) / G;
  const int64_t ntask = B * HD * G;
#pragma omp parallel for schedule(dynamic, 1) if (work > kParallelWork)
  for (int64_t task = 0; task < ntask; ++task) {
    const int64_t b = task / (HD * G), hd = (task / G) % HD, g = task % G;
    const int64_t c0 = g * per, c1 = std::min(C, c0 + per);
    if (c0 < c1) f(b, hd, c0, c1);
  }
}

}  // namespace cpu
}  // namespace stnls
