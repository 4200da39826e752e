/* The CUDA engine: the training set, centroids and every per-iteration
 * buffer live on one device; the Lloyd loop (lloyd.c) drives it through
 * engine.h and only k-sized vectors cross to the host.
 *
 * Memory: one workspace per run, sized up front by plan_workspace() and
 * taken with one stream-ordered allocation (its size is logged with
 * verbose), kept by the engine for the next run (grow-only, with the small
 * pinned buffers and the pinned staging; fkm_ctx_trim releases them).
 * Inputs and outputs may be host or device pointers: each is tested with
 * cudaPointerGetAttributes; copies use cudaMemcpyDefault. Host rows cross
 * once per run through two pinned staging buffers: the host gathers (and
 * checks) one chunk on OpenMP's threads while the other crosses the bus
 * (docs/data-path.md); a subsampled run's other rows are checked on a host
 * thread while the iterations run. The training set is packed once per run
 * into the 16-bit copy the tensor-core pass reads.
 * Streams: everything runs on the context's stream (owned, non-blocking, or
 * the caller's). The objective runs on a side stream of the greatest
 * priority (its double chain on a second one), joined before the
 * iteration's single host synchronisation.
 * Batched runs (engine.h): the problems' training rows, centroids and
 * per-row buffers lie back to back; each problem's rows are assigned to its
 * own centroids (one assignment launch per problem and row chunk), then one
 * grouping sorts every row by its global centroid row (problem * k + label)
 * and one update kernel computes all B * k centroids: the iteration still
 * has one host synchronisation, whatever B.
 * Bits: every kernel reproduces the CPU reference's arithmetic (see
 * the kernels in kernels/); nothing depends on timing or on the grid.
 */
#define _POSIX_C_SOURCE 200809L /* pthreads */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "assign.cuh"
#include "blas_cache.h"
#include "chains.h"
#include "comm_nccl.h"
#include "convert.cuh"
#include "cpu_kernels.h"
#include "engine.h"
#include "group.cuh"
#include "pq.cuh"
#include "profile.cuh"
#include "source.h"
#include "update.cuh"

typedef fkm_objective scalars; /* read back at the iteration's sync */

/* The training set is assigned in up to FKM_CUDA_CHUNKS row chunks of at
 * least 2^FKM_CUDA_CHUNK_LOG2 rows, so that the objective (side stream)
 * runs behind the assignment of the next chunk instead of after the last
 * one. Each chunk pays the assignment's fixed costs (the cascade's small
 * passes, the persistent grid's last wave): measured on an H100 at
 * 1M x 1024, three chunks of 2^18 or more rows took 0.26 ms more
 * assignment per iteration than one chunk, which leaves about 0.1 ms of
 * objective unhidden, so chunks start at 2^20 rows. */
#define FKM_CUDA_CHUNKS 8
#define FKM_CUDA_CHUNK_LOG2 20

/* Batched runs assign the problems on up to this many streams forked from
 * the context's stream and joined back (problem b on lane b % lanes): one
 * problem's small kernels run beside another's large ones. Each lane has
 * its own assignment scratch; the bits do not depend on the lane. */
#define FKM_CUDA_LANES 8

typedef struct cuda_engine {
  fkm_engine base;
  int device;
  int sm_count;
  int allow_tc; /* the certified tensor-core assignment (env FLASHKM_CUDA_ASSIGN=simt: off) */
  int replay_staged; /* laned replays in a BLAS's order from shared memory
                        (env FLASHKM_CUDA_REPLAY=global: off) */
  int batched_wanted; /* a batch's assignment in one launch where its plan allows
                         (env FLASHKM_CUDA_BATCHED=0: off) */
  int fast_batched_wanted; /* a FAST batch's tensor-core pass in one launch sequence
                              where the batch fits one grid (env
                              FLASHKM_CUDA_FAST_BATCHED=0: off) */
  int tc_batch_room; /* size_run: every problem's cascade scratch fits the budget */
  int group_radix; /* a batch grouped by the radix sort of composed keys (env
                      FLASHKM_CUDA_GROUP=radix), not a counting sort a problem */
  int64_t batch_simt_k; /* a parity batch of k <= this many centroids takes the
                           reference kernel in one launch (env
                           FLASHKM_CUDA_BATCH_SIMT_K, default 64; 0: never) */
  int wgmma;    /* its passes on wgmma (sm_90a builds on 9.0 devices; env
                   FLASHKM_CUDA_ASSIGN=mma: off) */
  int chunk_log2; /* least training rows per chunk, log2 (FKM_CUDA_CHUNK_LOG2;
                     env FLASHKM_CUDA_CHUNK_LOG2, 10 to 30, for tests) */
  int64_t assign_chunk; /* rows per chunk of an assignment of host rows (0: 2^26 / d;
                           env FLASHKM_CUDA_ASSIGN_CHUNK, for tests) */
  int64_t *drows;       /* the device copy of a run's training rows (device x), kept
                           for the next run of the same memo generation */
  int64_t drows_cap;    /* its entries */
  uint64_t drows_gen;   /* the memo generation it holds (0: none) */
  char name[320];
  cudaStream_t own_stream, stream, side;
  cudaStream_t side_aux;                           /* the objective's double chain */
  cudaEvent_t ev_ofork, ev_ojoin;
  cudaStream_t lane[FKM_CUDA_LANES];               /* batched assignment */
  cudaEvent_t ev_lane[FKM_CUDA_LANES], ev_fork;
  cudaEvent_t ev_ufork, ev_ujoin;                  /* the update's aux stream */
  cudaEvent_t ev_a0, ev_a1, ev_g1, ev_u1, ev_objt; /* phase timing */
  cudaEvent_t ev_obj;                              /* the objective's tail done */
  /* The in-core iteration as one CUDA graph (env FLASHKM_CUDA_GRAPH=0:
   * off): captured on a run's second iteration, then replayed; kept when
   * the run ends (graph_kept). */
  int graph_wanted, capturing, graph_failed;
  int64_t iteration; /* in-core iterations enqueued in this run */
  cudaGraphExec_t graph;
  cudaGraphExec_t graph_kept; /* the last run's, updated in place by the next capture
                                 of the same shape (cudaGraphExecUpdate) */
  struct graph_key {           /* what decides a captured iteration's topology */
    int64_t batch, n_train, d, k, nchunk, nodes;
    int lanes, one_launch, verbose, metric, weighted, frozen, path, blas_order;
    int tc, fast_dtype, wgmma, last_tc, last_fast_dtype, last_wgmma, loop;
  } graph_key, kept_key;
  /* The Lloyd loop on the device (cuda_iterate_loop; env FLASHKM_CUDA_LOOP=0:
   * off): each iteration ends with fkm_launch_iteration_tail (records,
   * splits) and the post-processing, and the host reads every iteration's
   * records once, after the last */
  int loop_wanted, loop_on;
  int64_t loop_cap;               /* iterations the records hold (0: no loop) */
  fkm_iteration_record *records;  /* device (loop_cap, B) */
  int64_t *hist_records;          /* device (loop_cap, B * k) */
  unsigned long long *stamps;     /* device (2 loop_cap + 1): the device clock */
  int *loop_iter;                 /* device: the iteration, then the tail's counter */
  fkm_iteration_record *h_records; /* pinned (loop_cap, B) */
  unsigned long long *h_stamps;    /* pinned (2 loop_cap + 1) */
  cudaEvent_t ev_chunk[FKM_CUDA_CHUNKS];           /* chunk c assigned */

  /* the current run: B problems; per-row buffers (B * nt), per-centroid
   * buffers (B * k), problem b's part at b * nt, b * k */
  fkm_run run;
  fkm_params params;
  fkm_arith arith;
  fkm_scan_desc sd; /* the training set's search (its path: n_train rows) */
  fkm_blas_view train_blas; /* its dot products' order (params.blas_sgemm's) */
  fkm_blas_cache blas;      /* learned BLAS orders, kept from run to run */
  void *ws;
  size_t ws_bytes;
  const float *x; /* (B * nt, d): in ws, or the user's device f32 matrix */
  uint16_t *xp;   /* x packed for the tensor-core passes (in ws), or NULL:
                     B packed matrices of xp_stride elements */
  int64_t xp_stride;
  int *xmax;      /* (B) the words fkm_launch_pack_x writes (parity scale) */
  float *w;       /* (B * nt) or NULL */
  float *xn, *cent, *cn, *init, *dist, *counts;
  int32_t *labels, *keys, *rows, *iota, *hist, *offsets, *composed;
  int64_t *hist64, *pairs, *perm;
  void *assign_work, *temp, *obj_scratch; /* assign_work: lanes x work_bytes */
  size_t temp_bytes, work_bytes;
  int lanes; /* streams the problems are assigned on (1: the context's) */
  fkm_assign_plan plan, plan_last; /* a full chunk, the last chunk */
  int64_t chunk, nchunk;
  scalars *dsc;        /* device (B) */
  unsigned long long *bad; /* device: the first non-finite element of x, found as
                              begin converts 16-bit device x (~0: none) */
  scalars *hsc;        /* pinned host (B) */
  float *h_counts;     /* pinned (B * k) */
  int64_t *h_hist;     /* pinned (B * k) */
  int *h_refined;      /* pinned (B * nchunk x FKM_TC_COUNTERS): points the refine
                          pass recomputed, points the screen left, points listed
                          for a deferred decision, of which with two candidates
                          (a BLAS's order), points a profile replays in full after
                          the float32 narrowing */
  /* streamed runs (docs/data-path.md): the training set's host rows cross
   * every iteration in chunks of schunk rows, two device buffers, copies on
   * their own stream beside the work on the other buffer; 16-bit rows cross
   * as they are (xraw) and are widened into xbuf[0] by the work's stream */
  int streamed;
  int64_t schunk;
  fkm_source ssrc;    /* the host rows (the user's matrix, or the run's source) */
  float *xbuf[2];     /* float32 rows: both; 16-bit rows: xbuf[0], the widened chunk */
  void *xraw[2];      /* 16-bit rows as they cross, or NULL (float32 rows) */
  int64_t sq;         /* chunks of this run sent so far: chunk sq + i takes buffer (sq + i) % 2 */
  int prefetched;     /* the next pass's first chunk is on its way (buffer sq % 2) */
  int stream_copy_widens, stream_prefetch; /* env FLASHKM_CUDA_STREAM (measurements):
                                              copy-widen: 16-bit rows widened on the copy
                                              stream, no prefetch; no-prefetch */
  int pq_specialised; /* fkm_pq_encode's scans specialised per width and loop order
                         (kernels/pq.cu); env FLASHKM_CUDA_PQ=generic: the run-time scan
                         for every rule (measurements) */
  float *acc, *cnt;   /* the update's chains, continued chunk to chunk */
  int64_t *seen;
  cudaStream_t copy;
  cudaEvent_t ev_ready[2], ev_free[2];
  /* kept from run to run, grow-only (fkm_ctx_trim and destroy release) */
  size_t ws_cap;
  void *pinned;        /* hsc, h_counts, h_hist, h_refined */
  size_t pinned_cap;
  void *stage[2];      /* pinned staging of host rows */
  void *stage_dev[2];  /* device staging of 16-bit rows */
  size_t stage_cap, stage_dev_cap;
  cudaEvent_t ev_stage[2]; /* staging buffer i's last copy (and conversion) */
  /* a rank of a distributed run (docs/distributed.md): the relay's buffers
   * (chains.h); the assignment, grouping and chains run on the device */
  struct rank_host {
    int32_t *hist;   /* (k) this rank's label counts */
    float *cent;     /* (k, d) the centroids every rank scales */
    float *msg;      /* pinned: the chains passed between ranks (chains.h) */
    float *dmsg;     /* device: this rank's slices of them */
  } rk;
  int64_t path_n; /* rows whose search path fkm_assign takes (0: the call's n) */
  /* the finiteness check of the rows a subsampled run does not train on,
   * on a host thread beside the iterations (bg_check_*) */
  pthread_t checker;
  int checker_live;
  int check_pass; /* streamed source rows are checked as the next pass reads them */
  struct bg_check {
    const void *x;
    fkm_dtype dtype;
    int64_t n, d;
    uint8_t *skip; /* (n + 7) / 8 bits: the training rows (checked as gathered) */
    int64_t bad;   /* least bad element index, or -1 */
  } bg;
} cuda_engine;

static cuda_engine *eng(fkm_engine *e) { return (cuda_engine *)e; }

/* ---------------------------------------------------------------- errors */

/* The one place cudaGetErrorString is called. */
static fkm_status cuda_fail(fkm_errbuf *err, cudaError_t e, const char *what,
                            const char *file, int line) {
  (void)cudaGetLastError(); /* clear a non-sticky error */
  fkm_status s = e == cudaErrorMemoryAllocation ? FKM_ERR_OUT_OF_MEMORY : FKM_ERR_CUDA;
  return fkm_fail(err, s, "%s:%d: %s: %s", file, line, what, cudaGetErrorString(e));
}

#define FKM_CUDA_TRY(c, call)                                            \
  do {                                                                   \
    cudaError_t fkm_e_ = (call);                                         \
    if (fkm_e_ != cudaSuccess)                                           \
      return cuda_fail((c)->base.err, fkm_e_, #call, __FILE__, __LINE__); \
  } while (0)

/* Inside functions with a cleanup label: record and jump. */
#define FKM_CUDA_GOTO(c, call)                                                 \
  do {                                                                         \
    cudaError_t fkm_e_ = (call);                                               \
    if (fkm_e_ != cudaSuccess) {                                               \
      st = cuda_fail((c)->base.err, fkm_e_, #call, __FILE__, __LINE__);        \
      goto done;                                                               \
    }                                                                          \
  } while (0)

#define FKM_GOTO(expr)          \
  do {                          \
    st = (expr);                \
    if (st != FKM_OK) goto done; \
  } while (0)

/* ------------------------------------------------------------- utilities */

/* Page-locked host memory (cudaHostAlloc'd or registered). */
static int is_pinned_host(const void *p) {
  struct cudaPointerAttributes attr;
  if (!p || cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return attr.type == cudaMemoryTypeHost;
}

static int is_device_ptr(const void *p) {
  struct cudaPointerAttributes attr;
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return attr.type == cudaMemoryTypeDevice || attr.type == cudaMemoryTypeManaged;
}


/* First NaN/Inf of elements [i0, i1) of a host matrix, or -1: the CPU
 * engine's test, on the raw encoding for f16 / bf16 (a NaN or Inf has an
 * all-ones exponent field; no conversion needed).
 */
static int64_t host_scan_nonfinite(fkm_dtype dtype, const void *x, int64_t i0, int64_t i1) {
  const char *from = (const char *)x + fkm_dtype_size(dtype) * (size_t)i0;
  const int64_t j = fkm_first_nonfinite(dtype, from, i1 - i0);
  return j < 0 ? -1 : i0 + j;
}

/* The same over all count elements, blocks of 2^20 on OpenMP's threads:
 * the first bad element of the first block that has one. */
static int64_t host_first_nonfinite(fkm_dtype dtype, const void *x, int64_t count) {
  const int64_t block = (int64_t)1 << 20, nb = (count + block - 1) / block;
  int64_t first = INT64_MAX;
#pragma omp parallel for schedule(static) reduction(min : first)
  for (int64_t b = 0; b < nb; b++) {
    const int64_t i1 = (b + 1) * block < count ? (b + 1) * block : count;
    const int64_t f = host_scan_nonfinite(dtype, x, b * block, i1);
    if (f >= 0 && f < first) first = f;
  }
  return first == INT64_MAX ? -1 : first;
}

/* First non-finite element of a host or device matrix, or -1. */
static fkm_status first_nonfinite(cuda_engine *c, fkm_dtype dtype, const void *x,
                                  int64_t count, int64_t *first) {
  if (!is_device_ptr(x)) {
    *first = host_first_nonfinite(dtype, x, count);
    return FKM_OK;
  }
  unsigned long long *df = NULL, hf = 0;
  fkm_status st = FKM_OK;
  FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&df, sizeof *df, c->stream));
  FKM_CUDA_GOTO(c, cudaMemsetAsync(df, 0xff, sizeof *df, c->stream));
  FKM_CUDA_GOTO(c, fkm_launch_first_nonfinite(dtype, x, count, df, c->stream));
  FKM_CUDA_GOTO(c, cudaMemcpyAsync(&hf, df, sizeof hf, cudaMemcpyDeviceToHost, c->stream));
  FKM_CUDA_GOTO(c, cudaStreamSynchronize(c->stream));
  *first = hf == ~0ull ? -1 : (int64_t)hf;
done:
  if (df) (void)cudaFreeAsync(df, c->stream);
  return st;
}

/* rows of x: batch problems of n rows each, back to back (the CPU engine's
 * messages). */
static fkm_status check_x(cuda_engine *c, const char *name, fkm_dtype dtype,
                          const void *x, int64_t batch, int64_t n, int64_t d) {
  int64_t bad = -1;
  FKM_FORWARD(first_nonfinite(c, dtype, x, batch * n * d, &bad));
  return bad < 0 ? FKM_OK : fkm_fail_not_finite(c->base.err, name, bad, batch, n, d);
}

/* weights: the first bad entry decides (not finite, else negative). */
static fkm_status check_weights(cuda_engine *c, const float *w, int64_t n) {
  int64_t bad = -1;
  float wb = 0.0f;
  if (is_device_ptr(w)) {
    unsigned long long *df = NULL, hf = 0;
    fkm_status st = FKM_OK;
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&df, sizeof *df, c->stream));
    FKM_CUDA_GOTO(c, cudaMemsetAsync(df, 0xff, sizeof *df, c->stream));
    FKM_CUDA_GOTO(c, fkm_launch_first_bad_weight(w, n, df, c->stream));
    FKM_CUDA_GOTO(c, cudaMemcpyAsync(&hf, df, sizeof hf, cudaMemcpyDeviceToHost, c->stream));
    FKM_CUDA_GOTO(c, cudaStreamSynchronize(c->stream));
    if (hf != ~0ull) {
      bad = (int64_t)hf;
      FKM_CUDA_GOTO(c, cudaMemcpyAsync(&wb, w + bad, sizeof wb, cudaMemcpyDeviceToHost,
                                       c->stream));
      FKM_CUDA_GOTO(c, cudaStreamSynchronize(c->stream));
    }
  done:
    if (df) (void)cudaFreeAsync(df, c->stream);
    if (st != FKM_OK) return st;
  } else {
    for (int64_t i = 0; i < n && bad < 0; i++)
      if (!isfinite(w[i]) || w[i] < 0) bad = i, wb = w[i];
  }
  if (bad < 0) return FKM_OK;
  FKM_RETURN_IF(!isfinite(wb), c->base.err, FKM_ERR_NOT_FINITE,
                "weights[%lld] is not finite", (long long)bad);
  return fkm_fail(c->base.err, FKM_ERR_INVALID_ARG, "weights[%lld] = %g is negative",
                  (long long)bad, (double)wb);
}

/* Device float copy of rows (drows ? drows[i] : i), i < n, of a device
 * matrix of dtype (host rows cross through stage_rows). drows: device or
 * NULL. out: device (n, d). first (drows NULL only; device, set to ~0
 * beforehand): the first non-finite element's index min'ed in, in the same
 * pass. */
static fkm_status convert_rows(cuda_engine *c, fkm_dtype dtype, const void *src, int64_t d,
                               const int64_t *drows, int64_t n, float *out,
                               unsigned long long *first) {
  if (n == 0) return FKM_OK;
  fkm_convert_args a = {dtype, src, drows, n, d, out, 1, 0, 0, first};
  FKM_CUDA_TRY(c, fkm_launch_convert(&a, c->stream));
  return FKM_OK;
}

/* The same with the row list in host memory (or NULL), copied over first. */
static fkm_status load_rows(cuda_engine *c, fkm_dtype dtype, const void *src, int64_t d,
                            const int64_t *rows, int64_t n, float *out) {
  fkm_status st = FKM_OK;
  int64_t *drows = NULL;
  if (n == 0 || !rows) return convert_rows(c, dtype, src, d, NULL, n, out, NULL);
  FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&drows, sizeof(int64_t) * (size_t)n, c->stream));
  FKM_CUDA_GOTO(c, cudaMemcpyAsync(drows, rows, sizeof(int64_t) * (size_t)n,
                                   cudaMemcpyHostToDevice, c->stream));
  FKM_GOTO(convert_rows(c, dtype, src, d, drows, n, out, NULL));
  /* the row list (host memory of the caller) must outlive the copy */
  FKM_CUDA_GOTO(c, cudaStreamSynchronize(c->stream));
done:
  if (drows) (void)cudaFreeAsync(drows, c->stream);
  return st;
}

/* ------------------------------------------------------- the host data path */

/* Bytes of one pinned staging buffer: chunks of host rows cross the bus in
 * pieces of this size, two buffers in flight. */
#define FKM_STAGE_BYTES ((size_t)32 << 20)

