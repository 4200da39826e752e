/* The Lloyd loop, read as the algorithm (faiss::Clustering::train_encoded of
 * FAISS 1.7.3, docs/contract.md section 2):
 *
 *   subsample -> [n_train == k: copy] -> for each redo:
 *     init rows from a permutation, post-process;
 *     for each iteration: assign + objective + update (engine, one host sync),
 *       split empty clusters, stats, post-process, progress callback;
 *       (or, where nothing between iterations needs the host and the engine
 *       can: all iterations on the engine, the splits planned there by the
 *       same rules, kernels/split_plan.h; the stats after the last)
 *     keep the run if its last objective is strictly better.
 *
 * The engine holds the data; only k-sized vectors cross to the host. */
#define _POSIX_C_SOURCE 200809L
#include "lloyd.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dist.h"
#include "init.h"
#include "rng.h"

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
  if (!fkm_split_any_empty(h, kk)) return FKM_OK;
  FKM_RETURN_IF(n_train <= kk, err, FKM_ERR_INVALID_ARG,
                "cannot split empty clusters: %lld training points for %lld "
                "non-frozen centroids (need more points than centroids)",
                (long long)n_train, (long long)kk);
  fkm_mt19937 rng;
  _Static_assert(sizeof(fkm_split_pair) == 2 * sizeof(int64_t) &&
                     offsetof(fkm_split_pair, src) == sizeof(int64_t),
                 "fkm_split_pairs writes (dst, src) int64 pairs");
  int64_t *ij = (int64_t *)pairs;
  *npairs = fkm_split_pairs(h, kk, n_train, &rng, ij);
  for (int64_t i = 0; i < *npairs; i++) {
    pairs[i].dst += k_frozen;
    pairs[i].src += k_frozen;
  }
  return FKM_OK;
}

/* Host-side buffers of one training run (all problems). */
typedef struct loop_state {
  float *counts;          /* (batch, k) */
  int64_t *hist;          /* (batch, k) */
  float *obj;             /* (batch) each problem's last objective of the redo */
  float *obj_iter;        /* (batch) this iteration's objectives */
  double *obj_double;     /* (batch) */
  int64_t *perm;          /* (k) the redo's init permutation */
  int64_t *rows;          /* (k * max_points_per_centroid) subsample rows */
  fkm_split_pair *pairs;  /* (batch, k) */
  int64_t *npairs;        /* (batch) this iteration's splits per problem */
  float *best;            /* (batch, k, d) with nredo > 1 */
  float *cur;             /* (batch, k, d) with nredo > 1: a redo's result */
  float *best_obj;        /* (batch) */
  int64_t *best_nstats;   /* (batch) */
  fkm_iteration_stats *stats; /* (batch, niter * nredo) */
  int64_t nst;            /* stats capacity per problem (grows, stats_reserve) */
  int64_t nst_max;        /* niter * nredo: the most a problem records */
  int64_t *nstats;        /* (batch) stats recorded per problem so far */
  int *active;            /* (batch) still iterating in this redo (early stop) */
  float *stopped;         /* (batch, k, d) centroids of problems that stopped early */
  float *train_host;      /* (batch, n_train, d) for host seeding, or NULL */
  float *cent_host;       /* (batch, k, d) for host seeding, or NULL */
  fkm_dist dist;          /* a distributed run's rows (a->comm) */
  fkm_params rank_params; /* its engine's: the values are checked (dist.h) */
  float *rows_host;       /* (k, d) a distributed run: centroid rows */
} loop_state;

static void loop_free(loop_state *s) {
  free(s->counts);
  free(s->hist);
  free(s->obj);
  free(s->obj_iter);
  free(s->obj_double);
  free(s->perm);
  free(s->rows);
  free(s->pairs);
  free(s->npairs);
  free(s->best);
  free(s->cur);
  free(s->best_obj);
  free(s->best_nstats);
  free(s->stats);
  free(s->nstats);
  free(s->active);
  free(s->stopped);
  free(s->train_host);
  free(s->cent_host);
  free(s->rows_host);
  fkm_dist_end(&s->dist);
}

/* A status every rank of a distributed run returns alike (the least failing
 * rank's, dist.h); one process: s itself. Every engine call whose failure
 * could be one rank's goes through it, so that no rank waits for a rank
 * that has returned. */
