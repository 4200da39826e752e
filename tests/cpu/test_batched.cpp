// fkm_train_batched on the CPU reference: every problem's outputs are the
// bits of a separate fkm_train run of that problem (the engine runs the
// problems in lockstep), and the batch-level behaviours: progress order,
// all-or-nothing outputs, errors that name the problem; and fkm_pq_slices,
// which cuts a PQ's training set into its sub-quantizers' problems.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "batched_cases.h"

namespace {

struct Ctx {
  fkm_ctx *c = nullptr;
  Ctx() { EXPECT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &c), FKM_OK); }
  ~Ctx() { fkm_ctx_destroy(c); }
};

class Batched : public ::testing::TestWithParam<batched::Case> {};

TEST_P(Batched, EqualsSeparateRuns) {
  const batched::Case &c = GetParam();
  const batched::Data s = batched::make(c);
  Ctx ctx;
  batched::expect_equal(c, batched::run_batched(ctx.c, c, s), batched::run_separately(ctx.c, c, s));
}

INSTANTIATE_TEST_SUITE_P(Cpu, Batched, ::testing::ValuesIn(batched::cases()),
                         [](const ::testing::TestParamInfo<batched::Case> &i) {
                           return std::string(i.param.name);
                         });

TEST(BatchedLoop, ProgressSeesEveryProblemOfAnIterationBeforeTheNext) {
  batched::Case c{"progress", 3, 300, 4, 5};
  c.niter = 3;
  c.nredo = 2;
  const batched::Data s = batched::make(c);
  fkm_params p = batched::params(c);
  std::vector<std::pair<int, int>> seen;
  p.progress = [](void *u, int redo, int it, const fkm_iteration_stats *) {
    static_cast<std::vector<std::pair<int, int>> *>(u)->push_back({redo, it});
    return 0;
  };
  p.progress_user = &seen;
  Ctx ctx;
  std::vector<float> cent(s.centroids);
  ASSERT_EQ(fkm_train_batched(ctx.c, &p, c.batch, c.n, c.d, c.k, FKM_DTYPE_F32, s.x.data(),
                              nullptr, cent.data(), 0, nullptr, nullptr, nullptr, 0, nullptr),
            FKM_OK);
  ASSERT_EQ(seen.size(), 18u);
  for (size_t i = 0; i < seen.size(); i++)
    EXPECT_EQ(seen[i], (std::pair<int, int>{(int)(i / 9), (int)(i / 3 % 3)})) << i;
}

TEST(BatchedLoop, InterruptWritesNoOutput) {
  batched::Case c{"interrupt", 2, 300, 4, 5};
  const batched::Data s = batched::make(c);
  fkm_params p = batched::params(c);
  int calls = 0;
  p.progress = [](void *u, int, int, const fkm_iteration_stats *) {
    return ++*static_cast<int *>(u) == 3 ? 1 : 0;
  };
  p.progress_user = &calls;
  Ctx ctx;
  std::vector<float> cent(s.centroids);
  std::vector<int64_t> lab(c.batch * c.n, -3), ns(c.batch, -1);
  std::vector<fkm_iteration_stats> st(c.batch * 8);
  EXPECT_EQ(fkm_train_batched(ctx.c, &p, c.batch, c.n, c.d, c.k, FKM_DTYPE_F32, s.x.data(),
                              nullptr, cent.data(), 0, lab.data(), nullptr, st.data(), 8,
                              ns.data()),
            FKM_ERR_INTERRUPTED);
  EXPECT_EQ(calls, 3);
  EXPECT_TRUE(batched::same_bits(cent, s.centroids));
  EXPECT_EQ(lab, std::vector<int64_t>(c.batch * c.n, -3));
  EXPECT_EQ(ns, std::vector<int64_t>(c.batch, -1));
}

