// The CLI's FAISS calls (index_factory, stock training, add, search,
// write_index, stock Clustering), each behind one exception guard so no C++
// exception reaches the C code of the CLI.
#include "faiss_ops.h"

#include <faiss/Clustering.h>
#include <faiss/IVFlib.h>
#include <faiss/IndexFlat.h>
#include <faiss/IndexIVF.h>
#include <faiss/impl/io.h>
#include <faiss/index_factory.h>
#include <faiss/index_io.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <new>
#include <vector>

#include "matrix_io.h"

namespace {

// Runs f(); turns any exception into -1 and its message.
template <class F>
int guarded(char *msg, F &&f) {
  try {
    f();
    return 0;
  } catch (const std::bad_alloc &) {
    std::snprintf(msg, FKM_CLI_MSG_LEN, "out of memory");
  } catch (const std::exception &e) {
    std::snprintf(msg, FKM_CLI_MSG_LEN, "FAISS: %s", e.what());
  } catch (...) {
    std::snprintf(msg, FKM_CLI_MSG_LEN, "FAISS: unknown exception");
  }
  return -1;
}

faiss::MetricType faiss_metric(fkm_metric m) {
  return m == FKM_METRIC_INNER_PRODUCT ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2;
}

faiss::Index *as_index(void *p) { return static_cast<faiss::Index *>(p); }

}  // namespace