static fkm_status agreed(const fkm_train_args *a, fkm_status s, fkm_errbuf *err) {
  return a->comm ? a->comm->ops->agree(a->comm, s, err) : s;
}

static void *alloc_n(int64_t count, size_t size) {
  return malloc(size * (size_t)(count > 0 ? count : 1));
}

/* The statistics grow with the iterations run, not niter * nredo (huge
 * niter with early stopping is a way to say "until converged"). */
#define STATS_FIRST 64
static fkm_status stats_reserve(loop_state *s, int64_t B, int64_t need, fkm_errbuf *err) {
  if (need <= s->nst) return FKM_OK;
  int64_t cap = s->nst > s->nst_max / 2 ? s->nst_max : 2 * s->nst;
  if (cap < need) cap = need;
  const int64_t fit = INT64_MAX / (int64_t)sizeof(fkm_iteration_stats) / (B > 0 ? B : 1);
  fkm_iteration_stats *grown = cap <= fit ? alloc_n(B * cap, sizeof *grown) : NULL;
  FKM_RETURN_IF(!grown, err, FKM_ERR_OUT_OF_MEMORY,
                "cannot allocate the iteration statistics: %lld problems x %lld iterations "
                "of %zu bytes",
                (long long)B, (long long)cap, sizeof *grown);
  for (int64_t b = 0; b < B; b++)
    memcpy(grown + b * cap, s->stats + b * s->nst, sizeof *grown * (size_t)s->nstats[b]);
  free(s->stats);
  s->stats = grown;
  s->nst = cap;
  return FKM_OK;
}

static fkm_status loop_alloc(loop_state *s, const fkm_train_args *a, fkm_errbuf *err) {
  const fkm_params *p = a->params;
  const int64_t B = a->batch, bk = a->batch * a->k, redo = p->nredo > 1;
  s->nst_max = (int64_t)p->niter * p->nredo;
  if (s->nst_max < 1) s->nst_max = 1;
  s->nst = s->nst_max < STATS_FIRST ? s->nst_max : STATS_FIRST;
  s->counts = alloc_n(bk, sizeof(float));
  s->hist = alloc_n(bk, sizeof(int64_t));
  s->obj = alloc_n(B, sizeof(float));
  s->obj_iter = alloc_n(B, sizeof(float));
  s->obj_double = alloc_n(B, sizeof(double));
  s->perm = alloc_n(a->k, sizeof(int64_t));
  s->pairs = alloc_n(bk, sizeof(fkm_split_pair));
  s->npairs = alloc_n(B, sizeof(int64_t));
  s->stats = alloc_n(B * s->nst, sizeof(fkm_iteration_stats));
  s->best_obj = alloc_n(B, sizeof(float));
  s->best_nstats = alloc_n(B, sizeof(int64_t));
  s->nstats = calloc((size_t)B, sizeof(int64_t));
  s->active = alloc_n(B, sizeof(int));
  s->best = redo ? alloc_n(bk * a->d, sizeof(float)) : NULL;
  /* batched problems that stop early keep their centroids on the host */
  const int keep = B > 1 && p->early_stop_threshold >= 0;
  s->cur = redo || keep ? alloc_n(bk * a->d, sizeof(float)) : NULL;
  s->stopped = keep ? alloc_n(bk * a->d, sizeof(float)) : NULL;
  FKM_RETURN_IF(!s->counts || !s->hist || !s->obj || !s->obj_iter || !s->obj_double ||
                    !s->perm || !s->pairs || !s->npairs || !s->stats || !s->best_obj ||
                    !s->best_nstats || !s->nstats || !s->active ||
                    ((redo || keep) && !s->cur) ||
                    (keep && !s->stopped),
                err, FKM_ERR_OUT_OF_MEMORY,
                "cannot allocate the host buffers of the Lloyd loop (batch = %lld, "
                "k = %lld)",
                (long long)B, (long long)a->k);
  return FKM_OK;
}

static void write_stats(const fkm_train_args *a, const loop_state *s) {
  for (int64_t b = 0; b < a->batch; b++) {
    const int64_t have = a->params->nredo > 1 ? s->best_nstats[b] : s->nstats[b];
    if (a->stats) {
      const int64_t m = have < a->stats_capacity ? have : a->stats_capacity;
      memcpy(a->stats + b * a->stats_capacity, s->stats + b * s->nst,
             sizeof(fkm_iteration_stats) * (size_t)m);
    }
    if (a->n_stats) a->n_stats[b] = have;
  }
}

