/* Internals of the FAISS bridge: the one place where exceptions become
 * statuses, and the helpers flashkm::Clustering and the C entry points
 * share. Not installed. */
#ifndef FKM_FAISS_SHIM_H
#define FKM_FAISS_SHIM_H

#include <faiss/Clustering.h>
#include <faiss/Index.h>
#include <faiss/VectorTransform.h>
#include <faiss/impl/ProductQuantizer.h>
#include <faiss/impl/FaissException.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "ctx_internal.h"
#include "flashkm.h"
#include "flashkm/clustering.h"
#include "flashkm_faiss.h"

namespace flashkm {
namespace detail {

/** Whether train_pq reproduces pq.train(n, x) (FAISS 1.7; Train_default or
 *  Train_hot_start, no assign_index, at least ksub rows). */
bool pq_trainable(const faiss::ProductQuantizer& pq, int64_t n);

/** ProductQuantizer::train(n, x) with the M sub-quantizers' k-means as one
 *  batched flashkm run (product_quantizer.cpp). Throws. */
void train_pq(fkm_ctx* ctx, faiss::ProductQuantizer& pq, int64_t n, const float* x);

/** OPQMatrix::train(n, x) with its PQ trainings on flashkm; false (nothing
 *  changed) when FAISS must train it: another FAISS release, a subclass, a
 *  PQ train_pq cannot reproduce. Throws. */
bool train_opq(fkm_ctx* ctx, faiss::OPQMatrix& opq, int64_t n, const float* x);

/** Whether fkm_pq_encode gives pq.compute_codes's bytes: sub-vectors of
 *  fewer than 16 dimensions (FAISS's BLAS distances otherwise), at most 16
 *  bits, no transposed centroids (another FAISS kernel). */
bool pq_encodable(const faiss::ProductQuantizer& pq);

/** pq.compute_codes(x, codes, n): fkm_pq_encode where pq_encodable, else
 *  FAISS's own. Throws. */
void encode(fkm_ctx* ctx, const faiss::ProductQuantizer& pq, int64_t n, const float* x,
            uint8_t* codes);

/** A steady clock in seconds (the reports' phase times). */
inline double seconds_now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

/** Throws flashkm::Error(status, the context's last error) unless FKM_OK. */
void check(fkm_ctx* ctx, fkm_status status);

/** FAISS's metric as flashkm's; throws Error for metrics k-means cannot use. */
fkm_metric metric_of(const faiss::Index& index);

/** fkm_params for faiss::ClusteringParameters: FAISS's fields copied, the
 *  progress callback polls faiss::InterruptCallback (as FAISS does after
 *  every search), output to log. */
fkm_params params_of(const faiss::ClusteringParameters& cp, fkm_metric metric,
                     fkm_log_fn log, void* log_user);

/** What FAISS leaves in the index after Clustering::train: the centroids,
 *  alone (reset, trained first if needed, added). */
void load_index(faiss::Index& index, int64_t k, const float* centroids);

/** fkm_train on host float data into fresh buffers: centroids (k * d) whose
 *  first n_init rows are read from init, and every stats entry. Throws. */
void train(fkm_ctx* ctx, const fkm_params& params, int64_t n, int64_t d,
           int64_t k, const float* x, const float* weights, const float* init,
           int64_t n_init, std::vector<float>* centroids,
           std::vector<fkm_iteration_stats>* stats);

/** Runs f() and turns whatever it throws into a status with its message on
 *  ctx; clears the message on success. f returns fkm_status. */
template <class F>
fkm_status guard(fkm_ctx* ctx, F&& f) noexcept {
  try {
    fkm_status s = f();
    if (s == FKM_OK) fkm_ctx_set_error(ctx, FKM_OK, "");
    return s;
  } catch (const Error& e) {
    return fkm_ctx_set_error(ctx, e.status(), e.what());
  } catch (const faiss::FaissException& e) {
    return fkm_ctx_set_error(ctx, FKM_ERR_FAISS, e.what());
  } catch (const std::bad_alloc&) {
    return fkm_ctx_set_error(ctx, FKM_ERR_OUT_OF_MEMORY,
                             "host allocation failed in the FAISS bridge");
  } catch (const std::exception& e) {
    return fkm_ctx_set_error(ctx, FKM_ERR_FAISS, e.what());
  } catch (...) {
    return fkm_ctx_set_error(ctx, FKM_ERR_INTERNAL,
                             "unknown exception in the FAISS bridge");
  }
}

/** The smallest struct_size of a report struct a caller's header may have
 *  (the fields added since are left alone). */
template <class R>
constexpr size_t oldest_size() { return sizeof(R); }
template <>
constexpr size_t oldest_size<fkm_faiss_add_stats>() {
  return offsetof(fkm_faiss_add_stats, encode_seconds);
}
template <>
constexpr size_t oldest_size<fkm_faiss_train_report>() {
  return offsetof(fkm_faiss_train_report, codebooks_kmeans_seconds);
}

/** The frame of an entry point that works on a FAISS index and reports
 *  into a struct R (a struct_size first): R zeroed, the report's size, the
 *  index, n and x checked, then body(index, r) under guard(); *report = r
 *  (its first struct_size bytes) on success only. */
template <class R, class F>
fkm_status index_call(fkm_ctx* ctx, R* report, void* index, int64_t n, const float* x,
                      F&& body) noexcept {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  return guard(ctx, [&]() -> fkm_status {
    R r;
    std::memset(&r, 0, sizeof r);
    r.struct_size = sizeof r;
    if (report && report->struct_size != sizeof *report &&
        !(report->struct_size >= oldest_size<R>() && report->struct_size < sizeof *report))
      throw Error(FKM_ERR_INVALID_ARG, "report->struct_size = " +
                                           std::to_string(report->struct_size) + ", not " +
                                           std::to_string(sizeof *report));
    if (!index) throw Error(FKM_ERR_INVALID_ARG, "index is NULL");
    if (n < 0) throw Error(FKM_ERR_INVALID_ARG, "n = " + std::to_string(n) + " must be >= 0");
    if (!x && n > 0) throw Error(FKM_ERR_INVALID_ARG, "x is NULL");
    body(*static_cast<faiss::Index*>(index), r);
    if (report) { /* the fields the caller's header has */
      const size_t size = report->struct_size;
      r.struct_size = size;
      std::memcpy(report, &r, size);
    }
    return FKM_OK;
  });
}

}  // namespace detail
}  // namespace flashkm

#endif
