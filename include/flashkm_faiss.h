/*
 * flashkm's FAISS bridge: C entry points, present only in builds with FAISS
 * (library flashkm_faiss, C++17 inside, compiled against FAISS 1.7.3). C++
 * users can also use flashkm::Clustering from <flashkm/clustering.h>
 * (faiss_shim/flashkm/clustering.h in the source tree), a drop-in
 * faiss::Clustering.
 *
 * This header is C99 and C++; it needs no FAISS header: indexes are passed
 * as void* (a faiss::Index*, which is also what the FAISS C API's FaissIndex*
 * points to).
 *
 * Errors: every function catches what FAISS throws and returns
 * FKM_ERR_FAISS with FAISS's message in fkm_ctx_last_error(); flashkm's own
 * failures keep their status (FKM_ERR_INVALID_ARG, FKM_ERR_NOT_FINITE, ...);
 * host allocation failures are FKM_ERR_OUT_OF_MEMORY. Nothing throws across
 * this header, nothing prints. A NULL ctx returns FKM_ERR_INVALID_ARG.
 * Thread safety: as the context; the FAISS objects passed in must not be
 * used concurrently.
 */
#ifndef FLASHKM_FAISS_H
#define FLASHKM_FAISS_H

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Train a FAISS index whose coarse level is IVF, with flashkm's k-means.
 *
 *  index   a faiss::Index*: an IndexIVF (any subclass), or an
 *          IndexPreTransform chain ending in one. Other indexes return
 *          FKM_ERR_INVALID_ARG (before anything is trained).
 *  n, x    (n, index->d) float, host memory, read only.
 *
 *  Follows FAISS 1.7.3's Index::train step by step and replaces the flat
 *  k-means of Level1Quantizer::train_q1 and, with FAISS 1.7 (default PQ
 *  training), the M k-means of ProductQuantizer::train inside
 *  IndexIVFPQ::train_residual (FAISS's subsample, residuals, polysemous
 *  training and tables around them) and inside OPQMatrix::train (FAISS's
 *  rotation updates, SVD and encoding around them, through the BLAS and
 *  LAPACK FAISS links):
 *   - IndexPreTransform: the untrained transforms are trained in order, each
 *     on the output of the previous ones (FAISS's logic; trained ones are
 *     kept), then the sub-index trains on the transformed data;
 *   - IndexIVF whose quantizer does not yet hold nlist centroids:
 *     quantizer_trains_alone 0 (flat quantizer): k-means with ivf->cp as is
 *     (FAISS's IVF constructor and index_factory already make it spherical
 *     for inner product) in the quantizer's metric, or on
 *     ivf->clustering_index when set; quantizer_trains_alone 2 (HNSW ...):
 *     k-means with L2 (or clustering_index), then the quantizer is trained
 *     if needed and receives the centroids; a clustering_index that is not a
 *     flat index (an approximate search) is left to FAISS's own k-means, as
 *     is quantizer_trains_alone 1
 *     (multi-index, residual quantizers) runs no flat k-means: FAISS's own
 *     training runs. IndexIVFFlatDedup returns FKM_ERR_UNSUPPORTED (FAISS
 *     deduplicates its training set first).
 *   - then the IVF's own train() runs the rest (it sees a trained quantizer
 *     and skips its k-means): PQ (unless flashkm trained it, above), SQ,
 *     residual codebooks.
 *  The result equals stock index->train(n, x) bit for bit wherever parity
 *  level P3 of docs/contract.md holds. On error the index may be partly trained (as
 *  after a FAISS exception). Blocks. */
FKM_API fkm_status fkm_faiss_train_index(fkm_ctx *ctx, void *index, int64_t n,
                                         const float *x);

