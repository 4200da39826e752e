/* fkm_pq_encode's rows on AVX2+FMA (compiled with -mavx2 -mfma, called only
 * after a run-time CPU check): the rules of fkm_pq_nearest
 * (kernels/faiss_scan.h) for eight centroids at a time, each SIMD lane one
 * centroid, with the same operations in the same order on every lane - so
 * the same bits - as the scalar rule:
 *  - lanes 8 / 16 (d = 2, 4, 8): the fma chain, FAISS's own lane updates
 *    (16 lanes as two halves of 8), the lanes merged in lane order;
 *  - the reference: the profile's loop (or the D12 kernel) per lane, a
 *    strict minimum per lane, then the least value at the lowest index
 *    (what the sequential strict scan returns).
 * Centroids are read from a transposed copy: for sub-quantizer m, group g of
 * 8 centroids, dimension j: yt[((m * ngroups + g) * dsub + j) * 8 + l]. */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "pq.h"

static inline __m256 term8(const float *r, const float *yt, int j) {
  return _mm256_sub_ps(_mm256_set1_ps(r[j]), _mm256_loadu_ps(yt + 8 * j));
}

static inline __m256 sq8(const float *r, const float *yt, int j) {
  const __m256 t = term8(r, yt, j);
  return _mm256_mul_ps(t, t);
}

/* fkm_pq_chain */
static inline __m256 chain8(const float *r, const float *yt, int d) {
  __m256 acc = sq8(r, yt, 0);
  for (int j = 1; j < d; j++) {
    const __m256 t = term8(r, yt, j);
    acc = _mm256_fmadd_ps(t, t, acc);
  }
  return acc;
}

static inline __m256 fold4(fkm_pq_sum sum, const __m256 *v) {
  if (sum == FKM_PQ_HADD)
    return _mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3]));
  return _mm256_add_ps(_mm256_add_ps(v[0], v[2]), _mm256_add_ps(v[1], v[3]));
}

static inline __m256 step8(int fused, __m256 acc, __m256 t) {
  return fused ? _mm256_fmadd_ps(t, t, acc) : _mm256_add_ps(acc, _mm256_mul_ps(t, t));
}

static inline void fold8(__m256 *acc, int from, int to) {
  for (int w = from; w > to; w /= 2)
    for (int l = 0; l < w / 2; l++) acc[l] = _mm256_add_ps(acc[l], acc[l + w / 2]);
}

/* fkm_loop_eval (FKM_PROBE_L2, width >= 1) on eight centroids */
static __m256 loop8(const fkm_loop_order *o, const float *r, const float *yt, int d) {
  __m256 acc[FKM_SCAN_MAX_LANES];
  const int W = o->width;
  for (int l = 0; l < W; l++) acc[l] = _mm256_setzero_ps();
  const int main = d / W * W;
  for (int j0 = 0; j0 < main; j0 += W)
    for (int l = 0; l < W; l++) acc[l] = step8(o->main_fma, acc[l], term8(r, yt, j0 + l));
  int j = main;
  const int E = o->tail_width;
  __m256 res;
  if (E > 0 && o->tail_separate) {
    fold8(acc, W, 1);
    res = acc[0];
    if (d - j >= E) {
      __m256 e[FKM_SCAN_MAX_LANES];
      for (int l = 0; l < E; l++) e[l] = step8(0, _mm256_setzero_ps(), term8(r, yt, j + l));
      j += E;
      fold8(e, E, 1);
      res = _mm256_add_ps(res, e[0]);
    }
  } else if (E > 0) {
    fold8(acc, W, E);
    if (d - j >= E) {
      for (int l = 0; l < E; l++) acc[l] = step8(o->tail_fma, acc[l], term8(r, yt, j + l));
      j += E;
    }
    fold8(acc, E, 1);
    res = acc[0];
  } else {
    fold8(acc, W, 1);
    res = acc[0];
  }
  for (; j < d; j++) res = step8(o->scalar_fma, res, term8(r, yt, j));
  return res;
}

/* fkm_pq_ref_dis on eight centroids */
static inline __m256 ref8(const fkm_pq_rule *rule, const float *r, const float *yt, int d) {
  if (d == 12 && rule->d12) {
    __m256 v[4];
    for (int j = 0; j < 4; j++) {
      const __m256 t0 = term8(r, yt, j), t8 = term8(r, yt, j + 8);
      v[j] = _mm256_fmadd_ps(t8, t8, _mm256_fmadd_ps(t0, t0, sq8(r, yt, j + 4)));
    }
    return fold4(rule->sum, v);
  }
  return loop8(&rule->l2, r, yt, d);
}

/* The nearest of ngroups * 8 centroids (transposed groups yt). Inlined into
 * a call per kernel width (nearest_d) so that d is a constant there. */