TEST(BatchedLoop, NonFiniteValueNamesItsProblem) {
  batched::Case c{"nan", 3, 200, 4, 5};
  batched::Data s = batched::make(c);
  s.x[(2 * c.n + 17) * c.d + 3] = std::numeric_limits<float>::quiet_NaN();
  fkm_params p = batched::params(c);
  Ctx ctx;
  std::vector<float> cent(s.centroids);
  EXPECT_EQ(fkm_train_batched(ctx.c, &p, c.batch, c.n, c.d, c.k, FKM_DTYPE_F32, s.x.data(),
                              nullptr, cent.data(), 0, nullptr, nullptr, nullptr, 0, nullptr),
            FKM_ERR_NOT_FINITE);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx.c)).find("problem 2 at row 17, column 3"),
            std::string::npos)
      << fkm_ctx_last_error(ctx.c);
  EXPECT_TRUE(batched::same_bits(cent, s.centroids));
}

TEST(BatchedLoop, EmptyBatchIsANoOp) {
  batched::Case c{"empty", 1, 200, 4, 5};
  const batched::Data s = batched::make(c);
  fkm_params p = batched::params(c);
  Ctx ctx;
  std::vector<float> cent(s.centroids);
  EXPECT_EQ(fkm_train_batched(ctx.c, &p, 0, c.n, c.d, c.k, FKM_DTYPE_F32, s.x.data(), nullptr,
                              cent.data(), 0, nullptr, nullptr, nullptr, 0, nullptr),
            FKM_OK);
  EXPECT_TRUE(batched::same_bits(cent, s.centroids));
}

// fkm_pq_slices: slice m's row i is x's row i from column m d / M on, bit for
// bit (NaN payloads and signed zeros included), whatever the number of rows
// (blocks of 256 on the threads) and slices; bad arguments are statuses and
// write nothing.
TEST(PqSlices, CutTheColumnsIntoProblemsBitForBit) {
  for (const auto& [n, d, M] : std::vector<std::tuple<int64_t, int64_t, int64_t>>{
           {1, 1, 1}, {300, 8, 2}, {1000, 128, 32}, {257, 12, 12}, {513, 30, 5}}) {
    std::vector<uint32_t> bits((size_t)(n * d));
    for (size_t t = 0; t < bits.size(); t++) bits[t] = uint32_t(t * 2654435761u);
    std::vector<float> x(bits.size()), out(bits.size(), -1.0f);
    std::memcpy(x.data(), bits.data(), sizeof(float) * x.size());
    ASSERT_EQ(fkm_pq_slices(n, d, M, x.data(), out.data()), FKM_OK);
    const int64_t ds = d / M;
    for (int64_t m = 0; m < M; m++)
      for (int64_t i = 0; i < n; i++)
        ASSERT_EQ(std::memcmp(&out[(size_t)((m * n + i) * ds)], &x[(size_t)(i * d + m * ds)],
                              sizeof(float) * (size_t)ds),
                  0)
            << "n " << n << " d " << d << " M " << M << ": slice " << m << ", row " << i;
  }
  std::vector<float> x(64, 1.0f), out(64, 7.0f);
  EXPECT_EQ(fkm_pq_slices(8, 8, 3, x.data(), out.data()), FKM_ERR_INVALID_ARG);  // 3 does not divide 8
  EXPECT_EQ(fkm_pq_slices(8, 8, 0, x.data(), out.data()), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_pq_slices(-1, 8, 2, x.data(), out.data()), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_pq_slices(8, 8, 2, nullptr, out.data()), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_pq_slices(8, 8, 2, x.data(), nullptr), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_pq_slices(4, 8, 2, x.data(), x.data() + 16), FKM_ERR_INVALID_ARG);  // overlap
  EXPECT_EQ(fkm_pq_slices(INT64_MAX / 8, 8, 2, x.data(), out.data()), FKM_ERR_INVALID_ARG);
  for (float v : out) EXPECT_EQ(v, 7.0f);
  EXPECT_EQ(fkm_pq_slices(0, 8, 2, nullptr, nullptr), FKM_OK);
}

}  // namespace
