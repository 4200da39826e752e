/* The public entry points: argument validation, context, dispatch. */
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "ctx_internal.h"
#include "flashkm.h"
#include "lloyd.h"
#include "source.h"
#include "rng.h"

#define FKM_STR2(x) #x
#define FKM_STR(x) FKM_STR2(x)

unsigned fkm_version(void) { return FKM_VERSION_NUMBER; }

const char *fkm_version_string(void) {
  return FKM_STR(FKM_VERSION_MAJOR) "." FKM_STR(FKM_VERSION_MINOR) "." FKM_STR(
      FKM_VERSION_PATCH);
}

/* The struct_size of every fkm_params a header has declared: 0.1's (up to
 * log_user), 0.2's first (up to use_faster_subsampling), today's. Only
 * these: a size inside a field would copy part of a pointer. */
#define FKM_PARAMS_V1_SIZE (offsetof(fkm_params, log_user) + sizeof(void *))
#define FKM_PARAMS_V2_SIZE offsetof(fkm_params, blas_sgemm)
#define FKM_PARAMS_V3_SIZE offsetof(fkm_params, memory_budget)
static int known_size(size_t size) {
  return size == FKM_PARAMS_V1_SIZE || size == FKM_PARAMS_V2_SIZE ||
         size == FKM_PARAMS_V3_SIZE || size == sizeof(fkm_params);
}

fkm_status fkm_params_init_size(fkm_params *out, size_t size) {
  if (!out || !known_size(size)) return FKM_ERR_INVALID_ARG;
  fkm_params p;
  memset(&p, 0, sizeof p);
  p.niter = 25;
  p.nredo = 1;
  p.min_points_per_centroid = 39;
  p.max_points_per_centroid = 256;
  p.seed = 1234;
  p.metric = FKM_METRIC_L2;
  p.assign_mode = FKM_ASSIGN_FAISS;
  p.check_finite = 1;
  fkm_profile_init(&p.profile, 0, FKM_SIMD_NONE);
  p.init_method = FKM_INIT_RANDOM;
  p.afkmc2_chain_length = 50;
  p.early_stop_threshold = -1.0;
  p.use_faster_subsampling = 0;
  p.blas_sgemm = NULL;
  p.blas_query_bs = 4096;
  p.blas_database_bs = 1024;
  p.struct_size = size;
  memcpy(out, &p, size);
  return FKM_OK;
}

/* The 0.1 entry point, for programs built against that header (the header
 * now names a macro). */
#undef fkm_params_init
FKM_API fkm_status fkm_params_init(fkm_params *p);
fkm_status fkm_params_init(fkm_params *p) { return fkm_params_init_size(p, FKM_PARAMS_V1_SIZE); }

/* ------------------------------------------------------------- context */

fkm_status fkm_ctx_create(fkm_backend backend, int device, fkm_ctx **out) {
  if (!out) return FKM_ERR_INVALID_ARG;
  *out = NULL;
  if (backend != FKM_BACKEND_AUTO && backend != FKM_BACKEND_CPU &&
      backend != FKM_BACKEND_CUDA)
    return FKM_ERR_INVALID_ARG;
  fkm_ctx *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return FKM_ERR_OUT_OF_MEMORY;
  ctx->device = device;
  fkm_status s = FKM_ERR_UNSUPPORTED;
  if (backend == FKM_BACKEND_CUDA || backend == FKM_BACKEND_AUTO) {
    s = fkm_engine_cuda_create(&ctx->err, device, &ctx->engine);
    if (s == FKM_OK) ctx->backend = FKM_BACKEND_CUDA;
    if (s != FKM_OK && backend == FKM_BACKEND_CUDA) {
      free(ctx);
      return s;
    }
  }
  if (s != FKM_OK) {
    s = fkm_engine_cpu_create(&ctx->err, &ctx->engine);
    ctx->backend = FKM_BACKEND_CPU;
  }
  if (s != FKM_OK) {
    free(ctx);
    return s;
  }
  ctx->err.msg[0] = '\0';
  *out = ctx;
  return FKM_OK;
}

void fkm_ctx_destroy(fkm_ctx *ctx) {
  if (!ctx) return;
  if (ctx->comm) ctx->comm->ops->destroy(ctx->comm);
  if (ctx->engine) {
    fkm_engine_forget_rows(ctx->engine);
    ctx->engine->ops->destroy(ctx->engine);
  }
  free(ctx);
}

