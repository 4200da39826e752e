// P3 for FAISS indexes (docs/contract.md section 9): index->train() of stock FAISS
// against the same index trained through fkm_faiss_train_index and through
// flashkm::Clustering on the coarse quantizer. The coarse centroids, PQ
// codebooks, SQ ranges and OPQ matrix must be equal bit for bit, and the
// trained indexes must answer searches identically. Also: the bridge's
// C error handling.
#include <faiss/IndexHNSW.h>
#include <faiss/IndexIVF.h>
#include <faiss/IndexIVFPQ.h>
#include <faiss/IndexPQ.h>
#include <faiss/IndexPreTransform.h>
#include <faiss/IndexScalarQuantizer.h>
#include <faiss/VectorTransform.h>
#include <faiss/index_factory.h>
#include <flashkm/clustering.h>

#include <cstddef>
#include <cstring>
#include <memory>

#include "flashkm_faiss.h"
#include "parity.h"

namespace parity {
namespace {

struct IvfCase {
  const char* name;
  const char* factory;
  bool inner_product;
  int64_t n = 20000;
  bool fashion = false;  // the first n Fashion-MNIST images (d = 784) instead of blobs
};

void PrintTo(const IvfCase& c, std::ostream* os) { *os << c.name; }

faiss::IndexIVF* ivf_of(faiss::Index* index) {
  while (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) index = pt->index;
  return dynamic_cast<faiss::IndexIVF*>(index);
}

// The coarse quantizer's trained table: flat centroids, or the product
// quantizer of a multi-index.
std::vector<float> coarse_table(faiss::IndexIVF* ivf) {
  faiss::Index* q = ivf->quantizer;
  if (auto* mi = dynamic_cast<faiss::MultiIndexQuantizer*>(q)) return mi->pq.centroids;
  if (auto* h = dynamic_cast<faiss::IndexHNSW*>(q)) q = h->storage;
  const float* c = dynamic_cast<faiss::IndexFlat*>(q)->get_xb();
  return std::vector<float>(c, c + ivf->nlist * ivf->d);
}

// Every trained table of the index, by name, in a fixed order.
std::vector<std::pair<std::string, std::vector<float>>> trained_tables(faiss::Index* index) {
  std::vector<std::pair<std::string, std::vector<float>>> t;
  if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index)) {
    for (size_t i = 0; i < pt->chain.size(); i++)
      if (auto* lt = dynamic_cast<faiss::LinearTransform*>(pt->chain[i])) {
        t.emplace_back("transform " + std::to_string(i) + " A", lt->A);
        t.emplace_back("transform " + std::to_string(i) + " b", lt->b);
      }
  }
  faiss::IndexIVF* ivf = ivf_of(index);
  t.emplace_back("coarse quantizer", coarse_table(ivf));
  if (auto* pq = dynamic_cast<faiss::IndexIVFPQ*>(ivf)) t.emplace_back("PQ codebooks", pq->pq.centroids);
  if (auto* sq = dynamic_cast<faiss::IndexIVFScalarQuantizer*>(ivf))
    t.emplace_back("SQ trained", sq->sq.trained);
  return t;
}

// The flashkm::Clustering route, written out as a user would: train the
// transforms (if any), cluster the transformed data on the quantizer as
// Level1Quantizer::train_q1 does, then let FAISS train the rest.
void train_with_clustering(faiss::Index* index, int64_t n, const float* x) {
  std::unique_ptr<float[]> buf;
  const float* xt = x;
  if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(index))
    for (faiss::VectorTransform* vt : pt->chain) {
      vt->train(n, xt);
      buf.reset(vt->apply(n, xt));
      xt = buf.get();
    }
  faiss::IndexIVF* ivf = ivf_of(index);
  flashkm::Clustering clus(int(ivf->d), int(ivf->nlist), ivf->cp, ctx().get());
  if (ivf->quantizer_trains_alone == 1) {
    // a multi-index trains its own product quantizer: no flat k-means
  } else if (ivf->quantizer_trains_alone == 2) {
    faiss::IndexFlatL2 assigner(ivf->d);
    clus.train(n, xt, assigner);
    if (!ivf->quantizer->is_trained) ivf->quantizer->train(ivf->nlist, clus.centroids.data());
    ivf->quantizer->add(ivf->nlist, clus.centroids.data());
  } else {
    clus.train(n, xt, *ivf->quantizer);
    ivf->quantizer->is_trained = true;
  }
  index->train(n, x);
}

