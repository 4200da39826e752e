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
/* Tile of the tensor-core passes (mma.sync m16n8k16 on 16-bit operands):
 * FKM_MMA_BM points x FKM_MMA_BN centroids per block, FKM_MMA_BK dimensions
 * per pipeline stage. */
#define FKM_MMA_BM 128
#define FKM_MMA_BN 128
#define FKM_MMA_BK 64
/* Every layout literal derives from these (kernels/packed.cuh checks them at
 * compile time): log2 of the row block, of the tile row, and the 16-byte
 * segments of a tile row (8 elements each). */
#define FKM_MMA_BM_LOG2 7
#define FKM_MMA_BK_LOG2 6
#define FKM_SEG_ELEMS 8
#define FKM_SEGS_PER_ROW (FKM_MMA_BK / FKM_SEG_ELEMS)

static inline int64_t fkm_round_up(int64_t v, int64_t m) { return (v + m - 1) / m * m; }

/** The tensor-core passes read x and the centroids as packed 16-bit copies:
 *  rows padded to a multiple of FKM_MMA_BM, dimensions to FKM_MMA_BK, the
 *  padding zero, stored as contiguous FKM_MMA_BM x FKM_MMA_BK tiles in
 *  the kernels' shared-memory order (kernels/packed.cuh). Rows of the
 *  block [FKM_MMA_BM i, +FKM_MMA_BM) start at element FKM_MMA_BM i times
 *  the padded dimension, so a row range of a packed matrix is a packed
 *  matrix too when it starts at a multiple of FKM_MMA_BM. */
static inline int64_t fkm_pack_dims(int64_t d) { return fkm_round_up(d, FKM_MMA_BK); }
static inline size_t fkm_pack_x_bytes(int64_t n, int64_t d) {
  return (size_t)2 * (size_t)fkm_round_up(n, FKM_MMA_BM) * (size_t)fkm_pack_dims(d);
}

/** How an assignment is split over the grid. */
typedef struct fkm_assign_plan {
  int tc;             /* 1: the certified tensor-core cascade + refine, 0: SIMT only */
  int fast_dtype;     /* FKM_ASSIGN_FAST: FKM_DTYPE_F16 / FKM_DTYPE_BF16; else -1 */
  int wgmma;          /* > 0: the tensor-core passes run on sm_90a's wgmma;
                         parity mode on a persistent grid of that many
                         blocks (the caller sets it with
                         fkm_assign_plan_wgmma, see fkm_assign_probe_wgmma) */
  int64_t row_blocks; /* blocks along the points */
  int64_t ksplit;     /* centroid ranges handled by separate blocks */
  int64_t k_per_split;/* centroids per range, a multiple of the tile's BN */
  int64_t cert_split;         /* tc: centroid ranges of the pass over the rows
                                 the screen left (at most 4) */
  int64_t cert_k_per_split;   /* tc: centroids per such range, a multiple of
                                 FKM_MMA_BN */
  int64_t refine_split;       /* tc: centroid ranges of the refine pass */
  int64_t refine_k_per_split; /* tc: centroids per refine range */
  int64_t list_blocks;/* grid of the kernels over a row list whose length is
                         known only on the device (blocks stride over it):
                         two blocks per multiprocessor */
  size_t work_bytes;  /* device scratch the launch needs */
} fkm_assign_plan;

/* target_blocks, the plans' parameter, is FKM_BLOCKS_PER_SM blocks per
 * multiprocessor of the device (plugin/engine_cuda.c); grids over device-side
 * row lists take two per multiprocessor (264 on an H100 or H200). */
#define FKM_BLOCKS_PER_SM 8
static inline int64_t fkm_list_blocks(int64_t target_blocks) {
  const int64_t b = 2 * (target_blocks / FKM_BLOCKS_PER_SM);
  return b > 0 ? b : 2;
}