fkm_backend fkm_ctx_backend(const fkm_ctx *ctx) {
  return ctx ? ctx->backend : FKM_BACKEND_AUTO;
}

const char *fkm_ctx_last_error(const fkm_ctx *ctx) {
  return ctx ? ctx->err.msg : "ctx is NULL";
}

const char *fkm_ctx_device_name(const fkm_ctx *ctx) {
  return ctx ? ctx->engine->ops->device_name(ctx->engine) : "";
}

fkm_status fkm_ctx_set_error(fkm_ctx *ctx, fkm_status status, const char *msg) {
  if (ctx) fkm_fail(&ctx->err, status, "%s", msg ? msg : "");
  return status;
}

/* Every entry point clears the message first and returns through done(). */
static fkm_status done(fkm_ctx *ctx, fkm_status s) {
  if (s == FKM_OK) ctx->err.msg[0] = '\0';
  return s;
}

fkm_status fkm_ctx_set_num_threads(fkm_ctx *ctx, int num_threads) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  return done(ctx, ctx->engine->ops->set_num_threads(ctx->engine, num_threads));
}

fkm_status fkm_ctx_set_stream(fkm_ctx *ctx, struct CUstream_st *stream) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  return done(ctx, ctx->engine->ops->set_stream(ctx->engine, stream));
}

fkm_status fkm_ctx_set_mpi_comm(fkm_ctx *ctx, int64_t comm) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  fkm_comm *made = NULL;
  if (comm != FKM_NO_COMM) FKM_FORWARD(fkm_comm_mpi_create(comm, &ctx->err, &made));
  if (ctx->comm) ctx->comm->ops->destroy(ctx->comm);
  ctx->comm = made;
  return done(ctx, FKM_OK);
}

fkm_status fkm_ctx_comm_rank(const fkm_ctx *ctx, int *rank, int *size) {
  if (!ctx || !rank || !size) return FKM_ERR_INVALID_ARG;
  *rank = ctx->comm ? ctx->comm->rank : 0;
  *size = ctx->comm ? ctx->comm->size : 1;
  return FKM_OK;
}

/* ------------------------------------------------------------ validation */

/* The caller's params over our defaults: fields its header did not know keep
 * their defaults. */
static fkm_status read_params(fkm_errbuf *err, const fkm_params *in,
                              fkm_params *out) {
  FKM_RETURN_IF(!in, err, FKM_ERR_INVALID_ARG, "params is NULL (use fkm_params_init)");
  fkm_params_init_size(out, sizeof *out);
  FKM_RETURN_IF(!known_size(in->struct_size), err, FKM_ERR_INVALID_ARG,
                "params->struct_size = %zu is not a size this library knows "
                "(%zu, %zu, %zu or %zu); initialise params with fkm_params_init",
                in->struct_size, (size_t)FKM_PARAMS_V1_SIZE, (size_t)FKM_PARAMS_V2_SIZE,
                (size_t)FKM_PARAMS_V3_SIZE, sizeof(fkm_params));
  memcpy(out, in, in->struct_size);
  out->struct_size = sizeof *out;
  const fkm_params *p = out;
  FKM_RETURN_IF(p->niter < 0, err, FKM_ERR_INVALID_ARG,
                "params->niter = %d must be >= 0", p->niter);
  FKM_RETURN_IF(p->nredo < 1, err, FKM_ERR_INVALID_ARG,
                "params->nredo = %d must be >= 1", p->nredo);
  FKM_RETURN_IF(p->max_points_per_centroid < 1, err, FKM_ERR_INVALID_ARG,
                "params->max_points_per_centroid = %d must be >= 1",
                p->max_points_per_centroid);
  FKM_RETURN_IF(p->min_points_per_centroid < 0, err, FKM_ERR_INVALID_ARG,
                "params->min_points_per_centroid = %d must be >= 0",
                p->min_points_per_centroid);
  FKM_RETURN_IF(p->metric != FKM_METRIC_L2 && p->metric != FKM_METRIC_INNER_PRODUCT,
                err, FKM_ERR_INVALID_ARG, "params->metric = %d is not a fkm_metric",
                (int)p->metric);
  FKM_RETURN_IF(p->assign_mode != FKM_ASSIGN_FAISS && p->assign_mode != FKM_ASSIGN_FAST,
                err, FKM_ERR_INVALID_ARG,
                "params->assign_mode = %d is not a fkm_assign_mode", (int)p->assign_mode);
  FKM_RETURN_IF(p->init_method != FKM_INIT_RANDOM &&
                    p->init_method != FKM_INIT_KMEANS_PLUS_PLUS &&
                    p->init_method != FKM_INIT_AFK_MC2,
                err, FKM_ERR_INVALID_ARG, "params->init_method = %d is not a fkm_init_method",
                (int)p->init_method);
  FKM_RETURN_IF(p->afkmc2_chain_length < 0 || p->afkmc2_chain_length > 65535, err,
                FKM_ERR_INVALID_ARG,
                "params->afkmc2_chain_length = %d must be in [0, 65535] (FAISS's uint16_t)",
                p->afkmc2_chain_length);
  FKM_RETURN_IF(p->early_stop_threshold != p->early_stop_threshold, err, FKM_ERR_INVALID_ARG,
                "params->early_stop_threshold is NaN");
  FKM_RETURN_IF(p->blas_query_bs < 1 || p->blas_database_bs < 1, err, FKM_ERR_INVALID_ARG,
                "params->blas_query_bs = %d and blas_database_bs = %d must be >= 1",
                p->blas_query_bs, p->blas_database_bs);
  fkm_arith arith; /* the profile: a known release and level, well-formed loops */
  FKM_FORWARD(fkm_arith_of(&p->profile, &arith, err));
  return FKM_OK;
}

