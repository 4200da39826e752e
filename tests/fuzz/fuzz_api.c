/* libFuzzer target: the C API's argument validation (include/flashkm.h).
 *
 * The input is decoded into a few calls on one CPU context: fkm_train,
 * fkm_train_batched, fkm_train_source (a host source or a read callback
 * that may fail), fkm_assign, fkm_train_memory, fkm_params_init_size,
 * fkm_ctx_set_num_threads, fkm_profile_*, fkm_rand_perm, fkm_train_rows, fkm_probe_*,
 * fkm_pq_encode,
 * fkm_ctx_create and the small getters. Arguments are raw: every params
 * field (struct_size and the profile included), shapes as any int64,
 * dtypes and enums as any int. Pointers are the harness's honest part:
 * each is NULL or a buffer really as large as the sizes passed claim (so an
 * out-of-bounds access is the library's), and callbacks are NULL or the
 * harness's own. Valid calls are kept to milliseconds (a few iterations on
 * at most 2^16 point-centroid-dimension products); larger valid ones are
 * not made.
 *
 * The library's contract, asserted:
 *  - on any status but FKM_OK no output has been written (outputs are
 *    filled with a pattern first and compared afterwards), and for calls on
 *    a context fkm_ctx_last_error() is a non-empty string;
 *  - on FKM_OK the outputs are consistent (labels in [0, k), iteration
 *    counts within niter * nredo, a permutation prefix of distinct values
 *    that a shorter call repeats, a NUL inside the name buffer, ...);
 *  - callbacks receive what the header says (redo, iter in range; a log
 *    line NUL-terminated);
 *  - after the calls the context still works: a small valid fkm_train on
 *    it returns FKM_OK and clears the last error. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "flashkm.h"
#include "fuzz.h"

/* Buffers the harness passes are at most this many elements. */
#define SMALL 4096
/* A valid training call is made only up to this batch * n * k * d. */
#define MAX_WORK (1 << 16)
/* Thread counts the library accepts above this are set back to 0 (speed). */
#define MAX_THREADS 4
#define SENTINEL 0xa5

static uint64_t g_sum;

/* ------------------------------------------------------------ decoding */

static const int64_t EDGES[] = {0, 1, 2, -1, INT32_MAX, (int64_t)INT32_MAX + 1, INT32_MIN,
                                INT64_MAX, INT64_MIN, INT64_MAX / 8, (int64_t)1 << 32, 4096};
#define NEDGES ((int)(sizeof EDGES / sizeof EDGES[0]))

/* A size or count: mostly small (1 once the input runs out), else an edge
 * (0 and negatives among them) or any int64. */
static int64_t take_i64(fuzz_src *s) {
  switch (fuzz_take(s, 1) % 5) {
    case 0: return 1 + (int64_t)(fuzz_take(s, 1) % 32);
    case 1: return (int64_t)(fuzz_take(s, 2) % (SMALL + 1));
    case 2: return EDGES[fuzz_take(s, 1) % NEDGES];
    default: return (int64_t)fuzz_take(s, 8);
  }
}

/* An int field: mostly in [lo, hi], else any int. */
static int take_int(fuzz_src *s, int lo, int hi) {
  uint64_t sel = fuzz_take(s, 1);
  if (sel % 4 != 3) return lo + (int)(fuzz_take(s, 2) % (uint64_t)(hi - lo + 1));
  return (int)(uint32_t)fuzz_take(s, 4);
}

static const int RELEASES[] = {0,     10703, 10704, 10800, 10900, 11000, 11100, 11200, 11300,
                               11301, 11302, 11400, 11401, 11402, 11403, 11500, 11501};
#define NRELEASES ((int)(sizeof RELEASES / sizeof RELEASES[0]))

static int take_version(fuzz_src *s) {
  if (fuzz_take(s, 1) % 4 == 3) return (int)(uint32_t)fuzz_take(s, 4);
  return RELEASES[fuzz_take(s, 1) % NRELEASES];
}

/* A profile: a known one, then perhaps raw fields or raw bytes. */
static void take_profile(fuzz_src *s, fkm_profile *pr) {
  uint64_t mode = fuzz_take(s, 1);
  if (fkm_profile_init(pr, take_version(s), (fkm_simd)take_int(s, 0, 2)) != FKM_OK)
    fkm_profile_init(pr, 0, FKM_SIMD_NONE);
  if (mode & 1) pr->blas_threshold = take_i64(s);
  if (mode & 2) {
    fkm_loop_order *o = (mode & 4) ? &pr->norm : (mode & 8) ? &pr->l2 : &pr->ip;
    int32_t *f[] = {&o->width, &o->main_fma, &o->tail_width,
                    &o->tail_separate, &o->tail_fma, &o->scalar_fma};
    *f[fuzz_take(s, 1) % 6] = take_int(s, 0, 32);
  }
  if (mode & 16) pr->simd = (fkm_simd)take_int(s, 0, 3);
  if ((mode & 0xe0) == 0xe0)
    for (size_t i = 0; i < sizeof *pr; i++) ((uint8_t *)pr)[i] = (uint8_t)fuzz_take(s, 1);
}

/* What the callbacks see and check. */
typedef struct harness {
  int niter, nredo;  /* as the library reads them (defaults past struct_size) */
  int stop_after;    /* the progress callback stops the run at this call; 0: never */
  int calls;
} harness;

static int on_progress(void *user, int redo, int iter, const fkm_iteration_stats *stats) {
  harness *h = user;
  FUZZ_CHECK(stats != NULL);
  FUZZ_CHECK(redo >= 0 && redo < h->nredo && iter >= 0 && iter < h->niter);
  return ++h->calls == h->stop_after;
}

