// The CPU reference engine against hand-computed values and against the
// naive transcription of docs/contract.md (tests/naive_reference.h), bit for bit.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "fixtures.h"
#include "flashkm.h"
#include "naive_reference.h"

namespace {

struct Ctx {
  fkm_ctx* c = nullptr;
  explicit Ctx(int threads = 0) {
    EXPECT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &c), FKM_OK);
    if (threads) {
      EXPECT_EQ(fkm_ctx_set_num_threads(c, threads), FKM_OK);
    }
  }
  ~Ctx() { fkm_ctx_destroy(c); }
};

fkm_params defaults() {
  fkm_params p;
  fkm_params_init(&p);
  return p;
}

bool same_bits(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

struct TrainOut {
  std::vector<float> centroids;
  std::vector<int64_t> labels;
  std::vector<float> distances;
  std::vector<fkm_iteration_stats> stats;
};

TrainOut train(fkm_ctx* ctx, const fkm_params& p, int64_t n, int64_t d, int64_t k,
          const float* x, const float* w = nullptr, const float* init = nullptr,
          int64_t n_init = 0) {
  TrainOut r;
  r.centroids.assign(k * d, -7.f);
  if (n_init) std::memcpy(r.centroids.data(), init, sizeof(float) * n_init * d);
  r.labels.assign(n, -3);
  r.distances.assign(n, -5.f);
  r.stats.resize((size_t)p.niter * p.nredo + 1);
  int64_t ns = -1;
  fkm_status s = fkm_train(ctx, &p, n, d, k, FKM_DTYPE_F32, x, w, r.centroids.data(),
                           n_init, r.labels.data(), r.distances.data(), r.stats.data(),
                           (int64_t)r.stats.size(), &ns);
  EXPECT_EQ(s, FKM_OK) << fkm_ctx_last_error(ctx);
  r.stats.resize(ns < 0 ? 0 : ns);
  return r;
}

void expect_stats_equal(const std::vector<fkm_iteration_stats>& a,
                        const std::vector<fkm_iteration_stats>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); i++) {
    EXPECT_EQ(std::memcmp(&a[i].obj, &b[i].obj, sizeof(float)), 0) << "iteration " << i;
    EXPECT_EQ(a[i].imbalance_factor, b[i].imbalance_factor) << "iteration " << i;
    EXPECT_EQ(a[i].nsplit, b[i].nsplit) << "iteration " << i;
    EXPECT_EQ(a[i].obj_double, b[i].obj_double) << "iteration " << i;
  }
}

TEST(Reference, TinyHandComputedCase) {
  // 1-D points {0, 1, 10, 11}, initial centroids {0, 10}: after one update
  // they are {0.5, 10.5}; the first objective is 0+1+0+1, the second 4*0.25.
  const float x[] = {0, 1, 10, 11}, init[] = {0, 10};
  fkm_params p = defaults();
  p.niter = 2;
  p.min_points_per_centroid = 1;
  Ctx ctx;
  TrainOut r = train(ctx.c, p, 4, 1, 2, x, nullptr, init, 2);
  EXPECT_EQ(r.centroids, (std::vector<float>{0.5f, 10.5f}));
  EXPECT_EQ(r.labels, (std::vector<int64_t>{0, 0, 1, 1}));
  EXPECT_EQ(r.distances, (std::vector<float>{0.25f, 0.25f, 0.25f, 0.25f}));
  ASSERT_EQ(r.stats.size(), 2u);
  EXPECT_EQ(r.stats[0].obj, 2.0f);
  EXPECT_EQ(r.stats[1].obj, 1.0f);
  EXPECT_EQ(r.stats[1].imbalance_factor, 1.0);
  EXPECT_EQ(r.stats[1].nsplit, 0);
}

