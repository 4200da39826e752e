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

/* Host-side buffers of one training run. */
typedef struct loop_state {
  float *counts;          /* (k) */
  int64_t *hist;          /* (k) */
  int64_t *perm;          /* (k) the redo's init permutation */
  int64_t *rows;          /* (k * max_points_per_centroid) subsample rows */
  fkm_split_pair *pairs;  /* (k) */
  float *best;            /* (k, d) with nredo > 1 */
  fkm_iteration_stats *stats; /* (niter * nredo) */
  int64_t nstats;
} loop_state;

static void loop_free(loop_state *s) {
  free(s->counts);
  free(s->hist);
  free(s->perm);
  free(s->rows);
  free(s->pairs);
  free(s->best);
  free(s->stats);
}

static fkm_status loop_alloc(loop_state *s, const fkm_train_args *a,
                             int64_t nrows, fkm_errbuf *err) {
  const fkm_params *p = a->params;
  const int64_t nst = (int64_t)p->niter * p->nredo;
  s->counts = malloc(sizeof(float) * (size_t)a->k);
  s->hist = malloc(sizeof(int64_t) * (size_t)a->k);
  s->perm = malloc(sizeof(int64_t) * (size_t)a->k);
  s->rows = nrows > 0 ? malloc(sizeof(int64_t) * (size_t)nrows) : NULL;
  s->pairs = malloc(sizeof(fkm_split_pair) * (size_t)a->k);
  s->stats = malloc(sizeof(fkm_iteration_stats) * (size_t)(nst > 0 ? nst : 1));
  s->best = p->nredo > 1 ? malloc(sizeof(float) * (size_t)(a->k * a->d)) : NULL;
  FKM_RETURN_IF(!s->counts || !s->hist || !s->perm || !s->pairs || !s->stats ||
                    (nrows > 0 && !s->rows) ||
                    (p->nredo > 1 && !s->best),
                err, FKM_ERR_OUT_OF_MEMORY,
                "cannot allocate the host buffers of the Lloyd loop (k = %lld)",
                (long long)a->k);
  return FKM_OK;
}

static void write_stats(const fkm_train_args *a, const loop_state *s) {
  if (a->stats) {
    int64_t m = s->nstats < a->stats_capacity ? s->nstats : a->stats_capacity;
    memcpy(a->stats, s->stats, sizeof(fkm_iteration_stats) * (size_t)m);
  }
  if (a->n_stats) *a->n_stats = s->nstats;
}

/* One redo: init, then niter iterations. *obj receives the last objective
 * (0 when niter == 0, as FAISS). */
static fkm_status run_redo(fkm_engine *e, const fkm_train_args *a,
                           const fkm_run *run, loop_state *s, int redo,
                           double t0, double *t_search, float *obj) {
  const fkm_params *p = a->params;
  const fkm_engine_ops *ops = e->ops;
  const int64_t k = a->k;
  fkm_errbuf *err = e->err;
  FKM_FORWARD(fkm_rand_perm_prefix(run->n_train,
                                   p->seed + 1 + (int64_t)redo * 15486557,
                                   k, s->perm, err));
  FKM_FORWARD(ops->init_rows(e, s->perm, run->n_init));
  FKM_FORWARD(ops->post_process(e));
  *obj = 0;
  for (int it = 0; it < p->niter; it++) {
    fkm_iter_result r = {0};
    r.counts = s->counts;
    r.hist = s->hist;
    FKM_FORWARD(ops->iterate(e, &r));
    *t_search += r.assign_seconds;
    *obj = r.obj;
    int64_t npairs = 0;
    FKM_FORWARD(fkm_split_plan(s->counts, k, run->k_frozen, run->n_train,
                               s->pairs, &npairs, err));
    if (npairs > 0) FKM_FORWARD(ops->apply_splits(e, s->pairs, npairs));
    fkm_iteration_stats *st = &s->stats[s->nstats++];
    st->obj = r.obj;
    st->time = now_seconds() - t0;
    st->time_search = *t_search;
    st->imbalance_factor = fkm_imbalance_factor(s->hist, k);
    st->nsplit = (int)npairs;
    st->obj_double = r.obj_double;
    logf_(p, FKM_LOG_INFO,
          "  Iteration %d (%.2f s, search %.2f s): objective=%g imbalance=%.3f nsplit=%d",
          it, st->time, st->time_search, (double)st->obj, st->imbalance_factor,
          st->nsplit);
    FKM_FORWARD(ops->post_process(e));
    if (p->progress && p->progress(p->progress_user, redo, it, st) != 0)
      return fkm_fail(err, FKM_ERR_INTERRUPTED,
                      "interrupted by the progress callback after iteration %d of redo %d",
                      it, redo);
  }
  return FKM_OK;
}

