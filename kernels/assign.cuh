/* FlashAssign, parity mode (FKM_ASSIGN_FAISS): host launchers.
 *
 * Included from C (plugin/engine_cuda.c) and CUDA. Every launcher takes a
 * plain-data args struct and a stream, enqueues work and returns the launch
 * status; nothing here synchronises.
 */
#ifndef FKM_KERNELS_ASSIGN_CUH
#define FKM_KERNELS_ASSIGN_CUH

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Tile of the SIMT assignment kernel: FKM_ASSIGN_BM points x FKM_ASSIGN_BN
 * centroids per block, FKM_ASSIGN_BK dimensions staged per step. */
#define FKM_ASSIGN_BM 64
#define FKM_ASSIGN_BN 64
#define FKM_ASSIGN_BK 16

/** How an assignment is split over the grid. */
typedef struct fkm_assign_plan {
  int64_t row_blocks; /* ceil(n / BM) */
  int64_t ksplit;     /* centroid ranges handled by separate blocks */
  int64_t k_per_split;/* centroids per range, a multiple of BN */
  size_t work_bytes;  /* partial results when ksplit > 1 */
} fkm_assign_plan;

/** The grid plan, a pure function (host tests call it). With few row blocks
 *  the centroids are split into ranges so that about target_blocks blocks
 *  run; the ranges are combined in increasing centroid order, which keeps
 *  the strict-argmin tie rule (lowest index wins). */
static inline fkm_assign_plan fkm_assign_make_plan(int64_t n, int64_t k,
                                                   int64_t target_blocks) {
  fkm_assign_plan p;
  p.row_blocks = (n + FKM_ASSIGN_BM - 1) / FKM_ASSIGN_BM;
  const int64_t col_tiles = (k + FKM_ASSIGN_BN - 1) / FKM_ASSIGN_BN;
  int64_t ks = p.row_blocks >= target_blocks
                   ? 1
                   : (target_blocks + p.row_blocks - 1) / p.row_blocks;
  if (ks > col_tiles) ks = col_tiles;
  if (ks > 1024) ks = 1024;
  if (ks < 1) ks = 1;
  const int64_t tiles_per = (col_tiles + ks - 1) / ks;
  p.k_per_split = tiles_per * FKM_ASSIGN_BN;
  p.ksplit = (k + p.k_per_split - 1) / p.k_per_split;
  p.work_bytes = p.ksplit > 1
                     ? (size_t)p.ksplit * (size_t)n * (sizeof(float) + sizeof(int32_t))
                     : 0;
  return p;
}

typedef struct fkm_assign_args {
  const float *x;     /* (n, d) row-major, device */
  const float *xn;    /* (n) float norms of x (L2 only), device */
  const float *c;     /* (k, d) centroids, device */
  const float *cn;    /* (k) float norms of c (L2 only), device */
  int64_t n, d, k;    /* k <= INT32_MAX */
  int metric;         /* FKM_METRIC_L2 or FKM_METRIC_INNER_PRODUCT */
  int32_t *labels;    /* (n) out, -1 when no finite distance wins */
  float *dist;        /* (n) out */
  void *work;         /* plan.work_bytes of device scratch, or NULL */
} fkm_assign_args;

/** labels/dist of every row of x (SPEC section 3, the reference formula). */
cudaError_t fkm_launch_assign(const fkm_assign_args *a,
                              const fkm_assign_plan *plan, cudaStream_t s);

/** out[i] = float(sum_j double(float(x_ij * x_ij))), in order j = 0..d-1. */
cudaError_t fkm_launch_row_norms(const float *x, int64_t n, int64_t d,
                                 float *out, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
