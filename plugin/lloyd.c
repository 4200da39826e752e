/* The Lloyd loop, read as the algorithm (faiss::Clustering::train_encoded of
 * FAISS 1.7.3, SPEC section 2):
 *
 *   subsample -> [n_train == k: copy] -> for each redo:
 *     init rows from a permutation, post-process;
 *     for each iteration: assign + objective + update (engine, one host sync),
 *       split empty clusters, stats, post-process, progress callback;
 *     keep the run if its last objective is strictly better.
 *
 * The engine holds the data; only k-sized vectors cross to the host. */
#define _POSIX_C_SOURCE 200809L
#include "lloyd.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rng.h"

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void logf_(const fkm_params *p, fkm_log_level level, const char *fmt,
                  ...) FKM_PRINTF(3, 4);
static void logf_(const fkm_params *p, fkm_log_level level, const char *fmt,
                  ...) {
  if (!p->log || (level == FKM_LOG_INFO && !p->verbose) || level == FKM_LOG_DEBUG)
    return;
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  p->log(p->log_user, level, msg);
}

double fkm_imbalance_factor(const int64_t *hist, int64_t k) {
  double tot = 0, uf = 0;
  for (int64_t i = 0; i < k; i++) {
    tot += (double)hist[i];
    uf += (double)hist[i] * (double)hist[i];
  }
  return uf * (double)k / (tot * tot);
}

fkm_status fkm_split_plan(float *counts, int64_t k, int64_t k_frozen,
                          int64_t n_train, fkm_split_pair *pairs,
                          int64_t *npairs, fkm_errbuf *err) {
  const int64_t kk = k - k_frozen; /* the centroids that may move */
  float *h = counts + k_frozen;
  *npairs = 0;
  int any_empty = 0;
  for (int64_t ci = 0; ci < kk; ci++) any_empty |= h[ci] == 0;
  if (!any_empty) return FKM_OK;
  FKM_RETURN_IF(n_train <= kk, err, FKM_ERR_INVALID_ARG,
                "cannot split empty clusters: %lld training points for %lld "
                "non-frozen centroids (need more points than centroids)",
                (long long)n_train, (long long)kk);
  fkm_mt19937 rng;
  fkm_mt_seed(&rng, 1234);
  const double denom = (double)(float)(n_train - kk);
  const int64_t max_tries = 10 * kk;
  for (int64_t ci = 0; ci < kk; ci++) {
    if (h[ci] != 0) continue;
    int64_t cj = 0, tries = 0;
    int found = 0;
    for (; tries < max_tries; cj = (cj + 1) % kk) {
      const float p = (float)(((double)h[cj] - 1.0) / denom);
      const float r = fkm_rand_float(&rng);
      if (r < p) {
        found = 1;
        break;
      }
      tries++;
    }
    if (!found) { /* FAISS 1.15's fallback: the first largest cluster */
      cj = 0;
      for (int64_t j = 1; j < kk; j++)
        if (h[j] > h[cj]) cj = j;
    }
    pairs[*npairs].dst = ci + k_frozen;
    pairs[*npairs].src = cj + k_frozen;
    (*npairs)++;
    h[ci] = h[cj] / 2;
    h[cj] -= h[ci];
  }
  return FKM_OK;
}

/* Host-side buffers of one training run (all problems). */
typedef struct loop_state {
  float *counts;          /* (batch, k) */
  int64_t *hist;          /* (batch, k) */
  float *obj;             /* (batch) this iteration's objectives */
  double *obj_double;     /* (batch) */
  int64_t *perm;          /* (k) the redo's init permutation */
  int64_t *rows;          /* (k * max_points_per_centroid) subsample rows */
  fkm_split_pair *pairs;  /* (batch, k) */
  float *best;            /* (batch, k, d) with nredo > 1 */
  float *cur;             /* (batch, k, d) with nredo > 1: a redo's result */
  float *best_obj;        /* (batch) */
  int64_t *best_nstats;   /* (batch) */
  fkm_iteration_stats *stats; /* (batch, niter * nredo) */
  int64_t nst;            /* stats capacity per problem */
  int64_t nstats;         /* stats recorded per problem so far */
} loop_state;