/* FAISS's actual_seed: the seed, or from 1.9 on a clock reading when the
 * (int) seed is negative. Unsigned arithmetic: offsets never overflow. */
static uint64_t actual_seed(const fkm_params *p, const fkm_arith *ar) {
  if (ar->seed_clock && (int32_t)(uint32_t)p->seed < 0) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
  }
  return (uint64_t)p->seed;
}

/* Rows [n_init, k) of every problem from k-means++ / AFK-MC^2 over its
 * training set (FAISS's ClusteringInitialization, on the host); rows
 * [0, n_init) are the existing centroids it seeds around. */
static fkm_status seed_on_host(fkm_engine *e, const fkm_train_args *a, const fkm_run *run,
                               loop_state *s, uint64_t seed) {
  const int64_t B = a->batch, k = a->k, d = a->d, nt = run->train_total, n_in = run->n_init;
  fkm_errbuf *err = e->err;
  if (!s->train_host) {
    s->train_host = alloc_n(B * nt * d, sizeof(float));
    s->cent_host = alloc_n(B * k * d, sizeof(float));
    FKM_FORWARD(agreed(a,
                       !s->train_host || !s->cent_host
                           ? fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                                      "cannot allocate a host copy of the training set (%lld "
                                      "x %lld) for seeding",
                                      (long long)(B * nt), (long long)d)
                           : FKM_OK,
                       err));
    /* a distributed run's training set crosses to every rank once */
    FKM_FORWARD(a->comm ? fkm_dist_all_rows(&s->dist, a, s->train_host, err)
                        : e->ops->read_train(e, s->train_host));
  }
  FKM_FORWARD(e->ops->read_centroids(e, s->cent_host));
  for (int64_t b = 0; b < B; b++) {
    float *cent = s->cent_host + b * k * d;
    const fkm_init_args ia = {s->train_host + b * nt * d, nt, d, k - n_in, cent + n_in * d,
                              n_in > 0 ? cent : NULL, n_in, seed,
                              a->params->afkmc2_chain_length};
    FKM_FORWARD(fkm_init_centroids(run->arith, a->params->init_method, &ia, err));
  }
  return e->ops->write_centroids(e, s->cent_host);
}

/* Rows [n_init, k) of the centroids := the training rows s->perm[i]: the
 * engine's own rows, or in a distributed run the ranks' that hold them. */
static fkm_status init_rows(fkm_engine *e, const fkm_train_args *a, const fkm_run *run,
                            loop_state *s) {
  const int64_t k = a->k, d = a->d, from = run->n_init;
  if (!a->comm) return e->ops->init_rows(e, s->perm, from);
  FKM_FORWARD(e->ops->read_centroids(e, s->rows_host));
  FKM_FORWARD(fkm_dist_rows(&s->dist, a, s->perm + from, k - from, s->rows_host + from * d,
                            e->err));
  return e->ops->write_centroids(e, s->rows_host);
}

/* FAISS 1.14.2+'s early stop, in its float arithmetic: the relative change
 * of the objective from the previous iteration. */
static int stops_early(const fkm_params *p, float prev, float obj) {
  if (prev == 0) return 0; /* change = DBL_MAX */
  const float change = fabsf(prev - obj) / fabsf(prev);
  return (double)change <= p->early_stop_threshold;
}

/* Problems that stopped early keep the centroids they stopped with: the
 * engine iterated them along with the others; put theirs back. */
static fkm_status restore_stopped(fkm_engine *e, const fkm_train_args *a, loop_state *s) {
  const size_t kd = (size_t)(a->k * a->d);
  int any = 0;
  for (int64_t b = 0; b < a->batch; b++) any |= !s->active[b];
  if (!any || a->batch == 1) return FKM_OK;
  FKM_FORWARD(e->ops->read_centroids(e, s->cur));
  for (int64_t b = 0; b < a->batch; b++)
    if (!s->active[b])
      memcpy(s->cur + (size_t)b * kd, s->stopped + (size_t)b * kd, sizeof(float) * kd);
  return e->ops->write_centroids(e, s->cur);
}

