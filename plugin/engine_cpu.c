/* The CPU reference engine: host memory, OpenMP, the exact arithmetic of
 * docs/contract.md sections 3-8. Every output element is computed by one thread in a
 * fixed order, so results do not depend on the thread count. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, getrlimit */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sys/resource.h>

#include <omp.h>

#include "chains.h"
#include "cpu_kernels.h"
#include "engine.h"
#include "source.h"

typedef struct cpu_engine {
  fkm_engine base;
  int num_threads; /* 0: OpenMP's default */
  int foreign_blas; /* the run's BLAS is on another OpenMP runtime: blas_omp */
  fkm_blas_omp blas_omp;
  char name[96];
  /* the current run */
  fkm_run run;
  fkm_params params;
  fkm_arith arith;
  fkm_path train_path; /* the search path of the training set's rows (all ranks') */
  int64_t path_n;      /* rows whose search path fkm_assign takes (0: the call's n) */
  const float *user_init;
  /* every problem's rows and centroids back to back (engine.h) */
  const float *xt; /* training set (batch * n_train, d), owned when xt_own */
  float *xt_own;
  const float *wt; /* training weights (batch * n_train) or NULL */
  float *wt_own;
  float *xn;       /* (batch * n_train) norms, L2 only */
  float *cent;     /* (batch * k, d) */
  float *cn;       /* (k), one problem's */
  int64_t *labels; /* (n_train), one problem's */
  float *dist;     /* (n_train), one problem's */
  int64_t *offsets; /* (k + 1) */
  int64_t *order;   /* (n_train) training rows grouped by label, stable */
  int64_t *cursor;  /* (k) counting-sort fill positions */
  /* batch 1: the rows the run reads (the user's matrix as a host source, or
   * the run's source), and the streamed mode (docs/data-path.md): the
   * training set is read from src in chunks of `chunk` rows every
   * iteration instead of held */
  fkm_source src;
  int check_rows;  /* rows read from a source are checked (check_finite) */
  int streamed;
  int64_t chunk;
  float *xc;       /* (chunk, d) the chunk's rows */
  uint16_t *rawc;  /* (chunk, d) in the source's 16-bit dtype, or NULL */
  float *acc;      /* (k, d) the update's sums, continued chunk to chunk */
  float *cnt;      /* (k) the update's counts */
} cpu_engine;

static cpu_engine *cpu(fkm_engine *e) { return (cpu_engine *)e; }

/* The context's thread count applies inside an engine call only; the
 * caller's OpenMP setting is restored on the way out. */
typedef struct thread_scope { int saved; } thread_scope;
static thread_scope threads_enter(cpu_engine *c) {
  thread_scope s = {omp_get_max_threads()};
  if (c->num_threads > 0) omp_set_num_threads(c->num_threads);
  else if (s.saved > fkm_thread_limit()) omp_set_num_threads(fkm_thread_limit());
  /* A BLAS on another OpenMP runtime (a pip wheel's own libgomp): the scans
   * of its blocks run on its threads (blas_omp.team of them, cpu_kernels.c),
   * and this runtime keeps one thread, so that no idle team of one runtime
   * spins on the cores the other one works on. */
  if (c->foreign_blas) {
    c->blas_omp.team = (unsigned)omp_get_max_threads();
    omp_set_num_threads(1);
  }
  return s;
}

/* The call's parameters, and the OpenMP runtime of its BLAS, looked up once
 * per run (threads_enter and the scans use it). */
static void set_params(cpu_engine *c, const fkm_params *params) {
  c->params = *params;
  c->foreign_blas = fkm_cpu_blas_omp(params->blas_sgemm, &c->blas_omp);
}

/* The runtime cannot report a failed thread creation (libgomp exits the
 * process): counts above what this machine can run are refused (the
 * context's) or lowered (OpenMP's default, e.g. a huge OMP_NUM_THREADS). */