static void loop_free(loop_state *s) {
  free(s->counts);
  free(s->hist);
  free(s->obj);
  free(s->obj_double);
  free(s->perm);
  free(s->rows);
  free(s->pairs);
  free(s->best);
  free(s->cur);
  free(s->best_obj);
  free(s->best_nstats);
  free(s->stats);
}

static void *alloc_n(int64_t count, size_t size) {
  return malloc(size * (size_t)(count > 0 ? count : 1));
}

static fkm_status loop_alloc(loop_state *s, const fkm_train_args *a,
                             int64_t nrows, fkm_errbuf *err) {
  const fkm_params *p = a->params;
  const int64_t B = a->batch, bk = a->batch * a->k, redo = p->nredo > 1;
  s->nst = (int64_t)p->niter * p->nredo;
  if (s->nst < 1) s->nst = 1;
  s->counts = alloc_n(bk, sizeof(float));
  s->hist = alloc_n(bk, sizeof(int64_t));
  s->obj = alloc_n(B, sizeof(float));
  s->obj_double = alloc_n(B, sizeof(double));
  s->perm = alloc_n(a->k, sizeof(int64_t));
  s->rows = nrows > 0 ? alloc_n(nrows, sizeof(int64_t)) : NULL;
  s->pairs = alloc_n(bk, sizeof(fkm_split_pair));
  s->stats = alloc_n(B * s->nst, sizeof(fkm_iteration_stats));
  s->best_obj = alloc_n(B, sizeof(float));
  s->best_nstats = alloc_n(B, sizeof(int64_t));
  s->best = redo ? alloc_n(bk * a->d, sizeof(float)) : NULL;
  s->cur = redo ? alloc_n(bk * a->d, sizeof(float)) : NULL;
  FKM_RETURN_IF(!s->counts || !s->hist || !s->obj || !s->obj_double || !s->perm ||
                    !s->pairs || !s->stats || !s->best_obj || !s->best_nstats ||
                    (nrows > 0 && !s->rows) || (redo && (!s->best || !s->cur)),
                err, FKM_ERR_OUT_OF_MEMORY,
                "cannot allocate the host buffers of the Lloyd loop (batch = %lld, "
                "k = %lld)",
                (long long)B, (long long)a->k);
  return FKM_OK;
}

static void write_stats(const fkm_train_args *a, const loop_state *s) {
  for (int64_t b = 0; b < a->batch; b++) {
    const int64_t have = a->params->nredo > 1 ? s->best_nstats[b] : s->nstats;
    if (a->stats) {
      const int64_t m = have < a->stats_capacity ? have : a->stats_capacity;
      memcpy(a->stats + b * a->stats_capacity, s->stats + b * s->nst,
             sizeof(fkm_iteration_stats) * (size_t)m);
    }
    if (a->n_stats) a->n_stats[b] = have;
  }
}

/* One redo of every problem: init, then niter iterations. s->obj receives
 * each problem's last objective (0 when niter == 0, as FAISS). */
