// fkm_launch_split_plan (kernels/update.cu, compiled into this test), the
// plan the loop on the device makes a block a problem, against the host's
// fkm_split_pairs (kernels/split_plan.h), the plan the host loop makes:
// the same pairs, split counts and updated counts, bit for bit. Cases: half
// of 8192 clusters empty with about kk / 2 tries each (the draws cross many
// twists), fractional weighted counts, counts that never pass a try (every
// count <= 1: 10 kk tries, then the first largest, ties included), frozen
// rows, several problems at once, one and two movable clusters, denominators
// near and far. Skips without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "have_gpu.h"
#include "split_plan.h"
#include "update.cuh"

namespace {

struct Plan {
  std::vector<float> counts;
  std::vector<int64_t> pairs;
  std::vector<long long> nsplit;
};

// counts: (problems, k); the host plans every problem's movable part.
Plan on_host(std::vector<float> counts, int64_t problems, int64_t k, int64_t k_frozen,
             int64_t n_train) {
  Plan r;
  r.pairs.assign((size_t)(2 * problems * k), -1);
  r.nsplit.resize((size_t)problems);
  fkm_mt19937 rng;
  for (int64_t p = 0; p < problems; p++)
    r.nsplit[p] = fkm_split_pairs(counts.data() + p * k + k_frozen, k - k_frozen, n_train, &rng,
                                  r.pairs.data() + 2 * p * k);
  r.counts = counts;
  return r;
}

Plan on_device(const std::vector<float> &counts, int64_t problems, int64_t k, int64_t k_frozen,
               int64_t n_train) {
  Plan r;
  r.counts.resize(counts.size());
  r.pairs.assign((size_t)(2 * problems * k), -1);
  r.nsplit.assign((size_t)problems, -1);
  float *dc = nullptr;
  int64_t *dp = nullptr;
  long long *dn = nullptr;
  EXPECT_EQ(cudaMalloc((void **)&dc, sizeof(float) * counts.size()), cudaSuccess);
  EXPECT_EQ(cudaMalloc((void **)&dp, sizeof(int64_t) * r.pairs.size()), cudaSuccess);
  EXPECT_EQ(cudaMalloc((void **)&dn, sizeof(long long) * r.nsplit.size()), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(dc, counts.data(), sizeof(float) * counts.size(), cudaMemcpyHostToDevice),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(dp, r.pairs.data(), sizeof(int64_t) * r.pairs.size(),
                       cudaMemcpyHostToDevice),
            cudaSuccess);
  EXPECT_EQ(fkm_launch_split_plan(dc, problems, k, k_frozen, n_train, dp, dn, 0), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(r.counts.data(), dc, sizeof(float) * counts.size(), cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(r.pairs.data(), dp, sizeof(int64_t) * r.pairs.size(),
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(r.nsplit.data(), dn, sizeof(long long) * r.nsplit.size(),
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  cudaFree(dc);
  cudaFree(dp);
  cudaFree(dn);
  return r;
}

// Plans on both sides and compares; returns the host's total of splits.
long long check(const std::vector<float> &counts, int64_t problems, int64_t k, int64_t k_frozen,
                int64_t n_train) {
  const Plan h = on_host(counts, problems, k, k_frozen, n_train);
  const Plan g = on_device(counts, problems, k, k_frozen, n_train);
  long long total = 0;
  for (int64_t p = 0; p < problems; p++) {
    EXPECT_EQ(g.nsplit[p], h.nsplit[p]) << "problem " << p;
    total += h.nsplit[p];
  }
  EXPECT_EQ(g.pairs, h.pairs);
  EXPECT_EQ(std::memcmp(g.counts.data(), h.counts.data(), sizeof(float) * h.counts.size()), 0);
  return total;
}

// The cases where the tries are many (tens of thousands of 256-try rounds):
// too slow for racecheck, which takes the small cases below.
TEST(GpuSplitPlan, EqualsTheHostPlanWhereTriesAreMany) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 gen(5);
  {  // half of 8192 clusters empty, the rest 1..5 points: about kk / 2 tries each
    const int64_t k = 8192;
    std::vector<float> c((size_t)k);
    int64_t n = 0;
    for (auto &v : c) {
      v = gen() % 2 ? 0.0f : (float)(1 + gen() % 5);
      n += (int64_t)v;
    }
    EXPECT_GT(check(c, 1, k, 0, n), 3900);
  }
  {  // every count <= 1: no try passes, 10 kk draws then the first largest (ties at 1)
    const int64_t k = 300;
    std::vector<float> c((size_t)k);
    for (size_t i = 0; i < c.size(); i++) c[i] = i % 3 == 0 ? 0.0f : (i % 7 == 0 ? 1.0f : 0.5f);
    EXPECT_GT(check(c, 1, k, 0, 1000), 50);
  }
}

TEST(GpuSplitPlan, EqualsTheHostPlanOnSmallCases) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 gen(6);
  {  // fractional weighted counts, a few empty, four problems, three frozen rows each
    const int64_t k = 1000, B = 4;
    std::uniform_real_distribution<float> w(0.0f, 3.0f);
    std::vector<float> c((size_t)(B * k));
    for (auto &v : c) v = gen() % 17 == 0 ? 0.0f : w(gen);
    EXPECT_GT(check(c, B, k, 3, 5000), 100);
  }
  {  // every count <= 1, as above on 30 clusters: 300 draws (two rounds), then the fallback
    const int64_t k = 30;
    std::vector<float> c((size_t)k);
    for (size_t i = 0; i < c.size(); i++) c[i] = i % 3 == 0 ? 0.0f : (i % 7 == 0 ? 1.0f : 0.5f);
    EXPECT_GT(check(c, 1, k, 0, 100), 5);
  }
  {  // one and two movable clusters, one empty; a denominator of one
    EXPECT_EQ(check({0.0f}, 1, 1, 0, 2), 1);
    EXPECT_EQ(check({7.0f, 0.0f, 3.0f}, 1, 3, 1, 3), 1);
  }
  {  // no empty cluster: nothing moves; a problem of k = 257 (a block and one)
    std::vector<float> c(257, 2.0f);
    EXPECT_EQ(check(c, 1, 257, 0, 600), 0);
    c[256] = 0.0f;
    c[0] = 0.0f;
    EXPECT_EQ(check(c, 1, 257, 0, 600), 2);
  }
}

}  // namespace
