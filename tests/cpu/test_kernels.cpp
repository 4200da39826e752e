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
#include "cpu_loops.h"
#include "pq.h"
}

#include "pq_cases.h"

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

// The direct path's panel loops (cpu_loops.h, portable and FMA-compiled)
// take each pair through fkm_loop_eval's operations: for every loop-order
// shape (lane counts, fused or not, tails folded in or apart, the scalar
// rest), d = 1..40, both metrics, values with -0.0 and an exact tie, the
// labels and distances equal a per-pair fkm_loop_eval and a plain scan.
TEST(CpuKernels, DirectPathPanelsEqualPerPairLoops) {
  const bool fma = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  const int64_t n = 7, k = 37;
  int orders = 0;
  for (int W : {0, 1, 2, 4, 8, 16, 32})
    for (int E : {0, 1, 2, 4, 8, 16})
      for (int bits = 0; bits < 16; bits++) {
        if (W == 0 ? (E != 0 || bits != 0) : E >= W) continue;
        if (E == 0 && (bits & 6)) continue;
        const fkm_loop_order o = {W, bits & 1, E, (bits >> 1) & 1, (bits >> 2) & 1,
                                  (bits >> 3) & 1};
        orders++;
        fkm_arith ar;
        std::memset(&ar, 0, sizeof ar);
        ar.l2 = ar.ip = o;
        for (int64_t d = 1; d <= 40; d++)
          for (fkm_metric m : {FKM_METRIC_L2, FKM_METRIC_INNER_PRODUCT}) {
            const int l2 = m == FKM_METRIC_L2;
            auto x = fixtures::blobs(n, d, 3, (uint32_t)(d * 7 + W));
            auto c = fixtures::blobs(k, d, 3, (uint32_t)(d * 7 + W + 1));
            std::memcpy(&c[5 * d], &c[2 * d], sizeof(float) * d);  // an exact tie
            x[0] = -0.0f;
            c[0] = 0.0f;
            Panels pan(c, k, d);
            std::vector<int64_t> want_l(n), lab_p(n), lab_f(n);
            std::vector<float> want_d(n), dis_p(n), dis_f(n);
            for (int64_t i = 0; i < n; i++) {
              fkm_top1 r = fkm_top1_begin(l2);
              for (int64_t j = 0; j < k; j++)
                fkm_scan_plain(&r, l2,
                               fkm_loop_eval(&o, l2 ? FKM_PROBE_L2 : FKM_PROBE_IP,
                                             &x[i * d], &c[j * d], d),
                               j);
              want_l[i] = r.idx;
              want_d[i] = r.dis;
            }
            fkm_cpu_assign_args a = {x.data(), nullptr, n, d, c.data(), nullptr, k, m,
                                     lab_p.data(), dis_p.data(), &ar, FKM_PATH_DIRECT,
                                     nullptr, 0, 0, nullptr};
            fkm_direct_rows(&a, pan.data.data(), 0, n);
            ASSERT_EQ(lab_p, want_l) << "width " << W << " tail " << E << " bits " << bits
                                     << " d " << d << " metric " << m;
            ASSERT_EQ(std::memcmp(dis_p.data(), want_d.data(), 4 * n), 0)
                << "width " << W << " tail " << E << " bits " << bits << " d " << d;
            if (!fma) continue;
            a.labels = lab_f.data();
            a.dist = dis_f.data();
            fkm_cpu_direct_rows_avx2(&a, pan.data.data(), 0, n);
            ASSERT_EQ(lab_f, want_l) << "fma: width " << W << " tail " << E << " d " << d;
            ASSERT_EQ(std::memcmp(dis_f.data(), want_d.data(), 4 * n), 0)
                << "fma: width " << W << " tail " << E << " bits " << bits << " d " << d;
          }
      }
  EXPECT_GT(orders, 100);
}

}  // namespace

// The AVX2 PQ rows (plugin/pq_avx2.c) against the scalar rule they
// vectorise (fkm_pq_nearest, kernels/faiss_scan.h), for the rule of every
// kind of build, every sub-vector width and codebooks of 8 to 256 centroids,
// on the tie fixtures (rounding and exact ties decide the codes).
TEST(CpuKernels, Avx2PqRowsEqualTheScalarRule) {
  if (!fkm_cpu_has_avx2_fma()) GTEST_SKIP() << "no AVX2+FMA on this CPU";
  const int releases[][2] = {{0, FKM_SIMD_NONE},       {10703, FKM_SIMD_NONE},
                             {10704, FKM_SIMD_AVX2},   {10800, FKM_SIMD_AVX512},
                             {10900, FKM_SIMD_AVX512}, {11302, FKM_SIMD_AVX2},
                             {11501, FKM_SIMD_NONE},   {11501, FKM_SIMD_AVX2},
                             {11501, FKM_SIMD_AVX512}};
  for (const auto &rel : releases) {
    fkm_profile prof;
    ASSERT_EQ(fkm_profile_init(&prof, rel[0], fkm_simd(rel[1])), FKM_OK);
    fkm_arith ar;
    ASSERT_EQ(fkm_arith_of(&prof, &ar, nullptr), FKM_OK);
    for (int64_t dsub = 1; dsub <= 15; dsub++)
      for (int nbits : {3, 4, 5, 8})
        for (bool residual : {false, true}) {
          const PqCase c = make_pq_case(64, dsub, 3, nbits, residual,
                                        uint32_t(rel[0] + dsub * 5 + nbits + residual));
          std::vector<uint8_t> got(size_t(c.n * c.code_size())), want(got.size());
          fkm_pq_args a = {1, {}, c.n, c.d, c.M, nbits, c.x.data(), c.pq.data(), c.nlist,
                           residual ? c.coarse.data() : nullptr,
                           residual ? c.lists.data() : nullptr, got.data()};
          fkm_arith_pq_rule(&ar, &a.rule);
          const int lanes = fkm_pq_lanes(&a.rule, int(dsub));
          if ((int64_t(1) << nbits) % (lanes ? lanes : 8) != 0) continue; /* scalar's case */
          ASSERT_EQ(fkm_pq_encode_rows_avx2(&a, 0, c.n), 0);
          const int64_t ksub = int64_t(1) << nbits;
          for (int64_t i = 0; i < c.n; i++) {
            fkm_pq_packer p = fkm_pq_pack_begin(&want[size_t(i * c.code_size())], nbits);
            for (int64_t m = 0; m < c.M; m++) {
              float r[FKM_PQ_MAX_DSUB];
              fkm_pq_subvector(&c.x[size_t(i * c.d)],
                               residual ? &c.coarse[size_t(c.lists[size_t(i)] * c.d)] : nullptr,
                               m, int(dsub), r);
              fkm_pq_pack_push(&p, uint32_t(fkm_pq_nearest(&a.rule, r,
                                                           &c.pq[size_t(m * ksub * dsub)],
                                                           int(dsub), ksub)));
            }
            fkm_pq_pack_end(&p);
          }
          ASSERT_TRUE(got == want) << "release " << rel[0] << " simd " << rel[1] << " dsub "
                                   << dsub << " nbits " << nbits << " residual " << residual;
        }
  }
}
