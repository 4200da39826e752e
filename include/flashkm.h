/*
 * flashkm: exact GPU k-means for vector search.
 *
 * The one public C header. It is C99 (it compiles with -std=c99 -pedantic
 * -Werror) and C++, and needs no CUDA header.
 *
 * Contract: fkm_train() computes the centroids faiss::Clustering::train()
 * computes, bit for bit, on every backend, in the arithmetic of the FAISS
 * build that params->profile names (docs/contract.md, docs/profiles.md);
 * the default profile is flashkm's own reference (FAISS 1.7.3's formula).
 * fkm_assign() gives the labels of FAISS's k=1 flat search in that
 * profile's own float formula.
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
#define FKM_VERSION_MINOR 3
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
  FKM_ERR_INTERNAL = 10,     /**< a bug in flashkm: please report it */
  FKM_ERR_SOURCE = 11        /**< a data source's read callback failed */
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
   *  but approximate: labels may differ from FAISS's. With fewer than 64
   *  centroids or 16 dimensions, where that pass does not pay, the exact
   *  labels of FKM_ASSIGN_FAISS instead. Never used by the FAISS bridge. */
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
 *  thread that called fkm_train; it must not call flashkm on the same context. */
typedef int (*fkm_progress_fn)(void *user, int redo, int iter,
                               const fkm_iteration_stats *stats);

/** Receives warnings (too few points per centroid), and with verbose also
 *  informational lines. msg is valid during the call only. */
typedef void (*fkm_log_fn)(void *user, fkm_log_level level, const char *msg);

/* ---------------------------------------------------------------- profiles */

/** SIMD level of the FAISS build a profile describes (x86-64): the library
 *  variant FAISS's loader picked (generic / avx2 / avx512 wheels up to
 *  1.14.1), or the level FAISS 1.14.2+ dispatches to at run time
 *  (faiss.SIMDConfig; AVX512_VPOPCNT and AVX512_SPR count as AVX512). */
typedef enum fkm_simd {
  FKM_SIMD_NONE = 0,
  FKM_SIMD_AVX2 = 1,
  FKM_SIMD_AVX512 = 2
} fkm_simd;

/** The summation order of one of FAISS's own reduction loops
 *  (fvec_norm_L2sqr, fvec_L2sqr, fvec_inner_product) as a compiler
 *  vectorised it. Terms are x_j * x_j, (x_j - y_j)^2 or x_j * y_j:
 *  - the main loop keeps `width` lane sums, lane l adding the terms
 *    j = l, l + width, ... below width * floor(d / width) in order, each as
 *    fma(a, b, acc) when main_fma, else acc + fl(a * b);
 *  - tail_width > 0: when at least tail_width terms remain, one vector step
 *    of tail_width lanes; tail_separate = 0: the lanes are first folded to
 *    tail_width (lane l += lane l + w/2, halving) and the step continues in
 *    them; 1: the main lanes are folded to one sum, the step's terms are
 *    summed apart (same halving) and added to it; tail_fma as main_fma;
 *  - the lanes are folded to one sum by halving (lane l += lane l + w/2);
 *  - the remaining terms are added one by one, fused when scalar_fma.
 *  width = 1 is a plain sequential loop; width = 0 sums float products in
 *  double and rounds once (FAISS 1.7.3's generic fvec_norm_L2sqr). See
 *  docs/profiles.md for the orders measured on each FAISS release. */
typedef struct fkm_loop_order {
  int32_t width;
  int32_t main_fma;
  int32_t tail_width;
  int32_t tail_separate;
  int32_t tail_fma;
  int32_t scalar_fma;
} fkm_loop_order;

/** Whose arithmetic a run reproduces: a FAISS release at a SIMD level (the
 *  k=1 search's path per shape, distance formula and scan order, norms,
 *  the update's fused multiply-add, early stop, initialisation, random
 *  streams), plus the summation orders of FAISS's own loops in that build.
 *  Fill with fkm_profile_init() (or fkm_profile_parse()); a door that can
 *  call FAISS may overwrite norm / l2 / ip with the orders it measured
 *  (fkm_probe_*). The dot products of FAISS's BLAS paths are computed in
 *  flashkm's order (an fma chain over j = 0..d-1); where the BLAS rounds a
 *  near-tie the other way the labels can differ (docs/contract.md, P2). */
