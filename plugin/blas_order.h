/* The summation order of a BLAS's sgemm, learned by probing it
 * (docs/profiles.md, "The BLAS's order, learned"). FAISS's BLAS path takes
 * every dot product from one call shape,
 *   sgemm("T", "N", ny, nx, d, 1, y, d, x, d, 0, ip, ny),
 * ip[i * ny + j] = <y_j, x_i>, whose order belongs to the BLAS, the CPU
 * kernel it picked and its threads. The model learned here: the depth d is
 * cut into segments [seg[s], seg[s + 1]) (the BLAS's blocking along d, the
 * same for every element), each element sums every segment in `lanes`
 * interleaved fma chains (term k in chain (k - seg[s]) mod lanes, each from
 * 0), folds the chains pairwise (chain l += chain l + lanes / 2, halving),
 * and adds the segments' sums in order. Each element's lanes come from
 * probes of the call itself; every element is then checked against the BLAS
 * on two draws of data, and one the model does not reproduce is marked
 * unmodelled (lanes 0): the model never claims an element it has not
 * reproduced. */
#ifndef FKM_BLAS_ORDER_H
#define FKM_BLAS_ORDER_H

#include <stdint.h>

#include "flashkm.h"
#include "status.h"

enum { FKM_BLAS_ORDER_MAX_SEGS = 64, FKM_BLAS_ORDER_MAX_LANES = 16 };

typedef struct fkm_blas_order {
  int64_t ny, nx, d; /* the call */
  int nseg;
  int64_t seg[FKM_BLAS_ORDER_MAX_SEGS + 1];
  uint8_t *lanes;    /* (nx * ny), element (i, j) at i * ny + j: 1, 2, 4, 8, 16, or 0 */
  int64_t modelled;  /* elements with lanes > 0 */
} fkm_blas_order;

/* Learns sgemm's order for the call (ny, nx, d): 2 to 6 probe calls and two
 * checks of that shape (none at d = 1: one term, one order). FKM_ERR_UNSUPPORTED when no
 * segment structure is found (no element sums segment 0 in one chain) or
 * d > 65536; o->lanes is then NULL. Free with fkm_blas_order_free. */
fkm_status fkm_blas_order_learn(fkm_sgemm_fn sgemm, int64_t ny, int64_t nx, int64_t d,
                                fkm_blas_order *o, fkm_errbuf *err);

/* Element (i, j)'s dot product of y_j and x_i (d floats each) in the learned
 * order; lanes must be > 0. */
float fkm_blas_order_dot(const fkm_blas_order *o, int64_t i, int64_t j, const float *yj,
                         const float *xi);

void fkm_blas_order_free(fkm_blas_order *o);

#endif
