// The BLAS order learner (plugin/blas_order.h) against a synthetic sgemm
// whose order is known: the segments and every element's chains are found
// exactly, and an element outside the model's family is marked unmodelled,
// never mispredicted. (tests/parity/test_blas_order.cpp: the BLAS FAISS
// links.)
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "synthetic_blas.h"

extern "C" {
#include "blas_order.h"
}

namespace {

// The code (kernels/blas_code.h) the learner must find for element (i, j); 0: outside.
uint8_t synthetic_code(int64_t i, int64_t j) {
  const synthetic_blas::Kind k = synthetic_blas::kind(i, j, true);
  if (k.lanes == 0) return 0;
  const int ul = k.lanes == 1 ? 0 : k.lanes == 2 ? 1 : 2;
  const int g = k.group == 0 ? 0 : 3; // groups of 8
  return fkm_blas_code(ul, g, k.rounded);
}

float synthetic_dot(int64_t i, int64_t j, const float* a, const float* b, int64_t d) {
  return synthetic_blas::dot(i, j, a, b, d, true);
}

constexpr auto synthetic_sgemm = synthetic_blas::sgemm<true>;

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
      mismatched += o.code[i * ny + j] != synthetic_code(i, j);
      outside += synthetic_code(i, j) == 0;
    }
  EXPECT_EQ(mismatched, 0);
  EXPECT_EQ(o.modelled, nx * ny - outside);
  // the replay is the synthetic sum on other data
  std::vector<float> y(size_t(ny * d)), x(size_t(nx * d));
  for (size_t t = 0; t < y.size(); t++) y[t] = std::ldexp(float(t % 97) - 48.0f, int(t % 11) - 5);
  for (size_t t = 0; t < x.size(); t++) x[t] = std::ldexp(float(t % 89) - 44.0f, int(t % 7) - 3);
  for (int64_t i = 0; i < nx; i++)
    for (int64_t j = 0; j < ny; j++) {
      if (!o.code[i * ny + j]) continue;
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
  EXPECT_EQ(o.code, nullptr);
  EXPECT_EQ(fkm_blas_order_learn(synthetic_sgemm, 4, 4, 4, nullptr, &err), FKM_ERR_INVALID_ARG);
}

}  // namespace
