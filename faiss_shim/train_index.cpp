/* fkm_faiss_train_index: Index::train() of an IVF index (alone or behind an
 * IndexPreTransform chain) with the coarse k-means done by flashkm.
 *
 * It follows FAISS 1.7.3 step by step and replaces only the one call that
 * runs a flat k-means, Level1Quantizer::train_q1's Clustering::train:
 *  - IndexPreTransform::train: train the chain's untrained transforms in
 *    order, each on the output of the previous ones, then the sub-index on
 *    the transformed data (recursing here); when the sub-index is already
 *    trained FAISS trains only transforms, so its own train() is called.
 *  - IndexIVF: if the quantizer does not hold nlist trained centroids yet,
 *    do what train_q1 does for quantizer_trains_alone 0 (cluster on the
 *    quantizer or clustering_index in its metric, quantizer reset first) and
 *    2 (cluster with L2 on an IndexFlatL2 or clustering_index, then train
 *    the quantizer on the centroids if needed and add them), with
 *    flashkm::Clustering and ivf->cp as is. FAISS's IVF constructor and
 *    index_factory already set cp.spherical for inner product; honouring cp
 *    as is keeps a caller's explicit choice, as FAISS does. A clustering_index
 *    that is not a flat (exact) index is left to FAISS's own train_q1.
 *    python/flashkm/faiss_compat.py (_train_q1_metric) follows the same rules.
 *    quantizer_trains_alone 1 (MultiIndexQuantizer, ResidualCoarseQuantizer)
 *    runs no flat k-means: FAISS's own quantizer training runs.
 *    Then the IVF's own train() runs: train_q1 sees a quantizer with nlist
 *    centroids and skips, train_residual trains PQ / SQ / ... as in FAISS.
 */
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/impl/PolysemousTraining.h>
#include <faiss/utils/utils.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/VectorTransform.h>

#include <cstring>
#include <memory>
#include <vector>
#include <typeinfo>

#include "flashkm_faiss.h"
#include "shim.h"

