/* The update's float chains on the host (docs/contract.md section 5): the
 * rows grouped by label (stably), each centroid's float sums and count
 * continued over its rows in training order, the scaling. The CPU engine's
 * update (in core and streamed) and a rank of a distributed run on either
 * engine (docs/distributed.md) take these same steps, so their bits are
 * one process's. */
#ifndef FKM_CHAINS_H
#define FKM_CHAINS_H

#include "engine.h"

typedef struct fkm_chains {
  int64_t d, k, k_frozen;
  int weighted_fma;  /* the profile's weighted term: fmaf(x, w, sum) */
  int64_t *order;    /* (rows) the rows grouped by label */
  int64_t *offsets;  /* (k + 1) centroid i's rows: order[offsets[i] .. offsets[i + 1]) */
  int64_t *cursor;   /* (k) */
} fkm_chains;

/* Groups rows 0 .. m - 1 by their labels, stably (a counting sort); hist
 * (k), when not NULL, receives each label's count. */
void fkm_chains_group(fkm_chains *ch, const int64_t *labels, int64_t m, int64_t *hist);

/* The objective's float and double chains (docs/contract.md section 4)
 * continued over n distances in order. */
void fkm_chains_objective(const float *dist, int64_t n, float *f, double *dd);

/* Centroid ci's chains continued over its grouped rows of x (weights w or
 * NULL): sum[j] += x[j] (or the weighted term) in row order; returns the
 * count continued from count. */
float fkm_chains_add(const fkm_chains *ch, int64_t ci, float *sum, float count, const float *x,
                     const float *w);

/* The update's ending over whole chains: centroid kf + i's d sums at
 * sums + i * stride and its count at counts[i * cstride] give its row of
 * cent (sums times 1 / count; an empty cluster's row is its zero sums);
 * out_counts (k) receives the counts, 0 for the frozen rows. */
void fkm_chains_scale(const fkm_chains *ch, const float *sums, int64_t stride,
                      const float *counts, int64_t cstride, float *cent, float *out_counts);

/* A rank's own work in fkm_chains_ranked, on its engine (the host's
 * below, or a GPU's): both continue chains over this rank's rows in
 * training order, in place. */
typedef struct fkm_rank_steps {
  void *self;
  /* the objective's float and double chains over the rank's distances */
  fkm_status (*objective)(void *self, float *f, double *dd, fkm_errbuf *err);
  /* moving centroids c0 .. c1 (kf + c0 ..): part holds c1 - c0 rows of d + 1
   * floats, each centroid's d sums and its count */
  fkm_status (*slice)(void *self, int64_t c0, int64_t c1, float *part, fkm_errbuf *err);
} fkm_rank_steps;

/* A rank's part of an iteration after its assignment (every rank agreed
 * that it succeeded): out->hist holds this rank's label counts, summed
 * over ranks here; then the objective's float and double chains and every
 * centroid's chains continued from the ranks before it in training order
 * (steps: this rank's share; a pipeline of slices of centroids), then the
 * last rank's whole chains broadcast and scaled on every rank into cent.
 * ch: d, k and k_frozen. msg: k (d + 1) + 4 floats. out: obj, obj_double,
 * counts, hist. */
fkm_status fkm_chains_ranked(const fkm_chains *ch, const fkm_rank_steps *steps, fkm_comm *comm,
                             float *msg, float *cent, fkm_iter_result *out, fkm_errbuf *err);

/* The host's steps over a rank's n rows: x (n, d) float, w (n) or NULL,
 * dist (n), grouped by ch (fkm_chains_group). */
typedef struct fkm_chains_host {
  const fkm_chains *ch;
  const float *x, *w, *dist;
  int64_t n;
} fkm_chains_host;
fkm_rank_steps fkm_chains_host_steps(fkm_chains_host *h);

/* The relay's slices of kk moving centroids over P ranks (slice g is
 * centroids kk g / slices .. kk (g + 1) / slices). */
int64_t fkm_chains_slices(int P, int64_t kk);

/* Floats of fkm_chains_ranked's msg. */
static inline int64_t fkm_chains_msg_floats(int64_t k, int64_t d) { return k * (d + 1) + 4; }

#endif
