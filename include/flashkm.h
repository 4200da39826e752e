/*
 * flashkm: exact GPU k-means for vector search.
 *
 * The one public C header. It is C99 (it compiles with -std=c99 -pedantic
 * -Werror) and C++, and needs no CUDA header.
 *
 * Contract: fkm_train() computes the centroids faiss::Clustering::train()
 * computes (FAISS 1.7.3 semantics, see SPEC.md in the repository), bit for
 * bit, on every backend. fkm_assign() gives the labels of FAISS's k=1 flat
 * search in FAISS's own float formula.
 *
 * Conventions used by every entry point:
 *  - Every function returns fkm_status (FKM_OK == 0). Nothing aborts, exits
 *    or prints; details of the last failure on a context are in
 *    fkm_ctx_last_error().
 *  - On any error no output buffer has been written.
 *  - Matrices are dense and row-major: a (n, d) matrix holds row i at
 *    x + i * d. Sizes are int64_t; element counts may exceed 2^31.
 *  - "Host or device" pointers: with the CUDA backend, each pointer may be
 *    host memory or CUDA device memory (detected per pointer with
 *    cudaPointerGetAttributes); with the CPU backend every pointer is host
 *    memory. The caller keeps ownership of every buffer it passes.
 *  - Thread safety: a context may be used by one thread at a time; distinct
 *    contexts are independent. fkm_params_init, fkm_status_string and
 *    fkm_version are thread-safe.
 *  - Blocking: every entry point returns when its outputs are written (for
 *    device outputs, when they are complete on the context's stream).
 */
#ifndef FLASHKM_H
#define FLASHKM_H

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#  if defined(FLASHKM_BUILDING)
#    define FKM_API __declspec(dllexport)
#  else
#    define FKM_API __declspec(dllimport)
#  endif
#elif defined(__GNUC__)
#  define FKM_API __attribute__((visibility("default")))
#else
#  define FKM_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- version */

#define FKM_VERSION_MAJOR 0
#define FKM_VERSION_MINOR 1
#define FKM_VERSION_PATCH 0
/** MAJOR * 10000 + MINOR * 100 + PATCH, as fkm_version() returns it. */
#define FKM_VERSION_NUMBER \
  (FKM_VERSION_MAJOR * 10000 + FKM_VERSION_MINOR * 100 + FKM_VERSION_PATCH)

/** Version of the library actually loaded; compare with FKM_VERSION_NUMBER
 *  to detect a header/library mismatch. */
FKM_API unsigned fkm_version(void);
/** "MAJOR.MINOR.PATCH", static storage. */
FKM_API const char *fkm_version_string(void);

/* ----------------------------------------------------------------- status */

/** Status codes. The values are pinned: they never change between releases. */
typedef enum fkm_status {
  FKM_OK = 0,
  FKM_ERR_INVALID_ARG = 1,   /**< a bad argument or parameter (named in the message) */
  FKM_ERR_NOT_FINITE = 2,    /**< NaN or Inf in x, weights or centroids */
  FKM_ERR_OUT_OF_MEMORY = 3, /**< host or device allocation failed */
  FKM_ERR_UNSUPPORTED = 4,   /**< valid request this build or backend cannot serve */
  FKM_ERR_NO_DEVICE = 5,     /**< CUDA backend asked for, no usable device */
  FKM_ERR_CUDA = 6,          /**< a CUDA runtime or library call failed */
  FKM_ERR_INTERRUPTED = 7,   /**< the progress callback asked to stop */
  FKM_ERR_NUMERIC = 8,       /**< arithmetic overflow made a result undefined */
  FKM_ERR_FAISS = 9,         /**< FAISS threw (FAISS bridge only) */
  FKM_ERR_INTERNAL = 10      /**< a bug in flashkm: please report it */
} fkm_status;

/** Static text for a status ("invalid argument", ...); never NULL. */
FKM_API const char *fkm_status_string(fkm_status status);

/* ------------------------------------------------------------ enumerations */

/** Which engine a context runs on. */
typedef enum fkm_backend {
  FKM_BACKEND_AUTO = 0, /**< CUDA when a device is present and built in, else CPU */
  FKM_BACKEND_CPU = 1,  /**< the reference engine, OpenMP on the host */
  FKM_BACKEND_CUDA = 2  /**< NVIDIA GPU */
} fkm_backend;

/** Element type of the data matrix x. Centroids are always float32. */
typedef enum fkm_dtype {
  FKM_DTYPE_F32 = 0,
  FKM_DTYPE_F16 = 1, /**< IEEE binary16, converted exactly to float */
  FKM_DTYPE_BF16 = 2 /**< bfloat16, converted exactly to float */
} fkm_dtype;

/** Distance. The values are FAISS's MetricType values. */
typedef enum fkm_metric {
  FKM_METRIC_INNER_PRODUCT = 0, /**< maximise <x, c>; FAISS's IVF forces spherical */
  FKM_METRIC_L2 = 1             /**< minimise |x - c|^2 */
} fkm_metric;