static void on_log(void *user, fkm_log_level level, const char *msg) {
  (void)user;
  FUZZ_CHECK(level == FKM_LOG_DEBUG || level == FKM_LOG_INFO || level == FKM_LOG_WARNING);
  g_sum += strlen(msg);
}

/* A BLAS for params.blas_sgemm: column-major C = A^T B as FAISS calls it
 * (transa "Transpose", transb "Not transpose", alpha 1, beta 0), summed in
 * reverse order (another BLAS's order); checks the call's arguments. */
static int fuzz_sgemm(const char *ta, const char *tb, int *m, int *n, int *k, const float *alpha,
                      const float *a, int *lda, const float *b, int *ldb, float *beta, float *c,
                      int *ldc) {
  FUZZ_CHECK(ta[0] == 'T' && tb[0] == 'N');
  FUZZ_CHECK(*m >= 1 && *n >= 1 && *k >= 1 && *lda == *k && *ldb == *k && *ldc == *m);
  FUZZ_CHECK(*alpha == 1.0f && *beta == 0.0f);
  for (int j = 0; j < *n; j++)
    for (int i = 0; i < *m; i++) {
      float acc = 0.0f;
      for (int t = *k - 1; t >= 0; t--) acc = fmaf(a[(size_t)i * *lda + t], b[(size_t)j * *ldb + t], acc);
      c[(size_t)j * *ldc + i] = acc;
    }
  return 0;
}

/* struct_size of flashkm 0.1's fkm_params, as the library defines it. */
#define PARAMS_V1_SIZE (offsetof(fkm_params, log_user) + sizeof(void *))

static void take_struct_size(fuzz_src *s, fkm_params *p) {
  switch (fuzz_take(s, 1) % 5) {
    case 0: p->struct_size = PARAMS_V1_SIZE; break;
    case 1: p->struct_size = (size_t)fuzz_take(s, 8); break;
    case 2: p->struct_size = sizeof *p + fuzz_take(s, 1) % 3 - 1; break;
    case 3: p->struct_size = offsetof(fkm_params, blas_sgemm); break; /* 0.2's first */
    default: break;
  }
}

/* Fields chosen by the bits of a 32-bit mask, the rest FAISS's defaults. */
static void take_params(fuzz_src *s, fkm_params *p, harness *h) {
  fkm_params_init(p);
  uint32_t set = (uint32_t)fuzz_take(s, 4);
  if (set & 1) p->niter = take_int(s, 0, 8);
  if (set & 2) p->nredo = take_int(s, 1, 3);
  if (set & 4) p->verbose = take_int(s, 0, 1);
  if (set & 8) p->spherical = take_int(s, 0, 1);
  if (set & 16) p->int_centroids = take_int(s, 0, 1);
  if (set & 32) p->frozen_centroids = take_int(s, 0, 1);
  if (set & 64) p->min_points_per_centroid = take_int(s, 0, 64);
  if (set & 128) p->max_points_per_centroid = take_int(s, 1, 300);
  if (set & 256) p->seed = take_i64(s);
  if (set & 512) p->metric = (fkm_metric)take_int(s, 0, 1);
  if (set & 1024) p->assign_mode = (fkm_assign_mode)take_int(s, 0, 1);
  if (set & 2048) p->check_finite = take_int(s, 0, 1);
  if (set & 4096) {
    p->progress = on_progress;
    p->progress_user = h;
  }
  if (set & 8192) p->log = on_log;
  if (set & 16384) take_profile(s, &p->profile);
  if (set & 32768) p->init_method = (fkm_init_method)take_int(s, 0, 2);
  if (set & 65536) p->afkmc2_chain_length = take_int(s, 0, 64);
  if (set & 131072) {
    double v[] = {-1.0, 0.0, 1e-3, 0.5, NAN, INFINITY, -INFINITY};
    uint64_t sel = fuzz_take(s, 1);
    if (sel < 7) p->early_stop_threshold = v[sel];
    else memcpy(&p->early_stop_threshold, &(uint64_t){fuzz_take(s, 8)}, 8);
  }
  if (set & 262144) p->use_faster_subsampling = take_int(s, 0, 1);
  if (set & (1u << 20)) p->blas_sgemm = fuzz_sgemm;
  if (set & (1u << 21)) {
    p->blas_query_bs = take_int(s, -1, 40);
    p->blas_database_bs = take_int(s, -1, 40);
  }
  if (set & (1u << 22)) p->memory_budget = (size_t)take_i64(s); /* streams, or cannot fit */
  if (set & 524288) take_struct_size(s, p);
  h->stop_after = (set >> 24) & 15;
  h->niter = p->niter;
  h->nredo = p->nredo;
}

/* A valid call runs in milliseconds: few iterations, short chains (a count
 * the library must refuse is left as it is). */
static void bound_work(fkm_params *p, harness *h) {
  if ((int64_t)p->niter * p->nredo <= INT32_MAX) {
    if (p->niter > 8) p->niter %= 9;
    if (p->nredo > 2) p->nredo = 1 + p->nredo % 2;
  }
  if (p->afkmc2_chain_length > 64) p->afkmc2_chain_length %= 65;
  h->niter = p->niter;
  h->nredo = p->nredo;
}

/* ------------------------------------------------------------- buffers */

/* A buffer passed to the library, and for an output the bytes it held
 * before the call. */
typedef struct buf {
  void *p;
  size_t bytes;
  void *before;
} buf;