static fkm_status run_redo(fkm_engine *e, const fkm_train_args *a,
                           const fkm_run *run, loop_state *s, int redo,
                           double t0, double *t_search) {
  const fkm_params *p = a->params;
  const fkm_engine_ops *ops = e->ops;
  const int64_t k = a->k, B = a->batch;
  fkm_errbuf *err = e->err;
  FKM_FORWARD(fkm_rand_perm_prefix(run->n_train,
                                   p->seed + 1 + (int64_t)redo * 15486557,
                                   k, s->perm, err));
  FKM_FORWARD(ops->init_rows(e, s->perm, run->n_init));
  FKM_FORWARD(ops->post_process(e));
  for (int64_t b = 0; b < B; b++) s->obj[b] = 0;
  for (int it = 0; it < p->niter; it++) {
    fkm_iter_result r = {s->obj, s->obj_double, s->counts, s->hist, 0.0};
    FKM_FORWARD(ops->iterate(e, &r));
    *t_search += r.assign_seconds;
    const double t = now_seconds() - t0;
    /* every problem's splits, then one engine call applies them all */
    int64_t total = 0;
    for (int64_t b = 0; b < B; b++) {
      int64_t npairs = 0;
      fkm_split_pair *pb = s->pairs + total;
      FKM_FORWARD(fkm_split_plan(s->counts + b * k, k, run->k_frozen, run->n_train, pb,
                                 &npairs, err));
      for (int64_t i = 0; i < npairs; i++) {
        pb[i].dst += b * k;
        pb[i].src += b * k;
      }
      total += npairs;
      fkm_iteration_stats *st = &s->stats[b * s->nst + s->nstats];
      st->obj = s->obj[b];
      st->time = t;
      st->time_search = *t_search;
      st->imbalance_factor = fkm_imbalance_factor(s->hist + b * k, k);
      st->nsplit = (int)npairs;
      st->obj_double = s->obj_double[b];
      if (B > 1)
        logf_(p, FKM_LOG_INFO,
              "  Problem %lld iteration %d (%.2f s, search %.2f s): objective=%g "
              "imbalance=%.3f nsplit=%d",
              (long long)b, it, st->time, st->time_search, (double)st->obj,
              st->imbalance_factor, st->nsplit);
      else
        logf_(p, FKM_LOG_INFO,
              "  Iteration %d (%.2f s, search %.2f s): objective=%g imbalance=%.3f nsplit=%d",
              it, st->time, st->time_search, (double)st->obj, st->imbalance_factor,
              st->nsplit);
    }
    s->nstats++;
    if (total > 0) FKM_FORWARD(ops->apply_splits(e, s->pairs, total));
    FKM_FORWARD(ops->post_process(e));
    for (int64_t b = 0; b < B && p->progress; b++)
      if (p->progress(p->progress_user, redo, it, &s->stats[b * s->nst + s->nstats - 1]) != 0)
        return fkm_fail(err, FKM_ERR_INTERRUPTED,
                        "interrupted by the progress callback after iteration %d of redo %d",
                        it, redo);
  }
  return FKM_OK;
}

/* nredo > 1: keep each problem's centroids of this redo when its objective
 * is strictly better than its best so far. */
static fkm_status keep_best(fkm_engine *e, const fkm_train_args *a, loop_state *s) {
  const int l2 = a->params->metric == FKM_METRIC_L2;
  const size_t kd = (size_t)(a->k * a->d);
  int read = 0;
  for (int64_t b = 0; b < a->batch; b++) {
    const float obj = s->obj[b];
    if (!(l2 ? obj < s->best_obj[b] : obj > s->best_obj[b])) continue;
    if (!read) FKM_FORWARD(e->ops->read_centroids(e, s->cur));
    read = 1;
    if (a->batch > 1)
      logf_(a->params, FKM_LOG_INFO, "Problem %lld: objective improved: keep new clusters",
            (long long)b);
    else
      logf_(a->params, FKM_LOG_INFO, "Objective improved: keep new clusters");
    memcpy(s->best + (size_t)b * kd, s->cur + (size_t)b * kd, sizeof(float) * kd);
    s->best_nstats[b] = s->nstats;
    s->best_obj[b] = obj;
  }
  return FKM_OK;
}