/* Two buffers of at least bytes each (pinned host, or device), grown. */
static fkm_status grow_pair(cuda_engine *c, void *buf[2], size_t *cap, size_t bytes,
                            int pinned) {
  if (*cap >= bytes) return FKM_OK;
  for (int i = 0; i < 2; i++) {
    if (buf[i]) (void)(pinned ? cudaFreeHost(buf[i]) : cudaFree(buf[i]));
    buf[i] = NULL;
  }
  *cap = 0;
  for (int i = 0; i < 2; i++)
    FKM_CUDA_TRY(c, pinned ? cudaMallocHost(&buf[i], bytes) : cudaMalloc(&buf[i], bytes));
  *cap = bytes;
  return FKM_OK;
}

static fkm_status grow_stage(cuda_engine *c, size_t bytes, int dev) {
  for (int i = 0; i < 2; i++) FKM_CUDA_TRY(c, cudaEventSynchronize(c->ev_stage[i]));
  FKM_FORWARD(grow_pair(c, c->stage, &c->stage_cap, bytes, 1));
  return dev ? grow_pair(c, c->stage_dev, &c->stage_dev_cap, bytes, 0) : FKM_OK;
}

/* Rows of a host source (rows[i], or first + i without rows; i < count) to
 * the device buffer out (count, d): device floats with widen, else the
 * source's own dtype (copies only: no kernel on stream). The host reads
 * chunk i into pinned buffer i % 2 (a gather on OpenMP's threads, each row
 * checked while in cache when check) once that buffer's previous copy is
 * done, and the copy of chunk i runs while chunk i + 1 is read. *bad: the
 * least non-finite element index in the source's order (row * d + column)
 * among the rows read, or -1. Asynchronous on stream; the buffers are
 * waited for before their reuse. */
static fkm_status stage_rows_on(cuda_engine *c, cudaStream_t stream, const fkm_source *src,
                                const int64_t *rows, int64_t first, int64_t count, int check,
                                void *out, int widen, int64_t *bad) {
  const int64_t d = src->d;
  const size_t es = fkm_dtype_size(src->dtype), row = es * (size_t)d;
  const int conv = widen && src->dtype != FKM_DTYPE_F32; /* 16-bit rows widened on stream */
  float *outf = out; /* with conv */
  int64_t per = (int64_t)(FKM_STAGE_BYTES / row);
  if (per < 1) per = 1;
  if (per > count) per = count;
  int64_t least = INT64_MAX;
  *bad = -1;
  if (count <= 0) return FKM_OK;
  /* a contiguous range of packed rows in pinned memory (cudaHostAlloc'd,
   * registered, a pinned torch tensor) crosses without staging */
  const int direct = !rows && !src->read && (size_t)src->row_stride == row &&
                     is_pinned_host(src->base);
  const char *from = (const char *)src->base + row * (size_t)first;
  if (direct && check) {
    const int64_t e = host_first_nonfinite(src->dtype, from, count * d);
    if (e >= 0) *bad = first * d + e;
  }
  if (direct && !conv) {
    FKM_CUDA_TRY(c, cudaMemcpyAsync(out, from, row * (size_t)count, cudaMemcpyHostToDevice,
                                    stream));
    return FKM_OK;
  }
  FKM_FORWARD(grow_stage(c, row * (size_t)per, conv));
  if (direct) { /* 16-bit: straight into the device staging, widened there */
    for (int64_t i0 = 0, it = 0; i0 < count; i0 += per, it++) {
      const int b = (int)(it & 1);
      const int64_t m = count - i0 < per ? count - i0 : per;
      FKM_CUDA_TRY(c, cudaStreamWaitEvent(stream, c->ev_stage[b], 0)); /* its last user */
      FKM_CUDA_TRY(c, cudaMemcpyAsync(c->stage_dev[b], from + row * (size_t)i0,
                                      row * (size_t)m, cudaMemcpyHostToDevice, stream));
      fkm_convert_args a = {src->dtype, c->stage_dev[b], NULL, m, d, outf + i0 * d, 1, 0, 0, NULL};
      FKM_CUDA_TRY(c, fkm_launch_convert(&a, stream));
      FKM_CUDA_TRY(c, cudaEventRecord(c->ev_stage[b], stream));
    }
    return FKM_OK;
  }
  for (int64_t i0 = 0, it = 0; i0 < count; i0 += per, it++) {
    const int b = (int)(it & 1);
    const int64_t m = count - i0 < per ? count - i0 : per;
    FKM_CUDA_TRY(c, cudaEventSynchronize(c->ev_stage[b]));
    const int64_t *r = rows ? rows + i0 : NULL;
    int64_t e = -1;
    if (check)
      FKM_FORWARD(fkm_source_read_checked(src, r, first + i0, m, c->stage[b], &e, c->base.err));
    else
      FKM_FORWARD(fkm_source_read(src, r, first + i0, m, c->stage[b], c->base.err));
    if (e >= 0 && e < least) least = e;
    if (!conv) {
      FKM_CUDA_TRY(c, cudaMemcpyAsync((char *)out + row * (size_t)i0, c->stage[b],
                                      row * (size_t)m, cudaMemcpyHostToDevice, stream));
    } else {
      FKM_CUDA_TRY(c, cudaMemcpyAsync(c->stage_dev[b], c->stage[b], row * (size_t)m,
                                      cudaMemcpyHostToDevice, stream));
      fkm_convert_args a = {src->dtype, c->stage_dev[b], NULL, m, d, outf + i0 * d, 1, 0, 0, NULL};
      FKM_CUDA_TRY(c, fkm_launch_convert(&a, stream));
    }
    FKM_CUDA_TRY(c, cudaEventRecord(c->ev_stage[b], stream));
  }
  if (least != INT64_MAX) *bad = least;
  return FKM_OK;
}

static fkm_status stage_rows(cuda_engine *c, const fkm_source *src, const int64_t *rows,
                             int64_t first, int64_t count, int check, float *out,
                             int64_t *bad) {
  return stage_rows_on(c, c->stream, src, rows, first, count, check, out, 1, bad);
}

/* The background check: x's rows not marked in skip, on OpenMP's threads
 * of this thread's own team. */
static void *bg_check_main(void *arg) {
  struct bg_check *g = arg;
  const size_t row = fkm_dtype_size(g->dtype) * (size_t)g->d;
  int64_t least = INT64_MAX;
#pragma omp parallel for schedule(dynamic, 4096) reduction(min : least)
  for (int64_t i = 0; i < g->n; i++) {
    if (g->skip[i >> 3] & (1u << (i & 7))) continue;
    const int64_t j = fkm_first_nonfinite(g->dtype, (const char *)g->x + row * (size_t)i, g->d);
    if (j >= 0 && i * g->d + j < least) least = i * g->d + j;
  }
  g->bad = least == INT64_MAX ? -1 : least;
  return NULL;
}

/* Starts the check of the rows of x (host, (n, d)) that train_rows (nt)
 * does not name. */
static fkm_status bg_check_start(cuda_engine *c, const void *x, fkm_dtype dtype, int64_t n,
                                 int64_t d, const int64_t *train_rows, int64_t nt) {
  struct bg_check *g = &c->bg;
  g->skip = calloc((size_t)(n + 7) / 8, 1);
  FKM_RETURN_IF(!g->skip, c->base.err, FKM_ERR_OUT_OF_MEMORY,
                "cuda engine: cannot allocate the row marks of %lld rows", (long long)n);
  for (int64_t i = 0; i < nt; i++)
    g->skip[train_rows[i] >> 3] |= (uint8_t)(1u << (train_rows[i] & 7));
  g->x = x;
  g->dtype = dtype;
  g->n = n;
  g->d = d;
  g->bad = -1;
  if (pthread_create(&c->checker, NULL, bg_check_main, g) != 0) {
    bg_check_main(g); /* no thread: check here */
    return FKM_OK;
  }
  c->checker_live = 1;
  return FKM_OK;
}

/* Waits for the background check; *bad: its result (-1 without one). */
static void bg_check_join(cuda_engine *c, int64_t *bad) {
  if (c->checker_live) (void)pthread_join(c->checker, NULL);
  c->checker_live = 0;
  *bad = c->bg.skip ? c->bg.bad : -1;
  free(c->bg.skip);
  c->bg.skip = NULL;
  c->bg.bad = -1;
}

/* The assignment plan for n rows: FKM_ASSIGN_FAST (fp16/bf16 data) or the
 * parity path (certified tensor cores when allowed and useful, else SIMT).
 * FAST's tensor-core pass serves where the cascade's would (k >= 64,
 * d >= 16); below that FAST takes the reference kernel, whose exact labels
 * are also the faster there (docs/contract.md). */
static fkm_assign_plan make_plan(const cuda_engine *c, const fkm_params *params,
                                 const fkm_scan_desc *sd, fkm_dtype dtype, int64_t n,
                                 int64_t k, int64_t d) {
  const int64_t target = FKM_BLOCKS_PER_SM * (int64_t)c->sm_count;
  /* the fused and direct paths replay FAISS's scan on every row */
  fkm_assign_plan p = params->assign_mode == FKM_ASSIGN_FAST && dtype != FKM_DTYPE_F32 &&
                              fkm_assign_use_tc(k, d)
                          ? fkm_assign_make_fast_plan(n, k, d, target, (int)dtype)
                          : fkm_assign_make_plan(n, k, d, target, c->allow_tc && sd->path == 0);
  fkm_assign_plan_wgmma(&p, n, k, d, c->wgmma ? c->sm_count : 0); /* its persistent grid */
  return p;
}

/* Whether a plan's kernels read x through its packed 16-bit copy. */
static int plan_packs(const fkm_assign_plan *p) { return p->tc || p->fast_dtype >= 0; }

/* The device scan of a search of n rows in a profile (kernels/profile.cuh). */
static fkm_scan_desc scan_desc(const fkm_arith *a, fkm_metric metric, int64_t n, int64_t d) {
  fkm_scan_desc s;
  memset(&s, 0, sizeof s);
  s.norm = a->norm;
  s.l2 = a->l2;
  s.ip = a->ip;
  s.path = (int)fkm_arith_path(a, metric, n, d);
  s.metric = (int)metric;
  s.cmax_lanes = a->cmax_lanes;
  s.top1_lanes = a->top1_lanes;
  s.fused_lanes = a->fused_lanes;
  s.fused_norm4_hadd = a->fused_norm4_hadd;
  return s;
}

/* ------------------------------------------------------------- workspace */

typedef struct carver {
  char *base;
  size_t off;
} carver;

static void *carve(carver *cv, size_t bytes) {
  void *p = cv->base ? cv->base + cv->off : NULL;
  cv->off += (bytes + 255) & ~(size_t)255;
  return p;
}

/* Whether the run's batch can go to the device as one grid, a layer per
 * problem: several problems, at most 65535 (a grid dimension), each of
 * one chunk. The one-launch paths below and size_run's small-k rule ask it. */
static int batch_in_one_grid(const cuda_engine *c) {
  return c->run.batch > 1 && c->run.batch <= 65535 && c->nchunk == 1;
}

/* Whether the batch may take the reference kernel in one launch: the
 * switch (FLASHKM_CUDA_BATCHED), one grid, the plain scan on the BLAS path
 * and no learned order (fkm_launch_assign_profile runs that kernel alone). */
static int reference_batch_fits(const cuda_engine *c) {
  return c->batched_wanted && batch_in_one_grid(c) && fkm_scan_is_plain(&c->sd) &&
         !c->train_blas.on;
}

/* Whether an iteration runs a FAST batch's tensor-core pass for every
 * problem in one launch sequence (FLASHKM_CUDA_FAST_BATCHED=0: never), their
 * scratch side by side (plan_workspace). */
static int fast_in_one_launch(const cuda_engine *c) {
  return c->fast_batched_wanted && batch_in_one_grid(c) && c->plan.fast_dtype >= 0;
}

/* Whether the run keeps a float copy of the training rows of its own (else
 * it reads the caller's device float32 rows in place). */
static int owns_x(const cuda_engine *c) {
  return !(c->run.dtype == FKM_DTYPE_F32 && !c->run.train_rows && is_device_ptr(c->run.x));
}

/* Whether an iteration runs a parity batch's certified cascade for every
 * problem in one launch sequence (fkm_launch_assign_tc_batched;
 * FLASHKM_CUDA_BATCHED=0: never): where the reference batch could run (one
 * grid, the plain scan, no learned order), the plan is the cascade, every
 * row of x and of the centroids starts 16-byte aligned (d % 4 == 0; the
 * centroids and an own copy of x are carved aligned) and every problem's
 * scratch fits the budget (size_run; else each lane's scratch, as before). */
static int tc_in_one_launch(const cuda_engine *c) {
  return c->tc_batch_room && reference_batch_fits(c) && c->plan_last.tc &&
         c->plan_last.fast_dtype < 0 && c->run.d % 4 == 0 &&
         (owns_x(c) || (uintptr_t)c->run.x % 16 == 0);
}

/* Whether the workspace holds the records of a run's loop on the device
 * (docs/cuda-engine.md, "The loop on the device"): wanted, one process, and
 * every iteration's label counts of every problem in at most
 * FKM_LOOP_RECORD_BYTES; else the host's loop runs. */
#define FKM_LOOP_RECORD_BYTES ((double)(32 << 20))
static int loop_records_fit(const cuda_engine *c) {
  const int64_t niter = c->params.niter;
  const double bytes = (double)niter * (double)c->run.batch *
                       ((double)sizeof(fkm_iteration_record) + 8.0 * (double)c->run.k);
  return c->loop_wanted && !c->run.comm && niter >= 1 && bytes <= FKM_LOOP_RECORD_BYTES;
}

/* Lays out (or, with a NULL base, sizes) the run's workspace. */
static size_t plan_workspace(cuda_engine *c, char *base) {
  const int64_t B = c->run.batch, d = c->run.d;
  const int64_t nt = B * c->run.n_train, k = B * c->run.k; /* all problems */
  const int own_x = owns_x(c);
  carver cv = {base, 0};
  float *x = carve(&cv, own_x ? sizeof(float) * (size_t)(nt * d) : 0);
  if (own_x) c->x = x;
  /* room for weights and k initial rows whether the run has them or not:
   * fkm_train_memory plans without knowing (its bytes are an upper bound) */
  float *w = carve(&cv, sizeof(float) * (size_t)nt);
  c->w = c->run.weights ? w : NULL;
  const int packs = plan_packs(&c->plan);
  c->xp_stride = (int64_t)(fkm_pack_x_bytes(c->run.n_train, d) / 2);
  c->xp = packs ? carve(&cv, fkm_pack_x_bytes(c->run.n_train, d) * (size_t)B) : NULL;
  c->xmax = packs ? carve(&cv, sizeof(int) * (size_t)B) : NULL;
  c->xn = carve(&cv, sizeof(float) * (size_t)nt);
  c->cent = carve(&cv, sizeof(float) * (size_t)(k * d));
  c->cn = carve(&cv, sizeof(float) * (size_t)k);
  c->init = carve(&cv, sizeof(float) * (size_t)(k * d));
  c->dist = carve(&cv, sizeof(float) * (size_t)nt);
  c->labels = carve(&cv, sizeof(int32_t) * (size_t)nt);
  c->keys = carve(&cv, sizeof(int32_t) * (size_t)nt);
  c->rows = carve(&cv, sizeof(int32_t) * (size_t)nt);
  c->iota = carve(&cv, sizeof(int32_t) * (size_t)nt);
  c->composed = B > 1 ? carve(&cv, sizeof(int32_t) * (size_t)nt) : NULL;
  c->hist = carve(&cv, sizeof(int32_t) * (size_t)k);
  c->offsets = carve(&cv, sizeof(int32_t) * (size_t)k);
  c->counts = carve(&cv, sizeof(float) * (size_t)k);
  c->hist64 = carve(&cv, sizeof(int64_t) * (size_t)k);
  c->pairs = carve(&cv, sizeof(int64_t) * (size_t)(2 * k));
  c->perm = carve(&cv, sizeof(int64_t) * (size_t)c->run.k);
  c->work_bytes = (c->plan.work_bytes > c->plan_last.work_bytes ? c->plan.work_bytes
                                                                 : c->plan_last.work_bytes);
  c->work_bytes = (c->work_bytes + 255) & ~(size_t)255;
  /* a lane's scratch each, or every problem's for a batch in one launch */
  c->assign_work = carve(
      &cv, c->work_bytes * (size_t)(fast_in_one_launch(c) || tc_in_one_launch(c) ? B : c->lanes));
  c->temp = carve(&cv, c->temp_bytes);
  c->dsc = carve(&cv, sizeof(scalars) * (size_t)B);
  c->bad = carve(&cv, sizeof *c->bad);
  /* one chunk per problem: every problem's objective in one call */
  c->obj_scratch = carve(&cv, c->nchunk == 1
                                  ? fkm_objective_scratch_bytes(c->run.n_train, B)
                                  : fkm_objective_scratch_bytes(c->chunk > 0 ? c->chunk : 1, 1));
  c->loop_cap = loop_records_fit(c) ? c->params.niter : 0;
  const int64_t cap = c->loop_cap;
  c->records = carve(&cv, sizeof(fkm_iteration_record) * (size_t)(cap * B));
  c->hist_records = carve(&cv, sizeof(int64_t) * (size_t)(cap * k));
  c->stamps = carve(&cv, sizeof(unsigned long long) * (size_t)(2 * cap + 1));
  c->loop_iter = carve(&cv, 2 * sizeof(int));
  return cv.off;
}

/* ------------------------------------------------------------ run lifecycle */

static void cuda_end(fkm_engine *e) {
  cuda_engine *c = eng(e);
  (void)cudaSetDevice(c->device);
  /* a run that failed between a fork and its join may have lane work in
   * flight on the workspace */
  for (int l = 0; l < FKM_CUDA_LANES; l++)
    if (c->lane[l]) (void)cudaStreamSynchronize(c->lane[l]);
  if (c->side) (void)cudaStreamSynchronize(c->side);
  if (c->side_aux) (void)cudaStreamSynchronize(c->side_aux);
  (void)cudaStreamSynchronize(c->stream);
  int64_t bad;
  bg_check_join(c, &bad); /* a run that failed before finish */
  if (c->copy) (void)cudaStreamSynchronize(c->copy);
  c->streamed = 0;
  c->check_pass = 0;
  if (c->graph && c->graph_kept) (void)cudaGraphExecDestroy(c->graph_kept);
  if (c->graph) { /* the next run's capture may update it */
    c->graph_kept = c->graph;
    c->kept_key = c->graph_key;
  }
  c->graph = NULL;
  c->iteration = 0;
  c->graph_failed = 0;
  (void)cudaGetLastError();
  c->hsc = NULL;
  c->h_counts = NULL;
  c->h_hist = NULL;
  c->h_refined = NULL;
  c->h_records = NULL;
  c->h_stamps = NULL;
  c->loop_cap = 0;
  c->x = NULL;
  free(c->rk.hist);
  free(c->rk.cent);
  if (c->rk.msg) (void)cudaFreeHost(c->rk.msg);
  if (c->rk.dmsg) (void)cudaFree(c->rk.dmsg);
  memset(&c->rk, 0, sizeof c->rk);
}

/* Problem b's rows of train_rows, as rows of the (batch * n, d) matrix
 * (host, batch * n_train), or NULL when train_rows is NULL. */
static fkm_status global_rows(cuda_engine *c, const fkm_run *run, const int64_t **out,
                              int64_t **owned) {
  *out = *owned = NULL;
  if (!run->train_rows) return FKM_OK;
  if (run->batch == 1) { /* problem 0's rows are x's */
    *out = run->train_rows;
    return FKM_OK;
  }
  const int64_t nt = run->n_train;
  int64_t *g = malloc(sizeof(int64_t) * (size_t)(run->batch * nt));
  FKM_RETURN_IF(!g, c->base.err, FKM_ERR_OUT_OF_MEMORY,
                "cuda engine: cannot allocate %lld row indices", (long long)(run->batch * nt));
  for (int64_t b = 0; b < run->batch; b++)
    for (int64_t i = 0; i < nt; i++) g[b * nt + i] = b * run->n + run->train_rows[i];
  *out = *owned = g;
  return FKM_OK;
}

/* The device copy of the count global training rows grows: the one kept
 * from an earlier run when this run's rows are the same memo generation
 * (one problem: grows is then the memo itself), else copied in. */
static fkm_status device_rows(cuda_engine *c, const fkm_run *run, const int64_t *grows,
                              int64_t count, const int64_t **out) {
  const uint64_t gen = run->batch == 1 ? run->rows_generation : 0;
  if (gen && c->drows_gen == gen && c->drows_cap >= count) {
    *out = c->drows;
    return FKM_OK;
  }
  c->drows_gen = 0;
  if (c->drows_cap < count) {
    if (c->drows) (void)cudaFree(c->drows);
    c->drows = NULL;
    c->drows_cap = 0;
    FKM_CUDA_TRY(c, cudaMalloc((void **)&c->drows, sizeof(int64_t) * (size_t)count));
    c->drows_cap = count;
  }
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->drows, grows, sizeof(int64_t) * (size_t)count,
                                  cudaMemcpyHostToDevice, c->stream));
  c->drows_gen = gen;
  *out = c->drows;
  return FKM_OK;
}

