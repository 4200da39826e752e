// fkm_params.blas_sgemm on the CPU engine: the BLAS path's dot products come
// from the caller's BLAS, called as FAISS calls it. Synthetic BLASes stand in
// for real ones here (the parity suite runs the BLAS FAISS links): one that
// sums in flashkm's own order must change nothing, one that sums in another
// order must move the near-ties exactly where that order puts them.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <tuple>
#include <vector>

#include "fixtures.h"
#include "flashkm.h"

namespace {

enum Order { FORWARD, REVERSE, HALVES };
Order g_order = FORWARD;
std::vector<std::tuple<int, int, int>> g_calls;  // (m, n, k) of each call

// A dot product of length k summed in the chosen order: FORWARD is flashkm's
// reference (an fma chain over t = 0..k-1 from 0), REVERSE the same from
// t = k-1 down, HALVES two chains (first half, second half) added.
float dot(const float* a, const float* b, int k, Order o) {
  float acc = 0.0f;
  if (o == FORWARD)
    for (int t = 0; t < k; t++) acc = std::fmaf(a[t], b[t], acc);
  else if (o == REVERSE)
    for (int t = k - 1; t >= 0; t--) acc = std::fmaf(a[t], b[t], acc);
  else {
    float hi = 0.0f;
    for (int t = 0; t < k / 2; t++) acc = std::fmaf(a[t], b[t], acc);
    for (int t = k / 2; t < k; t++) hi = std::fmaf(a[t], b[t], hi);
    acc = acc + hi;
  }
  return acc;
}

// Column-major C (m x n) = A^T B for A (k x m), B (k x n): FAISS's call.
int sgemm(const char* ta, const char* tb, int* m, int* n, int* k, const float* alpha,
          const float* a, int* lda, const float* b, int* ldb, float* beta, float* c, int* ldc) {
  EXPECT_EQ(ta[0], 'T');
  EXPECT_EQ(tb[0], 'N');
  EXPECT_EQ(*alpha, 1.0f);
  EXPECT_EQ(*beta, 0.0f);
  EXPECT_EQ(*lda, *k);
  EXPECT_EQ(*ldb, *k);
  EXPECT_EQ(*ldc, *m);
  g_calls.emplace_back(*m, *n, *k);
  for (int j = 0; j < *n; j++)
    for (int i = 0; i < *m; i++)
      c[(size_t)j * *ldc + i] = dot(a + (size_t)i * *lda, b + (size_t)j * *ldb, *k, g_order);
  return 0;
}

// Pixels: integers 0..255 with many repeated rows, so that distances are
// large integers and sums round: near-ties in most rows.
std::vector<float> pixels(int64_t n, int64_t d, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<float> protos(16 * d), x(n * d);
  for (auto& v : protos) v = (float)(g() % 256);
  for (int64_t i = 0; i < n; i++) {
    const float* p = protos.data() + (g() % 16) * d;
    for (int64_t j = 0; j < d; j++) {
      int v = (int)p[j] + (int)(g() % 9) - 4;
      x[i * d + j] = (float)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
  return x;
}

struct Assigned {
  std::vector<int64_t> labels;
  std::vector<float> dist;
};

Assigned assign(const fkm_params& p, const std::vector<float>& x, const std::vector<float>& c,
                int64_t n, int64_t d, int64_t k) {
  fkm_ctx* ctx = nullptr;
  EXPECT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx), FKM_OK);
  Assigned r{std::vector<int64_t>(n), std::vector<float>(n)};
  EXPECT_EQ(fkm_assign(ctx, &p, n, d, k, FKM_DTYPE_F32, x.data(), c.data(), r.labels.data(),
                       r.dist.data()),
            FKM_OK)
      << fkm_ctx_last_error(ctx);
  fkm_ctx_destroy(ctx);
  return r;
}

// The 1.7.3 formula and scan of flashkm's reference profile, with the dot
// products in order o: what FAISS computes with a BLAS that sums that way.
Assigned brute_force(const std::vector<float>& x, const std::vector<float>& c, int64_t n,
                     int64_t d, int64_t k, Order o) {
  auto norm = [&](const float* v) {  // the reference profile's norms: in double
    double s = 0;
    for (int64_t j = 0; j < d; j++) s += (double)(v[j] * v[j]);
    return (float)s;
  };
  Assigned r{std::vector<int64_t>(n), std::vector<float>(n)};
  for (int64_t i = 0; i < n; i++) {
    const float xn = norm(&x[i * d]);
    float best = INFINITY;
    int64_t lab = -1;
    for (int64_t j = 0; j < k; j++) {
      float dis = (xn + norm(&c[j * d])) - 2.0f * dot(&x[i * d], &c[j * d], (int)d, o);
      if (dis < 0) dis = 0;
      if (dis < best) {
        best = dis;
        lab = j;
      }
    }
    r.labels[i] = lab;
    r.dist[i] = best;
  }
  return r;
}

// Centroids in twins that differ by one in one pixel: the two distances of
// a row differ by an odd integer, a few ulps of sums near 10^7.
std::vector<float> twins(const std::vector<float>& x, int64_t d, int64_t pairs) {
  std::vector<float> c(2 * pairs * d);
  for (int64_t t = 0; t < pairs; t++) {
    std::memcpy(&c[2 * t * d], &x[t * 37 * d], sizeof(float) * d);
    std::memcpy(&c[(2 * t + 1) * d], &x[t * 37 * d], sizeof(float) * d);
    float& v = c[(2 * t + 1) * d + (t * 13) % d];
    v = v < 128 ? v + 1 : v - 1;
  }
  return c;
}

TEST(Blas, AssignmentFollowsTheBlassOrderNearTiesIncluded) {
  const int64_t n = 3000, d = 784, k = 48;
  auto x = pixels(n, d, 1), c = twins(x, d, k / 2);
  fkm_params p;
  fkm_params_init(&p);
  const Assigned own = assign(p, x, c, n, d, k);
  p.blas_sgemm = sgemm;
  for (Order o : {FORWARD, REVERSE, HALVES}) {
    g_order = o;
    const Assigned got = assign(p, x, c, n, d, k), want = brute_force(x, c, n, d, k, o);
    EXPECT_EQ(got.labels, want.labels) << o;
    EXPECT_EQ(0, std::memcmp(got.dist.data(), want.dist.data(), sizeof(float) * n)) << o;
    int64_t moved = 0;
    for (int64_t i = 0; i < n; i++) moved += got.labels[i] != own.labels[i];
    if (o == FORWARD)
      EXPECT_EQ(moved, 0);  // flashkm's own order: nothing changes
    else
      EXPECT_GT(moved, 0) << "no near-tie in the data: the test would prove nothing";
    std::printf("[ order %d ] %lld of %lld labels differ from flashkm's order\n", (int)o,
                (long long)moved, (long long)n);
  }
}

TEST(Blas, CalledWithFaissBlocks) {
  const int64_t n = 5000, d = 16, k = 1500;
  auto x = fixtures::blobs(n, d, 8, 3), c = fixtures::blobs(k, d, 8, 4);
  fkm_params p;
  fkm_params_init(&p);
  p.blas_sgemm = sgemm;
  g_order = FORWARD;
  g_calls.clear();
  assign(p, x, c, n, d, k);
  using T = std::tuple<int, int, int>;
  // FAISS's loop: query blocks of 4096, database blocks of 1024, m = centroids
  EXPECT_EQ(g_calls, (std::vector<T>{T(1024, 4096, 16), T(476, 4096, 16), T(1024, 904, 16),
                                     T(476, 904, 16)}));
  p.blas_query_bs = 3000;
  p.blas_database_bs = 600;
  g_calls.clear();
  assign(p, x, c, n, d, k);
  EXPECT_EQ(g_calls, (std::vector<T>{T(600, 3000, 16), T(600, 3000, 16), T(300, 3000, 16),
                                     T(600, 2000, 16), T(600, 2000, 16), T(300, 2000, 16)}));
}

// Training through the BLAS: with flashkm's own order every profile's result
// is unchanged (the scans read the BLAS's values exactly as their own), with
// another order the run follows it.
TEST(Blas, TrainingWithTheReferenceOrderChangesNothing) {
  const int64_t n = 6000, d = 40, k = 32;
  auto x = fixtures::blobs(n, d, 12, 5);
  for (const char* prof : {"flashkm", "faiss-1.7.3", "faiss-1.15.1-avx2", "faiss-1.15.1-avx512",
                           "faiss-1.11.0-none"})
    for (fkm_metric m : {FKM_METRIC_L2, FKM_METRIC_INNER_PRODUCT}) {
      fkm_params p;
      fkm_params_init(&p);
      ASSERT_EQ(fkm_profile_parse(prof, &p.profile), FKM_OK);
      p.metric = m;
      p.niter = 6;
      p.max_points_per_centroid = 150;  // subsampled: 4800 rows, two query blocks
      std::vector<float> a(k * d), b(k * d);
      fkm_ctx* ctx = nullptr;
      ASSERT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx), FKM_OK);
      ASSERT_EQ(fkm_train(ctx, &p, n, d, k, FKM_DTYPE_F32, x.data(), nullptr, a.data(), 0,
                          nullptr, nullptr, nullptr, 0, nullptr),
                FKM_OK);
      p.blas_sgemm = sgemm;
      g_order = FORWARD;
      ASSERT_EQ(fkm_train(ctx, &p, n, d, k, FKM_DTYPE_F32, x.data(), nullptr, b.data(), 0,
                          nullptr, nullptr, nullptr, 0, nullptr),
                FKM_OK);
      EXPECT_EQ(0, std::memcmp(a.data(), b.data(), sizeof(float) * k * d)) << prof << " " << m;
      fkm_ctx_destroy(ctx);
    }
}