int fkm_thread_limit(void) {
  long limit = (long)FKM_THREADS_PER_PROCESSOR * omp_get_num_procs();
  if (omp_get_thread_limit() < limit) limit = omp_get_thread_limit();
  struct rlimit rl;
  if (getrlimit(RLIMIT_NPROC, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      (rlim_t)limit > rl.rlim_cur / 2)
    limit = (long)(rl.rlim_cur / 2); /* the user's other processes count too */
  return limit < 1 ? 1 : (int)limit;
}
static void threads_leave(thread_scope s) { omp_set_num_threads(s.saved); }

double fkm_now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void *alloc_or_null(size_t count, size_t size) {
  return malloc(count * size > 0 ? count * size : 1);
}

#define ALLOC(ptr, count, what)                                              \
  do {                                                                       \
    (ptr) = alloc_or_null((size_t)(count), sizeof(*(ptr)));                  \
    if (!(ptr))                                                              \
      return fkm_fail(c->base.err, FKM_ERR_OUT_OF_MEMORY,                    \
                      "cpu engine: cannot allocate %s (%lld elements)", what, \
                      (long long)(count));                                   \
  } while (0)

/* ------------------------------------------------------------ input checks */

/* rows of x: batch problems of n rows each, back to back. */
static fkm_status check_x(fkm_errbuf *err, const char *name, fkm_dtype dtype,
                          const void *x, int64_t batch, int64_t n, int64_t d) {
  const int64_t bad = fkm_first_nonfinite_all(dtype, x, batch * n * d);
  return bad < 0 ? FKM_OK : fkm_fail_not_finite(err, name, bad, batch, n, d);
}

/* ------------------------------------------------------------ run lifecycle */

static void cpu_end(fkm_engine *e) {
  cpu_engine *c = cpu(e);
  free(c->xt_own);
  free(c->wt_own);
  free(c->xn);
  free(c->cent);
  free(c->cn);
  free(c->labels);
  free(c->dist);
  free(c->offsets);
  free(c->order);
  free(c->cursor);
  free(c->xc);
  free(c->rawc);
  free(c->acc);
  free(c->cnt);
  c->cursor = NULL;
  c->xc = c->acc = c->cnt = NULL;
  c->rawc = NULL;
  c->streamed = 0;
  c->xt_own = c->wt_own = c->xn = c->cent = c->cn = c->dist = NULL;
  c->labels = c->offsets = c->order = NULL;
  c->xt = c->wt = NULL;
}

/* ------------------------------------------------------------ memory plan */

/* What a run holds in host memory (fkm_train_memory, docs/data-path.md):
 * per training row in core, its float copy when the run makes one (a
 * subsample, a 16-bit dtype, a source), its norm, label, distance and
 * grouping entry; per centroid its rows, norm and grouping offsets. A
 * streamed run (batch 1) holds chunks of whole BLAS query blocks (the
 * blocks FAISS's search cuts, so that every block is computed as in core)
 * and the update's sums. Weights add 4 bytes per training row. */
/* Byte counts of shapes the API accepted (n d, k d, batch n d < 2^60) can
 * still pass 2^64 once multiplied by per-row sizes: they saturate. */
static size_t sat_add(size_t a, size_t b) { return a > SIZE_MAX - b ? SIZE_MAX : a + b; }
static size_t sat_mul(size_t a, size_t b) { return b && a > SIZE_MAX / b ? SIZE_MAX : a * b; }

static fkm_memory_plan cpu_plan_of(const fkm_params *p, int64_t batch, int64_t n, int64_t d,
                                   int64_t k, fkm_dtype dtype, int from_source) {
  fkm_memory_plan m;
  memset(&m, 0, sizeof m);
  const int64_t max_train = k * (int64_t)p->max_points_per_centroid;
  const int64_t nt = n > max_train ? max_train : n;
  const size_t row = sizeof(float) * (size_t)d, per_index = 4 + 8 + 4 + 8;
  const int copy = from_source || nt < n || dtype != FKM_DTYPE_F32;
  const size_t fixed = sat_add(sat_mul(sizeof(float) * (size_t)batch, (size_t)(k * d)),
                               (size_t)k * (4 + 8 + 8) + 8);
  m.in_core_bytes =
      sat_add(sat_mul((size_t)batch, sat_mul((size_t)nt, (copy ? row : 0) + per_index)), fixed);
  m.available = p->memory_budget;
  m.bytes = m.in_core_bytes;
  if (batch != 1) return m;
  const size_t chunk_row = row + (dtype == FKM_DTYPE_F32 ? 0 : 2 * (size_t)d) + per_index;
  const size_t acc = sizeof(float) * (size_t)(k * d + k);
  const int64_t q = p->blas_query_bs;
  m.streamed_bytes = sat_add(sat_add(sat_mul((size_t)q, chunk_row), fixed), acc);
  if (p->memory_budget == 0 || m.in_core_bytes <= p->memory_budget) return m;
  const size_t held = sat_add(fixed, acc);
  int64_t rows = p->memory_budget > held ? (int64_t)((p->memory_budget - held) / chunk_row) : 0;
  const int64_t whole = (nt + q - 1) / q * q;
  rows = rows / q * q;
  if (rows < q) rows = q;
  if (rows > whole) rows = whole;
  m.streamed = 1;
  m.chunk_rows = rows;
  m.bytes = sat_add(sat_add(sat_mul((size_t)rows, chunk_row), fixed), acc);
  return m;
}

static fkm_status plan_fits(fkm_errbuf *err, const fkm_memory_plan *m, int64_t batch) {
  if (m->available == 0 || m->bytes <= m->available) return FKM_OK;
  if (batch != 1)
    return fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                    "the run needs %zu bytes in core and params->memory_budget is %zu: "
                    "batched runs hold their training sets (only single runs stream)",
                    m->in_core_bytes, m->available);
  return fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                  "the run needs %zu bytes in core, at least %zu streamed (chunks of "
                  "%lld rows), and params->memory_budget is %zu",
                  m->in_core_bytes, m->streamed_bytes, (long long)m->chunk_rows, m->available);
}

/* Rows of c->src as floats into dst (rows NULL: first + i), 16-bit rows
 * through the chunk's staging when there is one. *bad: with check_rows, the
 * least source element index of a NaN or Inf among them, or -1. */
static fkm_status read_rows_bad(cpu_engine *c, const int64_t *rows, int64_t first,
                                int64_t count, float *dst, int64_t *bad) {
  *bad = -1;
  return fkm_source_read_float(&c->src, rows, first, count, dst, c->rawc,
                               c->rawc ? c->chunk : 0, c->check_rows ? bad : NULL, c->base.err);
}

/* read_rows_bad, failing on a NaN or Inf ("x contains NaN or Inf at ..."). */
static fkm_status read_rows(cpu_engine *c, const int64_t *rows, int64_t first, int64_t count,
                            float *dst) {
  int64_t bad;
  FKM_FORWARD(read_rows_bad(c, rows, first, count, dst, &bad));
  return bad < 0 ? FKM_OK : fkm_fail_not_finite(c->base.err, "x", bad, 1, 0, c->src.d);
}