static fkm_status check_shape(fkm_ctx *ctx, const fkm_params *p, int64_t n,
                              int64_t d, int64_t k, fkm_dtype dtype,
                              const void *x, int n_may_be_below_k) {
  fkm_errbuf *err = &ctx->err;
  FKM_RETURN_IF(k < 1, err, FKM_ERR_INVALID_ARG, "k = %lld must be >= 1", (long long)k);
  FKM_RETURN_IF(d < 1, err, FKM_ERR_INVALID_ARG, "d = %lld must be >= 1", (long long)d);
  FKM_RETURN_IF(n < 0, err, FKM_ERR_INVALID_ARG, "n = %lld must be >= 0", (long long)n);
  FKM_RETURN_IF(!n_may_be_below_k && n < k, err, FKM_ERR_INVALID_ARG,
                "n = %lld must be >= k = %lld (number of training points at "
                "least the number of clusters)",
                (long long)n, (long long)k);
  FKM_RETURN_IF(k > INT32_MAX, err, FKM_ERR_UNSUPPORTED,
                "k = %lld: at most 2^31 - 1 centroids", (long long)k);
  FKM_RETURN_IF(n > INT64_MAX / 8 / d || k > INT64_MAX / 8 / d, err,
                FKM_ERR_INVALID_ARG, "n * d or k * d overflows 64-bit byte offsets");
  FKM_RETURN_IF(p->blas_sgemm && d > INT32_MAX, err, FKM_ERR_UNSUPPORTED,
                "d = %lld: the BLAS's sgemm takes 32-bit sizes (params->blas_sgemm is set)",
                (long long)d);
  FKM_RETURN_IF(dtype != FKM_DTYPE_F32 && dtype != FKM_DTYPE_F16 &&
                    dtype != FKM_DTYPE_BF16,
                err, FKM_ERR_INVALID_ARG, "dtype = %d is not a fkm_dtype", (int)dtype);
  FKM_RETURN_IF(!x && n > 0, err, FKM_ERR_INVALID_ARG, "x is NULL");
  if (p->assign_mode == FKM_ASSIGN_FAST) {
    FKM_RETURN_IF(dtype == FKM_DTYPE_F32, err, FKM_ERR_INVALID_ARG,
                  "params->assign_mode = FKM_ASSIGN_FAST needs fp16 or bf16 "
                  "data (dtype is f32)");
    FKM_RETURN_IF(ctx->backend != FKM_BACKEND_CUDA, err, FKM_ERR_UNSUPPORTED,
                  "params->assign_mode = FKM_ASSIGN_FAST runs on the CUDA "
                  "backend only (this context is %s)",
                  ctx->engine->ops->name);
    FKM_RETURN_IF(p->profile.faiss_version != 0, err, FKM_ERR_INVALID_ARG,
                  "params->assign_mode = FKM_ASSIGN_FAST computes flashkm's approximate "
                  "labels, never a FAISS's: it takes the flashkm profile");
  }
  return FKM_OK;
}

