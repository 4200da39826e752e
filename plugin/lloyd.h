/* The Lloyd loop: faiss::Clustering::train, over any engine. */
#ifndef FKM_LLOYD_H
#define FKM_LLOYD_H

#include "engine.h"

/** Arguments of one training run, as fkm_train() or fkm_train_batched()
 *  received them (validated): batch problems of the same shape stored back
 *  to back (x (batch, n, d), weights (batch, n), centroids (batch, k, d),
 *  labels and distances (batch, n), stats (batch, stats_capacity), n_stats
 *  (batch)); fkm_train is batch 1. */
typedef struct fkm_train_args {
  const fkm_params *params;
  int64_t batch;
  int64_t n, d, k;
  fkm_dtype dtype;
  const void *x;              /* or NULL with a source */
  const fkm_source *source;   /* batch 1: the rows, when x is NULL */
  const float *weights;
  float *centroids;
  int64_t n_init;
  int64_t *labels;
  float *distances;
  fkm_iteration_stats *stats;
  int64_t stats_capacity;
  int64_t *n_stats;
  /* A distributed run (docs/distributed.md): this rank's x (or source) is
   * rows of the whole x, in rank order; NULL: one process. */
  fkm_comm *comm;
} fkm_train_args;

/** Trains every problem of a, in lockstep (one engine iteration runs an
 *  iteration of all problems); each problem's outputs are the bits of a run
 *  of that problem alone. Outputs are written only on success. */
fkm_status fkm_lloyd_train(fkm_engine *e, const fkm_train_args *a);

/** fkm_train_rows (include/flashkm.h) on validated params: the training set
 *  the loop above subsamples, by the same code. */
fkm_status fkm_training_rows(const fkm_params *p, int64_t n, int64_t k, int64_t *rows,
                             int64_t *n_train, fkm_errbuf *err);

/** docs/contract.md section 6: choose the split pairs from the counts after an update.
 *  counts (k) is updated as FAISS updates hassign. Returns the number of
 *  pairs written to pairs (capacity k). */
fkm_status fkm_split_plan(float *counts, int64_t k, int64_t k_frozen,
                          int64_t n_train, fkm_split_pair *pairs,
                          int64_t *npairs, fkm_errbuf *err);

/** k * sum(h^2) / (sum h)^2 in double, in FAISS's order. */
double fkm_imbalance_factor(const int64_t *hist, int64_t k);

#endif
