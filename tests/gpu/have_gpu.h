// Whether the CUDA runtime sees a device: the kernel tests that launch
// without a flashkm context (test_gpu_objective) skip without one.
#ifndef FKM_TESTS_GPU_HAVE_GPU_H
#define FKM_TESTS_GPU_HAVE_GPU_H

#include <cuda_runtime_api.h>

inline bool have_gpu() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

#endif
