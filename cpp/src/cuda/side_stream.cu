// The second stream of each device (one per device for the process, created on first use,
// never destroyed, like a library handle) and the fork/join events (one pair per host
// thread and device, so concurrent calls from several threads never share an event; a
// thread's calls reuse its pair: a wait enqueued on an event stays with the record it
// saw). Calls that share the side stream only queue behind each other there.
#include "cuda/side_stream.h"

#include <mutex>

#include "cuda/cuda_util.h"

namespace stnls {
namespace cuda {
namespace {

constexpr int kMaxDevices = 64;

int current_device() {
  int dev = 0;
  STNLS_CUDA_CHECK(cudaGetDevice(&dev));
  if (dev < 0 || dev >= kMaxDevices) throw BackendError("side stream: device index out of range");
  return dev;
}

cudaStream_t side_stream(int dev) {
  static std::mutex mu;
  static cudaStream_t streams[kMaxDevices] = {};
  std::lock_guard<std::mutex> lock(mu);
  if (streams[dev] == nullptr) STNLS_CUDA_CHECK(cudaStreamCreateWithFlags(&streams[dev], cudaStreamNonBlocking));
  return streams[dev];
}

struct EventPair {
  cudaEvent_t forked = nullptr, joined = nullptr;
};

// Created on a thread's first fork on the device; left to the process's end.
EventPair& thread_events(int dev) {
  thread_local EventPair pairs[kMaxDevices];
  EventPair& e = pairs[dev];
  if (e.forked == nullptr) STNLS_CUDA_CHECK(cudaEventCreateWithFlags(&e.forked, cudaEventDisableTiming));
  if (e.joined == nullptr) STNLS_CUDA_CHECK(cudaEventCreateWithFlags(&e.joined, cudaEventDisableTiming));
  return e;
}

}  // namespace

Fork::Fork(cudaStream_t main) : main_(main) {
  const int dev = current_device();
  side_ = side_stream(dev);
  const EventPair& e = thread_events(dev);
  forked_ = e.forked, joined_ = e.joined;
  STNLS_CUDA_CHECK(cudaEventRecord(forked_, main_));
  STNLS_CUDA_CHECK(cudaStreamWaitEvent(side_, forked_, 0));
}

void Fork::join() {
  done_ = true;
  STNLS_CUDA_CHECK(cudaEventRecord(joined_, side_));
  STNLS_CUDA_CHECK(cudaStreamWaitEvent(main_, joined_, 0));
}

Fork::~Fork() {
  if (!done_ && cudaEventRecord(joined_, side_) == cudaSuccess)
    cudaStreamWaitEvent(main_, joined_, 0);  // never throw from a destructor
}

}  // namespace cuda
}  // namespace stnls