typedef struct fkm_profile {
  int32_t faiss_version;  /**< 0: flashkm's reference; else MAJOR*10000 +
                               MINOR*100 + PATCH of a FAISS release */
  fkm_simd simd;          /**< SIMD level of that build */
  int64_t blas_threshold; /**< faiss::distance_compute_blas_threshold;
                               < 0: the release's default (20, or 128000
                               from 1.14.2) */
  fkm_loop_order norm;    /**< fvec_norm_L2sqr */
  fkm_loop_order l2;      /**< fvec_L2sqr */
  fkm_loop_order ip;      /**< fvec_inner_product */
} fkm_profile;

/** Fill *profile for FAISS release faiss_version (0: flashkm's reference)
 *  at SIMD level simd, with the loop orders measured on that release's pip
 *  wheel (Debian's build for 1.7.3). FKM_ERR_UNSUPPORTED for a release or
 *  level this library has no profile for (1.7.3 as Debian's generic build
 *  only, 1.7.4 without AVX-512); see fkm_profile_nearest(). */
FKM_API fkm_status fkm_profile_init(fkm_profile *profile, int faiss_version,
                                    fkm_simd simd);

/** The release nearest to faiss_version that fkm_profile_init() knows
 *  (for doors that fall back with a warning); 0 for 0. */
FKM_API int fkm_profile_nearest(int faiss_version);

/** The profile's name into buf (size bytes, NUL-terminated, truncated):
 *  "flashkm", or "faiss-MAJOR.MINOR.PATCH-none|avx2|avx512", with
 *  "+loops" when its loop orders are not the release's measured ones and
 *  "+blas=T" when blas_threshold is not the release's default. */
FKM_API fkm_status fkm_profile_name(const fkm_profile *profile, char *buf,
                                    size_t size);

/** Parse "flashkm" or "faiss-MAJOR.MINOR[.PATCH][-none|-avx2|-avx512]"
 *  (without a level: the one FAISS would load on this CPU) into *profile
 *  through fkm_profile_init(). FKM_ERR_INVALID_ARG for bad text,
 *  FKM_ERR_UNSUPPORTED for an unknown release. */
FKM_API fkm_status fkm_profile_parse(const char *name, fkm_profile *profile);

/** Learning a build's loop orders. A door evaluates FAISS's own function on
 *  each of the FKM_PROBE_CASES inputs fkm_probe_case() returns and hands
 *  the results to fkm_probe_identify(), which returns the loop order that
 *  reproduces all of them. */
#define FKM_PROBE_CASES 160
#define FKM_PROBE_MAX_D 80

typedef enum fkm_probe_fn {
  FKM_PROBE_NORM = 0, /**< fvec_norm_L2sqr(x, d) */
  FKM_PROBE_L2 = 1,   /**< fvec_L2sqr(x, y, d) */
  FKM_PROBE_IP = 2    /**< fvec_inner_product(x, y, d) */
} fkm_probe_fn;

/** Input i in [0, FKM_PROBE_CASES): *d in [1, FKM_PROBE_MAX_D] and x, y
 *  (FKM_PROBE_MAX_D floats each, host) receive the vectors. Thread-safe. */
FKM_API fkm_status fkm_probe_case(int i, int64_t *d, float *x, float *y);

/** observed[i] = FAISS's fn on input i for every i. On FKM_OK *order
 *  reproduces every observation bit for bit; FKM_ERR_UNSUPPORTED when no
 *  order this library models does. Thread-safe. */
FKM_API fkm_status fkm_probe_identify(fkm_probe_fn fn, const float *observed,
                                      fkm_loop_order *order);

/* -------------------------------------------------------------- parameters */

/** How the centroids a run does not receive from the caller start
 *  (faiss::ClusteringInitMethod, FAISS 1.14+). */
