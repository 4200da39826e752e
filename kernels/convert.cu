/* Data movement kernels: grid-stride loops over elements, 64-bit indices.
 * Conversions are exact (fp16 and bf16 are subsets of fp32). */
#include "dispatch.cuh"
#include "convert.cuh"
#include "grid_stride.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "flashkm.h"

namespace {

template <typename T>
__device__ __forceinline__ float to_float(T v);
template <>
__device__ __forceinline__ float to_float<float>(float v) { return v; }
template <>
__device__ __forceinline__ float to_float<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_float<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

template <typename T>
__global__ void convert(const T *__restrict__ src, const int64_t *__restrict__ rows,
                        int64_t n, int64_t d, float *__restrict__ out, int64_t src_stride,
                        int64_t out_stride) {
  src += blockIdx.y * src_stride; /* problem blockIdx.y */
  out += blockIdx.y * out_stride;
  const int64_t total = n * d;
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
       t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = t / d, j = t % d;
    const int64_t r = rows ? rows[i] : i;
    out[t] = to_float<T>(src[r * d + j]);
  }
}

/* Non-finite test on the raw encoding: all exponent bits set. */
template <typename T>
__device__ __forceinline__ bool nonfinite(T v);
template <>
__device__ __forceinline__ bool nonfinite<float>(float v) { return !isfinite(v); }
template <>
__device__ __forceinline__ bool nonfinite<__half>(__half v) {
  return (__half_as_ushort(v) & 0x7c00u) == 0x7c00u;
}
template <>
__device__ __forceinline__ bool nonfinite<__nv_bfloat16>(__nv_bfloat16 v) {
  return (__bfloat16_as_ushort(v) & 0x7f80u) == 0x7f80u;
}

template <typename T>
__global__ void first_nonfinite(const T *__restrict__ src, int64_t count,
                                unsigned long long *first) {
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < count;
       t += (int64_t)gridDim.x * blockDim.x)
    if (nonfinite<T>(src[t])) atomicMin(first, (unsigned long long)t);
}

/* The problems' elements back to back in src and out (no row list): out[t]
 * := float(src[t]) over all of them, one flat pass; CHECK: the least t of a
 * non-finite element min'ed into *first (first_nonfinite's answer over
 * them, in the same pass). */
template <typename T, bool CHECK>
__global__ void convert_flat(const T *__restrict__ src, int64_t total, float *__restrict__ out,
                             unsigned long long *first) {
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < total;
       t += (int64_t)gridDim.x * blockDim.x) {
    const T v = src[t];
    if (CHECK && nonfinite<T>(v)) atomicMin(first, (unsigned long long)t);
    out[t] = to_float<T>(v);
  }
}

__global__ void first_bad_weight(const float *__restrict__ w, int64_t n,
                                 unsigned long long *first) {
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n;
       t += (int64_t)gridDim.x * blockDim.x)
    if (!isfinite(w[t]) || w[t] < 0.0f) atomicMin(first, (unsigned long long)t);
}

__global__ void widen(const int32_t *__restrict__ in, int64_t n, int64_t *__restrict__ out) {
  for (int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; t < n;
       t += (int64_t)gridDim.x * blockDim.x)
    out[t] = in[t];
}

}  // namespace

extern "C" cudaError_t fkm_launch_convert(const fkm_convert_args *a, cudaStream_t s) {
  const int64_t total = a->n * a->d, problems = a->problems > 1 ? a->problems : 1;
  const bool flat = !a->rows && (problems == 1 || (a->src_stride == total &&
                                                   a->out_stride == total));
  if (a->first && !flat) return cudaErrorInvalidValue;
  if (total == 0) return cudaSuccess;
  if (flat)
    return by_dtype(
        a->dtype,
        [&](auto type) {
          using T = decltype(type);
          const int64_t all = problems * total;
          auto kern = a->first ? convert_flat<T, true> : convert_flat<T, false>;
          kern<<<fkm_grid_for(all), FKM_GRID_THREADS, 0, s>>>(static_cast<const T *>(a->src),
                                                               all, a->out, a->first);
          return cudaGetLastError();
        },
        cudaErrorInvalidValue);
  return by_dtype(
      a->dtype,
      [&](auto type) {
        using T = decltype(type);
        const T *src = static_cast<const T *>(a->src);
        for (int64_t b0 = 0; b0 < problems; b0 += 65535) { /* grid.y <= 65535 */
          const int64_t pb = problems - b0 < 65535 ? problems - b0 : 65535;
          /* each problem's blocks, at most 65536 in all */
          const int64_t most = 65536 / pb > 0 ? 65536 / pb : 1, g = fkm_grid_for(total);
          convert<T><<<dim3((unsigned)(g < most ? g : most), (unsigned)pb), FKM_GRID_THREADS, 0,
                       s>>>(
              src + b0 * a->src_stride, a->rows, a->n, a->d, a->out + b0 * a->out_stride,
              a->src_stride, a->out_stride);
          const cudaError_t e = cudaGetLastError();
          if (e != cudaSuccess) return e;
        }
        return cudaSuccess;
      },
      cudaErrorInvalidValue);
}

extern "C" cudaError_t fkm_launch_first_nonfinite(int dtype, const void *src, int64_t count,
                                                  unsigned long long *first, cudaStream_t s) {
  if (count == 0) return cudaSuccess;
  const unsigned g = fkm_grid_for(count);
  return by_dtype(
      dtype,
      [&](auto type) {
        using T = decltype(type);
        first_nonfinite<T><<<g, FKM_GRID_THREADS, 0, s>>>(static_cast<const T *>(src), count,
                                                           first);
        return cudaGetLastError();
      },
      cudaErrorInvalidValue);
}

extern "C" cudaError_t fkm_launch_first_bad_weight(const float *w, int64_t n,
                                                   unsigned long long *first, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  first_bad_weight<<<fkm_grid_for(n), FKM_GRID_THREADS, 0, s>>>(w, n, first);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_widen_labels(const int32_t *in, int64_t n, int64_t *out,
                                               cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  widen<<<fkm_grid_for(n), FKM_GRID_THREADS, 0, s>>>(in, n, out);
  return cudaGetLastError();
}
