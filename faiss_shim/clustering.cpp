/* flashkm::Clustering and fkm_faiss_clustering_train: FAISS's
 * Clustering::train (faiss/Clustering.cpp, 1.7.3) with the k-means itself
 * done by fkm_train, which implements the same semantics (subsampling,
 * nx == k, redo, splits, post-processing). What is left here is FAISS's
 * bookkeeping around it: parameters, input centroids, statistics, index. */
#include "flashkm/clustering.h"

#include <faiss/impl/AuxIndexStructures.h>
#include <faiss/utils/distances.h>

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <mutex>

#include "flashkm_faiss.h"
#include "shim.h"

#define FKM_S2(x) #x
#define FKM_S(x) FKM_S2(x)
#define FKM_FAISS_VERSION_STR \
  FKM_S(FAISS_VERSION_MAJOR) "." FKM_S(FAISS_VERSION_MINOR) "." FKM_S(FAISS_VERSION_PATCH)

namespace flashkm {

Error::Error(fkm_status status, const std::string& msg)
    : faiss::FaissException(msg), status_(status) {}

namespace detail {

void check(fkm_ctx* ctx, fkm_status status) {
  if (status == FKM_OK) return;
  std::string msg = std::string("flashkm: ") + fkm_status_string(status);
  const char* detail = fkm_ctx_last_error(ctx);
  if (detail && detail[0]) msg += std::string(": ") + detail;
  throw Error(status, msg);
}

fkm_metric metric_of(const faiss::Index& index) {
  switch (index.metric_type) {
    case faiss::METRIC_L2: return FKM_METRIC_L2;
    case faiss::METRIC_INNER_PRODUCT: return FKM_METRIC_INNER_PRODUCT;
    default:
      throw Error(FKM_ERR_UNSUPPORTED,
                  "flashkm k-means supports METRIC_L2 and "
                  "METRIC_INNER_PRODUCT; the index has metric_type " +
                      std::to_string(int(index.metric_type)));
  }
}

/* The linked FAISS's profile: its release, and its loops as measured. */
static fkm_status linked_profile(fkm_profile* out) {
  const int version =
      FAISS_VERSION_MAJOR * 10000 + FAISS_VERSION_MINOR * 100 + FAISS_VERSION_PATCH;
  fkm_loop_order loops[3];
  float x[FKM_PROBE_MAX_D], y[FKM_PROBE_MAX_D];
  std::vector<float> obs[3];
  for (auto& o : obs) o.resize(FKM_PROBE_CASES);
  for (int i = 0; i < FKM_PROBE_CASES; i++) {
    int64_t d;
    fkm_probe_case(i, &d, x, y);
    obs[FKM_PROBE_NORM][i] = faiss::fvec_norm_L2sqr(x, size_t(d));
    obs[FKM_PROBE_L2][i] = faiss::fvec_L2sqr(x, y, size_t(d));
    obs[FKM_PROBE_IP][i] = faiss::fvec_inner_product(x, y, size_t(d));
  }
  fkm_status probed = FKM_OK;
  for (int f = 0; f < 3 && probed == FKM_OK; f++)
    probed = fkm_probe_identify(fkm_probe_fn(f), obs[f].data(), &loops[f]);
  /* The level: the one whose table loops are the measured ones. */
  fkm_status st = FKM_ERR_UNSUPPORTED;
  for (fkm_simd simd : {FKM_SIMD_NONE, FKM_SIMD_AVX2, FKM_SIMD_AVX512}) {
    fkm_profile p;
    if (fkm_profile_init(&p, version, simd) != FKM_OK) continue;
    if (st != FKM_OK) { /* the first level the release has, unless one matches */
      *out = p;
      st = FKM_OK;
    }
    if (probed == FKM_OK && std::memcmp(&p.norm, &loops[0], sizeof loops[0]) == 0 &&
        std::memcmp(&p.l2, &loops[1], sizeof loops[1]) == 0 &&
        std::memcmp(&p.ip, &loops[2], sizeof loops[2]) == 0) {
      *out = p;
      break;
    }
  }
  if (st != FKM_OK) {
    fkm_profile_init(out, fkm_profile_nearest(version), FKM_SIMD_NONE);
    return FKM_ERR_UNSUPPORTED;
  }
  if (probed != FKM_OK) return FKM_ERR_UNSUPPORTED;
  out->norm = loops[0];
  out->l2 = loops[1];
  out->ip = loops[2];
  return FKM_OK;
}

static int poll_faiss_interrupt(void*, int, int, const fkm_iteration_stats*) {
  return faiss::InterruptCallback::is_interrupted() ? 1 : 0;
}

fkm_params params_of(const faiss::ClusteringParameters& cp, fkm_metric metric,
                     fkm_log_fn log, void* log_user) {
  fkm_params p;
  fkm_params_init(&p);
  p.niter = cp.niter;
  p.nredo = cp.nredo;
  p.verbose = cp.verbose;
  p.spherical = cp.spherical;
  p.int_centroids = cp.int_centroids;
  p.frozen_centroids = cp.frozen_centroids;
  p.min_points_per_centroid = cp.min_points_per_centroid;
  p.max_points_per_centroid = cp.max_points_per_centroid;
  p.seed = cp.seed;
  p.metric = metric;
  p.assign_mode = FKM_ASSIGN_FAISS;
  p.check_finite = 1; /* FAISS checks float input for NaN / Inf too */
  if (fkm_faiss_profile(&p.profile) != FKM_OK) {
    char name[64];
    fkm_profile_name(&p.profile, name, sizeof name);
    throw Error(FKM_ERR_UNSUPPORTED,
                std::string("flashkm has no profile for the linked FAISS " FKM_FAISS_VERSION_STR
                            " (nearest: ") + name + ")");
  }
#if FAISS_VERSION_MAJOR * 100 + FAISS_VERSION_MINOR >= 109
  p.check_finite = cp.check_input_data_for_NaNs;
  p.use_faster_subsampling = cp.use_faster_subsampling;
#endif
#if FAISS_VERSION_MAJOR * 100 + FAISS_VERSION_MINOR >= 114
  p.init_method = fkm_init_method(int(cp.init_method));
  p.afkmc2_chain_length = int(cp.afkmc2_chain_length);
#endif
#if FAISS_VERSION_MAJOR * 10000 + FAISS_VERSION_MINOR * 100 + FAISS_VERSION_PATCH >= 11402
  p.early_stop_threshold = cp.early_stop_threshold;
#endif
  fkm_faiss_blas(&p);
  p.progress = poll_faiss_interrupt;
  p.log = log;
  p.log_user = log_user;
  return p;
}

void load_index(faiss::Index& index, int64_t k, const float* centroids) {
  index.reset();
  if (!index.is_trained) index.train(k, centroids);
  index.add(k, centroids);
}

void train(fkm_ctx* ctx, const fkm_params& params, int64_t n, int64_t d,
           int64_t k, const float* x, const float* weights, const float* init,
           int64_t n_init, std::vector<float>* centroids,
           std::vector<fkm_iteration_stats>* stats) {
  std::vector<float> cent(size_t(k) * size_t(d), 0.0f);
  if (n_init > 0) std::memcpy(cent.data(), init, sizeof(float) * n_init * d);
  /* One entry per iteration of every redo, or the single entry of nx == k. */
  int64_t cap = std::max<int64_t>(1, int64_t(params.niter) * params.nredo);
  std::vector<fkm_iteration_stats> st(static_cast<size_t>(cap));
  int64_t n_stats = 0;
  check(ctx, fkm_train(ctx, &params, n, d, k, FKM_DTYPE_F32, x, weights,
                       cent.data(), n_init, nullptr, nullptr, st.data(), cap,
                       &n_stats));
  st.resize(size_t(std::min(n_stats, cap)));
  centroids->swap(cent);
  stats->swap(st);
}

}  // namespace detail

Clustering::Clustering(int d, int k)
    : faiss::Clustering(d, k), ctx_(nullptr), owns_ctx_(true) {}

Clustering::Clustering(int d, int k, const faiss::ClusteringParameters& cp)
    : faiss::Clustering(d, k, cp), ctx_(nullptr), owns_ctx_(true) {}

Clustering::Clustering(int d, int k, fkm_ctx* ctx)
    : faiss::Clustering(d, k), ctx_(ctx), owns_ctx_(false) {
  if (!ctx) throw Error(FKM_ERR_INVALID_ARG, "flashkm::Clustering: ctx is NULL");
}

Clustering::Clustering(int d, int k, const faiss::ClusteringParameters& cp,
                       fkm_ctx* ctx)
    : faiss::Clustering(d, k, cp), ctx_(ctx), owns_ctx_(false) {
  if (!ctx) throw Error(FKM_ERR_INVALID_ARG, "flashkm::Clustering: ctx is NULL");
}

Clustering::~Clustering() {
  if (owns_ctx_) fkm_ctx_destroy(ctx_);
}

fkm_ctx* Clustering::context() {
  if (!ctx_) {
    fkm_status s = fkm_ctx_create(FKM_BACKEND_AUTO, 0, &ctx_);
    if (s != FKM_OK)
      throw Error(s, std::string("flashkm::Clustering: cannot create a context: ") +
                         fkm_status_string(s));
  }
  return ctx_;
}

void Clustering::train(idx_t n, const float* x, faiss::Index& index,
                       const float* weights) {
  /* FAISS's own argument checks, in its order and with its wording. */
  if (n < idx_t(k))
    throw Error(FKM_ERR_INVALID_ARG,
                "Number of training points (" + std::to_string(n) +
                    ") should be at least as large as number of clusters (" +
                    std::to_string(k) + ")");
  if (size_t(index.d) != d)
    throw Error(FKM_ERR_INVALID_ARG,
                "Index dimension " + std::to_string(index.d) +
                    " not the same as data dimension " + std::to_string(d));
  if (centroids.size() % d != 0)
    throw Error(FKM_ERR_INVALID_ARG,
                "size of provided input centroids not a multiple of dimension");
  const int64_t n_init = int64_t(centroids.size() / d);
  if (n_init > int64_t(k))
    throw Error(FKM_ERR_INVALID_ARG,
                std::to_string(n_init) + " input centroids for k = " +
                    std::to_string(k));

  fkm_ctx* ctx = context();
  const fkm_params p = detail::params_of(*this, detail::metric_of(index), log, log_user);
  std::vector<float> cent;
  std::vector<fkm_iteration_stats> st;
  detail::train(ctx, p, n, int64_t(d), int64_t(k), x, weights, centroids.data(),
                n_init, &cent, &st);

  iteration_stats.reserve(iteration_stats.size() + st.size());
  detail::load_index(index, int64_t(k), cent.data());
  centroids.swap(cent);
  for (const fkm_iteration_stats& s : st)
    iteration_stats.push_back(faiss::ClusteringIterationStats{
        s.obj, s.time, s.time_search, s.imbalance_factor, s.nsplit});
}

}  // namespace flashkm