static fkm_status cpu_begin_impl(cpu_engine *c, const fkm_run *run,
                                 const float *user_centroids) {
  c->run = *run; /* c->params: set by cpu_begin */
  c->run.params = &c->params;
  c->arith = *run->arith;
  c->run.arith = &c->arith;
  c->user_init = user_centroids;
  const int64_t B = run->batch, n = run->n, d = run->d, k = run->k, nt = run->n_train;
  fkm_errbuf *err = c->base.err;
  const int from_source = run->source != NULL;
  if (c->params.check_finite) {
    if (!from_source) FKM_FORWARD(check_x(err, "x", run->dtype, run->x, B, n, d));
    for (int64_t b = 0; b < B && run->n_init > 0; b++)
      FKM_FORWARD(check_x(err, "initial centroids", FKM_DTYPE_F32, user_centroids + b * k * d,
                          1, run->n_init, d));
  }
  if (run->weights) FKM_FORWARD(fkm_check_weights(err, run->weights, B * n, 0));
  const fkm_memory_plan plan = cpu_plan_of(&c->params, B, n, d, k, run->dtype, from_source);
  FKM_RETURN_IF(run->comm && plan.available && plan.in_core_bytes > plan.available, err,
                FKM_ERR_OUT_OF_MEMORY,
                "rank %d's run of the training set (%lld rows) needs %zu bytes in core and "
                "params->memory_budget is %zu: a distributed run holds each rank's rows (use "
                "more ranks or a larger budget)",
                run->comm->rank, (long long)nt, plan.in_core_bytes, plan.available);
  FKM_FORWARD(plan_fits(err, &plan, B));
  c->path_n = 0;
  c->check_rows = from_source && c->params.check_finite;
  if (B == 1) c->src = from_source ? *run->source : fkm_source_of_matrix(run->x, n, d, run->dtype);
  c->train_path = fkm_arith_path(&c->arith, c->params.metric, run->train_total, d);
  if (run->weights && (run->train_rows || plan.streamed)) {
    ALLOC(c->wt_own, B * nt, "the training weights");
    for (int64_t b = 0; b < B; b++)
      for (int64_t i = 0; i < nt; i++)
        c->wt_own[b * nt + i] = run->weights[b * n + (run->train_rows ? run->train_rows[i] : i)];
    c->wt = c->wt_own;
  } else {
    c->wt = run->weights;
  }
  const int64_t rows = plan.streamed ? plan.chunk_rows : nt; /* per-row buffers */
  if (plan.streamed) {
    c->streamed = 1;
    c->chunk = plan.chunk_rows;
    ALLOC(c->xc, c->chunk * d, "a chunk of the training set");
    if (run->dtype != FKM_DTYPE_F32)
      ALLOC(c->rawc, c->chunk * d, "a chunk's staging");
    ALLOC(c->acc, k * d, "the update's sums");
    ALLOC(c->cnt, k, "the update's counts");
  } else if (from_source) {
    ALLOC(c->xt_own, nt * d, "the training set");
    FKM_FORWARD(read_rows(c, run->train_rows, 0, nt, c->xt_own));
    c->xt = c->xt_own;
  } else if (run->train_rows) {
    const size_t xb = fkm_dtype_size(run->dtype) * (size_t)(n * d);
    ALLOC(c->xt_own, B * nt * d, "the training set");
    for (int64_t b = 0; b < B; b++)
      fkm_cpu_gather_float(run->dtype, (const char *)run->x + xb * (size_t)b, d,
                           run->train_rows, nt, c->xt_own + b * nt * d);
    c->xt = c->xt_own;
  } else if (run->dtype == FKM_DTYPE_F32) {
    c->xt = run->x;
  } else {
    ALLOC(c->xt_own, B * nt * d, "the training set");
    fkm_cpu_to_float(run->dtype, run->x, B * nt, d, c->xt_own);
    c->xt = c->xt_own;
  }
  ALLOC(c->xn, (plan.streamed ? 1 : B) * rows, "norms");
  if (c->params.metric == FKM_METRIC_L2 && !plan.streamed)
    fkm_cpu_norms_arith(&c->arith, c->train_path, c->xt, B * nt, d, c->xn);
  ALLOC(c->cent, B * k * d, "centroids");
  ALLOC(c->cn, k, "centroid norms");
  ALLOC(c->labels, rows, "labels");
  ALLOC(c->dist, rows, "distances");
  ALLOC(c->offsets, k + 1, "segment offsets");
  ALLOC(c->order, rows, "the label order");
  ALLOC(c->cursor, k, "the counting-sort cursors");
  if (run->comm) ALLOC(c->acc, fkm_chains_msg_floats(k, d), "the chains passed between ranks");
  memset(c->cent, 0, sizeof(float) * (size_t)(B * k * d));
  return FKM_OK;
}

static fkm_status cpu_begin(fkm_engine *e, const fkm_run *run,
                            const float *user_centroids) {
  cpu_engine *c = cpu(e);
  set_params(c, run->params); /* the run's BLAS decides the teams */
  thread_scope ts = threads_enter(c);
  fkm_status s = cpu_begin_impl(c, run, user_centroids);
  threads_leave(ts);
  return s;
}

static fkm_status cpu_load_initial(fkm_engine *e) {
  cpu_engine *c = cpu(e);
  const int64_t kd = c->run.k * c->run.d;
  for (int64_t b = 0; b < c->run.batch; b++)
    memcpy(c->cent + b * kd, c->user_init + b * kd,
           sizeof(float) * (size_t)(c->run.n_init * c->run.d));
  return FKM_OK;
}