typedef enum fkm_init_method {
  FKM_INIT_RANDOM = 0,           /**< rows of a random permutation (FAISS's default) */
  FKM_INIT_KMEANS_PLUS_PLUS = 1, /**< k-means++ D^2 sampling */
  FKM_INIT_AFK_MC2 = 2           /**< AFK-MC^2 Markov-chain seeding */
} fkm_init_method;

/** A BLAS sgemm in the Fortran calling convention with 32-bit integers,
 *  declared as FAISS declares it (faiss/utils/distances.cpp): the sgemm_
 *  symbol of OpenBLAS, MKL or the reference BLAS. See fkm_params.blas_sgemm. */
typedef int (*fkm_sgemm_fn)(const char *transa, const char *transb, int *m, int *n, int *k,
                            const float *alpha, const float *a, int *lda, const float *b,
                            int *ldb, float *beta, float *c, int *ldc);

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
  /* appended in 0.2 */
  fkm_profile profile;          /**< whose arithmetic (flashkm's reference) */
  fkm_init_method init_method;  /**< FKM_INIT_RANDOM; others need a FAISS
                                     1.14+ profile or flashkm's */
  int afkmc2_chain_length;      /**< 50 */
  double early_stop_threshold;  /**< stop when |obj - prev| / |prev| <= this
                                     (FAISS 1.14.2+); < 0: never (-1) */
  int use_faster_subsampling;   /**< SplitMix64 sampling with duplicates
                                     (FAISS 1.9+) (0) */
  /** The BLAS FAISS's search calls, or NULL. Set, the inner products of the
   *  profile's BLAS path (docs/profiles.md) are that BLAS's: the CPU engine
   *  calls it exactly as FAISS's exhaustive_L2sqr_blas and
   *  exhaustive_inner_product_blas do (blocks of blas_query_bs rows by
   *  blas_database_bs centroids, sgemm("Transpose", "Not transpose", ...)
   *  from the calling thread), so its labels are FAISS's on this machine,
   *  near-ties included, whatever order the BLAS sums in. NULL: flashkm's
   *  reference order, an fma chain over j = 0..d-1. The CUDA engine learns
   *  the BLAS's order instead, by probing it with crafted inputs once per
   *  call shape (sgemm's blocks of the search) and BLAS thread count, kept
   *  on the context until fkm_ctx_release_memory: the dot products it must
   *  compute exactly (a certified label's, and every candidate of a
   *  near-tie) follow that order. Where the learned model does not
   *  reproduce an element (logged as a warning with the count), that
   *  element keeps flashkm's order. It must be safe to call from the
   *  thread that calls flashkm. */
  fkm_sgemm_fn blas_sgemm;
  int blas_query_bs;            /**< FAISS's distance_compute_blas_query_bs (4096) */
  int blas_database_bs;         /**< distance_compute_blas_database_bs (1024) */
  /* appended in 0.3 */
  /** Bytes of the engine's memory a run may hold (docs/data-path.md): the
   *  device's on CUDA, the host's on the CPU. 0: no limit of its own (CUDA:
   *  the device's free memory less a reserve of an eighth of it, at most
   *  512 MiB). A run whose training set does not fit in it
   *  streams the training set from where it lives every iteration, in
   *  chunks, with the same results (one problem whose rows are host memory
   *  or a source: batched runs, and device data, stay resident); when even
   *  that does not fit the run returns FKM_ERR_OUT_OF_MEMORY with the bytes
   *  it needs. See fkm_train_memory(). */
  size_t memory_budget;
} fkm_params;

/** Fill the first `size` bytes of *params with the defaults (FAISS's for
 *  its fields) and set struct_size = size. size is the caller's
 *  sizeof(fkm_params), which the macro fkm_params_init passes: a program
 *  compiled against an older header gets exactly its fields initialised.
 *  FKM_ERR_INVALID_ARG for NULL or a size this library does not know. */
FKM_API fkm_status fkm_params_init_size(fkm_params *params, size_t size);

/** Fill *params with the defaults: fkm_params_init_size(params,
 *  sizeof(fkm_params)). (The library also exports a function of this name
 *  for programs built against flashkm 0.1, which initialises 0.1's fields.) */