extern "C" {

const char *fkm_fx_version(void) {
#define FKM_STR2(x) #x
#define FKM_STR(x) FKM_STR2(x)
  return FKM_STR(FAISS_VERSION_MAJOR) "." FKM_STR(FAISS_VERSION_MINOR) "." FKM_STR(
      FAISS_VERSION_PATCH);
#undef FKM_STR
#undef FKM_STR2
}

int fkm_fx_index_factory(int64_t d, const char *desc, fkm_metric metric, void **out, char *msg) {
  *out = nullptr;
  return guarded(msg, [&] { *out = faiss::index_factory(int(d), desc, faiss_metric(metric)); });
}

void fkm_fx_index_free(void *index) { delete as_index(index); }

int fkm_fx_train(void *index, int64_t n, const float *x, char *msg) {
  return guarded(msg, [&] { as_index(index)->train(n, x); });
}

int fkm_fx_add(void *index, int64_t n, const float *x, char *msg) {
  return guarded(msg, [&] { as_index(index)->add(n, x); });
}

int fkm_fx_set_nprobe(void *index, int nprobe, char *msg) {
  return guarded(msg, [&] {
    if (faiss::IndexIVF *ivf = faiss::ivflib::try_extract_index_ivf(as_index(index)))
      ivf->nprobe = size_t(nprobe);
  });
}

int fkm_fx_search(void *index, int64_t nq, const float *q, int64_t topk, float *D, int64_t *I,
                  char *msg) {
  return guarded(msg, [&] {
    std::vector<faiss::Index::idx_t> labels(size_t(nq * topk));
    as_index(index)->search(nq, q, topk, D, labels.data());
    for (size_t i = 0; i < labels.size(); i++) I[i] = labels[i];
  });
}

int fkm_fx_write(void *index, const char *path, char *msg) {
  return guarded(msg, [&] { faiss::write_index(as_index(index), path); });
}

int fkm_fx_serialize(void *index, unsigned char **buf, size_t *len, char *msg) {
  *buf = nullptr;
  *len = 0;
  return guarded(msg, [&] {
    faiss::VectorIOWriter w;
    faiss::write_index(as_index(index), &w);
    unsigned char *b = static_cast<unsigned char *>(std::malloc(w.data.size() + 1));
    if (!b) throw std::bad_alloc();
    std::memcpy(b, w.data.data(), w.data.size());
    *buf = b;
    *len = w.data.size();
  });
}

int fkm_fx_coarse_centroids(void *index, int64_t *nlist, int64_t *d, float **out, char *msg) {
  *out = nullptr;
  return guarded(msg, [&] {
    faiss::IndexIVF *ivf = faiss::ivflib::extract_index_ivf(as_index(index));
    faiss::Index *q = ivf->quantizer;
    float *c = static_cast<float *>(std::malloc(sizeof(float) * size_t(q->ntotal * q->d) + 1));
    if (!c) throw std::bad_alloc();
    if (q->ntotal > 0) q->reconstruct_n(0, q->ntotal, c);
    *nlist = q->ntotal;
    *d = q->d;
    *out = c;
  });
}

int fkm_fx_ivf_params(void *index, fkm_params *p, int64_t *nlist, int *direct, char *msg) {
  return guarded(msg, [&] {
    faiss::IndexIVF *ivf = faiss::ivflib::extract_index_ivf(as_index(index));
    *direct = dynamic_cast<faiss::IndexIVF *>(as_index(index)) != nullptr;
    *nlist = int64_t(ivf->nlist);
    const faiss::ClusteringParameters &cp = ivf->cp;
    p->niter = cp.niter;
    p->nredo = cp.nredo;
    p->spherical = cp.spherical;
    p->int_centroids = cp.int_centroids;
    p->frozen_centroids = cp.frozen_centroids;
    p->min_points_per_centroid = cp.min_points_per_centroid;
    p->max_points_per_centroid = cp.max_points_per_centroid;
    p->seed = cp.seed;
    // Level1Quantizer::train_q1: clustering in the quantizer's metric, or in
    // L2 when the quantizer is trained separately (mode 2); inner-product
    // IVF clustering is spherical.
    bool ip = ivf->quantizer_trains_alone != 2 &&
              ivf->quantizer->metric_type == faiss::METRIC_INNER_PRODUCT;
    p->metric = ip ? FKM_METRIC_INNER_PRODUCT : FKM_METRIC_L2;
    if (ivf->metric_type == faiss::METRIC_INNER_PRODUCT) p->spherical = 1;
  });
}

int fkm_fx_clustering(const fkm_params *p, int64_t n, int64_t d, int64_t k, const float *x,
                      const float *weights, float *centroids, int64_t n_init,
                      fkm_iteration_stats *stats, int64_t stats_capacity, int64_t *n_stats,
                      char *msg) {
  return guarded(msg, [&] {
    faiss::ClusteringParameters cp;
    cp.niter = p->niter;
    cp.nredo = p->nredo;
    cp.verbose = false;
    cp.spherical = p->spherical != 0;
    cp.int_centroids = p->int_centroids != 0;
    cp.frozen_centroids = p->frozen_centroids != 0;
    cp.min_points_per_centroid = p->min_points_per_centroid;
    cp.max_points_per_centroid = p->max_points_per_centroid;
    cp.seed = int(uint32_t(p->seed));  // FAISS's seed is an int: the low 32 bits
    faiss::Clustering clus(int(d), int(k), cp);
    clus.centroids.assign(centroids, centroids + n_init * d);
    faiss::IndexFlat index(d, faiss_metric(p->metric));
    clus.train(n, x, index, weights);
    std::memcpy(centroids, clus.centroids.data(), sizeof(float) * size_t(k * d));
    int64_t m = int64_t(clus.iteration_stats.size());
    for (int64_t i = 0; i < m && i < stats_capacity; i++) {
      const faiss::ClusteringIterationStats &s = clus.iteration_stats[size_t(i)];
      stats[i] = fkm_iteration_stats{s.obj, s.time, s.time_search, s.imbalance_factor, s.nsplit,
                                     double(s.obj)};
    }
    if (n_stats) *n_stats = m;
  });
}

int fkm_fx_knn(fkm_metric metric, int64_t d, int64_t nb, const float *base, int64_t nq,
               const float *q, int64_t topk, float *D, int64_t *I, char *msg) {
  return guarded(msg, [&] {
    faiss::IndexFlat index(d, faiss_metric(metric));
    index.add(nb, base);
    std::vector<faiss::Index::idx_t> labels(size_t(nq * topk));
    index.search(nq, q, topk, D, labels.data());
    for (size_t i = 0; i < labels.size(); i++) I[i] = labels[i];
  });
}

}  // extern "C"
