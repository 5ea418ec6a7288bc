// When the CPU backends go parallel: starting an OpenMP team costs far more than small
// calls take, so calls below this many inner-loop steps run on the calling thread.
#pragma once
#include <cstdint>

namespace stnls {
namespace cpu {
constexpr int64_t kParallelWork = int64_t(1) << 16;
}  // namespace cpu
}  // namespace stnls