class ParityIvf : public ::testing::TestWithParam<IvfCase> {};

TEST_P(ParityIvf, TrainedTablesAndSearchEqualStockFaiss) {
  const IvfCase& c = GetParam();
  ASSERT_NE(ctx().get(), nullptr);
  const int64_t n = c.n, d = c.fashion ? 784 : 32;
  std::vector<float> x = c.fashion ? fashion_mnist(n) : blobs(n, d, 60, 21, 2.5f);
  ASSERT_FALSE(x.empty()) << "Fashion-MNIST not found: install Debian's dataset-fashion-mnist";
  const faiss::MetricType mt = c.inner_product ? faiss::METRIC_INNER_PRODUCT : faiss::METRIC_L2;

  std::unique_ptr<faiss::Index> stock(faiss::index_factory(int(d), c.factory, mt));
  std::unique_ptr<faiss::Index> bridged(faiss::index_factory(int(d), c.factory, mt));
  std::unique_ptr<faiss::Index> clustered(faiss::index_factory(int(d), c.factory, mt));
  // FAISS's own PQ and OPQ training dominate the time (minutes on two
  // cores with their defaults): fewer iterations, the same on all three.
  for (faiss::Index* idx : {stock.get(), bridged.get(), clustered.get()}) {
    if (auto* pt = dynamic_cast<faiss::IndexPreTransform*>(idx))
      if (auto* opq = dynamic_cast<faiss::OPQMatrix*>(pt->chain[0])) {
        opq->niter = 2;
        opq->niter_pq = opq->niter_pq_0 = 2;
        opq->max_train_points = 4096;
      }
    if (auto* mi = dynamic_cast<faiss::MultiIndexQuantizer*>(ivf_of(idx)->quantizer))
      mi->pq.cp.niter = 4;
    if (auto* ivfpq = dynamic_cast<faiss::IndexIVFPQ*>(ivf_of(idx))) {
      ivfpq->pq.cp.niter = 4;
      ivfpq->pq.cp.max_points_per_centroid = 32;
      ivfpq->do_polysemous_training = false;  // FAISS's own, minutes at d = 784
    }
  }
  // The stock index clusters on a recording flat index (the same search as
  // its own flat quantizer, or FAISS's IndexFlatL2 assigner for
  // quantizer_trains_alone = 2) so that P3's premise can be checked.
  faiss::IndexIVF* stock_ivf = ivf_of(stock.get());
  RecordingIndex rec(stock_ivf->d, stock_ivf->quantizer_trains_alone == 2
                                       ? faiss::METRIC_L2
                                       : stock_ivf->quantizer->metric_type);
  stock_ivf->clustering_index = &rec;
  stock->train(n, x.data());
  stock_ivf->clustering_index = nullptr;
  int64_t near_ties = label_differences_along(ctx().get(), rec, c.name);
  // The CPU engine (CI) never gets here with a near-tie: it fails above.
  // On the CUDA engine P3 is not promised where P2 listed a near-tie (each
  // already checked within the bound): a skip that names the count.
  if (near_ties > 0) {
    ASSERT_FALSE(labels_exact()) << c.name << ": " << near_ties
                                 << " labels differ from FAISS's on the CPU engine";
    GTEST_SKIP() << c.name << ": " << near_ties
                 << " near-ties the CUDA engine sums in its own order: P3 does not apply there";
  }
  EXPECT_EQ(rec.labels.empty(), stock_ivf->quantizer_trains_alone == 1)
      << "FAISS ran a flat k-means exactly when the quantizer does not train alone";
  ASSERT_EQ(fkm_faiss_train_index(ctx().get(), bridged.get(), n, x.data()), FKM_OK)
      << fkm_ctx_last_error(ctx().get());
  EXPECT_STREQ(fkm_ctx_last_error(ctx().get()), "");
  train_with_clustering(clustered.get(), n, x.data());
  ASSERT_TRUE(bridged->is_trained);
  ASSERT_TRUE(clustered->is_trained);

  auto ref = trained_tables(stock.get());
  auto viaC = trained_tables(bridged.get());
  auto viaCxx = trained_tables(clustered.get());
  ASSERT_EQ(ref.size(), viaC.size());
  ASSERT_EQ(ref.size(), viaCxx.size());
  std::string summary;
  for (size_t i = 0; i < ref.size(); i++) {
    BitDiff a = compare(ref[i].second, viaC[i].second);
    BitDiff b = compare(ref[i].second, viaCxx[i].second);
    EXPECT_EQ(a.ndiff, 0u) << c.name << " " << ref[i].first << " (fkm_faiss_train_index): "
                           << describe(a);
    EXPECT_EQ(b.ndiff, 0u) << c.name << " " << ref[i].first << " (flashkm::Clustering): "
                           << describe(b);
    summary += "; " + ref[i].first + " " + std::to_string(a.n) + " floats, " +
               std::to_string(a.ndiff + b.ndiff) + " differ";
  }

  // The trained indexes behave identically (HNSW's graph depends on thread
  // timing, so an HNSW quantizer is left out of this part).
  const int64_t nq = dynamic_cast<faiss::IndexHNSW*>(ivf_of(stock.get())->quantizer) ? 0 : 200;
  const int64_t kk = 5;
  if (nq > 0)
    for (auto* idx : {stock.get(), bridged.get(), clustered.get()}) idx->add(n, x.data());
  std::vector<float> D0(nq * kk), D1(nq * kk);
  std::vector<faiss::Index::idx_t> I0(nq * kk), I1(nq * kk);
  if (nq > 0) stock->search(nq, x.data(), kk, D0.data(), I0.data());
  for (auto* idx : {bridged.get(), clustered.get()}) {
    if (nq == 0) break;
    idx->search(nq, x.data(), kk, D1.data(), I1.data());
    EXPECT_EQ(I0, I1) << c.name;
    EXPECT_EQ(compare(D0, D1).ndiff, 0u) << c.name;
  }
  std::printf("P3 %-18s \"%s\" %s n %" PRId64 " d %" PRId64 "%s; %" PRId64
              " searches x %" PRId64 " equal\n",
              c.name, c.factory, c.inner_product ? "IP" : "L2", n, d, summary.c_str(), nq, kk);
}