static fkm_status cpu_init_rows(fkm_engine *e, const int64_t *perm,
                                int64_t from) {
  cpu_engine *c = cpu(e);
  const int64_t d = c->run.d, k = c->run.k, nt = c->run.n_train;
  if (c->streamed && from < k) { /* the training rows perm[i]: rows of the source */
    int64_t *rows = malloc(sizeof(int64_t) * (size_t)(k - from));
    FKM_RETURN_IF(!rows, c->base.err, FKM_ERR_OUT_OF_MEMORY,
                  "cpu engine: cannot allocate %lld row indices", (long long)(k - from));
    for (int64_t i = from; i < k; i++)
      rows[i - from] = c->run.train_rows ? c->run.train_rows[perm[i]] : perm[i];
    thread_scope ts = threads_enter(c);
    fkm_status s = read_rows(c, rows, 0, k - from, c->cent + from * d);
    threads_leave(ts);
    free(rows);
    return s;
  }
  for (int64_t b = 0; b < c->run.batch; b++)
    for (int64_t i = from; i < k; i++)
      memcpy(c->cent + (b * k + i) * d, c->xt + (b * nt + perm[i]) * d,
             sizeof(float) * (size_t)d);
  return FKM_OK;
}

/* docs/contract.md section 8. */
static fkm_status cpu_post_process(fkm_engine *e) {
  cpu_engine *c = cpu(e);
  const int64_t d = c->run.d, k = c->run.batch * c->run.k;
  thread_scope ts = threads_enter(c);
  if (c->params.spherical) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < k; i++) {
      float *ci = c->cent + i * d;
      const float nr = fkm_arith_norm(&c->arith, FKM_PATH_BLAS, ci, d); /* fvec_renorm_L2 */
      if (nr > 0) {
        const float inv = (float)(1.0 / (double)sqrtf(nr));
        for (int64_t j = 0; j < d; j++) ci[j] = ci[j] * inv;
      }
    }
  }
  if (c->params.int_centroids)
    for (int64_t t = 0; t < k * d; t++) c->cent[t] = roundf(c->cent[t]);
  threads_leave(ts);
  return FKM_OK;
}

/* ------------------------------------------------------------- the iteration */

/* x's n rows (their norms xn for path) to cent, in FAISS's search for path.
 * what, problem: the rows' name in messages; problem < 0 in an unbatched
 * run. */
static fkm_status assign_rows(cpu_engine *c, fkm_path path, const float *x, const float *xn,
                              int64_t n, const float *cent, int64_t k, int64_t *labels,
                              float *dist, const char *what, int64_t problem, int64_t row0) {
  fkm_errbuf *err = c->base.err;
  const int64_t d = c->run.d;
  fkm_cpu_assign_args a = {.x = x,
                       .xn = xn,
                       .n = n,
                       .d = d,
                       .c = cent,
                       .cn = c->cn,
                       .k = k,
                       .metric = c->params.metric,
                       .labels = labels,
                       .dist = dist,
                       .arith = &c->arith,
                       .path = path,
                       .sgemm = c->params.blas_sgemm,
                       .blas_omp = c->foreign_blas ? &c->blas_omp : NULL,
                       .query_bs = c->params.blas_query_bs,
                       .database_bs = c->params.blas_database_bs};
  FKM_RETURN_IF(fkm_cpu_assign(&a) != 0, err, FKM_ERR_OUT_OF_MEMORY,
                "cpu engine: cannot allocate the assignment's working memory");
  for (int64_t i = 0; i < n; i++)
    if (labels[i] < 0) return fkm_fail_no_finite(err, what, problem, row0 + i);
  return FKM_OK;
}

/* The centroids' norms of path (c->cn), once per set of centroids. */
static void centroid_norms(cpu_engine *c, fkm_path path, const float *cent, int64_t k) {
  if (c->params.metric == FKM_METRIC_L2 && path != FKM_PATH_DIRECT)
    fkm_cpu_norms_arith(&c->arith, path, cent, k, c->run.d, c->cn);
}

static fkm_status assign_into(cpu_engine *c, fkm_path path, const float *x, const float *xn,
                              int64_t n, const float *cent, int64_t k,
                              int64_t *labels, float *dist, const char *what,
                              int64_t problem) {
  centroid_norms(c, path, cent, k);
  return assign_rows(c, path, x, xn, n, cent, k, labels, dist, what, problem, 0);
}

/* The update's chains over this engine's buffers (chains.h). */
static fkm_chains chains_of(const cpu_engine *c) {
  const fkm_chains ch = {c->run.d,      c->run.k,  c->run.k_frozen, c->arith.weighted_fma,
                         c->order,      c->offsets, c->cursor};
  return ch;
}

/* docs/contract.md section 5: stable grouping of training rows by label
 * (counting sort), then per centroid an in-order float sum, float count,
 * reciprocal multiply. x, w: the problem's training rows and weights;
 * cent, hist, counts: its k rows (hist receives the label counts);
 * c->labels its labels. */
static void update(cpu_engine *c, const float *xt, const float *wt, float *cent, int64_t *hist,
                   float *counts) {
  const int64_t d = c->run.d, k = c->run.k, nt = c->run.n_train, kf = c->run.k_frozen;
  fkm_chains ch = chains_of(c);
  fkm_chains_group(&ch, c->labels, nt, hist);
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t ci = kf; ci < k; ci++) {
    float *cen = cent + ci * d;
    for (int64_t j = 0; j < d; j++) cen[j] = 0.0f;
    counts[ci] = fkm_chains_add(&ch, ci, cen, 0.0f, xt, wt);
  }
  fkm_chains_scale(&ch, cent + kf * d, d, counts + kf, 1, cent, counts); /* in place */
}

