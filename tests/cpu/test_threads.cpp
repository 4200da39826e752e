// The thread-safety contract of include/flashkm.h: distinct contexts are
// independent (several threads train at once, each with its own OpenMP
// team), and one context used by several threads in turn (the caller
// serialises, as the Python door does) gives each the serial result. The
// sanitizer script runs these under ThreadSanitizer (scripts/test-sanitizers.sh).
#include <gtest/gtest.h>

#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "fixtures.h"
#include "flashkm.h"

namespace {

const int64_t N = 3000, D = 12, K = 24;

struct TrainRun {
  std::vector<float> centroids = std::vector<float>(K * D);
  std::vector<int64_t> labels = std::vector<int64_t>(N);
  std::vector<fkm_iteration_stats> stats = std::vector<fkm_iteration_stats>(16);
  int64_t n_stats = 0;
  fkm_status status = FKM_ERR_INTERNAL;
};

fkm_params params(int variant) {
  fkm_params p;
  fkm_params_init(&p);
  p.niter = 6;
  p.max_points_per_centroid = 100;  // subsampled: the permutation runs too
  if (variant % 2) {
    fkm_profile_parse("faiss-1.15.1-avx2", &p.profile);
    p.init_method = FKM_INIT_KMEANS_PLUS_PLUS;
    p.early_stop_threshold = 0.0;
  }
  return p;
}

void train(fkm_ctx* ctx, const fkm_params& p, const std::vector<float>& x, TrainRun* r) {
  std::memset(r->stats.data(), 0, r->stats.size() * sizeof r->stats[0]);
  r->status = fkm_train(ctx, &p, N, D, K, FKM_DTYPE_F32, x.data(), nullptr, r->centroids.data(),
                        0, r->labels.data(), nullptr, r->stats.data(),
                        (int64_t)r->stats.size(), &r->n_stats);
}

void expect_same(const TrainRun& a, const TrainRun& b) {
  ASSERT_EQ(a.status, FKM_OK);
  ASSERT_EQ(b.status, FKM_OK);
  EXPECT_EQ(0, std::memcmp(a.centroids.data(), b.centroids.data(), sizeof(float) * K * D));
  EXPECT_EQ(a.labels, b.labels);
  ASSERT_EQ(a.n_stats, b.n_stats);
  for (int64_t i = 0; i < a.n_stats; i++)
    EXPECT_EQ(fixtures::bits(a.stats[i].obj), fixtures::bits(b.stats[i].obj)) << i;
}

TEST(Threads, DistinctContextsTrainAtOnce) {
  const auto x = fixtures::blobs(N, D, 10, 7);
  const int T = 4;
  std::vector<TrainRun> serial(T), par(T);
  for (int t = 0; t < T; t++) {
    fkm_ctx* ctx = nullptr;
    ASSERT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx), FKM_OK);
    train(ctx, params(t), x, &serial[t]);
    fkm_ctx_destroy(ctx);
  }
  std::vector<std::thread> threads;
  for (int t = 0; t < T; t++)
    threads.emplace_back([&, t] {
      fkm_ctx* ctx = nullptr;
      if (fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx) != FKM_OK) return;
      fkm_ctx_set_num_threads(ctx, 2);
      train(ctx, params(t), x, &par[t]);
      fkm_ctx_destroy(ctx);
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < T; t++) expect_same(serial[t], par[t]);
}

TEST(Threads, OneContextSerialisedByTheCallerGivesEachTheSerialResult) {
  const auto x = fixtures::blobs(N, D, 10, 8);
  fkm_ctx* ctx = nullptr;
  ASSERT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx), FKM_OK);
  ASSERT_EQ(fkm_ctx_set_num_threads(ctx, 2), FKM_OK);
  const int T = 3;
  std::vector<TrainRun> serial(T), par(T);
  for (int t = 0; t < T; t++) train(ctx, params(t), x, &serial[t]);
  std::mutex m;
  std::vector<std::thread> threads;
  for (int t = 0; t < T; t++)
    threads.emplace_back([&, t] {
      std::lock_guard<std::mutex> hold(m);
      train(ctx, params(t), x, &par[t]);
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < T; t++) expect_same(serial[t], par[t]);
  fkm_ctx_destroy(ctx);
}

}  // namespace
