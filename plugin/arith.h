/* FAISS's arithmetic as one FAISS build computes it: the traits a profile
 * (include/flashkm.h, fkm_profile) stands for, read by the Lloyd loop and
 * by every engine. docs/profiles.md describes each trait and where in
 * FAISS's sources it comes from. */
#ifndef FKM_ARITH_H
#define FKM_ARITH_H

#include <stdint.h>

#include "flashkm.h"
#include "faiss_scan.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Which code of FAISS's k=1 flat search serves a call (knn_L2sqr /
 *  knn_inner_product with one result). */
typedef enum fkm_path {
  FKM_PATH_BLAS = 0,  /* sgemm dot products (flashkm's fma chain stands in),
                         then the formula and scan of the build */
  FKM_PATH_FUSED = 1, /* L2, small d: exhaustive_L2sqr_fused_cmax */
  FKM_PATH_DIRECT = 2 /* few rows: fvec_L2sqr / fvec_inner_product per pair */
} fkm_path;

typedef struct fkm_arith {
  int32_t version; /* 0: flashkm's reference */
  fkm_simd simd;
  fkm_loop_order norm, l2, ip;
  int direct_nxd;        /* direct when nx * d < threshold (1.14.2+); else nx < threshold */
  int64_t threshold;     /* < 0: never direct (flashkm) */
  int cmax_lanes;        /* L2 BLAS path: 0 the plain formula and a sequential
                            scan; 8 / 16 exhaustive_L2sqr_blas_cmax's lanes */
  int fused_max_d;       /* 0, 16 (AVX2 kernel) or 32 (AVX-512 kernel) */
  int fused_lanes;       /* 8 or 16 */
  int fused_norm4_hadd;  /* the AVX-512 kernel's l2_sqr<4>: (p0 + p1) + (p2 + p3) */
  int top1_lanes;        /* Top1 add_results of the BLAS paths: 1 sequential,
                            8 / 16 lanes (1.15) */
  int weighted_fma;      /* c += x * w is one fma (AVX builds before 1.14.2) */
  int early_stop;        /* early_stop_threshold exists (1.14.2+, and flashkm) */
  int init_methods;      /* k-means++ and AFK-MC^2 exist (1.14+, and flashkm) */
  int faster_subsampling;/* 0 absent; 1 next() % nx (1.9 - 1.14.1);
                            2 (next() & INT64_MAX) % nx (1.14.2+, flashkm) */
  int seed_clock;        /* a negative seed seeds from the clock (1.9+) */
} fkm_arith;

/** The traits of a profile (validated: an unknown release or level, or a
 *  malformed loop order, is an error naming it). */
fkm_status fkm_arith_of(const fkm_profile *p, fkm_arith *out, fkm_errbuf *err);

/** The path FAISS takes for nx query rows of dimension d. */
fkm_path fkm_arith_path(const fkm_arith *a, fkm_metric metric, int64_t nx,
                        int64_t d);

/** The squared norm of a row as the path's code computes it: the profile's
 *  fvec_norm_L2sqr on the BLAS path; the fused kernel's own l2_sqr<DIM>
 *  (a sequential fma chain; (p0 + p1) + (p2 + p3) at d = 4 on AVX-512). */
float fkm_arith_norm(const fkm_arith *a, fkm_path path, const float *x,
                     int64_t d);

/** ProductQuantizer::compute_code's rule (dsub < 16) in this arithmetic:
 *  the kernels of fvec_L2sqr_ny_nearest each release and level has
 *  (kernels/faiss_scan.h, fkm_pq_rule; docs/profiles.md). */
void fkm_arith_pq_rule(const fkm_arith *a, fkm_pq_rule *rule);

#ifdef __cplusplus
}
#endif

#endif
