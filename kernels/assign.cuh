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

/* Tile of the SIMT assignment kernel (the reference arithmetic):
 * FKM_ASSIGN_BM points x FKM_ASSIGN_BN centroids per block, FKM_ASSIGN_BK
 * dimensions staged per step. */
#define FKM_ASSIGN_BM 64
#define FKM_ASSIGN_BN 64
#define FKM_ASSIGN_BK 16
/* Tile of the tensor-core (tf32 mma.sync) first pass. */
#define FKM_TC_BM 128
#define FKM_TC_BN 64
#define FKM_TC_BK 32

/** How an assignment is split over the grid. */
typedef struct fkm_assign_plan {
  int tc;             /* 1: certified tensor-core pass + refine, 0: SIMT only */
  int fast_dtype;     /* FKM_ASSIGN_FAST: FKM_DTYPE_F16 / FKM_DTYPE_BF16; else -1 */
  int64_t row_blocks; /* blocks along the points */
  int64_t ksplit;     /* centroid ranges handled by separate blocks */
  int64_t k_per_split;/* centroids per range, a multiple of the tile's BN */
  int64_t refine_split;       /* tc: centroid ranges of the refine pass */
  int64_t refine_k_per_split; /* tc: centroids per refine range */
  size_t work_bytes;  /* device scratch the launch needs */
} fkm_assign_plan;

/** Whether the certified tensor-core path serves (n, k, d): it pays off once
 *  there are enough centroids and dimensions to fill its tiles. */
static inline int fkm_assign_use_tc(int64_t k, int64_t d) { return k >= 64 && d >= 16; }

/** The grid plan, a pure function (host tests call it). With few row blocks
 *  the centroids are split into ranges so that about target_blocks blocks
 *  run; the ranges are combined in increasing centroid order, which keeps
 *  the strict-argmin tie rule (lowest index wins). */
static inline fkm_assign_plan fkm_assign_make_plan(int64_t n, int64_t k, int64_t d,
                                                   int64_t target_blocks, int allow_tc) {
  fkm_assign_plan p;
  p.fast_dtype = -1;
  p.tc = allow_tc && fkm_assign_use_tc(k, d);
  const int64_t bm = p.tc ? FKM_TC_BM : FKM_ASSIGN_BM, bn = p.tc ? FKM_TC_BN : FKM_ASSIGN_BN;
  p.row_blocks = (n + bm - 1) / bm;
  const int64_t col_tiles = (k + bn - 1) / bn;
  int64_t ks = p.row_blocks >= target_blocks
                   ? 1
                   : (target_blocks + p.row_blocks - 1) / (p.row_blocks > 0 ? p.row_blocks : 1);
  if (ks > col_tiles) ks = col_tiles;
  if (ks > 1024) ks = 1024;
  if (ks < 1) ks = 1;
  const int64_t tiles_per = (col_tiles + ks - 1) / ks;
  p.k_per_split = tiles_per * bn;
  p.ksplit = (k + p.k_per_split - 1) / p.k_per_split;
  /* The refine pass sees few rows (their count is known on the device
   * only): it always splits the centroids, up to 16 ranges of SIMT tiles. */
  const int64_t simt_tiles = (k + FKM_ASSIGN_BN - 1) / FKM_ASSIGN_BN;
  const int64_t rs = simt_tiles < 16 ? simt_tiles : 16;
  p.refine_k_per_split = (simt_tiles + rs - 1) / rs * FKM_ASSIGN_BN;
  p.refine_split = (k + p.refine_k_per_split - 1) / p.refine_k_per_split;
  if (p.tc) /* count; uncertain list; centroid bounds; 24-byte states; refine partials */
    p.work_bytes = 256 + (size_t)n * 4 + (size_t)k * 8 + (size_t)p.ksplit * (size_t)n * 24 +
                   (size_t)p.refine_split * (size_t)n * 8;
  else
    p.work_bytes = p.ksplit > 1 ? (size_t)p.ksplit * (size_t)n * 8 : 0;
  return p;
}

/** FKM_ASSIGN_FAST (fp16/bf16 data): one fp16/bf16 tensor-core pass,
 *  centroids rounded to the data type, fp32 accumulation, the distance
 *  fl(fl(xn + cn') - 2 ip') with cn' the norm of the rounded centroid, strict
 *  argmin (lowest index on ties). Deterministic, approximate. dtype:
 *  FKM_DTYPE_F16 or FKM_DTYPE_BF16 (values 1 and 2). */
static inline fkm_assign_plan fkm_assign_make_fast_plan(int64_t n, int64_t k, int64_t d,
                                                        int64_t target_blocks, int dtype) {
  fkm_assign_plan p = fkm_assign_make_plan(n, k, d, target_blocks, 1);
  if (!p.tc) { /* the tc grid, whatever k and d */
    p.tc = 1;
    p.row_blocks = (n + FKM_TC_BM - 1) / FKM_TC_BM;
    const int64_t col_tiles = (k + FKM_TC_BN - 1) / FKM_TC_BN;
    int64_t ks = p.row_blocks >= target_blocks ? 1 : (target_blocks + p.row_blocks - 1) / p.row_blocks;
    if (ks > col_tiles) ks = col_tiles;
    if (ks > 1024) ks = 1024;
    if (ks < 1) ks = 1;
    p.k_per_split = (col_tiles + ks - 1) / ks * FKM_TC_BN;
    p.ksplit = (k + p.k_per_split - 1) / p.k_per_split;
  }
  p.tc = 0;
  p.fast_dtype = dtype;
  p.refine_split = 0;
  p.refine_k_per_split = 0;
  /* rounded-centroid norms (k), then partial results when split */
  p.work_bytes = 256 + (size_t)k * 4 + (p.ksplit > 1 ? (size_t)p.ksplit * (size_t)n * 8 : 0);
  return p;
}

typedef struct fkm_assign_args {
  const float *x;     /* (n, d) row-major, device */
  const float *xn;    /* (n) float norms of x, device */
  const float *c;     /* (k, d) centroids, device */
  const float *cn;    /* (k) float norms of c, device */
  int64_t n, d, k;    /* k <= INT32_MAX */
  int metric;         /* FKM_METRIC_L2 or FKM_METRIC_INNER_PRODUCT */
  int32_t *labels;    /* (n) out, -1 when no finite distance wins */
  float *dist;        /* (n) out */
  void *work;         /* plan.work_bytes of device scratch, or NULL */
} fkm_assign_args;

/** tc plan: the device int counting the points the refine pass recomputed
 *  (valid once the launch completed), inside args->work. */
static inline const int *fkm_assign_refined_count(const fkm_assign_args *a,
                                                  const fkm_assign_plan *p) {
  (void)p;
  return (const int *)a->work;
}

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
