/* How one element of a BLAS call sums its dot product, in one byte: the
 * model plugin/blas_order.c learns and kernels/profile.cu replays (host and
 * device read the same code). 0: not modelled. Otherwise, in each segment
 * [b, e) of the depth:
 *   - lanes u (bits 0-2: log2(u) + 1; u = 1, 2, 4, 8 or 16) chains, each
 *     from 0; term t of the main part goes to chain (t - b) mod u;
 *   - the main part is the whole segment (group code 0), or its first
 *     floor((e - b) / G) G terms with G = 2^g (bits 3-5: g, 1 .. 7): the
 *     terms after it (a kernel's loop remainder) go to chain 0 in order;
 *   - each term is fmaf(x_t, y_t, acc), or with bit 6 (a kernel without
 *     FMA) acc + fl(x_t y_t);
 *   - the chains fold pairwise (chain l += chain l + w / 2, w halving from
 *     u), and the segments' sums are added in order. */
#ifndef FKM_KERNELS_BLAS_CODE_H
#define FKM_KERNELS_BLAS_CODE_H

#include <stdint.h>

#if defined(__CUDACC__)
#define FKM_CODE_HD __host__ __device__
#else
#define FKM_CODE_HD
#endif

FKM_CODE_HD static inline uint8_t fkm_blas_code(int lanes_log2, int group_log2, int rounded) {
  return (uint8_t)((lanes_log2 + 1) | (group_log2 << 3) | (rounded ? 0x40 : 0));
}
FKM_CODE_HD static inline int fkm_blas_code_lanes(uint8_t c) {
  return c ? 1 << ((c & 7) - 1) : 0;
}
/* The end of segment [b, e)'s main part. */
FKM_CODE_HD static inline int64_t fkm_blas_code_main_end(uint8_t c, int64_t b, int64_t e) {
  const int g = (c >> 3) & 7;
  return g ? b + (e - b) / ((int64_t)1 << g) * ((int64_t)1 << g) : e;
}
FKM_CODE_HD static inline int fkm_blas_code_rounded(uint8_t c) { return (c >> 6) & 1; }

/* The learner's variants of an element of 2^ul chains (plugin/blas_order.c):
 * v odd, rounded products; v < 2, no loop remainder, else the remainder
 * after groups of u 2^(v / 2 - 1) terms. The code, or 0 where there is no
 * such variant (one chain has no remainder; groups past 128). */
enum { FKM_BLAS_VARIANTS = 16 };
FKM_CODE_HD static inline uint8_t fkm_blas_variant(int ul, int v) {
  const int gi = v >> 1, g = gi - 1 + ul;
  if (gi == 0) return fkm_blas_code(ul, 0, v & 1);
  return ul == 0 || g > 7 ? 0 : fkm_blas_code(ul, g, v & 1);
}


#if defined(__CUDACC__) && defined(FKM_KERNELS_ASSIGN_CUH)
/* The code and segments of the dot product of row `row` (of the launch)
 * and centroid j of k under a BLAS view (assign.cuh, fkm_blas_view); code
 * 0 where the model holds no order (the caller keeps the fmaf chain). */
__device__ __forceinline__ uint8_t fkm_blas_view_code(const fkm_blas_view &v, int64_t row,
                                                      int64_t j, int64_t k,
                                                      const int32_t **seg) {
  const int64_t g = v.row0 + row, ib = g / v.qbs, i = g - ib * v.qbs;
  const int64_t nx = v.rows - ib * v.qbs < v.qbs ? v.rows - ib * v.qbs : v.qbs;
  const int64_t jb = j / v.dbs, jj = j - jb * v.dbs;
  const int64_t ny = k - jb * v.dbs < v.dbs ? k - jb * v.dbs : v.dbs;
  const int shape = (nx < v.qbs ? 2 : 0) + (ny < v.dbs ? 1 : 0);
  *seg = v.seg[shape];
  return v.code[shape] ? v.code[shape][i * ny + jj] : 0;
}
#endif
#endif
