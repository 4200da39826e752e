/*
 * flashkm::Clustering: a drop-in faiss::Clustering that trains with flashkm.
 *
 * C++17, compiled against FAISS 1.7.3 (library flashkm_faiss). Replace
 *
 *     faiss::Clustering clus(d, k, cp);
 *
 * by
 *
 *     flashkm::Clustering clus(d, k, cp);
 *
 * and clus.train(n, x, index, weights) computes the centroids FAISS computes
 * (parity levels P1-P3 of docs/contract.md), fills clus.centroids and appends to
 * clus.iteration_stats as FAISS does, and leaves index holding the k centroids
 * (reset, trained first if it is not, then the centroids added).
 *
 * Differences from faiss::Clustering, all deliberate:
 *  - Assignment is always FAISS's exact k=1 flat search (IndexFlat) in the
 *    index's metric (METRIC_L2 or METRIC_INNER_PRODUCT; other metrics throw).
 *    With an approximate index (HNSW, IVF ...) FAISS would assign with that
 *    index instead; flashkm does not, the index only receives the centroids.
 *  - update_index and decode_block_size are ignored (they do not change the
 *    result with a flat index). train_encoded() is not virtual in FAISS 1.7.3
 *    and is not overridden: it runs FAISS's own k-means.
 *  - Nothing is printed: with verbose, FAISS's progress lines go to the log
 *    callback (log, log_user), and so does the warning about too few points
 *    per centroid, which FAISS writes to stderr.
 *  - An untrained index is trained on the final centroids, where FAISS
 *    trains it on the first redo's initial ones (no difference for flat
 *    indexes, which are always trained).
 * Errors (bad input, out of memory, CUDA failures) throw flashkm::Error, a
 * faiss::FaissException carrying the fkm_status.
 *
 * Thread safety: as faiss::Clustering; one object (and its context) per
 * thread.
 */
#ifndef FLASHKM_CLUSTERING_H
#define FLASHKM_CLUSTERING_H

#include <faiss/Clustering.h>
#include <faiss/Index.h>
#include <faiss/impl/FaissException.h>

#include <string>

#include "flashkm.h"

#if defined(__GNUC__)
#define FKM_FAISS_CXX_API __attribute__((visibility("default")))
#else
#define FKM_FAISS_CXX_API
#endif

namespace flashkm {

/** What flashkm throws on the C++ side: FAISS's exception type, plus the
 *  fkm_status that caused it. */
class FKM_FAISS_CXX_API Error : public faiss::FaissException {
 public:
  Error(fkm_status status, const std::string& msg);
  fkm_status status() const noexcept { return status_; }

 private:
  fkm_status status_;
};

class FKM_FAISS_CXX_API Clustering : public faiss::Clustering {
 public:
  /** The context is created at the first train() (FKM_BACKEND_AUTO: CUDA
   *  when available, else the CPU) and owned by the object. */
  Clustering(int d, int k);
  Clustering(int d, int k, const faiss::ClusteringParameters& cp);
  /** ctx is borrowed: it must outlive the object; not NULL. */
  Clustering(int d, int k, fkm_ctx* ctx);
  Clustering(int d, int k, const faiss::ClusteringParameters& cp,
             fkm_ctx* ctx);
  ~Clustering() override;

  Clustering(const Clustering&) = delete;
  Clustering& operator=(const Clustering&) = delete;

  /** faiss::Clustering::train with flashkm. x (n, d) float and weights (n)
   *  or NULL, host memory. If centroids is not empty on input, its
   *  centroids.size() / d rows are the initial centroids (frozen with
   *  frozen_centroids), as in FAISS. Throws flashkm::Error; on error
   *  centroids, iteration_stats and index are unchanged. Blocks. */
  void train(idx_t n, const float* x, faiss::Index& index,
             const float* weights = nullptr) override;

  /** The context train() runs on (creates the owned one if needed). */
  fkm_ctx* context();

  /** Where verbose lines and warnings go; NULL (the default): dropped. */
  fkm_log_fn log = nullptr;
  void* log_user = nullptr;

 private:
  fkm_ctx* ctx_;
  bool owns_ctx_;
};

}  // namespace flashkm

#endif  // FLASHKM_CLUSTERING_H