using flashkm::Error;

extern "C" fkm_status fkm_faiss_profile(fkm_profile* profile) {
  if (!profile) return FKM_ERR_INVALID_ARG;
  static std::once_flag once;
  static fkm_profile cached;
  static fkm_status cached_status;
  try {
    std::call_once(once, [] { cached_status = flashkm::detail::linked_profile(&cached); });
  } catch (...) {
    return FKM_ERR_INTERNAL;
  }
  *profile = cached;
  profile->blas_threshold = faiss::distance_compute_blas_threshold;
  return cached_status;
}

/* The BLAS FAISS links, as FAISS declares it (faiss/utils/distances.cpp). */
extern "C" int sgemm_(const char* transa, const char* transb, int* m, int* n, int* k,
                      const float* alpha, const float* a, int* lda, const float* b, int* ldb,
                      float* beta, float* c, int* ldc);

extern "C" fkm_status fkm_faiss_blas(fkm_params* params) {
  if (!params) return FKM_ERR_INVALID_ARG;
  params->blas_sgemm = sgemm_;
  params->blas_query_bs = faiss::distance_compute_blas_query_bs;
  params->blas_database_bs = faiss::distance_compute_blas_database_bs;
  return FKM_OK;
}

extern "C" fkm_status fkm_faiss_clustering_train(
    fkm_ctx* ctx, const fkm_params* params, int64_t n, int64_t d, int64_t k,
    const float* x, const float* weights, void* index, float* centroids,
    int64_t n_init, fkm_iteration_stats* stats, int64_t stats_capacity,
    int64_t* n_stats) {
  if (!ctx) return FKM_ERR_INVALID_ARG;
  return flashkm::detail::guard(ctx, [&]() -> fkm_status {
    if (!params) throw Error(FKM_ERR_INVALID_ARG, "params is NULL (use fkm_params_init)");
    /* The caller's fields over our defaults (append-only struct); fkm_train
     * validates the values. */
    const size_t v1 = offsetof(fkm_params, log_user) + sizeof(void*),
                 v2 = offsetof(fkm_params, blas_sgemm);  /* the sizes headers declared */
    if (params->struct_size != v1 && params->struct_size != v2 &&
        params->struct_size != sizeof(fkm_params))
      throw Error(FKM_ERR_INVALID_ARG,
                  "params->struct_size = " + std::to_string(params->struct_size) +
                      " is not a size this library knows; initialise params "
                      "with fkm_params_init");
    if (!centroids)
      throw Error(FKM_ERR_INVALID_ARG, "centroids is NULL (an output of k * d floats)");
    if (stats_capacity < 0 || (!stats && stats_capacity > 0))
      throw Error(FKM_ERR_INVALID_ARG, "stats / stats_capacity inconsistent");
    fkm_params p;
    fkm_params_init(&p);
    std::memcpy(&p, params, params->struct_size);
    p.struct_size = sizeof p;
    if (p.profile.faiss_version == 0 && fkm_faiss_profile(&p.profile) != FKM_OK)
      throw Error(FKM_ERR_UNSUPPORTED,
                  "flashkm has no profile for the linked FAISS " FKM_FAISS_VERSION_STR);
    if (!p.blas_sgemm) fkm_faiss_blas(&p);
    if (p.assign_mode != FKM_ASSIGN_FAISS)
      throw Error(FKM_ERR_INVALID_ARG,
                  "params->assign_mode: the FAISS bridge computes FAISS's "
                  "labels, only FKM_ASSIGN_FAISS is accepted");
    faiss::Index* idx = static_cast<faiss::Index*>(index);
    if (idx) {
      if (int64_t(idx->d) != d)
        throw Error(FKM_ERR_INVALID_ARG,
                    "index->d = " + std::to_string(idx->d) + " but d = " +
                        std::to_string(d));
      p.metric = flashkm::detail::metric_of(*idx);
    }
    std::vector<float> cent;
    std::vector<fkm_iteration_stats> st;
    flashkm::detail::train(ctx, p, n, d, k, x, weights, centroids, n_init, &cent, &st);
    if (idx) flashkm::detail::load_index(*idx, k, cent.data());
    /* Outputs are published only now that nothing can fail any more. */
    std::memcpy(centroids, cent.data(), sizeof(float) * cent.size());
    const int64_t ns = int64_t(st.size());
    if (stats)
      std::copy(st.begin(), st.begin() + std::min(ns, stats_capacity), stats);
    if (n_stats) *n_stats = ns;
    return FKM_OK;
  });
}
