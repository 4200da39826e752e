/* The engine interface: what the Lloyd loop (lloyd.c) asks of a backend.
 *
 * The loop owns the algorithm's control flow (subsampling, redo, split
 * decisions, statistics, best-run selection); an engine owns the data and the
 * heavy arithmetic (assignment, objective, update, post-processing). Every op
 * works on the engine's own copy of the training set and centroids, which may
 * live on a device: the loop only ever moves k-sized vectors across.
 *
 * A run holds `batch` independent problems of the same shape, stored back to
 * back (fkm_train_batched; fkm_train is batch 1): the engine's training set
 * is (batch * n_train, d), problem b's rows first at b * n_train, and its
 * centroids (batch * k, d), problem b's at b * k. A row of problem b is only
 * ever assigned to problem b's centroids. The loop drives all problems in
 * lockstep: one iterate call runs an iteration of every problem.
 *
 * Each op returns a status and records its message in the context's errbuf.
 * Bits: every engine must produce exactly the CPU engine's output bits.
 */
#ifndef FKM_ENGINE_H
#define FKM_ENGINE_H

#include "arith.h"
#include "comm.h"
#include "pq.h"
#include "flashkm.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of one element of a dtype (float32: 4, float16 / bfloat16: 2): the
 *  host side's one dtype dispatch (the kernels': kernels/dispatch.cuh). */
static inline size_t fkm_dtype_size(fkm_dtype t) { return t == FKM_DTYPE_F32 ? 4 : 2; }

/** One training run, validated, as the loop hands it to an engine. */
typedef struct fkm_run {
  const fkm_params *params;    /* full-size copy, validated */
  int64_t batch;               /* problems, >= 1 */
  int64_t n, d, k;             /* per problem; n: rows of the user's x */
  fkm_dtype dtype;
  const void *x;               /* user pointer, (batch, n, d), host or device */
  const float *weights;        /* user pointer, (batch, n), or NULL */
  const fkm_source *source;    /* batch 1: the rows, read through it (x is
                                  then NULL); NULL: x */
  const int64_t *train_rows;   /* host, n_train indices into each problem's
                                  x in training order (the same for every
                                  problem); NULL: row i is x row i */
  uint64_t rows_generation;    /* nonzero: train_rows is the engine's memo
                                  of that generation (fkm_rows_memo): the
                                  same list in every run that names it, so
                                  an engine may keep what it derives from it
                                  (a device copy) */
  int64_t n_train;             /* rows in the training set */
  int64_t n_init;              /* user-supplied centroid rows */
  int64_t k_frozen;            /* frozen_centroids ? n_init : 0 */
  const fkm_arith *arith;      /* params->profile's traits */
  /* A distributed run (docs/distributed.md): the training set has
   * train_total rows over all ranks, and this rank's n_train rows are its
   * run T[train_first .. train_first + n_train) of training order, held in
   * x (no train_rows, no source). iterate continues the chains of the ranks
   * before it through comm. One process: comm NULL, train_first 0,
   * train_total n_train. */
  const fkm_comm *comm;
  int64_t train_first, train_total;
} fkm_run;

/** What one iteration reports back to the host, per problem; every array
 *  is host memory owned by the loop. */
typedef struct fkm_iter_result {
  float *obj;            /* (batch) float sum of distances in training order */
  double *obj_double;    /* (batch) the same in double */
  float *counts;         /* (batch, k): float (weighted) counts after update,
                            rows < k_frozen of each problem unspecified */
  int64_t *hist;         /* (batch, k): unweighted label counts */
  double assign_seconds; /* wall time of the assignment part (all problems) */
} fkm_iter_result;

/** What a run of iterations on the engine alone reports (iterate_loop),
 *  iteration it's values at it * batch (+ problem) and it * batch * k; host
 *  memory owned by the loop. */