/* Iteration it's statistics of every active problem (objectives obj_it and
 * obj_double, label counts hist (batch, k), splits npairs), recorded and
 * logged as FAISS does; t, t_search: the times at its end. */
static fkm_status record_iteration(const fkm_params *p, loop_state *s, int64_t B, int64_t k,
                                   int it, double t, double t_search, const float *obj_it,
                                   const double *obj_double, const int64_t *hist,
                                   const int64_t *npairs, fkm_errbuf *err) {
  for (int64_t b = 0; b < B; b++) {
    if (!s->active[b]) continue;
    FKM_FORWARD(stats_reserve(s, B, s->nstats[b] + 1, err));
    s->obj[b] = obj_it[b];
    fkm_iteration_stats *st = &s->stats[b * s->nst + s->nstats[b]];
    st->obj = obj_it[b];
    st->time = t;
    st->time_search = t_search;
    st->imbalance_factor = fkm_imbalance_factor(hist + b * k, k);
    st->nsplit = (int)npairs[b];
    st->obj_double = obj_double[b];
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
    s->nstats[b]++;
  }
  return FKM_OK;
}

/* Whether a redo's iterations run on the engine alone (iterate_loop):
 * nothing between two iterations needs the host (no progress callback, no
 * early stop, one process, splits that cannot fail) and the engine can. */
static int loop_on_device(fkm_engine *e, const fkm_train_args *a, const fkm_run *run,
                          int early) {
  const fkm_params *p = a->params;
  return e->ops->iterate_loop && !p->progress && !early && !a->comm && p->niter > 0 &&
         run->train_total > a->k - run->k_frozen && e->ops->loop_fits(e, p->niter);
}

/* A redo's iterations on the engine alone: the statistics and logs of
 * record_iteration, after the last; the times from the device's clock
 * (docs/cuda-engine.md, "The loop on the device"). */
static fkm_status iterate_on_device(fkm_engine *e, const fkm_train_args *a, loop_state *s,
                                    double t0, double *t_search) {
  const fkm_params *p = a->params;
  const int64_t B = a->batch, k = a->k, n = p->niter;
  fkm_errbuf *err = e->err;
  /* sizes the engine's records bound (loop_fits) */
  fkm_loop_result r = {.obj = alloc_n(n * B, sizeof(float)),
                       .obj_double = alloc_n(n * B, sizeof(double)),
                       .hist = alloc_n(n * B * k, sizeof(int64_t)),
                       .nsplit = alloc_n(n * B, sizeof(int64_t)),
                       .time = alloc_n(n, sizeof(double)),
                       .time_search = alloc_n(n, sizeof(double))};
  fkm_status st = FKM_OK;
  if (!r.obj || !r.obj_double || !r.hist || !r.nsplit || !r.time || !r.time_search)
    st = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                  "cannot allocate the records of %lld iterations of %lld problems (k = %lld)",
                  (long long)n, (long long)B, (long long)k);
  const double t_start = fkm_now_seconds() - t0;
  if (st == FKM_OK) st = e->ops->iterate_loop(e, p->niter, &r);
  for (int it = 0; it < p->niter && st == FKM_OK; it++) {
    *t_search += r.time_search[it];
    st = record_iteration(p, s, B, k, it, t_start + r.time[it], *t_search, r.obj + it * B,
                          r.obj_double + it * B, r.hist + it * B * k, r.nsplit + it * B, err);
  }
  free(r.obj);
  free(r.obj_double);
  free(r.hist);
  free(r.nsplit);
  free(r.time);
  free(r.time_search);
  return st;
}

/* One redo of every problem: init, then niter iterations (fewer for a
 * problem that stops early). s->obj receives each problem's last objective
 * (0 when niter == 0, as FAISS). */