/** How labels are computed. */
typedef enum fkm_assign_mode {
  /** FAISS's labels and distances, bit for bit (the default). */
  FKM_ASSIGN_FAISS = 0,
  /** Opt-in, fp16/bf16 data only, CUDA only: centroids rounded to the data
   *  type, fp32 tensor-core accumulation, lowest index on ties. Deterministic
   *  but approximate: labels may differ from FAISS's. Never used by the
   *  FAISS bridge. */
  FKM_ASSIGN_FAST = 1
} fkm_assign_mode;

typedef enum fkm_log_level {
  FKM_LOG_DEBUG = 0,
  FKM_LOG_INFO = 1,
  FKM_LOG_WARNING = 2
} fkm_log_level;

/* ------------------------------------------------------------- statistics */

/** One Lloyd iteration, the fields of faiss::ClusteringIterationStats plus
 *  obj_double. */
typedef struct fkm_iteration_stats {
  float obj;               /**< sum of distances in point order, float (FAISS's) */
  double time;             /**< seconds since the start of the run, cumulative */
  double time_search;      /**< seconds spent assigning, cumulative */
  double imbalance_factor; /**< k * sum(h^2) / (sum h)^2 over label counts h */
  int nsplit;              /**< empty clusters split this iteration */
  double obj_double;       /**< the same sum accumulated in double */
} fkm_iteration_stats;

/* ------------------------------------------------------------- callbacks */

/** Called after every iteration with its statistics (redo is 0-based, iter is
 *  0-based within the redo). Return 0 to go on; any other value stops the run,
 *  which then returns FKM_ERR_INTERRUPTED and writes no output. Called on the
 *  thread that called fkm_train. */
typedef int (*fkm_progress_fn)(void *user, int redo, int iter,
                               const fkm_iteration_stats *stats);

/** Receives warnings (too few points per centroid), and with verbose also
 *  informational lines. msg is valid during the call only. */
typedef void (*fkm_log_fn)(void *user, fkm_log_level level, const char *msg);

/* -------------------------------------------------------------- parameters */

/** Training parameters. Always initialise with fkm_params_init(): it sets
 *  struct_size and FAISS's defaults. Fields are only ever appended; a caller
 *  compiled against an older header passes its smaller struct_size and gets
 *  defaults for the fields it does not know. Names follow
 *  faiss::ClusteringParameters. */
typedef struct fkm_params {
  size_t struct_size;          /**< sizeof(fkm_params) of the caller's header */
  int niter;                   /**< Lloyd iterations per redo (25) */
  int nredo;                   /**< independent runs, best objective kept (1) */
  int verbose;                 /**< informational lines to the log callback (0) */
  int spherical;               /**< L2-normalise centroids after each update (0) */
  int int_centroids;           /**< round centroids to integers (0) */
  int frozen_centroids;        /**< the initial centroids never move (0) */
  int min_points_per_centroid; /**< below this, a warning is logged (39) */
  int max_points_per_centroid; /**< above this, the data is subsampled (256) */
  int64_t seed;                /**< low 32 bits seed the generators (1234) */
  fkm_metric metric;           /**< FKM_METRIC_L2 */
  fkm_assign_mode assign_mode; /**< FKM_ASSIGN_FAISS */
  int check_finite;            /**< reject NaN/Inf in inputs (1) */
  fkm_progress_fn progress;    /**< per-iteration callback, may be NULL */
  void *progress_user;
  fkm_log_fn log;              /**< log callback, may be NULL (then silent) */
  void *log_user;
} fkm_params;

/** Fill *params with FAISS's defaults. Returns FKM_ERR_INVALID_ARG for NULL. */
FKM_API fkm_status fkm_params_init(fkm_params *params);

/* ---------------------------------------------------------------- context */

/** CUDA's stream type, declared so that this header needs no CUDA header:
 *  a cudaStream_t is a struct CUstream_st *. */
struct CUstream_st;

/** Opaque context: backend, device, stream, thread count, last error. */
typedef struct fkm_ctx fkm_ctx;

/** Create a context.
 *  backend: FKM_BACKEND_AUTO picks CUDA when this build has it and a device is
 *  present, else the CPU. device: CUDA device ordinal (ignored by the CPU
 *  backend). Asking for FKM_BACKEND_CUDA without a usable device returns
 *  FKM_ERR_NO_DEVICE (or FKM_ERR_UNSUPPORTED in a build without CUDA).
 *  *out receives the context, or NULL on error. */
FKM_API fkm_status fkm_ctx_create(fkm_backend backend, int device,
                                  fkm_ctx **out);

/** Destroy a context; NULL is accepted and ignored. */
FKM_API void fkm_ctx_destroy(fkm_ctx *ctx);

/** The backend the context actually runs on (never FKM_BACKEND_AUTO). */
FKM_API fkm_backend fkm_ctx_backend(const fkm_ctx *ctx);

