/* The packed 16-bit layout of the tensor-core passes' operands (device
 * code): the assignment writes and reads it, the update reads x through it
 * (FKM_ASSIGN_FAST's copy, and the parity cascade's where it is exact). CUDA
 * only.
 *
 * A matrix of rows padded to 128 and dimensions padded to dp (a multiple of
 * 64) is stored as 128 x 64 tiles of 16 KB, tile (r / 128, j / 64) at element
 * offset (r / 128 * dp / 64 + j / 64) FKM_TILE, row-block major; inside a
 * tile, row r takes 64 elements (128 bytes) and its 16-byte segment s is
 * stored at segment s ^ (r % 8). That is the order the kernels want in
 * shared memory (the eight rows one ldmatrix phase reads hit eight bank
 * groups; it is also the 128-byte swizzle wgmma reads), so a tile moves as
 * one contiguous copy. Rows [128 i, n) of a packed matrix are a packed
 * matrix too. */
#ifndef FKM_KERNELS_PACKED_CUH
#define FKM_KERNELS_PACKED_CUH

#include <stdint.h>

#include "assign.cuh"

constexpr int FKM_TILE = FKM_MMA_BM * FKM_MMA_BK; /* 16-bit elements of a tile */

/* The scale exponent of a matrix packed for the parity cascade (fp16 of
 * v 2^s) whose max|v| has the bits mb: max|v| 2^s in [2^14, 2^15) (0 for
 * an all-zero matrix). */
__host__ __device__ inline int scale_exp(int mb) {
  if (mb <= 0) return 0;
  const int e = (mb >> 23) & 0xff;
  if (e == 0) { /* subnormal: the exponent of its leading bit */
    int m = mb & 0x7fffff, lead = 0;
    while (m > 1) m >>= 1, lead++;
    return 14 - (lead - 149);
  }
  return 14 - (e - 127);
}

/* The tile constants' compile-time check: every shift and mask below is
 * theirs, and the swizzle is the 128-byte one (eight 16-byte segments per
 * tile row, the rows of one ldmatrix phase on eight bank groups, wgmma's
 * SWIZZLE_128B), so a tile row must be 128 bytes: a different FKM_MMA_BK
 * needs another swizzle mode in packed_at, assign_mma's ldmatrix addressing
 * and sw128_desc, not only another number. */
static_assert(FKM_MMA_BM == 1 << FKM_MMA_BM_LOG2, "FKM_MMA_BM_LOG2 is log2(FKM_MMA_BM)");
static_assert(FKM_MMA_BK == 1 << FKM_MMA_BK_LOG2, "FKM_MMA_BK_LOG2 is log2(FKM_MMA_BK)");
static_assert(FKM_MMA_BK * 2 == 128, "tile rows of 128 bytes: the 128-byte swizzle");
static_assert(FKM_SEGS_PER_ROW == 8 && FKM_SEG_ELEMS == 8, "eight 16-byte segments per row");
static_assert(FKM_MMA_BM % FKM_SEGS_PER_ROW == 0, "whole swizzle periods per tile");

__host__ __device__ __forceinline__ int swz(int row, int seg) {
  return row * FKM_MMA_BK + ((seg ^ (row & (FKM_SEGS_PER_ROW - 1))) * FKM_SEG_ELEMS);
}
__host__ __device__ __forceinline__ int64_t packed_at(int64_t r, int64_t j, int64_t dp) {
  return ((r >> FKM_MMA_BM_LOG2) * (dp >> FKM_MMA_BK_LOG2) + (j >> FKM_MMA_BK_LOG2)) * FKM_TILE +
         swz((int)(r & (FKM_MMA_BM - 1)), (int)((j & (FKM_MMA_BK - 1)) / FKM_SEG_ELEMS)) +
         (j & (FKM_SEG_ELEMS - 1));
}

#endif