static fkm_status run_redo(fkm_engine *e, const fkm_train_args *a,
                           const fkm_run *run, loop_state *s, int redo,
                           uint64_t seed, double t0, double *t_search) {
  const fkm_params *p = a->params;
  const fkm_engine_ops *ops = e->ops;
  const int64_t k = a->k, B = a->batch;
  fkm_errbuf *err = e->err;
  const uint64_t rseed = seed + 1 + (uint64_t)redo * 15486557u;
  if (p->init_method == FKM_INIT_RANDOM || run->n_init >= k) {
    FKM_FORWARD(fkm_rand_perm_prefix(run->train_total, (int64_t)(rseed & 0xffffffffu), k,
                                     s->perm, err));
    FKM_FORWARD(init_rows(e, a, run, s));
  } else {
    FKM_FORWARD(seed_on_host(e, a, run, s, rseed));
  }
  FKM_FORWARD(ops->post_process(e));
  const int early = run->arith->early_stop && p->early_stop_threshold >= 0;
  int nactive = (int)B;
  for (int64_t b = 0; b < B; b++) {
    s->obj[b] = 0;
    s->active[b] = 1;
  }
  if (loop_on_device(e, a, run, early)) return iterate_on_device(e, a, s, t0, t_search);
  float *obj_it = s->obj_iter;
  for (int it = 0; it < p->niter && nactive > 0; it++) {
    fkm_iter_result r = {obj_it, s->obj_double, s->counts, s->hist, 0.0};
    FKM_FORWARD(ops->iterate(e, &r));
    *t_search += r.assign_seconds;
    const double t = fkm_now_seconds() - t0;
    /* every problem's splits, then one engine call applies them all */
    int64_t total = 0;
    for (int64_t b = 0; b < B; b++) {
      fkm_split_pair *pb = s->pairs + total;
      FKM_FORWARD(fkm_split_plan(s->counts + b * k, k, run->k_frozen, run->train_total, pb,
                                 &s->npairs[b], err));
      for (int64_t i = 0; i < s->npairs[b]; i++) {
        pb[i].dst += b * k;
        pb[i].src += b * k;
      }
      total += s->npairs[b];
    }
    FKM_FORWARD(record_iteration(p, s, B, k, it, t, *t_search, obj_it, s->obj_double, s->hist,
                                 s->npairs, err));
    if (total > 0) FKM_FORWARD(ops->apply_splits(e, s->pairs, total));
    FKM_FORWARD(ops->post_process(e));
    fkm_status stop = FKM_OK; /* a distributed run stops on every rank */
    for (int64_t b = 0; b < B && p->progress && stop == FKM_OK; b++)
      if (s->active[b] &&
          p->progress(p->progress_user, redo, it, &s->stats[b * s->nst + s->nstats[b] - 1]) != 0)
        stop = fkm_fail(err, FKM_ERR_INTERRUPTED,
                        "interrupted by the progress callback%s after iteration %d of redo %d",
                        a->comm ? " of one rank" : "", it, redo);
    FKM_FORWARD(agreed(a, stop, err));
    if (!early || it == 0) continue;
    int stopping = 0;
    for (int64_t b = 0; b < B; b++) {
      const fkm_iteration_stats *hs = &s->stats[b * s->nst + s->nstats[b] - 2];
      if (s->active[b] && stops_early(p, hs[0].obj, hs[1].obj)) {
        s->active[b] = -1; /* stops now */
        stopping = 1;
      }
    }
    if (!stopping) continue;
    if (B > 1) FKM_FORWARD(ops->read_centroids(e, s->cur));
    for (int64_t b = 0; b < B; b++) {
      if (s->active[b] >= 0) continue;
      s->active[b] = 0;
      nactive--;
      if (B > 1) {
        const size_t kd = (size_t)(k * a->d);
        memcpy(s->stopped + (size_t)b * kd, s->cur + (size_t)b * kd, sizeof(float) * kd);
      }
      if (B > 1)
        logf_(p, FKM_LOG_INFO, "  Problem %lld converged at iteration %d: objective did not change",
              (long long)b, it);
      else
        logf_(p, FKM_LOG_INFO, "  Converged at iteration %d: objective did not change", it);
    }
  }
  return restore_stopped(e, a, s);
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
    s->best_nstats[b] = s->nstats[b];
    s->best_obj[b] = obj;
  }
  return FKM_OK;
}

/* Which parameters the profile's FAISS has: a run never silently ignores
 * one (docs/profiles.md). */
