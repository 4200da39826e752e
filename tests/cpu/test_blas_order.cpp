// The BLAS order learner (plugin/blas_order.h) against a synthetic sgemm
// whose order is known: the segments and every element's chains are found
// exactly, and an element outside the model's family is marked unmodelled,
// never mispredicted. (tests/parity/test_blas_order.cpp: the BLAS FAISS
// links.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

extern "C" {
#include "blas_order.h"
}

namespace {

constexpr int64_t kSeg[] = {0, 37, 90};  // then d

// Element (i, j)'s chains in the synthetic order; 0: a reversed chain
// (outside the family).
int synthetic_lanes(int64_t i, int64_t j) {
  if (i == j) return 0;
  if ((i + 2 * j) % 5 == 0) return 2;
  if ((i * j) % 7 == 3) return 4;
  return 1;
}

float synthetic_dot(int64_t i, int64_t j, const float* a, const float* b, int64_t d) {
  const int u = synthetic_lanes(i, j);
  if (u == 0) {
    float s = 0.0f;
    for (int64_t k = d - 1; k >= 0; k--) s = std::fma(a[k], b[k], s);
    return s;
  }
  float c = 0.0f;
  for (int s = 0; s < 3; s++) {
    const int64_t lo = kSeg[s], hi = s == 2 ? d : kSeg[s + 1];
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int64_t k = lo; k < hi; k++) acc[(k - lo) % u] = std::fma(a[k], b[k], acc[(k - lo) % u]);
    for (int w = u; w > 1; w /= 2)
      for (int l = 0; l < w / 2; l++) acc[l] = acc[l] + acc[l + w / 2];
    c = s == 0 ? acc[0] : c + acc[0];
  }
  return c;
}

int synthetic_sgemm(const char*, const char*, int* m, int* n, int* k, const float* alpha,
                    const float* a, int* lda, const float* b, int* ldb, float* beta, float* c,
                    int* ldc) {
  for (int i = 0; i < *n; i++)
    for (int j = 0; j < *m; j++) {
      const float v = synthetic_dot(i, j, a + int64_t(j) * *lda, b + int64_t(i) * *ldb, *k);
      c[int64_t(i) * *ldc + j] = *alpha * v + *beta * 0.0f;
    }
  return 0;
}

TEST(BlasOrder, LearnsASyntheticOrderAndMarksWhatItCannotModel) {
  const int64_t ny = 130, nx = 70, d = 150;
  fkm_errbuf err{};
  fkm_blas_order o;
  ASSERT_EQ(fkm_blas_order_learn(synthetic_sgemm, ny, nx, d, &o, &err), FKM_OK) << err.msg;
  ASSERT_EQ(o.nseg, 3);
  EXPECT_EQ(o.seg[0], 0);
  EXPECT_EQ(o.seg[1], 37);
  EXPECT_EQ(o.seg[2], 90);
  EXPECT_EQ(o.seg[3], d);
  int64_t mismatched = 0, outside = 0;
  for (int64_t i = 0; i < nx; i++)
    for (int64_t j = 0; j < ny; j++) {
      mismatched += o.lanes[i * ny + j] != synthetic_lanes(i, j);
      outside += synthetic_lanes(i, j) == 0;
    }
  EXPECT_EQ(mismatched, 0);
  EXPECT_EQ(o.modelled, nx * ny - outside);
  // the replay is the synthetic sum on other data
  std::vector<float> y(size_t(ny * d)), x(size_t(nx * d));
  for (size_t t = 0; t < y.size(); t++) y[t] = std::ldexp(float(t % 97) - 48.0f, int(t % 11) - 5);
  for (size_t t = 0; t < x.size(); t++) x[t] = std::ldexp(float(t % 89) - 44.0f, int(t % 7) - 3);
  for (int64_t i = 0; i < nx; i++)
    for (int64_t j = 0; j < ny; j++) {
      if (!o.lanes[i * ny + j]) continue;
      ASSERT_EQ(fkm_blas_order_dot(&o, i, j, &y[size_t(j * d)], &x[size_t(i * d)]),
                synthetic_dot(i, j, &y[size_t(j * d)], &x[size_t(i * d)], d))
          << "element " << i << ", " << j;
    }
  fkm_blas_order_free(&o);
}

TEST(BlasOrder, OneTermIsItsProduct) {
  fkm_errbuf err{};
  fkm_blas_order o;
  ASSERT_EQ(fkm_blas_order_learn(synthetic_sgemm, 3, 5, 1, &o, &err), FKM_OK) << err.msg;
  EXPECT_EQ(o.nseg, 1);
  EXPECT_EQ(o.modelled, 15);
  const float y = 3.0f, x = -0.5f;
  EXPECT_EQ(fkm_blas_order_dot(&o, 4, 2, &y, &x), -1.5f);
  fkm_blas_order_free(&o);
}

TEST(BlasOrderErrors, BadArgumentsAreStatuses) {
  fkm_errbuf err{};
  fkm_blas_order o;
  EXPECT_EQ(fkm_blas_order_learn(nullptr, 4, 4, 4, &o, &err), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_blas_order_learn(synthetic_sgemm, 0, 4, 4, &o, &err), FKM_ERR_INVALID_ARG);
  EXPECT_EQ(fkm_blas_order_learn(synthetic_sgemm, 4, 4, 70000, &o, &err), FKM_ERR_UNSUPPORTED);
  EXPECT_EQ(o.lanes, nullptr);
  EXPECT_EQ(fkm_blas_order_learn(synthetic_sgemm, 4, 4, 4, nullptr, &err), FKM_ERR_INVALID_ARG);
}

}  // namespace
