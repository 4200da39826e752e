// docs/contract.md section 1: flashkm's random streams against FAISS's rand_perm, and
// against a model built on std::mt19937 where FAISS cannot go (n near 2^31).
#include <faiss/utils/random.h>

#include <random>
#include <unordered_map>

#include "parity.h"

namespace {

// faiss::rand_perm's definition (docs/contract.md section 1) on std::mt19937, with a
// sparse swap map: the first m entries of the permutation of n.
std::vector<int64_t> model_perm_prefix(int64_t n, int64_t seed, int64_t m) {
  std::mt19937 mt(static_cast<uint32_t>(uint64_t(seed)));
  std::unordered_map<int64_t, int64_t> moved;
  auto at = [&](int64_t i) {
    auto it = moved.find(i);
    return it == moved.end() ? i : it->second;
  };
  std::vector<int64_t> out(static_cast<size_t>(m));
  for (int64_t i = 0; i < m; i++) {
    int64_t j = i;
    if (i + 1 < n) j = i + int64_t(mt() % uint32_t(n - i));
    int64_t vi = at(i), vj = at(j);
    moved[i] = vj;
    moved[j] = vi;
    out[size_t(i)] = vj;
  }
  return out;
}

const int64_t kSeeds[] = {0,         1,          1234,        1235,
                          -1,        2147483647, 4294967296 + 5, 1235 + 15486557,
                          1235 + 2 * 15486557, -987654321};

}  // namespace

TEST(ParityStreams, RandPermEqualsFaissRandPermForManySeedsAndSizes) {
  const int64_t sizes[] = {1, 2, 3, 7, 100, 1000, 65537, 1000003};
  int64_t compared = 0;
  for (int64_t n : sizes) {
    for (int64_t seed : kSeeds) {
      std::vector<int> ref(static_cast<size_t>(n));
      faiss::rand_perm(ref.data(), size_t(n), seed);
      std::vector<int64_t> ours(static_cast<size_t>(n));
      ASSERT_EQ(fkm_rand_perm(n, seed, n, ours.data()), FKM_OK);
      for (int64_t i = 0; i < n; i++)
        ASSERT_EQ(ours[size_t(i)], int64_t(ref[size_t(i)]))
            << "n " << n << " seed " << seed << " index " << i;
      // A prefix is the prefix of the full permutation.
      const int64_t m = n / 3;
      std::vector<int64_t> prefix(size_t(m) + 1);
      ASSERT_EQ(fkm_rand_perm(n, seed, m, prefix.data()), FKM_OK);
      for (int64_t i = 0; i < m; i++) ASSERT_EQ(prefix[size_t(i)], int64_t(ref[size_t(i)]));
      compared += n + m;
    }
  }
  std::printf("rand_perm: %zu sizes x %zu seeds, %" PRId64 " entries equal FAISS's\n",
              std::size(sizes), std::size(kSeeds), compared);
}

TEST(ParityStreams, Mt19937ModelEqualsFaissRandPerm) {
  // The model used for sizes FAISS cannot allocate is itself FAISS's stream.
  for (int64_t seed : kSeeds) {
    const int64_t n = 100003;
    std::vector<int> ref(static_cast<size_t>(n));
    faiss::rand_perm(ref.data(), size_t(n), seed);
    std::vector<int64_t> model = model_perm_prefix(n, seed, n);
    for (int64_t i = 0; i < n; i++) ASSERT_EQ(model[size_t(i)], int64_t(ref[size_t(i)]));
  }
}

TEST(ParityStreams, RandPermPrefixOfHugeNEqualsMt19937Model) {
  const int64_t sizes[] = {int64_t(1) << 30, 2147483647, 1000000007};
  for (int64_t n : sizes) {
    for (size_t si = 0; si < std::size(kSeeds); si++) {
      const int64_t seed = kSeeds[si];
      // 5000 draws group on the calling thread, 40000 on OpenMP's threads
      const int64_t m = si % 2 ? 40000 : 5000;
      std::vector<int64_t> ours(static_cast<size_t>(m));
      ASSERT_EQ(fkm_rand_perm(n, seed, m, ours.data()), FKM_OK);
      std::vector<int64_t> model = model_perm_prefix(n, seed, m);
      for (int64_t i = 0; i < m; i++)
        ASSERT_EQ(ours[size_t(i)], model[size_t(i)]) << "n " << n << " seed " << seed;
    }
  }
  std::printf("rand_perm prefixes of n up to 2^31-1: %zu sizes x %zu seeds x 5000 or 40000 "
              "entries equal the std::mt19937 model\n",
              std::size(sizes), std::size(kSeeds));
}