static fkm_status check_features(const fkm_params *p, const fkm_arith *ar, fkm_errbuf *err) {
  char name[64];
  fkm_profile_name(&p->profile, name, sizeof name);
  FKM_RETURN_IF(p->init_method != FKM_INIT_RANDOM && !ar->init_methods, err,
                FKM_ERR_INVALID_ARG,
                "params->init_method = %d: k-means++ and AFK-MC^2 exist from FAISS 1.14 "
                "on; the profile is %s",
                (int)p->init_method, name);
  FKM_RETURN_IF(p->early_stop_threshold >= 0 && !ar->early_stop, err, FKM_ERR_INVALID_ARG,
                "params->early_stop_threshold = %g: early stopping exists from FAISS "
                "1.14.2 on; the profile is %s (set it below 0)",
                p->early_stop_threshold, name);
  FKM_RETURN_IF(p->use_faster_subsampling && !ar->faster_subsampling, err,
                FKM_ERR_INVALID_ARG,
                "params->use_faster_subsampling: exists from FAISS 1.9 on; the profile is %s",
                name);
  return FKM_OK;
}

/* The k * max_points_per_centroid training rows, in FAISS's order. */
static fkm_status subsample(const fkm_params *p, const fkm_arith *ar, int64_t n, int64_t m,
                            uint64_t seed, int64_t *rows, fkm_errbuf *err) {
  if (!p->use_faster_subsampling) {
    FKM_RETURN_IF(n > INT32_MAX, err, FKM_ERR_UNSUPPORTED,
                  "n = %lld: subsampling follows faiss::rand_perm, whose permutation is "
                  "int (n <= 2^31 - 1; use_faster_subsampling has no such limit)",
                  (long long)n);
    return fkm_rand_perm_prefix(n, (int64_t)(seed & 0xffffffffu), m, rows, err);
  }
  FKM_RETURN_IF(ar->faster_subsampling == 1 && n > INT32_MAX, err, FKM_ERR_UNSUPPORTED,
                "n = %lld: FAISS before 1.14.2 draws faster subsampling rows as int",
                (long long)n);
  uint64_t state = seed; /* SplitMix64RandomGenerator */
  for (int64_t i = 0; i < m; i++) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    rows[i] = ar->faster_subsampling == 1 ? (int64_t)(z % (uint64_t)n)
                                          : (int64_t)((z & 0x7fffffffffffffffull) % (uint64_t)n);
  }
  return FKM_OK;
}

/* Rows kept in the memo at most (64 MiB of them). */
#define FKM_ROWS_MEMO_MAX ((int64_t)1 << 23)

void fkm_engine_forget_rows(fkm_engine *e) {
  free(e->memo.rows);
  memset(&e->memo, 0, sizeof e->memo);
}

/* The m training rows of a subsampled run: the engine's memo when it holds
 * the same rand_perm prefix (n, seed, m), else drawn into a new list that
 * the memo then keeps (faster subsampling, a pass of SplitMix64, is drawn
 * each time, into s->rows). */
static fkm_status training_subset(fkm_engine *e, const fkm_params *p, const fkm_arith *ar,
                                  int64_t n, int64_t m, uint64_t seed, loop_state *s,
                                  const int64_t **rows, fkm_errbuf *err) {
  fkm_rows_memo *mm = &e->memo;
  const int memo = !p->use_faster_subsampling && m <= FKM_ROWS_MEMO_MAX;
  if (memo && mm->rows && mm->n == n && mm->m == m && mm->seed == seed) {
    *rows = mm->rows;
    return FKM_OK;
  }
  int64_t *drawn = alloc_n(m, sizeof(int64_t));
  FKM_RETURN_IF(!drawn, err, FKM_ERR_OUT_OF_MEMORY,
                "cannot allocate the %lld training rows of the subsample", (long long)m);
  const fkm_status st = subsample(p, ar, n, m, seed, drawn, err);
  if (st != FKM_OK) {
    free(drawn);
    return st;
  }
  if (memo) {
    fkm_engine_forget_rows(e);
    *mm = (fkm_rows_memo){n, m, seed, drawn};
    e->memo_draws++;
  } else {
    s->rows = drawn; /* freed with the loop's buffers */
  }
  *rows = drawn;
  return FKM_OK;
}

