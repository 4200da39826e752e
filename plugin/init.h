/* k-means++ and AFK-MC^2 seeding (FAISS 1.14's ClusteringInitialization),
 * on the host. */
#ifndef FKM_INIT_H
#define FKM_INIT_H

#include <stdint.h>

#include "arith.h"
#include "status.h"

typedef struct fkm_init_args {
  const float *x;      /* (n, d) training set, host */
  int64_t n, d;
  int64_t k;           /* centroids to choose (k_to_init) */
  float *out;          /* (k, d) the chosen rows */
  const float *exist;  /* (n_exist, d) centroids given by the caller, or NULL */
  int64_t n_exist;
  uint64_t seed;       /* actual_seed + 1 + redo * 15486557 */
  int chain_length;    /* AFK-MC^2 */
} fkm_init_args;

/** Choose s->k rows of s->x into s->out as FAISS's ClusteringInitialization
 *  with that method does (FKM_INIT_KMEANS_PLUS_PLUS, FKM_INIT_AFK_MC2). */
fkm_status fkm_init_centroids(const fkm_arith *a, fkm_init_method method,
                              const fkm_init_args *s, fkm_errbuf *err);

#endif
