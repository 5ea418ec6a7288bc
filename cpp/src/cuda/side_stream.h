// Internal: work beside the caller's stream inside one call. A Fork records an event on
// the caller's stream that a second stream of the device waits for; join() makes the
// caller's stream wait for everything queued on the second stream since. So the call
// stays one unit on the caller's stream (what follows it, memory reuse by a caching
// allocator and CUDA graph capture all see both branches finished), while two independent
// chains of kernels share the GPU.
#pragma once
#include <cuda_runtime.h>

namespace stnls {
namespace cuda {

class Fork {
 public:
  explicit Fork(cudaStream_t main);  // throws BackendError
  ~Fork();                           // joins if join() was not reached (an exception)
  Fork(const Fork&) = delete;
  Fork& operator=(const Fork&) = delete;

  cudaStream_t side() const { return side_; }
  void join();  // throws BackendError

 private:
  cudaStream_t main_, side_;
  cudaEvent_t forked_ = nullptr, joined_ = nullptr;
  bool done_ = false;
};

}  // namespace cuda
}  // namespace stnls