fkm_status fkm_training_rows(const fkm_params *p, int64_t n, int64_t k, int64_t *rows,
                             int64_t *n_train, fkm_errbuf *err) {
  fkm_arith arith;
  FKM_FORWARD(fkm_arith_of(&p->profile, &arith, err));
  FKM_FORWARD(check_features(p, &arith, err));
  const int64_t max_train = k * (int64_t)p->max_points_per_centroid;
  *n_train = n > max_train ? max_train : n;
  if (n <= max_train || !rows) return FKM_OK;
  return subsample(p, &arith, n, max_train, actual_seed(p, &arith), rows, err);
}

/* A distributed run: the engine holds this rank's run of the training set
 * (dist.h), on the search path of the whole training set. */
static void rank_run(fkm_run *run, const fkm_train_args *a, const fkm_dist *ds) {
  const int me = a->comm->rank;
  run->x = ds->xt;
  run->weights = ds->wt;
  run->source = NULL;
  run->train_rows = NULL;
  run->rows_generation = 0;
  run->n = run->n_train = ds->train_first[me + 1] - ds->train_first[me];
  run->comm = a->comm;
  run->train_first = ds->train_first[me];
  run->train_total = ds->n_train;
}

/* Begins the engine's run over rows (NULL: x in order) of x, n_train of
 * them; a distributed run first gives each rank its run of them. */
static fkm_status begin(fkm_engine *e, const fkm_train_args *a, fkm_run *run, loop_state *s,
                        const int64_t *rows, int64_t n_train) {
  run->train_rows = rows;
  /* the memo's rows name their generation (an engine may keep a copy) */
  run->rows_generation = rows && rows == e->memo.rows ? e->memo_draws : 0;
  run->n_train = run->train_total = n_train;
  if (!a->comm) return e->ops->begin(e, run, a->centroids);
  FKM_FORWARD(fkm_dist_training_set(&s->dist, a, rows, n_train, e->err));
  rank_run(run, a, &s->dist);
  s->rank_params = *a->params;
  s->rank_params.check_finite = 0; /* fkm_dist_begin and the exchange checked every value */
  run->params = &s->rank_params;
  s->rows_host = alloc_n(a->k * a->d, sizeof(float));
  FKM_FORWARD(agreed(a,
                     s->rows_host ? FKM_OK
                                  : fkm_fail(e->err, FKM_ERR_OUT_OF_MEMORY,
                                             "cannot allocate %lld centroid rows",
                                             (long long)a->k),
                     e->err));
  return agreed(a, e->ops->begin(e, run, s->dist.init), e->err);
}

/* The outputs: the engine writes them; in a distributed run the centroids
 * wait in s->rows_host until every rank has its labels (finish_ranks). */
static fkm_status finish(fkm_engine *e, const fkm_train_args *a, loop_state *s) {
  if (!a->comm) return e->ops->finish(e, a->centroids, a->labels, a->distances);
  return agreed(a, e->ops->finish(e, s->rows_host, NULL, NULL), e->err);
}

/* After the engine's run: each rank's labels and distances of its rows of
 * x, then (everyone having succeeded) the centroids. */
static fkm_status finish_ranks(fkm_engine *e, const fkm_train_args *a, loop_state *s) {
  FKM_FORWARD(fkm_dist_assign(&s->dist, e, a, s->rows_host, a->labels, a->distances));
  memcpy(a->centroids, s->rows_host, sizeof(float) * (size_t)(a->k * a->d));
  return FKM_OK;
}