typedef struct fkm_loop_result {
  float *obj;          /* (niter, batch) as fkm_iter_result's */
  double *obj_double;  /* (niter, batch) */
  int64_t *hist;       /* (niter, batch, k) */
  int64_t *nsplit;     /* (niter, batch) empty clusters split after the update */
  double *time;        /* (niter) seconds from the call to the iteration's end */
  double *time_search; /* (niter) seconds of the iteration's assignment */
} fkm_loop_result;

/** One split: row dst := perturbed copy of row src (docs/contract.md section 6);
 *  pairs are applied in order. Rows index the (batch * k) centroids. */
typedef struct fkm_split_pair {
  int64_t dst, src;
} fkm_split_pair;

typedef struct fkm_engine fkm_engine;

typedef struct fkm_engine_ops {
  const char *name;
  void (*destroy)(fkm_engine *e);
  /** Human-readable device string, owned by the engine. */
  const char *(*device_name)(fkm_engine *e);
  fkm_status (*set_num_threads)(fkm_engine *e, int n);
  fkm_status (*set_stream)(fkm_engine *e, struct CUstream_st *stream);

  /** Begin a run: check input values (params->check_finite: x finite;
   *  weights finite and >= 0 always; first n_init centroid rows finite), copy
   *  the training set in (converted to float, rows in train_rows order) and
   *  allocate everything the run needs. user_centroids: the caller's
   *  (batch, k, d) buffer whose first n_init rows of each problem are read. */
  fkm_status (*begin)(fkm_engine *e, const fkm_run *run,
                      const float *user_centroids);
  /** Each problem's centroid rows [0, n_init) := the user's initial rows
   *  (read in begin). */
  fkm_status (*load_initial)(fkm_engine *e);
  /** Each problem's centroid rows i in [from, k) := its training row
   *  perm[i] (perm: host, k). */
  fkm_status (*init_rows)(fkm_engine *e, const int64_t *perm, int64_t from);
  /** spherical / int_centroids of the run's params, on all rows. */
  fkm_status (*post_process)(fkm_engine *e);
  /** Assign every problem's training set to its centroids, objectives,
   *  update the non-frozen rows. */
  fkm_status (*iterate)(fkm_engine *e, fkm_iter_result *out);
  fkm_status (*apply_splits)(fkm_engine *e, const fkm_split_pair *pairs,
                             int64_t count);
  /** Whether iterate_loop can run niter iterations of this run (NULL: never).
   *  The loop asks only when nothing between its iterations needs the
   *  host: no progress callback, no early stop, one process, and more
   *  training points than movable centroids (a split cannot fail). */
  int (*loop_fits)(fkm_engine *e, int niter);
  /** niter iterations, each iterate's work followed by the splits of empty
   *  clusters (kernels/split_plan.h, as the loop plans them) and
   *  post_process, with no host decision between them; the statistics after
   *  the last. An iteration with no finite distance fails the call, the
   *  first such as iterate reports it. */
  fkm_status (*iterate_loop)(fkm_engine *e, int niter, const fkm_loop_result *out);
  /** Copy the (batch, n_train, d) float training set to host memory
   *  (seeding with k-means++ / AFK-MC^2 runs on the host). */
  fkm_status (*read_train)(fkm_engine *e, float *host);
  /** Copy the (batch, k, d) centroids to / from host memory (best-run
   *  keeping). */
  fkm_status (*read_centroids)(fkm_engine *e, float *host);
  fkm_status (*write_centroids)(fkm_engine *e, const float *host);
  /** Write the outputs: centroids (batch, k, d); when labels or distances
   *  (batch, n) is not NULL, assign all n input rows of each problem to its
   *  current centroids first. Nothing is written unless everything
   *  succeeds. Pointers are the user's. */
  fkm_status (*finish)(fkm_engine *e, float *centroids, int64_t *labels,
                       float *distances);
  /** Release the run's resources (also after a failed run). */
  void (*end)(fkm_engine *e);

  /** Copy bytes from src to dst, each a user pointer (host or device
   *  memory, as this engine accepts) or host memory. Blocks. */
  fkm_status (*copy)(fkm_engine *e, void *dst, const void *src, size_t bytes);

  /** fkm_assign(): stateless, pointers are the user's. The search path
   *  is the one FAISS takes for path_n rows (n, or a distributed run's rows
   *  over all ranks). */
  fkm_status (*assign)(fkm_engine *e, const fkm_params *params, int64_t n,
                       int64_t d, int64_t k, fkm_dtype dtype, const void *x,
                       const float *centroids, int64_t *labels,
                       float *distances, int64_t path_n);
  /** fkm_assign_source(): the source's rows read in chunks. */
  fkm_status (*assign_source)(fkm_engine *e, const fkm_params *params,
                              const fkm_source *src, int64_t k, const float *centroids,
                              int64_t *labels, float *distances, int64_t path_n);
  /** fkm_pq_encode(): stateless, pointers are the user's (plugin/pq.h). */
  fkm_status (*pq_encode)(fkm_engine *e, const fkm_pq_args *a);
  /** fkm_order_coverage() on the BLAS path with params->blas_sgemm set:
   *  how many of the n x k products of a search of n rows this engine
   *  sums in that BLAS's order. */
  fkm_status (*blas_coverage)(fkm_engine *e, const fkm_params *params, int64_t n, int64_t d,
                              int64_t k, int64_t *covered);
  /** fkm_train_memory(): what a run of this shape holds in this engine's
   *  memory under params->memory_budget; FKM_ERR_OUT_OF_MEMORY (plan
   *  filled) when it cannot fit. from_source: the rows come through a
   *  source (always copied or streamed). */
  fkm_status (*plan_memory)(fkm_engine *e, const fkm_params *params, int64_t batch,
                            int64_t n, int64_t d, int64_t k, fkm_dtype dtype,
                            int from_source, fkm_memory_plan *plan);
  /** fkm_ctx_release_memory(): free what the engine keeps between runs. */
  fkm_status (*release_memory)(fkm_engine *e);
  /** Whether p is device memory (a distributed run takes host memory). */
  int (*is_device)(fkm_engine *e, const void *p);
} fkm_engine_ops;