TEST(Reference, TinyWeightedCase) {
  // weights {3, 1} on {0, 4}: centroid (0*3 + 4*1) / 4 = 1.
  const float x[] = {0, 4, 100}, w[] = {3, 1, 2}, init[] = {0, 100};
  fkm_params p = defaults();
  p.niter = 1;
  Ctx ctx;
  TrainOut r = train(ctx.c, p, 3, 1, 2, x, w, init, 2);
  EXPECT_EQ(r.centroids, (std::vector<float>{1.0f, 100.0f}));
}

TEST(Reference, NEqualsKCopiesTheInputRows) {
  auto x = fixtures::blobs(16, 5, 4, 3);
  fkm_params p = defaults();
  Ctx ctx;
  TrainOut r = train(ctx.c, p, 16, 5, 16, x.data());
  EXPECT_TRUE(same_bits(r.centroids, x));
  ASSERT_EQ(r.stats.size(), 1u);
  EXPECT_EQ(r.stats[0].imbalance_factor, 1.0);
  for (int64_t i = 0; i < 16; i++) EXPECT_EQ(r.labels[i], i);
}

struct Config {
  const char* name;
  int64_t n, d, k;
  int niter = 6, nredo = 1, spherical = 0, int_centroids = 0, frozen = 0;
  int64_t n_init = 0, seed = 1234;
  int max_ppc = 256;
  fkm_metric metric = FKM_METRIC_L2;
  bool weights = false;
  int distinct = 0;  // > 0: only this many distinct points (forces splits)
  float scale = 1.0f, offset = 0.0f;
};

std::string name_of(const testing::TestParamInfo<Config>& i) { return i.param.name; }

class AgainstNaive : public testing::TestWithParam<Config> {};

TEST_P(AgainstNaive, CentroidsStatsAndLabelsAreBitIdentical) {
  const Config& c = GetParam();
  auto x = fixtures::blobs(c.n, c.d, 12, 99 + (uint32_t)c.n, 0.5f, c.offset);
  for (auto& v : x) v *= c.scale;
  if (c.distinct)
    for (int64_t i = c.distinct; i < c.n; i++)
      std::memcpy(&x[i * c.d], &x[(i % c.distinct) * c.d], sizeof(float) * c.d);
  std::vector<float> w;
  if (c.weights) w = fixtures::uniform(c.n, 5, 0.0f, 3.0f);
  auto init = fixtures::blobs(c.n_init, c.d, 3, 7);
  fkm_params p = defaults();
  p.niter = c.niter;
  p.nredo = c.nredo;
  p.spherical = c.spherical;
  p.int_centroids = c.int_centroids;
  p.frozen_centroids = c.frozen;
  p.seed = c.seed;
  p.metric = c.metric;
  p.max_points_per_centroid = c.max_ppc;
  p.min_points_per_centroid = 1;
  const float* wp = c.weights ? w.data() : nullptr;
  naive::Result ref = naive::train(p, c.n, c.d, c.k, x.data(), wp, init.data(), c.n_init);
  Ctx ctx;
  TrainOut got = train(ctx.c, p, c.n, c.d, c.k, x.data(), wp, init.data(), c.n_init);
  ASSERT_EQ(got.centroids.size(), ref.centroids.size());
  size_t diff = 0;
  for (size_t i = 0; i < got.centroids.size(); i++)
    diff += std::memcmp(&got.centroids[i], &ref.centroids[i], 4) != 0;
  EXPECT_EQ(diff, 0u) << "centroid values differing from the naive reference";
  expect_stats_equal(got.stats, ref.stats);
  // Labels and distances: the final centroids' assignment of every input row.
  for (int64_t i = 0; i < c.n; i += 7) {
    float dis;
    int64_t lab = naive::nearest(&x[i * c.d], ref.centroids.data(), c.d, c.k, c.metric, &dis);
    ASSERT_EQ(got.labels[i], lab) << "row " << i;
    ASSERT_EQ(std::memcmp(&got.distances[i], &dis, 4), 0) << "row " << i;
  }
  int64_t nsplit = 0;
  for (auto& s : got.stats) nsplit += s.nsplit;
  std::printf("[ compared ] %s: %zu centroid floats, %zu stats, nsplit %lld, 0 bits differ\n",
              c.name, got.centroids.size(), got.stats.size(), (long long)nsplit);
}

