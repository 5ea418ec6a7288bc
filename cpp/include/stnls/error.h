// stnls error types: every argument check in the core throws one of these, with a
// message of the form "name: expected X, got Y". The Python binding maps them to
// ValueError / TypeError / RuntimeError.
#pragma once
#include <stdexcept>
#include <string>

namespace stnls {

// Base of every error the library throws.
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// A value, shape or range is wrong (Python: ValueError).
struct ValueError : Error {
  using Error::Error;
};
// A dtype or device kind is wrong (Python: TypeError).
struct TypeError : Error {
  using Error::Error;
};
// The backend failed while running (Python: RuntimeError), e.g. a CUDA launch error or
// CUDA memory passed to a build without CUDA.
struct BackendError : Error {
  using Error::Error;
};

}  // namespace stnls
