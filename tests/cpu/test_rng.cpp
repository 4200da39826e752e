// FAISS's random streams (docs/contract.md section 1): fkm_rand_perm against a dense
// Fisher-Yates over std::mt19937, for many seeds and sizes.
#include <gtest/gtest.h>

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
