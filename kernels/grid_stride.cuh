/* The launch shape of the element-wise kernels (grid-stride loops over
 * 64-bit indices): FKM_GRID_THREADS threads per block, enough blocks for
 * count elements up to 65536 (grid-stride beyond that); and (CUDA
 * sources) the grid of a persistent kernel, the blocks that fit at once. */
#ifndef FKM_KERNELS_GRID_STRIDE_CUH
#define FKM_KERNELS_GRID_STRIDE_CUH

#include <stdint.h>

#define FKM_GRID_THREADS 256

static inline unsigned fkm_grid_for(int64_t count) {
  int64_t b = (count + FKM_GRID_THREADS - 1) / FKM_GRID_THREADS;
  if (b > 65536) b = 65536;
  return (unsigned)(b > 0 ? b : 1);
}

#ifdef __CUDACC__
#include <cuda_runtime.h>

/* *fit := the blocks of kern (threads each, smem dynamic bytes) that the
 * current device holds at once (at least 1): the grid of a persistent
 * kernel whose blocks take further items in turn. */
template <class K>
cudaError_t fkm_resident_blocks(K kern, int threads, size_t smem, int64_t *fit) {
  int per_sm = 0, dev = 0, sms = 0;
  cudaError_t e = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, threads, smem);
  if (e == cudaSuccess) e = cudaGetDevice(&dev);
  if (e == cudaSuccess) e = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
  *fit = (int64_t)(per_sm > 0 ? per_sm : 1) * (sms > 0 ? sms : 1);
  return e;
}
#endif

#endif