static fkm_status check_train(fkm_ctx *ctx, const fkm_params *p, int64_t n,
                              int64_t d, int64_t k, fkm_dtype dtype,
                              const void *x, const float *centroids,
                              int64_t n_init, const fkm_iteration_stats *stats,
                              int64_t stats_capacity) {
  fkm_errbuf *err = &ctx->err;
  /* a rank's rows may be fewer than k (the run counts all ranks' rows) */
  FKM_FORWARD(check_shape(ctx, p, n, d, k, dtype, x, ctx->comm != NULL));
  FKM_RETURN_IF(!centroids, err, FKM_ERR_INVALID_ARG,
                "centroids is NULL (an output of k * d floats)");
  FKM_RETURN_IF(n_init < 0 || n_init > k, err, FKM_ERR_INVALID_ARG,
                "n_init = %lld initial centroids: must be in [0, k = %lld]",
                (long long)n_init, (long long)k);
  FKM_RETURN_IF(stats_capacity < 0, err, FKM_ERR_INVALID_ARG,
                "stats_capacity = %lld must be >= 0", (long long)stats_capacity);
  FKM_RETURN_IF(!stats && stats_capacity > 0, err, FKM_ERR_INVALID_ARG,
                "stats is NULL but stats_capacity = %lld", (long long)stats_capacity);
  FKM_RETURN_IF((int64_t)p->niter * p->nredo > INT32_MAX, err, FKM_ERR_INVALID_ARG,
                "niter * nredo = %lld is too large", (long long)p->niter * p->nredo);
  return FKM_OK;
}

/* ---------------------------------------------------------------- train */

fkm_status fkm_train(fkm_ctx *ctx, const fkm_params *params, int64_t n,
                     int64_t d, int64_t k, fkm_dtype dtype, const void *x,
                     const float *weights, float *centroids, int64_t n_init,
                     int64_t *labels, float *distances,
                     fkm_iteration_stats *stats, int64_t stats_capacity,
                     int64_t *n_stats) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  fkm_params p;
  FKM_FORWARD(read_params(&ctx->err, params, &p));
  FKM_FORWARD(check_train(ctx, &p, n, d, k, dtype, x, centroids, n_init, stats,
                          stats_capacity));
  fkm_train_args a = {&p, 1, n, d, k, dtype, x, NULL, weights, centroids, n_init,
                      labels, distances, stats, stats_capacity, n_stats, ctx->comm};
  return done(ctx, fkm_lloyd_train(ctx->engine, &a));
}

fkm_status fkm_assign(fkm_ctx *ctx, const fkm_params *params, int64_t n,
                      int64_t d, int64_t k, fkm_dtype dtype, const void *x,
                      const float *centroids, int64_t *labels,
                      float *distances) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  fkm_params p;
  fkm_errbuf *err = &ctx->err;
  FKM_FORWARD(read_params(err, params, &p));
  FKM_FORWARD(check_shape(ctx, &p, n, d, k, dtype, x, 1));
  FKM_RETURN_IF(!centroids, err, FKM_ERR_INVALID_ARG, "centroids is NULL");
  FKM_RETURN_IF(!labels && !distances, err, FKM_ERR_INVALID_ARG,
                "labels and distances are both NULL: nothing to compute");
  if (n == 0) return done(ctx, FKM_OK);
  return done(ctx, ctx->engine->ops->assign(ctx->engine, &p, n, d, k, dtype, x,
                                            centroids, labels, distances, n));
}