static fkm_status device_budget(cuda_engine *c, const fkm_params *p, size_t *avail);

/* The run's chunks, plans and workspace size (c->run, c->params and c->sd
 * set; nothing allocated). */
static fkm_status size_run(cuda_engine *c) {
  const int64_t B = c->run.batch, d = c->run.d, k = c->run.k, nt = c->run.n_train;
  c->nchunk = nt >> c->chunk_log2;
  if (c->nchunk > FKM_CUDA_CHUNKS) c->nchunk = FKM_CUDA_CHUNKS;
  if (c->nchunk < 1) c->nchunk = 1;
  c->chunk = (nt + c->nchunk - 1) / c->nchunk;
  c->chunk = (c->chunk + 127) / 128 * 128;
  c->nchunk = nt > 0 ? (nt + c->chunk - 1) / c->chunk : 1;
  c->lanes = B < FKM_CUDA_LANES ? (int)B : FKM_CUDA_LANES;
  c->plan = make_plan(c, &c->params, &c->sd, c->run.dtype, c->chunk, k, d);
  c->plan_last =
      make_plan(c, &c->params, &c->sd, c->run.dtype, nt - (c->nchunk - 1) * c->chunk, k, d);
  /* a batch of small parity problems: the reference kernel, all problems in
   * one launch (assign_in_one_launch), beats a cascade of launches per
   * problem (the same bits: every plan gives the reference's) */
  if (reference_batch_fits(c) && k <= c->batch_simt_k && c->plan.fast_dtype < 0) {
    const int64_t target = FKM_BLOCKS_PER_SM * (int64_t)c->sm_count;
    c->plan = c->plan_last = fkm_assign_make_plan(nt, k, d, target, 0);
  }
  FKM_CUDA_TRY(c, fkm_group_temp_bytes(B * nt, B * k, B, &c->temp_bytes));
  c->x = c->run.x; /* kept when plan_workspace finds it usable in place */
  c->tc_batch_room = 1;
  c->ws_bytes = plan_workspace(c, NULL);
  /* every problem's cascade scratch at once where the budget has room for
   * it, else the lanes' (a failed query: the caller's own check reports) */
  size_t avail = 0;
  if (tc_in_one_launch(c) && device_budget(c, &c->params, &avail) == FKM_OK &&
      c->ws_bytes > avail) {
    c->tc_batch_room = 0;
    c->ws_bytes = plan_workspace(c, NULL);
  }
  return FKM_OK;
}

/* The device bytes a run may take: params->memory_budget, else the
 * device's free memory less a reserve (an eighth of it, at most 512 MiB).
 * A workspace planned to the last free byte does not fit: the allocator
 * grows its pool in whole pages, and the driver and the run's small
 * allocations take some too (a streamed run's plan fills its budget). */
#define FKM_DEVICE_RESERVE_MAX ((size_t)512 << 20)
static fkm_status device_budget(cuda_engine *c, const fkm_params *p, size_t *avail) {
  size_t free_b = 0, total = 0;
  FKM_CUDA_TRY(c, cudaMemGetInfo(&free_b, &total));
  const size_t reserve = free_b / 8 < FKM_DEVICE_RESERVE_MAX ? free_b / 8 : FKM_DEVICE_RESERVE_MAX;
  *avail = p->memory_budget > 0 ? p->memory_budget : free_b - reserve;
  return FKM_OK;
}

static fkm_status check_budget(cuda_engine *c, const fkm_params *p, size_t bytes) {
  size_t avail = 0;
  FKM_FORWARD(device_budget(c, p, &avail));
  FKM_RETURN_IF(bytes > avail, c->base.err, FKM_ERR_OUT_OF_MEMORY,
                "cuda engine: the run needs %zu bytes of device memory with its training set "
                "resident and %s is %zu bytes (only one problem whose rows are in host "
                "memory can stream)",
                bytes,
                p->memory_budget > 0 ? "params->memory_budget"
                                     : "the device's free memory less its reserve",
                avail);
  return FKM_OK;
}

/* ------------------------------------------------------------ streamed runs */

/* Lays out (or, with a NULL base, sizes) a streamed run's workspace for
 * chunks of rows rows: two chunk buffers (float32 rows: two float buffers;
 * 16-bit rows: two of their own dtype and one float buffer they are
 * widened into, the same bytes) and every per-row buffer at chunk size;
 * centroids, the update's chains and the training weights whole. */
static size_t plan_streamed(cuda_engine *c, int64_t rows, char *base) {
  const int64_t d = c->run.d, k = c->run.k, nt = c->run.n_train;
  const size_t es = fkm_dtype_size(c->run.dtype);
  const int raw = es != sizeof(float) && !c->stream_copy_widens;
  const int64_t last = nt - (nt - 1) / rows * rows;
  fkm_assign_plan pf = make_plan(c, &c->params, &c->sd, c->run.dtype, rows, k, d);
  fkm_assign_plan pl = make_plan(c, &c->params, &c->sd, c->run.dtype, last, k, d);
  size_t temp = 0;
  if (fkm_group_temp_bytes(rows, k, 1, &temp) != cudaSuccess) return SIZE_MAX;
  carver cv = {base, 0};
  for (int i = 0; i < 2; i++) {
    void *r = carve(&cv, raw ? es * (size_t)(rows * d) : 0);
    float *x = carve(&cv, !raw || i == 0 ? sizeof(float) * (size_t)(rows * d) : 0);
    if (base) {
      c->xraw[i] = raw ? r : NULL;
      c->xbuf[i] = !raw || i == 0 ? x : NULL;
    }
  }
  float *w = carve(&cv, sizeof(float) * (size_t)nt); /* reserved as plan_workspace's */
  const int packs = plan_packs(&pf);
  uint16_t *xp = packs ? carve(&cv, fkm_pack_x_bytes(rows, d)) : NULL;
  int *xmax = packs ? carve(&cv, sizeof(int)) : NULL;
  float *xn = carve(&cv, sizeof(float) * (size_t)rows);
  float *cent = carve(&cv, sizeof(float) * (size_t)(k * d));
  float *cn = carve(&cv, sizeof(float) * (size_t)k);
  float *init = carve(&cv, sizeof(float) * (size_t)(k * d));
  float *dist = carve(&cv, sizeof(float) * (size_t)rows);
  int32_t *labels = carve(&cv, sizeof(int32_t) * (size_t)rows);
  int32_t *keys = carve(&cv, sizeof(int32_t) * (size_t)rows);
  int32_t *rws = carve(&cv, sizeof(int32_t) * (size_t)rows);
  int32_t *iota = carve(&cv, sizeof(int32_t) * (size_t)rows);
  int32_t *hist = carve(&cv, sizeof(int32_t) * (size_t)k);
  int32_t *offsets = carve(&cv, sizeof(int32_t) * (size_t)k);
  float *counts = carve(&cv, sizeof(float) * (size_t)k);
  int64_t *hist64 = carve(&cv, sizeof(int64_t) * (size_t)k);
  int64_t *pairs = carve(&cv, sizeof(int64_t) * (size_t)(2 * k));
  int64_t *perm = carve(&cv, sizeof(int64_t) * (size_t)k);
  float *acc = carve(&cv, sizeof(float) * (size_t)(k * d));
  float *cnt = carve(&cv, sizeof(float) * (size_t)k);
  int64_t *seen = carve(&cv, sizeof(int64_t) * (size_t)k);
  size_t wb = pf.work_bytes > pl.work_bytes ? pf.work_bytes : pl.work_bytes;
  wb = (wb + 255) & ~(size_t)255;
  void *work = carve(&cv, wb);
  void *tmp = carve(&cv, temp);
  scalars *dsc = carve(&cv, sizeof(scalars));
  void *oscr = carve(&cv, fkm_objective_scratch_bytes(rows, 1));
  if (base) {
    c->plan = pf;
    c->plan_last = pl;
    c->x = c->xbuf[0];
    c->w = c->run.weights ? w : NULL;
    c->xp = xp;
    c->xp_stride = 0;
    c->xmax = xmax;
    c->xn = xn;
    c->cent = cent;
    c->cn = cn;
    c->init = init;
    c->dist = dist;
    c->labels = labels;
    c->keys = keys;
    c->rows = rws;
    c->iota = iota;
    c->composed = NULL;
    c->hist = hist;
    c->offsets = offsets;
    c->counts = counts;
    c->hist64 = hist64;
    c->pairs = pairs;
    c->perm = perm;
    c->acc = acc;
    c->cnt = cnt;
    c->seen = seen;
    c->work_bytes = wb;
    c->assign_work = work;
    c->temp = tmp;
    c->temp_bytes = temp;
    c->dsc = dsc;
    c->obj_scratch = oscr;
    c->lanes = 1;
    c->chunk = rows;
    c->nchunk = (nt + rows - 1) / rows;
  }
  return cv.off;
}

/* The least chunk a streamed run takes (rows), and the most rows a chunk
 * may have under avail bytes (0 when even the least does not fit). */
#define FKM_STREAM_MIN_ROWS ((int64_t)128)
static int64_t streamed_rows(cuda_engine *c, size_t avail) {
  const int64_t nt = c->run.n_train;
  int64_t lo = FKM_STREAM_MIN_ROWS < nt ? FKM_STREAM_MIN_ROWS : nt, hi = nt;
  if (plan_streamed(c, lo, NULL) > avail) return 0;
  while (hi - lo > 128) { /* the largest multiple of 128 rows that fits */
    const int64_t mid = (lo + (hi - lo) / 2) / 128 * 128;
    if (mid <= lo) break;
    if (plan_streamed(c, mid, NULL) <= avail) lo = mid;
    else hi = mid;
  }
  return lo;
}

/* Whether a run may stream: one problem whose rows are on the host. */
static int can_stream(const fkm_run *run) {
  return run->batch == 1 && (run->source || !is_device_ptr(run->x));
}

static fkm_status cuda_plan_memory(fkm_engine *e, const fkm_params *params, int64_t batch,
                                   int64_t n, int64_t d, int64_t k, fkm_dtype dtype,
                                   int from_source, fkm_memory_plan *plan) {
  cuda_engine *c = eng(e);
  (void)from_source; /* host rows are copied either way */
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  const cuda_engine saved = *c;
  fkm_arith arith;
  FKM_FORWARD(fkm_arith_of(&params->profile, &arith, e->err));
  const int64_t max_train = k * (int64_t)params->max_points_per_centroid;
  const int64_t nt = n > max_train ? max_train : n;
  memset(&c->run, 0, sizeof c->run);
  c->params = *params;
  c->run.params = &c->params;
  c->run.batch = batch;
  c->run.n = n;
  c->run.d = d;
  c->run.k = k;
  c->run.dtype = dtype;
  c->run.n_train = nt;
  c->sd = scan_desc(&arith, params->metric, nt, d);
  fkm_status st = size_run(c);
  if (st == FKM_OK) {
    memset(plan, 0, sizeof *plan);
    plan->in_core_bytes = plan->bytes = c->ws_bytes;
    st = device_budget(c, params, &plan->available);
  }
  int64_t rows = 0;
  if (st == FKM_OK && batch == 1) { /* one problem streams when its rows are on the host */
    const int64_t least = FKM_STREAM_MIN_ROWS < nt ? FKM_STREAM_MIN_ROWS : nt;
    plan->streamed_bytes = plan_streamed(c, least, NULL);
    if (plan->in_core_bytes > plan->available) {
      rows = streamed_rows(c, plan->available);
      plan->streamed = 1;
      plan->chunk_rows = rows;
      plan->bytes = rows ? plan_streamed(c, rows, NULL) : plan->streamed_bytes;
    }
  }
  *c = saved;
  if (st != FKM_OK) return st;
  if (plan->streamed && rows > 0) return FKM_OK;
  if (plan->streamed)
    return fkm_fail(e->err, FKM_ERR_OUT_OF_MEMORY,
                    "cuda engine: the run needs %zu bytes of device memory in core and at "
                    "least %zu streamed; the budget is %zu bytes",
                    plan->in_core_bytes, plan->streamed_bytes, plan->available);
  return check_budget(c, params, plan->bytes);
}

/* The run's small pinned buffers, carved from one block kept from run to
 * run (grow-only). */
static fkm_status carve_pinned(cuda_engine *c, int64_t B, int64_t k) {
  const size_t a = (sizeof(scalars) * (size_t)B + 63) & ~(size_t)63;
  const size_t b = (sizeof(float) * (size_t)(B * k) + 63) & ~(size_t)63;
  const size_t h = (sizeof(int64_t) * (size_t)(B * k) + 63) & ~(size_t)63;
  const size_t r = (sizeof(int) * (size_t)(FKM_TC_COUNTERS * B * c->nchunk) + 63) & ~(size_t)63;
  const size_t lr = sizeof(fkm_iteration_record) * (size_t)(c->loop_cap * B);
  const size_t ls = sizeof(unsigned long long) * (size_t)(2 * c->loop_cap + 1);
  const size_t all = a + b + h + r + lr + ls;
  if (c->pinned_cap < all) {
    if (c->pinned) (void)cudaFreeHost(c->pinned);
    c->pinned = NULL;
    c->pinned_cap = 0;
    FKM_CUDA_TRY(c, cudaMallocHost(&c->pinned, all));
    c->pinned_cap = all;
  }
  char *p = c->pinned;
  c->hsc = (scalars *)p;
  c->h_counts = (float *)(p + a);
  c->h_hist = (int64_t *)(p + a + b);
  c->h_refined = (int *)(p + a + b + h);
  c->h_records = (fkm_iteration_record *)(p + a + b + h + r);
  c->h_stamps = (unsigned long long *)(p + a + b + h + r + lr);
  return FKM_OK;
}

/* A run whose in-core workspace does not fit avail bytes: the training
 * set streams (docs/data-path.md). x's values: host x is checked by the
 * host thread beside the iterations (all of it: the streamed reads do not
 * check); a source's rows as the first iteration reads them. */
static fkm_status begin_streamed(cuda_engine *c, const fkm_run *run,
                                 const float *user_centroids, size_t avail) {
  const int64_t n = run->n, d = run->d, k = run->k, nt = run->n_train;
  const int64_t rows = streamed_rows(c, avail);
  if (rows == 0) {
    const int64_t least = FKM_STREAM_MIN_ROWS < nt ? FKM_STREAM_MIN_ROWS : nt;
    return fkm_fail(c->base.err, FKM_ERR_OUT_OF_MEMORY,
                    "cuda engine: the run needs %zu bytes of device memory in core and at "
                    "least %zu streamed (chunks of %lld rows); %s is %zu bytes",
                    c->ws_bytes, plan_streamed(c, least, NULL), (long long)least,
                    c->params.memory_budget > 0 ? "params->memory_budget"
                                                : "the device's free memory less its reserve",
                    avail);
  }
  c->streamed = 1;
  c->sq = 0;
  c->prefetched = 0;
  c->ssrc = run->source ? *run->source : fkm_source_of_matrix(run->x, n, d, run->dtype);
  c->ws_bytes = plan_streamed(c, rows, NULL);
  if (c->ws_cap < c->ws_bytes) { /* grow-only: kept for the next run */
    if (c->ws) (void)cudaFreeAsync(c->ws, c->stream);
    c->ws = NULL;
    c->ws_cap = 0;
    FKM_CUDA_TRY(c, cudaMallocAsync(&c->ws, c->ws_bytes, c->stream));
    c->ws_cap = c->ws_bytes;
  }
  plan_streamed(c, rows, c->ws);
  c->loop_cap = 0; /* a streamed run's loop stays on the host */
  if (c->params.verbose && c->params.log) {
    char msg[512];
    snprintf(msg, sizeof msg,
             "cuda engine: the training set streams in %lld chunks of %lld rows (workspace "
             "%zu bytes of %zu on %s)",
             (long long)c->nchunk, (long long)rows, c->ws_bytes, avail, c->name);
    c->params.log(c->params.log_user, FKM_LOG_INFO, msg);
  }
  FKM_FORWARD(carve_pinned(c, 1, k));
  int64_t bad = -1;
  if (run->weights && !is_device_ptr(run->weights)) {
    const fkm_source ws = fkm_source_of_matrix(run->weights, n, 1, FKM_DTYPE_F32);
    FKM_FORWARD(stage_rows(c, &ws, run->train_rows, 0, nt, 0, c->w, &bad));
  } else if (run->weights) {
    FKM_FORWARD(load_rows(c, FKM_DTYPE_F32, run->weights, 1, run->train_rows, nt, c->w));
  }
  if (run->n_init > 0)
    FKM_CUDA_TRY(c, cudaMemcpyAsync(c->init, user_centroids,
                                    sizeof(float) * (size_t)(run->n_init * d),
                                    cudaMemcpyDefault, c->stream));
  FKM_CUDA_TRY(c, cudaMemsetAsync(c->cent, 0, sizeof(float) * (size_t)(k * d), c->stream));
  FKM_CUDA_TRY(c, fkm_launch_iota(c->iota, rows, c->stream));
  for (int i = 0; i < 2; i++) FKM_CUDA_TRY(c, cudaEventRecord(c->ev_free[i], c->stream));
  c->check_pass = run->source && c->params.check_finite;
  if (!run->source && c->params.check_finite)
    FKM_FORWARD(bg_check_start(c, run->x, run->dtype, n, d, NULL, 0));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(c->stream));
  return FKM_OK;
}

/* The BLAS order's view of a search of rows rows (fkm_blas_cache_view),
 * with this engine's choice of how the laned replays read it. */
static fkm_status blas_view(cuda_engine *c, const fkm_params *params, int64_t rows, int64_t k,
                            int64_t d, fkm_blas_view *v, int64_t *covered) {
  const fkm_status st = fkm_blas_cache_view(&c->blas, params, rows, k, d, v, covered,
                                            c->base.err);
  v->staged = c->replay_staged;
  return st;
}

/* Whether an iteration assigns every problem of the batch in one launch:
 * the batch fits (reference_batch_fits) and its plan is the reference SIMT
 * kernel. */
static int assign_in_one_launch(const cuda_engine *c) {
  return reference_batch_fits(c) && !c->plan.tc && !c->plan_last.tc &&
         c->plan_last.fast_dtype < 0;
}

/* An in-core run's workspace (grow-only: kept for the next run), carved;
 * *streamed: the run streams instead (begin_streamed took it). */
static fkm_status take_workspace(cuda_engine *c, const fkm_run *run, const float *user_centroids,
                                 int *streamed) {
  fkm_errbuf *err = c->base.err;
  const int64_t B = run->batch, k = run->k, nt = run->n_train;
  *streamed = 0;
  FKM_FORWARD(size_run(c));
  size_t avail = 0;
  FKM_FORWARD(device_budget(c, &c->params, &avail));
  FKM_RETURN_IF(run->comm && c->ws_bytes > avail, err, FKM_ERR_OUT_OF_MEMORY,
                "cuda engine: rank %d's run of the training set (%lld rows) needs %zu bytes "
                "of device memory and %zu are available: a distributed run holds each rank's "
                "rows (use more ranks or a larger budget)",
                run->comm->rank, (long long)nt, c->ws_bytes, avail);
  if (c->ws_bytes > avail && can_stream(run)) {
    *streamed = 1;
    return begin_streamed(c, run, user_centroids, avail);
  }
  FKM_FORWARD(check_budget(c, &c->params, c->ws_bytes));
  if (c->ws_cap < c->ws_bytes) { /* grow-only: kept for the next run */
    if (c->ws) {
      (void)cudaFreeAsync(c->ws, c->stream);
      c->ws = NULL;
      c->ws_cap = 0;
    }
    FKM_CUDA_TRY(c, cudaMallocAsync(&c->ws, c->ws_bytes, c->stream));
    c->ws_cap = c->ws_bytes;
  }
  plan_workspace(c, c->ws);
  if (c->params.verbose && c->params.log) {
    char msg[400];
    snprintf(msg, sizeof msg, "cuda engine: workspace %zu bytes on %s", c->ws_bytes, c->name);
    c->params.log(c->params.log_user, FKM_LOG_INFO, msg);
    if (assign_in_one_launch(c)) {
      snprintf(msg, sizeof msg, "cuda engine: the %lld problems' assignment in one launch",
               (long long)B);
      c->params.log(c->params.log_user, FKM_LOG_INFO, msg);
    }
    if (fast_in_one_launch(c) || tc_in_one_launch(c)) {
      snprintf(msg, sizeof msg,
               "cuda engine: the %lld problems' %s assignment in one launch sequence",
               (long long)B, fast_in_one_launch(c) ? "FAST" : "parity");
      c->params.log(c->params.log_user, FKM_LOG_INFO, msg);
    }
  }
  return carve_pinned(c, B, k);
}