static void buf_fill(buf *b, size_t bytes, int sentinel) {
  b->bytes = bytes;
  b->p = malloc(bytes ? bytes : 1);
  b->before = NULL;
  if (b->p) memset(b->p, sentinel ? SENTINEL : 0, bytes);
}

/* count elements of es bytes when count >= 0 and the input wants one,
 * else NULL (count < 0: too large to pass honestly). */
static buf buf_take(int64_t count, size_t es, int want) {
  buf b = {NULL, 0, NULL};
  if (count >= 0 && want) buf_fill(&b, (size_t)count * es, 1);
  return b;
}

/* A copy of b's bytes (NULL without a buffer, or when out of memory). */
static void *buf_copy(const buf *b) {
  void *c = b->p ? malloc(b->bytes ? b->bytes : 1) : NULL;
  if (c) memcpy(c, b->p, b->bytes);
  return c;
}

static void buf_save(buf *b) { b->before = buf_copy(b); }

static int buf_unchanged(const buf *b) {
  return !b->p || !b->before || memcmp(b->p, b->before, b->bytes) == 0;
}

static void buf_free(buf *b) {
  free(b->p);
  free(b->before);
}

/* Data values: finite ones in a small range, or the input's raw bytes
 * (NaN, Inf, anything). */
static uint16_t half_of_int(int v) { /* exact for |v| < 2048 */
  if (v == 0) return 0;
  uint16_t sign = v < 0 ? 0x8000 : 0;
  unsigned a = (unsigned)(v < 0 ? -v : v), e = 0;
  while ((a >> e) > 1) e++;
  return (uint16_t)(sign | ((e + 15) << 10) | (((a << 10) >> e) & 0x3ff));
}

static void fill_values(fuzz_src *s, void *p, int64_t count, fkm_dtype dtype, int raw) {
  const int half = dtype == FKM_DTYPE_F16 || dtype == FKM_DTYPE_BF16;
  const unsigned seed = (unsigned)fuzz_take(s, 1);
  for (int64_t i = 0; i < count; i++) {
    int v = (int)(((unsigned)i * 2654435761u + seed) >> 20) % 64 - 32;
    if (raw && half) {
      uint16_t h = (uint16_t)fuzz_take(s, 2);
      memcpy((uint16_t *)p + i, &h, 2);
    } else if (raw) {
      uint32_t w = (uint32_t)fuzz_take(s, 4);
      memcpy((float *)p + i, &w, 4);
    } else if (dtype == FKM_DTYPE_F16) {
      ((uint16_t *)p)[i] = half_of_int(v);
    } else if (dtype == FKM_DTYPE_BF16) {
      float f = (float)v;
      uint32_t w;
      memcpy(&w, &f, 4);
      ((uint16_t *)p)[i] = (uint16_t)(w >> 16);
    } else {
      ((float *)p)[i] = (float)v;
    }
  }
}

static fkm_dtype take_dtype(fuzz_src *s) {
  uint64_t sel = fuzz_take(s, 1) % 8;
  return sel < 3 ? (fkm_dtype)sel : sel == 3 ? (fkm_dtype)(uint32_t)fuzz_take(s, 4) : FKM_DTYPE_F32;
}

static size_t dtype_bytes(fkm_dtype t) {
  return t == FKM_DTYPE_F16 || t == FKM_DTYPE_BF16 ? 2 : 4;
}

/* ------------------------------------------------------------ checks */

static void check_error(const fkm_ctx *ctx) {
  const char *e = fkm_ctx_last_error(ctx);
  FUZZ_CHECK(e != NULL && e[0] != '\0');
  g_sum += strlen(e);
}

/* The context still trains, and a success clears the last error. */
static void check_ctx_works(fkm_ctx *ctx) {
  float x[32], c[4];
  for (int i = 0; i < 32; i++) x[i] = (float)(i % 5) + (i < 16 ? 0.0f : 10.0f);
  fkm_params p;
  FUZZ_CHECK(fkm_params_init(&p) == FKM_OK);
  p.niter = 2;
  fkm_status st = fkm_train(ctx, &p, 16, 2, 2, FKM_DTYPE_F32, x, NULL, c, 0, NULL, NULL, NULL,
                            0, NULL);
  if (st != FKM_OK) fprintf(stderr, "small valid fkm_train: %s\n", fkm_ctx_last_error(ctx));
  FUZZ_CHECK(st == FKM_OK);
  FUZZ_CHECK(fkm_ctx_last_error(ctx)[0] == '\0');
}

/* ------------------------------------------------------------ training */

typedef struct train_call {
  fkm_params p;
  harness h;
  int64_t batch, n, d, k, n_init, cap;
  fkm_dtype dtype;
  buf x, w, c, labels, dist, stats, n_stats;
  int source;        /* 0: fkm_train(_batched); 1: a host source; 2: a read callback */
  int64_t fail_read; /* the callback's call that fails (-1: none) */
  int64_t reads;
} train_call;

/* The harness's read callback: rows of t->x, each index checked in range
 * (the library's promise); call number fail_read returns an error. */
static int read_rows(void *user, const int64_t *rows, int64_t count, void *dst) {
  train_call *t = user;
  const size_t row = dtype_bytes(t->dtype) * (size_t)t->d;
  FUZZ_CHECK(count > 0 && rows != NULL);
  for (int64_t i = 0; i < count; i++) {
    FUZZ_CHECK(rows[i] >= 0 && rows[i] < t->n);
    memcpy((char *)dst + row * (size_t)i, (const char *)t->x.p + row * (size_t)rows[i], row);
  }
  return t->reads++ == t->fail_read ? 7 : 0;
}