/** Byte offsets of the tensor-core passes' scratch inside args->work: the
 *  count of rows the refine pass recomputes (int, offset 0), the poison flag
 *  (int, offset 64), the bound maximum (a float, offset 128), the count
 *  of rows the screen left (int, offset 4), of deferred pairs (int,
 *  offset 8) and, with defer_all, of those with two candidates (int,
 *  offset 12), of rows the float32 narrowing left (int, offset 16);
 *  parity: the rows the refine pass recomputes (n int), the rows the screen
 *  left (n int), the deferred pairs (n x 3 int: row, two candidates),
 *  centroid bounds (2k floats), the screen's states (ksplit x
 *  n, 12 bytes), the screen's rows gathered and packed
 *  (fkm_pack_x_bytes(n, d)), and one region for the states of the pass
 *  over them (cert_split x n, 28 bytes) then the refine partials
 *  (refine_split x n x 8 bytes);
 *  both modes: the packed centroids (fkm_pack_x_bytes(k, d)) and their
 *  per-centroid constants (float4, k rounded up to FKM_MMA_BN); fast: the
 *  partials (ksplit x n x 8 bytes). */
typedef struct fkm_mma_work {
  size_t rows, rows1, pairs, cb, cpack, cconst, states, gath, partials, end;
} fkm_mma_work;

static inline size_t fkm_align256(size_t v) { return (v + 255) & ~(size_t)255; }

static inline fkm_mma_work fkm_mma_work_layout(int64_t n, int64_t k, int64_t d,
                                               const fkm_assign_plan *p) {
  const int parity = p->fast_dtype < 0;
  fkm_mma_work w;
  size_t o = 256;
  w.rows = o;
  o = fkm_align256(o + (parity ? (size_t)n * 4 : 0));
  w.rows1 = o;
  o = fkm_align256(o + (parity ? (size_t)n * 4 : 0));
  w.pairs = o;
  o = fkm_align256(o + (parity ? (size_t)n * 12 : 0));
  w.cb = o;
  o = fkm_align256(o + (parity ? (size_t)k * 8 : 0));
  w.cpack = o;
  o = fkm_align256(o + fkm_pack_x_bytes(k, d));
  w.cconst = o;
  o = fkm_align256(o + (size_t)fkm_round_up(k, FKM_MMA_BN) * 16);
  w.states = o;
  o = fkm_align256(o + (parity ? (size_t)p->ksplit * (size_t)n * 12 : 0));
  w.gath = o;
  o = fkm_align256(o + (parity ? fkm_pack_x_bytes(n, d) : 0));
  w.partials = o;
  const size_t cert = (size_t)p->cert_split * 28, refine = (size_t)p->refine_split * 8;
  o = fkm_align256(o + (parity ? (cert > refine ? cert : refine) : (size_t)p->ksplit * 8) *
                           (size_t)n);
  w.end = o;
  return w;
}

/** Whether the certified tensor-core path serves (n, k, d): it pays off once
 *  there are enough centroids and dimensions to fill its tiles. */
static inline int fkm_assign_use_tc(int64_t k, int64_t d) { return k >= 64 && d >= 16; }

/* Ranges of tiles_per tiles of bn centroids over k centroids (the last may
 * be short): *k_per centroids per range; returns the number of ranges. */
static inline int64_t fkm_ranges(int64_t k, int64_t bn, int64_t tiles_per, int64_t *k_per) {
  *k_per = tiles_per * bn;
  return (k + *k_per - 1) / *k_per;
}

/* At most max ranges (never more than there are tiles), of as equal a
 * number of tiles as whole tiles allow (rounded up). */
static inline int64_t fkm_ranges_at_most(int64_t k, int64_t bn, int64_t max, int64_t *k_per) {
  const int64_t tiles = (k + bn - 1) / bn, r = tiles < max ? tiles : max;
  return fkm_ranges(k, bn, (tiles + r - 1) / r, k_per);
}

/* ksplit and k_per_split for tiles of bn centroids and rows of bm points:
 * with few row blocks the centroids are split into ranges so that about
 * target_blocks blocks run. */