/** The last subsample's training rows (lloyd.c): a run that draws the same
 *  rand_perm prefix (the same n, seed and size; FAISS's default seed is
 *  fixed, so repeated trainings on as many rows do) reads them instead. */
typedef struct fkm_rows_memo {
  int64_t n, m;
  uint64_t seed;
  int64_t *rows; /* m entries, or NULL */
} fkm_rows_memo;

/** Every engine struct starts with this header. */
struct fkm_engine {
  const fkm_engine_ops *ops;
  fkm_errbuf *err;    /* the owning context's */
  fkm_rows_memo memo; /* zero at creation; fkm_engine_forget_rows frees it */
  uint64_t memo_draws; /* the memo's generation: counts its draws (never reused,
                          not reset when the memo is freed) */
};

/** Frees the engine's memo of training rows (fkm_ctx_release_memory,
 *  fkm_ctx_destroy). */
void fkm_engine_forget_rows(fkm_engine *e);

/** Engine constructors. cuda: returns FKM_ERR_NO_DEVICE without a usable
 *  device, FKM_ERR_UNSUPPORTED in a build without CUDA. */
fkm_status fkm_engine_cpu_create(fkm_errbuf *err, fkm_engine **out);
fkm_status fkm_engine_cuda_create(fkm_errbuf *err, int device,
                                  fkm_engine **out);

/** Host threads: at most FKM_THREADS_PER_PROCESSOR per processor this
 *  process may run on, OpenMP's thread limit, half of RLIMIT_NPROC
 *  (engine_cpu.c). fkm_check_num_threads refuses a count above it. */
#define FKM_THREADS_PER_PROCESSOR 16
/** CLOCK_MONOTONIC in seconds (the loop's statistics, engines' timings). */
double fkm_now_seconds(void);
int fkm_thread_limit(void);
fkm_status fkm_check_num_threads(fkm_errbuf *err, int n);

#ifdef __cplusplus
}
#endif

#endif