INSTANTIATE_TEST_SUITE_P(
    Factory, ParityIvf,
    ::testing::Values(IvfCase{"ivf_flat", "IVF64,Flat", false},
                      IvfCase{"ivf_pq", "IVF64,PQ8np", false},
                      // FAISS's polysemous training on flashkm's codebooks
                      IvfCase{"ivf_pq_polysemous", "IVF16,PQ4x4", false, 4000},
                      IvfCase{"ivf_sq8", "IVF64,SQ8", false},
                      IvfCase{"ivf_flat_ip", "IVF64,Flat", true},
                      IvfCase{"opq_ivf_pq", "OPQ8,IVF64,PQ8np", false, 6000},
                      // OPQ to more dimensions than d: FAISS pads with zeros
                      IvfCase{"opq_pad_ivf_pq", "OPQ8_40,IVF32,PQ8x6np", false, 5000},
                      IvfCase{"pca_ivf_flat", "PCA16,IVF32,Flat", false},
                      IvfCase{"ivf_hnsw_flat", "IVF64_HNSW16,Flat", false},
                      IvfCase{"imi_pq_trains_alone", "IMI2x4,PQ8np", false, 8000},
                      // real data with near-ties (issue 15): IVF-PQ. The demo's IVF1024,Flat
                      // is the same k-means as ParityEndToEnd's fashion_60k_k1024_niter10
                      // (60,000 rows, no subsample, 10 iterations): a minute of CI not
                      // spent twice; cli.demo_on_fashion_mnist_small runs the demo itself.
                      IvfCase{"fashion_ivf256_pq16", "IVF256,PQ16", false, 60000, true}),
    [](const ::testing::TestParamInfo<IvfCase>& i) { return i.param.name; });