#define fkm_params_init(params) fkm_params_init_size((params), sizeof(fkm_params))

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

/** Number of host threads the CPU engine uses (0: OpenMP's default, lowered
 *  to the limit below). Results do not depend on it. A count above what this
 *  machine can run (16 per processor available to the process, OpenMP's
 *  thread limit, half of RLIMIT_NPROC) is FKM_ERR_INVALID_ARG: the OpenMP
 *  runtime would end the process when thread creation fails. */
FKM_API fkm_status fkm_ctx_set_num_threads(fkm_ctx *ctx, int num_threads);

/** Run on a caller-owned CUDA stream (a cudaStream_t) instead of the
 *  context's own. NULL returns to the context's own stream (non-blocking:
 *  it does not wait for the legacy default stream); a caller whose work is
 *  on the default stream passes cudaStreamLegacy (or cudaStreamPerThread).
 *  The CPU backend accepts and ignores it. The stream must outlive its use
 *  by the context. */
FKM_API fkm_status fkm_ctx_set_stream(fkm_ctx *ctx, struct CUstream_st *stream);

/** Free the memory the context keeps from one call to the next: the CUDA
 *  engine keeps its device workspace, small pinned buffers and pinned
 *  staging (grow-only, so that repeated calls allocate nothing); the next
 *  call allocates them again. Either engine keeps the last subsampled run's
 *  training rows (FAISS's rand_perm prefix, k * max_points_per_centroid
 *  int64 entries, up to 2^23 of them) so that a run with the same n, seed
 *  and subsample size does not draw them again. fkm_ctx_destroy frees them
 *  too. */
FKM_API fkm_status fkm_ctx_release_memory(fkm_ctx *ctx);

/** Distributed training (docs/distributed.md). Makes every later fkm_train
 *  and fkm_train_source on ctx one run over all processes of an MPI
 *  communicator, given by its Fortran handle (MPI_Comm_c2f(comm) in C,
 *  comm.py2f() in mpi4py), so that no MPI header is needed here. Each rank
 *  passes its own rows of x, the ranks' rows in rank order making up the
 *  whole x (any split, empty ones included), and the same parameters, k
 *  and initial rows; every rank receives the centroids and statistics of
 *  the one-process run on the whole x, bit for bit, and the labels and
 *  distances of its own rows. Only k-sized data crosses per iteration. A
 *  failure on one rank (bad input, out of memory, an interrupting progress
 *  callback) is every rank's, with the least failing rank's message.
 *
 *  Collective over the communicator (the library duplicates it; the copy
 *  lives until the context is destroyed or another is set, and
 *  fkm_ctx_destroy must then run before MPI_Finalize). FKM_NO_COMM returns
 *  the context to one process. CPU and CUDA contexts (a CUDA rank's update
 *  runs on the host); fkm_train_batched refuses a distributed context;
 *  fkm_assign stays a call of this process alone.
 *  FKM_ERR_UNSUPPORTED in a build without MPI. */
#define FKM_NO_COMM ((int64_t)-1)
FKM_API fkm_status fkm_ctx_set_mpi_comm(fkm_ctx *ctx, int64_t mpi_comm_f);

/** This process's rank and the number of ranks of ctx's communicator (0
 *  and 1 without one). */
FKM_API fkm_status fkm_ctx_comm_rank(const fkm_ctx *ctx, int *rank, int *size);

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

/** FAISS's ProductQuantizer::compute_codes for sub-vectors of fewer than 16
 *  dimensions (d / M < 16: compute_code, one fvec_L2sqr_ny_nearest per
 *  sub-quantizer, in params->profile's arithmetic, docs/profiles.md): the
 *  same code bytes, ties and near-ties included. Uses params->profile and
 *  params->check_finite (0: x, pq_centroids and coarse are not scanned; a
 *  row with a value that is not finite then gets some code, unspecified,
 *  never an error or a write outside its own code).
 *  x            (n, d) float.
 *  pq_centroids (M, 2^nbits, d / M) float: ProductQuantizer::centroids.
 *  coarse, lists  NULL and NULL, or coarse (nlist, d) float and lists (n)
 *               int64 in [0, nlist): row i is encoded as x_i - coarse[lists[i]]
 *               (IndexIVFPQ's residual, one rounding per value).
 *  codes        (n, (M * nbits + 7) / 8) bytes: FAISS's codes.
 *  nbits 1..16; M divides d. Arrays host or device, as in fkm_assign.
 *  FKM_ERR_UNSUPPORTED for d / M >= 16 (FAISS computes those distances
 *  through its BLAS). */