static void take_train_buffers(fuzz_src *s, train_call *t) {
  const uint32_t present = (uint32_t)fuzz_take(s, 1);
  const int64_t nx = fuzz_small(t->batch, t->n, t->d, SMALL);
  const int64_t nc = fuzz_small(t->batch, t->k, t->d, SMALL);
  const int64_t nn = fuzz_small(t->batch, t->n, 1, SMALL);
  const int64_t ns = fuzz_small(t->batch, t->cap, 1, 256);
  const int raw = (present >> 7) & 1;
  t->x = buf_take(nx, dtype_bytes(t->dtype), !(present & 1));
  if (t->x.p) fill_values(s, t->x.p, nx, t->dtype, raw);
  t->w = buf_take(nn, 4, present & 2);
  if (t->w.p) fill_values(s, t->w.p, nn, FKM_DTYPE_F32, raw && (present & 64));
  if (t->w.p && !(raw && (present & 64)))
    for (int64_t i = 0; i < nn; i++) ((float *)t->w.p)[i] = fabsf(((float *)t->w.p)[i]) + 0.5f;
  t->c = buf_take(nc, 4, 1);
  if (t->c.p && t->n_init > 0 && t->n_init <= t->k) /* initial rows of each problem */
    for (int64_t b = 0; b < t->batch; b++)
      fill_values(s, (float *)t->c.p + b * t->k * t->d, t->n_init * t->d, FKM_DTYPE_F32, raw);
  t->labels = buf_take(nn, 8, present & 4);
  t->dist = buf_take(nn, 4, present & 8);
  t->stats = buf_take(ns, sizeof(fkm_iteration_stats), present & 16);
  t->n_stats = buf_take(t->batch <= SMALL ? t->batch : -1, 8, present & 32);
}

static void check_train_ok(const train_call *t) {
  if (t->labels.p && t->p.check_finite)
    for (int64_t i = 0; i < t->batch * t->n; i++) {
      int64_t l = ((const int64_t *)t->labels.p)[i];
      FUZZ_CHECK(l >= 0 && l < t->k);
    }
  /* one entry per iteration kept; n_train == k records one (FAISS's copy) */
  const int64_t most = (int64_t)t->h.niter * t->h.nredo;
  if (t->n_stats.p)
    for (int64_t b = 0; b < t->batch; b++) {
      int64_t m = ((const int64_t *)t->n_stats.p)[b];
      FUZZ_CHECK(m >= 0 && m <= (most > 1 ? most : 1));
    }
  if (t->c.p) g_sum += fuzz_touch(t->c.p, t->c.bytes);
}

/* Too much work for a fuzz input: a valid call this large is not made. */
static int too_large(const train_call *t) {
  const int64_t work = fuzz_small(t->batch, t->n, t->k, SMALL * (int64_t)SMALL);
  return t->x.p && t->c.p && (work < 0 || work * (t->d < SMALL ? t->d : SMALL) > MAX_WORK);
}

static fkm_status call_train(train_call *t, fkm_ctx *ctx, int batched) {
  fkm_status st;
  fkm_source src;
  if (t->source && !batched) {
    /* a source the constructor refuses is passed as it is: the call refuses it too */
    if (t->source == 1)
      (void)fkm_source_host(&src, t->x.p, t->n, t->d, t->dtype, 0);
    else
      (void)fkm_source_callback(&src, t->n, t->d, t->dtype, t->x.p ? read_rows : NULL, t);
    st = fkm_train_source(ctx, &t->p, t->x.p ? &src : NULL, t->k, t->w.p, t->c.p, t->n_init,
                          t->labels.p, t->dist.p, t->stats.p, t->cap, t->n_stats.p);
  } else {
    st = batched ? fkm_train_batched(ctx, &t->p, t->batch, t->n, t->d, t->k, t->dtype, t->x.p,
                                     t->w.p, t->c.p, t->n_init, t->labels.p, t->dist.p,
                                     t->stats.p, t->cap, t->n_stats.p)
                 : fkm_train(ctx, &t->p, t->n, t->d, t->k, t->dtype, t->x.p, t->w.p, t->c.p,
                             t->n_init, t->labels.p, t->dist.p, t->stats.p, t->cap,
                             t->n_stats.p);
  }
  return st;
}

/* Two statistics entries equal but for their times (bit for bit). */
static int same_stats(const fkm_iteration_stats *a, const fkm_iteration_stats *b) {
  return memcmp(&a->obj, &b->obj, sizeof a->obj) == 0 &&
         memcmp(&a->imbalance_factor, &b->imbalance_factor, sizeof a->imbalance_factor) == 0 &&
         a->nsplit == b->nsplit && memcmp(&a->obj_double, &b->obj_double, sizeof a->obj_double) == 0;
}

/* A call that succeeded, made again on the same context (which keeps the
 * subsample's row list and its workspace from the first) with the same
 * inputs: the same outputs, bit for bit, the statistics' times aside. Not
 * for a clock seed (a negative seed draws a new one per call where the
 * profile says so). */
static void repeat_train(train_call *t, fkm_ctx *ctx, int batched) {
  buf *outs[] = {&t->c, &t->labels, &t->dist, &t->stats, &t->n_stats};
  void *first[5];
  for (int i = 0; i < 5; i++) {
    first[i] = buf_copy(outs[i]);
    FUZZ_CHECK(first[i] != NULL || !outs[i]->p);
  }
  if (t->c.p && t->c.before) memcpy(t->c.p, t->c.before, t->c.bytes); /* the initial rows */
  t->h.calls = 0;
  t->reads = 0;
  FUZZ_CHECK(call_train(t, ctx, batched) == FKM_OK);
  for (int i = 0; i < 5; i++) {
    if (!outs[i]->p) continue;
    if (outs[i] == &t->stats) {
      const fkm_iteration_stats *a = first[i], *b = outs[i]->p;
      for (size_t j = 0; j < outs[i]->bytes / sizeof *a; j++) FUZZ_CHECK(same_stats(a + j, b + j));
    } else {
      FUZZ_CHECK(memcmp(first[i], outs[i]->p, outs[i]->bytes) == 0);
    }
    free(first[i]);
  }
}

