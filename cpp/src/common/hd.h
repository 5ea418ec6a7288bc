// STNLS_HD marks functions shared by host and device code (the CPU loop and the kernels
// call the same maths).
#pragma once
#if defined(__CUDACC__)
#define STNLS_HD __host__ __device__ __forceinline__
#else
#define STNLS_HD inline
#endif
