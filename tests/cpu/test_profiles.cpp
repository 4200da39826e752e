// Profiles (docs/profiles.md) through the public C API: names, parsing,
// the releases table, probing a build's loop orders, the parameters each
// release has, and the 0.1 entry point of fkm_params_init. The parity of
// each profile with the real FAISS builds is python/tests/test_profiles.py
// (CI runs it against Debian's FAISS and pip's wheels).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "fixtures.h"
#include "flashkm.h"

namespace {

std::string name_of(const fkm_profile &p) {
  char buf[96];
  EXPECT_EQ(fkm_profile_name(&p, buf, sizeof buf), FKM_OK);
  return buf;
}

TEST(Profiles, DefaultIsFlashkmsOwnReference) {
  fkm_params p;
  fkm_params_init(&p);
  EXPECT_EQ(p.profile.faiss_version, 0);
  EXPECT_EQ(name_of(p.profile), "flashkm");
  EXPECT_EQ(p.init_method, FKM_INIT_RANDOM);
  EXPECT_EQ(p.afkmc2_chain_length, 50);
  EXPECT_LT(p.early_stop_threshold, 0.0);
  EXPECT_EQ(p.use_faster_subsampling, 0);
}

TEST(Profiles, NamesRoundTripForEveryKnownRelease) {
  const int releases[] = {10703, 10704, 10800, 10900, 11000, 11100, 11200, 11300,
                          11301, 11302, 11400, 11401, 11402, 11403, 11500, 11501};
  int built = 0;
  for (int v : releases)
    for (fkm_simd s : {FKM_SIMD_NONE, FKM_SIMD_AVX2, FKM_SIMD_AVX512}) {
      fkm_profile p, q;
      if (fkm_profile_init(&p, v, s) != FKM_OK) continue;
      built++;
      const std::string name = name_of(p);
      ASSERT_EQ(fkm_profile_parse(name.c_str(), &q), FKM_OK) << name;
      EXPECT_EQ(std::memcmp(&p, &q, sizeof p), 0) << name;
      EXPECT_EQ(name.find('+'), std::string::npos) << name;
    }
  EXPECT_EQ(built, 1 + 2 + 14 * 3);  // 1.7.3 generic only, 1.7.4 without AVX-512
}

TEST(Profiles, UnknownReleasesAndLevelsAreRefusedWithTheNearestNamed) {
  fkm_profile p;
  EXPECT_EQ(fkm_profile_init(&p, 11600, FKM_SIMD_AVX2), FKM_ERR_UNSUPPORTED);
  EXPECT_EQ(fkm_profile_init(&p, 10703, FKM_SIMD_AVX2), FKM_ERR_UNSUPPORTED);
  EXPECT_EQ(fkm_profile_init(&p, 10704, FKM_SIMD_AVX512), FKM_ERR_UNSUPPORTED);
  EXPECT_EQ(fkm_profile_init(&p, 11500, (fkm_simd)7), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_profile_nearest(11600), 11501);
  EXPECT_EQ(fkm_profile_nearest(10600), 10703);
  EXPECT_EQ(fkm_profile_nearest(11050), 11000);
  EXPECT_EQ(fkm_profile_nearest(0), 0);
  EXPECT_EQ(fkm_profile_parse("faiss-1.16.0-avx2", &p), FKM_ERR_UNSUPPORTED);
  for (const char *bad : {"faiss", "faiss-", "faiss-1", "faiss-1.15.1-sse", "FAISS-1.15.1",
                          "faiss-1.15.1.2", "faiss-1.100.0", "", "flashkm2"})
    EXPECT_EQ(fkm_profile_parse(bad, &p), FKM_ERR_INVALID_ARG) << bad;
  // without a level: the one FAISS would load here; 1.7.3 is generic only
  ASSERT_EQ(fkm_profile_parse("faiss-1.7.3", &p), FKM_OK);
  EXPECT_EQ(name_of(p), "faiss-1.7.3-none");
  ASSERT_EQ(fkm_profile_parse("faiss-1.15", &p), FKM_OK);
  EXPECT_EQ(p.faiss_version, 11500);
}

TEST(Profiles, NameSaysWhenLoopsOrThresholdAreNotTheReleasesOwn) {
  fkm_profile p;
  ASSERT_EQ(fkm_profile_init(&p, 11501, FKM_SIMD_AVX2), FKM_OK);
  EXPECT_EQ(name_of(p), "faiss-1.15.1-avx2");
  p.blas_threshold = 128000;
  EXPECT_EQ(name_of(p), "faiss-1.15.1-avx2");
  p.blas_threshold = 7;
  EXPECT_EQ(name_of(p), "faiss-1.15.1-avx2+blas=7");
  p.norm.width = 4;
  EXPECT_EQ(name_of(p), "faiss-1.15.1-avx2+loops+blas=7");
  char tiny[8];
  EXPECT_EQ(fkm_profile_name(&p, tiny, sizeof tiny), FKM_OK);  // truncated, terminated
  EXPECT_EQ(std::strlen(tiny), 7u);
}

// The probe identifies each measured order from the outputs it produces:
// fkm_assign's direct path with one centroid returns fvec_L2sqr / fvec_ip in
// the profile's loop, so the library's own evaluation is the oracle here.
TEST(Profiles, ProbeIdentifiesEveryTableOrderFromItsOwnOutputs) {
  fkm_ctx *ctx;
  ASSERT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx), FKM_OK);
  const std::pair<int, fkm_simd> builds[] = {
      {10703, FKM_SIMD_NONE}, {10800, FKM_SIMD_NONE}, {10800, FKM_SIMD_AVX2},
      {10800, FKM_SIMD_AVX512}, {11000, FKM_SIMD_AVX512}, {11501, FKM_SIMD_NONE},
      {11501, FKM_SIMD_AVX2}, {11501, FKM_SIMD_AVX512}};
  for (auto [v, s] : builds) {
    fkm_params p;
    fkm_params_init(&p);
    ASSERT_EQ(fkm_profile_init(&p.profile, v, s), FKM_OK);
    p.profile.blas_threshold = 1 << 30;  // every call takes the direct path
    std::vector<float> l2(FKM_PROBE_CASES), ip(FKM_PROBE_CASES);
    float x[FKM_PROBE_MAX_D], y[FKM_PROBE_MAX_D];
    for (int i = 0; i < FKM_PROBE_CASES; i++) {
      int64_t d, lab;
      ASSERT_EQ(fkm_probe_case(i, &d, x, y), FKM_OK);
      p.metric = FKM_METRIC_L2;
      ASSERT_EQ(fkm_assign(ctx, &p, 1, d, 1, FKM_DTYPE_F32, x, y, &lab, &l2[i]), FKM_OK);
      p.metric = FKM_METRIC_INNER_PRODUCT;
      ASSERT_EQ(fkm_assign(ctx, &p, 1, d, 1, FKM_DTYPE_F32, x, y, &lab, &ip[i]), FKM_OK);
    }
    fkm_loop_order o;
    ASSERT_EQ(fkm_probe_identify(FKM_PROBE_L2, l2.data(), &o), FKM_OK);
    fkm_profile q = p.profile;
    q.l2 = o;
    ASSERT_EQ(fkm_probe_identify(FKM_PROBE_IP, ip.data(), &o), FKM_OK);
    q.ip = o;
    q.blas_threshold = -1;
    p.profile.blas_threshold = -1;
    EXPECT_EQ(name_of(q), name_of(p.profile)) << "identified loops differ from the table";
  }
  fkm_ctx_destroy(ctx);
  // an output no modelled order gives
  std::vector<float> junk(FKM_PROBE_CASES, 1.25f);
  fkm_loop_order o;
  EXPECT_EQ(fkm_probe_identify(FKM_PROBE_NORM, junk.data(), &o), FKM_ERR_UNSUPPORTED);
  EXPECT_EQ(fkm_probe_identify((fkm_probe_fn)9, junk.data(), &o), FKM_ERR_INVALID_ARG);
  int64_t d;
  float x[FKM_PROBE_MAX_D], y[FKM_PROBE_MAX_D];
  EXPECT_EQ(fkm_probe_case(FKM_PROBE_CASES, &d, x, y), FKM_ERR_INVALID_ARG);
}