fkm_status fkm_order_coverage(fkm_ctx *ctx, const fkm_params *params, int64_t n, int64_t d,
                              int64_t k, fkm_dtype dtype, int64_t *covered) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  fkm_params p;
  fkm_errbuf *err = &ctx->err;
  FKM_FORWARD(read_params(err, params, &p));
  FKM_RETURN_IF(!covered, err, FKM_ERR_INVALID_ARG, "covered is NULL");
  FKM_FORWARD(check_shape(ctx, &p, n, d, k, dtype, covered, 1));
  FKM_RETURN_IF(n > INT64_MAX / k, err, FKM_ERR_INVALID_ARG,
                "n * k = %lld * %lld overflows 64 bits", (long long)n, (long long)k);
  fkm_arith arith;
  FKM_FORWARD(fkm_arith_of(&p.profile, &arith, err));
  if (p.assign_mode == FKM_ASSIGN_FAST || n == 0) {
    *covered = 0;
    return done(ctx, FKM_OK);
  }
  if (fkm_arith_path(&arith, p.metric, n, d) != FKM_PATH_BLAS) {
    *covered = n * k; /* FAISS's own SIMD loops, which every engine runs */
    return done(ctx, FKM_OK);
  }
  if (!p.blas_sgemm) {
    *covered = 0;
    return done(ctx, FKM_OK);
  }
  int64_t held = 0;
  const fkm_status s = ctx->engine->ops->blas_coverage(ctx->engine, &p, n, d, k, &held);
  if (s == FKM_OK) *covered = held;
  return done(ctx, s);
}

fkm_status fkm_pq_encode(fkm_ctx *ctx, const fkm_params *params, int64_t n, int64_t d,
                         int64_t M, int nbits, const float *x, const float *pq_centroids,
                         int64_t nlist, const float *coarse, const int64_t *lists,
                         uint8_t *codes) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  fkm_params p;
  fkm_errbuf *err = &ctx->err;
  FKM_FORWARD(read_params(err, params, &p));
  FKM_RETURN_IF(n < 0, err, FKM_ERR_INVALID_ARG, "n = %lld must be >= 0", (long long)n);
  FKM_RETURN_IF(d < 1 || M < 1 || d % M != 0, err, FKM_ERR_INVALID_ARG,
                "d = %lld and M = %lld: M must be >= 1 and divide d", (long long)d,
                (long long)M);
  FKM_RETURN_IF(d / M > FKM_PQ_MAX_DSUB, err, FKM_ERR_UNSUPPORTED,
                "d / M = %lld: sub-vectors of 16 dimensions or more are encoded by FAISS "
                "through its BLAS (compute_distance_tables), which fkm_pq_encode does not do",
                (long long)(d / M));
  FKM_RETURN_IF(nbits < 1 || nbits > 16, err, FKM_ERR_INVALID_ARG,
                "nbits = %d must be in [1, 16]", nbits);
  FKM_RETURN_IF(n > INT64_MAX / 8 / d, err, FKM_ERR_INVALID_ARG,
                "n * d overflows 64-bit byte offsets");
  FKM_RETURN_IF(!pq_centroids, err, FKM_ERR_INVALID_ARG, "pq_centroids is NULL");
  FKM_RETURN_IF(!coarse != !lists, err, FKM_ERR_INVALID_ARG,
                "coarse and lists go together (both NULL, or both set)");
  FKM_RETURN_IF(coarse && (nlist < 1 || nlist > INT64_MAX / 8 / d), err, FKM_ERR_INVALID_ARG,
                "nlist = %lld must be >= 1 with coarse centroids (and nlist * d fit 64-bit "
                "offsets)", (long long)nlist);
  FKM_RETURN_IF(!coarse && nlist != 0, err, FKM_ERR_INVALID_ARG,
                "nlist = %lld without coarse centroids: pass 0", (long long)nlist);
  FKM_RETURN_IF(n > 0 && (!x || !codes), err, FKM_ERR_INVALID_ARG, "%s is NULL",
                !x ? "x" : "codes");
  if (n == 0) return done(ctx, FKM_OK);
  fkm_arith arith;
  FKM_FORWARD(fkm_arith_of(&p.profile, &arith, err));
  fkm_pq_args a = {p.check_finite, {0}, n, d, M, nbits, x, pq_centroids,
                   nlist, coarse, lists, codes};
  fkm_arith_pq_rule(&arith, &a.rule);
  return done(ctx, ctx->engine->ops->pq_encode(ctx->engine, &a));
}