TEST(ParityIvfErrors, NonIvfIndexIsInvalidArgWithMessage) {
  faiss::IndexFlatL2 flat(8);
  std::vector<float> x(100 * 8, 0.5f);
  EXPECT_EQ(fkm_faiss_train_index(ctx().get(), &flat, 100, x.data()), FKM_ERR_INVALID_ARG);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx().get())).find("IndexIVF"), std::string::npos);
  EXPECT_EQ(fkm_faiss_train_index(ctx().get(), nullptr, 100, x.data()), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_faiss_train_index(nullptr, &flat, 100, x.data()), FKM_ERR_INVALID_ARG);
}

TEST(ParityIvfReport, SaysWhereTheTrainingWentAndWhoRanTheCoarseKmeans) {
  std::vector<float> x = blobs(3000, 16, 24, 5);
  fkm_faiss_train_report r;
  std::memset(&r, 0xff, sizeof r);
  r.struct_size = sizeof r;
  std::unique_ptr<faiss::Index> pq(faiss::index_factory(16, "PCA8,IVF16,PQ4x4np"));
  ASSERT_EQ(fkm_faiss_train_index_report(ctx().get(), pq.get(), 3000, x.data(), &r), FKM_OK)
      << fkm_ctx_last_error(ctx().get());
  EXPECT_EQ(r.coarse_by_flashkm, 1);
  EXPECT_EQ(r.codebooks_by_flashkm, 1);  // IndexIVFPQ on FAISS 1.7: the PQ's k-means too
  EXPECT_EQ(r.pretransform_by_flashkm, 0);  // PCA: no k-means in it
  EXPECT_EQ(r.nlist, 16);
  EXPECT_GE(r.pretransform_seconds, 0.0);
  EXPECT_GT(r.coarse_seconds, 0.0);
  EXPECT_GT(r.rest_seconds, 0.0);  // FAISS's PQ training
  EXPECT_GT(r.codebooks_kmeans_seconds, 0.0);  // of the rest: flashkm's PQ k-means
  EXPECT_GE(r.polysemous_seconds, 0.0);        // np: the tables alone
  EXPECT_LE(r.codebooks_kmeans_seconds + r.polysemous_seconds, r.rest_seconds);
  // with polysemous training (the factory's default for 8-bit codes)
  std::unique_ptr<faiss::Index> poly(faiss::index_factory(16, "IVF16,PQ2"));
  faiss::PolysemousTraining short_pt;  // fewer annealing steps keep the test short
  short_pt.n_iter = 20000;
  dynamic_cast<faiss::IndexIVFPQ*>(poly.get())->polysemous_training = &short_pt;
  ASSERT_EQ(fkm_faiss_train_index_report(ctx().get(), poly.get(), 3000, x.data(), &r), FKM_OK)
      << fkm_ctx_last_error(ctx().get());
  EXPECT_EQ(r.codebooks_by_flashkm, 1);
  EXPECT_GT(r.codebooks_kmeans_seconds, 0.0);
  EXPECT_GT(r.polysemous_seconds, 0.0);
  EXPECT_LE(r.codebooks_kmeans_seconds + r.polysemous_seconds, r.rest_seconds);
  // a caller built with the header before the split gets the fields it has
  fkm_faiss_train_report old;
  std::memset(&old, 0x5a, sizeof old);
  old.struct_size = offsetof(fkm_faiss_train_report, codebooks_kmeans_seconds);
  std::unique_ptr<faiss::Index> again(faiss::index_factory(16, "IVF16,PQ4x4np"));
  ASSERT_EQ(fkm_faiss_train_index_report(ctx().get(), again.get(), 3000, x.data(), &old), FKM_OK)
      << fkm_ctx_last_error(ctx().get());
  EXPECT_EQ(old.codebooks_by_flashkm, 1);
  EXPECT_TRUE(tail_untouched(old, offsetof(fkm_faiss_train_report, codebooks_kmeans_seconds),
                             0x5a));
  std::unique_ptr<faiss::Index> opq(faiss::index_factory(16, "OPQ4,IVF16,PQ4x4np"));
  auto* opq_matrix = dynamic_cast<faiss::OPQMatrix*>(
      dynamic_cast<faiss::IndexPreTransform*>(opq.get())->chain[0]);
  opq_matrix->niter = 3;
  ASSERT_EQ(fkm_faiss_train_index_report(ctx().get(), opq.get(), 3000, x.data(), &r), FKM_OK)
      << fkm_ctx_last_error(ctx().get());
  EXPECT_EQ(r.pretransform_by_flashkm, 1);  // OPQMatrix's PQ trainings on FAISS 1.7
  EXPECT_GT(r.pretransform_seconds, 0.0);
  std::unique_ptr<faiss::Index> imi(faiss::index_factory(16, "IMI2x2,Flat"));
  ASSERT_EQ(fkm_faiss_train_index_report(ctx().get(), imi.get(), 3000, x.data(), &r), FKM_OK);
  EXPECT_EQ(r.coarse_by_flashkm, 0);  // the multi-index quantizer trains alone
  EXPECT_EQ(r.codebooks_by_flashkm, 0);
  EXPECT_EQ(r.coarse_seconds, 0.0);
  EXPECT_GT(r.rest_seconds, 0.0);
  // an unknown struct size is refused, and nothing is trained or written
  std::unique_ptr<faiss::Index> flat(faiss::index_factory(16, "IVF16,Flat"));
  fkm_faiss_train_report bad;
  std::memset(&bad, 0x5a, sizeof bad);
  bad.struct_size = sizeof bad + 8;
  EXPECT_EQ(fkm_faiss_train_index_report(ctx().get(), flat.get(), 3000, x.data(), &bad),
            FKM_ERR_INVALID_ARG);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx().get())).find("struct_size"), std::string::npos);
  EXPECT_FALSE(flat->is_trained);
  EXPECT_EQ(bad.nlist, int64_t(0x5a5a5a5a5a5a5a5a));
}

