/* AVX2+FMA panel kernel, compiled with -mavx2 -mfma and called only after a
 * run-time CPU check.
 *
 * Layout: 6 rows of x (broadcast one element at a time) against a panel of
 * 16 centroids stored transposed (two 8-float vectors per dimension j):
 * 12 accumulators + 2 panel vectors + 1 broadcast = 15 of 16 ymm registers.
 * Each accumulator lane is one (point, centroid) fmaf chain over j = 0..d-1
 * in order, i.e. exactly the reference dot product of docs/contract.md section 3, so the
 * kernel needs no error bound: it computes the reference bits directly.
 * _mm256_max_ps(0, dis) keeps NaN (second operand) and -0.0 like the
 * reference's "if (dis < 0) dis = 0"; _CMP_LT_OQ/_CMP_GT_OQ are false on NaN
 * like the reference's strict comparisons. */
#include <immintrin.h>

#include "cpu_kernels.h"
#include "cpu_loops.h"

enum { MR = 6 };

/* The dot products of rows [r0, r0 + MR) of x (rows past i1 repeat the
 * last one) with the 16 centroids of a panel: acc[r][h] holds lanes
 * 8h..8h+7, each one fmaf chain over j = 0..d-1. */
static inline void accumulate(const float *x, int64_t d, const float *pan, int64_t r0,
                              int64_t i1, __m256 acc[MR][2]) {
  const float *xr[MR];
  for (int r = 0; r < MR; r++) xr[r] = x + (r0 + r < i1 ? r0 + r : i1 - 1) * d;
  for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int64_t j = 0; j < d; j++) {
    const __m256 b0 = _mm256_loadu_ps(pan + j * FKM_CPU_PANEL);
    const __m256 b1 = _mm256_loadu_ps(pan + j * FKM_CPU_PANEL + 8);
    for (int r = 0; r < MR; r++) {
      const __m256 av = _mm256_broadcast_ss(xr[r] + j);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
}

void fkm_cpu_assign_rows_avx2(const fkm_cpu_assign_args *a, const float *panels,
                              int64_t i0, int64_t i1, float *best_v,
                              int32_t *best_i) {
  const int64_t d = a->d, np = (a->k + FKM_CPU_PANEL - 1) / FKM_CPU_PANEL;
  const int l2 = a->metric == FKM_METRIC_L2;
  const __m256 zero = _mm256_setzero_ps();
  for (int64_t p = 0; p < np; p++) {
    const float *pan = panels + p * d * FKM_CPU_PANEL;
    const int64_t c0 = p * FKM_CPU_PANEL;
    __m256 cn0 = zero, cn1 = zero;
    if (l2) {
      float cn[FKM_CPU_PANEL];
      for (int lane = 0; lane < FKM_CPU_PANEL; lane++)
        cn[lane] = c0 + lane < a->k ? a->cn[c0 + lane] : 0.0f;
      cn0 = _mm256_loadu_ps(cn);
      cn1 = _mm256_loadu_ps(cn + 8);
    }
    const __m256i idx0 = _mm256_add_epi32(_mm256_set1_epi32((int)c0),
                                          _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i idx1 = _mm256_add_epi32(idx0, _mm256_set1_epi32(8));
    for (int64_t r0 = i0; r0 < i1; r0 += MR) {
      __m256 acc[MR][2];
      accumulate(a->x, d, pan, r0, i1, acc);
      for (int r = 0; r < MR && r0 + r < i1; r++) {
        __m256 dis0 = acc[r][0], dis1 = acc[r][1];
        if (l2) {
          const __m256 xn = _mm256_set1_ps(a->xn[r0 + r]);
          dis0 = _mm256_sub_ps(_mm256_add_ps(xn, cn0), _mm256_add_ps(dis0, dis0));
          dis1 = _mm256_sub_ps(_mm256_add_ps(xn, cn1), _mm256_add_ps(dis1, dis1));
          dis0 = _mm256_max_ps(zero, dis0);
          dis1 = _mm256_max_ps(zero, dis1);
        }
        float *bv = best_v + (r0 + r - i0) * FKM_CPU_PANEL;
        int32_t *bi = best_i + (r0 + r - i0) * FKM_CPU_PANEL;
        __m256 v0 = _mm256_loadu_ps(bv), v1 = _mm256_loadu_ps(bv + 8);
        __m256i l0 = _mm256_loadu_si256((const __m256i *)bi);
        __m256i l1 = _mm256_loadu_si256((const __m256i *)(bi + 8));
        __m256 m0, m1;
        if (l2) {
          m0 = _mm256_cmp_ps(dis0, v0, _CMP_LT_OQ);
          m1 = _mm256_cmp_ps(dis1, v1, _CMP_LT_OQ);
        } else {
          m0 = _mm256_cmp_ps(dis0, v0, _CMP_GT_OQ);
          m1 = _mm256_cmp_ps(dis1, v1, _CMP_GT_OQ);
        }
        _mm256_storeu_ps(bv, _mm256_blendv_ps(v0, dis0, m0));
        _mm256_storeu_ps(bv + 8, _mm256_blendv_ps(v1, dis1, m1));
        l0 = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(l0),
                                                  _mm256_castsi256_ps(idx0), m0));
        l1 = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(l1),
                                                  _mm256_castsi256_ps(idx1), m1));
        _mm256_storeu_si256((__m256i *)bi, l0);
        _mm256_storeu_si256((__m256i *)(bi + 8), l1);
      }
    }
  }
}

/* The same accumulation, stored instead of reduced: the dot products of
 * rows [i0, i1) with the panels [p0, p1), each lane one fmaf chain over
 * j = 0..d-1 (the scans of kernels/faiss_scan.h read them). */
void fkm_cpu_ip_block_avx2(const float *x, int64_t d, const float *panels, int64_t i0,
                           int64_t i1, int64_t p0, int64_t p1, float *out, int64_t ldo) {
  for (int64_t p = p0; p < p1; p++) {
    const float *pan = panels + p * d * FKM_CPU_PANEL;
    float *col = out + (p - p0) * FKM_CPU_PANEL;
    for (int64_t r0 = i0; r0 < i1; r0 += MR) {
      __m256 acc[MR][2];
      accumulate(x, d, pan, r0, i1, acc);
      for (int r = 0; r < MR && r0 + r < i1; r++) {
        _mm256_storeu_ps(col + (r0 + r - i0) * ldo, acc[r][0]);
        _mm256_storeu_ps(col + (r0 + r - i0) * ldo + 8, acc[r][1]);
      }
    }
  }
}

void fkm_cpu_direct_rows_avx2(const fkm_cpu_assign_args *a, const float *panels, int64_t i0,
                              int64_t i1) {
  fkm_direct_rows(a, panels, i0, i1);
}