/* Streamed (docs/data-path.md): the chunk's m rows x (weights w or NULL)
 * added to each centroid's sums in training order, continuing the sums of
 * the chunks before: every centroid's float chain is the one update() runs
 * over the whole training set, step for step. c->labels: the chunk's; hist
 * (k) += the chunk's label counts (the grouping's). */
static void accumulate(cpu_engine *c, const float *x, const float *w, int64_t m,
                       int64_t *hist) {
  const int64_t d = c->run.d, k = c->run.k, kf = c->run.k_frozen;
  fkm_chains ch = chains_of(c);
  fkm_chains_group(&ch, c->labels, m, NULL);
  for (int64_t ci = 0; ci < k; ci++) hist[ci] += ch.offsets[ci + 1] - ch.offsets[ci];
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t ci = kf; ci < k; ci++)
    c->cnt[ci] = fkm_chains_add(&ch, ci, c->acc + ci * d, c->cnt[ci], x, w);
}

/* One iteration over the training set read chunk by chunk from the source:
 * assignment, the objective's chains and the update's sums each continue
 * from chunk to chunk in training order (the same bits as in core). */
static fkm_status cpu_iterate_streamed(cpu_engine *c, fkm_iter_result *out) {
  const int64_t k = c->run.k, nt = c->run.n_train, d = c->run.d, kf = c->run.k_frozen;
  const int64_t *train_rows = c->run.train_rows;
  memset(out->hist, 0, sizeof(int64_t) * (size_t)k);
  memset(c->acc, 0, sizeof(float) * (size_t)(k * d));
  memset(c->cnt, 0, sizeof(float) * (size_t)k);
  centroid_norms(c, c->train_path, c->cent, k);
  float obj = 0.0f;
  double objd = 0.0;
  out->assign_seconds = 0;
  int64_t least = INT64_MAX; /* a bad value: the pass reads on, to name the least */
  for (int64_t r0 = 0; r0 < nt; r0 += c->chunk) {
    const int64_t m = nt - r0 < c->chunk ? nt - r0 : c->chunk;
    int64_t bad;
    FKM_FORWARD(read_rows_bad(c, train_rows ? train_rows + r0 : NULL, r0, m, c->xc, &bad));
    if (bad >= 0 && bad < least) least = bad;
    if (least != INT64_MAX) continue;
    if (c->params.metric == FKM_METRIC_L2)
      fkm_cpu_norms_arith(&c->arith, c->train_path, c->xc, m, d, c->xn);
    const double t0 = fkm_now_seconds();
    FKM_FORWARD(assign_rows(c, c->train_path, c->xc, c->xn, m, c->cent, k, c->labels, c->dist,
                            "training set", -1, r0));
    out->assign_seconds += fkm_now_seconds() - t0;
    fkm_chains_objective(c->dist, m, &obj, &objd);
    accumulate(c, c->xc, c->wt ? c->wt + r0 : NULL, m, out->hist);
  }
  if (least != INT64_MAX) return fkm_fail_not_finite(c->base.err, "x", least, 1, 0, d);
  out->obj[0] = obj;
  out->obj_double[0] = objd;
  const fkm_chains ch = chains_of(c);
  fkm_chains_scale(&ch, c->acc + kf * d, d, c->cnt + kf, 1, c->cent, out->counts);
  return FKM_OK;
}

/* One iteration of a rank (docs/distributed.md): its rows assigned (every
 * rank at once), agreed, then its part of the chains (chains.h): only
 * k-sized data crosses, and every rank holds the bits of one process. */
static fkm_status cpu_iterate_ranked(cpu_engine *c, fkm_iter_result *out) {
  fkm_comm *comm = (fkm_comm *)c->run.comm;
  const int64_t k = c->run.k, nt = c->run.n_train;
  centroid_norms(c, c->train_path, c->cent, k);
  const double t0 = fkm_now_seconds();
  fkm_status s = assign_rows(c, c->train_path, c->xt, c->xn, nt, c->cent, k, c->labels,
                             c->dist, "training set", -1, c->run.train_first);
  out->assign_seconds = fkm_now_seconds() - t0;
  FKM_FORWARD(comm->ops->agree(comm, s, c->base.err));
  fkm_chains ch = chains_of(c);
  fkm_chains_group(&ch, c->labels, nt, out->hist);
  fkm_chains_host host = {&ch, c->xt, c->wt, c->dist, nt};
  const fkm_rank_steps steps = fkm_chains_host_steps(&host);
  return fkm_chains_ranked(&ch, &steps, comm, c->acc, c->cent, out, c->base.err);
}

/* Problems one after the other (each problem's bits depend on its rows and
 * centroids only). */
static fkm_status cpu_iterate_impl(cpu_engine *c, fkm_iter_result *out) {
  const int64_t k = c->run.k, nt = c->run.n_train, d = c->run.d, B = c->run.batch;
  if (c->streamed) return cpu_iterate_streamed(c, out);
  if (c->run.comm) return cpu_iterate_ranked(c, out);
  out->assign_seconds = 0;
  for (int64_t b = 0; b < B; b++) {
    const float *xt = c->xt + b * nt * d, *wt = c->wt ? c->wt + b * nt : NULL;
    float *cent = c->cent + b * k * d;
    double t0 = fkm_now_seconds();
    FKM_FORWARD(assign_into(c, c->train_path, xt, c->xn + b * nt, nt, cent, k, c->labels,
                            c->dist, "training set", B > 1 ? b : -1));
    out->assign_seconds += fkm_now_seconds() - t0;
    out->obj[b] = 0.0f;
    out->obj_double[b] = 0.0;
    fkm_chains_objective(c->dist, nt, &out->obj[b], &out->obj_double[b]);
    update(c, xt, wt, cent, out->hist + b * k, out->counts + b * k);
  }
  return FKM_OK;
}

