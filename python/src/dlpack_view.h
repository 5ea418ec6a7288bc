// Turns anything that speaks DLPack (an object with __dlpack__, or a DLPack capsule) into a
// checked stnls view. The capsule is kept alive for as long as the view is used.
#pragma once
#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <utility>

#include "stnls/view.h"

namespace stnls {
namespace py_bind {

namespace py = pybind11;

// One borrowed tensor: the capsule that owns the memory and the view over it.
struct Borrowed {
  py::object capsule;  // keeps the producer's memory alive
  View view;
  bool read_only = false;
  size_t nbytes = 0;  // size of the viewed elements in bytes
};

// `obj` may be None (-> empty view), a capsule or an object with __dlpack__. `stream` is
// the CUDA stream the work will run on (handed to __dlpack__ so the producer orders its
// pending work before ours); std::nullopt = the legacy default stream.
// With `raw`, any dtype is accepted (scratch memory; only nbytes matters).
Borrowed borrow(py::handle obj, const std::string& name, std::optional<intptr_t> stream, bool raw = false);

// As borrow, but the tensor will be written to: read-only memory is refused.
Borrowed borrow_output(py::handle obj, const std::string& name, std::optional<intptr_t> stream);

// A borrowed workspace (scratch memory of any dtype; None: none) as (pointer, bytes),
// checked to be on the device of `ref` (named `ref_name` in the error).
std::pair<void*, size_t> scratch(const Borrowed& ws, const std::string& ref_name, const Borrowed& ref);

}  // namespace py_bind
}  // namespace stnls
