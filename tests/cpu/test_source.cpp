// The data path on the CPU engine (docs/data-path.md): runs through a data
// source and runs streamed under a memory budget equal the run on the array
// in core, bit for bit; the source's errors and the memory plan.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "source_cases.h"

namespace {

struct Ctx {
  fkm_ctx *c = nullptr;
  Ctx() { EXPECT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &c), FKM_OK); }
  ~Ctx() { fkm_ctx_destroy(c); }
};

class DataPath : public ::testing::TestWithParam<source_cases::Case> {};

TEST_P(DataPath, EqualsTheArrayInCore) {
  const source_cases::Case &k = GetParam();
  const batched::Data s = batched::make(k.c);
  Ctx ctx;
  const batched::Out want = source_cases::run_in_core(ctx.c, k, s);
  const batched::Out got = source_cases::run(ctx.c, k, s);
  batched::expect_equal(k.c, got, want);
}

INSTANTIATE_TEST_SUITE_P(Cpu, DataPath, ::testing::ValuesIn(source_cases::cases()),
                         [](const ::testing::TestParamInfo<source_cases::Case> &i) {
                           return source_cases::case_name(i.param);
                         });

/* A budget that forces streaming really streams: several chunks, each a
 * whole query block, and the callback is read every iteration. */
TEST(DataPathPlan, StreamedRunsReadTheSourceEveryIteration) {
  const int64_t n = 2000, d = 8, k = 10;
  const std::vector<float> x = fixtures::blobs(n, d, 5, 77);
  fkm_params p;
  fkm_params_init(&p);
  p.niter = 5;
  p.blas_query_bs = 128;
  Ctx ctx;
  fkm_memory_plan in_core, streamed;
  ASSERT_EQ(fkm_train_memory(ctx.c, &p, 1, n, d, k, FKM_DTYPE_F32, &in_core), FKM_OK);
  EXPECT_EQ(in_core.streamed, 0);
  EXPECT_EQ(in_core.bytes, in_core.in_core_bytes);
  EXPECT_LT(in_core.streamed_bytes, in_core.in_core_bytes);
  p.memory_budget = in_core.streamed_bytes + 3 * 128 * sizeof(float) * d;
  ASSERT_EQ(fkm_train_memory(ctx.c, &p, 1, n, d, k, FKM_DTYPE_F32, &streamed), FKM_OK);
  EXPECT_EQ(streamed.streamed, 1);
  EXPECT_EQ(streamed.chunk_rows % 128, 0);
  EXPECT_GE(streamed.chunk_rows, 128);
  EXPECT_LT(streamed.chunk_rows, n);
  EXPECT_LE(streamed.bytes, p.memory_budget);
  source_cases::Rows rows{reinterpret_cast<const char *>(x.data()), sizeof(float) * d};
  fkm_source src;
  ASSERT_EQ(fkm_source_callback(&src, n, d, FKM_DTYPE_F32, source_cases::read_rows, &rows),
            FKM_OK);
  std::vector<float> cent(k * d);
  ASSERT_EQ(fkm_train_source(ctx.c, &p, &src, k, nullptr, cent.data(), 0, nullptr, nullptr,
                             nullptr, 0, nullptr),
            FKM_OK)
      << fkm_ctx_last_error(ctx.c);
  const int64_t chunks = (n + streamed.chunk_rows - 1) / streamed.chunk_rows;
  EXPECT_EQ(rows.reads, 1 + p.niter * chunks); /* the initial rows, then every chunk */
}