static fkm_status train(fkm_engine *e, const fkm_train_args *a, loop_state *s) {
  const fkm_params *p = a->params;
  const fkm_engine_ops *ops = e->ops;
  fkm_errbuf *err = e->err;
  const int64_t n = a->n, k = a->k, d = a->d;
  fkm_run run = {p, n, d, k, a->dtype, a->x, a->weights, NULL, n, a->n_init,
                 p->frozen_centroids ? a->n_init : 0};

  /* Subsampling: rows perm[0..k*max) in permutation order. */
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
    run.train_rows = NULL;
    run.n_init = 0;
    run.k_frozen = 0;
    FKM_FORWARD(ops->begin(e, &run, a->centroids));
    for (int64_t i = 0; i < k; i++) s->perm[i] = i;
    FKM_FORWARD(ops->init_rows(e, s->perm, 0));
    fkm_iteration_stats one = {0.0f, 0.0, 0.0, 1.0, 0, 0.0};
    s->stats[0] = one;
    s->nstats = 1;
    logf_(p, FKM_LOG_INFO,
          "Number of training points (%lld) same as number of clusters, just copying",
          (long long)k);
    return ops->finish(e, a->centroids, a->labels, a->distances);
  }

  FKM_FORWARD(ops->begin(e, &run, a->centroids));
  logf_(p, FKM_LOG_INFO,
        "Clustering %lld points in %lldD to %lld clusters, redo %d times, %d iterations",
        (long long)run.n_train, (long long)d, (long long)k, p->nredo, p->niter);
  if (a->n_init > 0) FKM_FORWARD(ops->load_initial(e));

  const int l2 = p->metric == FKM_METRIC_L2;
  float best_obj = l2 ? HUGE_VALF : -HUGE_VALF;
  int64_t best_nstats = -1;
  double t0 = now_seconds(), t_search = 0;
  for (int redo = 0; redo < p->nredo; redo++) {
    if (p->nredo > 1) logf_(p, FKM_LOG_INFO, "Outer iteration %d / %d", redo, p->nredo);
    float obj;
    FKM_FORWARD(run_redo(e, a, &run, s, redo, t0, &t_search, &obj));
    if (p->nredo > 1 && (l2 ? obj < best_obj : obj > best_obj)) {
      logf_(p, FKM_LOG_INFO, "Objective improved: keep new clusters");
      FKM_FORWARD(ops->read_centroids(e, s->best));
      best_nstats = s->nstats;
      best_obj = obj;
    }
  }
  if (p->nredo > 1) {
    FKM_RETURN_IF(best_nstats < 0, err, FKM_ERR_NUMERIC,
                  "no redo reached a comparable objective (NaN): the data "
                  "overflows float arithmetic");
    FKM_FORWARD(ops->write_centroids(e, s->best));
    s->nstats = best_nstats;
  }
  return ops->finish(e, a->centroids, a->labels, a->distances);
}

fkm_status fkm_lloyd_train(fkm_engine *e, const fkm_train_args *a) {
  loop_state s = {0};
  fkm_status st = train(e, a, &s);
  if (st == FKM_OK) write_stats(a, &s);
  e->ops->end(e);
  loop_free(&s);
  return st;
}