static fkm_status begin_impl(cuda_engine *c, const fkm_run *run, const float *user_centroids,
                             const int64_t *grows) {
  fkm_errbuf *err = c->base.err;
  const int64_t B = run->batch, n = run->n, d = run->d, k = run->k, nt = run->n_train;
  double t[5];
  t[0] = fkm_now_seconds();
  FKM_RETURN_IF(B * nt > INT32_MAX || B * k > INT32_MAX, err, FKM_ERR_UNSUPPORTED,
                "cuda engine: %lld training rows, %lld centroids (all problems): both must be "
                "< 2^31",
                (long long)(B * nt), (long long)(B * k));
  /* x's values (FAISS checks all of x): device x by a kernel here, or, when
   * x is 16-bit and converted whole into the workspace, in the conversion's
   * pass (read at this function's synchronisation; a failure before it
   * reports x's values first, as the separate check would have); host rows
   * as they cross (the training rows) and, for a subsampled run, the other
   * rows on a host thread beside the iterations (joined in finish); a
   * source's rows as they are read; batched host x here. */
  const int host_x = !run->source && !is_device_ptr(run->x);
  const int check = c->params.check_finite;
  const int check_staged = check && (run->source || (host_x && B == 1));
  const int check_converted = check && !run->source && !host_x &&
                              run->dtype != FKM_DTYPE_F32 && !grows && nt == n;
  if (check && !run->source && !check_staged && !check_converted)
    FKM_FORWARD(check_x(c, "x", run->dtype, run->x, B, n, d));
  fkm_status st = FKM_OK;
  for (int64_t b = 0; check && b < B && run->n_init > 0 && st == FKM_OK; b++)
    st = check_x(c, "initial centroids", FKM_DTYPE_F32, user_centroids + b * k * d, 1,
                 run->n_init, d);
  if (st == FKM_OK && run->weights) st = check_weights(c, run->weights, B * n);
  t[1] = fkm_now_seconds();
  int streamed = 0;
  if (st == FKM_OK) st = take_workspace(c, run, user_centroids, &streamed);
  if (st != FKM_OK && check_converted) FKM_FORWARD(check_x(c, "x", run->dtype, run->x, B, n, d));
  if (st != FKM_OK || streamed) return st;
  t[2] = fkm_now_seconds();

  int64_t bad = -1;
  const int64_t *drows = NULL; /* the device copy of grows, device x */
  /* 16-bit device rows that a FAST run of their type packs as they are:
   * both copies in one pass over them (the packed one the same bits as
   * packing the float copy) */
  const int rows16 = c->xp && !run->source && !host_x && !grows && nt == n && c->x != run->x &&
                     (run->dtype == FKM_DTYPE_F16 || run->dtype == FKM_DTYPE_BF16) && d % 8 == 0 &&
                     ((uintptr_t)run->x | (uintptr_t)c->x) % 16 == 0;
  const int packs16 = rows16 && c->plan.fast_dtype == (int)run->dtype;
  /* the parity cascade's scaled copy of them: two passes over the 16-bit
   * rows (the float copy and each problem's largest magnitude, then the
   * packed copy) instead of three over the float copy */
  const int scales16 = rows16 && c->plan.fast_dtype < 0;
  if (run->source || (host_x && c->x != run->x)) { /* host rows, staged */
    const fkm_source src =
        run->source ? *run->source : fkm_source_of_matrix(run->x, B * n, d, run->dtype);
    FKM_FORWARD(stage_rows(c, &src, grows, 0, B * nt, check_staged, (float *)c->x, &bad));
  } else if (c->x != run->x && grows) { /* device rows gathered there */
    FKM_FORWARD(device_rows(c, run, grows, B * nt, &drows));
    FKM_FORWARD(convert_rows(c, run->dtype, run->x, d, drows, B * nt, (float *)c->x, NULL));
  } else if (c->x != run->x && packs16) { /* the float copy, FAST's packed copy, the check */
    if (check_converted) FKM_CUDA_TRY(c, cudaMemsetAsync(c->bad, 0xff, sizeof *c->bad, c->stream));
    FKM_CUDA_TRY(c, fkm_launch_pack_x16_batched(run->x, run->dtype, nt, d, B, (float *)c->x,
                                                c->xp, c->xp_stride,
                                                check_converted ? c->bad : NULL, c->stream));
  } else if (c->x != run->x && scales16) {
    if (check_converted) FKM_CUDA_TRY(c, cudaMemsetAsync(c->bad, 0xff, sizeof *c->bad, c->stream));
    FKM_CUDA_TRY(c, fkm_launch_pack_x16_parity_batched(run->x, run->dtype, nt, d, B, (float *)c->x,
                                                       c->xp, c->xp_stride, c->xmax,
                                                       check_converted ? c->bad : NULL,
                                                       c->stream));
  } else if (c->x != run->x) {
    if (check_converted) FKM_CUDA_TRY(c, cudaMemsetAsync(c->bad, 0xff, sizeof *c->bad, c->stream));
    FKM_FORWARD(convert_rows(c, run->dtype, run->x, d, NULL, B * nt, (float *)c->x,
                             check_converted ? c->bad : NULL));
  }
  if (bad >= 0 && !run->source && grows) /* the first bad value of all of x */
    bad = host_first_nonfinite(run->dtype, run->x, n * d);
  if (bad >= 0) return fkm_fail_not_finite(c->base.err, "x", bad, 1, 0, d);
  if (run->weights && !is_device_ptr(run->weights)) {
    const fkm_source ws = fkm_source_of_matrix(run->weights, B * n, 1, FKM_DTYPE_F32);
    FKM_FORWARD(stage_rows(c, &ws, grows, 0, B * nt, 0, c->w, &bad));
  } else if (run->weights && grows) {
    if (!drows) FKM_FORWARD(device_rows(c, run, grows, B * nt, &drows));
    FKM_FORWARD(convert_rows(c, FKM_DTYPE_F32, run->weights, 1, drows, B * nt, c->w, NULL));
  } else if (run->weights) {
    FKM_FORWARD(convert_rows(c, FKM_DTYPE_F32, run->weights, 1, NULL, B * nt, c->w, NULL));
  }
  if (check_staged && !run->source && grows)
    FKM_FORWARD(bg_check_start(c, run->x, run->dtype, n, d, run->train_rows, nt));
  t[3] = fkm_now_seconds();
  FKM_CUDA_TRY(c, fkm_launch_profile_norms(&c->sd, c->x, B * nt, d, c->xn, c->stream));
  if (c->xp && !packs16 && !scales16) /* each problem on its own scale, one launch sequence */
    FKM_CUDA_TRY(c, fkm_launch_pack_x_batched(c->x, nt, d, c->plan.fast_dtype, B, c->xp,
                                              c->xp_stride, c->xmax, c->stream));
  if (run->n_init > 0) /* each problem's first n_init rows, packed together */
    FKM_CUDA_TRY(c, cudaMemcpy2DAsync(c->init, sizeof(float) * (size_t)(run->n_init * d),
                                      user_centroids, sizeof(float) * (size_t)(k * d),
                                      sizeof(float) * (size_t)(run->n_init * d), (size_t)B,
                                      cudaMemcpyDefault, c->stream));
  FKM_CUDA_TRY(c, cudaMemsetAsync(c->cent, 0, sizeof(float) * (size_t)(B * k * d), c->stream));
  FKM_CUDA_TRY(c, fkm_launch_iota(c->iota, B * nt, c->stream));
  unsigned long long first_bad = ~0ull;
  if (check_converted)
    FKM_CUDA_TRY(c, cudaMemcpyAsync(&first_bad, c->bad, sizeof first_bad, cudaMemcpyDeviceToHost,
                                    c->stream));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(c->stream));
  if (first_bad != ~0ull) return fkm_fail_not_finite(err, "x", (int64_t)first_bad, B, n, d);
  t[4] = fkm_now_seconds();
  if (c->params.verbose && c->params.log) {
    char msg[400];
    snprintf(msg, sizeof msg,
             "cuda engine: begin %.2f ms (checks %.2f, workspace %.2f, training rows %.2f, "
             "norms and packing %.2f)",
             1e3 * (t[4] - t[0]), 1e3 * (t[1] - t[0]), 1e3 * (t[2] - t[1]),
             1e3 * (t[3] - t[2]), 1e3 * (t[4] - t[3]));
    c->params.log(c->params.log_user, FKM_LOG_INFO, msg);
  }
  return FKM_OK;
}

/* A rank's buffers (docs/distributed.md): its label counts, the
 * centroids, the chains passed between ranks on the host and their slices
 * on the device. */
static fkm_status begin_rank(cuda_engine *c) {
  const int64_t d = c->run.d, k = c->run.k;
  struct rank_host *r = &c->rk;
  const size_t msg = sizeof(float) * (size_t)fkm_chains_msg_floats(k, d);
  r->hist = malloc(sizeof(int32_t) * (size_t)k);
  r->cent = malloc(sizeof(float) * (size_t)(k * d));
  FKM_RETURN_IF(!r->hist || !r->cent, c->base.err, FKM_ERR_OUT_OF_MEMORY,
                "cuda engine: cannot allocate the host buffers of a rank (k = %lld)", (long long)k);
  FKM_CUDA_TRY(c, cudaMallocHost((void **)&r->msg, msg));
  FKM_CUDA_TRY(c, cudaMalloc((void **)&r->dmsg, msg));
  return FKM_OK;
}

static fkm_status cuda_begin(fkm_engine *e, const fkm_run *run,
                             const float *user_centroids) {
  cuda_engine *c = eng(e);
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  c->run = *run;
  c->params = *run->params;
  c->run.params = &c->params;
  c->arith = *run->arith;
  c->run.arith = &c->arith;
  c->path_n = 0;
  /* the search path of the whole training set (all ranks' rows) */
  c->sd = scan_desc(&c->arith, c->params.metric, run->train_total, run->d);
  /* FAISS's search of the training set through the BLAS: its order, learned
   * (each rank's rows start at a multiple of the query block) */
  memset(&c->train_blas, 0, sizeof c->train_blas);
  fkm_status st = FKM_OK;
  if (c->sd.path == FKM_PATH_BLAS)
    st = blas_view(c, &c->params, run->n_train, run->k, run->d, &c->train_blas, NULL);
  const int64_t *grows = NULL;
  int64_t *owned = NULL;
  if (st == FKM_OK) st = global_rows(c, run, &grows, &owned);
  if (st == FKM_OK) st = begin_impl(c, run, user_centroids, grows);
  if (st == FKM_OK && run->comm) st = begin_rank(c);
  if (owned && st != FKM_OK) (void)cudaStreamSynchronize(c->stream); /* a copy from it */
  free(owned);
  return st;
}

static fkm_status cuda_load_initial(fkm_engine *e) {
  cuda_engine *c = eng(e);
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  const int64_t d = c->run.d, ni = c->run.n_init;
  if (ni == 0) return FKM_OK;
  FKM_CUDA_TRY(c, cudaMemcpy2DAsync(c->cent, sizeof(float) * (size_t)(c->run.k * d), c->init,
                                    sizeof(float) * (size_t)(ni * d),
                                    sizeof(float) * (size_t)(ni * d), (size_t)c->run.batch,
                                    cudaMemcpyDeviceToDevice, c->stream));
  return FKM_OK;
}

static fkm_status cuda_init_rows(fkm_engine *e, const int64_t *perm, int64_t from) {
  cuda_engine *c = eng(e);
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  const int64_t k = c->run.k, d = c->run.d, nt = c->run.n_train;
  if (from >= k) return FKM_OK;
  if (c->streamed) { /* training rows perm[i]: rows of the host source */
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)(k - from)), bad = -1;
    FKM_RETURN_IF(!rows, c->base.err, FKM_ERR_OUT_OF_MEMORY,
                  "cuda engine: cannot allocate %lld row indices", (long long)(k - from));
    for (int64_t i = from; i < k; i++)
      rows[i - from] = c->run.train_rows ? c->run.train_rows[perm[i]] : perm[i];
    fkm_status st = stage_rows(c, &c->ssrc, rows, 0, k - from, 0, c->cent + from * d, &bad);
    if (st == FKM_OK && cudaStreamSynchronize(c->stream) != cudaSuccess)
      st = cuda_fail(c->base.err, cudaGetLastError(), "init rows", __FILE__, __LINE__);
    free(rows);
    return st;
  }
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->perm, perm + from, sizeof(int64_t) * (size_t)(k - from),
                                  cudaMemcpyHostToDevice, c->stream));
  /* every problem's rows perm[from ..] of its own training rows, one launch */
  const fkm_convert_args a = {FKM_DTYPE_F32, c->x, c->perm, k - from, d, c->cent + from * d,
                              c->run.batch, nt * d, k * d, NULL};
  FKM_CUDA_TRY(c, fkm_launch_convert(&a, c->stream));
  return FKM_OK;
}

static fkm_status cuda_post_process(fkm_engine *e) {
  cuda_engine *c = eng(e);
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  FKM_CUDA_TRY(c, fkm_launch_post_process(c->cent, c->run.batch * c->run.k, c->run.d,
                                          c->params.spherical, c->params.int_centroids,
                                          &c->arith.norm, c->stream));
  return FKM_OK;
}

/* ------------------------------------------------------------- the iteration */

/* The grouping of n labels (c->labels) into k segments, problems blocks. */
static fkm_group_args group_args(const cuda_engine *c, int64_t n, int64_t k, int64_t problems) {
  return (fkm_group_args){.labels = c->labels,
                          .iota = c->iota,
                          .n = n,
                          .k = k,
                          .problems = problems,
                          .composed = c->composed,
                          .sorted_keys = c->keys,
                          .rows = c->rows,
                          .hist = c->hist,
                          .offsets = c->offsets,
                          .temp = c->temp,
                          .temp_bytes = c->temp_bytes,
                          .radix_only = c->group_radix};
}

/* m rows x (norms xn, packed xp; training rows r0 .. r0 + m) of a
 * one-problem run to its centroids (c->cent, norms c->cn) on s, with the
 * run's plan for them. */
static cudaError_t assign_one(cuda_engine *c, const fkm_assign_plan *plan, const float *x,
                              const float *xn, int64_t r0, int64_t m, int32_t *labels,
                              float *dist, uint16_t *xp, cudaStream_t s) {
  fkm_assign_args aa = {.x = x,
                        .xn = xn,
                        .c = c->cent,
                        .cn = c->cn,
                        .n = m,
                        .d = c->run.d,
                        .k = c->run.k,
                        .metric = (int)c->params.metric,
                        .labels = labels,
                        .dist = dist,
                        .work = c->assign_work,
                        .xp = xp,
                        .xmax = c->xmax,
                        .blas = c->train_blas};
  aa.blas.row0 = r0;
  return plan->fast_dtype >= 0 ? fkm_launch_assign(&aa, plan, s)
                               : fkm_launch_assign_profile(&aa, plan, &c->sd, s);
}

/* stage_rows_on onto the copy stream into buffer buf, the b-th of two,
 * once the work on its last rows is done with it (ev_free[b]); ev_ready[b]
 * then marks their arrival. */
static fkm_status send_rows(cuda_engine *c, const fkm_source *src, const int64_t *rows,
                            int64_t first, int64_t count, int check, void *buf, int widen,
                            int b, int64_t *bad) {
  FKM_CUDA_TRY(c, cudaStreamWaitEvent(c->copy, c->ev_free[b], 0));
  FKM_FORWARD(stage_rows_on(c, c->copy, src, rows, first, count, check, buf, widen, bad));
  FKM_CUDA_TRY(c, cudaEventRecord(c->ev_ready[b], c->copy));
  return FKM_OK;
}

/* A user's rows (first n of src) in chunks of `chunk` rows, crossing on the
 * copy stream into two device buffers, chunk i + 1 beside the context
 * stream's work on chunk i (assign_user, cuda_pq_encode). bad: the least
 * non-finite element index among the rows sent when check, else -1. */
typedef struct row_pipe {
  const fkm_source *src;
  int64_t n, chunk;
  int check;
  void *buf[2];
  int64_t bad;
} row_pipe;

/* The context's stream is the buffers' last user from here; chunk 0 crosses. */
static fkm_status pipe_start(cuda_engine *c, row_pipe *p) {
  for (int i = 0; i < 2; i++) FKM_CUDA_TRY(c, cudaEventRecord(c->ev_free[i], c->stream));
  return send_rows(c, p->src, NULL, 0, p->n < p->chunk ? p->n : p->chunk, p->check, p->buf[0],
                   0, 0, &p->bad);
}

/* Chunk ch's rows, once they have arrived, for the context's stream. */
static fkm_status pipe_take(cuda_engine *c, const row_pipe *p, int64_t ch, void **rows) {
  FKM_CUDA_TRY(c, cudaStreamWaitEvent(c->stream, c->ev_ready[ch & 1], 0));
  *rows = p->buf[ch & 1];
  return FKM_OK;
}

/* The context's stream has enqueued its last use of chunk ch's buffer;
 * chunk ch + 2 may cross into it, and chunk ch + 1 crosses into the other. */
static fkm_status pipe_next(cuda_engine *c, row_pipe *p, int64_t ch) {
  const int b = (int)(ch & 1);
  const int64_t r0 = (ch + 1) * p->chunk;
  FKM_CUDA_TRY(c, cudaEventRecord(c->ev_free[b], c->stream));
  if (r0 >= p->n) return FKM_OK;
  return send_rows(c, p->src, NULL, r0, p->n - r0 < p->chunk ? p->n - r0 : p->chunk, p->check,
                   p->buf[b ^ 1], 0, b ^ 1, &p->bad);
}

/* Chunk ch of the training set into buffer b (send_rows). */
static fkm_status send_chunk(cuda_engine *c, int64_t ch, int b, int64_t *bad) {
  const int64_t nt = c->run.n_train, r0 = ch * c->chunk;
  const int64_t m = nt - r0 < c->chunk ? nt - r0 : c->chunk;
  const int raw = c->xraw[0] != NULL;
  return send_rows(c, &c->ssrc, c->run.train_rows ? c->run.train_rows + r0 : NULL, r0, m,
                   c->check_pass, raw ? c->xraw[b] : (void *)c->xbuf[b], !raw, b, bad);
}

/* One iteration of a streamed run: the run's chunk i (counted across
 * iterations) crosses into buffer i % 2 on the copy stream once the work on
 * chunk i - 2 is done with it, while the context's stream works on chunk
 * i - 1; each chunk continues the objective's chains and the update's sums
 * (docs/data-path.md), and the centroids are written after the last chunk,
 * beside which the next iteration's first chunk already crosses. The copy
 * stream carries copies only: 16-bit rows are widened by the context's
 * stream, which frees their buffer as soon as they are (a kernel on the
 * copy stream waits for multiprocessors the assignment holds, and the
 * copies behind it wait too). */