TEST(ParityIvfErrors, NanInputIsNotFiniteAndIndexStaysUntrained) {
  std::unique_ptr<faiss::Index> index(faiss::index_factory(8, "IVF4,Flat"));
  std::vector<float> x = blobs(200, 8, 4, 3);
  x[123] = std::nanf("");
  EXPECT_EQ(fkm_faiss_train_index(ctx().get(), index.get(), 200, x.data()), FKM_ERR_NOT_FINITE);
  EXPECT_STRNE(fkm_ctx_last_error(ctx().get()), "");
  EXPECT_FALSE(index->is_trained);
}

TEST(ParityIvfErrors, FaissExceptionBecomesErrFaissWithFaissMessage) {
  // 100 points cannot train a PQ of 256 centroids: FAISS throws from
  // train_residual, after flashkm trained the coarse quantizer.
  std::unique_ptr<faiss::Index> index(faiss::index_factory(8, "IVF4,PQ4np"));
  std::vector<float> x = blobs(100, 8, 4, 3);
  EXPECT_EQ(fkm_faiss_train_index(ctx().get(), index.get(), 100, x.data()), FKM_ERR_FAISS);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx().get())).find("Number of training points"),
            std::string::npos)
      << fkm_ctx_last_error(ctx().get());
  // The context stays usable: the next call succeeds and clears the message.
  std::vector<float> y = blobs(2000, 8, 4, 3);
  std::unique_ptr<faiss::Index> ok(faiss::index_factory(8, "IVF4,Flat"));
  EXPECT_EQ(fkm_faiss_train_index(ctx().get(), ok.get(), 2000, y.data()), FKM_OK);
  EXPECT_STREQ(fkm_ctx_last_error(ctx().get()), "");
}

TEST(ParityIvfErrors, ClusteringTrainRejectsFastAssignMode) {
  fkm_params p;
  fkm_params_init(&p);
  p.assign_mode = FKM_ASSIGN_FAST;
  std::vector<float> x = blobs(200, 8, 4, 3), c(4 * 8);
  EXPECT_EQ(fkm_faiss_clustering_train(ctx().get(), &p, 200, 8, 4, x.data(), nullptr, nullptr,
                                       c.data(), 0, nullptr, 0, nullptr),
            FKM_ERR_INVALID_ARG);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx().get())).find("assign_mode"), std::string::npos);
}