FKM_API fkm_status fkm_pq_encode(fkm_ctx *ctx, const fkm_params *params,
                                 int64_t n, int64_t d, int64_t M, int nbits,
                                 const float *x, const float *pq_centroids,
                                 int64_t nlist, const float *coarse,
                                 const int64_t *lists, uint8_t *codes);

/** ProductQuantizer::train's M column slices of x (n, d), one after the
 *  other: out (M, n, d / M), slice m's row i the d / M values of x's row i
 *  from column m d / M on (FAISS trains sub-quantizer m on exactly those),
 *  the layout fkm_train_batched takes for the M sub-quantizers' k-means.
 *  Host memory, copied on OpenMP's threads; M >= 1 divides d; out must not
 *  overlap x. */
FKM_API fkm_status fkm_pq_slices(int64_t n, int64_t d, int64_t M, const float *x, float *out);

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

/* ------------------------------------------------------------ data sources */

/** Copies rows rows[0 .. count) of a data set, each d values of the
 *  source's dtype, packed one after the other, to dst (host memory the
 *  library owns, count * d elements). Return 0 on success; any other value
 *  ends the call with FKM_ERR_SOURCE (its value is in the message). Called
 *  from the thread that called flashkm, in the order the run reads its
 *  rows; row indices are in [0, n) and may repeat. */
typedef int (*fkm_read_rows_fn)(void *user, const int64_t *rows, int64_t count, void *dst);

/** A data set the library reads row by row on demand instead of as one
 *  matrix it may read at once (docs/data-path.md): rows of a host matrix
 *  with any row stride (a memory-mapped file, a matrix inside a larger
 *  record), or rows a callback produces. Fill it with fkm_source_host() or
 *  fkm_source_callback(). */
typedef struct fkm_source {
  int64_t n, d;
  fkm_dtype dtype;
  const void *base;      /**< host rows: row i at (char *)base + i * row_stride */
  int64_t row_stride;    /**< bytes from one row to the next */
  fkm_read_rows_fn read; /**< or NULL: a callback that produces rows */
  void *user;            /**< passed to read */
} fkm_source;

/** A source over host memory: row i of n is the d values of dtype at
 *  (const char *)base + i * row_stride (row_stride 0: d * element size;
 *  otherwise at least that, for instance 4 + 4 d for .fvecs records with
 *  base just past the first record's dimension). */
FKM_API fkm_status fkm_source_host(fkm_source *src, const void *base, int64_t n, int64_t d,
                                   fkm_dtype dtype, int64_t row_stride);

/** A source whose rows come from read (see fkm_read_rows_fn). */
FKM_API fkm_status fkm_source_callback(fkm_source *src, int64_t n, int64_t d,
                                       fkm_dtype dtype, fkm_read_rows_fn read, void *user);

/** fkm_train on the rows of a source (k centroids of dimension src->d from
 *  its src->n rows): the same results as fkm_train on the same values, bit
 *  for bit. weights (n) or NULL, centroids, n_init, labels, distances,
 *  stats, stats_capacity and n_stats as in fkm_train (host or device).
 *  With params->check_finite, every row the run reads is checked (the
 *  training rows; all n when labels or distances are asked for): a source
 *  is not read in full just to be checked. */
FKM_API fkm_status fkm_train_source(fkm_ctx *ctx, const fkm_params *params,
                                    const fkm_source *src, int64_t k, const float *weights,
                                    float *centroids, int64_t n_init, int64_t *labels,
                                    float *distances, fkm_iteration_stats *stats,
                                    int64_t stats_capacity, int64_t *n_stats);