TEST(DataPathPlan, AssignSourceEqualsAssign) {
  const int64_t n = 3001, d = 7, k = 13;
  const std::vector<float> x = fixtures::blobs(n, d, 6, 5);
  const std::vector<float> c(x.begin(), x.begin() + k * d);
  for (const char *profile : {"flashkm", "faiss-1.15.1-avx2"}) {
    fkm_params p;
    fkm_params_init(&p);
    ASSERT_EQ(fkm_profile_parse(profile, &p.profile), FKM_OK);
    p.blas_query_bs = 256;
    p.memory_budget = 2000 * sizeof(float) * d;
    Ctx ctx;
    std::vector<int64_t> l1(n), l2(n, -1);
    std::vector<float> d1(n), d2(n, -1.0f);
    ASSERT_EQ(fkm_assign(ctx.c, &p, n, d, k, FKM_DTYPE_F32, x.data(), c.data(), l1.data(),
                         d1.data()),
              FKM_OK);
    source_cases::Rows rows{reinterpret_cast<const char *>(x.data()), sizeof(float) * d};
    fkm_source src;
    ASSERT_EQ(fkm_source_callback(&src, n, d, FKM_DTYPE_F32, source_cases::read_rows, &rows),
              FKM_OK);
    ASSERT_EQ(fkm_assign_source(ctx.c, &p, &src, k, c.data(), l2.data(), d2.data()), FKM_OK);
    EXPECT_TRUE(batched::same_bits(l1, l2)) << profile;
    EXPECT_TRUE(batched::same_bits(d1, d2)) << profile;
    EXPECT_GT(rows.reads, 1) << "read in several chunks";
  }
}

/* ------------------------------------------------------------- errors */

int failing_read(void *user, const int64_t *rows, int64_t count, void *dst) {
  int *left = static_cast<int *>(user);
  if ((*left)-- <= 0) return 42;
  std::memset(dst, 0, sizeof(float) * 4 * count);
  (void)rows;
  return 0;
}

TEST(DataPathErrors, AFailingCallbackEndsTheRunAndWritesNothing) {
  const int64_t n = 500, d = 4, k = 5;
  for (int fail_after : {0, 1, 3}) {
    int left = fail_after;
    fkm_source src;
    ASSERT_EQ(fkm_source_callback(&src, n, d, FKM_DTYPE_F32, failing_read, &left), FKM_OK);
    fkm_params p;
    fkm_params_init(&p);
    p.blas_query_bs = 64;
    Ctx ctx;
    fkm_memory_plan plan;
    ASSERT_EQ(fkm_train_memory(ctx.c, &p, 1, n, d, k, FKM_DTYPE_F32, &plan), FKM_OK);
    p.memory_budget = plan.streamed_bytes; /* the least streamed run */
    std::vector<float> cent(k * d, 7.0f);
    std::vector<int64_t> labels(n, -3);
    EXPECT_EQ(fkm_train_source(ctx.c, &p, &src, k, nullptr, cent.data(), 0, labels.data(),
                               nullptr, nullptr, 0, nullptr),
              FKM_ERR_SOURCE);
    EXPECT_NE(std::string(fkm_ctx_last_error(ctx.c)).find("returned 42"), std::string::npos)
        << fkm_ctx_last_error(ctx.c);
    for (float v : cent) ASSERT_EQ(v, 7.0f);
    for (int64_t v : labels) ASSERT_EQ(v, -3);
  }
}

TEST(DataPathErrors, ANonFiniteRowOfASourceIsNamedByItsRow) {
  const int64_t n = 400, d = 3, k = 4;
  std::vector<float> x = fixtures::blobs(n, d, 3, 9);
  x[377 * d + 2] = std::numeric_limits<float>::quiet_NaN();
  for (bool streamed : {false, true}) {
    fkm_params p;
    fkm_params_init(&p);
    p.blas_query_bs = 64;
    Ctx ctx;
    fkm_memory_plan plan;
    ASSERT_EQ(fkm_train_memory(ctx.c, &p, 1, n, d, k, FKM_DTYPE_F32, &plan), FKM_OK);
    p.memory_budget = streamed ? plan.streamed_bytes : 0;
    fkm_source src;
    ASSERT_EQ(fkm_source_host(&src, x.data(), n, d, FKM_DTYPE_F32, 0), FKM_OK);
    std::vector<float> cent(k * d);
    EXPECT_EQ(fkm_train_source(ctx.c, &p, &src, k, nullptr, cent.data(), 0, nullptr, nullptr,
                               nullptr, 0, nullptr),
              FKM_ERR_NOT_FINITE);
    EXPECT_NE(std::string(fkm_ctx_last_error(ctx.c)).find("row 377, column 2"),
              std::string::npos)
        << fkm_ctx_last_error(ctx.c);
    p.check_finite = 0; /* let through: no finite distance, a numeric error */
    EXPECT_EQ(fkm_train_source(ctx.c, &p, &src, k, nullptr, cent.data(), 0, nullptr, nullptr,
                               nullptr, 0, nullptr),
              FKM_ERR_NUMERIC);
  }
}