Config cfg(const char* name, int64_t n, int64_t d, int64_t k) {
  Config c;
  c.name = name;
  c.n = n;
  c.d = d;
  c.k = k;
  return c;
}

std::vector<Config> configs() {
  std::vector<Config> v;
  v.push_back(cfg("default", 3000, 16, 20));
  v.push_back(cfg("d1", 2000, 1, 9));
  v.push_back(cfg("d3_large_offset", 4000, 3, 31));
  v.back().offset = 300.0f;  // cancellation in (xn + cn) - 2 ip
  v.push_back(cfg("d37_k129_partial_panel", 2500, 37, 129));
  { Config c = cfg("subsampling", 5000, 8, 10); c.max_ppc = 39; v.push_back(c); }
  { Config c = cfg("nredo3", 2000, 8, 12); c.nredo = 3; v.push_back(c); }
  { Config c = cfg("other_seed", 2000, 8, 12); c.seed = 777; v.push_back(c); }
  { Config c = cfg("weights", 3000, 12, 15); c.weights = true; v.push_back(c); }
  { Config c = cfg("weights_subsampling", 6000, 12, 15); c.weights = true; c.max_ppc = 100; v.push_back(c); }
  { Config c = cfg("spherical_ip", 3000, 24, 16); c.spherical = 1; c.metric = FKM_METRIC_INNER_PRODUCT; v.push_back(c); }
  { Config c = cfg("ip_not_spherical", 2000, 6, 8); c.metric = FKM_METRIC_INNER_PRODUCT; v.push_back(c); }
  { Config c = cfg("int_centroids", 3000, 8, 10); c.int_centroids = 1; c.scale = 40.0f; v.push_back(c); }
  { Config c = cfg("forced_splits", 1500, 4, 64); c.distinct = 20; v.push_back(c); }
  { Config c = cfg("frozen", 3000, 8, 16); c.n_init = 5; c.frozen = 1; v.push_back(c); }
  { Config c = cfg("initial_centroids", 3000, 8, 16); c.n_init = 5; v.push_back(c); }
  { Config c = cfg("initial_centroids_nredo2", 3000, 8, 16); c.n_init = 4; c.nredo = 2; v.push_back(c); }
  { Config c = cfg("frozen_splits", 1200, 4, 40); c.n_init = 6; c.frozen = 1; c.distinct = 15; v.push_back(c); }
  { Config c = cfg("tiny_magnitudes", 2000, 5, 7); c.scale = 1e-20f; v.push_back(c); }
  { Config c = cfg("huge_magnitudes", 2000, 5, 7); c.scale = 1e17f; v.push_back(c); }
  { Config c = cfg("zero_iterations", 1000, 5, 7); c.niter = 0; v.push_back(c); }
  return v;
}

INSTANTIATE_TEST_SUITE_P(Configs, AgainstNaive, testing::ValuesIn(configs()), name_of);

TEST(Reference, ThreadCountDoesNotChangeBits) {
  auto x = fixtures::blobs(4000, 20, 10, 42);
  fkm_params p = defaults();
  p.niter = 5;
  Ctx one(1), two(2);
  TrainOut a = train(one.c, p, 4000, 20, 50, x.data());
  TrainOut b = train(two.c, p, 4000, 20, 50, x.data());
  EXPECT_TRUE(same_bits(a.centroids, b.centroids));
  EXPECT_EQ(a.labels, b.labels);
  EXPECT_TRUE(same_bits(a.distances, b.distances));
  expect_stats_equal(a.stats, b.stats);
}