static void run_train(train_call *t, fkm_ctx *ctx, int batched) {
  bound_work(&t->p, &t->h);
  buf *outs[] = {&t->c, &t->labels, &t->dist, &t->stats, &t->n_stats};
  for (int i = 0; i < 5; i++) buf_save(outs[i]);
  const fkm_status st = call_train(t, ctx, batched);
  if (t->source == 2 && t->fail_read >= 0 && t->reads > t->fail_read)
    FUZZ_CHECK(st == FKM_ERR_SOURCE); /* a failed read ends the call */
  if (st != FKM_OK) {
    for (int i = 0; i < 5; i++) FUZZ_CHECK(buf_unchanged(outs[i]));
    if (ctx) check_error(ctx);
  } else {
    FUZZ_CHECK(ctx != NULL);
    check_train_ok(t);
    if ((int32_t)(uint32_t)t->p.seed >= 0) repeat_train(t, ctx, batched);
  }
}

static void op_train(fuzz_src *s, fkm_ctx *ctx, int batched) {
  train_call t;
  memset(&t, 0, sizeof t);
  take_params(s, &t.p, &t.h);
  t.batch = batched ? take_i64(s) : 1;
  t.n = take_i64(s);
  t.d = take_i64(s);
  t.k = take_i64(s);
  t.n_init = take_i64(s);
  t.cap = take_i64(s);
  t.dtype = take_dtype(s);
  t.source = (int)(fuzz_take(s, 1) % 3);
  t.fail_read = t.source == 2 && fuzz_take(s, 1) % 4 == 0 ? (int64_t)(fuzz_take(s, 1) % 8) : -1;
  const int null_ctx = fuzz_take(s, 1) == 0xff;
  take_train_buffers(s, &t);
  if (!too_large(&t)) run_train(&t, null_ctx ? NULL : ctx, batched);
  buf_free(&t.x);
  buf_free(&t.w);
  buf_free(&t.c);
  buf_free(&t.labels);
  buf_free(&t.dist);
  buf_free(&t.stats);
  buf_free(&t.n_stats);
}

/* The params and shape of a call on n rows of d dims and dtype against k
 * centroids (fkm_assign, fkm_order_coverage). */
typedef struct search_call {
  fkm_params p;
  harness h; /* the params' callbacks' */
  int64_t n, d, k;
  fkm_dtype dtype;
} search_call;

static void take_search(fuzz_src *s, search_call *c) {
  memset(&c->h, 0, sizeof c->h);
  take_params(s, &c->p, &c->h);
  c->n = take_i64(s);
  c->d = take_i64(s);
  c->k = take_i64(s);
  c->dtype = take_dtype(s);
}

static void op_assign(fuzz_src *s, fkm_ctx *ctx) {
  search_call sc;
  take_search(s, &sc);
  const fkm_params p = sc.p;
  const int64_t n = sc.n, d = sc.d, k = sc.k;
  const fkm_dtype dtype = sc.dtype;
  const uint32_t present = (uint32_t)fuzz_take(s, 1);
  const int raw = (present >> 7) & 1;
  const int64_t nx = fuzz_small(n, d, 1, SMALL), nc = fuzz_small(k, d, 1, SMALL);
  const int64_t nn = fuzz_small(n, 1, 1, SMALL);
  buf x = buf_take(nx, dtype_bytes(dtype), !(present & 1));
  if (x.p) fill_values(s, x.p, nx, dtype, raw);
  buf c = buf_take(nc, 4, !(present & 2));
  if (c.p) fill_values(s, c.p, nc, FKM_DTYPE_F32, raw);
  buf labels = buf_take(nn, 8, present & 4), dist = buf_take(nn, 4, present & 8);
  const int64_t work = fuzz_small(n, k, 1, SMALL * (int64_t)SMALL);
  if (!(x.p && c.p && (work < 0 || work * (d < SMALL ? d : SMALL) > MAX_WORK))) {
    buf_save(&labels);
    buf_save(&dist);
    fkm_status st = fkm_assign(ctx, &p, n, d, k, dtype, x.p, c.p, labels.p, dist.p);
    if (st != FKM_OK) {
      FUZZ_CHECK(buf_unchanged(&labels) && buf_unchanged(&dist));
      check_error(ctx);
    } else if (labels.p && p.check_finite) {
      for (int64_t i = 0; i < n; i++)
        FUZZ_CHECK(((int64_t *)labels.p)[i] >= 0 && ((int64_t *)labels.p)[i] < k);
    }
  }
  buf_free(&x);
  buf_free(&c);
  buf_free(&labels);
  buf_free(&dist);
}

/* fkm_pq_encode: any shape, code width and list numbers; honest buffers
 * (x n * d, codebooks d * 2^nbits, coarse nlist * d, lists n, codes n *
 * code_size) or NULL. On FKM_OK every code's index fits nbits; otherwise
 * no code byte was written. */