TEST(ParityIvfErrors, ClusteringTrainRejectsUnknownStructSizeAndWritesNothing) {
  fkm_params p;
  fkm_params_init(&p);
  std::vector<float> x = blobs(200, 8, 4, 3), c(4 * 8, -7.0f);
  for (size_t size : {size_t(0), sizeof(fkm_params) + 8}) {
    p.struct_size = size;
    EXPECT_EQ(fkm_faiss_clustering_train(ctx().get(), &p, 200, 8, 4, x.data(), nullptr, nullptr,
                                         c.data(), 0, nullptr, 0, nullptr),
              FKM_ERR_INVALID_ARG);
    EXPECT_NE(std::string(fkm_ctx_last_error(ctx().get())).find("struct_size"), std::string::npos);
  }
  for (float v : c) ASSERT_EQ(v, -7.0f);
}

// train_q1's rules, the same in both doors (python/tests/test_train_index.py
// has the Python twins): ivf->cp as it is, the clustering_index's metric, an
// approximate clustering_index left to FAISS.
namespace train_q1 {

// Searches like a flat index but is not one: a stand-in for HNSW, a GPU
// index or another approximate clustering_index (deterministic, so that
// the two trainings can be compared). Counts its searches.
struct NotFlat : faiss::Index {
  faiss::IndexFlatL2 flat;
  mutable int searches = 0;
  explicit NotFlat(int64_t d) : faiss::Index(d, faiss::METRIC_L2), flat(d) {}
  void add(idx_t n, const float* x) override {
    flat.add(n, x);
    ntotal = flat.ntotal;
  }
  void reset() override {
    flat.reset();
    ntotal = 0;
  }
  void search(idx_t n, const float* x, idx_t k, float* distances, idx_t* labels,
              const faiss::SearchParameters* params = nullptr) const override {
    searches++;
    flat.search(n, x, k, distances, labels, params);
  }
};

// Trains stock and bridged copies of factory after adjust(ivf); their
// quantizers must hold the same centroids.
template <typename Adjust>
void same_quantizers(const char* factory, faiss::MetricType mt, Adjust adjust) {
  std::vector<float> x = blobs(4000, 16, 24, 11, 2.5f);
  std::unique_ptr<faiss::Index> stock(faiss::index_factory(16, factory, mt));
  std::unique_ptr<faiss::Index> bridged(faiss::index_factory(16, factory, mt));
  adjust(ivf_of(stock.get()));
  adjust(ivf_of(bridged.get()));
  stock->train(4000, x.data());
  ASSERT_EQ(fkm_faiss_train_index(ctx().get(), bridged.get(), 4000, x.data()), FKM_OK)
      << fkm_ctx_last_error(ctx().get());
  auto a = trained_tables(stock.get()), b = trained_tables(bridged.get());
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); i++)
    EXPECT_EQ(compare(a[i].second, b[i].second).ndiff, 0u) << factory << " " << a[i].first;
}

TEST(ParityTrainQ1, InnerProductIvfWithSphericalClearedIsNotSpherical) {
  same_quantizers("IVF16,Flat", faiss::METRIC_INNER_PRODUCT, [](faiss::IndexIVF* ivf) {
    ASSERT_TRUE(ivf->cp.spherical);  // FAISS's IVF constructor set it
    ivf->cp.spherical = false;
  });
}

TEST(ParityTrainQ1, FlatClusteringIndexSetsTheMetric) {
  std::vector<std::unique_ptr<faiss::IndexFlatIP>> keep;
  same_quantizers("IVF16,Flat", faiss::METRIC_L2, [&](faiss::IndexIVF* ivf) {
    keep.emplace_back(new faiss::IndexFlatIP(ivf->d));
    ivf->clustering_index = keep.back().get();
  });
}

TEST(ParityTrainQ1, ApproximateClusteringIndexIsLeftToFaiss) {
  std::vector<std::unique_ptr<NotFlat>> keep;
  same_quantizers("IVF16,Flat", faiss::METRIC_L2, [&](faiss::IndexIVF* ivf) {
    keep.emplace_back(new NotFlat(ivf->d));
    ivf->clustering_index = keep.back().get();
  });
  ASSERT_EQ(keep.size(), 2u);
  // FAISS's own k-means searched the bridged index's clustering_index too
  EXPECT_GT(keep[0]->searches, 0);
  EXPECT_EQ(keep[0]->searches, keep[1]->searches);
}

}  // namespace train_q1

}  // namespace
}  // namespace parity

