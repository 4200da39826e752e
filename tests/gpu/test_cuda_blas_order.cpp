// The CUDA engine in a BLAS's order (fkm_params.blas_sgemm; docs/profiles.md,
// "The BLAS's order on the GPU"): given the sgemm FAISS calls, the CPU
// engine calls it and takes every dot product from it; the CUDA engine
// learns its order and computes the dot products it must compute exactly in
// that order. Here the BLAS is tests/synthetic_blas.h (three segments, one,
// two or four chains by the element's place in its call): on integer data,
// whose near-ties the order decides, the CUDA engine gives the CPU engine's
// bits, in plain and laned profiles, both metrics, across full and partial
// blocks of rows and centroids, for fkm_train, fkm_train_batched and
// fkm_assign; and without the BLAS the same CUDA run does not (the order is
// what decides). Skips without a CUDA device.
#include <gtest/gtest.h>

#include <cctype>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "compare.h"
#include "flashkm.h"
#include "synthetic_blas.h"

namespace {

// rows in query blocks of 1000 + 400 (past FAISS 1.15's direct path, nx * d < 128000),
// centroids in database blocks of 1024 + 76
constexpr int64_t kN = 1400, kD = 96, kK = 1100;

std::vector<float> pixels(int64_t n, int64_t d, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<float> x((size_t)(n * d));
  for (auto &v : x) v = (float)(g() % 16);
  return x;
}

fkm_params params(const char *profile, fkm_metric metric, bool blas) {
  fkm_params p;
  fkm_params_init(&p);
  EXPECT_EQ(fkm_profile_parse(profile, &p.profile), FKM_OK) << profile;
  p.niter = 2;
  p.min_points_per_centroid = 1;
  p.metric = metric;
  p.blas_sgemm = blas ? synthetic_blas::sgemm<false> : nullptr;
  p.blas_query_bs = 1000;
  return p;
}

struct Result {
  fkm_status status;
  std::vector<float> cent, dist;
  std::vector<int64_t> lab;
  std::vector<float> obj;
};

Result train(fkm_ctx *ctx, const fkm_params &p, int64_t batch, const std::vector<float> &x) {
  Result r;
  r.cent.assign((size_t)(batch * kK * kD), 0.f);
  r.lab.assign((size_t)(batch * kN), -2);
  r.dist.assign((size_t)(batch * kN), -2.f);
  std::vector<fkm_iteration_stats> st((size_t)(batch * p.niter));
  std::vector<int64_t> ns((size_t)batch, 0);
  r.status = fkm_train_batched(ctx, &p, batch, kN, kD, kK, FKM_DTYPE_F32, x.data(), nullptr,
                               r.cent.data(), 0, r.lab.data(), r.dist.data(), st.data(),
                               p.niter, ns.data());
  for (int64_t b = 0; b < batch; b++)
    for (int64_t i = 0; i < ns[(size_t)b] && i < p.niter; i++)
      r.obj.push_back(st[(size_t)(b * p.niter + i)].obj);
  return r;
}

// fkm_assign of x against init, then fkm_train from init (k centroids
// given): both runs' outputs.
struct AssignTrain {
  std::vector<float> cent, dist, adist;
  std::vector<int64_t> lab, alab;
};

AssignTrain assign_then_train(fkm_ctx *ctx, const fkm_params &p, int64_t n, int64_t d, int64_t k,
                              const std::vector<float> &x, const std::vector<float> &init) {
  AssignTrain o;
  o.cent = init;
  o.lab.assign((size_t)n, -2);
  o.dist.assign((size_t)n, -2.f);
  o.alab.assign((size_t)n, -2);
  o.adist.assign((size_t)n, -2.f);
  EXPECT_EQ(fkm_assign(ctx, &p, n, d, k, FKM_DTYPE_F32, x.data(), init.data(), o.alab.data(),
                       o.adist.data()),
            FKM_OK)
      << fkm_ctx_last_error(ctx);
  EXPECT_EQ(fkm_train(ctx, &p, n, d, k, FKM_DTYPE_F32, x.data(), nullptr, o.cent.data(), k,
                      o.lab.data(), o.dist.data(), nullptr, 0, nullptr),
            FKM_OK)
      << fkm_ctx_last_error(ctx);
  return o;
}

// a (the CPU engine's) and b bit for bit, every output.
void expect_same_bits(const AssignTrain &a, const AssignTrain &b) {
  EXPECT_TRUE(same_bits(a.alab, b.alab)) << "assign labels " << first_diff(a.alab, b.alab);
  EXPECT_TRUE(same_bits(a.adist, b.adist)) << "assign distances " << first_diff(a.adist, b.adist);
  EXPECT_TRUE(same_bits(a.cent, b.cent)) << "centroids " << first_diff(a.cent, b.cent);
  EXPECT_TRUE(same_bits(a.lab, b.lab)) << "labels " << first_diff(a.lab, b.lab);
  EXPECT_TRUE(same_bits(a.dist, b.dist)) << "distances " << first_diff(a.dist, b.dist);
}

class CudaBlasOrder : public GpuCpuTest,
                      public ::testing::WithParamInterface<std::tuple<std::string, fkm_metric>> {
};

TEST_P(CudaBlasOrder, TrainFollowsTheBlas) {
  const auto &[profile, metric] = GetParam();
  for (int64_t batch : {1, 2}) {
    const std::vector<float> x = pixels(batch * kN, kD, 7 + (uint32_t)batch);
    const Result a = train(cpu->c, params(profile.c_str(), metric, true), batch, x);
    const Result b = train(gpu->c, params(profile.c_str(), metric, true), batch, x);
    ASSERT_EQ(a.status, FKM_OK) << fkm_ctx_last_error(cpu->c);
    ASSERT_EQ(b.status, FKM_OK) << fkm_ctx_last_error(gpu->c);
    EXPECT_TRUE(same_bits(a.cent, b.cent)) << "batch " << batch << " centroids " << first_diff(a.cent, b.cent);
    EXPECT_TRUE(same_bits(a.lab, b.lab)) << "batch " << batch << " labels " << first_diff(a.lab, b.lab);
    EXPECT_TRUE(same_bits(a.dist, b.dist)) << "batch " << batch << " distances " << first_diff(a.dist, b.dist);
    EXPECT_TRUE(same_bits(a.obj, b.obj)) << "batch " << batch << " objective " << first_diff(a.obj, b.obj);
    // the order decides: the CUDA engine in its own order does not give these bits
    const Result own = train(gpu->c, params(profile.c_str(), metric, false), batch, x);
    ASSERT_EQ(own.status, FKM_OK) << fkm_ctx_last_error(gpu->c);
    EXPECT_FALSE(same_bits(a.dist, own.dist) && same_bits(a.cent, own.cent))
        << "batch " << batch << ": the data has no near-tie the order decides";
  }
}

TEST_P(CudaBlasOrder, AssignFollowsTheBlas) {
  const auto &[profile, metric] = GetParam();
  const std::vector<float> x = pixels(kN, kD, 21);
  // centroids as training makes them: means of three rows (inexact products)
  std::vector<float> cent((size_t)(kK * kD));
  const std::vector<float> src = pixels(3 * kK, kD, 22);
  for (int64_t j = 0; j < kK; j++)
    for (int64_t t = 0; t < kD; t++)
      cent[(size_t)(j * kD + t)] = (src[(size_t)(j * kD + t)] + src[(size_t)((kK + j) * kD + t)] +
                                    src[(size_t)((2 * kK + j) * kD + t)]) /
                                   3.0f;
  std::vector<int64_t> la(kN), lb(kN), lo(kN);
  std::vector<float> da(kN), db(kN), dn(kN);
  fkm_params p = params(profile.c_str(), metric, true);
  ASSERT_EQ(fkm_assign(cpu->c, &p, kN, kD, kK, FKM_DTYPE_F32, x.data(), cent.data(), la.data(),
                       da.data()),
            FKM_OK)
      << fkm_ctx_last_error(cpu->c);
  ASSERT_EQ(fkm_assign(gpu->c, &p, kN, kD, kK, FKM_DTYPE_F32, x.data(), cent.data(), lb.data(),
                       db.data()),
            FKM_OK)
      << fkm_ctx_last_error(gpu->c);
  EXPECT_TRUE(same_bits(la, lb)) << "labels " << first_diff(la, lb);
  EXPECT_TRUE(same_bits(da, db)) << "distances " << first_diff(da, db);
  p.blas_sgemm = nullptr;
  ASSERT_EQ(fkm_assign(gpu->c, &p, kN, kD, kK, FKM_DTYPE_F32, x.data(), cent.data(), lo.data(),
                       dn.data()),
            FKM_OK);
  EXPECT_FALSE(same_bits(da, dn)) << "the data has no dot product the order decides";
}

// fkm_order_coverage: the CUDA engine counts the products its learned
// models hold. The synthetic BLAS with outsiders sums element i == j of
// each call in reverse, outside the model: one element per row of a call
// up to the shorter side, over the four call shapes (1000 or 400 rows by
// 1024 or 76 centroids) 1000 + 76 + 400 + 76 = 1552. The CPU engine calls
// the BLAS (every product); without a BLAS, or in FAST mode, none; on FAISS
// 1.15's direct path (10 rows), every one. And the labels follow: where
// the coverage is whole the GPU's labels are the CPU's.
class CudaOrderCoverage : public GpuCpuTest {};

TEST_F(CudaOrderCoverage, CountsTheProductsTheModelHolds) {
  fkm_params p = params("faiss-1.15.1-avx512", FKM_METRIC_L2, true);
  p.blas_sgemm = synthetic_blas::sgemm<true>;
  int64_t covered = -1;
  ASSERT_EQ(fkm_order_coverage(gpu->c, &p, kN, kD, kK, FKM_DTYPE_F32, &covered), FKM_OK)
      << fkm_ctx_last_error(gpu->c);
  EXPECT_EQ(covered, kN * kK - 1552);
  ASSERT_EQ(fkm_order_coverage(cpu->c, &p, kN, kD, kK, FKM_DTYPE_F32, &covered), FKM_OK);
  EXPECT_EQ(covered, kN * kK);
  ASSERT_EQ(fkm_order_coverage(gpu->c, &p, 10, kD, kK, FKM_DTYPE_F32, &covered), FKM_OK);
  EXPECT_EQ(covered, 10 * kK) << "FAISS 1.15's direct path at 10 rows";
  p.blas_sgemm = nullptr;
  ASSERT_EQ(fkm_order_coverage(gpu->c, &p, kN, kD, kK, FKM_DTYPE_F32, &covered), FKM_OK);
  EXPECT_EQ(covered, 0);
  fkm_params fast = params("flashkm", FKM_METRIC_L2, true);
  fast.assign_mode = FKM_ASSIGN_FAST;
  ASSERT_EQ(fkm_order_coverage(gpu->c, &fast, kN, kD, kK, FKM_DTYPE_F16, &covered), FKM_OK)
      << fkm_ctx_last_error(gpu->c);
  EXPECT_EQ(covered, 0);
  // the model without outsiders holds every product
  p.blas_sgemm = synthetic_blas::sgemm<false>;
  ASSERT_EQ(fkm_order_coverage(gpu->c, &p, kN, kD, kK, FKM_DTYPE_F32, &covered), FKM_OK);
  EXPECT_EQ(covered, kN * kK);
}

// By default the laned replays read whole rows staged in shared memory;
// FLASHKM_CUDA_REPLAY=global (read when a context is created) makes them
// read each centroid row from global memory: the same operations in the
// same order. At d = 96 the rows fit the default
// 48 KiB, at d = 400 the kernel's limit is raised, at d = 1500 they do not
// fit and the replay reads global memory. Every case equals the CPU
// engine's bits and the unstaged CUDA run's, and rows do reach the laned
// replay (the verbose log's count). Small FAISS blocks keep the synthetic
// BLAS's probe calls short at large d.
class CudaStagedReplay : public GpuCpuTest,
                         public ::testing::WithParamInterface<std::tuple<int64_t, fkm_metric>> {};

TEST_P(CudaStagedReplay, EqualsTheCpuAndTheUnstagedReplay) {
  const auto &[d, metric] = GetParam();
  const int64_t n = 1400, k = 300; // n d >= 128000: FAISS 1.15's BLAS path
  Ctx global(FKM_BACKEND_CUDA, "FLASHKM_CUDA_REPLAY", "global");
  ASSERT_EQ(global.status, FKM_OK);
  // the host's loop: the verbose log counts each iteration's rows
  Ctx host_loop(FKM_BACKEND_CUDA, "FLASHKM_CUDA_LOOP", "0");
  ASSERT_EQ(host_loop.status, FKM_OK);
  fkm_ctx *staged = host_loop.c;
  fkm_params p = params("faiss-1.15.1-avx512", metric, true);
  p.blas_query_bs = 256;
  p.blas_database_bs = 128;
  const std::vector<float> x = pixels(n, d, 31);
  std::vector<float> init = pixels(k, d, 32);
  for (auto &v : init) v = v / 3.0f; // inexact centroids: near-ties the order decides
  // the first 60 centroids in equal triples: their rows have three candidates,
  // which the cascade leaves to the laned replay
  for (int64_t j = 0; j < 60; j += 3)
    for (int64_t t = 0; t < d; t++)
      init[(size_t)((j + 1) * d + t)] = init[(size_t)((j + 2) * d + t)] =
          init[(size_t)(j * d + t)];
  LogLines log; // the staged run's: rows the cascade left to the laned replay
  auto run = [&](fkm_ctx *ctx) {
    return assign_then_train(ctx, ctx == staged ? log.logged(p) : p, n, d, k, x, init);
  };
  const AssignTrain a = run(cpu->c), b = run(staged), g = run(global.c);
  expect_same_bits(a, b);
  EXPECT_TRUE(same_bits(g.cent, b.cent) && same_bits(g.adist, b.adist))
      << "the unstaged replay differs from the staged one";
  EXPECT_GT(log.sum_after("float32 narrowing "), 0) << "no row reached the laned replay";
}

// The float32 narrowing (kernels/narrow.cuh): centroids in near triples
// (each copy moved by +-0.05 a dimension) give rows whose three candidates
// the fp16 cascade cannot tell apart but float32 products can; the rows
// the cascade leaves are narrowed to one or two candidates and decided in
// the profile's order, and an exact triple (three copies of row 0) still
// sends row 0 to the full replay. fkm_assign and fkm_train equal the CPU
// engine's bits, in a BLAS's order (laned and plain scans, both metrics)
// and in flashkm's order with cmax lanes.
class CudaNarrowing : public GpuCpuTest,
                      public ::testing::WithParamInterface<
                          std::tuple<std::tuple<std::string, bool>, fkm_metric>> {};

TEST_P(CudaNarrowing, NearTriplesAreNarrowedAndEqualTheCpu) {
  const auto &[pb, metric] = GetParam();
  const auto &[profile, blas] = pb;
  const int64_t n = 1400, d = 96, k = 300;
  fkm_params p = params(profile.c_str(), metric, blas);
  p.blas_query_bs = 256;
  p.blas_database_bs = 128;
  std::mt19937 g(41);
  std::vector<float> x((size_t)(n * d)), init((size_t)(k * d));
  for (auto &v : x) v = (float)((int)(g() % 13) - 6);
  for (auto &v : init) v = (float)((int)(g() % 13) - 6) / 3.0f;
  for (int64_t j = 0; j < 240; j += 3)
    for (int64_t t = 0; t < d; t++) {
      if (j == 0) init[(size_t)t] = x[(size_t)t];
      for (int64_t e = 1; e < 3; e++)
        init[(size_t)((j + e) * d + t)] =
            init[(size_t)(j * d + t)] + (j == 0 ? 0.0f : g() % 2 ? 0.05f : -0.05f);
    }
  LogLines log;
  // the host's loop: the verbose log counts each iteration's rows
  Ctx host_loop(FKM_BACKEND_CUDA, "FLASHKM_CUDA_LOOP", "0");
  ASSERT_EQ(host_loop.status, FKM_OK);
  auto run = [&](fkm_ctx *ctx) {
    return assign_then_train(ctx, ctx == host_loop.c ? log.logged(p) : p, n, d, k, x, init);
  };
  const AssignTrain a = run(cpu->c), b = run(host_loop.c);
  expect_same_bits(a, b);
  const long long left = log.sum_after("refined "), full = log.sum_after("float32 narrowing ");
  EXPECT_GT(full, 0) << "no row reached the full replay\n" << log.all();
  EXPECT_LT(full, left) << "the narrowing decided no row\n" << log.all();
}

// The profiles whose rows left by the cascade are the caller's to replay:
// laned scans, or any scan in a BLAS's order (FAISS 1.8's inner product in
// flashkm's order is a plain scan: the cascade's reference kernel decides
// its rows, no narrowing).
INSTANTIATE_TEST_SUITE_P(
    Profiles, CudaNarrowing,
    ::testing::Values(
        std::make_tuple(std::make_tuple(std::string("faiss-1.15.1-avx512"), true), FKM_METRIC_L2),
        std::make_tuple(std::make_tuple(std::string("faiss-1.15.1-avx512"), true),
                        FKM_METRIC_INNER_PRODUCT),
        std::make_tuple(std::make_tuple(std::string("faiss-1.7.3"), true), FKM_METRIC_L2),
        std::make_tuple(std::make_tuple(std::string("faiss-1.7.3"), true),
                        FKM_METRIC_INNER_PRODUCT),
        std::make_tuple(std::make_tuple(std::string("faiss-1.8.0-avx2"), false), FKM_METRIC_L2)),
    [](const auto &info) {
      std::string s = std::get<0>(std::get<0>(info.param)) +
                      (std::get<1>(std::get<0>(info.param)) ? "_blas" : "_own") +
                      (std::get<1>(info.param) == FKM_METRIC_L2 ? "_l2" : "_ip");
      for (auto &ch : s)
        if (!isalnum((unsigned char)ch)) ch = '_';
      return s;
    });

INSTANTIATE_TEST_SUITE_P(
    Widths, CudaStagedReplay,
    ::testing::Combine(::testing::Values(int64_t(96), int64_t(400), int64_t(1500)),
                       ::testing::Values(FKM_METRIC_L2, FKM_METRIC_INNER_PRODUCT)),
    [](const auto &info) {
      return "d" + std::to_string(std::get<0>(info.param)) +
             (std::get<1>(info.param) == FKM_METRIC_L2 ? "_l2" : "_ip");
    });

INSTANTIATE_TEST_SUITE_P(
    Profiles, CudaBlasOrder,
    ::testing::Combine(::testing::Values("flashkm", "faiss-1.7.3", "faiss-1.8.0-avx2",
                                         "faiss-1.15.1-avx512"),
                       ::testing::Values(FKM_METRIC_L2, FKM_METRIC_INNER_PRODUCT)),
    [](const auto &info) {
      std::string s = std::get<0>(info.param) +
                      (std::get<1>(info.param) == FKM_METRIC_L2 ? "_l2" : "_ip");
      for (auto &ch : s)
        if (!isalnum((unsigned char)ch)) ch = '_';
      return s;
    });

}  // namespace