/* The batched entry point: one run of the Lloyd loop over all B problems in
 * lockstep (lloyd.c); the engine keeps each problem's rows to its own
 * centroids. */
fkm_status fkm_train_batched(fkm_ctx *ctx, const fkm_params *params,
                             int64_t batch, int64_t n, int64_t d, int64_t k,
                             fkm_dtype dtype, const void *x,
                             const float *weights, float *centroids,
                             int64_t n_init, int64_t *labels,
                             float *distances, fkm_iteration_stats *stats,
                             int64_t stats_capacity, int64_t *n_stats) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  fkm_params p;
  fkm_errbuf *err = &ctx->err;
  FKM_FORWARD(read_params(err, params, &p));
  FKM_RETURN_IF(batch < 0, err, FKM_ERR_INVALID_ARG, "batch = %lld must be >= 0",
                (long long)batch);
  FKM_RETURN_IF(ctx->comm, err, FKM_ERR_UNSUPPORTED,
                "fkm_train_batched on a context with a communicator: distributed runs are "
                "fkm_train and fkm_train_source (docs/distributed.md)");
  FKM_FORWARD(check_train(ctx, &p, n, d, k, dtype, x, centroids, n_init, stats,
                          stats_capacity));
  FKM_RETURN_IF(batch > INT64_MAX / 8 / (n * d > k * d ? n * d : k * d), err,
                FKM_ERR_INVALID_ARG, "batch * n * d overflows 64-bit offsets");
  FKM_RETURN_IF(stats_capacity > 0 && batch > INT64_MAX / 64 / stats_capacity, err,
                FKM_ERR_INVALID_ARG, "batch * stats_capacity is too large");
  fkm_train_args a = {&p, batch, n, d, k, dtype, x, NULL, weights, centroids, n_init,
                      labels, distances, stats, stats_capacity, n_stats, NULL};
  return done(ctx, fkm_lloyd_train(ctx->engine, &a));
}

fkm_status fkm_ctx_release_memory(fkm_ctx *ctx) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  fkm_engine_forget_rows(ctx->engine);
  return done(ctx, ctx->engine->ops->release_memory(ctx->engine));
}

/* ---------------------------------------------------------- data sources */

fkm_status fkm_source_host(fkm_source *src, const void *base, int64_t n, int64_t d,
                           fkm_dtype dtype, int64_t row_stride) {
  if (!src) return FKM_ERR_INVALID_ARG;
  memset(src, 0, sizeof *src);
  src->n = n;
  src->d = d;
  src->dtype = dtype;
  src->base = base;
  const int known = dtype == FKM_DTYPE_F32 || dtype == FKM_DTYPE_F16 || dtype == FKM_DTYPE_BF16;
  /* packed rows' stride; a d no byte count can hold is left for the check below */
  src->row_stride = row_stride ? row_stride
                    : known && d > 0 && d <= INT64_MAX / 8 ? d * (int64_t)fkm_dtype_size(dtype)
                                                            : 0;
  return fkm_source_validate(src, NULL);
}

fkm_status fkm_source_callback(fkm_source *src, int64_t n, int64_t d, fkm_dtype dtype,
                               fkm_read_rows_fn read, void *user) {
  if (!src || !read) return FKM_ERR_INVALID_ARG;
  memset(src, 0, sizeof *src);
  src->n = n;
  src->d = d;
  src->dtype = dtype;
  src->read = read;
  src->user = user;
  return fkm_source_validate(src, NULL);
}

fkm_status fkm_train_source(fkm_ctx *ctx, const fkm_params *params, const fkm_source *src,
                            int64_t k, const float *weights, float *centroids, int64_t n_init,
                            int64_t *labels, float *distances, fkm_iteration_stats *stats,
                            int64_t stats_capacity, int64_t *n_stats) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  fkm_params p;
  fkm_errbuf *err = &ctx->err;
  FKM_FORWARD(read_params(err, params, &p));
  FKM_FORWARD(fkm_source_validate(src, err));
  /* the shape's checks, with a stand-in for x (a source is never NULL) */
  FKM_FORWARD(check_train(ctx, &p, src->n, src->d, k, src->dtype, src, centroids, n_init,
                          stats, stats_capacity));
  fkm_train_args a = {&p, 1, src->n, src->d, k, src->dtype, NULL, src, weights, centroids,
                      n_init, labels, distances, stats, stats_capacity, n_stats, ctx->comm};
  return done(ctx, fkm_lloyd_train(ctx->engine, &a));
}

