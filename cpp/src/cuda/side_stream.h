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

// An event of one call (created with it, destroyed after): record() on one stream, wait()
// makes another stream wait for what was queued before the latest record.
class Event {
 public:
  Event();  // throws BackendError
  ~Event();
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void record(cudaStream_t s);      // throws BackendError
  void wait(cudaStream_t s) const;  // throws BackendError

 private:
  cudaEvent_t e_ = nullptr;
};

}  // namespace cuda
}  // namespace stnls