static fkm_status cpu_iterate(fkm_engine *e, fkm_iter_result *out) {
  cpu_engine *c = cpu(e);
  thread_scope ts = threads_enter(c);
  fkm_status s = cpu_iterate_impl(c, out);
  threads_leave(ts);
  return s;
}

/* docs/contract.md section 6, the row operations (the loop picked the pairs). */
static fkm_status cpu_apply_splits(fkm_engine *e, const fkm_split_pair *pairs,
                                   int64_t count) {
  cpu_engine *c = cpu(e);
  const int64_t d = c->run.d;
  const float up = 1.0f + 1.0f / 1024.0f, down = 1.0f - 1.0f / 1024.0f;
  for (int64_t s = 0; s < count; s++) {
    float *dst = c->cent + pairs[s].dst * d, *src = c->cent + pairs[s].src * d;
    memmove(dst, src, sizeof(float) * (size_t)d);
    for (int64_t j = 0; j < d; j++) {
      if (j % 2 == 0) {
        dst[j] = dst[j] * up;
        src[j] = src[j] * down;
      } else {
        dst[j] = dst[j] * down;
        src[j] = src[j] * up;
      }
    }
  }
  return FKM_OK;
}

static fkm_status cpu_read_train(fkm_engine *e, float *host) {
  cpu_engine *c = cpu(e);
  if (c->streamed) {
    thread_scope ts = threads_enter(c);
    fkm_status s = read_rows(c, c->run.train_rows, 0, c->run.n_train, host);
    threads_leave(ts);
    return s;
  }
  memcpy(host, c->xt, sizeof(float) * (size_t)(c->run.batch * c->run.n_train * c->run.d));
  return FKM_OK;
}

static fkm_status cpu_read_centroids(fkm_engine *e, float *host) {
  cpu_engine *c = cpu(e);
  memcpy(host, c->cent, sizeof(float) * (size_t)(c->run.batch * c->run.k * c->run.d));
  return FKM_OK;
}

static fkm_status cpu_write_centroids(fkm_engine *e, const float *host) {
  cpu_engine *c = cpu(e);
  memcpy(c->cent, host, sizeof(float) * (size_t)(c->run.batch * c->run.k * c->run.d));
  return FKM_OK;
}

/* Float view of a user matrix: the matrix itself for f32, else a copy. */
static fkm_status float_view(cpu_engine *c, fkm_dtype dtype, const void *x,
                             int64_t n, int64_t d, const float **view,
                             float **owned) {
  *owned = NULL;
  if (dtype == FKM_DTYPE_F32) {
    *view = x;
    return FKM_OK;
  }
  ALLOC(*owned, n * d, "a float copy of x");
  fkm_cpu_to_float(dtype, x, n, d, *owned);
  *view = *owned;
  return FKM_OK;
}

/* Assign n rows of a user matrix to cent into lab and dis (n each). */
static fkm_status assign_user(cpu_engine *c, fkm_dtype dtype, const void *x,
                              int64_t n, const float *cent, int64_t k,
                              int64_t *lab, float *dis, int64_t problem) {
  const int64_t d = c->run.d;
  const float *xf = NULL;
  float *xf_own = NULL, *xn = NULL;
  fkm_status s = float_view(c, dtype, x, n, d, &xf, &xf_own);
  if (s == FKM_OK) {
    xn = alloc_or_null((size_t)n, sizeof(float));
    if (!xn)
      s = fkm_fail(c->base.err, FKM_ERR_OUT_OF_MEMORY,
                   "cpu engine: cannot allocate the norms of %lld rows", (long long)n);
  }
  if (s == FKM_OK) {
    const fkm_path path =
        fkm_arith_path(&c->arith, c->params.metric, c->path_n > 0 ? c->path_n : n, d);
    if (c->params.metric == FKM_METRIC_L2) fkm_cpu_norms_arith(&c->arith, path, xf, n, d, xn);
    s = assign_into(c, path, xf, xn, n, cent, k, lab, dis, "x", problem);
  }
  free(xn);
  free(xf_own);
  return s;
}

/* Assign every problem's n rows to its centroids; on success write labels
 * and distances (batch * n each, either may be NULL), on failure nothing. */
static fkm_status assign_problems(cpu_engine *c, fkm_dtype dtype, const void *x,
                                  int64_t batch, int64_t n, const float *cent,
                                  int64_t k, int64_t *labels, float *distances) {
  const int64_t d = c->run.d;
  const size_t xb = fkm_dtype_size(dtype) * (size_t)(n * d);
  int64_t *lab = alloc_or_null((size_t)(batch * n), sizeof(int64_t));
  float *dis = alloc_or_null((size_t)(batch * n), sizeof(float));
  fkm_status s = FKM_OK;
  if (!lab || !dis)
    s = fkm_fail(c->base.err, FKM_ERR_OUT_OF_MEMORY,
                 "cpu engine: cannot allocate the assignment of %lld rows",
                 (long long)(batch * n));
  for (int64_t b = 0; b < batch && s == FKM_OK; b++)
    s = assign_user(c, dtype, (const char *)x + xb * (size_t)b, n, cent + b * k * d, k,
                    lab + b * n, dis + b * n, batch > 1 ? b : -1);
  if (s == FKM_OK) {
    if (labels) memcpy(labels, lab, sizeof(int64_t) * (size_t)(batch * n));
    if (distances) memcpy(distances, dis, sizeof(float) * (size_t)(batch * n));
  }
  free(lab);
  free(dis);
  return s;
}