static fkm_status iterate_streamed(cuda_engine *c, fkm_iter_result *out) {
  const int64_t nt = c->run.n_train, d = c->run.d, k = c->run.k;
  cudaStream_t s = c->stream;
  FKM_CUDA_TRY(c, cudaEventRecord(c->ev_a0, s));
  FKM_CUDA_TRY(c, fkm_launch_profile_norms(&c->sd, c->cent, k, d, c->cn, s));
  FKM_CUDA_TRY(c, cudaMemsetAsync(c->acc, 0, sizeof(float) * (size_t)(k * d), s));
  FKM_CUDA_TRY(c, cudaMemsetAsync(c->cnt, 0, sizeof(float) * (size_t)k, s));
  FKM_CUDA_TRY(c, cudaMemsetAsync(c->seen, 0, sizeof(int64_t) * (size_t)k, s));
  fkm_update_args ua = {.weights = c->w,
                        .rows = c->rows,
                        .hist = c->hist,
                        .offsets = c->offsets,
                        .d = d,
                        .k = k,
                        .k_frozen = c->run.k_frozen,
                        .k_problem = k,
                        .centroids = c->cent,
                        .counts = c->counts,
                        .hist64 = c->hist64,
                        .weighted_fma = c->arith.weighted_fma};
  int64_t bad = -1, least = INT64_MAX;
  const int raw = c->xraw[0] != NULL;
  for (int64_t ch = 0; ch < c->nchunk; ch++) {
    const int b = (int)((c->sq + ch) & 1);
    const int64_t r0 = ch * c->chunk, m = nt - r0 < c->chunk ? nt - r0 : c->chunk;
    if (ch > 0 || !c->prefetched) FKM_FORWARD(send_chunk(c, ch, b, &bad));
    if (bad >= 0 && bad < least) least = bad;
    FKM_CUDA_TRY(c, cudaStreamWaitEvent(s, c->ev_ready[b], 0));
    float *xf = c->xbuf[raw ? 0 : b];
    if (raw) { /* widened here; its buffer takes chunk i + 2 from now on */
      const fkm_convert_args ca = {c->ssrc.dtype, c->xraw[b], NULL, m, d, xf, 1, 0, 0, NULL};
      FKM_CUDA_TRY(c, fkm_launch_convert(&ca, s));
      FKM_CUDA_TRY(c, cudaEventRecord(c->ev_free[b], s));
    }
    const fkm_assign_plan *plan = ch == c->nchunk - 1 ? &c->plan_last : &c->plan;
    FKM_CUDA_TRY(c, fkm_launch_profile_norms(&c->sd, xf, m, d, c->xn, s));
    if (c->xp)
      FKM_CUDA_TRY(c, fkm_launch_pack_x(xf, m, d, c->plan.fast_dtype, c->xp, c->xmax, s));
    FKM_CUDA_TRY(c, assign_one(c, plan, xf, c->xn, r0, m, c->labels, c->dist, c->xp, s));
    /* the chains index rows r0 .. r0 + m of the training set: the chunk's
     * buffers, offset by r0 */
    FKM_CUDA_TRY(c, fkm_launch_objective(c->dist - r0, c->labels - r0, r0, r0 + m, 1, 0, c->dsc,
                                         c->obj_scratch, s, NULL, NULL, NULL));
    const fkm_group_args ga = group_args(c, m, k, 1);
    FKM_CUDA_TRY(c, fkm_launch_group(&ga, s));
    ua.x = xf;
    ua.weights = c->w ? c->w + r0 : NULL;
    ua.n = m;
    FKM_CUDA_TRY(c, fkm_launch_update_chunk(&ua, c->acc, c->cnt, c->seen, s));
    if (!raw) FKM_CUDA_TRY(c, cudaEventRecord(c->ev_free[b], s));
  }
  if (least != INT64_MAX) {
    FKM_CUDA_TRY(c, cudaStreamSynchronize(s));
    return fkm_fail_not_finite(c->base.err, "x", least, 1, 0, d);
  }
  c->check_pass = 0; /* every training row has been read once */
  c->sq += c->nchunk;
  /* the next pass's first chunk crosses beside this pass's last work,
   * unless this was the run's last iteration (a progress callback that
   * stops the run earlier leaves one chunk's copy unused) */
  c->prefetched = c->stream_prefetch &&
                  ++c->iteration < (int64_t)c->params.niter * c->params.nredo;
  if (c->prefetched) FKM_FORWARD(send_chunk(c, 0, (int)(c->sq & 1), &bad));
  FKM_CUDA_TRY(c, cudaEventRecord(c->ev_a1, s));
  FKM_CUDA_TRY(c, fkm_launch_update_finish(&ua, c->acc, c->cnt, c->seen, s));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->h_counts, c->counts, sizeof(float) * (size_t)k,
                                  cudaMemcpyDeviceToHost, s));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->h_hist, c->hist64, sizeof(int64_t) * (size_t)k,
                                  cudaMemcpyDeviceToHost, s));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->hsc, c->dsc, sizeof(scalars), cudaMemcpyDeviceToHost, s));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(s)); /* the iteration's one sync */
  if (c->hsc[0].bad_label >= 0)
    return fkm_fail_no_finite(c->base.err, "training set", -1, c->hsc[0].bad_label);
  float ms = 0.0f;
  FKM_CUDA_TRY(c, cudaEventElapsedTime(&ms, c->ev_a0, c->ev_a1));
  out->assign_seconds = 1e-3 * (double)ms; /* copies included: they are the pass's pace */
  out->obj[0] = c->hsc[0].obj;
  out->obj_double[0] = c->hsc[0].obj_double;
  memcpy(out->counts, c->h_counts, sizeof(float) * (size_t)k);
  memcpy(out->hist, c->h_hist, sizeof(int64_t) * (size_t)k);
  return FKM_OK;
}

/* The objective's chains over this rank's rows, continued from the state
 * in c->dsc, on the stream (rows 1 .. nt of a chain that starts from that
 * state, in the assignment's chunks: the scratch holds one chunk's). */
static cudaError_t enqueue_rank_objective(cuda_engine *c) {
  const int64_t nt = c->run.n_train;
  cudaError_t e = cudaSuccess;
  for (int64_t ch = 0; ch < c->nchunk && nt > 0 && e == cudaSuccess; ch++) {
    const int64_t r0 = ch * c->chunk, m = nt - r0 < c->chunk ? nt - r0 : c->chunk;
    e = fkm_launch_objective(c->dist - 1, c->labels - 1, 1 + r0, 1 + r0 + m, 1, 0, c->dsc,
                             c->obj_scratch, c->stream, NULL, NULL, NULL);
  }
  return e;
}

/* Moving centroids c0 .. c1's chains continued over this rank's rows, in
 * place in dpart (device), on the stream. */
static cudaError_t enqueue_rank_slice(cuda_engine *c, int64_t c0, int64_t c1, float *dpart) {
  const fkm_update_args ua = {.x = c->x,
                              .weights = c->w,
                              .rows = c->rows,
                              .hist = c->hist,
                              .offsets = c->offsets,
                              .n = c->run.n_train,
                              .d = c->run.d,
                              .k = c->run.k,
                              .k_frozen = c->run.k_frozen,
                              .k_problem = c->run.k,
                              .weighted_fma = c->arith.weighted_fma};
  return c->run.n_train > 0 ? fkm_launch_rank_chains(&ua, c0, c1, dpart, c->stream)
                            : cudaSuccess;
}

/* A CUDA rank's steps of fkm_chains_ranked (the host relay): the
 * objective's chains and the update's chains continued over its rows on
 * the device, from the values the previous rank passed. */
static fkm_status rank_objective(void *self, float *f, double *dd, fkm_errbuf *err) {
  cuda_engine *c = self;
  cudaStream_t s = c->stream;
  (void)err;
  if (c->run.n_train == 0) return FKM_OK;
  c->hsc[0] = (scalars){*f, *dd, -1};
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->dsc, c->hsc, sizeof(scalars), cudaMemcpyHostToDevice, s));
  FKM_CUDA_TRY(c, enqueue_rank_objective(c));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->hsc, c->dsc, sizeof(scalars), cudaMemcpyDeviceToHost, s));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(s));
  *f = c->hsc[0].obj;
  *dd = c->hsc[0].obj_double;
  return FKM_OK;
}

static fkm_status rank_slice(void *self, int64_t c0, int64_t c1, float *part, fkm_errbuf *err) {
  cuda_engine *c = self;
  const int64_t d = c->run.d;
  cudaStream_t s = c->stream;
  (void)err;
  if (c->run.n_train == 0) return FKM_OK;
  float *dpart = c->rk.dmsg + c0 * (d + 1);
  const size_t bytes = sizeof(float) * (size_t)((c1 - c0) * (d + 1));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(dpart, part, bytes, cudaMemcpyHostToDevice, s));
  FKM_CUDA_TRY(c, enqueue_rank_slice(c, c0, c1, dpart));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(part, dpart, bytes, cudaMemcpyDeviceToHost, s));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(s));
  return FKM_OK;
}

/* The bytes of the objective's state that pass between ranks: the float
 * and the double chain (scalars' first two fields). */
#define RANK_OBJ_BYTES (offsetof(scalars, obj_double) + sizeof(double))

static void keep_first(fkm_status *st, fkm_status now) {
  if (*st == FKM_OK) *st = now;
}

/* fkm_chains_ranked on the device plane (comm_nccl.h; docs/distributed.md):
 * the same relay of the same slices in the same order, each step the same
 * kernel on the same values, the messages between device buffers on the
 * stream, queued without a host wait; the label counts summed by NCCL in
 * int64; then the last rank's chains and objective broadcast and scaled on
 * every device. Only the summed counts, the objective and the centroid
 * counts come to the host, at the one synchronisation. A rank whose own
 * step fails still makes every NCCL call (no rank waits on one that left)
 * and every rank agrees at the end. */
static fkm_status chains_ranked_device(cuda_engine *c, fkm_comm *comm, fkm_iter_result *out) {
  const int64_t d = c->run.d, k = c->run.k, kf = c->run.k_frozen, kk = k - kf, row = d + 1;
  const int first = comm->rank == 0, last = comm->rank == comm->size - 1;
  fkm_nccl *nc = comm->nccl;
  cudaStream_t s = c->stream;
  fkm_errbuf *err = c->base.err;
  fkm_status st = FKM_OK;
  /* a rank without rows has no grouping: its counts are zeros */
  cudaError_t e = c->run.n_train > 0
                      ? fkm_launch_widen_hist(c->hist, k, c->hist64, s)
                      : cudaMemsetAsync(c->hist64, 0, sizeof(int64_t) * (size_t)k, s);
  if (e != cudaSuccess) st = cuda_fail(err, e, "widening the label counts", __FILE__, __LINE__);
  keep_first(&st, fkm_nccl_sum_i64(nc, c->hist64, k, s, err));
  if (first) {
    c->hsc[0] = (scalars){0.0f, 0.0, -1};
    e = cudaMemcpyAsync(c->dsc, c->hsc, sizeof(scalars), cudaMemcpyHostToDevice, s);
  } else {
    keep_first(&st, fkm_nccl_recv_prev(nc, c->dsc, RANK_OBJ_BYTES, s, err));
  }
  if (e == cudaSuccess) e = enqueue_rank_objective(c);
  if (e != cudaSuccess && st == FKM_OK)
    st = cuda_fail(err, e, "the objective's chains", __FILE__, __LINE__);
  if (!last) {
    keep_first(&st, fkm_nccl_send_next(nc, c->dsc, RANK_OBJ_BYTES, s, err));
  }
  const int64_t slices = fkm_chains_slices(comm->size, kk);
  for (int64_t g = 0; g < slices; g++) {
    const int64_t c0 = kk * g / slices, c1 = kk * (g + 1) / slices;
    float *dpart = c->rk.dmsg + c0 * row;
    const size_t bytes = sizeof(float) * (size_t)((c1 - c0) * row);
    e = cudaSuccess;
    if (first) {
      e = cudaMemsetAsync(dpart, 0, bytes, s);
    } else {
      keep_first(&st, fkm_nccl_recv_prev(nc, dpart, bytes, s, err));
    }
    if (e == cudaSuccess && c1 > c0) e = enqueue_rank_slice(c, c0, c1, dpart);
    if (e != cudaSuccess && st == FKM_OK)
      st = cuda_fail(err, e, "the update's chains", __FILE__, __LINE__);
    if (!last) {
      keep_first(&st, fkm_nccl_send_next(nc, dpart, bytes, s, err));
    }
  }
  const size_t chains_bytes = sizeof(float) * (size_t)(kk * row);
  keep_first(&st, fkm_nccl_bcast(nc, c->rk.dmsg, chains_bytes, comm->size - 1, s, err));
  keep_first(&st, fkm_nccl_bcast(nc, c->dsc, RANK_OBJ_BYTES, comm->size - 1, s, err));
  e = fkm_launch_chains_scale(c->rk.dmsg, k, d, kf, c->cent, c->counts, s);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(c->h_hist, c->hist64, sizeof(int64_t) * (size_t)k,
                        cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(c->h_counts, c->counts, sizeof(float) * (size_t)k,
                        cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess)
    e = cudaMemcpyAsync(c->hsc, c->dsc, sizeof(scalars), cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  if (e != cudaSuccess && st == FKM_OK)
    st = cuda_fail(err, e, "the chains' ending", __FILE__, __LINE__);
  FKM_FORWARD(comm->ops->agree(comm, st, err));
  memcpy(out->hist, c->h_hist, sizeof(int64_t) * (size_t)k);
  memcpy(out->counts, c->h_counts, sizeof(float) * (size_t)k);
  out->obj[0] = c->hsc[0].obj;
  out->obj_double[0] = c->hsc[0].obj_double;
  return FKM_OK;
}

/* The first of a rank's rows (0 .. nt) without a label (no finite
 * distance), read back only when the counts miss some. */
static fkm_status rank_first_unlabelled(cuda_engine *c, int64_t *first) {
  const int64_t nt = c->run.n_train;
  int32_t *lab = malloc(sizeof(int32_t) * (size_t)nt);
  FKM_RETURN_IF(!lab, c->base.err, FKM_ERR_OUT_OF_MEMORY,
                "cuda engine: cannot allocate %lld labels", (long long)nt);
  const cudaError_t e = cudaMemcpy(lab, c->labels, sizeof(int32_t) * (size_t)nt,
                                   cudaMemcpyDeviceToHost);
  *first = -1;
  for (int64_t i = 0; i < nt && e == cudaSuccess && *first < 0; i++)
    if (lab[i] < 0) *first = i;
  free(lab);
  FKM_CUDA_TRY(c, e);
  return FKM_OK;
}

/* One iteration of a rank (docs/distributed.md): its rows assigned and
 * grouped here (every rank at once), the label counts agreed, then its
 * part of the objective's and the update's chains on the device, in the
 * relay of chains.h; the new centroids back. Only k-sized data crosses to
 * the host. Bits: the CPU engine's ranks'. */
static fkm_status iterate_ranked(cuda_engine *c, fkm_iter_result *out) {
  const int64_t nt = c->run.n_train, d = c->run.d, k = c->run.k, kf = c->run.k_frozen;
  fkm_comm *comm = (fkm_comm *)c->run.comm;
  struct rank_host *r = &c->rk;
  cudaStream_t s = c->stream;
  FKM_CUDA_TRY(c, cudaEventRecord(c->ev_a0, s));
  FKM_CUDA_TRY(c, fkm_launch_profile_norms(&c->sd, c->cent, k, d, c->cn, s));
  for (int64_t ch = 0; ch < c->nchunk && nt > 0; ch++) {
    const int64_t r0 = ch * c->chunk, m = nt - r0 < c->chunk ? nt - r0 : c->chunk;
    const fkm_assign_plan *plan = ch == c->nchunk - 1 ? &c->plan_last : &c->plan;
    FKM_CUDA_TRY(c, assign_one(c, plan, c->x + r0 * d, c->xn + r0, r0, m, c->labels + r0,
                               c->dist + r0, c->xp ? c->xp + r0 * fkm_pack_dims(d) : NULL, s));
  }
  FKM_CUDA_TRY(c, cudaEventRecord(c->ev_a1, s));
  memset(r->hist, 0, sizeof(int32_t) * (size_t)k);
  if (nt > 0) {
    const fkm_group_args ga = group_args(c, nt, k, 1);
    FKM_CUDA_TRY(c, fkm_launch_group(&ga, s));
    FKM_CUDA_TRY(c, cudaMemcpyAsync(r->hist, c->hist, sizeof(int32_t) * (size_t)k,
                                    cudaMemcpyDeviceToHost, s));
  }
  FKM_CUDA_TRY(c, cudaStreamSynchronize(s));
  float ms = 0.0f;
  FKM_CUDA_TRY(c, cudaEventElapsedTime(&ms, c->ev_a0, c->ev_a1));
  out->assign_seconds = 1e-3 * (double)ms;
  int64_t labelled = 0;
  for (int64_t i = 0; i < k; i++) labelled += out->hist[i] = r->hist[i];
  fkm_status st = FKM_OK;
  if (labelled < nt) { /* labels -1 are not counted */
    int64_t first = -1;
    st = rank_first_unlabelled(c, &first);
    if (st == FKM_OK)
      st = fkm_fail_no_finite(c->base.err, "training set", -1, c->run.train_first + first);
  }
  /* the device plane is bound to the device it was made on: a later run of
   * these ranks on another device fails on every rank (folded into the
   * agreement below) rather than queue NCCL calls on a foreign stream */
  if (st == FKM_OK && comm->nccl && comm->nccl_device != c->device)
    st = fkm_fail(c->base.err, FKM_ERR_INVALID_ARG,
                  "cuda engine: this communicator's NCCL plane was made on device %d and this "
                  "run is on device %d (a communicator's CUDA ranks keep their devices; "
                  "FLASHKM_NCCL=0 takes the host relay)",
                  comm->nccl_device, c->device);
  FKM_FORWARD(comm->ops->agree(comm, st, c->base.err));
  if (!comm->nccl_tried) { /* the first run of these ranks: the device plane, if it applies */
    fkm_nccl *made = NULL;
    FKM_FORWARD(fkm_nccl_create(comm, c->device, c->base.err, &made));
    comm->nccl = made;
    comm->nccl_tried = 1;
    comm->nccl_device = c->device;
    if (c->params.verbose && c->params.log && comm->rank == 0) {
      char msg[160];
      snprintf(msg, sizeof msg, "cuda engine: the ranks' chains pass %s",
               made ? "between the devices (NCCL)" : "through the hosts (MPI)");
      c->params.log(c->params.log_user, FKM_LOG_INFO, msg);
    }
  }
  if (comm->nccl) return chains_ranked_device(c, comm, out);
  const fkm_chains chains = {.d = d, .k = k, .k_frozen = kf};
  const fkm_rank_steps steps = {c, rank_objective, rank_slice};
  FKM_FORWARD(fkm_chains_ranked(&chains, &steps, comm, r->msg, r->cent, out, c->base.err));
  if (k > kf) /* the frozen rows stay as they are on the device */
    FKM_CUDA_TRY(c, cudaMemcpyAsync(c->cent + kf * d, r->cent + kf * d,
                                    sizeof(float) * (size_t)((k - kf) * d),
                                    cudaMemcpyHostToDevice, s));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(s));
  return FKM_OK;
}

/* A phase-timing record: while the iteration is captured, an event record
 * node of the graph (a plain record there only orders the capture). */
static cudaError_t record_timing(const cuda_engine *c, cudaEvent_t ev, cudaStream_t s) {
  return cudaEventRecordWithFlags(ev, s, c->capturing ? cudaEventRecordExternal : 0);
}

/* The objective of rows [r0, r1) of the problems whose distances and
 * labels start at offset `at` (problems of stride rows) into out, on the
 * side stream; chains 0: only its check of the labels. */
static cudaError_t enqueue_objective(cuda_engine *c, int chains, int64_t at, int64_t r0,
                                     int64_t r1, int64_t problems, int64_t stride,
                                     scalars *out) {
  if (!chains)
    return fkm_launch_objective_labels(c->labels + at, r0, r1, problems, stride, out, c->side);
  return fkm_launch_objective(c->dist + at, c->labels + at, r0, r1, problems, stride, out,
                              c->obj_scratch, c->side, c->side_aux, c->ev_ofork, c->ev_ojoin);
}

/* The training rows are fp16 numbers: the parity cascade's packed copy (fp16
 * of x 2^sx) holds them exactly where its scale 2^sx is at least 1, and
 * certify and the update then read x from it (each kernel checks its
 * problem's scale). */
static int packed_copy_exact(const cuda_engine *c) { return c->run.dtype == FKM_DTYPE_F16; }

/* Every problem's training rows to its centroids c->cent, on the
 * context's stream: labels and distances in c->labels and c->dist, the
 * objective's scan of them (c->dsc) on the side stream, which ev_obj
 * closes; chains 0 (the final labels): only its check of the labels (the
 * rows without a finite distance), not its chains. */
static fkm_status enqueue_assignment(cuda_engine *c, int chains) {
  const int64_t B = c->run.batch, nt = c->run.n_train, d = c->run.d, k = c->run.k;
  cudaStream_t s = c->stream;
  const int verbose = c->params.verbose && c->params.log;
  FKM_CUDA_TRY(c, record_timing(c, c->ev_a0, s));
  /* IP: for the bound */
  FKM_CUDA_TRY(c, fkm_launch_profile_norms(&c->sd, c->cent, B * k, d, c->cn, s));
  const int fast_one = fast_in_one_launch(c), tc_one = tc_in_one_launch(c);
  const int one_launch = assign_in_one_launch(c) || fast_one || tc_one;
  if (one_launch) { /* every problem's rows in one grid (a layer each), on the stream */
    const fkm_assign_args aa = {.x = c->x, .xn = c->xn, .c = c->cent, .cn = c->cn, .n = nt,
                                .d = d, .k = k, .metric = (int)c->params.metric,
                                .labels = c->labels, .dist = c->dist,
                                .work = c->assign_work, .xp = c->xp, .xmax = c->xmax,
                                .float_norms = c->sd.norm.width != 0,
                                .xp_exact = packed_copy_exact(c)};
    if (fast_one)
      FKM_CUDA_TRY(c, fkm_launch_assign_fast_batched(&aa, &c->plan, B, c->xp_stride,
                                                     c->work_bytes, s));
    else if (tc_one) /* the plain scan's cascade (fkm_launch_assign_profile's own path) */
      FKM_CUDA_TRY(c, fkm_launch_assign_tc_batched(&aa, &c->plan_last, B, c->xp_stride,
                                                   c->work_bytes, s));
    else
      FKM_CUDA_TRY(c, fkm_launch_assign_simt_batched(&aa, B, s));
    if (verbose && tc_one) /* each problem's counters, at the head of its scratch */
      FKM_CUDA_TRY(c, cudaMemcpy2DAsync(c->h_refined, FKM_TC_COUNTERS * sizeof(int),
                                        fkm_assign_refined_count(&aa, &c->plan_last),
                                        c->work_bytes, FKM_TC_COUNTERS * sizeof(int),
                                        (size_t)B, cudaMemcpyDeviceToHost, s));
  }
  if (c->lanes > 1 && !one_launch) { /* fork */
    FKM_CUDA_TRY(c, cudaEventRecord(c->ev_fork, s));
    for (int l = 0; l < c->lanes; l++)
      FKM_CUDA_TRY(c, cudaStreamWaitEvent(c->lane[l], c->ev_fork, 0));
  }
  for (int64_t b = 0; b < B && !one_launch; b++) {
    const int64_t rb = b * nt; /* the problem's first row */
    const cudaStream_t ls = c->lanes > 1 ? c->lane[b % c->lanes] : s;
    void *work = (char *)c->assign_work + c->work_bytes * (size_t)(b % c->lanes);
    for (int64_t ch = 0; ch < c->nchunk; ch++) {
      const int64_t r0 = ch * c->chunk, m = nt - r0 < c->chunk ? nt - r0 : c->chunk;
      const fkm_assign_plan *plan = ch == c->nchunk - 1 ? &c->plan_last : &c->plan;
      fkm_assign_args aa = {
          .x = c->x + (rb + r0) * d,
          .xn = c->xn + rb + r0,
          .c = c->cent + b * k * d,
          .cn = c->cn + b * k,
          .n = m,
          .d = d,
          .k = k,
          .metric = (int)c->params.metric,
          .labels = c->labels + rb + r0,
          .dist = c->dist + rb + r0,
          .work = work,
          .xp = c->xp ? c->xp + b * c->xp_stride + r0 * fkm_pack_dims(d) : NULL,
          .xmax = c->xmax ? c->xmax + b : NULL,
          .xp_exact = packed_copy_exact(c),
          .blas = c->train_blas};
      aa.blas.row0 = r0;
      if (plan->fast_dtype >= 0)
        FKM_CUDA_TRY(c, fkm_launch_assign(&aa, plan, ls));
      else
        FKM_CUDA_TRY(c, fkm_launch_assign_profile(&aa, plan, &c->sd, ls));
      if (verbose && plan->tc)
        FKM_CUDA_TRY(c, cudaMemcpyAsync(c->h_refined + FKM_TC_COUNTERS * (b * c->nchunk + ch),
                                        fkm_assign_refined_count(&aa, plan),
                                        FKM_TC_COUNTERS * sizeof(int),
                                        cudaMemcpyDeviceToHost, ls));
      if (c->nchunk == 1) continue;
      /* the objective's chain over this chunk runs behind the next chunk
       * (an event is reused once the side stream's wait has captured it) */
      cudaEvent_t ev = c->ev_chunk[ch % FKM_CUDA_CHUNKS];
      FKM_CUDA_TRY(c, cudaEventRecord(ev, ls));
      FKM_CUDA_TRY(c, cudaStreamWaitEvent(c->side, ev, 0));
      FKM_CUDA_TRY(c, enqueue_objective(c, chains, rb, r0, r0 + m, 1, 0, c->dsc + b));
    }
  }
  for (int l = 0; l < c->lanes && c->lanes > 1 && !one_launch; l++) { /* join */
    FKM_CUDA_TRY(c, cudaEventRecord(c->ev_lane[l], c->lane[l]));
    FKM_CUDA_TRY(c, cudaStreamWaitEvent(s, c->ev_lane[l], 0));
  }
  if (c->nchunk == 1) { /* every problem's objective at once, behind the grouping */
    FKM_CUDA_TRY(c, cudaEventRecord(c->ev_chunk[0], s));
    FKM_CUDA_TRY(c, cudaStreamWaitEvent(c->side, c->ev_chunk[0], 0));
    FKM_CUDA_TRY(c, enqueue_objective(c, chains, 0, 0, nt, B, nt, c->dsc));
  }
  FKM_CUDA_TRY(c, record_timing(c, c->ev_a1, s));
  /* the timing record first: a captured graph must join every node of the
   * side stream back into the stream, and ev_obj's wait below does */
  FKM_CUDA_TRY(c, record_timing(c, c->ev_objt, c->side));
  FKM_CUDA_TRY(c, cudaEventRecord(c->ev_obj, c->side));
  return FKM_OK;
}

/* The end of an iteration of the loop on the device, after the update:
 * the objective joined, the records and splits (fkm_launch_iteration_tail),
 * the post-processing; nothing read back. */
static fkm_status enqueue_tail(cuda_engine *c) {
  cudaStream_t s = c->stream;
  FKM_CUDA_TRY(c, cudaStreamWaitEvent(s, c->ev_obj, 0));
  const fkm_tail_args ta = {.problems = c->run.batch,
                            .k = c->run.k,
                            .k_frozen = c->run.k_frozen,
                            .d = c->run.d,
                            .n_train = c->run.train_total,
                            .obj = c->dsc,
                            .hist64 = c->hist64,
                            .counts = c->counts,
                            .centroids = c->cent,
                            .pairs = c->pairs,
                            .records = c->records,
                            .hist_records = c->hist_records,
                            .stamps = c->stamps,
                            .iteration = c->loop_iter,
                            .done = (unsigned *)(c->loop_iter + 1)};
  FKM_CUDA_TRY(c, fkm_launch_iteration_tail(&ta, s));
  FKM_CUDA_TRY(c, fkm_launch_post_process(c->cent, c->run.batch * c->run.k, c->run.d,
                                          c->params.spherical, c->params.int_centroids,
                                          &c->arith.norm, s));
  return FKM_OK;
}

/* One in-core iteration's work on the context's stream, up to the copies
 * of its results to pinned host memory (on the loop on the device, up to
 * its tail): nothing the host decides inside, so that it can be captured
 * as a graph. */
static fkm_status enqueue_iteration(cuda_engine *c) {
  const int64_t B = c->run.batch, nt = c->run.n_train, d = c->run.d, k = c->run.k;
  cudaStream_t s = c->stream;
  FKM_FORWARD(enqueue_assignment(c, 1));
  if (c->loop_on) FKM_CUDA_TRY(c, fkm_launch_clock_stamp(c->stamps, c->loop_iter, s));
  const fkm_group_args ga = group_args(c, B * nt, B * k, B);
  FKM_CUDA_TRY(c, fkm_launch_group(&ga, s));
  FKM_CUDA_TRY(c, record_timing(c, c->ev_g1, s));
  /* the lanes are joined: lane 0 serves as the update's aux stream; the
   * parity cascade's packed copy is read where it is exact */
  const int parity16 = c->xp && c->plan.fast_dtype < 0 && packed_copy_exact(c);
  fkm_update_args ua = {.x = c->x,
                        .weights = c->w,
                        .rows = c->rows,
                        .hist = c->hist,
                        .offsets = c->offsets,
                        .n = B * nt,
                        .d = d,
                        .k = B * k,
                        .k_frozen = c->run.k_frozen,
                        .k_problem = k,
                        .aux = c->lane[0],
                        .ev_fork = c->ev_ufork,
                        .ev_join = c->ev_ujoin,
                        .centroids = c->cent,
                        .counts = c->counts,
                        .hist64 = c->hist64,
                        .xp = c->plan.fast_dtype >= 0 || parity16 ? c->xp : NULL,
                        .xp_dtype = c->plan.fast_dtype,
                        .xp_rows = nt,
                        .xp_stride = c->xp_stride,
                        .xp_xmax = parity16 ? c->xmax : NULL,
                        .weighted_fma = c->arith.weighted_fma};
  FKM_CUDA_TRY(c, fkm_launch_update(&ua, s));
  FKM_CUDA_TRY(c, record_timing(c, c->ev_u1, s));
  if (c->loop_on) return enqueue_tail(c);
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->h_counts, c->counts, sizeof(float) * (size_t)(B * k),
                                  cudaMemcpyDeviceToHost, s));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->h_hist, c->hist64, sizeof(int64_t) * (size_t)(B * k),
                                  cudaMemcpyDeviceToHost, s));
  FKM_CUDA_TRY(c, cudaStreamWaitEvent(s, c->ev_obj, 0));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->hsc, c->dsc, sizeof(scalars) * (size_t)B,
                                  cudaMemcpyDeviceToHost, s));
  return FKM_OK;
}

