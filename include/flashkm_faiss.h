/*
 * flashkm's FAISS bridge: C entry points, present only in builds with FAISS
 * (library flashkm_faiss). C++ users can also use flashkm::Clustering from
 * faiss_shim/flashkm_clustering.h, a drop-in faiss::Clustering.
 *
 * Every function catches FAISS's exceptions and returns FKM_ERR_FAISS with
 * FAISS's message in fkm_ctx_last_error(); nothing throws across this header.
 */
#ifndef FLASHKM_FAISS_H
#define FLASHKM_FAISS_H

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Train a FAISS index whose coarse level is IVF, with flashkm's k-means.
 *
 *  index   a faiss::Index* (the C API's FaissIndex* is the same pointer):
 *          an IndexIVF (any subclass), or an IndexPreTransform chain ending in
 *          one. Other indexes return FKM_ERR_INVALID_ARG.
 *  n, x    (n, index->d) float, host memory.
 *
 *  Trains the pre-transforms as FAISS would, runs flashkm k-means with the
 *  IVF's own clustering parameters (ivf->cp: niter 10, spherical for inner
 *  product), stores the centroids in the coarse quantizer (so FAISS skips its
 *  own k-means), then calls the index's train() for the rest (PQ, SQ,
 *  residuals). The result equals index->train(n, x) with stock FAISS
 *  (parity level P3 of SPEC.md). Blocks. */
FKM_API fkm_status fkm_faiss_train_index(fkm_ctx *ctx, void *index, int64_t n,
                                         const float *x);

/** faiss::Clustering::train(n, x, *index, weights) with flashkm.
 *
 *  params     clustering parameters (metric is taken from index when index is
 *             not NULL, else from params).
 *  index      a faiss::Index* that receives the k centroids (reset first, as
 *             FAISS does), or NULL.
 *  centroids  (k, d) float host, in/out: first n_init rows are initial
 *             centroids; receives the trained ones.
 *  stats      as in fkm_train. */
FKM_API fkm_status fkm_faiss_clustering_train(
    fkm_ctx *ctx, const fkm_params *params, int64_t n, int64_t d, int64_t k,
    const float *x, const float *weights, void *index, float *centroids,
    int64_t n_init, fkm_iteration_stats *stats, int64_t stats_capacity,
    int64_t *n_stats);

#ifdef __cplusplus
}
#endif

#endif /* FLASHKM_FAISS_H */
