/* fkm_pq_encode (include/flashkm.h): FAISS's ProductQuantizer::compute_codes
 * for sub-vectors of fewer than 16 dimensions. The arguments as the engines
 * take them, their checks, and the host encoder the CPU engine runs; the
 * per-sub-vector rule is kernels/faiss_scan.h's fkm_pq_nearest, which the
 * CUDA kernel (kernels/pq.cu) runs too. */
#ifndef FKM_PQ_H
#define FKM_PQ_H

#include <stdint.h>

#include "arith.h"
#include "flashkm.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fkm_pq_args {
  int check_finite;
  fkm_pq_rule rule;
  int64_t n, d, M;     /* dsub = d / M < 16 */
  int nbits;           /* 1..16; ksub = 2^nbits */
  const float *x;      /* (n, d) */
  const float *pq;     /* (M, ksub, dsub) */
  int64_t nlist;       /* coarse (nlist, d) and lists (n), or 0 and NULLs */
  const float *coarse;
  const int64_t *lists;
  uint8_t *codes;      /* (n, code_size) */
} fkm_pq_args;

static inline int64_t fkm_pq_code_size(int64_t M, int nbits) { return (M * nbits + 7) / 8; }

/** The failure for lists[i] = v outside [0, nlist) (one message for every
 *  engine). */
fkm_status fkm_pq_fail_list(fkm_errbuf *err, int64_t i, int64_t v, int64_t nlist);

/** Host lists (n) in [0, nlist): the first one outside fails. */
fkm_status fkm_pq_check_lists(fkm_errbuf *err, const int64_t *lists, int64_t n, int64_t nlist);

/** The checks of host arrays: when a->check_finite, x, the pq centroids and
 *  the coarse centroids finite (each array's first bad value by index);
 *  lists in range. */
fkm_status fkm_pq_check_host(fkm_errbuf *err, const fkm_pq_args *a);

/** Rows [i0, i1) of a host call, on OpenMP's threads (AVX2+FMA where the
 *  CPU has it and the codebook is whole groups of the rule's lanes).
 *  FKM_ERR_OUT_OF_MEMORY when its scratch cannot be allocated. */
fkm_status fkm_pq_encode_host(fkm_errbuf *err, const fkm_pq_args *a, int64_t i0, int64_t i1);

/** The index sub-quantizer m of a host call gives the sub-vector r. */
typedef int64_t (*fkm_pq_nearest_fn)(const void *self, const float *r, int64_t m);

/** Rows [i0, i1) on OpenMP's threads: each row's sub-vectors (residuals
 *  when a->coarse is set) through nearest, packed into a->codes. */
void fkm_pq_rows(const fkm_pq_args *a, int64_t i0, int64_t i1, fkm_pq_nearest_fn nearest,
                 const void *self);

/** fkm_pq_slices once its arguments are checked: blocks of rows on
 *  OpenMP's threads, each block's slices one after the other. */
void fkm_pq_slice_rows(const float *x, int64_t n, int64_t d, int64_t M, float *out);

/** The AVX2+FMA rows (plugin/pq_avx2.c): 0, or -1 without memory. */
int fkm_pq_encode_rows_avx2(const fkm_pq_args *a, int64_t i0, int64_t i1);

#ifdef __cplusplus
}
#endif

#endif
