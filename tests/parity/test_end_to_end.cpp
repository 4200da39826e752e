// P3, end to end (docs/contract.md section 9): flashkm::Clustering and
// fkm_faiss_clustering_train against stock faiss::Clustering::train on the
// same inputs, every configuration of configs.h plus FAISS's corner cases.
// FAISS's run is recorded and fkm_assign checked against FAISS's labels on
// each of its centroid tables; flashkm's run must then follow FAISS's
// exactly: centroids, index contents, nsplit and imbalance factors equal bit
// for bit. On the CPU engine, which sums the BLAS path's dot products with
// FAISS's own BLAS, every label agrees, near-ties included (Fashion-MNIST's
// integer pixels have them in most runs). On the CUDA engine a near-tie may
// still differ (issue 15's GPU part): it is listed, checked against FAISS's
// rounding bound, and the configuration skipped there.
#include <faiss/impl/AuxIndexStructures.h>
#include <flashkm/clustering.h>

#include "configs.h"
#include "flashkm_faiss.h"

namespace parity {
namespace {

void compare_stats(const char* name, const std::vector<faiss::ClusteringIterationStats>& f,
                   const std::vector<faiss::ClusteringIterationStats>& o, int64_t* obj_same) {
  ASSERT_EQ(f.size(), o.size()) << name;
  for (size_t i = 0; i < f.size(); i++) {
    EXPECT_EQ(f[i].nsplit, o[i].nsplit) << name << " iteration " << i;
    EXPECT_EQ(std::memcmp(&f[i].imbalance_factor, &o[i].imbalance_factor, sizeof(double)), 0)
        << name << " iteration " << i << ": " << f[i].imbalance_factor << " vs "
        << o[i].imbalance_factor;
    *obj_same += same_bits(f[i].obj, o[i].obj);
  }
}

void end_to_end(const Config& c) {
  ASSERT_NE(ctx().get(), nullptr);
  Problem pb = make_problem(c);
  ASSERT_TRUE(pb.ok) << c.name << ": Fashion-MNIST not found: install Debian's dataset-fashion-mnist";
  const float* w = c.weights ? pb.weights.data() : nullptr;

  faiss::Clustering fc(int(c.d), int(c.k), faiss_params(c));
  fc.centroids = pb.init;
  RecordingIndex fi(c.d, metric_of(c));
  fc.train(c.n, pb.x.data(), fi, w);
  int64_t near_ties = label_differences_along(ctx().get(), fi, c.name);
  // The CPU engine (CI) never gets here with a near-tie: it fails above.
  // On the CUDA engine P3 is not promised where P2 listed a near-tie (each
  // already checked within the bound): a skip that names the count.
  if (near_ties > 0) {
    ASSERT_FALSE(labels_exact()) << c.name << ": " << near_ties
                                 << " labels differ from FAISS's on the CPU engine";
    GTEST_SKIP() << c.name << ": " << near_ties
                 << " near-ties the CUDA engine sums in its own order (listed above, each "
                    "within FAISS's rounding): P3 does not apply to this fixture there";
  }

  flashkm::Clustering fl(int(c.d), int(c.k), faiss_params(c), ctx().get());
  fl.centroids = pb.init;
  faiss::IndexFlat li(c.d, metric_of(c));
  fl.train(c.n, pb.x.data(), li, w);

  BitDiff dc = compare(fc.centroids, fl.centroids);
  EXPECT_EQ(dc.ndiff, 0u) << c.name << " flashkm::Clustering centroids: " << describe(dc)
                          << " (see P1 ParityLockstep for the same configuration)";
  ASSERT_EQ(li.ntotal, c.k);
  BitDiff di = compare(fi.get_xb(), li.get_xb(), size_t(c.k * c.d));
  EXPECT_EQ(di.ndiff, 0u) << c.name << " index contents: " << describe(di);
  int64_t obj_same = 0;
  compare_stats(c.name, fc.iteration_stats, fl.iteration_stats, &obj_same);

  // The C entry point, same inputs.
  fkm_params p = fkm_params_of(c);
  std::vector<float> cent(size_t(c.k * c.d), -1.0f);
  std::copy(pb.init.begin(), pb.init.end(), cent.begin());
  std::vector<fkm_iteration_stats> st(static_cast<size_t>(std::max(1, c.niter * c.nredo)));
  int64_t ns = -1;
  faiss::IndexFlat ci(c.d, metric_of(c));
  ASSERT_EQ(fkm_faiss_clustering_train(ctx().get(), &p, c.n, c.d, c.k, pb.x.data(), w, &ci,
                                       cent.data(), c.n_init, st.data(), int64_t(st.size()), &ns),
            FKM_OK)
      << fkm_ctx_last_error(ctx().get());
  BitDiff dC = compare(fc.centroids, cent);
  EXPECT_EQ(dC.ndiff, 0u) << c.name << " fkm_faiss_clustering_train: " << describe(dC);
  EXPECT_EQ(ns, int64_t(fc.iteration_stats.size()));
  EXPECT_EQ(compare(fi.get_xb(), ci.get_xb(), size_t(c.k * c.d)).ndiff, 0u);

  std::printf("P3 %-24s n %" PRId64 " d %" PRId64 " k %" PRId64
              " niter %d nredo %d: centroids %s; index equal; %zu stats entries, nsplit and "
              "imbalance equal, objective bits equal on %" PRId64 "\n",
              c.name, c.n, c.d, c.k, c.niter, c.nredo, describe(dc).c_str(),
              fc.iteration_stats.size(), obj_same);
}

class ParityEndToEnd : public ::testing::TestWithParam<Config> {};

TEST_P(ParityEndToEnd, CentroidsStatsAndIndexEqualFaissClustering) { end_to_end(GetParam()); }

std::vector<Config> corner_configs() {
  std::vector<Config> v;
  Config c{"n_equals_k", 50, 8, 50};  // FAISS copies the points, one stats entry
  v.push_back(c);
  c = Config{"niter_0", 3000, 8, 30};  // FAISS leaves the post-processed init
  c.niter = 0;
  v.push_back(c);
  c = Config{"niter_0_nredo_2", 3000, 8, 30};
  c.niter = 0;
  c.nredo = 2;
  v.push_back(c);
  c = Config{"few_points_warning", 500, 8, 30};  // below min_points_per_centroid
  v.push_back(c);
  c = Config{"tiny_n_below_blas_threshold", 19, 4, 3};  // FAISS's non-BLAS path
  c.niter = 5;
  v.push_back(c);
  c = Config{"subsampled_to_k", 300, 8, 30};  // max_points_per_centroid 1: n_train == k
  c.max_points = 1;
  v.push_back(c);
  c = Config{"spherical_l2_int", 4000, 8, 20};
  c.spherical = true;
  c.int_centroids = true;
  c.scale = 30.0f;
  v.push_back(c);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Synthetic, ParityEndToEnd, ::testing::ValuesIn(synthetic_configs()),
                         [](const ::testing::TestParamInfo<Config>& i) { return i.param.name; });
INSTANTIATE_TEST_SUITE_P(Corner, ParityEndToEnd, ::testing::ValuesIn(corner_configs()),
                         [](const ::testing::TestParamInfo<Config>& i) { return i.param.name; });
INSTANTIATE_TEST_SUITE_P(RealData, ParityEndToEnd, ::testing::Values(fashion_config()),
                         [](const ::testing::TestParamInfo<Config>& i) { return i.param.name; });
INSTANTIATE_TEST_SUITE_P(FashionMnist, ParityEndToEnd, ::testing::ValuesIn(fashion_configs()),
                         [](const ::testing::TestParamInfo<Config>& i) { return i.param.name; });

TEST(ParityEndToEndApi, SecondTrainStartsFromCentroidsAndAppendsStatsLikeFaiss) {
  Config c{"twice", 4000, 8, 20};
  Problem pb = make_problem(c);
  faiss::Clustering fc(int(c.d), int(c.k), faiss_params(c));
  flashkm::Clustering fl(int(c.d), int(c.k), faiss_params(c), ctx().get());
  faiss::IndexFlatL2 fi(c.d), li(c.d);
  for (int round = 0; round < 2; round++) {
    fc.train(c.n, pb.x.data(), fi, nullptr);
    fl.train(c.n, pb.x.data(), li, nullptr);
  }
  EXPECT_EQ(fl.iteration_stats.size(), size_t(2 * c.niter));
  EXPECT_EQ(compare(fc.centroids, fl.centroids).ndiff, 0u);
  int64_t obj_same = 0;
  compare_stats("twice", fc.iteration_stats, fl.iteration_stats, &obj_same);
}

TEST(ParityEndToEndApi, FlashkmErrorIsAFaissExceptionAndLeavesStateUnchanged) {
  flashkm::Clustering fl(8, 20, ctx().get());
  faiss::IndexFlatL2 index(8);
  std::vector<float> x(10 * 8, 1.0f);
  try {
    fl.train(10, x.data(), index);  // n < k
    FAIL() << "no exception";
  } catch (const faiss::FaissException& e) {
    EXPECT_NE(std::string(e.what()).find("Number of training points"), std::string::npos)
        << e.what();
  }
  std::vector<float> bad(100 * 8, 1.0f);
  bad[17] = std::nanf("");
  try {
    fl.train(100, bad.data(), index);
    FAIL() << "no exception";
  } catch (const flashkm::Error& e) {
    EXPECT_EQ(e.status(), FKM_ERR_NOT_FINITE) << e.what();
  }
  EXPECT_TRUE(fl.centroids.empty());
  EXPECT_TRUE(fl.iteration_stats.empty());
  EXPECT_EQ(index.ntotal, 0);
}

TEST(ParityEndToEndApi, OtherMetricIsRejectedWithUnsupported) {
  flashkm::Clustering fl(8, 4, ctx().get());
  faiss::IndexFlat index(8, faiss::METRIC_L1);
  std::vector<float> x(100 * 8, 1.0f);
  try {
    fl.train(100, x.data(), index);
    FAIL() << "no exception";
  } catch (const flashkm::Error& e) {
    EXPECT_EQ(e.status(), FKM_ERR_UNSUPPORTED) << e.what();
  }
}

struct Collected {
  std::vector<std::pair<fkm_log_level, std::string>> lines;
};

void collect(void* user, fkm_log_level level, const char* msg) {
  static_cast<Collected*>(user)->lines.emplace_back(level, msg);
}

TEST(ParityEndToEndApi, VerboseAndWarningsGoToTheLogCallbackNotToStdoutOrStderr) {
  Config c{"logging", 500, 8, 30};  // 500 < 30 * 39: FAISS warns on stderr
  Problem pb = make_problem(c);
  faiss::ClusteringParameters cp = faiss_params(c);
  cp.verbose = true;
  flashkm::Clustering fl(int(c.d), int(c.k), cp, ctx().get());
  Collected got;
  fl.log = collect;
  fl.log_user = &got;
  faiss::IndexFlatL2 index(c.d);
  ::testing::internal::CaptureStdout();
  ::testing::internal::CaptureStderr();
  fl.train(c.n, pb.x.data(), index);
  std::string out = ::testing::internal::GetCapturedStdout();
  std::string err = ::testing::internal::GetCapturedStderr();
  EXPECT_EQ(out, "");
  EXPECT_EQ(err, "");
  int warnings = 0;
  for (auto& l : got.lines) warnings += l.first == FKM_LOG_WARNING;
  EXPECT_GE(warnings, 1) << "no warning about too few points per centroid";
  EXPECT_GT(got.lines.size(), size_t(warnings)) << "verbose produced no informational line";
}

struct InterruptAfter : faiss::InterruptCallback {
  int calls = 0, limit;
  explicit InterruptAfter(int limit) : limit(limit) {}
  bool want_interrupt() override { return ++calls > limit; }
};

TEST(ParityEndToEndApi, FaissInterruptCallbackStopsTrainingWithInterrupted) {
  Config c{"interrupted", 4000, 8, 20};
  Problem pb = make_problem(c);
  flashkm::Clustering fl(int(c.d), int(c.k), faiss_params(c), ctx().get());
  faiss::IndexFlatL2 index(c.d);
  auto* cb = new InterruptAfter(3);
  faiss::InterruptCallback::instance.reset(cb);
  try {
    fl.train(c.n, pb.x.data(), index);
    ADD_FAILURE() << "no exception";
  } catch (const flashkm::Error& e) {
    EXPECT_EQ(e.status(), FKM_ERR_INTERRUPTED) << e.what();
  }
  EXPECT_EQ(cb->calls, 4);  // polled once per iteration, stopped at the 4th
  faiss::InterruptCallback::clear_instance();
  EXPECT_TRUE(fl.centroids.empty());
  EXPECT_EQ(index.ntotal, 0);
  fl.train(c.n, pb.x.data(), index);  // and works again without the callback
  EXPECT_EQ(index.ntotal, c.k);
}

}  // namespace
}  // namespace parity
