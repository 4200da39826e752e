/* fkm_faiss_add: Index::add / add_with_ids of an IVF index with the coarse
 * assignment of every vector done by flashkm.
 *
 * FAISS 1.7.3's IndexIVF::add_with_ids is two steps: quantizer->assign(n,
 * x) (the k=1 search of the coarse quantizer), then add_core(n, x, xids,
 * assignment), which encodes and stores. For the classes whose
 * add_with_ids is exactly that (IndexIVFFlat, IndexIVFPQ,
 * IndexIVFScalarQuantizer) with an exact flat quantizer, the first step is
 * fkm_assign in the linked FAISS's arithmetic (its profile and its BLAS:
 * the same labels, near-ties included) and the second is FAISS's own. An
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

/** Error(FKM_ERR_NOT_FINITE) naming the first NaN or Inf of x (n, d). */
void check_finite(int64_t n, int64_t d, const float* x) {
  for (int64_t i = 0; i < n * d; i++)
    if (!std::isfinite(x[i]))
      throw Error(FKM_ERR_NOT_FINITE, "x contains NaN or Inf at row " + std::to_string(i / d) +
                                          ", column " + std::to_string(i % d) +
                                          ": nothing added (FAISS's add would abort)");
}

void add_any(fkm_ctx* ctx, faiss::Index& index, int64_t n, const float* x, const int64_t* ids,
             fkm_faiss_add_stats* r) {
  check_finite(n, index.d, x);
  const double t0 = seconds_now();
  auto* pt = dynamic_cast<faiss::IndexPreTransform*>(&index);
  faiss::Index* sub = pt ? pt->index : &index;
  faiss::IndexIVF* ivf = index.is_trained ? splittable_ivf(sub) : nullptr;
  const std::vector<faiss::Index::idx_t> xids(ids, ids ? ids + n : ids);
  const faiss::Index::idx_t* fids = ids ? xids.data() : nullptr;
  const float* xt = x;
  std::unique_ptr<const float[]> own;
  if (ivf && pt) {
    xt = pt->apply_chain(faiss::Index::idx_t(n), x);
    if (xt != x) own.reset(xt);
  }
  r->transform_seconds = seconds_now() - t0;
  if (!ivf) {
    const double t1 = seconds_now();
    if (ids)
      index.add_with_ids(faiss::Index::idx_t(n), x, fids);
    else
      index.add(faiss::Index::idx_t(n), x);
    r->add_seconds = seconds_now() - t1;
    r->transform_seconds = 0;
    return;
  }
  const int64_t d = ivf->d, nlist = int64_t(ivf->nlist);
  std::vector<float> centroids(static_cast<size_t>(nlist * d));
  ivf->quantizer->reconstruct_n(0, faiss::Index::idx_t(nlist), centroids.data());
  faiss::ClusteringParameters cp;
  fkm_params p = params_of(cp, ivf->metric_type == faiss::METRIC_INNER_PRODUCT
                                   ? FKM_METRIC_INNER_PRODUCT
                                   : FKM_METRIC_L2,
                           nullptr, nullptr);
  p.check_finite = 0; /* checked above */
  std::vector<int64_t> labels(static_cast<size_t>(n));
  std::vector<float> dist(static_cast<size_t>(n));
  const double t1 = seconds_now();
  check(ctx, fkm_assign(ctx, &p, n, d, nlist, FKM_DTYPE_F32, xt, centroids.data(),
                        labels.data(), dist.data()));
  const std::vector<faiss::Index::idx_t> assign(labels.begin(), labels.end());
  const double t2 = seconds_now();
  ivf->add_core(faiss::Index::idx_t(n), xt, fids, assign.data());
  if (pt) pt->ntotal = ivf->ntotal;
  r->assign_seconds = t2 - t1;
  r->add_seconds = seconds_now() - t2;
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