/** Where fkm_faiss_train_index_report's time went, in seconds. */
typedef struct fkm_faiss_train_report {
  size_t struct_size;          /**< sizeof(fkm_faiss_train_report), set by the caller */
  double pretransform_seconds; /**< training and applying an IndexPreTransform chain */
  double coarse_seconds;       /**< the coarse k-means that flashkm ran (0 when left to FAISS) */
  double rest_seconds;         /**< the IVF's own train() after it: FAISS's codebooks (PQ,
                                    SQ), polysemous training, tables, and the coarse k-means
                                    when FAISS ran it */
  int coarse_by_flashkm;       /**< 1 when flashkm ran the coarse k-means */
  int codebooks_by_flashkm;    /**< 1 when flashkm ran the PQ codebooks' k-means too (an
                                    IndexIVFPQ with FAISS 1.7: rest_seconds holds them) */
  int64_t nlist;               /**< the IVF's lists */
  int pretransform_by_flashkm; /**< 1 when flashkm ran the PQ trainings of an OPQ rotation
                                    in the chain (FAISS 1.7; pretransform_seconds holds
                                    them) */
  /* since 0.3.0's phase split (a caller's smaller struct_size gets the
   * fields before these only) */
  double codebooks_kmeans_seconds; /**< of rest_seconds: the PQ codebooks' k-means that
                                        flashkm ran (codebooks_by_flashkm), else 0 */
  double polysemous_seconds;       /**< of rest_seconds: FAISS's polysemous training and
                                        precomputed tables after flashkm's codebooks, else 0 */
} fkm_faiss_train_report;

/** fkm_faiss_train_index, and where its time went (*report, when not NULL,
 *  with report->struct_size = sizeof(fkm_faiss_train_report); written only
 *  on success). */
FKM_API fkm_status fkm_faiss_train_index_report(fkm_ctx *ctx, void *index, int64_t n,
                                                const float *x,
                                                fkm_faiss_train_report *report);

/** index->add(n, x), or index->add_with_ids(n, x, ids) when ids is not
 *  NULL, with the coarse assignment of every vector done by flashkm.
 *
 *  index   a faiss::Index*. For an IndexIVFFlat, IndexIVFPQ or
 *          IndexIVFScalarQuantizer (exactly those classes, whose
 *          add_with_ids is FAISS's quantizer->assign then add_core) with a
 *          flat quantizer holding its nlist centroids, alone or behind an
 *          IndexPreTransform chain (applied first, as FAISS does): the
 *          assignment is fkm_assign in the linked FAISS's arithmetic and
 *          BLAS (the same labels), then FAISS's own add_core encodes and
 *          stores. An IndexIVFPQ whose sub-vectors have fewer than 16
 *          dimensions is encoded by flashkm too (fkm_pq_encode of the
 *          residuals, FAISS's bytes) and stored by FAISS's add_sa_codes.
 *          Any other index is added by FAISS itself. A NaN or Inf
 *          in x is FKM_ERR_NOT_FINITE, nothing added (FAISS 1.7.3's own add
 *          aborts on an assertion for such a row).
 *  n, x    (n, index->d) float, host memory, read only.
 *  ids     (n) ids, or NULL (ids continue from ntotal, as in FAISS).
 *
 *  The index equals the one stock add / add_with_ids gives, bit for bit,
 *  where parity level P3 of docs/contract.md holds. Blocks. */
FKM_API fkm_status fkm_faiss_add(fkm_ctx *ctx, void *index, int64_t n, const float *x,
                                 const int64_t *ids);

/** Where fkm_faiss_add_report's time went, in seconds. */
typedef struct fkm_faiss_add_stats {
  size_t struct_size;       /**< sizeof(fkm_faiss_add_stats), set by the caller */
  double transform_seconds; /**< an IndexPreTransform chain applied */
  double assign_seconds;    /**< flashkm's coarse assignment (0 when FAISS added) */
  double add_seconds;       /**< FAISS: add_core (encoding, lists), add_sa_codes (lists,
                                 when flashkm encoded), or its whole add */
  int assign_by_flashkm;    /**< 1 when flashkm assigned */
  /* since 0.3.0's PQ encoding (a caller's smaller struct_size gets the
   * fields above only) */
  double encode_seconds;    /**< flashkm's PQ encoding (0 when FAISS encoded) */
  int encode_by_flashkm;    /**< 1 when flashkm computed an IndexIVFPQ's codes */
} fkm_faiss_add_stats;