// fp16 and bf16 inputs are converted exactly to float first.
uint16_t to_half_bits(float f) {  // exact for the values used below
  uint32_t b;
  std::memcpy(&b, &f, 4);
  uint32_t sign = (b >> 16) & 0x8000u;
  int32_t e = (int32_t)((b >> 23) & 0xff) - 127 + 15;
  uint32_t man = (b >> 13) & 0x3ffu;
  return (uint16_t)(sign | ((uint32_t)e << 10) | man);
}

TEST(Reference, HalfAndBfloat16InputsEqualTheirFloatValues) {
  const int64_t n = 1500, d = 8, k = 9;
  auto x = fixtures::blobs(n, d, 5, 11);
  std::vector<uint16_t> h(n * d), bf(n * d);
  std::vector<float> xh(n * d), xb(n * d);
  for (int64_t i = 0; i < n * d; i++) {
    // round to values half represents exactly: a 1/32 grid within [-32, 32]
    float v = std::round(x[i] * 32.0f) / 32.0f;
    if (std::fabs(v) < 1.0f / 64) v = 0.25f;  // stay in half's normal range
    h[i] = to_half_bits(v);
    xh[i] = v;
    uint32_t bits;
    std::memcpy(&bits, &x[i], 4);
    bf[i] = (uint16_t)(bits >> 16);
    bits &= 0xffff0000u;
    std::memcpy(&xb[i], &bits, 4);
  }
  fkm_params p = defaults();
  p.niter = 4;
  Ctx ctx;
  TrainOut rf = train(ctx.c, p, n, d, k, xh.data());
  std::vector<float> ch(k * d);
  ASSERT_EQ(fkm_train(ctx.c, &p, n, d, k, FKM_DTYPE_F16, h.data(), nullptr, ch.data(), 0,
                      nullptr, nullptr, nullptr, 0, nullptr), FKM_OK) << fkm_ctx_last_error(ctx.c);
  EXPECT_TRUE(same_bits(rf.centroids, ch));
  TrainOut rb = train(ctx.c, p, n, d, k, xb.data());
  std::vector<float> cb(k * d);
  ASSERT_EQ(fkm_train(ctx.c, &p, n, d, k, FKM_DTYPE_BF16, bf.data(), nullptr, cb.data(), 0,
                      nullptr, nullptr, nullptr, 0, nullptr), FKM_OK);
  EXPECT_TRUE(same_bits(rb.centroids, cb));
}

TEST(Reference, AssignMatchesNaiveOnExactTies) {
  // Duplicate centroids: the lowest index must win, for L2 and IP.
  const int64_t d = 4, k = 6, n = 50;
  auto x = fixtures::blobs(n, d, 3, 1);
  std::vector<float> c = fixtures::blobs(3, d, 3, 2);
  c.insert(c.end(), c.begin(), c.end());  // rows 3..5 duplicate rows 0..2
  for (fkm_metric m : {FKM_METRIC_L2, FKM_METRIC_INNER_PRODUCT}) {
    fkm_params p = defaults();
    p.metric = m;
    std::vector<int64_t> lab(n);
    std::vector<float> dis(n);
    Ctx ctx;
    ASSERT_EQ(fkm_assign(ctx.c, &p, n, d, k, FKM_DTYPE_F32, x.data(), c.data(), lab.data(),
                         dis.data()), FKM_OK);
    for (int64_t i = 0; i < n; i++) {
      float rd;
      EXPECT_EQ(lab[i], naive::nearest(&x[i * d], c.data(), d, k, m, &rd));
      EXPECT_LT(lab[i], 3);
      EXPECT_EQ(dis[i], rd);
    }
  }
}