/* Whether this run's iterations may be captured: wanted, in core, one
 * process, enough iterations to repay the capture, and a stream the
 * caller is not capturing itself (its own capture gets eager launches). */
static int graph_allowed(const cuda_engine *c) {
  if (!c->graph_wanted || c->graph_failed || c->streamed || c->run.comm) return 0;
  if ((int64_t)c->params.niter * c->params.nredo < 4) return 0;
  enum cudaStreamCaptureStatus cs = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(c->stream, &cs) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return cs == cudaStreamCaptureStatusNone;
}

/* The topology's key of this run's captured iteration of nodes nodes
 * (zero-filled first, so that keys compare with memcmp). */
static void graph_key_of(const cuda_engine *c, size_t nodes, struct graph_key *key) {
  memset(key, 0, sizeof *key);
  key->batch = c->run.batch;
  key->n_train = c->run.n_train;
  key->d = c->run.d;
  key->k = c->run.k;
  key->nchunk = c->nchunk;
  key->nodes = (int64_t)nodes;
  key->lanes = c->lanes;
  key->one_launch =
      assign_in_one_launch(c) + 2 * fast_in_one_launch(c) + 4 * tc_in_one_launch(c);
  key->verbose = c->params.verbose && c->params.log;
  key->metric = (int)c->params.metric;
  key->weighted = c->w != NULL;
  key->frozen = c->run.k_frozen > 0;
  key->path = (int)c->sd.path;
  key->blas_order = c->train_blas.on;
  key->tc = c->plan.tc;
  key->fast_dtype = c->plan.fast_dtype;
  key->wgmma = c->plan.wgmma;
  key->last_tc = c->plan_last.tc;
  key->last_fast_dtype = c->plan_last.fast_dtype;
  key->last_wgmma = c->plan_last.wgmma;
  key->loop = c->loop_on;
}

/* Captures the iteration into c->graph; 0 when the capture failed (the
 * run then goes on with eager launches, and says so in its log). The
 * capture runs on the engine's own stream (nothing executes while it is
 * captured), so that the graph can then be launched on any stream the
 * caller set, a legacy or per-thread default stream included. */
static int capture_iteration(cuda_engine *c) {
  cudaStream_t caller = c->stream, s = c->own_stream;
  cudaGraph_t g = NULL;
  const double t0 = fkm_now_seconds();
  if (cudaStreamBeginCapture(s, cudaStreamCaptureModeRelaxed) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  c->capturing = 1;
  c->stream = s;
  const fkm_status st = enqueue_iteration(c);
  c->stream = caller;
  c->capturing = 0;
  cudaError_t e = cudaStreamEndCapture(s, &g);
  size_t nodes = 0;
  if (st == FKM_OK && e == cudaSuccess && g) e = cudaGraphGetNodes(g, NULL, &nodes);
  /* the last run's graph, when this run has its shape (the same key: the
   * same topology), takes this one's parameters (cheaper than an
   * instantiation); else a new one */
  graph_key_of(c, nodes, &c->graph_key);
  int updated = 0;
  if (st == FKM_OK && e == cudaSuccess && g && c->graph_kept) {
    if (memcmp(&c->graph_key, &c->kept_key, sizeof c->graph_key) == 0) {
      cudaGraphExecUpdateResultInfo info;
      updated = cudaGraphExecUpdate(c->graph_kept, g, &info) == cudaSuccess;
      if (!updated) (void)cudaGetLastError();
    }
    if (updated)
      c->graph = c->graph_kept;
    else
      (void)cudaGraphExecDestroy(c->graph_kept);
    c->graph_kept = NULL;
  }
  if (st == FKM_OK && e == cudaSuccess && g && !updated)
    e = cudaGraphInstantiate(&c->graph, g, 0);
  if (g) (void)cudaGraphDestroy(g);
  const int ok = st == FKM_OK && e == cudaSuccess && c->graph;
  if (!ok) {
    if (c->graph) (void)cudaGraphExecDestroy(c->graph);
    c->graph = NULL;
    (void)cudaGetLastError();
  }
  if (c->params.verbose && c->params.log) {
    char msg[640];
    if (ok)
      snprintf(msg, sizeof msg,
               "cuda engine: iterations 2 on replay one CUDA graph of %zu nodes (captured and "
               "%s in %.3f ms)",
               nodes, updated ? "the last run's updated" : "instantiated",
               1e3 * (fkm_now_seconds() - t0));
    else
      snprintf(msg, sizeof msg, "cuda engine: the iteration could not be captured as a CUDA "
               "graph (%s); its launches stay eager", st != FKM_OK ? c->base.err->msg
                                                                 : cudaGetErrorName(e));
    c->params.log(c->params.log_user, ok ? FKM_LOG_INFO : FKM_LOG_WARNING, msg);
  }
  return ok;
}

/* The iteration's work: the graph's replay, its capture (the second
 * iteration), or eager launches. */
static fkm_status launch_iteration(cuda_engine *c) {
  const int64_t it = c->iteration++;
  if (!c->graph && it == 1 && graph_allowed(c) && !capture_iteration(c)) c->graph_failed = 1;
  if (c->graph && c->graph_key.loop == c->loop_on) {
    FKM_CUDA_TRY(c, cudaGraphLaunch(c->graph, c->stream));
    return FKM_OK;
  }
  return enqueue_iteration(c);
}

static fkm_status cuda_iterate(fkm_engine *e, fkm_iter_result *out) {
  cuda_engine *c = eng(e);
  if (c->streamed) {
    FKM_CUDA_TRY(c, cudaSetDevice(c->device));
    return iterate_streamed(c, out);
  }
  if (c->run.comm) {
    FKM_CUDA_TRY(c, cudaSetDevice(c->device));
    return iterate_ranked(c, out);
  }
  const int64_t B = c->run.batch, k = c->run.k;
  cudaStream_t s = c->stream;
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  const int verbose = c->params.verbose && c->params.log;
  FKM_FORWARD(launch_iteration(c));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(s)); /* the iteration's one sync */

  for (int64_t b = 0; b < B; b++)
    if (c->hsc[b].bad_label >= 0)
      return fkm_fail_no_finite(c->base.err, "training set", B > 1 ? b : -1,
                                c->hsc[b].bad_label);
  float ms = 0.0f;
  FKM_CUDA_TRY(c, cudaEventElapsedTime(&ms, c->ev_a0, c->ev_a1));
  out->assign_seconds = 1e-3 * (double)ms;
  if (verbose) {
    float mg = 0.0f, mu = 0.0f, mo = 0.0f;
    int refined = c->plan.tc ? 0 : -1, screened = refined, two = refined, full = refined;
    for (int64_t i = 0; i < B * c->nchunk && c->plan.tc; i++) {
      const int *h = c->h_refined + FKM_TC_COUNTERS * i;
      refined += h[0], screened += h[1], two += h[3], full += h[4];
    }
    FKM_CUDA_TRY(c, cudaEventElapsedTime(&mg, c->ev_a1, c->ev_g1));
    FKM_CUDA_TRY(c, cudaEventElapsedTime(&mu, c->ev_g1, c->ev_u1));
    FKM_CUDA_TRY(c, cudaEventElapsedTime(&mo, c->ev_a1, c->ev_objt));
    char msg[400], narrow[96] = "", near[96] = "";
    if (c->plan.tc && fkm_scan_replays_left(&c->sd, c->train_blas.on))
      snprintf(narrow, sizeof narrow, ", replayed in full after the float32 narrowing %d", full);
    if (c->train_blas.on && c->sd.path == FKM_PATH_BLAS)
      snprintf(near, sizeof near, ", decided over two candidates in the BLAS's order %d", two);
    snprintf(msg, sizeof msg,
             "cuda engine phases (ms): assign %.4f group %.4f update %.4f objective-tail %.4f "
             "refined %d (left by the screen %d)%s%s",
             (double)ms, (double)mg, (double)mu, (double)mo, refined, screened, narrow, near);
    c->params.log(c->params.log_user, FKM_LOG_INFO, msg);
  }
  for (int64_t b = 0; b < B; b++) {
    out->obj[b] = c->hsc[b].obj;
    out->obj_double[b] = c->hsc[b].obj_double;
  }
  memcpy(out->counts, c->h_counts, sizeof(float) * (size_t)(B * k));
  memcpy(out->hist, c->h_hist, sizeof(int64_t) * (size_t)(B * k));
  return FKM_OK;
}

/* With verbose on, a run of more than this many multiply-adds an iteration
 * (B n_train k d; about 5 ms in parity mode) keeps the host's loop: its
 * lines then come as its iterations end, and its sync is no longer a
 * noticeable share. */
#define FKM_LOOP_VERBOSE_WORK 68719476736.0 /* 2^36 */

static int cuda_loop_fits(fkm_engine *e, int niter) {
  const cuda_engine *c = eng(e);
  const double work = (double)c->run.batch * (double)c->run.n_train * (double)c->run.k *
                      (double)c->run.d;
  const int verbose = c->params.verbose && c->params.log;
  /* loop_cap is 0 for a streamed run (begin_streamed) and a distributed one
   * (loop_records_fit) */
  return niter <= c->loop_cap && !(verbose && work > FKM_LOOP_VERBOSE_WORK);
}

/* niter iterations with no host sync between them: each ends on the device
 * (enqueue_tail), the host reads the records after the last. The clock
 * stamps: [0] the call's start, [2 it + 1] iteration it's assignment
 * done, [2 it + 2] its end. */
static fkm_status cuda_iterate_loop(fkm_engine *e, int niter, const fkm_loop_result *out) {
  cuda_engine *c = eng(e);
  const int64_t B = c->run.batch, k = c->run.k;
  cudaStream_t s = c->stream;
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  FKM_RETURN_IF(niter < 1 || niter > c->loop_cap, c->base.err, FKM_ERR_INVALID_ARG,
                "cuda engine: %d iterations on the device; the run's records hold %lld", niter,
                (long long)c->loop_cap);
  FKM_CUDA_TRY(c, cudaMemsetAsync(c->loop_iter, 0, 2 * sizeof(int), s));
  FKM_CUDA_TRY(c, fkm_launch_clock_stamp(c->stamps, NULL, s));
  c->loop_on = 1;
  fkm_status st = FKM_OK;
  for (int it = 0; it < niter && st == FKM_OK; it++) st = launch_iteration(c);
  c->loop_on = 0;
  FKM_FORWARD(st);
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->h_records, c->records,
                                  sizeof(fkm_iteration_record) * (size_t)(niter * B),
                                  cudaMemcpyDeviceToHost, s));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->h_stamps, c->stamps,
                                  sizeof(unsigned long long) * (size_t)(2 * niter + 1),
                                  cudaMemcpyDeviceToHost, s));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(out->hist, c->hist_records,
                                  sizeof(int64_t) * (size_t)(niter * B * k),
                                  cudaMemcpyDeviceToHost, s));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(s)); /* the loop's one sync */
  const unsigned long long *t = c->h_stamps;
  for (int it = 0; it < niter; it++) {
    for (int64_t b = 0; b < B; b++) {
      const fkm_iteration_record *r = &c->h_records[it * B + b];
      if (r->obj.bad_label >= 0)
        return fkm_fail_no_finite(c->base.err, "training set", B > 1 ? b : -1,
                                  r->obj.bad_label);
      out->obj[it * B + b] = r->obj.obj;
      out->obj_double[it * B + b] = r->obj.obj_double;
      out->nsplit[it * B + b] = r->nsplit;
    }
    out->time[it] = 1e-9 * (double)(t[2 * it + 2] - t[0]);
    out->time_search[it] = 1e-9 * (double)(t[2 * it + 1] - t[2 * it]);
  }
  if (c->params.verbose && c->params.log) {
    char msg[320];
    snprintf(msg, sizeof msg,
             "cuda engine: %d iterations on the device with no host sync between them, "
             "%.3f ms on its clock (each iteration's phases: FLASHKM_CUDA_LOOP=0)",
             niter, 1e3 * out->time[niter - 1]);
    c->params.log(c->params.log_user, FKM_LOG_INFO, msg);
  }
  return FKM_OK;
}

static fkm_status cuda_apply_splits(fkm_engine *e, const fkm_split_pair *pairs,
                                    int64_t count) {
  cuda_engine *c = eng(e);
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  if (count == 0) return FKM_OK;
  /* fkm_split_pair is two int64: the array is 2 * count int64, in order. */
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->pairs, pairs, sizeof(int64_t) * (size_t)(2 * count),
                                  cudaMemcpyHostToDevice, c->stream));
  FKM_CUDA_TRY(c, fkm_launch_splits(c->cent, c->run.d, c->pairs, count, c->stream));
  return FKM_OK;
}