static void op_pq_encode(fuzz_src *s, fkm_ctx *ctx) {
  fkm_params p;
  harness h;
  memset(&h, 0, sizeof h);
  take_params(s, &p, &h);
  const int64_t n = take_i64(s), d = take_i64(s), M = take_i64(s), nlist = take_i64(s);
  const int nbits = take_int(s, -2, 20);
  const uint32_t present = (uint32_t)fuzz_take(s, 1);
  const int raw = (present >> 7) & 1, residual = (present >> 6) & 1;
  const int64_t ksub = nbits >= 1 && nbits <= 16 ? (int64_t)1 << nbits : 1;
  const int64_t nx = fuzz_small(n, d, 1, SMALL), npq = fuzz_small(d, ksub, 1, SMALL);
  const int64_t nco = fuzz_small(nlist, d, 1, SMALL), nn = fuzz_small(n, 1, 1, SMALL);
  const int64_t cs = M >= 1 && M <= SMALL && nbits >= 1 && nbits <= 16 ? (M * nbits + 7) / 8 : 1;
  buf x = buf_take(nx, 4, !(present & 1));
  if (x.p) fill_values(s, x.p, nx, FKM_DTYPE_F32, raw);
  buf pq = buf_take(npq, 4, !(present & 2));
  if (pq.p) fill_values(s, pq.p, npq, FKM_DTYPE_F32, raw);
  buf co = buf_take(residual ? nco : -1, 4, !(present & 4));
  if (co.p) fill_values(s, co.p, nco, FKM_DTYPE_F32, 0);
  buf lists = buf_take(residual ? nn : -1, 8, !(present & 8));
  if (lists.p)
    for (int64_t i = 0; i < nn; i++)
      ((int64_t *)lists.p)[i] = (present & 16) ? (int64_t)fuzz_take(s, 8)
                                               : (int64_t)(fuzz_take(s, 1) % 8);
  buf codes = buf_take(fuzz_small(n, cs, 1, SMALL * 8), 1, !(present & 32));
  const int64_t work = fuzz_small(n, d, ksub, SMALL * (int64_t)SMALL);
  if (!(x.p && pq.p && (work < 0 || work > MAX_WORK * 4))) {
    buf_save(&codes);
    const fkm_status st = fkm_pq_encode(ctx, &p, n, d, M, nbits, x.p, pq.p, nlist, co.p,
                                        lists.p, codes.p);
    if (st != FKM_OK) {
      FUZZ_CHECK(buf_unchanged(&codes));
      check_error(ctx);
    } else if (codes.p) { /* the bits past the last code are zero */
      const int tail = (int)((M * nbits) % 8);
      for (int64_t i = 0; tail && i < n; i++)
        FUZZ_CHECK((((uint8_t *)codes.p)[i * cs + cs - 1] >> tail) == 0);
    }
  }
  buf_free(&x);
  buf_free(&pq);
  buf_free(&co);
  buf_free(&lists);
  buf_free(&codes);
}

/* ------------------------------------------------------- the small ones */

/* fkm_train_memory: any shape and budget; a plan returned is consistent. */
static void op_memory(fuzz_src *s, fkm_ctx *ctx) {
  fkm_params p;
  harness h;
  memset(&h, 0, sizeof h);
  take_params(s, &p, &h);
  const int64_t batch = take_i64(s), n = take_i64(s), d = take_i64(s), k = take_i64(s);
  const fkm_dtype dtype = take_dtype(s);
  fkm_memory_plan plan;
  const fkm_status st = fkm_train_memory(ctx, &p, batch, n, d, k, dtype, &plan);
  /* a struct_size of an older header has no budget: the library sees 0 */
  const size_t budget =
      p.struct_size >= offsetof(fkm_params, memory_budget) + sizeof p.memory_budget
          ? p.memory_budget
          : 0;
  if (st == FKM_OK) {
    FUZZ_CHECK(plan.bytes > 0 && plan.in_core_bytes > 0);
    FUZZ_CHECK(budget == 0 || plan.bytes <= budget);
    FUZZ_CHECK(plan.streamed ? plan.chunk_rows > 0 && plan.bytes <= plan.in_core_bytes
                             : plan.chunk_rows == 0 && plan.bytes == plan.in_core_bytes);
  } else {
    check_error(ctx);
  }
}

/* fkm_order_coverage: on success a count of the call's n x k products, all
 * or none on the CPU engine (it calls the BLAS, or sums in its own order);
 * on failure *covered untouched. */
static void op_coverage(fuzz_src *s, fkm_ctx *ctx) {
  search_call sc;
  take_search(s, &sc);
  const int64_t n = sc.n, k = sc.k;
  int64_t covered = -7;
  const int null_out = fuzz_take(s, 1) % 8 == 0;
  const fkm_status st =
      fkm_order_coverage(ctx, &sc.p, n, sc.d, k, sc.dtype, null_out ? NULL : &covered);
  if (st == FKM_OK) {
    FUZZ_CHECK(!null_out && n >= 0 && k >= 1 && n <= INT64_MAX / k);
    FUZZ_CHECK(covered == 0 || covered == n * k);
  } else {
    FUZZ_CHECK(covered == -7);
    check_error(ctx);
  }
}

static void op_params_init(fuzz_src *s) {
  uint8_t mem[sizeof(fkm_params) + 64];
  memset(mem, SENTINEL, sizeof mem);
  size_t size;
  switch (fuzz_take(s, 1) % 5) {
    case 0: size = sizeof(fkm_params); break;
    case 1: size = PARAMS_V1_SIZE; break;
    case 2: size = (size_t)fuzz_take(s, 1); break;
    default: size = (size_t)fuzz_take(s, 8); break;
  }
  const int null_out = fuzz_take(s, 1) == 0xff;
  fkm_status st = fkm_params_init_size(null_out ? NULL : (fkm_params *)(void *)mem, size);
  size_t from = 0;
  if (st == FKM_OK) {
    FUZZ_CHECK(!null_out && size <= sizeof(fkm_params));
    size_t got;
    memcpy(&got, mem, sizeof got);
    FUZZ_CHECK(got == size);
    from = size;
  }
  for (size_t i = from; i < sizeof mem; i++) FUZZ_CHECK(mem[i] == SENTINEL);
}