static fkm_status train(fkm_engine *e, const fkm_train_args *a, loop_state *s) {
  const fkm_params *p = a->params;
  const fkm_engine_ops *ops = e->ops;
  fkm_errbuf *err = e->err;
  const int64_t n = a->n, k = a->k, d = a->d, B = a->batch;
  fkm_run run = {p, B, n, d, k, a->dtype, a->x, a->weights, NULL, n, a->n_init,
                 p->frozen_centroids ? a->n_init : 0};

  /* Subsampling: rows perm[0..k*max) in permutation order, the same rows of
   * every problem (the permutation depends on n and the seed only). */
  const int64_t max_train = k * (int64_t)p->max_points_per_centroid;
  const int subsample = n > max_train;
  FKM_RETURN_IF(subsample && n > INT32_MAX, err, FKM_ERR_UNSUPPORTED,
                "n = %lld: subsampling follows faiss::rand_perm, whose "
                "permutation is int (n <= 2^31 - 1)", (long long)n);
  FKM_FORWARD(loop_alloc(s, a, subsample ? max_train : 0, err));
  if (subsample) {
    logf_(p, FKM_LOG_INFO, "Sampling a subset of %lld / %lld for training",
          (long long)max_train, (long long)n);
    FKM_FORWARD(fkm_rand_perm_prefix(n, p->seed, max_train, s->rows, err));
    run.train_rows = s->rows;
    run.n_train = max_train;
  } else if (n < k * (int64_t)p->min_points_per_centroid) {
    logf_(p, FKM_LOG_WARNING,
          "WARNING clustering %lld points to %lld centroids: please provide at "
          "least %lld training points",
          (long long)n, (long long)k, (long long)(k * p->min_points_per_centroid));
  }

  if (run.n_train == k) {
    /* FAISS copies the first k rows of its input (x_in, not the subsample)
     * and reports one iteration {0, 0, 0, 1, 0}; nothing is post-processed. */
    for (int64_t i = 0; i < k; i++) s->perm[i] = i;
    run.train_rows = s->perm; /* rows 0..k-1 of each problem */
    run.n_init = 0;
    run.k_frozen = 0;
    FKM_FORWARD(ops->begin(e, &run, a->centroids));
    FKM_FORWARD(ops->init_rows(e, s->perm, 0));
    fkm_iteration_stats one = {0.0f, 0.0, 0.0, 1.0, 0, 0.0};
    for (int64_t b = 0; b < B; b++) s->stats[b * s->nst] = one;
    s->nstats = 1;
    for (int64_t b = 0; b < B; b++) s->best_nstats[b] = 1;
    logf_(p, FKM_LOG_INFO,
          "Number of training points (%lld) same as number of clusters, just copying",
          (long long)k);
    return ops->finish(e, a->centroids, a->labels, a->distances);
  }

  FKM_FORWARD(ops->begin(e, &run, a->centroids));
  logf_(p, FKM_LOG_INFO,
        "Clustering %lld points in %lldD to %lld clusters, redo %d times, %d iterations",
        (long long)run.n_train, (long long)d, (long long)k, p->nredo, p->niter);
  if (B > 1) logf_(p, FKM_LOG_INFO, "%lld problems trained together", (long long)B);
  if (a->n_init > 0) FKM_FORWARD(ops->load_initial(e));

  const int l2 = p->metric == FKM_METRIC_L2;
  for (int64_t b = 0; b < B; b++) {
    s->best_nstats[b] = -1;
    s->best_obj[b] = l2 ? HUGE_VALF : -HUGE_VALF;
  }
  double t0 = now_seconds(), t_search = 0;
  for (int redo = 0; redo < p->nredo; redo++) {
    if (p->nredo > 1) logf_(p, FKM_LOG_INFO, "Outer iteration %d / %d", redo, p->nredo);
    FKM_FORWARD(run_redo(e, a, &run, s, redo, t0, &t_search));
    if (p->nredo > 1) FKM_FORWARD(keep_best(e, a, s));
  }
  if (p->nredo > 1) {
    for (int64_t b = 0; b < B; b++)
      FKM_RETURN_IF(s->best_nstats[b] < 0, err, FKM_ERR_NUMERIC,
                    "no redo reached a comparable objective (NaN)%s: the data "
                    "overflows float arithmetic",
                    B > 1 ? " in one of the problems" : "");
    FKM_FORWARD(ops->write_centroids(e, s->best));
  }
  return ops->finish(e, a->centroids, a->labels, a->distances);
}

fkm_status fkm_lloyd_train(fkm_engine *e, const fkm_train_args *a) {
  loop_state s = {0};
  fkm_status st = a->batch > 0 ? train(e, a, &s) : FKM_OK;
  if (st == FKM_OK && a->batch > 0) write_stats(a, &s);
  if (a->batch > 0) e->ops->end(e);
  loop_free(&s);
  return st;
}
