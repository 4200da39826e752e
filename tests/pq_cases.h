// Product-quantizer encoding fixtures (fkm_pq_encode): sub-vectors whose
// nearest centroids are decided by rounding alone. For every sub-quantizer,
// a third of the centroids are the sub-vector's base plus a permutation of
// one set of offsets (all at the same exact distance: the distance formula's
// order decides), a third exact copies of a few of them (ties: the scan's
// rule decides), the rest random; rows are the bases plus tiny noise or
// exactly the bases. Shared by the CPU and GPU suites.
#ifndef FKM_TESTS_PQ_CASES_H
#define FKM_TESTS_PQ_CASES_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

struct PqCase {
  int64_t n, d, M, nlist;
  int nbits;
  std::vector<float> x, pq, coarse;
  std::vector<int64_t> lists;
  int64_t code_size() const { return (M * nbits + 7) / 8; }
};

inline PqCase make_pq_case(int64_t n, int64_t dsub, int64_t M, int nbits, bool residual,
                           uint32_t seed) {
  PqCase c;
  c.n = n;
  c.d = dsub * M;
  c.M = M;
  c.nbits = nbits;
  c.nlist = residual ? 5 : 0;
  const int64_t ksub = int64_t(1) << nbits;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> base(static_cast<size_t>(c.d)), offsets(static_cast<size_t>(dsub));
  for (auto &v : base) v = std::ldexp(std::floor(u(rng) * 64.0f), -3); /* k / 8 */
  for (auto &v : offsets) v = 0.25f + std::ldexp(u(rng), -12) * 3.0f;
  c.pq.resize(size_t(c.M * ksub * dsub));
  for (int64_t m = 0; m < M; m++)
    for (int64_t i = 0; i < ksub; i++) {
      float *y = &c.pq[size_t((m * ksub + i) * dsub)];
      const int kind = int(i % 3);
      if (kind == 0 || i < 3) { /* base + a permutation of the offsets, signs random */
        std::vector<float> o = offsets;
        std::shuffle(o.begin(), o.end(), rng);
        for (int64_t j = 0; j < dsub; j++)
          y[j] = base[size_t(m * dsub + j)] + ((rng() & 1) ? o[size_t(j)] : -o[size_t(j)]);
      } else if (kind == 1) { /* a copy of an earlier centroid */
        const int64_t from = int64_t(rng() % uint32_t(i));
        for (int64_t j = 0; j < dsub; j++) y[j] = c.pq[size_t((m * ksub + from) * dsub + j)];
      } else {
        for (int64_t j = 0; j < dsub; j++) y[j] = base[size_t(m * dsub + j)] + u(rng);
      }
    }
  c.x.resize(size_t(n * c.d));
  if (residual) {
    c.coarse.resize(size_t(c.nlist * c.d));
    for (auto &v : c.coarse) v = std::ldexp(std::floor(u(rng) * 1024.0f), -4);
    c.lists.resize(size_t(n));
    for (auto &l : c.lists) l = int64_t(rng() % uint32_t(c.nlist));
  }
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < c.d; j++) {
      float v = base[size_t(j)];
      if (i % 4 != 0) v += std::ldexp(u(rng), -20);
      if (residual) v += c.coarse[size_t(c.lists[size_t(i)] * c.d + j)];
      c.x[size_t(i * c.d + j)] = v;
    }
  return c;
}

#endif