static fkm_status cuda_read_train(fkm_engine *e, float *host) {
  cuda_engine *c = eng(e);
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  if (c->streamed) /* from the host rows themselves */
    return fkm_source_read_float(&c->ssrc, c->run.train_rows, 0, c->run.n_train, host, NULL, 0,
                                 NULL, c->base.err);
  FKM_CUDA_TRY(c, cudaMemcpyAsync(host, c->x,
                                  sizeof(float) * (size_t)(c->run.batch * c->run.n_train *
                                                           c->run.d),
                                  cudaMemcpyDefault, c->stream));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(c->stream));
  return FKM_OK;
}

static fkm_status cuda_read_centroids(fkm_engine *e, float *host) {
  cuda_engine *c = eng(e);
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(host, c->cent,
                                  sizeof(float) * (size_t)(c->run.batch * c->run.k * c->run.d),
                                  cudaMemcpyDefault, c->stream));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(c->stream));
  return FKM_OK;
}

static fkm_status cuda_write_centroids(fkm_engine *e, const float *host) {
  cuda_engine *c = eng(e);
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(c->cent, host,
                                  sizeof(float) * (size_t)(c->run.batch * c->run.k * c->run.d),
                                  cudaMemcpyDefault, c->stream));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(c->stream));
  return FKM_OK;
}

static fkm_status cuda_copy(fkm_engine *e, void *dst, const void *src, size_t bytes) {
  cuda_engine *c = eng(e);
  if (bytes == 0) return FKM_OK;
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  FKM_CUDA_TRY(c, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, c->stream));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(c->stream));
  return FKM_OK;
}

/* Assign n rows of a user matrix (host or device, any dtype) to k device
 * centroids; lab (n) int64 and dis (n) float are device buffers. Rows are
 * processed in chunks of at most 2^26 floats when they must be converted or
 * copied. Fails with FKM_ERR_NUMERIC on a row without a finite distance
 * (the message names the problem when problem >= 0). */
static fkm_status assign_user(cuda_engine *c, const fkm_params *params, const fkm_arith *ar,
                              fkm_dtype dtype, const void *x, const fkm_source *src, int64_t n,
                              int64_t d, const float *cent, int64_t k, int64_t *lab, float *dis,
                              int64_t problem) {
  fkm_status st = FKM_OK;
  if (n == 0) return FKM_OK;
  /* FAISS's search of n rows (of path_n in a distributed run's final labels) */
  const fkm_scan_desc sd = scan_desc(ar, params->metric, c->path_n > 0 ? c->path_n : n, d);
  /* the BLAS's order of that search: blocks of the call's rows (a rank's
   * rows start at a multiple of the query block) */
  fkm_blas_view order;
  memset(&order, 0, sizeof order);
  if (sd.path == FKM_PATH_BLAS)
    FKM_FORWARD(blas_view(c, params, n, k, d, &order, NULL));
  const int x_on_device = !src && is_device_ptr(x);
  const int in_place = x_on_device && dtype == FKM_DTYPE_F32;
  /* lab and dis on the host: each chunk's results cross back as it ends, so
   * that n may exceed what the device holds (fkm_assign_source) */
  const int dev_out = is_device_ptr(lab);
  int64_t chunk = in_place && dev_out      ? n
                  : c->assign_chunk > 0 ? c->assign_chunk
                                        : ((int64_t)1 << 26) / d;
  if (chunk < 1) chunk = 1;
  if (chunk > n) chunk = n;
  /* scratch for the larger of the full chunk's and the last chunk's plans */
  const int64_t last = n - ((n - 1) / chunk) * chunk;
  const fkm_assign_plan p_full = make_plan(c, params, &sd, dtype, chunk, k, d);
  const size_t wb_last = make_plan(c, params, &sd, dtype, last, k, d).work_bytes;
  const size_t work_bytes = p_full.work_bytes > wb_last ? p_full.work_bytes : wb_last;
  const int packs = plan_packs(&p_full);
  float *xf = NULL, *xn = NULL, *cn = NULL, *disc = NULL;
  uint16_t *xp = NULL;
  int *xmax = NULL;
  int32_t *lab32 = NULL;
  int64_t *lab64 = NULL;
  void *work = NULL, *oscr = NULL;
  scalars *dsc = NULL;
  scalars hsc;
  cudaStream_t s = c->stream;
  /* host rows cross on the copy stream into two buffers, chunk i + 1 beside
   * chunk i's search (FLASHKM_CUDA_STREAM=copy-widen: one buffer, each
   * chunk after the last one's search); 16-bit rows as they are, widened
   * here into xf */
  const int host_rows = !in_place && (src || !x_on_device);
  const int overlap = host_rows && !c->stream_copy_widens;
  const int raw = overlap && dtype != FKM_DTYPE_F32;
  const fkm_source hs = src ? *src : fkm_source_of_matrix(x, n, d, dtype);
  const int check = src && params->check_finite;
  row_pipe pipe = {&hs, n, chunk, check, {NULL, NULL}, -1};
  int64_t bad = -1;
  for (int i = 0; i < 2 && overlap; i++)
    FKM_CUDA_GOTO(c, cudaMallocAsync(&pipe.buf[i], (raw ? fkm_dtype_size(dtype) : sizeof(float)) *
                                                       (size_t)(chunk * d),
                                     s));
  if (!in_place && (!overlap || raw))
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&xf, sizeof(float) * (size_t)(chunk * d), s));
  FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&xn, sizeof(float) * (size_t)chunk, s));
  FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&cn, sizeof(float) * (size_t)k, s));
  FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&lab32, sizeof(int32_t) * (size_t)chunk, s));
  if (!dev_out) {
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&lab64, sizeof(int64_t) * (size_t)chunk, s));
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&disc, sizeof(float) * (size_t)chunk, s));
  }
  FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&dsc, sizeof(scalars), s));
  FKM_CUDA_GOTO(c, cudaMallocAsync(&oscr, fkm_objective_scratch_bytes(chunk, 1), s));
  if (work_bytes) FKM_CUDA_GOTO(c, cudaMallocAsync(&work, work_bytes, s));
  if (packs) {
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&xp, fkm_pack_x_bytes(chunk, d), s));
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&xmax, sizeof(int), s));
  }
  FKM_CUDA_GOTO(c, fkm_launch_profile_norms(&sd, cent, k, d, cn, s));
  if (overlap) FKM_GOTO(pipe_start(c, &pipe));
  for (int64_t r0 = 0, ch = 0; r0 < n; r0 += chunk, ch++) {
    const int64_t m = n - r0 < chunk ? n - r0 : chunk;
    const float *xc;
    if (pipe.bad >= 0) FKM_GOTO(fkm_fail_not_finite(c->base.err, "x", pipe.bad, 1, 0, d));
    if (in_place) {
      xc = (const float *)x + r0 * d;
    } else if (!host_rows) { /* device 16-bit rows, widened there */
      const char *from = (const char *)x + fkm_dtype_size(dtype) * (size_t)(r0 * d);
      FKM_GOTO(convert_rows(c, dtype, from, d, NULL, m, xf, NULL));
      xc = xf;
    } else if (overlap) { /* host rows, sent beside the last chunk's search */
      void *rows = NULL;
      FKM_GOTO(pipe_take(c, &pipe, ch, &rows));
      if (raw) {
        const fkm_convert_args ca = {dtype, rows, NULL, m, d, xf, 1, 0, 0, NULL};
        FKM_CUDA_GOTO(c, fkm_launch_convert(&ca, s));
      }
      xc = raw ? xf : (const float *)rows;
    } else { /* host rows, staged */
      FKM_GOTO(stage_rows(c, &hs, NULL, r0, m, check, xf, &bad));
      if (bad >= 0) FKM_GOTO(fkm_fail_not_finite(c->base.err, "x", bad, 1, 0, d));
      xc = xf;
    }
    FKM_CUDA_GOTO(c, fkm_launch_profile_norms(&sd, xc, m, d, xn, s));
    const fkm_assign_plan p = make_plan(c, params, &sd, dtype, m, k, d);
    if (packs) FKM_CUDA_GOTO(c, fkm_launch_pack_x(xc, m, d, p.fast_dtype, xp, xmax, s));
    float *dc = dev_out ? dis + r0 : disc;
    fkm_assign_args aa = {.x = xc,
                          .xn = xn,
                          .c = cent,
                          .cn = cn,
                          .n = m,
                          .d = d,
                          .k = k,
                          .metric = (int)params->metric,
                          .labels = lab32,
                          .dist = dc,
                          .work = work,
                          .xp = xp,
                          .xmax = xmax,
                          .blas = order};
    aa.blas.row0 = r0;
    if (p.fast_dtype >= 0)
      FKM_CUDA_GOTO(c, fkm_launch_assign(&aa, &p, s));
    else
      FKM_CUDA_GOTO(c, fkm_launch_assign_profile(&aa, &p, &sd, s));
    /* the first unassigned row: the objective kernel's scan (rows r0 ..
     * r0 + m, continued), its sums unused */
    FKM_CUDA_GOTO(c, fkm_launch_objective(dc - r0, lab32 - r0, r0, r0 + m, 1, 0, dsc, oscr, s,
                                          NULL, NULL, NULL));
    FKM_CUDA_GOTO(c, fkm_launch_widen_labels(lab32, m, dev_out ? lab + r0 : lab64, s));
    if (overlap) FKM_GOTO(pipe_next(c, &pipe, ch));
    if (!dev_out) {
      FKM_CUDA_GOTO(c, cudaMemcpyAsync(lab + r0, lab64, sizeof(int64_t) * (size_t)m,
                                       cudaMemcpyDeviceToHost, s));
      FKM_CUDA_GOTO(c, cudaMemcpyAsync(dis + r0, disc, sizeof(float) * (size_t)m,
                                       cudaMemcpyDeviceToHost, s));
    }
  }
  FKM_CUDA_GOTO(c, cudaMemcpyAsync(&hsc, dsc, sizeof hsc, cudaMemcpyDeviceToHost, s));
  FKM_CUDA_GOTO(c, cudaStreamSynchronize(s));
  if (hsc.bad_label >= 0) st = fkm_fail_no_finite(c->base.err, "x", problem, hsc.bad_label);
done:
  if (overlap) { /* copies may be in flight into the pipe's buffers */
    (void)cudaStreamSynchronize(c->copy);
    for (int i = 0; i < 2; i++)
      if (pipe.buf[i]) (void)cudaFreeAsync(pipe.buf[i], s);
  }
  if (xf) (void)cudaFreeAsync(xf, s);
  if (xn) (void)cudaFreeAsync(xn, s);
  if (cn) (void)cudaFreeAsync(cn, s);
  if (lab32) (void)cudaFreeAsync(lab32, s);
  if (lab64) (void)cudaFreeAsync(lab64, s);
  if (disc) (void)cudaFreeAsync(disc, s);
  if (dsc) (void)cudaFreeAsync(dsc, s);
  if (work) (void)cudaFreeAsync(work, s);
  if (xp) (void)cudaFreeAsync(xp, s);
  if (xmax) (void)cudaFreeAsync(xmax, s);
  if (oscr) (void)cudaFreeAsync(oscr, s);
  if (st != FKM_OK) (void)cudaStreamSynchronize(s); /* host outputs may be in flight */
  return st;
}

/* An assignment's temporaries, count labels and distances: host memory
 * when the user's outputs (either may be NULL) are host memory (the rows'
 * results then cross back chunk by chunk, so count may exceed what the
 * device holds), else device memory. */
typedef struct assign_tmp {
  int64_t *lab;
  float *dis;
  int host;
} assign_tmp;

static fkm_status tmp_alloc(cuda_engine *c, int64_t count, const int64_t *labels,
                            const float *distances, assign_tmp *t) {
  t->host = (!labels || !is_device_ptr(labels)) && (!distances || !is_device_ptr(distances));
  t->lab = NULL;
  t->dis = NULL;
  if (t->host) {
    t->lab = malloc(sizeof(int64_t) * (size_t)(count > 0 ? count : 1));
    t->dis = malloc(sizeof(float) * (size_t)(count > 0 ? count : 1));
    FKM_RETURN_IF(!t->lab || !t->dis, c->base.err, FKM_ERR_OUT_OF_MEMORY,
                  "cuda engine: cannot allocate the host assignment of %lld rows",
                  (long long)count);
    return FKM_OK;
  }
  FKM_CUDA_TRY(c, cudaMallocAsync((void **)&t->lab, sizeof(int64_t) * (size_t)count, c->stream));
  FKM_CUDA_TRY(c, cudaMallocAsync((void **)&t->dis, sizeof(float) * (size_t)count, c->stream));
  return FKM_OK;
}

static void tmp_free(cuda_engine *c, assign_tmp *t) {
  if (t->host) {
    free(t->lab);
    free(t->dis);
  } else {
    if (t->lab) (void)cudaFreeAsync(t->lab, c->stream);
    if (t->dis) (void)cudaFreeAsync(t->dis, c->stream);
  }
  t->lab = NULL;
  t->dis = NULL;
}

/* Copy a device assignment (lab, dis: n each) to the user's labels and
 * distances (host or device, either may be NULL) and wait for it. */
static fkm_status publish_assignment(cuda_engine *c, const int64_t *lab, const float *dis,
                                     int64_t n, int64_t *labels, float *distances) {
  if (labels)
    FKM_CUDA_TRY(c, cudaMemcpyAsync(labels, lab, sizeof(int64_t) * (size_t)n,
                                    cudaMemcpyDefault, c->stream));
  if (distances)
    FKM_CUDA_TRY(c, cudaMemcpyAsync(distances, dis, sizeof(float) * (size_t)n,
                                    cudaMemcpyDefault, c->stream));
  FKM_CUDA_TRY(c, cudaStreamSynchronize(c->stream));
  return FKM_OK;
}

/* Whether the final labels can be the workspace's assignment: an in-core
 * run of one process whose training rows are all of x in order, on the
 * search path of x's n rows (the same plans' bits as a separate
 * fkm_assign, docs/cuda-engine.md). */
static int labels_in_place(const cuda_engine *c) {
  return !c->streamed && !c->run.comm && !c->run.train_rows && c->run.n_train == c->run.n &&
         c->run.train_total == c->run.n && c->path_n == 0;
}

/* The final labels and distances of every problem as one iteration's
 * assignment over the resident training rows: one pass of launches for the
 * whole batch and one host synchronisation, then the outputs (nothing is
 * written when a row has no finite distance). */
static fkm_status finish_in_place(cuda_engine *c, float *centroids, int64_t *labels,
                                  float *distances) {
  const int64_t B = c->run.batch, n = c->run.n, k = c->run.k, d = c->run.d;
  cudaStream_t s = c->stream;
  fkm_status st = FKM_OK;
  int64_t *wide = NULL;
  if (c->params.verbose && c->params.log) {
    char msg[200];
    snprintf(msg, sizeof msg,
             "cuda engine: the final labels from the resident training rows, %lld problem%s "
             "in one pass",
             (long long)B, B > 1 ? "s" : "");
    c->params.log(c->params.log_user, FKM_LOG_INFO, msg);
  }
  if (labels || distances) {
    FKM_FORWARD(enqueue_assignment(c, 0)); /* no objective: the labels' check only */
    FKM_CUDA_TRY(c, cudaStreamWaitEvent(s, c->ev_obj, 0));
    FKM_CUDA_TRY(c, cudaMemcpyAsync(c->hsc, c->dsc, sizeof(scalars) * (size_t)B,
                                    cudaMemcpyDeviceToHost, s));
    FKM_CUDA_TRY(c, cudaStreamSynchronize(s));
    for (int64_t b = 0; b < B; b++)
      if (c->hsc[b].bad_label >= 0)
        return fkm_fail_no_finite(c->base.err, "x", B > 1 ? b : -1, c->hsc[b].bad_label);
  }
  if (labels && is_device_ptr(labels)) {
    FKM_CUDA_TRY(c, fkm_launch_widen_labels(c->labels, B * n, labels, s));
  } else if (labels) {
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&wide, sizeof(int64_t) * (size_t)(B * n), s));
    FKM_CUDA_GOTO(c, fkm_launch_widen_labels(c->labels, B * n, wide, s));
    FKM_CUDA_GOTO(c, cudaMemcpyAsync(labels, wide, sizeof(int64_t) * (size_t)(B * n),
                                     cudaMemcpyDeviceToHost, s));
  }
  if (distances)
    FKM_CUDA_GOTO(c, cudaMemcpyAsync(distances, c->dist, sizeof(float) * (size_t)(B * n),
                                     cudaMemcpyDefault, s));
  FKM_CUDA_GOTO(c, cudaMemcpyAsync(centroids, c->cent, sizeof(float) * (size_t)(B * k * d),
                                   cudaMemcpyDefault, s));
done:
  if (wide) (void)cudaFreeAsync(wide, s);
  const cudaError_t se = cudaStreamSynchronize(s);
  if (se != cudaSuccess && st == FKM_OK)
    st = cuda_fail(c->base.err, se, "cudaStreamSynchronize(the final outputs)", __FILE__,
                   __LINE__);
  return st;
}

static fkm_status cuda_finish(fkm_engine *e, float *centroids, int64_t *labels,
                              float *distances) {
  cuda_engine *c = eng(e);
  const int64_t B = c->run.batch, n = c->run.n, k = c->run.k, d = c->run.d;
  const size_t xb = fkm_dtype_size(c->run.dtype) * (size_t)(n * d);
  fkm_status st = FKM_OK;
  assign_tmp t = {NULL, NULL, 0};
  cudaStream_t s = c->stream;
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  int64_t bad = -1; /* the rows the run did not train on: nothing is written */
  bg_check_join(c, &bad);
  if (bad >= 0) return fkm_fail_not_finite(c->base.err, "x", bad, 1, 0, d);
  if (labels_in_place(c)) return finish_in_place(c, centroids, labels, distances);
  const size_t cbytes = sizeof(float) * (size_t)(B * k * d);
  const float *cent = c->cent;
  float *cent_dev = NULL, *cent_host = NULL;
  if (c->streamed && (labels || distances)) {
    /* A streamed run's workspace took its budget (by default the device's
     * free memory): the final search's scratch takes its place, the
     * centroids moved out first (the next run allocates the workspace
     * again). */
    cent_host = malloc(cbytes);
    if (!cent_host)
      FKM_GOTO(fkm_fail(c->base.err, FKM_ERR_OUT_OF_MEMORY,
                        "cuda engine: cannot allocate %zu bytes of centroids", cbytes));
    FKM_CUDA_GOTO(c, cudaMemcpyAsync(cent_host, c->cent, cbytes, cudaMemcpyDeviceToHost, s));
    FKM_CUDA_GOTO(c, cudaStreamSynchronize(c->copy)); /* a copy that a stop left in flight */
    FKM_CUDA_GOTO(c, cudaFreeAsync(c->ws, s));
    c->ws = NULL;
    c->ws_cap = 0;
    c->cent = NULL;
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&cent_dev, cbytes, s));
    FKM_CUDA_GOTO(c, cudaMemcpyAsync(cent_dev, cent_host, cbytes, cudaMemcpyHostToDevice, s));
    cent = cent_dev;
  }
  if (labels || distances) {
    FKM_GOTO(tmp_alloc(c, B * n, labels, distances, &t));
    for (int64_t b = 0; b < B; b++)
      FKM_GOTO(assign_user(c, &c->params, &c->arith, c->run.dtype,
                           c->run.x ? (const char *)c->run.x + xb * (size_t)b : NULL,
                           c->run.source, n, d, cent + b * k * d, k, t.lab + b * n,
                           t.dis + b * n, B > 1 ? b : -1));
  }
  FKM_CUDA_GOTO(c, cudaMemcpyAsync(centroids, cent, cbytes, cudaMemcpyDefault, s));
  FKM_GOTO(publish_assignment(c, t.lab, t.dis, B * n, labels, distances));
done:
  if (cent_dev) (void)cudaFreeAsync(cent_dev, s);
  (void)cudaStreamSynchronize(s); /* cent_host's copy */
  free(cent_host);
  tmp_free(c, &t);
  return st;
}

/* fkm_assign (x) and fkm_assign_source (src, x NULL). */
static fkm_status assign_call(cuda_engine *c, const fkm_params *params, int64_t n, int64_t d,
                              int64_t k, fkm_dtype dtype, const void *x, const fkm_source *src,
                              const float *centroids, int64_t *labels, float *distances) {
  fkm_status st = FKM_OK;
  float *cent = NULL;
  assign_tmp t = {NULL, NULL, 0};
  cudaStream_t s = c->stream;
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  FKM_RETURN_IF(k > INT32_MAX, c->base.err, FKM_ERR_UNSUPPORTED,
                "cuda engine: k = %lld must be < 2^31", (long long)k);
  fkm_arith arith;
  FKM_FORWARD(fkm_arith_of(&params->profile, &arith, c->base.err));
  if (params->check_finite) {
    if (!src) FKM_FORWARD(check_x(c, "x", dtype, x, 1, n, d));
    FKM_FORWARD(check_x(c, "centroids", FKM_DTYPE_F32, centroids, 1, k, d));
  }
  const float *cd = centroids;
  if (!is_device_ptr(centroids)) {
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&cent, sizeof(float) * (size_t)(k * d), s));
    FKM_CUDA_GOTO(c, cudaMemcpyAsync(cent, centroids, sizeof(float) * (size_t)(k * d),
                                     cudaMemcpyHostToDevice, s));
    cd = cent;
  }
  FKM_GOTO(tmp_alloc(c, n, labels, distances, &t));
  FKM_GOTO(assign_user(c, params, &arith, dtype, x, src, n, d, cd, k, t.lab, t.dis, -1));
  FKM_GOTO(publish_assignment(c, t.lab, t.dis, n, labels, distances));
