/* fkm_faiss_add: Index::add / add_with_ids of an IVF index with the coarse
 * assignment of every vector done by flashkm.
 *
 * FAISS 1.7.3's IndexIVF::add_with_ids is two steps: quantizer->assign(n,
 * x) (the k=1 search of the coarse quantizer), then add_core(n, x, xids,
 * assignment), which encodes and stores. For the classes whose
 * add_with_ids is exactly that (IndexIVFFlat, IndexIVFPQ,
 * IndexIVFScalarQuantizer) with an exact flat quantizer, the first step is
 * fkm_assign in the linked FAISS's arithmetic (its profile and its BLAS:
 * the same labels, near-ties included) and the second is FAISS's own, but
 * for an IndexIVFPQ's codes (add_core_o: the residuals'
 * ProductQuantizer::compute_codes), which are fkm_pq_encode's where it
 * reaches (ivfpq_encodable), stored by add_sa_codes. An
 * IndexPreTransform applies its chain first (apply_chain, as its
 * add_with_ids does) and takes the sub-index's ntotal after. Everything
 * else - another class, an approximate quantizer, an untrained index - is
 * FAISS's own add. A NaN or Inf in x is FKM_ERR_NOT_FINITE before anything
 * is added: FAISS 1.7.3 gives such a row a list number outside [0, nlist)
 * and aborts on an assertion in add_entries. */
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFFlat.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexScalarQuantizer.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include "flashkm_faiss.h"
#include "shim.h"