/* Rows per chunk of a source's assignment: the run's chunk, else the
 * budget's, else 64k rows; whole BLAS query blocks either way. */
static int64_t assign_chunk_rows(const cpu_engine *c) {
  const int64_t q = c->params.blas_query_bs, d = c->src.d;
  if (c->chunk > 0) return c->chunk;
  int64_t rows = (int64_t)1 << 16;
  if (c->params.memory_budget > 0)
    rows = (int64_t)(c->params.memory_budget / (sizeof(float) * (size_t)d + 4 * sizeof(float)));
  rows = rows / q * q;
  return rows < q ? q : rows;
}

/* Labels and distances of the source's n rows (c->src) to cent, read in
 * chunks of whole BLAS query blocks (each block is searched as in one call
 * over all n rows, on the path of n rows); on success into lab and dis
 * (n each, either may be NULL), on failure nothing. */
static fkm_status assign_source_rows(cpu_engine *c, const float *cent, int64_t k,
                                     int64_t *labels, float *distances) {
  const int64_t n = c->src.n, d = c->src.d, chunk = assign_chunk_rows(c);
  const int64_t rows = n < chunk ? n : chunk;
  const fkm_path path =
      fkm_arith_path(&c->arith, c->params.metric, c->path_n > 0 ? c->path_n : n, d);
  float *x = alloc_or_null((size_t)(rows * d), sizeof(float));
  float *xn = alloc_or_null((size_t)rows, sizeof(float));
  int64_t *lab = alloc_or_null((size_t)n, sizeof(int64_t));
  float *dis = alloc_or_null((size_t)n, sizeof(float));
  fkm_status s = FKM_OK;
  if (!x || !xn || !lab || !dis)
    s = fkm_fail(c->base.err, FKM_ERR_OUT_OF_MEMORY,
                 "cpu engine: cannot allocate the assignment of %lld rows in chunks of %lld",
                 (long long)n, (long long)rows);
  if (s == FKM_OK) centroid_norms(c, path, cent, k);
  for (int64_t r0 = 0; r0 < n && s == FKM_OK; r0 += chunk) {
    const int64_t m = n - r0 < chunk ? n - r0 : chunk;
    s = read_rows(c, NULL, r0, m, x);
    if (s != FKM_OK) break;
    if (c->params.metric == FKM_METRIC_L2) fkm_cpu_norms_arith(&c->arith, path, x, m, d, xn);
    s = assign_rows(c, path, x, xn, m, cent, k, lab + r0, dis + r0, "x", -1, r0);
  }
  if (s == FKM_OK) {
    if (labels) memcpy(labels, lab, sizeof(int64_t) * (size_t)n);
    if (distances) memcpy(distances, dis, sizeof(float) * (size_t)n);
  }
  free(x);
  free(xn);
  free(lab);
  free(dis);
  return s;
}

static fkm_status cpu_finish_impl(cpu_engine *c, float *centroids,
                                  int64_t *labels, float *distances) {
  const int64_t k = c->run.k, d = c->run.d, B = c->run.batch;
  if ((labels || distances) && (c->streamed || c->run.source))
    FKM_FORWARD(assign_source_rows(c, c->cent, k, labels, distances));
  else if (labels || distances)
    FKM_FORWARD(assign_problems(c, c->run.dtype, c->run.x, B, c->run.n, c->cent, k, labels,
                                distances));
  memcpy(centroids, c->cent, sizeof(float) * (size_t)(B * k * d));
  return FKM_OK;
}

static fkm_status cpu_finish(fkm_engine *e, float *centroids, int64_t *labels,
                             float *distances) {
  cpu_engine *c = cpu(e);
  thread_scope ts = threads_enter(c);
  fkm_status s = cpu_finish_impl(c, centroids, labels, distances);
  threads_leave(ts);
  return s;
}

static fkm_status cpu_copy(fkm_engine *e, void *dst, const void *src,
                           size_t bytes) {
  (void)e;
  if (bytes) memcpy(dst, src, bytes);
  return FKM_OK;
}

/* fkm_assign (x) and fkm_assign_source (src, x NULL): the call's own run. */
static fkm_status assign_call(cpu_engine *c, const fkm_params *params, int64_t n, int64_t d,
                              int64_t k, fkm_dtype dtype, const void *x, const fkm_source *src,
                              const float *centroids, int64_t *labels, float *distances,
                              int64_t path_n) {
  fkm_errbuf *err = c->base.err;
  memset(&c->run, 0, sizeof c->run);
  c->path_n = path_n;
  set_params(c, params);
  c->run.params = &c->params;
  c->run.batch = 1;
  c->run.n = n;
  c->run.d = d;
  c->run.k = k;
  c->run.dtype = dtype;
  if (src) c->src = *src;
  c->check_rows = src && params->check_finite; /* a source's rows as they are read */
  c->chunk = 0;
  fkm_status s = fkm_arith_of(&params->profile, &c->arith, err);
  if (s != FKM_OK) return s;
  c->run.arith = &c->arith;
  thread_scope ts = threads_enter(c);
  if (params->check_finite) {
    if (!src) s = check_x(err, "x", dtype, x, 1, n, d);
    if (s == FKM_OK) s = check_x(err, "centroids", FKM_DTYPE_F32, centroids, 1, k, d);
  }
  if (s == FKM_OK) {
    c->cn = alloc_or_null((size_t)k, sizeof(float));
    if (!c->cn)
      s = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY, "cpu engine: cannot allocate centroid norms");
  }
  if (s == FKM_OK)
    s = src ? assign_source_rows(c, centroids, k, labels, distances)
            : assign_problems(c, dtype, x, 1, n, centroids, k, labels, distances);
  free(c->cn);
  c->cn = NULL;
  threads_leave(ts);
  return s;
}