static inline void fkm_assign_split(fkm_assign_plan *p, int64_t n, int64_t k, int64_t bm,
                                    int64_t bn, int64_t target_blocks) {
  p->row_blocks = (n + bm - 1) / bm;
  const int64_t col_tiles = (k + bn - 1) / bn;
  int64_t ks = p->row_blocks >= target_blocks
                   ? 1
                   : (target_blocks + p->row_blocks - 1) / (p->row_blocks > 0 ? p->row_blocks : 1);
  if (ks > col_tiles) ks = col_tiles;
  if (ks > 1024) ks = 1024;
  if (ks < 1) ks = 1;
  p->ksplit = fkm_ranges_at_most(k, bn, ks, &p->k_per_split);
}

/** The grid plan, a pure function (host tests call it). The ranges are
 *  combined in increasing centroid order, which keeps the strict-argmin tie
 *  rule (lowest index wins). */
static inline fkm_assign_plan fkm_assign_make_plan(int64_t n, int64_t k, int64_t d,
                                                   int64_t target_blocks, int allow_tc) {
  fkm_assign_plan p;
  p.fast_dtype = -1;
  p.wgmma = 0;
  p.tc = allow_tc && fkm_assign_use_tc(k, d);
  p.list_blocks = fkm_list_blocks(target_blocks);
  if (p.tc)
    fkm_assign_split(&p, n, k, FKM_MMA_BM, FKM_MMA_BN, target_blocks);
  else
    fkm_assign_split(&p, n, k, FKM_ASSIGN_BM, FKM_ASSIGN_BN, target_blocks);
  /* The refine pass sees few rows (their count is known on the device
   * only): it always splits the centroids, up to 16 ranges of SIMT tiles. */
  p.refine_split = fkm_ranges_at_most(k, FKM_ASSIGN_BN, 16, &p.refine_k_per_split);
  /* The pass over the rows the screen left: few rows, so up to 4 ranges. */
  p.cert_split = fkm_ranges_at_most(k, FKM_MMA_BN, 4, &p.cert_k_per_split);
  if (p.tc)
    p.work_bytes = fkm_mma_work_layout(n, k, d, &p).end;
  else
    p.work_bytes = p.ksplit > 1 ? (size_t)p.ksplit * (size_t)n * 8 : 0;
  return p;
}

/** FKM_ASSIGN_FAST (fp16/bf16 data): one fp16/bf16 tensor-core pass,
 *  centroids rounded to the data type, fp32 accumulation. The label is the
 *  strict argmin (lowest index on ties) of fl(cn' - 2 ip') (L2, cn' the norm
 *  of the rounded centroid) or of -ip' (inner product); the distance is
 *  max(0, fl(xn + that value)) or ip'. Deterministic, approximate. dtype:
 *  FKM_DTYPE_F16 or FKM_DTYPE_BF16 (values 1 and 2). Any k and d. */
static inline fkm_assign_plan fkm_assign_make_fast_plan(int64_t n, int64_t k, int64_t d,
                                                        int64_t target_blocks, int dtype) {
  fkm_assign_plan p;
  p.tc = 0;
  p.wgmma = 0;
  p.fast_dtype = dtype;
  p.list_blocks = fkm_list_blocks(target_blocks);
  fkm_assign_split(&p, n, k, FKM_MMA_BM, FKM_MMA_BN, target_blocks);
  p.refine_split = 0;
  p.refine_k_per_split = 0;
  p.cert_split = 0;
  p.cert_k_per_split = 0;
  p.work_bytes = fkm_mma_work_layout(n, k, d, &p).end;
  return p;
}

/** Sets plan->wgmma = sms (the caller found the wgmma kernels usable,
 *  fkm_assign_probe_wgmma) and re-cuts the centroid ranges for its items
 *  of 256 rows, of which one block per multiprocessor runs at a time:
 *  - ranges only where there are fewer row groups than multiprocessors
 *    (the split for mma.sync aims at 8 blocks per multiprocessor: a
 *    problem of 64k rows got 3 ranges, each item reloading its x rows and
 *    the partials merged 3 times over);
 *  - where d > 128 the items stream their x chunks once per centroid tile:
 *    at least enough ranges that the row groups the blocks running at once
 *    work on (ksplit items per row group, consecutive) fit in
 *    FKM_STREAM_L2_BYTES of L2, so that x comes from DRAM about once. */