static void op_threads(fuzz_src *s, fkm_ctx *ctx) {
  const int n = take_int(s, 0, 8);
  fkm_status st = fkm_ctx_set_num_threads(ctx, n);
  if (st != FKM_OK) check_error(ctx);
  else if (n > MAX_THREADS) FUZZ_CHECK(fkm_ctx_set_num_threads(ctx, 0) == FKM_OK);
}

static int all_sentinel(const void *mem, size_t bytes) {
  for (size_t i = 0; i < bytes; i++)
    if (((const uint8_t *)mem)[i] != SENTINEL) return 0;
  return 1;
}

static void op_profile(fuzz_src *s) {
  fkm_profile out;
  memset(&out, SENTINEL, sizeof out);
  const int null_out = fuzz_take(s, 1) == 0xff;
  fkm_profile *po = null_out ? NULL : &out;
  if (fuzz_take(s, 1) & 1) {
    fkm_status st = fkm_profile_init(po, take_version(s), (fkm_simd)take_int(s, 0, 2));
    if (st != FKM_OK) FUZZ_CHECK(all_sentinel(&out, sizeof out));
  } else {
    char name[65];
    for (size_t i = 0; i < sizeof name - 1; i++) name[i] = (char)fuzz_take(s, 1);
    name[sizeof name - 1] = '\0';
    fkm_status st = fkm_profile_parse(fuzz_take(s, 1) == 0xff ? NULL : name, po);
    if (st != FKM_OK) FUZZ_CHECK(all_sentinel(&out, sizeof out));
  }
  const int v = (int)(uint32_t)fuzz_take(s, 4), near = fkm_profile_nearest(v);
  fkm_profile known;
  FUZZ_CHECK(near == 0 ? v <= 0 : v > 0);
  FUZZ_CHECK(fkm_profile_init(&known, near, FKM_SIMD_NONE) == FKM_OK);
}

static void op_profile_name(fuzz_src *s) {
  fkm_profile pr;
  take_profile(s, &pr);
  char buf[160];
  memset(buf, SENTINEL, sizeof buf);
  const uint64_t sel = fuzz_take(s, 1);
  const size_t size = (sel & 0x80) ? (size_t)fuzz_take(s, 8) : (size_t)(sel % 129);
  const int null_buf = (sel & 0x80) != 0 || fuzz_take(s, 1) == 0xff;
  fkm_status st = fkm_profile_name(fuzz_take(s, 1) == 0xff ? NULL : &pr, null_buf ? NULL : buf,
                                   size);
  size_t from = 0;
  if (st == FKM_OK) {
    FUZZ_CHECK(!null_buf && size > 0 && memchr(buf, '\0', size) != NULL);
    from = size;
  }
  for (size_t i = from; i < sizeof buf; i++) FUZZ_CHECK((uint8_t)buf[i] == SENTINEL);
}

static void op_rand_perm(fuzz_src *s) {
  const int64_t n = take_i64(s), seed = take_i64(s), m = take_i64(s);
  buf out = buf_take(fuzz_small(m, 1, 1, SMALL), 8, fuzz_take(s, 1) != 0xff);
  buf_save(&out);
  fkm_status st = fkm_rand_perm(n, seed, m, out.p);
  if (st != FKM_OK) {
    FUZZ_CHECK(buf_unchanged(&out));
  } else {
    FUZZ_CHECK(n >= 0 && m >= 0 && m <= n && (m == 0 || out.p));
    const int64_t *o = out.p;
    for (int64_t i = 0; i < m; i++) {
      FUZZ_CHECK(o[i] >= 0 && o[i] < n);
      for (int64_t j = 0; j < i && m <= 256; j++) FUZZ_CHECK(o[i] != o[j]);
    }
    int64_t shorter[128];
    const int64_t m2 = m / 2 < 128 ? m / 2 : 128; /* a prefix repeats */
    FUZZ_CHECK(fkm_rand_perm(n, seed, m2, shorter) == FKM_OK);
    FUZZ_CHECK(m2 == 0 || memcmp(shorter, o, (size_t)m2 * 8) == 0);
  }
  buf_free(&out);
}

/* fkm_train_rows: on error nothing written; otherwise n_train = min(n, k *
 * max_points_per_centroid) and, when subsampled, every row index in [0, n).
 * The rows buffer is given only when it can hold n_train entries (the
 * contract), else NULL (the count alone). */
static void op_train_rows(fuzz_src *s, fkm_ctx *ctx) {
  fkm_params p;
  harness h;
  memset(&h, 0, sizeof h);
  take_params(s, &p, &h);
  const int64_t n = take_i64(s), k = take_i64(s);
  const int64_t cap = k >= 1 && k <= INT32_MAX && p.max_points_per_centroid >= 1
                          ? k * (int64_t)p.max_points_per_centroid
                          : -1;
  const int64_t need = cap >= 0 && n >= 0 ? (n < cap ? n : cap) : -1;
  buf rows = buf_take(need >= 0 && need <= SMALL ? need : 0, 8, need >= 0 && need <= SMALL);
  int64_t n_train = SENTINEL;
  buf_save(&rows);
  fkm_status st = fkm_train_rows(ctx, &p, n, k, rows.p, fuzz_take(s, 1) == 0xff ? NULL : &n_train);
  if (st != FKM_OK) {
    FUZZ_CHECK(buf_unchanged(&rows) && n_train == SENTINEL);
    check_error(ctx);
  } else {
    FUZZ_CHECK(n_train == need);
    if (rows.p && n_train < n)
      for (int64_t i = 0; i < n_train; i++)
        FUZZ_CHECK(((int64_t *)rows.p)[i] >= 0 && ((int64_t *)rows.p)[i] < n);
    if (n_train == n) FUZZ_CHECK(buf_unchanged(&rows));
  }
  buf_free(&rows);
}

