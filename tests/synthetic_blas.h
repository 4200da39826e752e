// A synthetic sgemm of known summation order, for the BLAS order learner
// (tests/cpu/test_blas_order.cpp) and the CUDA engine that follows a learned
// order (tests/gpu/test_cuda_blas_order.cpp). Element (i, j) of a call
// (query i, database row j, both counted from the call's first) sums the
// depth in three segments, [0, 37), [37, 90), [90, d) (d >= 90), each as
// its kind says (one, two or four interleaved chains folded pairwise; a
// loop remainder after groups of G terms in chain 0; fused or rounded
// products), the segments added in order: the family plugin/blas_order.h
// models. With outsiders, the elements i == j sum in reverse (outside the
// family).
#ifndef FKM_TESTS_SYNTHETIC_BLAS_H
#define FKM_TESTS_SYNTHETIC_BLAS_H

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

namespace synthetic_blas {

constexpr int64_t kSeg[] = {0, 37, 90};  // then d

struct Kind {
  int lanes;     // 0: a reversed chain (outsiders only)
  int group;     // 0: every term interleaved; G: the remainder after groups of G in chain 0
  bool rounded;  // products rounded, then added (a kernel without FMA)
};

inline Kind kind(int64_t i, int64_t j, bool outsiders) {
  if (outsiders && i == j) return {0, 0, false};
  if ((i + 2 * j) % 5 == 0) return {2, 0, false};
  if ((i * j) % 7 == 3) return {4, 8, false};
  if ((i + j) % 11 == 4) return {1, 0, true};
  if ((i + 3 * j) % 13 == 6) return {2, 8, true};
  return {1, 0, false};
}

inline float dot(int64_t i, int64_t j, const float *a, const float *b, int64_t d,
                 bool outsiders) {
  const Kind kd = kind(i, j, outsiders);
  if (kd.lanes == 0) {
    float s = 0.0f;
    for (int64_t k = d - 1; k >= 0; k--) s = std::fma(a[k], b[k], s);
    return s;
  }
  float c = 0.0f;
  for (int s = 0; s < 3; s++) {
    const int64_t lo = kSeg[s], hi = s == 2 ? d : kSeg[s + 1];
    const int64_t main = kd.group ? lo + (hi - lo) / kd.group * kd.group : hi;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t k = lo, l = 0; k < hi; k++) {
      const int64_t c = k < main ? l : 0;
      if (kd.rounded) {
        const float p = a[k] * b[k];
        acc[c] = acc[c] + p;
      } else {
        acc[c] = std::fma(a[k], b[k], acc[c]);
      }
      if (k < main) l = l + 1 == kd.lanes ? 0 : l + 1;
    }
    for (int w = kd.lanes; w > 1; w /= 2)
      for (int l = 0; l < w / 2; l++) acc[l] = acc[l] + acc[l + w / 2];
    c = s == 0 ? acc[0] : c + acc[0];
  }
  return c;
}

// sgemm("T", "N", m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) with the
// order above (beta is taken as 0, as FAISS passes it). Columns of c are
// shared out among up to 16 threads (each element is computed alone, so the
// result does not depend on their number): the learner's probe calls at
// FAISS's blocks stay short on a many-core GPU host.
template <bool Outsiders>
int sgemm(const char *, const char *, int *m, int *n, int *k, const float *alpha, const float *a,
          int *lda, const float *b, int *ldb, float *, float *c, int *ldc) {
  const int64_t work = int64_t(*n) * *m * *k;
  const int threads = work < (int64_t(1) << 22)
                          ? 1
                          : int(std::min(16u, std::max(1u, std::thread::hardware_concurrency())));
  auto columns = [&](int t) {
    for (int i = t; i < *n; i += threads)
      for (int j = 0; j < *m; j++)
        c[int64_t(i) * *ldc + j] =
            *alpha * dot(i, j, a + int64_t(j) * *lda, b + int64_t(i) * *ldb, *k, Outsiders);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; t++) pool.emplace_back(columns, t);
  columns(0);
  for (auto &th : pool) th.join();
  return 0;
}

}  // namespace synthetic_blas

#endif