TEST(Blas, TrainingFollowsAnotherOrder) {
  const int64_t n = 4000, d = 784, k = 16;
  auto x = pixels(n, d, 9);
  fkm_params p;
  fkm_params_init(&p);
  p.niter = 5;
  std::vector<float> own(k * d), rev(k * d);
  fkm_ctx* ctx = nullptr;
  ASSERT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx), FKM_OK);
  std::vector<int64_t> lo(n), lr(n);
  ASSERT_EQ(fkm_train(ctx, &p, n, d, k, FKM_DTYPE_F32, x.data(), nullptr, own.data(), 0,
                      lo.data(), nullptr, nullptr, 0, nullptr),
            FKM_OK);
  p.blas_sgemm = sgemm;
  g_order = REVERSE;
  ASSERT_EQ(fkm_train(ctx, &p, n, d, k, FKM_DTYPE_F32, x.data(), nullptr, rev.data(), 0,
                      lr.data(), nullptr, nullptr, 0, nullptr),
            FKM_OK);
  // the final labels are the reverse order's labels of the final centroids
  const Assigned want = brute_force(x, rev, n, d, k, REVERSE);
  EXPECT_EQ(lr, want.labels);
  EXPECT_NE(0, std::memcmp(own.data(), rev.data(), sizeof(float) * k * d))
      << "the orders agreed on every label of every iteration: no near-tie to follow";
  fkm_ctx_destroy(ctx);
}

