#include "cpu_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* IEEE binary16 to float, exact (subnormals and NaN payloads included). */
static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else { /* subnormal: normalise */
    int e = -1;
    do { man <<= 1; e++; } while (!(man & 0x400u));
    bits = sign | ((uint32_t)(112 - e) << 23) | ((man & 0x3ffu) << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static float bf16_to_float(uint16_t h) {
  uint32_t bits = (uint32_t)h << 16;
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

static void row_to_float(fkm_dtype dtype, const void *src, int64_t row,
                         int64_t d, float *out) {
  switch (dtype) {
    case FKM_DTYPE_F32:
      memcpy(out, (const float *)src + row * d, sizeof(float) * (size_t)d);
      return;
    case FKM_DTYPE_F16: {
      const uint16_t *s = (const uint16_t *)src + row * d;
      for (int64_t j = 0; j < d; j++) out[j] = half_to_float(s[j]);
      return;
    }
    case FKM_DTYPE_BF16: {
      const uint16_t *s = (const uint16_t *)src + row * d;
      for (int64_t j = 0; j < d; j++) out[j] = bf16_to_float(s[j]);
      return;
    }
  }
}

void fkm_cpu_to_float(fkm_dtype dtype, const void *src, int64_t n, int64_t d,
                      float *out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) row_to_float(dtype, src, i, d, out + i * d);
}

void fkm_cpu_gather_float(fkm_dtype dtype, const void *src, int64_t d,
                          const int64_t *rows, int64_t n, float *out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    row_to_float(dtype, src, rows[i], d, out + i * d);
}

void fkm_cpu_norms(const float *x, int64_t n, int64_t d, float *out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    const float *xi = x + i * d;
    double s = 0;
    for (int64_t j = 0; j < d; j++) s += (double)(xi[j] * xi[j]);
    out[i] = (float)s;
  }
}

int64_t fkm_cpu_first_nonfinite(const float *x, int64_t count) {
  int64_t first = -1;
#pragma omp parallel
  {
    int64_t mine = -1;
#pragma omp for schedule(static)
    for (int64_t i = 0; i < count; i++)
      if (mine < 0 && !isfinite(x[i])) mine = i;
#pragma omp critical
    if (mine >= 0 && (first < 0 || mine < first)) first = mine;
  }
  return first;
}

/* The portable twin of the AVX2 kernel: same panels, same per-lane order of
 * operations, scalar fmaf. Used where AVX2+FMA is absent. */
void fkm_cpu_assign_rows_portable(const fkm_assign_args *a,
                                  const float *panels, int64_t i0, int64_t i1,
                                  float *best_v, int32_t *best_i) {
  const int64_t d = a->d, np = (a->k + FKM_CPU_PANEL - 1) / FKM_CPU_PANEL;
  const int l2 = a->metric == FKM_METRIC_L2;
  for (int64_t i = i0; i < i1; i++) {
    const float *xi = a->x + i * d;
    float *bv = best_v + (i - i0) * FKM_CPU_PANEL;
    int32_t *bi = best_i + (i - i0) * FKM_CPU_PANEL;
    for (int64_t p = 0; p < np; p++) {
      const float *pan = panels + p * d * FKM_CPU_PANEL;
      for (int lane = 0; lane < FKM_CPU_PANEL; lane++) {
        float ip = 0.0f;
        for (int64_t j = 0; j < d; j++)
          ip = fmaf(xi[j], pan[j * FKM_CPU_PANEL + lane], ip);
        int64_t c = p * FKM_CPU_PANEL + lane;
        float dis;
        if (l2) {
          float cn = c < a->k ? a->cn[c] : NAN;
          dis = (a->xn[i] + cn) - (ip + ip);
          if (dis < 0) dis = 0;
        } else {
          dis = ip;
        }
        if (l2 ? dis < bv[lane] : dis > bv[lane]) {
          bv[lane] = dis;
          bi[lane] = (int32_t)c;
        }
      }
    }
  }
}

#ifdef FKM_HAVE_AVX2_KERNEL
static int have_avx2_fma(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
static int have_avx2_fma(void) { return 0; }
#endif

/* Rows are handled in chunks: every panel is applied to a chunk while it
 * sits in L1, and a chunk's best-per-lane state stays in L2. */
enum { ROW_CHUNK = 96 };

int fkm_cpu_assign(const fkm_assign_args *a) {
  const int64_t d = a->d, k = a->k;
  const int64_t np = (k + FKM_CPU_PANEL - 1) / FKM_CPU_PANEL;
  float *panels = malloc(sizeof(float) * (size_t)(np * d * FKM_CPU_PANEL));
  if (!panels) return -1;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < np; p++) {
    float *pan = panels + p * d * FKM_CPU_PANEL;
    for (int lane = 0; lane < FKM_CPU_PANEL; lane++) {
      int64_t c = p * FKM_CPU_PANEL + lane;
      for (int64_t j = 0; j < d; j++)
        pan[j * FKM_CPU_PANEL + lane] = c < k ? a->c[c * d + j] : NAN;
    }
  }
  const int avx2 = have_avx2_fma();
  const int l2 = a->metric == FKM_METRIC_L2;
  const int64_t nchunks = (a->n + ROW_CHUNK - 1) / ROW_CHUNK;
  int failed = 0;
#pragma omp parallel
  {
    float *bv = malloc(sizeof(float) * ROW_CHUNK * FKM_CPU_PANEL);
    int32_t *bi = malloc(sizeof(int32_t) * ROW_CHUNK * FKM_CPU_PANEL);
    if (!bv || !bi) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < nchunks; ch++) {
      if (!bv || !bi) continue;
      int64_t i0 = ch * ROW_CHUNK, i1 = i0 + ROW_CHUNK;
      if (i1 > a->n) i1 = a->n;
      for (int64_t t = 0; t < (i1 - i0) * FKM_CPU_PANEL; t++) {
        bv[t] = l2 ? INFINITY : -INFINITY;
        bi[t] = -1;
      }
      if (avx2)
        fkm_cpu_assign_rows_avx2(a, panels, i0, i1, bv, bi);
      else
        fkm_cpu_assign_rows_portable(a, panels, i0, i1, bv, bi);
      /* Lane reduction: the lowest index among the lanes holding the best
       * value is the first index a sequential strict scan would keep. */
      for (int64_t i = i0; i < i1; i++) {
        const float *v = bv + (i - i0) * FKM_CPU_PANEL;
        const int32_t *ix = bi + (i - i0) * FKM_CPU_PANEL;
        int64_t lab = -1;
        float best = l2 ? INFINITY : -INFINITY;
        for (int lane = 0; lane < FKM_CPU_PANEL; lane++) {
          if (ix[lane] < 0) continue;
          int better = l2 ? v[lane] < best : v[lane] > best;
          if (lab < 0 || better || (v[lane] == best && ix[lane] < lab)) {
            best = v[lane];
            lab = ix[lane];
          }
        }
        a->labels[i] = lab;
        a->dist[i] = best;
      }
    }
    free(bv);
    free(bi);
  }
  free(panels);
  return failed ? -1 : 0;
}