namespace flashkm {
namespace detail {
namespace {

/** The IVF whose add flashkm can split (see above), or NULL. */
faiss::IndexIVF* splittable_ivf(faiss::Index* sub) {
  const std::type_info& t = typeid(*sub);
  if (t != typeid(faiss::IndexIVFFlat) && t != typeid(faiss::IndexIVFPQ) &&
      t != typeid(faiss::IndexIVFScalarQuantizer))
    return nullptr;
  auto* ivf = static_cast<faiss::IndexIVF*>(sub);
  const std::type_info& q = typeid(*ivf->quantizer);
  if (q != typeid(faiss::IndexFlat) && q != typeid(faiss::IndexFlatL2) &&
      q != typeid(faiss::IndexFlatIP))
    return nullptr;
  if (!ivf->is_trained || ivf->quantizer->ntotal != faiss::Index::idx_t(ivf->nlist))
    return nullptr;
  if (ivf->metric_type != faiss::METRIC_L2 && ivf->metric_type != faiss::METRIC_INNER_PRODUCT)
    return nullptr;
  return ivf;
}

/** Whether flashkm computes an IndexIVFPQ's codes: fkm_pq_encode's reach
 *  (pq_encodable) and every vector on a list (FAISS's add skips the
 *  others). */
bool ivfpq_encodable(const faiss::IndexIVFPQ& ivf, const std::vector<int64_t>& assign) {
  if (!pq_encodable(ivf.pq)) return false;
  for (int64_t a : assign)
    if (a < 0) return false;
  return true;
}

void add_any(fkm_ctx* ctx, faiss::Index& index, int64_t n, const float* x, const int64_t* ids,
             fkm_faiss_add_stats* r) {
  static_assert(std::is_same<faiss::Index::idx_t, int64_t>::value,
                "FAISS's ids and lists are flashkm's int64_t labels, passed as they are");
  /* (the library's own scan is not part of its ABI: the bridge scans here) */
  const int64_t count = n * index.d;
  int64_t bad = 0;
  while (bad < count && std::isfinite(x[bad])) bad++;
  if (bad < count)
    throw Error(FKM_ERR_NOT_FINITE, "x contains NaN or Inf at row " +
                                        std::to_string(bad / index.d) + ", column " +
                                        std::to_string(bad % index.d) +
                                        ": nothing added (FAISS's add would abort)");
  auto* pt = dynamic_cast<faiss::IndexPreTransform*>(&index);
  faiss::IndexIVF* ivf = index.is_trained ? splittable_ivf(pt ? pt->index : &index) : nullptr;
  if (!ivf) { /* FAISS's own add */
    const double t0 = seconds_now();
    if (ids)
      index.add_with_ids(n, x, ids);
    else
      index.add(n, x);
    r->add_seconds = seconds_now() - t0;
    return;
  }
  const double t0 = seconds_now();
  const float* xt = x;
  std::unique_ptr<const float[]> own;
  if (pt) { /* IndexPreTransform::add_with_ids: the chain, then the sub-index */
    xt = pt->apply_chain(n, x);
    if (xt != x) own.reset(xt);
  }
  const int64_t d = ivf->d, nlist = int64_t(ivf->nlist);
  std::vector<float> centroids(static_cast<size_t>(nlist * d));
  ivf->quantizer->reconstruct_n(0, nlist, centroids.data());
  fkm_params p = params_of(faiss::ClusteringParameters(),
                           ivf->metric_type == faiss::METRIC_INNER_PRODUCT
                               ? FKM_METRIC_INNER_PRODUCT
                               : FKM_METRIC_L2,
                           nullptr, nullptr);
  p.check_finite = 0; /* checked above */
  std::vector<int64_t> assign(static_cast<size_t>(n));
  const double t1 = seconds_now();
  check(ctx, fkm_assign(ctx, &p, n, d, nlist, FKM_DTYPE_F32, xt, centroids.data(),
                        assign.data(), nullptr)); /* the labels alone */
  const double t2 = seconds_now();
  double t3 = t2;
  auto* ivfpq = typeid(*ivf) == typeid(faiss::IndexIVFPQ)
                    ? static_cast<faiss::IndexIVFPQ*>(ivf)
                    : nullptr;
  if (ivfpq && ivfpq_encodable(*ivfpq, assign)) {
    /* IndexIVFPQ::add_core_o's codes: the residuals' PQ codes, then what
     * add_sa_codes stores (the list number's bytes, then the code) */
    const faiss::ProductQuantizer& pq = ivfpq->pq;
    const size_t cs = ivf->coarse_code_size(), code_size = pq.code_size;
    std::vector<uint8_t> codes(static_cast<size_t>(n) * code_size);
    const bool res = ivfpq->by_residual;
    check(ctx, fkm_pq_encode(ctx, &p, n, d, int64_t(pq.M), int(pq.nbits), xt,
                             pq.centroids.data(), res ? nlist : 0,
                             res ? centroids.data() : nullptr, res ? assign.data() : nullptr,
                             codes.data()));
    t3 = seconds_now();
    std::vector<uint8_t> full(static_cast<size_t>(n) * (cs + code_size));
    for (int64_t i = 0; i < n; i++) {
      uint8_t* row = &full[size_t(i) * (cs + code_size)];
      ivf->encode_listno(assign[size_t(i)], row);
      std::memcpy(row + cs, &codes[size_t(i) * code_size], code_size);
    }
    ivf->add_sa_codes(n, full.data(), ids);
    r->encode_by_flashkm = 1;
  } else {
    ivf->add_core(n, xt, ids, assign.data());
  }
  if (pt) pt->ntotal = ivf->ntotal;
  r->transform_seconds = t1 - t0;
  r->assign_seconds = t2 - t1;
  r->encode_seconds = t3 - t2;
  r->add_seconds = seconds_now() - t3;
  r->assign_by_flashkm = 1;
}

}  // namespace
}  // namespace detail
}  // namespace flashkm

extern "C" fkm_status fkm_faiss_add(fkm_ctx* ctx, void* index, int64_t n, const float* x,
                                    const int64_t* ids) {
  return fkm_faiss_add_report(ctx, index, n, x, ids, nullptr);
}

extern "C" fkm_status fkm_faiss_add_report(fkm_ctx* ctx, void* index, int64_t n,
                                           const float* x, const int64_t* ids,
                                           fkm_faiss_add_stats* report) {
  return flashkm::detail::index_call(
      ctx, report, index, n, x, [&](faiss::Index& idx, fkm_faiss_add_stats& r) {
        flashkm::detail::add_any(ctx, idx, n, x, ids, &r);
      });
}
