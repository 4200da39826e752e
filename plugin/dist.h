/* A distributed run's data (docs/distributed.md): which rows each rank
 * holds, the redistribution that gives every rank a contiguous run of
 * training order, and the rows that cross when all ranks need them. The
 * Lloyd loop (lloyd.c) calls these at the few points where a distributed
 * run differs from one process; every call is collective and agreed: a
 * failure on one rank is every rank's (the least failing rank's status and
 * message). */
#ifndef FKM_DIST_H
#define FKM_DIST_H

#include "comm.h"
#include "lloyd.h"

typedef struct fkm_dist {
  fkm_comm *comm;
  int64_t n;            /* rows of x over all ranks */
  int64_t *first;       /* (size + 1): rank r's rows are first[r] .. first[r + 1] of x */
  int64_t n_train;      /* rows of the training set over all ranks */
  int64_t *train_first; /* (size + 1): rank r holds T[train_first[r] .. train_first[r + 1]) */
  fkm_source src;       /* this rank's rows: its matrix as a source, or its source */
  void *xt;             /* (its run, d) of the dtype: its rows of the training set */
  float *wt;            /* their weights, or NULL */
  float *init;          /* (n_init, d): rank 0's initial centroid rows */
} fkm_dist;

/** Agrees on the run: host memory (e says what is device memory), the same
 *  parameters, shape and dtype on every rank, rank 0's seed (*seed) and
 *  initial centroid rows; counts the rows of x over all ranks and checks
 *  this rank's (x finite where FAISS checks it, weights finite and >= 0)
 *  and the initial rows, naming rows by their index in the whole x. The
 *  engine need not check them again (fkm_dist_training_set checks a
 *  source's rows as they are read). */
fkm_status fkm_dist_begin(fkm_dist *ds, fkm_engine *e, fkm_comm *comm, const fkm_train_args *a,
                          uint64_t *seed, fkm_errbuf *err);

/** The training set T: x's rows rows[i] (rows NULL: row i), i < n_train,
 *  in that order; each rank receives its contiguous run of T (whole BLAS
 *  query blocks when the caller's BLAS computes the search) and its
 *  weights. Rows a source delivers are checked as they are read. */
fkm_status fkm_dist_training_set(fkm_dist *ds, const fkm_train_args *a, const int64_t *rows,
                                 int64_t n_train, fkm_errbuf *err);

/** Training rows T[idx[0 .. count)] as floats on every rank into dst
 *  (count, d). */
fkm_status fkm_dist_rows(fkm_dist *ds, const fkm_train_args *a, const int64_t *idx,
                         int64_t count, float *dst, fkm_errbuf *err);

/** The whole training set as floats on every rank (host seeding). */
fkm_status fkm_dist_all_rows(fkm_dist *ds, const fkm_train_args *a, float *dst,
                             fkm_errbuf *err);

/** Labels and distances of this rank's rows of x to centroids (host, k x d),
 *  on the search path of all n rows; either output may be NULL. */
fkm_status fkm_dist_assign(fkm_dist *ds, fkm_engine *e, const fkm_train_args *a,
                           const float *centroids, int64_t *labels, float *distances);

void fkm_dist_end(fkm_dist *ds);

#endif
