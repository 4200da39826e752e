/* The summation order of a BLAS's sgemm, learned by probing it
 * (docs/profiles.md, "The BLAS's order, learned"). FAISS's BLAS path takes
 * every dot product from one call shape,
 *   sgemm("T", "N", ny, nx, d, 1, y, d, x, d, 0, ip, ny),
 * ip[i * ny + j] = <y_j, x_i>, whose order belongs to the BLAS, the CPU
 * kernel it picked and its threads. The model learned here: the depth d is
 * cut into segments [seg[s], seg[s + 1]) (the BLAS's blocking along d, the
 * same for every element), and each element sums every segment as its
 * code says (kernels/blas_code.h: interleaved chains folded pairwise, where
 * a loop remainder goes, fused or rounded products), the segments' sums
 * added in order. Each element's chains come from probes of the call
 * itself; every element is then checked against the BLAS on three draws of
 * data, which also pick its variant, and one the model does not reproduce
 * is marked unmodelled (code 0): the model never claims an element it has
 * not reproduced. */
#ifndef FKM_BLAS_ORDER_H
#define FKM_BLAS_ORDER_H

#include <stdint.h>

#include "blas_code.h"
#include "flashkm.h"
#include "status.h"

enum { FKM_BLAS_ORDER_MAX_SEGS = 64, FKM_BLAS_ORDER_MAX_LANES = 16 };

typedef struct fkm_blas_order {
  int64_t ny, nx, d; /* the call */
  int nseg;
  int64_t seg[FKM_BLAS_ORDER_MAX_SEGS + 1];
  uint8_t *code;     /* (nx * ny), element (i, j) at i * ny + j: blas_code.h, 0 unmodelled */
  int64_t modelled;  /* elements with a code */
} fkm_blas_order;

/* Learns sgemm's order for the call (ny, nx, d) from calls of that shape
 * (none at d = 1: one term, one order): one per chain count tried (1 to
 * 16), d / ny for the segments, the structural probes that can still tell
 * an element's variants apart, one for fused products, three draws. FKM_ERR_UNSUPPORTED when no
 * segment structure is found (no element sums segment 0 in one chain) or
 * d > 65536; o->code is then NULL. Free with fkm_blas_order_free. */
fkm_status fkm_blas_order_learn(fkm_sgemm_fn sgemm, int64_t ny, int64_t nx, int64_t d,
                                fkm_blas_order *o, fkm_errbuf *err);

/* The data the learner's final choice reads: `draws` draws of y (ny x d
 * each, one after the other), x (nx x d each) and the BLAS's ip (nx x ny
 * each), and per element the variants still alive after the probes (bit
 * v: kernels/blas_code.h, fkm_blas_variant). */
typedef struct fkm_blas_draws {
  int draws;
  const float *y, *x, *ip;
  const uint16_t *alive;
} fkm_blas_draws;

/* The final choice: o->code[e] (its lanes set, the rest still 0) becomes
 * the first alive variant whose dot products equal the BLAS's on every
 * draw, or 0. fkm_blas_order_choose_host does it on this process's
 * threads; the CUDA engine does it on its device. */
typedef fkm_status (*fkm_blas_choose_fn)(void *user, fkm_blas_order *o, const fkm_blas_draws *dr,
                                         fkm_errbuf *err);
fkm_status fkm_blas_order_choose_host(void *user, fkm_blas_order *o, const fkm_blas_draws *dr,
                                      fkm_errbuf *err);

/* fkm_blas_order_learn with the final choice made by `choose` (NULL: on
 * the host). */
fkm_status fkm_blas_order_learn_with(fkm_sgemm_fn sgemm, int64_t ny, int64_t nx, int64_t d,
                                     fkm_blas_choose_fn choose, void *choose_user,
                                     fkm_blas_order *o, fkm_errbuf *err);

/* Element (i, j)'s dot product of y_j and x_i (d floats each) in the learned
 * order; its code must be nonzero. */
float fkm_blas_order_dot(const fkm_blas_order *o, int64_t i, int64_t j, const float *yj,
                         const float *xi);

void fkm_blas_order_free(fkm_blas_order *o);

/* The threads sgemm's library will run on (omp_get_max_threads of the
 * OpenMP runtime it resolves, else openblas_get_num_threads; 0 when
 * neither is found): the order may depend on them, so a learned order is
 * kept per thread count. */
int fkm_blas_threads(fkm_sgemm_fn sgemm);

#endif
