// Internal helpers of the CUDA backend: checked CUDA calls (errors become
// stnls::BackendError with CUDA's own message) and a guard that switches to the data's
// device for the duration of a call and restores the caller's device afterwards.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "stnls/error.h"

namespace stnls {
namespace cuda {

inline void check_cuda(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw BackendError(std::string("CUDA error in ") + what + ": " + cudaGetErrorName(e) + ": " +
                       cudaGetErrorString(e));
}

// Checks a launch: configuration errors now, and any earlier asynchronous error.
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

#define STNLS_CUDA_CHECK(expr) ::stnls::cuda::check_cuda((expr), #expr)

class DeviceGuard {
 public:
  explicit DeviceGuard(int index) {
    check_cuda(cudaGetDevice(&prev_), "cudaGetDevice");
    if (prev_ != index) {
      check_cuda(cudaSetDevice(index), "cudaSetDevice");
      switched_ = true;
    }
  }
  ~DeviceGuard() {
    if (switched_) cudaSetDevice(prev_);  // never throw from a destructor
  }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int prev_ = 0;
  bool switched_ = false;
};

inline cudaStream_t as_stream(void* s) { return static_cast<cudaStream_t>(s); }

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// The most dynamic shared memory a block may opt in to on the current device.
inline int max_optin_smem() {
  int optin = 0, dev = 0;
  STNLS_CUDA_CHECK(cudaGetDevice(&dev));
  STNLS_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return optin;
}

}  // namespace cuda
}  // namespace stnls