static inline __attribute__((always_inline)) int64_t nearest8(const fkm_pq_rule *rule, int lanes, const float *r, const float *yt,
                        int d, int64_t ngroups) {
  const __m256 inf = _mm256_set1_ps(INFINITY);
  const __m256i step = _mm256_set1_epi32(8);
  float lmin[16];
  uint32_t lidx[16];
  if (lanes == 0) { /* the reference: strict per lane, then least value, lowest index */
    __m256 mn = inf;
    __m256i ix = _mm256_setzero_si256(), cur = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t g = 0; g < ngroups; g++, cur = _mm256_add_epi32(cur, step)) {
      const __m256 dis = ref8(rule, r, yt + g * d * 8, d);
      const __m256 take = _mm256_cmp_ps(dis, mn, _CMP_LT_OS);
      mn = _mm256_blendv_ps(mn, dis, take);
      ix = _mm256_castps_si256(
          _mm256_blendv_ps(_mm256_castsi256_ps(ix), _mm256_castsi256_ps(cur), take));
    }
    _mm256_storeu_ps(lmin, mn);
    _mm256_storeu_si256((__m256i *)lidx, ix);
    float best = INFINITY;
    int64_t bi = 0;
    for (int l = 0; l < 8; l++)
      if (lmin[l] < best || (lmin[l] == best && (int64_t)lidx[l] < bi)) {
        best = lmin[l];
        bi = (int64_t)lidx[l];
      }
    return bi;
  }
  /* lanes 8: one register of lanes; 16: two halves (lanes 0-7, 8-15) */
  const int halves = lanes / 8;
  __m256 mn[2] = {inf, inf};
  __m256i ix[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
  __m256i cur[2] = {_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
                    _mm256_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15)};
  const __m256i gstep = _mm256_set1_epi32(lanes);
  for (int64_t g = 0; g < ngroups; g += halves)
    for (int h = 0; h < halves; h++) {
      const __m256 dis = chain8(r, yt + (g + h) * d * 8, d);
      if (lanes == 8) { /* the index moves unless lmin < dis; min_ps */
        const __m256 keep = _mm256_cmp_ps(mn[h], dis, _CMP_LT_OS);
        ix[h] = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(cur[h]),
                                                     _mm256_castsi256_ps(ix[h]), keep));
      } else { /* only when dis < lmin */
        const __m256 take = _mm256_cmp_ps(dis, mn[h], _CMP_LT_OS);
        ix[h] = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(ix[h]),
                                                     _mm256_castsi256_ps(cur[h]), take));
      }
      mn[h] = _mm256_min_ps(dis, mn[h]);
      cur[h] = _mm256_add_epi32(cur[h], gstep);
    }
  for (int h = 0; h < halves; h++) {
    _mm256_storeu_ps(lmin + 8 * h, mn[h]);
    _mm256_storeu_si256((__m256i *)(lidx + 8 * h), ix[h]);
  }
  float best = INFINITY;
  int64_t bi = 0;
  for (int l = 0; l < 8 * halves; l++)
    if (best > lmin[l]) {
      best = lmin[l];
      bi = (int64_t)lidx[l];
    }
  return bi;
}

static int64_t nearest_d(const fkm_pq_rule *rule, int lanes, const float *r, const float *yt,
                         int d, int64_t ngroups) {
  switch (d) { /* the kernels' widths, unrolled */
    case 2: return nearest8(rule, lanes, r, yt, 2, ngroups);
    case 4: return nearest8(rule, lanes, r, yt, 4, ngroups);
    case 8: return nearest8(rule, lanes, r, yt, 8, ngroups);
    default: return nearest8(rule, lanes, r, yt, d, ngroups);
  }
}

typedef struct avx2_codebooks {
  const fkm_pq_rule *rule;
  int lanes, dsub;
  int64_t ngroups;
  const float *yt;
} avx2_codebooks;

static int64_t nearest_avx2(const void *self, const float *r, int64_t m) {
  const avx2_codebooks *b = self;
  return nearest_d(b->rule, b->lanes, r, b->yt + m * b->ngroups * b->dsub * 8, b->dsub,
                   b->ngroups);
}

int fkm_pq_encode_rows_avx2(const fkm_pq_args *a, int64_t i0, int64_t i1) {
  const int dsub = (int)(a->d / a->M);
  const int64_t ksub = (int64_t)1 << a->nbits, ngroups = ksub / 8;
  float *yt = malloc(sizeof *yt * (size_t)(a->M * ksub * dsub));
  if (!yt) return -1;
  for (int64_t m = 0; m < a->M; m++)
    for (int64_t i = 0; i < ksub; i++)
      for (int j = 0; j < dsub; j++)
        yt[((m * ngroups + i / 8) * dsub + j) * 8 + i % 8] = a->pq[(m * ksub + i) * dsub + j];
  const avx2_codebooks b = {&a->rule, fkm_pq_lanes(&a->rule, dsub), dsub, ngroups, yt};
  fkm_pq_rows(a, i0, i1, nearest_avx2, &b);
  free(yt);
  return 0;
}