/** fkm_assign on the rows of a source, read in chunks. */
FKM_API fkm_status fkm_assign_source(fkm_ctx *ctx, const fkm_params *params,
                                     const fkm_source *src, int64_t k,
                                     const float *centroids, int64_t *labels,
                                     float *distances);

/** What a training run will hold in the engine's memory (docs/data-path.md). */
typedef struct fkm_memory_plan {
  size_t in_core_bytes;  /**< the run with its training set resident */
  size_t streamed_bytes; /**< the least a streamed run needs (0: the engine
                              cannot stream this run, e.g. batched runs) */
  size_t bytes;          /**< what the run will take under params->memory_budget */
  size_t available;      /**< the budget it was planned against (the device's
                              free memory less its reserve on CUDA without a
                              budget; 0: none) */
  int streamed;          /**< 1: the training set will be streamed */
  int64_t chunk_rows;    /**< rows per streamed chunk (0: in core) */
} fkm_memory_plan;

/** Plan a fkm_train / fkm_train_batched (batch problems) / fkm_train_source
 *  call of n rows of dimension d and dtype into k centroids under *params,
 *  on this context's engine, without running it. FKM_ERR_OUT_OF_MEMORY
 *  (the plan still filled in) when even a streamed run does not fit. */
FKM_API fkm_status fkm_train_memory(fkm_ctx *ctx, const fkm_params *params, int64_t batch,
                                    int64_t n, int64_t d, int64_t k, fkm_dtype dtype,
                                    fkm_memory_plan *plan);

/** How many of the n * k inner products of fkm_assign(ctx, params, n, d, k,
 *  dtype, ...) this context computes in FAISS's own summation order
 *  (docs/profiles.md), the rest in flashkm's (an fma chain over j = 0..d-1),
 *  into *covered. Where it is n * k the labels are FAISS's, near-ties
 *  included; elsewhere a near-tie between two centroids within FAISS's
 *  rounding bound may go the other way. By the search path FAISS takes for
 *  n rows in params->profile:
 *   - its direct or fused SIMD loops (every engine runs them in their
 *     order): n * k;
 *   - its BLAS path: with params->blas_sgemm NULL, 0; set, the CPU engine
 *     calls that BLAS (n * k) and the CUDA engine counts the products the
 *     model it learned of that BLAS holds (learning it now, once per call
 *     shape and context, when no call has yet);
 *   - params->assign_mode = FKM_ASSIGN_FAST (flashkm's approximate labels):
 *     0.
 *  Arguments are checked as fkm_assign checks them. */
FKM_API fkm_status fkm_order_coverage(fkm_ctx *ctx, const fkm_params *params, int64_t n,
                                      int64_t d, int64_t k, fkm_dtype dtype,
                                      int64_t *covered);

/* -------------------------------------------------- random streams (FAISS) */

/** The rows fkm_train trains on for n points and k centroids under *params
 *  (docs/contract.md section 2: FAISS's subsample, in its order):
 *  *n_train = min(n, k * max_points_per_centroid). When that is less than
 *  n and rows is not NULL, rows[0 .. *n_train) receive the indices of the
 *  training rows in training order (rand_perm's prefix, or the faster
 *  subsampling's draws of params->profile's release, duplicates included);
 *  otherwise row i is input row i and rows is not written. For parity tools
 *  that must search FAISS's training set. A negative seed in a profile whose
 *  FAISS seeds from the clock gives a fresh draw each call, as FAISS's. */
FKM_API fkm_status fkm_train_rows(fkm_ctx *ctx, const fkm_params *params, int64_t n,
                                  int64_t k, int64_t *rows, int64_t *n_train);

/** The first m entries of faiss::rand_perm(n, seed): out[i] for i < m.
 *  Uses O(m) memory, whatever n. 0 <= m <= n <= 2^31 - 1 (FAISS's int perm). */
FKM_API fkm_status fkm_rand_perm(int64_t n, int64_t seed, int64_t m,
                                 int64_t *out);

#ifdef __cplusplus
}
#endif

#endif /* FLASHKM_H */