struct RunOut {
  fkm_status status;
  std::vector<float> cent;
  std::vector<fkm_iteration_stats> stats;
  std::string error;
};

RunOut train(const fkm_params &p, int64_t n, int64_t d, int64_t k, const std::vector<float> &x) {
  fkm_ctx *ctx;
  RunOut r;
  fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx);
  r.cent.assign(k * d, 0.f);
  r.stats.resize((size_t)p.niter * p.nredo + 1);
  int64_t ns = 0;
  r.status = fkm_train(ctx, &p, n, d, k, FKM_DTYPE_F32, x.data(), nullptr, r.cent.data(), 0,
                       nullptr, nullptr, r.stats.data(), (int64_t)r.stats.size(), &ns);
  r.stats.resize((size_t)ns);
  r.error = fkm_ctx_last_error(ctx);
  fkm_ctx_destroy(ctx);
  return r;
}

TEST(ProfileErrors, ParametersTheReleaseLacksAreRefusedNotIgnored) {
  const auto x = fixtures::blobs(2000, 4, 5, 3);
  fkm_params p;
  fkm_params_init(&p);
  ASSERT_EQ(fkm_profile_init(&p.profile, 10703, FKM_SIMD_NONE), FKM_OK);
  p.early_stop_threshold = 0.0;
  RunOut r = train(p, 2000, 4, 10, x);
  EXPECT_EQ(r.status, FKM_ERR_INVALID_ARG);
  EXPECT_NE(r.error.find("early stopping exists from FAISS 1.14.2"), std::string::npos) << r.error;
  p.early_stop_threshold = -1;
  p.init_method = FKM_INIT_KMEANS_PLUS_PLUS;
  r = train(p, 2000, 4, 10, x);
  EXPECT_EQ(r.status, FKM_ERR_INVALID_ARG);
  EXPECT_NE(r.error.find("faiss-1.7.3-none"), std::string::npos) << r.error;
  p.init_method = FKM_INIT_RANDOM;
  p.use_faster_subsampling = 1;
  EXPECT_EQ(train(p, 2000, 4, 10, x).status, FKM_ERR_INVALID_ARG);
  p.use_faster_subsampling = 0;
  p.init_method = (fkm_init_method)5;
  EXPECT_EQ(train(p, 2000, 4, 10, x).status, FKM_ERR_INVALID_ARG);
  p.init_method = FKM_INIT_RANDOM;
  p.afkmc2_chain_length = 70000;
  EXPECT_EQ(train(p, 2000, 4, 10, x).status, FKM_ERR_INVALID_ARG);
  p.afkmc2_chain_length = 50;
  p.profile.norm.width = 3;  // not a power of two
  r = train(p, 2000, 4, 10, x);
  EXPECT_EQ(r.status, FKM_ERR_INVALID_ARG);
  EXPECT_NE(r.error.find("loop order is malformed"), std::string::npos) << r.error;
  p.profile.norm.width = 0;
  p.profile.faiss_version = 11600;
  r = train(p, 2000, 4, 10, x);
  EXPECT_EQ(r.status, FKM_ERR_UNSUPPORTED);
  EXPECT_NE(r.error.find("nearest: 1.15.1"), std::string::npos) << r.error;
}

