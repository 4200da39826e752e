// fkm_launch_group (kernels/group.cu, compiled into this test: the
// launchers are internal to libflashkm) on batches: the counting sort a
// problem equals the radix sort of the composed keys, rows, hist and
// offsets, bit for bit: labels -1 among them (after every label of every
// problem, in row order), empty bins, slices that are not multiples of a
// warp, a single row a problem, bins enough that fewer warps take slices,
// and problems long enough for several blocks each (a warp's slice at most
// 2048 rows); a single problem and bins past shared memory take the radix
// sort. Skips without a GPU.
#include <gtest/gtest.h>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "have_gpu.h"
#include "group.cuh"

namespace {

struct Grouped {
  std::vector<int32_t> rows, hist, offsets, keys;
};

// One fkm_launch_group over labels of `problems` problems (kp centroids
// each); sorted_keys starts as 0x7f7f7f7f everywhere.
Grouped group(const std::vector<int32_t>& labels, int64_t problems, int64_t kp, int radix_only) {
  const int64_t n = (int64_t)labels.size(), k = problems * kp;
  size_t temp_bytes = 0;
  EXPECT_EQ(fkm_group_temp_bytes(n, k, problems, &temp_bytes), cudaSuccess);
  int32_t *dl = nullptr, *iota = nullptr, *composed = nullptr, *keys = nullptr, *rows = nullptr,
          *hist = nullptr, *offsets = nullptr;
  void* temp = nullptr;
  for (int32_t** p : {&dl, &iota, &composed, &keys, &rows})
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(p), sizeof(int32_t) * (size_t)n), cudaSuccess);
  for (int32_t** p : {&hist, &offsets})
    EXPECT_EQ(cudaMalloc(reinterpret_cast<void**>(p), sizeof(int32_t) * (size_t)k), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&temp, temp_bytes), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(dl, labels.data(), sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice),
            cudaSuccess);
  EXPECT_EQ(cudaMemset(keys, 0x7f, sizeof(int32_t) * (size_t)n), cudaSuccess);
  EXPECT_EQ(fkm_launch_iota(iota, n, nullptr), cudaSuccess);
  fkm_group_args a = {};
  a.labels = dl;
  a.iota = iota;
  a.n = n;
  a.k = k;
  a.problems = problems;
  a.composed = composed;
  a.sorted_keys = keys;
  a.rows = rows;
  a.hist = hist;
  a.offsets = offsets;
  a.temp = temp;
  a.temp_bytes = temp_bytes;
  a.radix_only = radix_only;
  EXPECT_EQ(fkm_launch_group(&a, nullptr), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  Grouped g{std::vector<int32_t>((size_t)n), std::vector<int32_t>((size_t)k),
            std::vector<int32_t>((size_t)k), std::vector<int32_t>((size_t)n)};
  EXPECT_EQ(cudaMemcpy(g.rows.data(), rows, sizeof(int32_t) * (size_t)n, cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(g.hist.data(), hist, sizeof(int32_t) * (size_t)k, cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(g.offsets.data(), offsets, sizeof(int32_t) * (size_t)k,
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(cudaMemcpy(g.keys.data(), keys, sizeof(int32_t) * (size_t)n, cudaMemcpyDeviceToHost),
            cudaSuccess);
  for (void* p : {(void*)dl, (void*)iota, (void*)composed, (void*)keys, (void*)rows,
                  (void*)hist, (void*)offsets, temp})
    cudaFree(p);
  return g;
}

struct Case {
  const char* name;
  int64_t problems, m, kp;
  double negative; /* share of labels -1 */
  int used_bins;   /* labels drawn from the first used_bins only (0: all) */
};

class GpuGroup : public ::testing::TestWithParam<Case> {};

TEST_P(GpuGroup, CountingSortEqualsTheRadixSortOfComposedKeys) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  const Case& c = GetParam();
  std::mt19937 rng(11u + (uint32_t)c.kp);
  const int64_t bins = c.used_bins ? c.used_bins : c.kp;
  std::uniform_int_distribution<int64_t> label(0, bins - 1);
  std::bernoulli_distribution negative(c.negative);
  std::vector<int32_t> labels((size_t)(c.problems * c.m));
  for (int32_t& l : labels) l = negative(rng) ? -1 : (int32_t)label(rng);
  const Grouped radix = group(labels, c.problems, c.kp, 1);
  const Grouped counted = group(labels, c.problems, c.kp, 0);
  EXPECT_EQ(radix.rows, counted.rows) << c.name;
  EXPECT_EQ(radix.hist, counted.hist) << c.name;
  EXPECT_EQ(radix.offsets, counted.offsets) << c.name;
  // the counting sort ran: it leaves sorted_keys as they were
  EXPECT_EQ(counted.keys, std::vector<int32_t>(labels.size(), 0x7f7f7f7f)) << c.name;
  EXPECT_NE(radix.keys, counted.keys) << c.name;
}

// A single problem, and bins too many for a warp's counts in shared memory
// (20,000 centroids a problem), take the radix sort: it writes sorted_keys.
TEST(GpuGroupPlan, OneProblemAndBinsPastSharedMemoryTakeTheRadixSort) {
  if (!have_gpu()) GTEST_SKIP() << "no CUDA device";
  std::mt19937 rng(5u);
  for (const auto& [problems, kp] : {std::pair<int64_t, int64_t>{1, 16}, {2, 20000}}) {
    std::uniform_int_distribution<int32_t> label(0, (int32_t)kp - 1);
    std::vector<int32_t> labels((size_t)(problems * 5000));
    for (int32_t& l : labels) l = label(rng);
    const Grouped g = group(labels, problems, kp, 0);
    EXPECT_NE(g.keys, std::vector<int32_t>(labels.size(), 0x7f7f7f7f)) << problems;
    EXPECT_EQ(g.rows, group(labels, problems, kp, 1).rows) << problems;
  }
}

INSTANTIATE_TEST_SUITE_P(
    Batches, GpuGroup,
    ::testing::Values(Case{"two_problems_one_row_each", 2, 1, 3, 0.0, 0},
                      Case{"three_problems_negatives", 3, 1000, 7, 0.05, 0},
                      Case{"slices_not_warp_multiples", 5, 257, 8, 0.01, 0},
                      Case{"empty_bins", 4, 3000, 64, 0.0, 10},
                      Case{"online_b64_k64", 64, 8192, 64, 0.0, 0},
                      Case{"online_b1024_k8", 1024, 256, 8, 0.02, 0},
                      Case{"k1000_eight_warps", 3, 16000, 1000, 0.01, 0},
                      Case{"k3000_three_warps", 2, 6000, 3000, 0.0, 0},
                      Case{"three_blocks_a_problem", 3, 2 * 8 * 2048 + 5, 16, 0.02, 0},
                      Case{"k1000_75600_rows_five_blocks", 4, 75600, 1000, 0.01, 0},
                      Case{"k4096_two_warps_25_blocks", 2, 100000, 4096, 0.0, 3000}),
    [](const ::testing::TestParamInfo<Case>& i) { return std::string(i.param.name); });

}  // namespace