// Two bad training rows, the one with the lesser row index late in
// training order (another chunk when streamed): either way the message
// names the lesser, as fkm_train names the first bad value of x, whatever
// order the run reads its rows in. float32 and float16 rows, host rows and
// a callback.
TEST(DataPathErrors, TheLeastBadRowOfASourceIsNamedWhateverTheTrainingOrder) {
  const int64_t n = 400, d = 3, k = 4;
  fkm_params p;
  fkm_params_init(&p);
  p.blas_query_bs = 64;
  p.max_points_per_centroid = 50; /* 200 training rows of 400, in rand_perm's order */
  Ctx ctx;
  std::vector<int64_t> rows(n);
  int64_t nt = 0;
  ASSERT_EQ(fkm_train_rows(ctx.c, &p, n, k, rows.data(), &nt), FKM_OK);
  ASSERT_EQ(nt, 200);
  const int64_t late = *std::min_element(rows.begin() + 128, rows.begin() + nt);
  const int64_t early = *std::max_element(rows.begin(), rows.begin() + 64);
  ASSERT_LT(late, early);
  std::vector<float> x = fixtures::blobs(n, d, 3, 9);
  for (float &v : x) v = (float)(int)(v * 8.0f); /* exact in fp16 */
  x[early * d + 0] = std::numeric_limits<float>::quiet_NaN();
  x[late * d + 1] = std::numeric_limits<float>::infinity();
  std::vector<uint16_t> h;
  for (float v : x)
    h.push_back(std::isnan(v) ? (uint16_t)0x7e00u
                              : std::isinf(v) ? (uint16_t)0x7c00u : batched::half_bits(v));
  const std::string want = "x contains NaN or Inf at row " + std::to_string(late) + ", column 1";
  for (fkm_dtype dt : {FKM_DTYPE_F32, FKM_DTYPE_F16}) {
    const void *base = dt == FKM_DTYPE_F32 ? (const void *)x.data() : (const void *)h.data();
    const size_t row = d * (dt == FKM_DTYPE_F32 ? 4 : 2);
    source_cases::Rows served{static_cast<const char *>(base), row};
    for (bool callback : {false, true})
      for (bool streamed : {false, true}) {
        fkm_memory_plan plan;
        p.memory_budget = 0;
        ASSERT_EQ(fkm_train_memory(ctx.c, &p, 1, n, d, k, dt, &plan), FKM_OK)
            << fkm_ctx_last_error(ctx.c);
        p.memory_budget = streamed ? plan.streamed_bytes : 0;
        fkm_source src;
        ASSERT_EQ(callback ? fkm_source_callback(&src, n, d, dt, source_cases::read_rows, &served)
                           : fkm_source_host(&src, base, n, d, dt, 0),
                  FKM_OK);
        std::vector<float> cent(k * d, 7.0f);
        EXPECT_EQ(fkm_train_source(ctx.c, &p, &src, k, nullptr, cent.data(), 0, nullptr,
                                   nullptr, nullptr, 0, nullptr),
                  FKM_ERR_NOT_FINITE);
        EXPECT_EQ(std::string(fkm_ctx_last_error(ctx.c)), want)
            << "dtype " << dt << (callback ? " callback" : " host") << (streamed ? " streamed" : "");
        for (float v : cent) ASSERT_EQ(v, 7.0f);
      }
  }
}