TEST(Profiles, EarlyStopEndsTheRunWhenTheObjectiveRepeats) {
  const auto x = fixtures::blobs(3000, 3, 4, 9);
  fkm_params p;
  fkm_params_init(&p);
  p.niter = 200;
  RunOut full = train(p, 3000, 3, 8, x);
  ASSERT_EQ(full.status, FKM_OK);
  ASSERT_EQ(full.stats.size(), 200u);
  p.early_stop_threshold = 0.0;
  RunOut early = train(p, 3000, 3, 8, x);
  ASSERT_EQ(early.status, FKM_OK) << early.error;
  ASSERT_LT(early.stats.size(), 200u);
  const size_t m = early.stats.size();
  EXPECT_EQ(early.stats[m - 1].obj, early.stats[m - 2].obj);
  for (size_t i = 1; i + 1 < m; i++) EXPECT_NE(early.stats[i].obj, early.stats[i - 1].obj);
  // converged: the centroids are those of the full run
  EXPECT_EQ(early.cent, full.cent);
}

TEST(Profiles, SeedingMethodsAndFasterSubsamplingAreDeterministicAndDistinct) {
  const auto x = fixtures::blobs(20000, 5, 12, 4);
  fkm_params p;
  fkm_params_init(&p);
  p.niter = 3;
  std::vector<std::vector<float>> seen;
  for (int m = 0; m < 4; m++) {
    p.init_method = m == 3 ? FKM_INIT_RANDOM : (fkm_init_method)m;
    p.use_faster_subsampling = m == 3;
    p.max_points_per_centroid = m == 3 ? 50 : 256;
    RunOut a = train(p, 20000, 5, 24, x), b = train(p, 20000, 5, 24, x);
    ASSERT_EQ(a.status, FKM_OK) << a.error;
    EXPECT_EQ(a.cent, b.cent) << "method " << m;
    for (const auto &s : seen) EXPECT_NE(s, a.cent) << "method " << m;
    seen.push_back(a.cent);
  }
  // seed = INT64_MAX: no signed overflow (UBSan-clean), FAISS's low 32 bits
  p.init_method = FKM_INIT_RANDOM;
  p.use_faster_subsampling = 0;
  p.seed = INT64_MAX;
  RunOut big = train(p, 20000, 5, 24, x);
  p.seed = 0xffffffff;
  RunOut low = train(p, 20000, 5, 24, x);
  ASSERT_EQ(big.status, FKM_OK);
  EXPECT_EQ(big.cent, low.cent);
}