static fkm_status cpu_assign(fkm_engine *e, const fkm_params *params, int64_t n, int64_t d,
                             int64_t k, fkm_dtype dtype, const void *x, const float *centroids,
                             int64_t *labels, float *distances, int64_t path_n) {
  return assign_call(cpu(e), params, n, d, k, dtype, x, NULL, centroids, labels, distances,
                     path_n);
}

static fkm_status cpu_assign_source(fkm_engine *e, const fkm_params *params,
                                    const fkm_source *src, int64_t k, const float *centroids,
                                    int64_t *labels, float *distances, int64_t path_n) {
  return assign_call(cpu(e), params, src->n, src->d, k, src->dtype, NULL, src, centroids,
                     labels, distances, path_n);
}

static fkm_status cpu_pq_encode(fkm_engine *e, const fkm_pq_args *a) {
  FKM_FORWARD(fkm_pq_check_host(e->err, a));
  thread_scope ts = threads_enter(cpu(e));
  const fkm_status s = fkm_pq_encode_host(e->err, a, 0, a->n);
  threads_leave(ts);
  return s;
}

/* The CPU engine calls the BLAS itself: every product is the BLAS's. */
static fkm_status cpu_blas_coverage(fkm_engine *e, const fkm_params *params, int64_t n,
                                    int64_t d, int64_t k, int64_t *covered) {
  (void)e;
  (void)params;
  (void)d;
  *covered = n * k;
  return FKM_OK;
}

static fkm_status cpu_plan_memory(fkm_engine *e, const fkm_params *params, int64_t batch,
                                  int64_t n, int64_t d, int64_t k, fkm_dtype dtype,
                                  int from_source, fkm_memory_plan *plan) {
  *plan = cpu_plan_of(params, batch, n, d, k, dtype, from_source);
  return plan_fits(e->err, plan, batch);
}

/* The CPU engine keeps nothing between runs. */
static fkm_status cpu_release(fkm_engine *e) {
  (void)e;
  return FKM_OK;
}

fkm_status fkm_check_num_threads(fkm_errbuf *err, int n) {
  FKM_RETURN_IF(n < 0, err, FKM_ERR_INVALID_ARG, "num_threads = %d must be >= 0", n);
  const int limit = fkm_thread_limit();
  FKM_RETURN_IF(n > limit, err, FKM_ERR_INVALID_ARG,
                "num_threads = %d: more threads than this machine runs (%d processors; "
                "at most %d threads)",
                n, omp_get_num_procs(), limit);
  return FKM_OK;
}

/* ------------------------------------------------------------ the engine */

static const char *cpu_device_name(fkm_engine *e) {
  cpu_engine *c = cpu(e);
  int nt = c->num_threads > 0 ? c->num_threads : omp_get_max_threads();
  snprintf(c->name, sizeof c->name, "CPU (%d OpenMP threads)", nt);
  return c->name;
}

static fkm_status cpu_set_num_threads(fkm_engine *e, int n) {
  FKM_FORWARD(fkm_check_num_threads(e->err, n));
  cpu(e)->num_threads = n;
  return FKM_OK;
}

static fkm_status cpu_set_stream(fkm_engine *e, struct CUstream_st *stream) {
  (void)e;
  (void)stream;
  return FKM_OK;
}

static void cpu_destroy(fkm_engine *e) {
  if (!e) return;
  cpu_end(e);
  free(e);
}

static int cpu_is_device(fkm_engine *e, const void *p) {
  (void)e;
  (void)p;
  return 0;
}

static const fkm_engine_ops cpu_ops = {
    "cpu",
    cpu_destroy,
    cpu_device_name,
    cpu_set_num_threads,
    cpu_set_stream,
    cpu_begin,
    cpu_load_initial,
    cpu_init_rows,
    cpu_post_process,
    cpu_iterate,
    cpu_apply_splits,
    NULL, /* loop_fits: the host loop decides every iteration */
    NULL, /* iterate_loop */
    cpu_read_train,
    cpu_read_centroids,
    cpu_write_centroids,
    cpu_finish,
    cpu_end,
    cpu_copy,
    cpu_assign,
    cpu_assign_source,
    cpu_pq_encode,
    cpu_blas_coverage,
    cpu_plan_memory,
    cpu_release,
    cpu_is_device,
};

fkm_status fkm_engine_cpu_create(fkm_errbuf *err, fkm_engine **out) {
  cpu_engine *c = calloc(1, sizeof *c);
  *out = NULL;
  FKM_RETURN_IF(!c, err, FKM_ERR_OUT_OF_MEMORY, "cannot allocate the CPU engine");
  c->base.ops = &cpu_ops;
  c->base.err = err;
  *out = &c->base;
  return FKM_OK;
}