/** Text detail of the last failure on this context (the argument that was
 *  wrong, file:line of a CUDA failure), or "" if the last call succeeded.
 *  Owned by the context, valid until its next call. */
FKM_API const char *fkm_ctx_last_error(const fkm_ctx *ctx);

/** Number of host threads the CPU engine uses (0: OpenMP's default). */
FKM_API fkm_status fkm_ctx_set_num_threads(fkm_ctx *ctx, int num_threads);

/** Run on a caller-owned CUDA stream (a cudaStream_t) instead of the
 *  context's own. NULL returns to the context's own stream. The CPU backend
 *  accepts and ignores it. The stream must outlive its use by the context. */
FKM_API fkm_status fkm_ctx_set_stream(fkm_ctx *ctx, struct CUstream_st *stream);

/** Human-readable device description ("CPU (2 threads)", "NVIDIA H200 ...").
 *  Owned by the context. */
FKM_API const char *fkm_ctx_device_name(const fkm_ctx *ctx);

/* ------------------------------------------------------------------ train */

/** Train k centroids on n points of dimension d (faiss::Clustering::train).
 *
 *  x          (n, d) of dtype, host or device. Read only.
 *  weights    (n) float, host or device, or NULL: per-point weights, each
 *             finite and >= 0.
 *  centroids  (k, d) float, host or device, in/out. On input its first n_init
 *             rows are initial centroids (the rest is ignored); on FKM_OK
 *             all k rows hold the trained centroids.
 *  n_init     0..k rows of centroids supplied as input. With
 *             params->frozen_centroids they never change.
 *  labels     (n) int64, host or device, or NULL. On FKM_OK: for every input
 *             point, the label of its assignment to the final centroids.
 *  distances  (n) float, host or device, or NULL: the matching distances
 *             (squared L2, or inner product).
 *  stats      host array of stats_capacity entries, or NULL. Receives one entry
 *             per iteration kept, as faiss::Clustering::iteration_stats (with
 *             nredo > 1: the stats accumulated up to the best run). The count
 *             written goes to *n_stats (may be NULL); if it exceeds
 *             stats_capacity, only stats_capacity entries are written.
 *
 *  Blocks until done. One host synchronisation per iteration on CUDA. */
FKM_API fkm_status fkm_train(fkm_ctx *ctx, const fkm_params *params,
                             int64_t n, int64_t d, int64_t k,
                             fkm_dtype dtype, const void *x,
                             const float *weights,
                             float *centroids, int64_t n_init,
                             int64_t *labels, float *distances,
                             fkm_iteration_stats *stats,
                             int64_t stats_capacity, int64_t *n_stats);

/** Assign n points to their nearest of k centroids (FAISS's k=1 flat search).
 *  Uses params->metric, params->assign_mode and params->check_finite.
 *  x (n, d) of dtype and centroids (k, d) float: host or device, read only.
 *  labels (n) int64 and distances (n) float: host or device, either may be
 *  NULL (not both). */
FKM_API fkm_status fkm_assign(fkm_ctx *ctx, const fkm_params *params,
                              int64_t n, int64_t d, int64_t k,
                              fkm_dtype dtype, const void *x,
                              const float *centroids,
                              int64_t *labels, float *distances);

/** B independent problems of the same (n, d, k), stored back to back:
 *  x (B, n, d), weights (B, n) or NULL, centroids (B, k, d) in/out with n_init
 *  initial rows each, labels (B, n) and distances (B, n) or NULL: host or
 *  device, as in fkm_train. stats (B, stats_capacity) or NULL and n_stats (B)
 *  or NULL: host. Results equal B separate fkm_train() calls, bit for bit
 *  (statistics' times aside). The problems are trained together, one
 *  iteration of all of them per step: the progress callback is called for
 *  problems 0..B-1 after each iteration, before the next iteration starts,
 *  and its stopping the run stops all problems. Nothing is written unless
 *  all B succeed; an error message names the problem. Blocks until all B
 *  are done. */
FKM_API fkm_status fkm_train_batched(fkm_ctx *ctx, const fkm_params *params,
                                     int64_t batch, int64_t n, int64_t d,
                                     int64_t k, fkm_dtype dtype,
                                     const void *x, const float *weights,
                                     float *centroids, int64_t n_init,
                                     int64_t *labels, float *distances,
                                     fkm_iteration_stats *stats,
                                     int64_t stats_capacity,
                                     int64_t *n_stats);

/* -------------------------------------------------- random streams (FAISS) */

/** The first m entries of faiss::rand_perm(n, seed): out[i] for i < m.
 *  Uses O(m) memory, whatever n. 0 <= m <= n <= 2^31 - 1 (FAISS's int perm). */
FKM_API fkm_status fkm_rand_perm(int64_t n, int64_t seed, int64_t m,
                                 int64_t *out);

#ifdef __cplusplus
}
#endif

#endif /* FLASHKM_H */