/** fkm_faiss_add, and where its time went (*report, when not NULL, with
 *  report->struct_size = sizeof(fkm_faiss_add_stats) of the caller's header;
 *  written only on success). */
FKM_API fkm_status fkm_faiss_add_report(fkm_ctx *ctx, void *index, int64_t n, const float *x,
                                        const int64_t *ids, fkm_faiss_add_stats *report);

/** The profile of the FAISS this bridge was compiled and linked with
 *  (docs/profiles.md): its release (FAISS_VERSION_*), the summation orders
 *  of its fvec_norm_L2sqr, fvec_L2sqr and fvec_inner_product measured by
 *  calling them (fkm_probe_*), the SIMD level those orders belong to, and
 *  the current faiss::distance_compute_blas_threshold. FKM_ERR_UNSUPPORTED
 *  (*profile then holds the nearest release's, with a message on no
 *  context: use fkm_profile_name) when flashkm has no profile for that
 *  release or its loops. Thread-safe. */
FKM_API fkm_status fkm_faiss_profile(fkm_profile *profile);

/** The BLAS the linked FAISS calls on its BLAS path (its sgemm_), with
 *  FAISS's current block sizes (faiss::distance_compute_blas_query_bs and
 *  _database_bs): what fkm_params.blas_sgemm, blas_query_bs and
 *  blas_database_bs take to give FAISS's labels, near-ties included. Sets
 *  the three fields of *params; FKM_ERR_INVALID_ARG for NULL. */
FKM_API fkm_status fkm_faiss_blas(fkm_params *params);

/** faiss::Clustering::train(n, x, *index, weights) with flashkm.
 *
 *  params     clustering parameters (fkm_params_init, then FAISS's fields);
 *             assign_mode must be FKM_ASSIGN_FAISS. params->profile left
 *             at flashkm's (faiss_version 0) means the linked FAISS's
 *             (fkm_faiss_profile); another profile is used as given.
 *             params->blas_sgemm left NULL means the linked FAISS's BLAS
 *             (fkm_faiss_blas), so that near-ties fall as FAISS's do. The
 *             metric is the
 *             index's when index is not NULL (METRIC_L2 or
 *             METRIC_INNER_PRODUCT, else FKM_ERR_UNSUPPORTED), else
 *             params->metric.
 *  x, weights (n, d) float and (n) float or NULL, host memory, read only.
 *  index      a faiss::Index* of dimension d, or NULL. On success it holds
 *             exactly the k centroids, as FAISS leaves it: reset, trained on
 *             them if it was not trained, then the centroids added. It is
 *             only used to receive the centroids: assignment is always
 *             FAISS's exact flat search.
 *  centroids  (k, d) float host, in/out: the first n_init rows are initial
 *             centroids (frozen with params->frozen_centroids); receives the
 *             trained ones.
 *  stats      as in fkm_train (one entry per iteration, as
 *             faiss::Clustering::iteration_stats).
 *  On error nothing is written (centroids, stats, n_stats) and the index is
 *  unchanged unless FAISS itself failed while loading it. Blocks. */
FKM_API fkm_status fkm_faiss_clustering_train(
    fkm_ctx *ctx, const fkm_params *params, int64_t n, int64_t d, int64_t k,
    const float *x, const float *weights, void *index, float *centroids,
    int64_t n_init, fkm_iteration_stats *stats, int64_t stats_capacity,
    int64_t *n_stats);

#ifdef __cplusplus
}
#endif

#endif /* FLASHKM_FAISS_H */