// fkm_train_rows names the rows the loop trains on, in its order: with
// niter 0 centroid i is training row rand_perm(n_train, seed + 1)[i], for
// rand_perm's subsample and each release's faster subsampling.
TEST(Profiles, TrainRowsAreTheRowsTheLoopTrainsOn) {
  const int64_t n = 5000, d = 3, k = 40;
  const auto x = fixtures::blobs(n, d, 6, 2);
  fkm_ctx *ctx;
  ASSERT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx), FKM_OK);
  struct {
    int version, faster;
  } cases[] = {{0, 0}, {11501, 0}, {11501, 1}, {11000, 1}};
  std::vector<std::vector<int64_t>> seen;
  for (const auto &c : cases) {
    fkm_params p;
    fkm_params_init(&p);
    ASSERT_EQ(fkm_profile_init(&p.profile, c.version, FKM_SIMD_NONE), FKM_OK);
    p.use_faster_subsampling = c.faster;
    p.max_points_per_centroid = 2;
    p.niter = 0;
    std::vector<int64_t> rows(2 * k, -1), init(k);
    int64_t n_train = -1;
    ASSERT_EQ(fkm_train_rows(ctx, &p, n, k, rows.data(), &n_train), FKM_OK)
        << fkm_ctx_last_error(ctx);
    ASSERT_EQ(n_train, 2 * k);
    ASSERT_EQ(fkm_rand_perm(2 * k, p.seed + 1, k, init.data()), FKM_OK);
    RunOut r = train(p, n, d, k, x);
    ASSERT_EQ(r.status, FKM_OK) << r.error;
    for (int64_t i = 0; i < k; i++)
      for (int64_t j = 0; j < d; j++)
        ASSERT_EQ(r.cent[i * d + j], x[rows[init[i]] * d + j])
            << "release " << c.version << " faster " << c.faster << " centroid " << i;
    // the faster draws differ from rand_perm's and between their releases
    // (1.14.2 masks the sign bit before the modulo)
    if (c.faster) {
      for (const auto &s : seen) EXPECT_NE(s, rows) << c.version << " " << c.faster;
    }
    seen.push_back(rows);
  }
  // without subsampling: n_train = n, rows untouched
  fkm_params p;
  fkm_params_init(&p);
  std::vector<int64_t> rows(1, -7);
  int64_t n_train = 0;
  ASSERT_EQ(fkm_train_rows(ctx, &p, 100, 2, rows.data(), &n_train), FKM_OK);
  EXPECT_EQ(n_train, 100);
  EXPECT_EQ(rows[0], -7);
  // errors: a status and a message, nothing written
  EXPECT_EQ(fkm_train_rows(nullptr, &p, 100, 2, rows.data(), &n_train), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_train_rows(ctx, &p, 1, 2, rows.data(), &n_train), FKM_ERR_INVALID_ARG);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx)).find("n >= k"), std::string::npos);
  EXPECT_EQ(fkm_train_rows(ctx, &p, 100, 2, rows.data(), nullptr), FKM_ERR_INVALID_ARG);
  p.use_faster_subsampling = 1;  // the flashkm profile has it; 1.7.3's does not
  ASSERT_EQ(fkm_profile_init(&p.profile, 10703, FKM_SIMD_NONE), FKM_OK);
  n_train = 0;
  EXPECT_EQ(fkm_train_rows(ctx, &p, 100, 2, rows.data(), &n_train), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(n_train, 0);
  fkm_ctx_destroy(ctx);
}

#undef fkm_params_init
extern "C" fkm_status fkm_params_init(fkm_params *params);  // the 0.1 entry point

TEST(Profiles, TheOldInitEntryPointWritesOnlyFlashkm01sFields) {
  fkm_params p;
  std::memset(&p, 0xab, sizeof p);
  ASSERT_EQ(fkm_params_init(&p), FKM_OK);
  const size_t v1 = offsetof(fkm_params, log_user) + sizeof(void *);
  EXPECT_EQ(p.struct_size, v1);
  EXPECT_EQ(p.niter, 25);
  const unsigned char *tail = reinterpret_cast<const unsigned char *>(&p) + v1;
  for (size_t i = 0; i < sizeof p - v1; i++) ASSERT_EQ(tail[i], 0xab) << "byte " << v1 + i;
  // and the library reads such a struct with the newer fields at their defaults
  const auto x = fixtures::blobs(1000, 4, 3, 1);
  p.niter = 2;
  EXPECT_EQ(train(p, 1000, 4, 6, x).status, FKM_OK);
}

}  // namespace
