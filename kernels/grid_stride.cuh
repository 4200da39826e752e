/* The launch shape of the element-wise kernels (grid-stride loops over
 * 64-bit indices): FKM_GRID_THREADS threads per block, enough blocks for
 * count elements up to 65536 (grid-stride beyond that). */
#ifndef FKM_KERNELS_GRID_STRIDE_CUH
#define FKM_KERNELS_GRID_STRIDE_CUH

#include <stdint.h>

#define FKM_GRID_THREADS 256

static inline unsigned fkm_grid_for(int64_t count) {
  int64_t b = (count + FKM_GRID_THREADS - 1) / FKM_GRID_THREADS;
  if (b > 65536) b = 65536;
  return (unsigned)(b > 0 ? b : 1);
}

#endif