done:
  if (cent) (void)cudaFreeAsync(cent, s);
  tmp_free(c, &t);
  (void)cudaStreamSynchronize(s);
  return st;
}

static fkm_status cuda_assign(fkm_engine *e, const fkm_params *params, int64_t n, int64_t d,
                              int64_t k, fkm_dtype dtype, const void *x,
                              const float *centroids, int64_t *labels, float *distances,
                              int64_t path_n) {
  eng(e)->path_n = path_n;
  return assign_call(eng(e), params, n, d, k, dtype, x, NULL, centroids, labels, distances);
}

static fkm_status cuda_assign_source(fkm_engine *e, const fkm_params *params,
                                     const fkm_source *src, int64_t k, const float *centroids,
                                     int64_t *labels, float *distances, int64_t path_n) {
  eng(e)->path_n = path_n;
  return assign_call(eng(e), params, src->n, src->d, k, src->dtype, NULL, src, centroids,
                     labels, distances);
}

/* The products the learned orders of the search's call shapes hold (the
 * search's blocks, learned now where no call has yet). */
static fkm_status cuda_blas_coverage(fkm_engine *e, const fkm_params *params, int64_t n,
                                     int64_t d, int64_t k, int64_t *covered) {
  cuda_engine *c = eng(e);
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  fkm_blas_view order;
  return blas_view(c, params, n, k, d, &order, covered);
}

/* fkm_pq_encode: the centroids on the device once, then the rows in chunks
 * (host lists copied in, host codes copied out). Host rows cross on the copy
 * stream into two buffers through the pinned staging, chunk i + 1 beside
 * chunk i's encoding (FLASHKM_CUDA_STREAM=copy-widen: one buffer, each chunk
 * copied on the work's stream after the last one's encoding). */
static fkm_status cuda_pq_encode(fkm_engine *e, const fkm_pq_args *a) {
  cuda_engine *c = eng(e);
  cudaStream_t s = c->stream;
  fkm_status st = FKM_OK;
  FKM_CUDA_TRY(c, cudaSetDevice(c->device));
  const int64_t dsub = a->d / a->M, ksub = (int64_t)1 << a->nbits;
  const int64_t code_size = fkm_pq_code_size(a->M, a->nbits);
  if (a->check_finite) {
    FKM_FORWARD(check_x(c, "x", FKM_DTYPE_F32, a->x, 1, a->n, a->d));
    FKM_FORWARD(check_x(c, "pq_centroids", FKM_DTYPE_F32, a->pq, 1, a->M * ksub, dsub));
    if (a->coarse) FKM_FORWARD(check_x(c, "coarse", FKM_DTYPE_F32, a->coarse, 1, a->nlist, a->d));
  }
  const int xdev = is_device_ptr(a->x), cdev = is_device_ptr(a->codes);
  const int ldev = a->lists && is_device_ptr(a->lists);
  if (a->lists && !ldev) FKM_FORWARD(fkm_pq_check_lists(c->base.err, a->lists, a->n, a->nlist));
  float *pq = NULL, *coarse = NULL, *xb = NULL; /* xb: host rows copied serially */
  int overlap = 0; /* host rows on the copy stream, through pipe */
  row_pipe pipe = {NULL, a->n, 0, 0, {NULL, NULL}, -1}; /* the rows were checked above */
  int64_t *lb = NULL;
  uint32_t *idx = NULL;
  uint8_t *cb = NULL;
  unsigned long long *bad = NULL;
  if (ldev) { /* device lists: one range check before anything is written */
    unsigned long long hb = 0;
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&bad, sizeof *bad, s));
    FKM_CUDA_GOTO(c, cudaMemsetAsync(bad, 0xff, sizeof *bad, s));
    FKM_CUDA_GOTO(c, fkm_launch_pq_check_lists(a->lists, a->n, a->nlist, bad, s));
    FKM_CUDA_GOTO(c, cudaMemcpyAsync(&hb, bad, sizeof hb, cudaMemcpyDeviceToHost, s));
    FKM_CUDA_GOTO(c, cudaStreamSynchronize(s));
    if (hb != ~0ull) {
      int64_t v = 0;
      FKM_CUDA_GOTO(c, cudaMemcpyAsync(&v, a->lists + hb, sizeof v, cudaMemcpyDeviceToHost, s));
      FKM_CUDA_GOTO(c, cudaStreamSynchronize(s));
      st = fkm_pq_fail_list(c->base.err, (int64_t)hb, v, a->nlist);
      goto done;
    }
  }
  const float *pqd = a->pq, *cd = a->coarse;
  if (!is_device_ptr(a->pq)) {
    const size_t bytes = sizeof(float) * (size_t)(a->M * ksub * dsub);
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&pq, bytes, s));
    FKM_CUDA_GOTO(c, cudaMemcpyAsync(pq, a->pq, bytes, cudaMemcpyHostToDevice, s));
    pqd = pq;
  }
  if (a->coarse && !is_device_ptr(a->coarse)) {
    const size_t bytes = sizeof(float) * (size_t)(a->nlist * a->d);
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&coarse, bytes, s));
    FKM_CUDA_GOTO(c, cudaMemcpyAsync(coarse, a->coarse, bytes, cudaMemcpyHostToDevice, s));
    cd = coarse;
  }
  /* chunks of about 64 MiB of rows (FLASHKM_CUDA_ASSIGN_CHUNK: tests) */
  int64_t chunk = ((int64_t)64 << 20) / (int64_t)sizeof(float) / a->d;
  if (chunk < 1024) chunk = 1024;
  if (c->assign_chunk > 0) chunk = c->assign_chunk;
  if (chunk > a->n) chunk = a->n;
  overlap = !xdev && !c->stream_copy_widens;
  const fkm_source hs = fkm_source_of_matrix(a->x, a->n, a->d, FKM_DTYPE_F32);
  pipe.src = &hs;
  pipe.chunk = chunk;
  FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&idx, sizeof *idx * (size_t)(chunk * a->M), s));
  for (int i = 0; i < 2 && overlap; i++)
    FKM_CUDA_GOTO(c, cudaMallocAsync(&pipe.buf[i], sizeof(float) * (size_t)(chunk * a->d), s));
  if (!xdev && !overlap)
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&xb, sizeof(float) * (size_t)(chunk * a->d), s));
  if (a->lists && !ldev)
    FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&lb, sizeof *lb * (size_t)chunk, s));
  if (!cdev) FKM_CUDA_GOTO(c, cudaMallocAsync((void **)&cb, (size_t)(chunk * code_size), s));
  if (overlap) FKM_GOTO(pipe_start(c, &pipe));
  for (int64_t i0 = 0, ch = 0; i0 < a->n; i0 += chunk, ch++) {
    const int64_t m = a->n - i0 < chunk ? a->n - i0 : chunk;
    fkm_pq_launch_args k = {a->rule, m, a->d, a->M, a->nbits, a->x + i0 * a->d, pqd, cd,
                            a->lists ? a->lists + i0 : NULL, a->nlist, idx,
                            cdev ? a->codes + i0 * code_size : cb, !c->pq_specialised};
    if (overlap) {
      void *rows = NULL;
      FKM_GOTO(pipe_take(c, &pipe, ch, &rows));
      k.x = rows;
    } else if (!xdev) {
      FKM_CUDA_GOTO(c, cudaMemcpyAsync(xb, k.x, sizeof(float) * (size_t)(m * a->d),
                                       cudaMemcpyHostToDevice, s));
      k.x = xb;
    }
    if (a->lists && !ldev) {
      FKM_CUDA_GOTO(c, cudaMemcpyAsync(lb, k.lists, sizeof *lb * (size_t)m,
                                       cudaMemcpyHostToDevice, s));
      k.lists = lb;
    }
    FKM_CUDA_GOTO(c, fkm_launch_pq_encode(&k, s));
    if (overlap) FKM_GOTO(pipe_next(c, &pipe, ch));
    if (!cdev)
      FKM_CUDA_GOTO(c, cudaMemcpyAsync(a->codes + i0 * code_size, cb, (size_t)(m * code_size),
                                       cudaMemcpyDeviceToHost, s));
  }
  FKM_CUDA_GOTO(c, cudaStreamSynchronize(s));
done:
  if (overlap) (void)cudaStreamSynchronize(c->copy); /* copies may be in flight into the pipe */
  if (bad) (void)cudaFreeAsync(bad, s);
  if (pq) (void)cudaFreeAsync(pq, s);
  if (coarse) (void)cudaFreeAsync(coarse, s);
  if (idx) (void)cudaFreeAsync(idx, s);
  for (int i = 0; i < 2; i++)
    if (pipe.buf[i]) (void)cudaFreeAsync(pipe.buf[i], s);
  if (xb) (void)cudaFreeAsync(xb, s);
  if (lb) (void)cudaFreeAsync(lb, s);
  if (cb) (void)cudaFreeAsync(cb, s);
  (void)cudaStreamSynchronize(s);
  return st;
}

/* ------------------------------------------------------------ the engine */

static const char *cuda_device_name(fkm_engine *e) { return eng(e)->name; }

static fkm_status cuda_set_num_threads(fkm_engine *e, int n) {
  return fkm_check_num_threads(e->err, n);
}

static fkm_status cuda_set_stream(fkm_engine *e, struct CUstream_st *stream) {
  cuda_engine *c = eng(e);
  c->stream = stream ? (cudaStream_t)stream : c->own_stream;
  return FKM_OK;
}

/* Releases what the engine keeps between runs. */
static void cuda_trim(fkm_engine *e) {
  cuda_engine *c = eng(e);
  (void)cudaSetDevice(c->device);
  for (int i = 0; i < 2; i++) {
    if (c->ev_stage[i]) (void)cudaEventSynchronize(c->ev_stage[i]);
    if (c->stage[i]) (void)cudaFreeHost(c->stage[i]);
    if (c->stage_dev[i]) (void)cudaFree(c->stage_dev[i]);
    c->stage[i] = c->stage_dev[i] = NULL;
  }
  if (c->ws) { /* on the engine's own stream: a caller's stream may be gone by now (every
                  run ended synchronised, so the workspace is idle) */
    (void)cudaFreeAsync(c->ws, c->own_stream);
    (void)cudaStreamSynchronize(c->own_stream);
  }
  if (c->pinned) (void)cudaFreeHost(c->pinned);
  if (c->drows) (void)cudaFree(c->drows);
  c->drows = NULL;
  c->drows_cap = 0;
  c->drows_gen = 0;
  if (c->graph_kept) (void)cudaGraphExecDestroy(c->graph_kept);
  c->graph_kept = NULL;
  fkm_blas_cache_clear(&c->blas);
  (void)cudaGetLastError();
  c->ws = NULL;
  c->pinned = NULL;
  c->ws_cap = c->pinned_cap = c->stage_cap = c->stage_dev_cap = 0;
}

static fkm_status cuda_release(fkm_engine *e) {
  cuda_trim(e);
  return FKM_OK;
}

static void cuda_destroy(fkm_engine *e) {
  if (!e) return;
  cuda_engine *c = eng(e);
  cuda_end(e);
  cuda_trim(e);
  for (int i = 0; i < 2; i++) {
    if (c->ev_stage[i]) (void)cudaEventDestroy(c->ev_stage[i]);
    if (c->ev_ready[i]) (void)cudaEventDestroy(c->ev_ready[i]);
    if (c->ev_free[i]) (void)cudaEventDestroy(c->ev_free[i]);
  }
  if (c->copy) (void)cudaStreamDestroy(c->copy);
  cudaEvent_t evs[] = {c->ev_a0, c->ev_a1, c->ev_g1, c->ev_u1, c->ev_objt, c->ev_obj};
  for (size_t i = 0; i < sizeof evs / sizeof *evs; i++)
    if (evs[i]) (void)cudaEventDestroy(evs[i]);
  for (int i = 0; i < FKM_CUDA_CHUNKS; i++)
    if (c->ev_chunk[i]) (void)cudaEventDestroy(c->ev_chunk[i]);
  for (int i = 0; i < FKM_CUDA_LANES; i++) {
    if (c->ev_lane[i]) (void)cudaEventDestroy(c->ev_lane[i]);
    if (c->lane[i]) (void)cudaStreamDestroy(c->lane[i]);
  }
  if (c->ev_fork) (void)cudaEventDestroy(c->ev_fork);
  if (c->ev_ufork) (void)cudaEventDestroy(c->ev_ufork);
  if (c->ev_ujoin) (void)cudaEventDestroy(c->ev_ujoin);
  if (c->side) (void)cudaStreamDestroy(c->side);
  if (c->side_aux) (void)cudaStreamDestroy(c->side_aux);
  if (c->ev_ofork) (void)cudaEventDestroy(c->ev_ofork);
  if (c->ev_ojoin) (void)cudaEventDestroy(c->ev_ojoin);
  if (c->own_stream) (void)cudaStreamDestroy(c->own_stream);
  (void)cudaGetLastError();
  free(c);
}

static int cuda_is_device(fkm_engine *e, const void *p) {
  (void)e;
  return is_device_ptr(p);
}

static const fkm_engine_ops cuda_ops = {
    "cuda",
    cuda_destroy,
    cuda_device_name,
    cuda_set_num_threads,
    cuda_set_stream,
    cuda_begin,
    cuda_load_initial,
    cuda_init_rows,
    cuda_post_process,
    cuda_iterate,
    cuda_apply_splits,
    cuda_loop_fits,
    cuda_iterate_loop,
    cuda_read_train,
    cuda_read_centroids,
    cuda_write_centroids,
    cuda_finish,
    cuda_end,
    cuda_copy,
    cuda_assign,
    cuda_assign_source,
    cuda_pq_encode,
    cuda_blas_coverage,
    cuda_plan_memory,
    cuda_release,
    cuda_is_device,
};

/* Whether the environment variable name holds exactly value (the engine's
 * switches are read when a context is created). */
static int env_is(const char *name, const char *value) {
  const char *v = getenv(name);
  return v && strcmp(v, value) == 0;
}

fkm_status fkm_engine_cuda_create(fkm_errbuf *err, int device, fkm_engine **out) {
  *out = NULL;
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    (void)cudaGetLastError();
    return fkm_fail(err, FKM_ERR_NO_DEVICE, "backend cuda: no CUDA device is present");
  }
  FKM_RETURN_IF(device < 0 || device >= count, err, FKM_ERR_NO_DEVICE,
                "backend cuda: device %d does not exist (%d present)", device, count);
  cuda_engine *c = calloc(1, sizeof *c);
  FKM_RETURN_IF(!c, err, FKM_ERR_OUT_OF_MEMORY, "cannot allocate the CUDA engine");
  c->base.ops = &cuda_ops;
  c->base.err = err;
  c->device = device;
  struct cudaDeviceProp prop;
  cudaError_t ce = cudaSetDevice(device);
  if (ce == cudaSuccess) ce = cudaGetDeviceProperties(&prop, device);
  if (ce == cudaSuccess) ce = cudaStreamCreateWithFlags(&c->own_stream, cudaStreamNonBlocking);
  /* The objective's side stream at the greatest priority: its small
   * kernels get the next free block slots instead of queueing behind the
   * whole assignment of the next chunk. */
  int prio_low = 0, prio_high = 0;
  if (ce == cudaSuccess) ce = cudaDeviceGetStreamPriorityRange(&prio_low, &prio_high);
  if (ce == cudaSuccess)
    ce = cudaStreamCreateWithPriority(&c->side, cudaStreamNonBlocking, prio_high);
  if (ce == cudaSuccess)
    ce = cudaStreamCreateWithPriority(&c->side_aux, cudaStreamNonBlocking, prio_high);
  if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&c->ev_ofork, cudaEventDisableTiming);
  if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&c->ev_ojoin, cudaEventDisableTiming);
  if (ce == cudaSuccess) ce = cudaEventCreate(&c->ev_a0);
  if (ce == cudaSuccess) ce = cudaEventCreate(&c->ev_a1);
  for (int i = 0; i < FKM_CUDA_CHUNKS && ce == cudaSuccess; i++)
    ce = cudaEventCreateWithFlags(&c->ev_chunk[i], cudaEventDisableTiming);
  for (int i = 0; i < FKM_CUDA_LANES && ce == cudaSuccess; i++) {
    ce = cudaStreamCreateWithFlags(&c->lane[i], cudaStreamNonBlocking);
    if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&c->ev_lane[i], cudaEventDisableTiming);
  }
  if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&c->ev_fork, cudaEventDisableTiming);
  if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&c->ev_ufork, cudaEventDisableTiming);
  if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&c->ev_ujoin, cudaEventDisableTiming);
  if (ce == cudaSuccess) ce = cudaEventCreate(&c->ev_g1);
  if (ce == cudaSuccess) ce = cudaEventCreate(&c->ev_u1);
  if (ce == cudaSuccess) ce = cudaEventCreate(&c->ev_objt);
  if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&c->ev_obj, cudaEventDisableTiming);
  for (int i = 0; i < 2 && ce == cudaSuccess; i++) {
    ce = cudaEventCreateWithFlags(&c->ev_stage[i], cudaEventDisableTiming);
    if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&c->ev_ready[i], cudaEventDisableTiming);
    if (ce == cudaSuccess) ce = cudaEventCreateWithFlags(&c->ev_free[i], cudaEventDisableTiming);
  }
  if (ce == cudaSuccess) ce = cudaStreamCreateWithFlags(&c->copy, cudaStreamNonBlocking);
  if (ce != cudaSuccess) {
    fkm_status s = cuda_fail(err, ce, "creating the CUDA engine", __FILE__, __LINE__);
    cuda_destroy(&c->base);
    return s == FKM_ERR_CUDA ? FKM_ERR_NO_DEVICE : s;
  }
  c->stream = c->own_stream;
  c->allow_tc = !env_is("FLASHKM_CUDA_ASSIGN", "simt");
  if (c->allow_tc && !env_is("FLASHKM_CUDA_ASSIGN", "mma") && prop.major == 9 && prop.minor == 0) {
    ce = fkm_assign_probe_wgmma(&c->wgmma);
    if (ce != cudaSuccess) {
      fkm_status s = cuda_fail(err, ce, "probing the wgmma kernels", __FILE__, __LINE__);
      cuda_destroy(&c->base);
      return s;
    }
  }
  c->graph_wanted = !env_is("FLASHKM_CUDA_GRAPH", "0");
  c->loop_wanted = !env_is("FLASHKM_CUDA_LOOP", "0");
  c->batched_wanted = !env_is("FLASHKM_CUDA_BATCHED", "0");
  c->fast_batched_wanted = !env_is("FLASHKM_CUDA_FAST_BATCHED", "0");
  c->group_radix = env_is("FLASHKM_CUDA_GROUP", "radix");
  c->stream_copy_widens = env_is("FLASHKM_CUDA_STREAM", "copy-widen");
  c->stream_prefetch = !c->stream_copy_widens && !env_is("FLASHKM_CUDA_STREAM", "no-prefetch");
  c->pq_specialised = !env_is("FLASHKM_CUDA_PQ", "generic");
  const char *bsk = getenv("FLASHKM_CUDA_BATCH_SIMT_K");
  c->batch_simt_k = bsk && *bsk ? strtoll(bsk, NULL, 10) : 64;
  c->replay_staged = !env_is("FLASHKM_CUDA_REPLAY", "global");
  const char *cl = getenv("FLASHKM_CUDA_CHUNK_LOG2");
  c->chunk_log2 = cl ? atoi(cl) : FKM_CUDA_CHUNK_LOG2;
  if (c->chunk_log2 < 10 || c->chunk_log2 > 30) c->chunk_log2 = FKM_CUDA_CHUNK_LOG2;
  const char *ac = getenv("FLASHKM_CUDA_ASSIGN_CHUNK");
  c->assign_chunk = ac && *ac ? strtoll(ac, NULL, 10) : 0;
  c->sm_count = prop.multiProcessorCount;
  snprintf(c->name, sizeof c->name, "%s (device %d, sm_%d%d, %d SMs)", prop.name, device,
           prop.major, prop.minor, prop.multiProcessorCount);
  *out = &c->base;
  return FKM_OK;
}