/* fvec_norm_L2sqr / fvec_L2sqr / fvec_inner_product as a plain sequential
 * loop (fused or not): the observations fkm_probe_identify must explain. */
static float plain_loop(fkm_probe_fn fn, const float *x, const float *y, int64_t d, int fma) {
  float acc = 0.0f;
  for (int64_t j = 0; j < d; j++) {
    const float a = fn == FKM_PROBE_L2 ? x[j] - y[j] : x[j];
    const float b = fn == FKM_PROBE_L2 ? a : fn == FKM_PROBE_IP ? y[j] : x[j];
    if (fma) {
      acc = fmaf(a, b, acc);
    } else {
      const float prod = a * b;
      acc = acc + prod;
    }
  }
  return acc;
}

static void op_probe(fuzz_src *s) {
  int64_t d = SENTINEL;
  float x[FKM_PROBE_MAX_D], y[FKM_PROBE_MAX_D];
  const uint64_t mask = fuzz_take(s, 1);
  const int i = take_int(s, 0, FKM_PROBE_CASES);
  memset(x, SENTINEL, sizeof x);
  memset(y, SENTINEL, sizeof y);
  fkm_status st = fkm_probe_case(i, (mask & 1) ? NULL : &d, (mask & 2) ? NULL : x,
                                 (mask & 4) ? NULL : y);
  if (st != FKM_OK) {
    FUZZ_CHECK(d == SENTINEL && all_sentinel(x, sizeof x) && all_sentinel(y, sizeof y));
  } else {
    FUZZ_CHECK(d >= 1 && d <= FKM_PROBE_MAX_D);
  }
  const fkm_probe_fn fn = (fkm_probe_fn)take_int(s, 0, 2);
  float observed[FKM_PROBE_CASES];
  for (int c = 0; c < FKM_PROBE_CASES; c++) {
    FUZZ_CHECK(fkm_probe_case(c, &d, x, y) == FKM_OK);
    observed[c] = plain_loop(fn, x, y, d, (mask & 8) != 0);
  }
  if (mask & 16) observed[fuzz_take(s, 1) % FKM_PROBE_CASES] += 1.0f;
  fkm_loop_order order;
  memset(&order, SENTINEL, sizeof order);
  st = fkm_probe_identify(fn, (mask & 32) ? NULL : observed, (mask & 64) ? NULL : &order);
  if (st != FKM_OK) FUZZ_CHECK(all_sentinel(&order, sizeof order));
  else FUZZ_CHECK(order.width >= 0);
}

static void op_misc(fuzz_src *s, fkm_ctx *ctx) {
  fkm_ctx *other = (fkm_ctx *)&other; /* must become NULL or a context */
  const int null_out = fuzz_take(s, 1) == 0xff;
  fkm_status st = fkm_ctx_create((fkm_backend)take_int(s, 0, 2), take_int(s, -1, 1),
                                 null_out ? NULL : &other);
  if (!null_out) FUZZ_CHECK(st == FKM_OK ? other != NULL : other == NULL);
  if (st == FKM_OK) {
    FUZZ_CHECK(fkm_ctx_backend(other) == FKM_BACKEND_CPU);
    check_ctx_works(other);
    fkm_ctx_destroy(other);
  }
  const char *text = fkm_status_string((fkm_status)take_int(s, 0, 11));
  FUZZ_CHECK(text != NULL && text[0] != '\0');
  FUZZ_CHECK(fkm_version() == FKM_VERSION_NUMBER && fkm_version_string()[0] != '\0');
  FUZZ_CHECK(fkm_ctx_set_stream(ctx, NULL) == FKM_OK);
  FUZZ_CHECK(fkm_ctx_device_name(ctx) != NULL && fkm_ctx_backend(NULL) == FKM_BACKEND_AUTO);
  FUZZ_CHECK(fkm_ctx_set_num_threads(NULL, 1) == FKM_ERR_INVALID_ARG);
  fkm_ctx_destroy(NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_src s = {data, size};
  fkm_ctx *ctx = NULL;
  FUZZ_CHECK(fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx) == FKM_OK && ctx != NULL);
  const int calls = 1 + (int)(fuzz_take(&s, 1) % 4);
  for (int i = 0; i < calls; i++) {
    switch (fuzz_take(&s, 1) % 14) {
      case 0: op_train(&s, ctx, 0); break;
      case 1: op_train(&s, ctx, 1); break;
      case 2: op_assign(&s, ctx); break;
      case 3: op_params_init(&s); break;
      case 4: op_threads(&s, ctx); break;
      case 5: op_profile(&s); break;
      case 6: op_profile_name(&s); break;
      case 7: op_rand_perm(&s); break;
      case 8: op_probe(&s); break;
      case 9: op_train_rows(&s, ctx); break;
      case 10: op_memory(&s, ctx); break;
      case 11: op_pq_encode(&s, ctx); break;
      case 12: op_coverage(&s, ctx); break;
      default: op_misc(&s, ctx); break;
    }
  }
  check_ctx_works(ctx);
  fkm_ctx_destroy(ctx);
  return 0;
}