#define FKM_STREAM_L2_BYTES ((int64_t)16 << 20)
static inline void fkm_assign_plan_wgmma(fkm_assign_plan *p, int64_t n, int64_t k, int64_t d,
                                         int sms) {
  const int64_t dp = fkm_pack_dims(d), col_tiles = (k + FKM_MMA_BN - 1) / FKM_MMA_BN;
  const int64_t groups = (n + 255) / 256;
  p->wgmma = sms;
  if (sms <= 0 || !(p->tc || p->fast_dtype >= 0)) return;
  int64_t want = groups >= sms ? 1 : (sms + groups - 1) / (groups > 0 ? groups : 1);
  if (dp > 2 * FKM_MMA_BK) {
    const int64_t l2 =
        ((int64_t)sms * 256 * dp * 2 + FKM_STREAM_L2_BYTES - 1) / FKM_STREAM_L2_BYTES;
    if (l2 > want) want = l2;
  }
  if (want > col_tiles) want = col_tiles;
  if (want < 1) want = 1;
  /* tiles per range rounded down: at least want ranges */
  p->ksplit = fkm_ranges(k, FKM_MMA_BN, col_tiles / want, &p->k_per_split);
  p->work_bytes = fkm_mma_work_layout(n, k, d, p).end;
}

/** A BLAS's summation order on the device (plugin/blas_order.h, learned on
 *  the host from the BLAS FAISS calls): FAISS searches in sgemm calls of
 *  qbs query rows by dbs centroids, so the order of the dot product of row
 *  i and centroid j is that of element (i mod qbs, j mod dbs) of a call
 *  whose shape is (a full or the last, partial block of rows) x (a full or
 *  the last block of centroids). Shape s = 2 (rows partial) + (centroids
 *  partial): code[s] (nx x ny bytes, kernels/blas_code.h, 0 where the model
 *  does not hold), seg[s] (the depth's segments: count, then count + 1
 *  bounds). code[0] .. code[3] NULL where the search has no such block;
 *  on == 0: no BLAS order (flashkm's fmaf chain). */
typedef struct fkm_blas_view {
  const uint8_t *code[4];
  const int32_t *seg[4];
  int64_t qbs, dbs; /* FAISS's query and database blocks */
  int64_t row0;     /* row 0 of the launch in the search's rows */
  int64_t rows;     /* the search's rows (the n of FAISS's call) */
  int on;
  int staged;       /* the laned replays stage whole rows in shared memory where
                       they fit (unless FLASHKM_CUDA_REPLAY=global; kernels/profile.cu) */
} fkm_blas_view;

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
  const uint16_t *xp; /* tc and fast plans: x packed by fkm_launch_pack_x */
  const int *xmax;    /* tc plans: the word fkm_launch_pack_x wrote */
  int float_norms;    /* tc: xn, cn are a FAISS build's float loops (wider bound) */
  int xp_exact;       /* tc: x's values are fp16 numbers (fp16 rows widened), so
                         the packed copy xp holds them exactly where its scale
                         2^sx is at least 1: certify then reads x from xp */
  int cmax_lanes;     /* tc, L2: a certified label's value and the block rule of
                         exhaustive_L2sqr_blas_cmax with these lanes (0: the
                         plain formula) */
  int defer_pairs;    /* tc: rows narrowed to two candidates are listed
                         (fkm_assign_pairs) for the caller to decide (a
                         profile's laned scan, profile.cuh); their labels and
                         distances are then unspecified, and so are those of
                         the rows left uncertain: the caller narrows them
                         (fkm_launch_assign_narrow) and replays them too (also
                         with defer_all) */
  int defer_all;      /* tc: every row certified with one or two candidates
                         is listed there (a single candidate with -1 second),
                         its candidates' dot products not computed: the
                         caller computes them in a BLAS's order (blas) */
  fkm_blas_view blas; /* profile.cuh: the dot products' order (on: a BLAS's) */
} fkm_assign_args;

/** tc plan: the FKM_TC_COUNTERS device ints at the head of args->work,
 *  valid once the launch completed (fkm_mma_work_layout): the points the
 *  refine pass recomputed, the points the screen could not certify (the
 *  second pass's rows), the deferred rows, of which with two candidates,
 *  and the rows left after fkm_launch_assign_narrow. */
