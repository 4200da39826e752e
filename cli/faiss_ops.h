/* The few FAISS C++ calls the CLI needs, behind extern "C" functions that
 * catch every exception. Each returns 0, or -1 with FAISS's message in msg
 * (FKM_CLI_MSG_LEN bytes). Indexes are faiss::Index*, passed as void*. */
#ifndef FKM_CLI_FAISS_OPS_H
#define FKM_CLI_FAISS_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** "MAJOR.MINOR.PATCH" of the FAISS headers the CLI was built with. */
const char *fkm_fx_version(void);

/** faiss::index_factory(d, desc, metric). */
int fkm_fx_index_factory(int64_t d, const char *desc, fkm_metric metric, void **out, char *msg);
void fkm_fx_index_free(void *index);
/** Stock FAISS training: index->train(n, x). */
int fkm_fx_train(void *index, int64_t n, const float *x, char *msg);
int fkm_fx_add(void *index, int64_t n, const float *x, char *msg);
/** nprobe of the IVF level (no-op for indexes without one). */
int fkm_fx_set_nprobe(void *index, int nprobe, char *msg);
/** index->search(nq, q, topk, D, I). */
int fkm_fx_search(void *index, int64_t nq, const float *q, int64_t topk, float *D, int64_t *I,
                  char *msg);
/** faiss::write_index to path (the caller makes it atomic). */
int fkm_fx_write(void *index, const char *path, char *msg);
/** Serialised bytes of the index (write_index into memory); *buf is
 *  malloc'd, the caller frees it. */
int fkm_fx_serialize(void *index, unsigned char **buf, size_t *len, char *msg);
/** The IVF coarse centroids (nlist, d), malloc'd into *out. */
int fkm_fx_coarse_centroids(void *index, int64_t *nlist, int64_t *d, float **out, char *msg);

/** The clustering parameters FAISS uses to train the IVF level of index
 *  (ivf->cp, the quantizer's metric, spherical for inner product) into *p
 *  (initialised by the caller), nlist, and whether index is the IVF itself
 *  (*direct = 1) rather than a chain around it. */
int fkm_fx_ivf_params(void *index, fkm_params *p, int64_t *nlist, int *direct, char *msg);

/** Stock faiss::Clustering::train with params (niter, nredo, seed, ...),
 *  on an IndexFlatL2 or IndexFlatIP by params->metric. centroids: (k, d), its
 *  first n_init rows are the initial centroids; receives the result. stats as
 *  in fkm_train (only obj, time, time_search, imbalance_factor, nsplit). */
int fkm_fx_clustering(const fkm_params *params, int64_t n, int64_t d, int64_t k,
                      const float *x, const float *weights, float *centroids, int64_t n_init,
                      fkm_iteration_stats *stats, int64_t stats_capacity, int64_t *n_stats,
                      char *msg);

/** Exact search with FAISS's flat index (IndexFlatL2 / IndexFlatIP): the topk
 *  nearest of nb base rows for each of nq queries. */
int fkm_fx_knn(fkm_metric metric, int64_t d, int64_t nb, const float *base, int64_t nq,
               const float *q, int64_t topk, float *D, int64_t *I, char *msg);

#ifdef __cplusplus
}
#endif

#endif
