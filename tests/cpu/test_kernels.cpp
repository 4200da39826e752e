// The CPU distance kernel's two variants (AVX2+FMA and the portable fmaf
// twin) give the same bits, including padding lanes, ties and -0.0. Both
// are compiled into this test from plugin/ sources (they are internal).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "fixtures.h"

extern "C" {
#include "cpu_kernels.h"
}

namespace {

struct Panels {
  std::vector<float> data;
  Panels(const std::vector<float>& c, int64_t k, int64_t d) {
    int64_t np = (k + FKM_CPU_PANEL - 1) / FKM_CPU_PANEL;
    data.assign(np * d * FKM_CPU_PANEL, NAN);
    for (int64_t ci = 0; ci < k; ci++)
      for (int64_t j = 0; j < d; j++)
        data[(ci / FKM_CPU_PANEL) * d * FKM_CPU_PANEL + j * FKM_CPU_PANEL + ci % FKM_CPU_PANEL] =
            c[ci * d + j];
  }
};

TEST(CpuKernels, Avx2AndPortableVariantsGiveIdenticalBestLanes) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
    GTEST_SKIP() << "this CPU has no AVX2+FMA";
  for (int64_t d : {1, 3, 17, 128}) {
    for (int64_t k : {1, 5, 16, 37}) {
      for (fkm_metric m : {FKM_METRIC_L2, FKM_METRIC_INNER_PRODUCT}) {
        const int64_t n = 53;
        auto x = fixtures::blobs(n, d, 4, (uint32_t)(d * 100 + k));
        auto c = fixtures::blobs(k, d, 4, (uint32_t)(d * 100 + k + 1));
        if (k > 3) std::memcpy(&c[3 * d], &c[0], sizeof(float) * d);  // an exact tie
        std::memcpy(&x[0], &c[0], sizeof(float) * d);  // distance 0 (or -0 clamp)
        std::vector<float> xn(n), cn(k);
        fkm_cpu_norms(x.data(), n, d, xn.data());
        fkm_cpu_norms(c.data(), k, d, cn.data());
        Panels pan(c, k, d);
        std::vector<int64_t> lab(n);
        std::vector<float> dis(n);
        fkm_cpu_assign_args a = {x.data(), xn.data(), n, d, c.data(), cn.data(), k, m,
                             lab.data(), dis.data(), nullptr, FKM_PATH_BLAS, nullptr, 0, 0, nullptr};
        std::vector<float> bv1(n * FKM_CPU_PANEL, m == FKM_METRIC_L2 ? INFINITY : -INFINITY);
        std::vector<float> bv2(bv1);
        std::vector<int32_t> bi1(n * FKM_CPU_PANEL, -1), bi2(bi1);
        fkm_cpu_assign_rows_avx2(&a, pan.data.data(), 0, n, bv1.data(), bi1.data());
        fkm_cpu_assign_rows_portable(&a, pan.data.data(), 0, n, bv2.data(), bi2.data());
        ASSERT_EQ(bi1, bi2) << "d=" << d << " k=" << k;
        ASSERT_EQ(std::memcmp(bv1.data(), bv2.data(), bv1.size() * 4), 0) << "d=" << d << " k=" << k;
        for (int64_t t = 0; t < n * FKM_CPU_PANEL; t++)
          ASSERT_LT(bi1[t], k) << "a padding lane won";
      }
    }
  }
}

}  // namespace