enum { FKM_TC_COUNTERS = 5 };
static inline const int *fkm_assign_refined_count(const fkm_assign_args *a,
                                                  const fkm_assign_plan *p) {
  (void)p;
  return (const int *)a->work;
}

/** tc plan with defer_pairs: the deferred rows (device, row, candidate,
 *  candidate; their count is the int at fkm_assign_pair_count). */
static inline const int32_t *fkm_assign_pairs(const fkm_assign_args *a,
                                              const fkm_assign_plan *p) {
  return (const int32_t *)((const char *)a->work + fkm_mma_work_layout(a->n, a->k, a->d, p).pairs);
}
static inline const int *fkm_assign_pair_count(const fkm_assign_args *a) {
  return (const int *)((const char *)a->work + 8);
}

/** Packs n rows of x ((n, d) floats, device) into xp (fkm_pack_x_bytes(n,
 *  d) bytes). fast_dtype -1 (parity, the tc plan): fp16 of x times one power
 *  of two for the whole matrix, chosen so that max|x| lands in [2^14, 2^15);
 *  *xmax receives the bits of max|x| (the scale is derived from it).
 *  FKM_DTYPE_F16 / FKM_DTYPE_BF16: the values converted unscaled, exact for
 *  data of that type; xmax is not used. */
cudaError_t fkm_launch_pack_x(const float *x, int64_t n, int64_t d, int fast_dtype,
                              uint16_t *xp, int *xmax, cudaStream_t s);

/** The same for `problems` matrices of n rows stored back to back in x, in
 *  one launch sequence: problem b's rows from x + b n d into xp + b
 *  xp_stride (16-bit elements), its word in xmax[b] (each problem's own
 *  scale, as fkm_launch_pack_x on it alone). */
cudaError_t fkm_launch_pack_x_batched(const float *x, int64_t n, int64_t d, int fast_dtype,
                                      int64_t problems, uint16_t *xp, int64_t xp_stride,
                                      int *xmax, cudaStream_t s);

/** 16-bit rows (dtype FKM_DTYPE_F16 or FKM_DTYPE_BF16, device) in one pass
 *  into both copies a FAST run of that type keeps: xf := their float values
 *  (fkm_launch_convert's) and xp := their packed copy
 *  (fkm_launch_pack_x_batched(xf, ..., dtype, ...)'s bits), problem b's n
 *  rows from x16 + b n d; first != NULL: *first := min(*first, the index in
 *  x16 of the first NaN/Inf), as fkm_launch_convert's check. Requires
 *  d % 8 == 0 and x16, xf 16-byte aligned (cudaErrorInvalidValue
 *  otherwise). */
cudaError_t fkm_launch_pack_x16_batched(const void *x16, int dtype, int64_t n, int64_t d,
                                        int64_t problems, float *xf, uint16_t *xp,
                                        int64_t xp_stride, unsigned long long *first,
                                        cudaStream_t s);

/** The parity cascade's copies of 16-bit rows (dtype FKM_DTYPE_F16 or
 *  FKM_DTYPE_BF16, device), problem b's n rows from x16 + b n d: xf := their
 *  float values (fkm_launch_convert's), xmax and xp := the scaled packed copy
 *  with each problem's own scale (fkm_launch_pack_x_batched(xf, ..., -1,
 *  ...)'s bits), in two passes over x16 instead of three over xf; first as
 *  in fkm_launch_pack_x16_batched. Requires d % 8 == 0 and x16, xf 16-byte
 *  aligned (cudaErrorInvalidValue otherwise). */
cudaError_t fkm_launch_pack_x16_parity_batched(const void *x16, int dtype, int64_t n, int64_t d,
                                               int64_t problems, float *xf, uint16_t *xp,
                                               int64_t xp_stride, int *xmax,
                                               unsigned long long *first, cudaStream_t s);

/** *ok := 1 when this build has the wgmma kernels for the current device
 *  (sm_90a code on a compute capability 9.0 device), else 0. Synchronous:
 *  allocates a word, runs a one-thread kernel, copies the word back. */
