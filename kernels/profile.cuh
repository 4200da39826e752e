/* FAISS's k=1 search in a profile's arithmetic on the GPU (docs/profiles.md):
 * host launchers. Included from C (plugin/engine_cuda.c) and CUDA.
 *
 * The parity cascade (assign.cuh) certifies a row's label when the true
 * distances leave a margin wider than every formula's rounding bound; such
 * a label is every profile's label. What a profile changes is computed
 * here: the norms in the build's loop order, the distance of a certified
 * label in the profile's formula (with exhaustive_L2sqr_blas_cmax's block
 * rule), and, for every row the cascade does not certify (and every row of
 * the fused and direct paths), an exact replay of FAISS's scan
 * (kernels/faiss_scan.h, the CPU engine's code). */
#ifndef FKM_KERNELS_PROFILE_CUH
#define FKM_KERNELS_PROFILE_CUH

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "assign.cuh"
#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The traits a device scan needs (plain data, from the host's fkm_arith and
 *  the search path of the call). */
typedef struct fkm_scan_desc {
  fkm_loop_order norm, l2, ip; /* FAISS's fvec_* loops in the build */
  int path;             /* fkm_path: 0 BLAS, 1 fused, 2 direct */
  int metric;           /* FKM_METRIC_L2 or FKM_METRIC_INNER_PRODUCT */
  int cmax_lanes;       /* L2 BLAS: 0 plain scan, 8 / 16 cmax lanes */
  int top1_lanes;       /* IP BLAS: 1 sequential, 8 / 16 lanes */
  int fused_lanes;      /* fused path: 8 / 16 */
  int fused_norm4_hadd; /* the AVX-512 fused kernel's l2_sqr<4> */
} fkm_scan_desc;

/** Whether the plain cascade (assign.cuh) gives the profile's labels and
 *  distances by itself: the BLAS path with a sequential scan (the formula
 *  (xn + cn) - 2 ip or ip, lowest index on ties), given this profile's
 *  norms. */
static inline int fkm_scan_is_plain(const fkm_scan_desc *s) {
  return s->path == 0 && (s->metric == FKM_METRIC_L2 ? s->cmax_lanes == 0 : s->top1_lanes <= 1);
}

/** Whether, on the BLAS path with the cascade, the rows the cascade leaves
 *  are the caller's to decide (a laned scan, or any scan in a learned BLAS
 *  order: blas_on), so that fkm_launch_assign_profile narrows them in
 *  float32 and replays the rest in full; otherwise the cascade's reference
 *  kernel decides them. */
static inline int fkm_scan_replays_left(const fkm_scan_desc *s, int blas_on) {
  return s->path == 0 && (!fkm_scan_is_plain(s) || blas_on);
}

/** out[i] = the squared norm of row i of x (n, d) as the path's code
 *  computes it: the profile's fvec_norm_L2sqr (norm.width 0: float squares
 *  summed in double), or the fused kernel's own. One thread per row. */
cudaError_t fkm_launch_profile_norms(const fkm_scan_desc *s, const float *x, int64_t n,
                                     int64_t d, float *out, cudaStream_t stream);

/** The rows' assignment in the profile: a->x, xn (the path's norms), c, cn,
 *  n, d, k, labels, dist as fkm_launch_assign takes them. The plain
 *  profiles run the cascade (its bound widened for float norms); the laned
 *  ones run it with the cmax block rule on certified labels and the rows
 *  narrowed to two candidates deferred, narrow the rows the cascade left in
 *  float32 (fkm_launch_assign_narrow), then replay the scan over the
 *  deferred rows' candidates, and in full over the rows still left; the fused and direct
 *  paths, and any laned profile without a tensor-core plan, replay every
 *  row. */
cudaError_t fkm_launch_assign_profile(const fkm_assign_args *a, const fkm_assign_plan *plan,
                                      const fkm_scan_desc *s, cudaStream_t stream);

/** The BLAS order learner's final choice on the device (plugin/blas_order.h,
 *  fkm_blas_draws; every pointer device memory): code[e] (nx * ny, its
 *  lanes set) becomes the first variant alive[e] allows whose dot products
 *  in the segments seg (count, then count + 1 bounds) equal ip on every
 *  draw, or 0. */
cudaError_t fkm_launch_blas_choose(int64_t nx, int64_t ny, int64_t d, const int32_t *seg,
                                   int draws, const float *y, const float *x, const float *ip,
                                   const uint16_t *alive, uint8_t *code, cudaStream_t stream);

#ifdef __cplusplus
}
#endif

#endif
