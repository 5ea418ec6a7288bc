// DLPack import: capsule -> stnls view with the dtype, device, shape and strides checked.
#include "dlpack_view.h"

#include "dlpack.h"
#include "stnls/error.h"

namespace stnls {
namespace py_bind {
namespace {

DType to_dtype(const DLDataType& t, const std::string& name) {
  if (t.lanes == 1 && t.code == kDLFloat && t.bits == 32) return DType::Float32;
  if (t.lanes == 1 && t.code == kDLFloat && t.bits == 64) return DType::Float64;
  if (t.lanes == 1 && t.code == kDLInt && t.bits == 32) return DType::Int32;
  const char* kinds[] = {"int", "uint", "float", "handle", "bfloat", "complex", "bool"};
  std::string got = (t.code < 7 ? kinds[t.code] : "code" + std::to_string(t.code)) + std::to_string(t.bits);
  throw TypeError(name + ": expected float32, float64 or int32 data, got " + got);
}

Device to_device(const DLDevice& d, const std::string& name) {
  switch (d.device_type) {
    case kDLCPU:
    case kDLCUDAHost:
      return Device{DeviceKind::CPU, 0};
    case kDLCUDA:
    case kDLCUDAManaged:
      return Device{DeviceKind::CUDA, d.device_id};
    default:
      throw TypeError(name + ": expected CPU or CUDA memory, got DLPack device type " +
                      std::to_string(d.device_type));
  }
}

View from_dltensor(const DLTensor& t, const std::string& name, bool raw, size_t& nbytes) {
  View v;
  if (t.ndim > kMaxDims)
    throw ValueError(name + ": expected at most " + std::to_string(kMaxDims) + " dimensions, got " +
                     std::to_string(t.ndim));
  v.dtype = raw ? DType::Int32 : to_dtype(t.dtype, name);
  v.device = to_device(t.device, name);
  v.ndim = t.ndim;
  int64_t stride = 1;
  for (int d = t.ndim - 1; d >= 0; --d) {
    v.shape[d] = t.shape[d];
    v.strides[d] = t.strides ? t.strides[d] : stride;
    stride *= t.shape[d];
  }
  nbytes = static_cast<size_t>(stride) * ((t.dtype.bits * t.dtype.lanes + 7) / 8);
  v.data = static_cast<char*>(t.data) + t.byte_offset;
  return v;
}

// Asks the producer for a capsule, preferring the versioned (read-only aware) protocol.
py::object export_capsule(py::handle obj, const std::string& name, std::optional<intptr_t> stream) {
  if (!py::hasattr(obj, "__dlpack__"))
    throw TypeError(name + ": expected an array or tensor supporting DLPack (__dlpack__), got " +
                    std::string(py::str(py::type::of(obj).attr("__name__"))));
  py::dict kw;
  if (py::hasattr(obj, "__dlpack_device__")) {
    py::tuple dev = obj.attr("__dlpack_device__")();
    int type = dev[0].cast<int>();
    // CUDA producers must be told the consumer's stream. DLPack forbids 0 (ambiguous): the
    // legacy default stream, which is what a null/0 handle means to us, is spelled 1.
    if (type == kDLCUDA || type == kDLCUDAManaged) {
      const intptr_t s = stream.value_or(0);
      kw["stream"] = s == 0 ? intptr_t(1) : s;
    }
  }
  try {
    py::dict kwv = kw;
    kwv["max_version"] = py::make_tuple(1, 0);
    return obj.attr("__dlpack__")(**kwv);
  } catch (py::error_already_set& e) {
    if (!e.matches(PyExc_TypeError)) throw;
  }
  return obj.attr("__dlpack__")(**kw);  // producer without the versioned protocol
}

}  // namespace

Borrowed borrow(py::handle obj, const std::string& name, std::optional<intptr_t> stream, bool raw) {
  Borrowed b;
  if (obj.is_none()) return b;
  py::object cap = PyCapsule_CheckExact(obj.ptr()) ? py::reinterpret_borrow<py::object>(obj)
                                                   : export_capsule(obj, name, stream);
  const char* cap_name = PyCapsule_GetName(cap.ptr());
  std::string cname = cap_name ? cap_name : "";
  if (cname == "dltensor_versioned") {
    auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap.ptr(), cap_name));
    if (m->version.major > 1)
      throw TypeError(name + ": expected DLPack version 1.x, got " + std::to_string(m->version.major));
    b.view = from_dltensor(m->dl_tensor, name, raw, b.nbytes);
    b.read_only = (m->flags & DLPACK_FLAG_BITMASK_READ_ONLY) != 0;
  } else if (cname == "dltensor") {
    auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap.ptr(), cap_name));
    b.view = from_dltensor(m->dl_tensor, name, raw, b.nbytes);
  } else {
    throw TypeError(name + ": expected an unused DLPack capsule, got a capsule named '" + cname + "'");
  }
  if (PyErr_Occurred()) throw py::error_already_set();
  // The capsule stays unconsumed: its own destructor frees the producer's tensor.
  b.capsule = cap;
  return b;
}

Borrowed borrow_output(py::handle obj, const std::string& name, std::optional<intptr_t> stream) {
  if (obj.is_none()) throw ValueError(name + ": expected an output array, got None");
  Borrowed b = borrow(obj, name, stream);
  if (b.read_only) throw ValueError(name + ": expected a writable array, got a read-only one");
  return b;
}

std::pair<void*, size_t> scratch(const Borrowed& ws, const std::string& ref_name, const Borrowed& ref) {
  if (ws.view.empty()) return {nullptr, 0};
  if (ws.view.device.kind != ref.view.device.kind || ws.view.device.index != ref.view.device.index)
    throw ValueError("workspace: expected memory on the device of " + ref_name);
  return {ws.view.data, ws.nbytes};
}

}  // namespace py_bind
}  // namespace stnls
