// One dispatch point per op: turns the runtime dtype and dist_type into template
// arguments (in the manner of FlashAttention's static_switch.h).
#pragma once
#include "stnls/error.h"
#include "stnls/search.h"

// Runs the body with `scalar_t` bound to the float type of `dtype`.
#define STNLS_FLOAT_SWITCH(dtype, ...)                                   \
  [&] {                                                                   \
    if ((dtype) == ::stnls::DType::Float32) {                             \
      using scalar_t = float;                                             \
      return __VA_ARGS__();                                               \
    } else if ((dtype) == ::stnls::DType::Float64) {                      \
      using scalar_t = double;                                            \
      return __VA_ARGS__();                                               \
    }                                                                     \
    throw ::stnls::TypeError("dtype: expected float32 or float64");       \
  }()

// Runs the body with `constexpr bool kL2` bound to dist_type == L2.
#define STNLS_DIST_SWITCH(dist_type, ...)                                 \
  [&] {                                                                   \
    if ((dist_type) == ::stnls::DistType::L2) {                           \
      constexpr bool kL2 = true;                                          \
      return __VA_ARGS__();                                               \
    } else {                                                              \
      constexpr bool kL2 = false;                                         \
      return __VA_ARGS__();                                               \
    }                                                                     \
  }()