namespace flashkm {
namespace detail {
namespace {

/** The IVF at the end of index's pre-transform chain, or NULL. */
faiss::IndexIVF* find_ivf(faiss::Index* index) {
  while (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) index = pt->index;
  return dynamic_cast<faiss::IndexIVF*>(index);
}

/** Level1Quantizer::train_q1 with flashkm's k-means; false when it is left
 *  to FAISS (a trained quantizer, one that trains alone, an approximate
 *  clustering_index). */
bool train_coarse(fkm_ctx* ctx, faiss::IndexIVF& ivf, int64_t n, const float* x) {
  faiss::Index* q = ivf.quantizer;
  if (q->is_trained && q->ntotal == faiss::Index::idx_t(ivf.nlist)) return false;
  if (dynamic_cast<faiss::IndexIVFFlatDedup*>(&ivf))
    throw Error(FKM_ERR_UNSUPPORTED,
                "IndexIVFFlatDedup deduplicates its training set before "
                "k-means; train it with index->train()");
  /* A clustering_index other than a flat index searches approximately (HNSW,
   * another IVF, a GPU index): flashkm's exact labels would not be FAISS's,
   * so FAISS's own train_q1 runs (python/flashkm/faiss_compat.py decides
   * the same). */
  if (ivf.clustering_index && !dynamic_cast<faiss::IndexFlat*>(ivf.clustering_index))
    return false;
  const int d = int(q->d);
  const int nlist = int(ivf.nlist);
  if (ivf.quantizer_trains_alone == 0) {
    Clustering clus(d, nlist, ivf.cp, ctx);
    q->reset();
    if (ivf.clustering_index) {
      clus.train(n, x, *ivf.clustering_index);
      q->add(nlist, clus.centroids.data());
    } else {
      clus.train(n, x, *q);
    }
    q->is_trained = true;
  } else if (ivf.quantizer_trains_alone == 2) {
    if (!(ivf.metric_type == faiss::METRIC_L2 ||
          (ivf.metric_type == faiss::METRIC_INNER_PRODUCT && ivf.cp.spherical)))
      throw Error(FKM_ERR_FAISS,
                  "quantizer_trains_alone = 2 needs METRIC_L2, or inner "
                  "product with spherical clustering (as FAISS checks)");
    if (q->ntotal != 0)
      throw Error(FKM_ERR_INVALID_ARG,
                  "the quantizer holds " + std::to_string(q->ntotal) +
                      " vectors, neither 0 nor nlist = " + std::to_string(nlist));
    Clustering clus(d, nlist, ivf.cp, ctx);
    if (ivf.clustering_index) {
      clus.train(n, x, *ivf.clustering_index);
    } else {
      faiss::IndexFlatL2 assigner(d);
      clus.train(n, x, assigner);
    }
    if (!q->is_trained) q->train(nlist, clus.centroids.data());
    q->add(nlist, clus.centroids.data());
  }
  return ivf.quantizer_trains_alone != 1;
}

/* The codebooks of an IndexIVFPQ through flashkm: FAISS 1.7's
 * IndexIVFPQ::train_residual_o step by step (subsample with the PQ's
 * parameters, residuals against the coarse quantizer, the product
 * quantizer, polysemous training, the precomputed tables), with
 * ProductQuantizer::train's M Clustering runs, one per column slice on an
 * IndexFlatL2, done as one batched flashkm run. Only the exact class (a
 * subclass may train otherwise), the default training (no hypercube or hot
 * start, no assign_index) and FAISS 1.7, whose train_residual this is (1.8+
 * moved the residuals into IndexIVF::train): anything else returns false
 * and FAISS's own train() runs. */
bool train_ivfpq_codebooks(fkm_ctx* ctx, faiss::IndexIVF& ivf, int64_t n, const float* x,
                           fkm_faiss_train_report* r) {
#if FAISS_VERSION_MAJOR == 1 && FAISS_VERSION_MINOR == 7
  auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(&ivf);
  if (!ivfpq || typeid(*ivfpq) != typeid(faiss::IndexIVFPQ)) return false;
  faiss::ProductQuantizer& pq = ivfpq->pq;
  /* another training type, an assign_index, or fewer points than centroids
   * (FAISS's own Clustering raises its error): FAISS trains */
  if (pq.train_type != faiss::ProductQuantizer::Train_default || !pq_trainable(pq, n))
    return false;
  faiss::Index* q = ivf.quantizer;
  if (!q->is_trained || q->ntotal != faiss::Index::idx_t(ivf.nlist)) return false;
  const int64_t d = ivf.d;
  size_t nt = size_t(n);
  const float* xs = faiss::fvecs_maybe_subsample(size_t(d), &nt, pq.cp.max_points_per_centroid * pq.ksub,
                                                 x, ivf.verbose, pq.cp.seed);
  std::unique_ptr<const float[]> own_xs(xs == x ? nullptr : xs);
  std::vector<float> residuals;
  const float* trainset = xs;
  if (ivfpq->by_residual) {
    std::vector<faiss::Index::idx_t> assign(nt);
    q->assign(faiss::Index::idx_t(nt), xs, assign.data());
    residuals.resize(nt * size_t(d));
    for (size_t i = 0; i < nt; i++)
      q->compute_residual(xs + i * size_t(d), residuals.data() + i * size_t(d), assign[i]);
    trainset = residuals.data();
  }
  pq.verbose = ivf.verbose;
  const double t0 = seconds_now();
  train_pq(ctx, pq, int64_t(nt), trainset);
  const double t1 = seconds_now();
  if (ivfpq->do_polysemous_training) {
    faiss::PolysemousTraining default_pt;
    faiss::PolysemousTraining* pt =
        ivfpq->polysemous_training ? ivfpq->polysemous_training : &default_pt;
    pt->optimize_pq_for_hamming(pq, faiss::Index::idx_t(nt), trainset);
  }
  if (ivfpq->by_residual) ivfpq->precompute_table();
  ivf.is_trained = true;
  r->codebooks_kmeans_seconds = t1 - t0;
  r->polysemous_seconds = seconds_now() - t1;
  return true;
#else
  (void)ctx, (void)ivf, (void)n, (void)x, (void)r;
  return false;
#endif
}

void train_any(fkm_ctx* ctx, faiss::Index& index, int64_t n, const float* x,
               fkm_faiss_train_report* r) {
  if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(&index)) {
    const double t0 = seconds_now();
    if (pt->index->is_trained) {
      pt->train(n, x); /* transforms only: no k-means left to replace */
      r->pretransform_seconds += seconds_now() - t0;
      return;
    }
    /* IndexPreTransform::train with an untrained sub-index: every transform
     * is trained if needed and applied, then the sub-index trains. */
    std::unique_ptr<float[]> buf;
    const float* xt = x;
    for (faiss::VectorTransform* vt : pt->chain) {
      auto* opq = dynamic_cast<faiss::OPQMatrix*>(vt);
      if (!vt->is_trained) {
        if (opq && train_opq(ctx, *opq, n, xt))
          r->pretransform_by_flashkm = 1;
        else
          vt->train(n, xt);
      }
      buf.reset(vt->apply(n, xt));
      xt = buf.get();
    }
    r->pretransform_seconds += seconds_now() - t0;
    train_any(ctx, *pt->index, n, xt, r);
    pt->is_trained = true;
    return;
  }
  auto* ivf = dynamic_cast<faiss::IndexIVF*>(&index);
  const double t0 = seconds_now();
  r->coarse_by_flashkm = train_coarse(ctx, *ivf, n, x);
  const double t1 = seconds_now();
  /* FAISS: its own k-means when left to it, codebooks (an IVF-PQ's through
   * flashkm where it can), tables */
  r->codebooks_by_flashkm = r->coarse_by_flashkm && train_ivfpq_codebooks(ctx, *ivf, n, x, r);
  if (!r->codebooks_by_flashkm) ivf->train(n, x);
  r->coarse_seconds = r->coarse_by_flashkm ? t1 - t0 : 0.0;
  r->rest_seconds = seconds_now() - (r->coarse_by_flashkm ? t1 : t0);
  r->nlist = int64_t(ivf->nlist);
}

}  // namespace
}  // namespace detail
}  // namespace flashkm

extern "C" fkm_status fkm_faiss_train_index(fkm_ctx* ctx, void* index, int64_t n,
                                            const float* x) {
  return fkm_faiss_train_index_report(ctx, index, n, x, nullptr);
}

extern "C" fkm_status fkm_faiss_train_index_report(fkm_ctx* ctx, void* index, int64_t n,
                                                   const float* x,
                                                   fkm_faiss_train_report* report) {
  return flashkm::detail::index_call(
      ctx, report, index, n, x, [&](faiss::Index& idx, fkm_faiss_train_report& r) {
        if (!flashkm::detail::find_ivf(&idx))
          throw flashkm::Error(FKM_ERR_INVALID_ARG,
                               "index is neither an IndexIVF nor an IndexPreTransform "
                               "chain ending in one");
        flashkm::detail::train_any(ctx, idx, n, x, &r);
      });
}