fkm_status fkm_assign_source(fkm_ctx *ctx, const fkm_params *params, const fkm_source *src,
                             int64_t k, const float *centroids, int64_t *labels,
                             float *distances) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  fkm_params p;
  fkm_errbuf *err = &ctx->err;
  FKM_FORWARD(read_params(err, params, &p));
  FKM_FORWARD(fkm_source_validate(src, err));
  FKM_FORWARD(check_shape(ctx, &p, src->n, src->d, k, src->dtype, src, 1));
  FKM_RETURN_IF(!centroids, err, FKM_ERR_INVALID_ARG, "centroids is NULL");
  FKM_RETURN_IF(!labels && !distances, err, FKM_ERR_INVALID_ARG,
                "labels and distances are both NULL: nothing to compute");
  if (src->n == 0) return done(ctx, FKM_OK);
  return done(ctx, ctx->engine->ops->assign_source(ctx->engine, &p, src, k, centroids, labels,
                                                   distances, src->n));
}

fkm_status fkm_train_memory(fkm_ctx *ctx, const fkm_params *params, int64_t batch, int64_t n,
                            int64_t d, int64_t k, fkm_dtype dtype, fkm_memory_plan *plan) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  fkm_params p;
  fkm_errbuf *err = &ctx->err;
  FKM_FORWARD(read_params(err, params, &p));
  FKM_RETURN_IF(!plan, err, FKM_ERR_INVALID_ARG, "plan is NULL");
  FKM_RETURN_IF(batch < 1, err, FKM_ERR_INVALID_ARG, "batch = %lld must be >= 1",
                (long long)batch);
  FKM_FORWARD(check_shape(ctx, &p, n, d, k, dtype, plan, 0));
  FKM_RETURN_IF(batch > INT64_MAX / 8 / (n * d > k * d ? n * d : k * d), err,
                FKM_ERR_INVALID_ARG, "batch * n * d overflows 64-bit offsets");
  memset(plan, 0, sizeof *plan);
  return done(ctx, ctx->engine->ops->plan_memory(ctx->engine, &p, batch, n, d, k, dtype, 0,
                                                 plan));
}

fkm_status fkm_train_rows(fkm_ctx *ctx, const fkm_params *params, int64_t n, int64_t k,
                          int64_t *rows, int64_t *n_train) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  fkm_params p;
  fkm_errbuf *err = &ctx->err;
  FKM_FORWARD(read_params(err, params, &p));
  FKM_RETURN_IF(k < 1 || n < k, err, FKM_ERR_INVALID_ARG,
                "n = %lld, k = %lld: need n >= k >= 1", (long long)n, (long long)k);
  FKM_RETURN_IF(k > INT32_MAX, err, FKM_ERR_UNSUPPORTED,
                "k = %lld: at most 2^31 - 1 centroids", (long long)k);
  FKM_RETURN_IF(!n_train, err, FKM_ERR_INVALID_ARG, "n_train is NULL");
  int64_t count;
  FKM_FORWARD(fkm_training_rows(&p, n, k, rows, &count, err));
  *n_train = count;
  return done(ctx, FKM_OK);
}

fkm_status fkm_pq_slices(int64_t n, int64_t d, int64_t M, const float *x, float *out) {
  if (n < 0 || d < 1 || M < 1 || d % M != 0 || n > INT64_MAX / 4 / d) return FKM_ERR_INVALID_ARG;
  if (n == 0) return FKM_OK;
  if (!x || !out) return FKM_ERR_INVALID_ARG;
  const size_t bytes = sizeof(float) * (size_t)(n * d);
  const uintptr_t a = (uintptr_t)x, b = (uintptr_t)out;
  if (a < b + bytes && b < a + bytes) return FKM_ERR_INVALID_ARG; /* overlapping */
  fkm_pq_slice_rows(x, n, d, M, out);
  return FKM_OK;
}

fkm_status fkm_rand_perm(int64_t n, int64_t seed, int64_t m, int64_t *out) {
  return fkm_rand_perm_prefix(n, seed, m, out, NULL);
}