static fkm_status train(fkm_engine *e, const fkm_train_args *a, loop_state *s) {
  const fkm_params *p = a->params;
  const fkm_engine_ops *ops = e->ops;
  fkm_errbuf *err = e->err;
  const int64_t k = a->k, d = a->d, B = a->batch;
  fkm_arith arith;
  FKM_FORWARD(fkm_arith_of(&p->profile, &arith, err));
  FKM_FORWARD(check_features(p, &arith, err));
  uint64_t seed = actual_seed(p, &arith);
  if (a->comm) FKM_FORWARD(fkm_dist_begin(&s->dist, e, a->comm, a, &seed, err));
  const int64_t n = a->comm ? s->dist.n : a->n; /* x's rows over all ranks */
  fkm_run run = {.params = p,
                 .batch = B,
                 .n = n,
                 .d = d,
                 .k = k,
                 .dtype = a->dtype,
                 .x = a->x,
                 .weights = a->weights,
                 .source = a->source,
                 .train_rows = NULL,
                 .n_train = n,
                 .n_init = a->n_init,
                 .k_frozen = p->frozen_centroids ? a->n_init : 0,
                 .arith = &arith,
                 .comm = NULL,
                 .train_first = 0,
                 .train_total = n};

  /* Subsampling: rows perm[0..k*max) in permutation order, the same rows of
   * every problem (the permutation depends on n and the seed only). */
  const int64_t max_train = k * (int64_t)p->max_points_per_centroid;
  const int subsample_it = n > max_train;
  const int64_t n_train = subsample_it ? max_train : n;
  FKM_FORWARD(loop_alloc(s, a, err));
  const int64_t *rows = NULL;
  if (subsample_it) {
    logf_(p, FKM_LOG_INFO, "Sampling a subset of %lld / %lld for training",
          (long long)max_train, (long long)n);
    FKM_FORWARD(training_subset(e, p, &arith, n, max_train, seed, s, &rows, err));
  } else if (n < k * (int64_t)p->min_points_per_centroid) {
    logf_(p, FKM_LOG_WARNING,
          "clustering %lld points to %lld centroids: please provide at "
          "least %lld training points",
          (long long)n, (long long)k, (long long)(k * p->min_points_per_centroid));
  }

  if (n_train == k) {
    /* FAISS copies the first k rows of its input (x_in, not the subsample)
     * and reports one iteration {0, 0, 0, 1, 0}; nothing is post-processed. */
    for (int64_t i = 0; i < k; i++) s->perm[i] = i;
    run.n_init = 0;
    run.k_frozen = 0;
    FKM_FORWARD(begin(e, a, &run, s, s->perm, k)); /* rows 0..k-1 of each problem */
    FKM_FORWARD(init_rows(e, a, &run, s));
    fkm_iteration_stats one = {0.0f, 0.0, 0.0, 1.0, 0, 0.0};
    for (int64_t b = 0; b < B; b++) {
      s->stats[b * s->nst] = one;
      s->nstats[b] = 1;
      s->best_nstats[b] = 1;
    }
    logf_(p, FKM_LOG_INFO,
          "Number of training points (%lld) same as number of clusters, just copying",
          (long long)k);
    return finish(e, a, s);
  }

  const double t_begin = fkm_now_seconds();
  FKM_FORWARD(begin(e, a, &run, s, rows, n_train));
  logf_(p, FKM_LOG_INFO,
        "Clustering %lld points in %lldD to %lld clusters, redo %d times, %d iterations",
        (long long)run.train_total, (long long)d, (long long)k, p->nredo, p->niter);
  if (B > 1) logf_(p, FKM_LOG_INFO, "%lld problems trained together", (long long)B);
  if (a->n_init > 0) FKM_FORWARD(ops->load_initial(e));

  const int l2 = p->metric == FKM_METRIC_L2;
  for (int64_t b = 0; b < B; b++) {
    s->best_nstats[b] = -1;
    s->best_obj[b] = l2 ? HUGE_VALF : -HUGE_VALF;
  }
  double t0 = fkm_now_seconds(), t_search = 0;
  for (int redo = 0; redo < p->nredo; redo++) {
    if (p->nredo > 1) logf_(p, FKM_LOG_INFO, "Outer iteration %d / %d", redo, p->nredo);
    FKM_FORWARD(run_redo(e, a, &run, s, redo, seed, t0, &t_search));
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
  const double t_finish = fkm_now_seconds();
  FKM_FORWARD(finish(e, a, s));
  /* where a call's time went: the per-call work around the iterations */
  logf_(p, FKM_LOG_INFO, "Call phases (ms): begin %.3f, iterations %.3f, outputs %.3f",
        1e3 * (t0 - t_begin), 1e3 * (t_finish - t0), 1e3 * (fkm_now_seconds() - t_finish));
  return FKM_OK;
}

fkm_status fkm_lloyd_train(fkm_engine *e, const fkm_train_args *a) {
  loop_state s = {0};
  fkm_status st = a->batch > 0 ? train(e, a, &s) : FKM_OK;
  if (a->batch > 0) e->ops->end(e);
  if (st == FKM_OK && a->comm) st = finish_ranks(e, a, &s);
  if (st == FKM_OK && a->batch > 0) write_stats(a, &s);
  loop_free(&s);
  return st;
}
