// The second stream of each device (one per device for the process, created on first use,
// never destroyed, like a library handle) and the fork/join events of one call (created per
// call, so concurrent calls from several host threads never share an event; calls that
// share the side stream only queue behind each other there).
#include "cuda/side_stream.h"

#include <mutex>

#include "cuda/cuda_util.h"

namespace stnls {
namespace cuda {
namespace {

constexpr int kMaxDevices = 64;

cudaStream_t side_stream() {
  static std::mutex mu;
  static cudaStream_t streams[kMaxDevices] = {};
  int dev = 0;
  STNLS_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= kMaxDevices) throw BackendError("side stream: device index out of range");
  std::lock_guard<std::mutex> lock(mu);
  if (streams[dev] == nullptr) STNLS_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[dev], cudaStreamNonBlocking));
  return streams[dev];
}

}  // namespace

Fork::Fork(cudaStream_t main) : main_(main), side_(side_stream()) {
  STNLS_CUDA_CHECK(cudaEventCreateWithFlags(&forked_, cudaEventDisableTiming));
  cudaError_t e = cudaEventCreateWithFlags(&joined_, cudaEventDisableTiming);
  if (e == cudaSuccess) e = cudaEventRecord(forked_, main_);
  if (e == cudaSuccess) e = cudaStreamWaitEvent(side_, forked_, 0);
  if (e != cudaSuccess) {  // the destructor does not run for a constructor that throws
    cudaEventDestroy(forked_);
    if (joined_ != nullptr) cudaEventDestroy(joined_);
    check_cuda(e, "Fork");
  }
}

void Fork::join() {
  done_ = true;
  STNLS_CUDA_CHECK(cudaEventRecord(joined_, side_));
  STNLS_CUDA_CHECK(cudaStreamWaitEvent(main_, joined_, 0));
}

Fork::~Fork() {
  if (!done_ && joined_ != nullptr && cudaEventRecord(joined_, side_) == cudaSuccess)
    cudaStreamWaitEvent(main_, joined_, 0);  // never throw from a destructor
  // Destroying an event with work pending is allowed: its resources go when it completes.
  if (forked_ != nullptr) cudaEventDestroy(forked_);
  if (joined_ != nullptr) cudaEventDestroy(joined_);
}

Event::Event() { STNLS_CUDA_CHECK(cudaEventCreateWithFlags(&e_, cudaEventDisableTiming)); }
Event::~Event() { cudaEventDestroy(e_); }  // allowed with work pending
void Event::record(cudaStream_t s) { STNLS_CUDA_CHECK(cudaEventRecord(e_, s)); }
void Event::wait(cudaStream_t s) const { STNLS_CUDA_CHECK(cudaStreamWaitEvent(s, e_, 0)); }

}  // namespace cuda
}  // namespace stnls
