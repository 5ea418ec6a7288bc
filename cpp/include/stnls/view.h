// Non-owning tensor views handed to the core: data pointer, dtype, shape and strides
// (in elements, any sign), and the device that holds the data. The caller owns memory.
#pragma once
#include <cstdint>
#include <initializer_list>

namespace stnls {

enum class DType : int { Float32 = 0, Float64 = 1, Int32 = 2 };
enum class DeviceKind : int { CPU = 0, CUDA = 1 };

struct Device {
  DeviceKind kind = DeviceKind::CPU;
  int index = 0;
};

constexpr int kMaxDims = 8;

// A view of read-only (Data = const void) or writable (Data = void) memory.
template <class Data>
struct BasicView {
  Data* data = nullptr;
  DType dtype = DType::Float32;
  int ndim = 0;
  int64_t shape[kMaxDims] = {};
  int64_t strides[kMaxDims] = {};  // elements, not bytes
  Device device{};

  bool empty() const { return data == nullptr; }
  int64_t numel() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) n *= shape[i];
    return n;
  }
};

using ConstView = BasicView<const void>;
using View = BasicView<void>;

inline ConstView as_const(const View& v) {
  ConstView c;
  c.data = v.data;
  c.dtype = v.dtype;
  c.ndim = v.ndim;
  for (int i = 0; i < kMaxDims; ++i) {
    c.shape[i] = v.shape[i];
    c.strides[i] = v.strides[i];
  }
  c.device = v.device;
  return c;
}

// A contiguous (row-major) view over `data` with the given shape.
template <class Data>
BasicView<Data> make_view(Data* data, DType dtype, std::initializer_list<int64_t> shape,
                          Device device = {}) {
  BasicView<Data> v;
  v.data = data;
  v.dtype = dtype;
  v.ndim = static_cast<int>(shape.size());
  int i = 0;
  for (int64_t s : shape) v.shape[i++] = s;
  int64_t stride = 1;
  for (int d = v.ndim - 1; d >= 0; --d) {
    v.strides[d] = stride;
    stride *= v.shape[d];
  }
  v.device = device;
  return v;
}

}  // namespace stnls
