// Internal helpers for argument checks: messages of the form "name: expected X, got Y".
// Messages are built with std::string alone, not iostreams: formatting through a stream
// crashed in a process whose C++ runtime differed from the one the module was built with.
#pragma once
#include <cstdint>
#include <string>
#include <type_traits>

#include "stnls/error.h"
#include "stnls/view.h"

namespace stnls {
namespace detail {

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::Float32: return "float32";
    case DType::Float64: return "float64";
    case DType::Int32: return "int32";
  }
  return "unknown";
}

inline const char* device_name(DeviceKind d) { return d == DeviceKind::CUDA ? "cuda" : "cpu"; }

inline std::string text(const std::string& s) { return s; }
inline std::string text(const char* s) { return s; }
template <class I, class = std::enable_if_t<std::is_integral<I>::value>>
std::string text(I i) {
  return std::to_string(i);
}

// "(a, b, c)" of a list of sizes.
template <class It>
std::string tuple_str(It begin, It end) {
  std::string s = "(";
  int n = 0;
  for (It it = begin; it != end; ++it) s += (n++ ? ", " : "") + std::to_string(*it);
  return s + (n == 1 ? ",)" : ")");
}

template <class V>
std::string shape_str(const V& v) {
  return tuple_str(v.shape, v.shape + v.ndim);
}

template <class E = ValueError, class A, class B>
[[noreturn]] void fail(const std::string& name, const A& expected, const B& got) {
  throw E(name + ": expected " + text(expected) + ", got " + text(got));
}

template <class V>
void check_ndim(const std::string& name, const V& v, int ndim) {
  if (v.ndim != ndim) fail(name, std::to_string(ndim) + " dimensions", std::to_string(v.ndim) + " dimensions " + shape_str(v));
}

template <class V>
void check_dtype(const std::string& name, const V& v, DType dtype) {
  if (v.dtype != dtype) fail<TypeError>(name, dtype_name(dtype), dtype_name(v.dtype));
}

// Shape must equal `expected` (given as a view-like shape list).
template <class V>
void check_shape(const std::string& name, const V& v, std::initializer_list<int64_t> expected) {
  bool ok = v.ndim == static_cast<int>(expected.size());
  int i = 0;
  for (int64_t e : expected) ok = ok && v.shape[i++] == e;
  if (!ok) fail(name, "shape " + tuple_str(expected.begin(), expected.end()), "shape " + shape_str(v));
}

template <class V>
void check_device(const std::string& name, const V& v, Device d) {
  if (v.device.kind != d.kind || v.device.index != d.index) {
    fail(name, std::string(device_name(d.kind)) + ":" + std::to_string(d.index) + " (the device of the video)",
         std::string(device_name(v.device.kind)) + ":" + std::to_string(v.device.index));
  }
}

// A writable view with the shape of `v`, for checks that only read shapes.
inline View shape_of(const ConstView& v) {
  View w;
  w.data = const_cast<void*>(v.data);
  w.dtype = v.dtype;
  w.ndim = v.ndim;
  for (int i = 0; i < kMaxDims; ++i) w.shape[i] = v.shape[i], w.strides[i] = v.strides[i];
  w.device = v.device;
  return w;
}

template <class V>
void check_not_null(const std::string& name, const V& v) {
  if (v.data == nullptr && v.numel() > 0) fail(name, "a non-null data pointer", "null");
}

// A video (B, T, C, H, W) or (B, HD, T, C/HD, H, W) must not walk its frames, rows or columns
// backwards: the kernels mark a read outside the video with a negative offset in that
// plane, so a negative T, H or W stride (NumPy's a[..., ::-1]) would read zeros. Batch, head
// and channel strides may be negative.
template <class V>
void check_plane_strides(const std::string& name, const V& v) {
  const int axes[3] = {v.ndim == 6 ? 2 : 1, v.ndim - 2, v.ndim - 1};
  for (int i : axes)
    if (v.strides[i] < 0 && v.shape[i] > 1)
      fail(name, "non-negative strides along T, H and W (pass a contiguous copy)",
           "strides " + tuple_str(v.strides, v.strides + v.ndim));
}

// An output must give each element its own memory: a zero stride (a broadcast view such as
// torch's expand()) or strides whose elements overlap would make writes land on each other,
// a silent wrong result. The rule: sorted by |stride|, each dimension of size > 1 steps past
// the span of the smaller ones. (A rare interleaved layout that still repeats no element is
// refused too: pass a contiguous tensor.)
template <class V>
void check_output_layout(const std::string& name, const V& v) {
  int64_t st[kMaxDims], sz[kMaxDims];
  int n = 0;
  for (int i = 0; i < v.ndim; ++i)
    if (v.shape[i] > 1) {
      // insertion by |stride|
      const int64_t a = v.strides[i] < 0 ? -v.strides[i] : v.strides[i];
      int j = n++;
      for (; j > 0 && st[j - 1] > a; --j) st[j] = st[j - 1], sz[j] = sz[j - 1];
      st[j] = a, sz[j] = v.shape[i];
    }
  int64_t span = 0;  // largest offset the smaller strides reach
  for (int j = 0; j < n; ++j) {
    if (st[j] <= span || st[j] > (INT64_MAX - span) / (sz[j] - 1))
      fail(name, "an output whose elements do not overlap (no zero or overlapping strides; pass a contiguous tensor)",
           "shape " + shape_str(v) + " with strides " + tuple_str(v.strides, v.strides + v.ndim));
    span += st[j] * (sz[j] - 1);
  }
}

}  // namespace detail
}  // namespace stnls