TEST(DataPathErrors, BadSourcesAreRefused) {
  float x[8] = {0};
  fkm_source src;
  EXPECT_EQ(fkm_source_host(nullptr, x, 2, 4, FKM_DTYPE_F32, 0), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_source_host(&src, x, 2, 4, FKM_DTYPE_F32, 15), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_source_host(&src, nullptr, 2, 4, FKM_DTYPE_F32, 0), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_source_host(&src, x, 2, 0, FKM_DTYPE_F32, 0), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_source_host(&src, x, -1, 4, FKM_DTYPE_F32, 0), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_source_host(&src, x, 2, 4, (fkm_dtype)7, 0), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_source_callback(&src, 2, 4, FKM_DTYPE_F32, nullptr, nullptr),
            FKM_ERR_INVALID_ARG);
  ASSERT_EQ(fkm_source_host(&src, x, 2, 4, FKM_DTYPE_F32, 0), FKM_OK);
  EXPECT_EQ(src.row_stride, 16);
  Ctx ctx;
  fkm_params p;
  fkm_params_init(&p);
  float cent[8];
  EXPECT_EQ(fkm_train_source(ctx.c, &p, nullptr, 2, nullptr, cent, 0, nullptr, nullptr,
                             nullptr, 0, nullptr),
            FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_train_source(ctx.c, &p, &src, 3, nullptr, cent, 0, nullptr, nullptr, nullptr,
                             0, nullptr),
            FKM_ERR_INVALID_ARG); /* n < k */
  src.row_stride = 3;             /* corrupted after the constructor */
  EXPECT_EQ(fkm_train_source(ctx.c, &p, &src, 2, nullptr, cent, 0, nullptr, nullptr, nullptr,
                             0, nullptr),
            FKM_ERR_INVALID_ARG);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx.c)).find("row_stride"), std::string::npos);
}

TEST(DataPathErrors, BudgetsThatCannotBeMetAreOutOfMemoryWithTheBytes) {
  const int64_t n = 600, d = 5, k = 6;
  const std::vector<float> x = fixtures::blobs(3 * n, d, 4, 3);
  fkm_params p;
  fkm_params_init(&p);
  p.memory_budget = 4096;
  Ctx ctx;
  fkm_memory_plan plan;
  /* batched runs hold their training sets */
  EXPECT_EQ(fkm_train_memory(ctx.c, &p, 3, n, d, k, FKM_DTYPE_F32, &plan),
            FKM_ERR_OUT_OF_MEMORY);
  EXPECT_EQ(plan.streamed_bytes, 0u);
  EXPECT_GT(plan.in_core_bytes, 4096u);
  std::vector<float> cent(3 * k * d, 1.0f);
  EXPECT_EQ(fkm_train_batched(ctx.c, &p, 3, n, d, k, FKM_DTYPE_F32, x.data(), nullptr,
                              cent.data(), 0, nullptr, nullptr, nullptr, 0, nullptr),
            FKM_ERR_OUT_OF_MEMORY);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx.c)).find("batched runs"), std::string::npos)
      << fkm_ctx_last_error(ctx.c);
  for (float v : cent) ASSERT_EQ(v, 1.0f);
  /* a budget below even a streamed run: the message names both sizes */
  p.memory_budget = 16;
  EXPECT_EQ(fkm_train_memory(ctx.c, &p, 1, n, d, k, FKM_DTYPE_F32, &plan),
            FKM_ERR_OUT_OF_MEMORY);
  EXPECT_GT(plan.streamed_bytes, 16u);
  EXPECT_EQ(fkm_train(ctx.c, &p, n, d, k, FKM_DTYPE_F32, x.data(), nullptr, cent.data(), 0,
                      nullptr, nullptr, nullptr, 0, nullptr),
            FKM_ERR_OUT_OF_MEMORY);
  const std::string msg = fkm_ctx_last_error(ctx.c);
  EXPECT_NE(msg.find(std::to_string(plan.streamed_bytes)), std::string::npos) << msg;
  EXPECT_NE(msg.find("memory_budget is 16"), std::string::npos) << msg;
}

}  // namespace
