// FAISS's random streams (docs/contract.md section 1): fkm_rand_perm against a dense
// Fisher-Yates over std::mt19937, for many seeds and sizes.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "flashkm.h"
#include "naive_reference.h"

TEST(RandomStreams, PermPrefixEqualsDenseFisherYatesOverStdMt19937) {
  int compared = 0;
  for (int64_t n : {1, 2, 3, 10, 97, 1000, 65537, 300000}) {
    for (int64_t seed : {0LL, 1LL, 1234LL, 1235LL, 15487791LL, -5LL, 4294967297LL}) {
      std::vector<int64_t> ref = naive::rand_perm(n, seed);
      for (int64_t m : {n, n / 2, std::min<int64_t>(n, 7)}) {
        std::vector<int64_t> got(m + 1, -1);
        ASSERT_EQ(fkm_rand_perm(n, seed, m, got.data()), FKM_OK);
        for (int64_t i = 0; i < m; i++)
          ASSERT_EQ(got[i], ref[i]) << "n=" << n << " seed=" << seed << " m=" << m << " i=" << i;
        EXPECT_EQ(got[m], -1) << "wrote past m";
        compared++;
      }
    }
  }
  std::printf("[ compared ] %d (n, seed, m) permutation prefixes\n", compared);
}

TEST(RandomStreams, SparsePrefixOfAHugePermutationIsAPermutationPrefix) {
  // n = 10^9 with O(m) memory: the prefix must hold distinct values < n, and
  // equal the first entries of the same stream computed for a smaller m.
  const int64_t n = 1000000000, m = 4096;
  std::vector<int64_t> a(m), b(16);
  ASSERT_EQ(fkm_rand_perm(n, 1234, m, a.data()), FKM_OK);
  ASSERT_EQ(fkm_rand_perm(n, 1234, 16, b.data()), FKM_OK);
  std::vector<int64_t> sorted(a);
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
  EXPECT_LT(sorted.back(), n);
  EXPECT_GE(sorted.front(), 0);
  for (int i = 0; i < 16; i++) EXPECT_EQ(a[i], b[i]);
  // The first draw is mt19937(1234)() % n exactly.
  std::mt19937 mt(1234);
  EXPECT_EQ(a[0], (int64_t)(mt() % (uint32_t)n));
}

TEST(RandomStreamsBadInput, PermRejectsOutOfRangeArguments) {
  int64_t out[4];
  EXPECT_EQ(fkm_rand_perm(-1, 1, 0, out), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_rand_perm(3, 1, 4, out), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_rand_perm(3, 1, 2, nullptr), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_rand_perm((int64_t)1 << 31, 1, 2, out), FKM_ERR_INVALID_ARG);
}

// A context keeps the last subsampled run's rows (FAISS's rand_perm prefix)
// and a run drawing the same prefix reads them: every call of a sequence on
// one context, changing n, the seed, the subsample size, the subsampling
// kind and releasing the context's memory between, equals the same call on
// a fresh context, bit for bit.
TEST(RandomStreams, AContextReusesTheLastSubsampleOnlyForTheSamePrefix) {
  const int64_t d = 8, k = 8;
  std::mt19937 mt(7);
  std::normal_distribution<float> nd;
  std::vector<float> x(4000 * d);
  for (float &v : x) v = nd(mt);
  struct Call {
    int64_t n, seed;
    int max_points;
    int faster;
    bool release_before;
  };
  const Call calls[] = {{3000, 1234, 100, 0, false}, {3000, 1234, 100, 0, false},
                        {3000, 99, 100, 0, false},   {3000, 1234, 100, 0, false},
                        {3001, 1234, 100, 0, false}, {3001, 1234, 120, 0, false},
                        {3001, 1234, 120, 1, false}, {3001, 1234, 120, 0, false},
                        {3001, 1234, 120, 0, true},  {4000, 5, 300, 0, false},
                        {4000, 5, 300, 0, false}};
  fkm_ctx *kept = nullptr;
  ASSERT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &kept), FKM_OK);
  for (const Call &c : calls) {
    fkm_params p;
    fkm_params_init(&p);
    p.niter = 4;
    p.seed = c.seed;
    p.max_points_per_centroid = c.max_points;
    p.use_faster_subsampling = c.faster;
    if (c.release_before) {
      ASSERT_EQ(fkm_ctx_release_memory(kept), FKM_OK);
    }
    std::vector<float> got(k * d), want(k * d);
    ASSERT_EQ(fkm_train(kept, &p, c.n, d, k, FKM_DTYPE_F32, x.data(), nullptr, got.data(), 0,
                        nullptr, nullptr, nullptr, 0, nullptr),
              FKM_OK)
        << fkm_ctx_last_error(kept);
    fkm_ctx *fresh = nullptr;
    ASSERT_EQ(fkm_ctx_create(FKM_BACKEND_CPU, 0, &fresh), FKM_OK);
    ASSERT_EQ(fkm_train(fresh, &p, c.n, d, k, FKM_DTYPE_F32, x.data(), nullptr, want.data(), 0,
                        nullptr, nullptr, nullptr, 0, nullptr),
              FKM_OK)
        << fkm_ctx_last_error(fresh);
    fkm_ctx_destroy(fresh);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), sizeof(float) * got.size()), 0)
        << "n " << c.n << " seed " << c.seed << " max_points " << c.max_points << " faster "
        << c.faster;
  }
  fkm_ctx_destroy(kept);
}