TEST(Reference, BatchedEqualsSeparateRuns) {
  const int64_t B = 3, n = 800, d = 6, k = 7;
  std::vector<float> x;
  for (int b = 0; b < B; b++) {
    auto xb = fixtures::blobs(n, d, 4, 100 + b);
    x.insert(x.end(), xb.begin(), xb.end());
  }
  fkm_params p = defaults();
  p.niter = 5;
  Ctx ctx;
  std::vector<float> cent(B * k * d);
  std::vector<int64_t> lab(B * n);
  std::vector<fkm_iteration_stats> st(B * 5);
  std::vector<int64_t> ns(B);
  ASSERT_EQ(fkm_train_batched(ctx.c, &p, B, n, d, k, FKM_DTYPE_F32, x.data(), nullptr,
                              cent.data(), 0, lab.data(), nullptr, st.data(), 5, ns.data()),
            FKM_OK);
  for (int b = 0; b < B; b++) {
    TrainOut r = train(ctx.c, p, n, d, k, x.data() + b * n * d);
    EXPECT_TRUE(same_bits(r.centroids, std::vector<float>(cent.begin() + b * k * d,
                                                          cent.begin() + (b + 1) * k * d)));
    EXPECT_EQ(r.labels, std::vector<int64_t>(lab.begin() + b * n, lab.begin() + (b + 1) * n));
    EXPECT_EQ(ns[b], 5);
    expect_stats_equal(r.stats, std::vector<fkm_iteration_stats>(st.begin() + b * 5,
                                                                 st.begin() + (b + 1) * 5));
  }
}

TEST(Reference, StatsTimesAreCumulativeAndProgressSeesEveryIteration) {
  auto x = fixtures::blobs(2000, 8, 5, 9);
  fkm_params p = defaults();
  p.niter = 4;
  p.nredo = 2;
  std::vector<std::pair<int, int>> seen;
  p.progress = [](void* u, int redo, int it, const fkm_iteration_stats*) {
    static_cast<std::vector<std::pair<int, int>>*>(u)->push_back({redo, it});
    return 0;
  };
  p.progress_user = &seen;
  Ctx ctx;
  TrainOut r = train(ctx.c, p, 2000, 8, 10, x.data());
  EXPECT_EQ(seen.size(), 8u);
  EXPECT_EQ(seen.back(), (std::pair<int, int>{1, 3}));
  for (size_t i = 1; i < r.stats.size(); i++) {
    EXPECT_GE(r.stats[i].time, r.stats[i - 1].time);
    EXPECT_GE(r.stats[i].time_search, r.stats[i - 1].time_search);
  }
}

TEST(Reference, LogCallbackGetsTheFewPointsWarning) {
  auto x = fixtures::blobs(100, 4, 3, 9);
  fkm_params p = defaults();
  p.niter = 1;
  std::vector<std::string> lines;
  p.log = [](void* u, fkm_log_level lvl, const char* m) {
    if (lvl == FKM_LOG_WARNING) static_cast<std::vector<std::string>*>(u)->push_back(m);
  };
  p.log_user = &lines;
  Ctx ctx;
  train(ctx.c, p, 100, 4, 10, x.data());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("please provide at least 390 training points"), std::string::npos)
      << lines[0];
}

// The speed bar for the CPU engine: N=200k, K=1024, d=128, 10
// iterations well under a minute on 2 cores.
TEST(ReferenceSpeed, TwoHundredThousandPointsK1024D128TenIterations) {
  const int64_t n = 200000, d = 128, k = 1024;
  auto x = fixtures::blobs(n, d, 200, 5, 1.0f);
  fkm_params p = defaults();
  p.niter = 10;
  Ctx ctx;
  std::vector<float> cent(k * d);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(fkm_train(ctx.c, &p, n, d, k, FKM_DTYPE_F32, x.data(), nullptr, cent.data(), 0,
                      nullptr, nullptr, nullptr, 0, nullptr), FKM_OK);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[ measured ] N=%lld K=%lld d=%lld, 10 iterations: %.2f s on %s\n",
              (long long)n, (long long)k, (long long)d, s, fkm_ctx_device_name(ctx.c));
  EXPECT_LT(s, 60.0);
}

}  // namespace