// fkm_order_coverage on the CPU engine: it calls the BLAS, so every product
// of the BLAS path is the BLAS's; none without one; FAISS 1.15's direct
// path (nx * d below its threshold) runs FAISS's own loops: every product.
// The call makes no BLAS call of its own.
TEST(Blas, OrderCoverage) {
  fkm_ctx* ctx = nullptr;
  ASSERT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx), FKM_OK);
  fkm_params p;
  fkm_params_init(&p);
  ASSERT_EQ(fkm_profile_parse("faiss-1.15.1-avx2", &p.profile), FKM_OK);
  p.blas_sgemm = sgemm;
  g_calls.clear();
  int64_t covered = -1;
  ASSERT_EQ(fkm_order_coverage(ctx, &p, 5000, 64, 300, FKM_DTYPE_F32, &covered), FKM_OK)
      << fkm_ctx_last_error(ctx);
  EXPECT_EQ(covered, 5000 * 300);
  EXPECT_TRUE(g_calls.empty());
  ASSERT_EQ(fkm_order_coverage(ctx, &p, 10, 64, 300, FKM_DTYPE_F32, &covered), FKM_OK);
  EXPECT_EQ(covered, 10 * 300) << "FAISS 1.15's direct path";
  ASSERT_EQ(fkm_order_coverage(ctx, &p, 0, 64, 300, FKM_DTYPE_F32, &covered), FKM_OK);
  EXPECT_EQ(covered, 0);
  p.blas_sgemm = nullptr;
  covered = -1;
  ASSERT_EQ(fkm_order_coverage(ctx, &p, 5000, 64, 300, FKM_DTYPE_F32, &covered), FKM_OK);
  EXPECT_EQ(covered, 0);
  ASSERT_EQ(fkm_order_coverage(ctx, &p, 10, 64, 300, FKM_DTYPE_F32, &covered), FKM_OK);
  EXPECT_EQ(covered, 10 * 300);
  // errors are statuses, *covered untouched
  covered = 42;
  EXPECT_EQ(fkm_order_coverage(ctx, &p, 10, 64, 300, FKM_DTYPE_F32, nullptr),
            FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_order_coverage(ctx, &p, -1, 64, 300, FKM_DTYPE_F32, &covered),
            FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_order_coverage(ctx, &p, 10, 0, 300, FKM_DTYPE_F32, &covered),
            FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_order_coverage(ctx, &p, int64_t(1) << 58, 2, int64_t(1) << 30,
                               FKM_DTYPE_F32, &covered),
            FKM_ERR_INVALID_ARG);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx)).find("overflows"), std::string::npos)
      << fkm_ctx_last_error(ctx);
  p.assign_mode = FKM_ASSIGN_FAST;
  EXPECT_EQ(fkm_order_coverage(ctx, &p, 10, 64, 300, FKM_DTYPE_F16, &covered),
            FKM_ERR_UNSUPPORTED);
  EXPECT_EQ(covered, 42);
  EXPECT_EQ(fkm_order_coverage(nullptr, &p, 10, 64, 300, FKM_DTYPE_F32, &covered),
            FKM_ERR_INVALID_ARG);
  fkm_ctx_destroy(ctx);
}

TEST(BadInput, BlasBlocksMustBePositive) {
  fkm_ctx* ctx = nullptr;
  ASSERT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &ctx), FKM_OK);
  fkm_params p;
  fkm_params_init(&p);
  p.blas_sgemm = sgemm;
  p.blas_database_bs = 0;
  std::vector<float> x(40, 1.0f), c(8, 1.0f);
  std::vector<int64_t> l(10, 42);
  EXPECT_EQ(fkm_assign(ctx, &p, 10, 4, 2, FKM_DTYPE_F32, x.data(), c.data(), l.data(), nullptr),
            FKM_ERR_INVALID_ARG);
  EXPECT_NE(std::string(fkm_ctx_last_error(ctx)).find("blas_database_bs = 0"), std::string::npos);
  for (auto v : l) EXPECT_EQ(v, 42);
  fkm_ctx_destroy(ctx);
}

}  // namespace
