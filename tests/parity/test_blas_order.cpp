// The BLAS order learner (plugin/blas_order.h) on the BLAS FAISS links
// (fkm_faiss_blas), at FAISS's call shapes: the learned order gives the
// BLAS's own bits for every element it models, on Fashion-MNIST's integer
// pixels (the near-ties of issue 15) and on float blobs, and it models
// nearly every element (all of them with this project's Debian OpenBLAS).
#include <gtest/gtest.h>

#include <cstdio>
#include <vector>

#include "parity.h"

extern "C" {
#include "blas_order.h"
}

namespace parity {
namespace {

struct Shape {
  int64_t ny, nx, d;
};

class ParityBlasOrder : public ::testing::TestWithParam<Shape> {};

TEST_P(ParityBlasOrder, LearnedOrderGivesTheBlasBitsOnRealData) {
  const Shape s = GetParam();
  const fkm_params p = faiss_blas_params();
  ASSERT_NE(p.blas_sgemm, nullptr);
  fkm_errbuf err{};
  fkm_blas_order o;
  ASSERT_EQ(fkm_blas_order_learn(p.blas_sgemm, s.ny, s.nx, s.d, &o, &err), FKM_OK) << err.msg;
  const int64_t cells = s.nx * s.ny;
  std::printf("sgemm %lld x %lld, d = %lld: %d segment(s), %lld of %lld elements modelled\n",
              (long long)s.ny, (long long)s.nx, (long long)s.d, o.nseg, (long long)o.modelled,
              (long long)cells);
  EXPECT_GE(o.modelled, cells * 95 / 100);
  // Fashion-MNIST pixels (d = 784) or float blobs: centroids-like rows y, queries x
  std::vector<float> y, x;
  if (s.d == 784) {
    const std::vector<float> f = fashion_mnist(s.ny + s.nx);
    y.assign(f.begin(), f.begin() + s.ny * s.d);
    x.assign(f.begin() + s.ny * s.d, f.end());
  } else {
    y = blobs(s.ny, s.d, 16, 5, 2.0f);
    x = blobs(s.nx, s.d, 16, 6, 2.0f);
  }
  std::vector<float> ip(static_cast<size_t>(cells));
  int m = int(s.ny), n = int(s.nx), k = int(s.d), lda = k, ldb = k, ldc = m;
  const float one = 1.0f;
  float zero = 0.0f;
  p.blas_sgemm("T", "N", &m, &n, &k, &one, y.data(), &lda, x.data(), &ldb, &zero, ip.data(),
               &ldc);
  int64_t differ = 0;
  for (int64_t i = 0; i < s.nx; i++)
    for (int64_t j = 0; j < s.ny; j++)
      if (o.code[i * s.ny + j] &&
          fkm_blas_order_dot(&o, i, j, &y[size_t(j * s.d)], &x[size_t(i * s.d)]) !=
              ip[size_t(i * s.ny + j)])
        differ++;
  EXPECT_EQ(differ, 0) << "modelled elements whose replay is not the BLAS's value";
  fkm_blas_order_free(&o);
}

// FAISS's blocks: 1024 database rows (centroids), query blocks of up to
// 4096 rows (here 512, and a ragged last block), d = 128 and Fashion-MNIST's 784.
INSTANTIATE_TEST_SUITE_P(Shapes, ParityBlasOrder,
                         ::testing::Values(Shape{1024, 512, 128}, Shape{256, 300, 784},
                                           Shape{100, 37, 33}, Shape{64, 512, 100}),
                         [](const ::testing::TestParamInfo<Shape>& i) {
                           return "y" + std::to_string(i.param.ny) + "_x" +
                                  std::to_string(i.param.nx) + "_d" + std::to_string(i.param.d);
                         });

}  // namespace
}  // namespace parity
