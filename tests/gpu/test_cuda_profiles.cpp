// P0 parity of the CUDA engine in every FAISS profile (docs/profiles.md):
// fkm_train and fkm_assign on the CUDA backend give the CPU reference's bits
// for profiles of each kind of FAISS build (the plain formula with double or
// float norms, the cmax lanes of 8 and 16, the laned Top1 of 1.15, the fused
// kernels, the direct path), on shapes that reach each path, with exact ties
// (the lane tie rules, the cascade's deferred pairs), weights (the fused
// update), spherical runs (the renorm's loop), early stop and k-means++.
// Every test skips when no CUDA device is present (CI has nvcc, no GPU).
#include <gtest/gtest.h>

#include <cctype>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "compare.h"
#include "fixtures.h"
#include "flashkm.h"

namespace {

const char *const PROFILES[] = {
    "flashkm",          "faiss-1.7.3",       "faiss-1.8.0-avx2",   "faiss-1.8.0-avx512",
    "faiss-1.11.0-none", "faiss-1.15.1-none", "faiss-1.15.1-avx2", "faiss-1.15.1-avx512"};

fkm_params params_for(const std::string &profile, int niter) {
  fkm_params p;
  fkm_params_init(&p);
  EXPECT_EQ(fkm_profile_parse(profile.c_str(), &p.profile), FKM_OK) << profile;
  p.niter = niter;
  p.min_points_per_centroid = 1;
  return p;
}

struct Out {
  fkm_status status;
  std::vector<float> cent, dist;
  std::vector<int64_t> lab;
  std::vector<fkm_iteration_stats> stats;
};

Out train(fkm_ctx *ctx, const fkm_params &p, int64_t n, int64_t d, int64_t k,
          const std::vector<float> &x, const std::vector<float> &w) {
  Out o;
  o.cent.assign(k * d, 0.f);
  o.lab.assign(n, -2);
  o.dist.assign(n, -2.f);
  o.stats.resize((size_t)p.niter * p.nredo + 1);
  int64_t ns = 0;
  o.status = fkm_train(ctx, &p, n, d, k, FKM_DTYPE_F32, x.data(), w.empty() ? nullptr : w.data(),
                       o.cent.data(), 0, o.lab.data(), o.dist.data(), o.stats.data(),
                       (int64_t)o.stats.size(), &ns);
  o.stats.resize((size_t)ns);
  return o;
}

struct Case {
  const char *name;
  int64_t n, d, k;
  int kind; /* 0 blobs, 1 small integers with duplicate centroids' rows */
};

void PrintTo(const Case &c, std::ostream *os) { *os << c.name; }

const Case CASES[] = {
    {"direct_before_1_14", 19, 8, 5, 0},     // nx < 20
    {"direct_1_15", 600, 20, 6, 0},          // nx * d < 128000
    {"fused_d3", 20000, 3, 64, 0},
    {"fused_d1", 140000, 1, 16, 0},
    {"fused_d16", 12000, 16, 40, 0},
    {"fused_d24", 9000, 24, 30, 0},           // AVX-512's fused kernel
    {"blas_cascade", 20000, 64, 300, 0},
    {"blas_blocks", 6000, 128, 2100, 0},      // two full database blocks and a tail
    {"ties_blocks", 6000, 40, 2100, 1},       // exact ties, lanes, deferred pairs
    {"ties_fused", 20000, 8, 40, 1},
};

std::vector<float> data(const Case &c, uint32_t seed) {
  if (c.kind == 0) return fixtures::blobs(c.n, c.d, (int)std::max<int64_t>(2, c.k / 2), seed);
  std::mt19937 g(seed);
  std::vector<float> x(c.n * c.d);
  for (auto &v : x) v = (float)((int)(g() % 13) - 6);
  return x;
}

class ProfileFixture : public GpuCpuTest {
 protected:
  void compare(const fkm_params &p, const Case &c, const std::vector<float> &x,
               const std::vector<float> &w) {
    const Out a = train(cpu->c, p, c.n, c.d, c.k, x, w);
    const Out b = train(gpu->c, p, c.n, c.d, c.k, x, w);
    ASSERT_EQ(a.status, FKM_OK) << fkm_ctx_last_error(cpu->c);
    ASSERT_EQ(b.status, FKM_OK) << fkm_ctx_last_error(gpu->c);
    EXPECT_TRUE(same_bits(a.cent, b.cent)) << "centroids " << first_diff(a.cent, b.cent);
    EXPECT_TRUE(same_bits(a.lab, b.lab)) << "labels " << first_diff(a.lab, b.lab);
    EXPECT_TRUE(same_bits(a.dist, b.dist)) << "distances " << first_diff(a.dist, b.dist);
    ASSERT_EQ(a.stats.size(), b.stats.size());
    for (size_t i = 0; i < a.stats.size(); i++) {
      EXPECT_EQ(std::memcmp(&a.stats[i].obj, &b.stats[i].obj, 4), 0) << "obj at " << i;
      EXPECT_EQ(a.stats[i].nsplit, b.stats[i].nsplit) << "nsplit at " << i;
      EXPECT_EQ(a.stats[i].imbalance_factor, b.stats[i].imbalance_factor) << "imbalance at " << i;
    }
  }
};

class CudaProfiles : public ProfileFixture,
                     public ::testing::WithParamInterface<std::tuple<std::string, Case>> {};

TEST_P(CudaProfiles, TrainL2EqualsCpu) {
  const auto &[profile, c] = GetParam();
  compare(params_for(profile, 3), c, data(c, 11), {});
}

TEST_P(CudaProfiles, TrainSphericalInnerProductEqualsCpu) {
  const auto &[profile, c] = GetParam();
  fkm_params p = params_for(profile, 3);
  p.metric = FKM_METRIC_INNER_PRODUCT;
  p.spherical = 1;
  compare(p, c, data(c, 12), {});
}

TEST_P(CudaProfiles, WeightedTrainEqualsCpu) {
  const auto &[profile, c] = GetParam();
  std::vector<float> w = fixtures::uniform(c.n, 13, 0.0f, 3.0f);
  compare(params_for(profile, 2), c, data(c, 13), w);
}

TEST_P(CudaProfiles, AssignEqualsCpuBothMetrics) {
  const auto &[profile, c] = GetParam();
  const std::vector<float> x = data(c, 14), cent = data({c.name, c.k, c.d, c.k, c.kind}, 15);
  std::vector<float> cc = cent;
  if (c.k > 40) /* duplicate centroids, one in a later database block */
    for (int64_t j = 0; j < c.d; j++) {
      cc[17 * c.d + j] = cc[3 * c.d + j];
      cc[(c.k - 1) * c.d + j] = cc[(c.k > 1030 ? c.k - 1030 : 5) * c.d + j];
    }
  for (fkm_metric m : {FKM_METRIC_L2, FKM_METRIC_INNER_PRODUCT}) {
    fkm_params p = params_for(profile, 1);
    p.metric = m;
    std::vector<int64_t> la(c.n), lb(c.n);
    std::vector<float> da(c.n), db(c.n);
    ASSERT_EQ(fkm_assign(cpu->c, &p, c.n, c.d, c.k, FKM_DTYPE_F32, x.data(), cc.data(), la.data(),
                         da.data()), FKM_OK);
    ASSERT_EQ(fkm_assign(gpu->c, &p, c.n, c.d, c.k, FKM_DTYPE_F32, x.data(), cc.data(), lb.data(),
                         db.data()), FKM_OK)
        << fkm_ctx_last_error(gpu->c);
    EXPECT_TRUE(same_bits(la, lb)) << "metric " << m << " labels " << first_diff(la, lb);
    EXPECT_TRUE(same_bits(da, db)) << "metric " << m << " distances " << first_diff(da, db);
  }
}

INSTANTIATE_TEST_SUITE_P(
    All, CudaProfiles,
    ::testing::Combine(::testing::ValuesIn(std::vector<std::string>(std::begin(PROFILES),
                                                                    std::end(PROFILES))),
                       ::testing::ValuesIn(CASES)),
    [](const ::testing::TestParamInfo<CudaProfiles::ParamType> &i) {
      std::string s = std::get<0>(i.param) + "_" + std::get<1>(i.param).name;
      for (char &ch : s)
        if (!isalnum((unsigned char)ch)) ch = '_';
      return s;
    });

class CudaProfileOptions : public ProfileFixture {};

TEST_F(CudaProfileOptions, EarlyStopKmeansPlusPlusAndFasterSubsamplingEqualCpu) {
  const Case c = {"options", 30000, 12, 40, 0};
  const std::vector<float> x = data(c, 21);
  for (int variant = 0; variant < 4; variant++) {
    fkm_params p = params_for("faiss-1.15.1-avx512", 40);
    if (variant == 0) p.early_stop_threshold = 0.0;
    if (variant == 1) p.init_method = FKM_INIT_KMEANS_PLUS_PLUS;
    if (variant == 2) p.init_method = FKM_INIT_AFK_MC2;
    if (variant == 3) {
      p.use_faster_subsampling = 1;
      p.max_points_per_centroid = 100;
    }
    SCOPED_TRACE("variant " + std::to_string(variant));
    compare(p, c, x, {});
  }
}

}  // namespace