cudaError_t fkm_assign_probe_wgmma(int *ok);

/** The reference kernel over `batch` problems stored back to back, in one
 *  launch (a grid layer per problem): a describes problem 0 (x (n, d), xn
 *  (n), c (k, d), cn (k), labels and dist (n)), problem b's arrays follow at
 *  b times those sizes. The labels and distances of batch separate
 *  fkm_launch_assign calls with a SIMT plan, bit for bit (one centroid
 *  range per row: a range split changes no bit, the ranges combine with
 *  the same strict rule). Needs no scratch; batch <= 65535. */
cudaError_t fkm_launch_assign_simt_batched(const fkm_assign_args *a, int64_t batch,
                                           cudaStream_t s);

/** FKM_ASSIGN_FAST over `batch` problems of one plan (plan->fast_dtype >= 0,
 *  made for one problem's n rows) in one launch sequence (a grid layer per
 *  problem): a describes problem 0 as fkm_launch_assign does; problem b's
 *  xn, c, cn, labels and dist follow at b times their sizes, its packed rows
 *  at a->xp + b xp_stride (16-bit elements), its scratch at a->work + b
 *  work_stride bytes (work_stride >= plan->work_bytes, a multiple of 256).
 *  The labels and distances of batch separate fkm_launch_assign calls, bit
 *  for bit (each problem's blocks do that call's arithmetic). batch <=
 *  65535; cudaErrorInvalidValue otherwise or for a parity plan. */
cudaError_t fkm_launch_assign_fast_batched(const fkm_assign_args *a, const fkm_assign_plan *plan,
                                           int64_t batch, int64_t xp_stride, size_t work_stride,
                                           cudaStream_t s);

/** The parity cascade (plan->tc, plan->fast_dtype < 0) over `batch`
 *  problems of one plan, laid out as fkm_launch_assign_fast_batched's (a
 *  describes problem 0; problem b's x rows follow at b a->n a->d, its xmax
 *  at a->xmax + b), each step one launch for every problem (a grid layer
 *  each). The labels and distances of batch separate fkm_launch_assign
 *  calls, bit for bit (each problem's blocks do that call's arithmetic),
 *  and problem b's FKM_TC_COUNTERS at the head of its scratch. Asks for
 *  what the cascade's one-problem launch decides alone: rows of x and of the
 *  centroids 16-byte aligned (d % 4 == 0), no deferred rows (defer_pairs,
 *  defer_all 0); cudaErrorInvalidValue otherwise, or for batch > 65535. */
cudaError_t fkm_launch_assign_tc_batched(const fkm_assign_args *a, const fkm_assign_plan *plan,
                                         int64_t batch, int64_t xp_stride, size_t work_stride,
                                         cudaStream_t s);

/** tc parity plan, after fkm_launch_assign with defer_pairs or defer_all
 *  (the rows it left are the caller's to replay): narrows those rows in
 *  float32 (kernels/narrow.cuh) and certifies them with the float32 bound,
 *  so that rows with one or two candidates join the deferred pairs
 *  (fkm_assign_pairs; a row with one candidate in a BLAS's order may be
 *  decided at once, as the second certify does) and the rest is listed at
 *  fkm_assign_narrowed_rows. Nothing to do for other plans or arguments. */
cudaError_t fkm_launch_assign_narrow(const fkm_assign_args *a, const fkm_assign_plan *plan,
                                     cudaStream_t s);

/** tc plan, after fkm_launch_assign_narrow: the rows it left (device), their
 *  number the int at fkm_assign_narrowed_count. */
static inline const int32_t *fkm_assign_narrowed_rows(const fkm_assign_args *a,
                                                      const fkm_assign_plan *p) {
  return (const int32_t *)((const char *)a->work + fkm_mma_work_layout(a->n, a->k, a->d, p).rows1);
}
static inline const int *fkm_assign_narrowed_count(const fkm_assign_args *a) {
  return (const int *)a->work + 4;
}

/** labels/dist of every row of x (docs/contract.md section 3, the reference formula). */
cudaError_t fkm_launch_assign(const fkm_assign_args *a,
                              const fkm_assign_plan *plan, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
