/* flashkm bench: ms per Lloyd iteration of the CUDA engine on the BENCH.md
 * shapes, data on the device (random normal, cuRAND), parity mode.
 *
 * usage: flashkm_bench [quick|full] [niter] [shape index]
 * (the last shape of each list is BENCH.md's batched one, 32 problems)
 * FLASHKM_BENCH_PROFILES="faiss-1.15.1-avx512,..." adds a parity row per
 * shape in each of those profiles (docs/profiles.md).
 *
 * Timing: fkm_train's own per-iteration statistics (wall time between the
 * iteration's single host synchronisations, assignment share from CUDA
 * events); the median over iterations 2..niter-1 (0 and 1 are warm-up).
 * Every run trains on all N points (max_points_per_centroid raised).
 * Prints one table; the anchors are BENCH.md's H200 figures, not this run.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cuda_runtime_api.h>
#include <curand.h>

#include "flashkm.h"

typedef struct shape {
  long long n, k, d;
  long long batch;      /* problems of (n, k, d) trained by fkm_train_batched; 1: fkm_train */
  double flash_fp32_ms; /* BENCH.md anchor, flash-kmeans tf32, 0: none */
  double flash_fp16_ms; /* BENCH.md anchor, flash-kmeans fp16, 0: none */
  double faiss_gpu_ms;  /* BENCH.md anchor, FAISS 1.15 GPU k-means, 0: none */
  int quick;            /* also in the quick list */
} shape;

/* The full list, in order; the quick list is its shapes marked quick. */
static const shape shapes[] = {
    {1000000, 1024, 128, 1, 1.82, 1.13, 217, 1},  {1000000, 256, 128, 1, 0.89, 0.57, 0, 1},
    {200000, 4096, 128, 1, 1.39, 1.01, 69.1, 1},  {1000000, 8192, 128, 1, 10.0, 6.06, 234, 1},
    {8000000, 1024, 128, 1, 11.8, 7.11, 1662, 0}, {1000000, 1024, 768, 1, 14.6, 0, 0, 1},
    {16777216, 4096, 128, 1, 79.9, 46.9, 0, 0},   {4194304, 65536, 128, 1, 365, 188, 0, 0},
    {65536, 1024, 128, 32, 3.63, 3.04, 1226, 1},
};

/* The engine's per-iteration phase times (verbose log lines). */
typedef struct phases {
  int count;
  double v[6][256]; /* assign, group, update, objective tail, refined, screen-left points */
} phases;

static void on_log(void *user, fkm_log_level level, const char *msg) {
  phases *ph = user;
  double a, g, u, o;
  int refined, screened;
  (void)level;
  if (ph->count < 256 &&
      sscanf(msg,
             "cuda engine phases (ms): assign %lf group %lf update %lf objective-tail %lf "
             "refined %d (left by the screen %d)",
             &a, &g, &u, &o, &refined, &screened) == 6) {
    ph->v[4][ph->count] = refined;
    ph->v[5][ph->count] = screened;
    ph->v[0][ph->count] = a;
    ph->v[1][ph->count] = g;
    ph->v[2][ph->count] = u;
    ph->v[3][ph->count] = o;
    ph->count++;
  }
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define CHECK_CUDA(call)                                                      \
  do {                                                                        \
    cudaError_t e_ = (call);                                                  \
    if (e_ != cudaSuccess) {                                                  \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,           \
              cudaGetErrorString(e_));                                        \
      return 1;                                                               \
    }                                                                         \
  } while (0)

/* float -> IEEE binary16, round to nearest even (normal range; the bench's
 * normal(0, 1) data never leaves it except for underflow to subnormals). */
static uint16_t float_to_half(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  const uint32_t sign = (b >> 16) & 0x8000u;
  int e = (int)((b >> 23) & 0xffu) - 127 + 15;
  uint32_t m = b & 0x7fffffu;
  if (e >= 31) return (uint16_t)(sign | 0x7c00u);
  if (e <= 0) { /* subnormal or zero */
    if (e < -10) return (uint16_t)sign;
    m |= 0x800000u;
    const int sh = 14 - e;
    uint32_t h = m >> sh, rem = m & ((1u << sh) - 1), half = 1u << (sh - 1);
    if (rem > half || (rem == half && (h & 1u))) h++;
    return (uint16_t)(sign | h);
  }
  uint32_t h = ((uint32_t)e << 10) | (m >> 13), rem = m & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* may carry into the exponent */
  return (uint16_t)(sign | h);
}

static int run_shape(fkm_ctx *ctx, const char *mode, const shape *s, int niter, FILE *out,
                     int fast, const fkm_profile *prof) {
  const size_t nx = (size_t)(s->batch * s->n * s->d);
  float *x = NULL, *cent = NULL;
  CHECK_CUDA(cudaMalloc((void **)&x, sizeof(float) * (nx + (nx & 1))));
  CHECK_CUDA(cudaMalloc((void **)&cent, sizeof(float) * (size_t)(s->batch * s->k * s->d)));
  curandGenerator_t g;
  if (curandCreateGenerator(&g, CURAND_RNG_PSEUDO_PHILOX4_32_10) != CURAND_STATUS_SUCCESS ||
      curandSetPseudoRandomGeneratorSeed(g, 1234ull + (unsigned long long)s->k) !=
          CURAND_STATUS_SUCCESS ||
      curandGenerateNormal(g, x, nx + (nx & 1), 0.0f, 1.0f) != CURAND_STATUS_SUCCESS) {
    fprintf(stderr, "curand failed\n");
    return 1;
  }
  curandDestroyGenerator(g);
  CHECK_CUDA(cudaDeviceSynchronize());
  const void *xdata = x;
  fkm_dtype dtype = FKM_DTYPE_F32;
  if (fast) { /* the same data rounded to fp16, on the device */
    float *h = malloc(sizeof(float) * nx);
    uint16_t *h16 = malloc(sizeof(uint16_t) * nx);
    if (!h || !h16) return 1;
    CHECK_CUDA(cudaMemcpy(h, x, sizeof(float) * nx, cudaMemcpyDeviceToHost));
    for (size_t i = 0; i < nx; i++) h16[i] = float_to_half(h[i]);
    CHECK_CUDA(cudaMemcpy(x, h16, sizeof(uint16_t) * nx, cudaMemcpyHostToDevice));
    free(h);
    free(h16);
    dtype = FKM_DTYPE_F16;
  }

  fkm_params p;
  fkm_params_init(&p);
  p.niter = niter;
  p.max_points_per_centroid = (int)(s->n / s->k + 1);
  if (fast) p.assign_mode = FKM_ASSIGN_FAST;
  if (prof) p.profile = *prof;
  static phases ph;
  ph.count = 0;
  p.verbose = 1;
  p.log = on_log;
  p.log_user = &ph;
  /* batched: problem 0's statistics (every problem's iteration ends at the
   * same host synchronisation) */
  fkm_iteration_stats *st = calloc((size_t)(niter * s->batch), sizeof *st);
  int64_t ns = 0, *nss = calloc((size_t)s->batch, sizeof *nss);
  if (!st || !nss) return 1;
  fkm_status r = s->batch == 1
                     ? fkm_train(ctx, &p, s->n, s->d, s->k, dtype, xdata, NULL, cent, 0, NULL,
                                 NULL, st, niter, &ns)
                     : fkm_train_batched(ctx, &p, s->batch, s->n, s->d, s->k, dtype, xdata,
                                         NULL, cent, 0, NULL, NULL, st, niter, nss);
  if (s->batch > 1) ns = nss[0];
  free(nss);
  if (r != FKM_OK) {
    fprintf(stderr, "fkm_train: %s: %s\n", fkm_status_string(r), fkm_ctx_last_error(ctx));
    return 1;
  }
  double it[256], as[256];
  int m = 0;
  for (int i = 2; i < ns && m < 256; i++, m++) {
    it[m] = 1e3 * (st[i].time - st[i - 1].time);
    as[m] = 1e3 * (st[i].time_search - st[i - 1].time_search);
  }
  const double ms = median(it, m), ams = median(as, m);
  double pm[6] = {0, 0, 0, 0, 0, 0};
  for (int q = 0; q < 6 && ph.count > 2; q++) pm[q] = median(ph.v[q] + 2, ph.count - 2);
  const double flop = 2.0 * (double)s->batch * (double)s->n * (double)s->k * (double)s->d;
  /* BENCH.md's floor: fp16 tensor rate (763 TFLOP/s) vs reading X once
   * (4.2 TB/s measured copy rate), here for fp32 X; the fp32 SIMT ceiling
   * measured there is 51 TFLOP/s. */
  const double floor_fp16 = fmax(flop / 763e12, (double)nx * 4 / 4.2e12) * 1e3;
  const double floor_simt = fmax(flop / 51e12, (double)nx * 4 / 4.2e12) * 1e3;
  char flash[32] = "-", faiss[32] = "-";
  const double flash_ms = fast ? s->flash_fp16_ms : s->flash_fp32_ms;
  if (flash_ms > 0) snprintf(flash, sizeof flash, "%.2f (%.2fx)", flash_ms, flash_ms / ms);
  if (s->faiss_gpu_ms > 0) snprintf(faiss, sizeof faiss, "%.0f (%.0fx)", s->faiss_gpu_ms,
                                    s->faiss_gpu_ms / ms);
  char name[64];
  if (s->batch > 1)
    snprintf(name, sizeof name, "%lld x %lld x %lld, d=%lld", s->batch, s->n, s->k, s->d);
  else
    snprintf(name, sizeof name, "%lld x %lld, d=%lld", s->n, s->k, s->d);
  fprintf(out, "| %s | %s | %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.0f / %.0f | %.1f | %.0f%% | %.3f | %.3f | %s | %s |\n",
          name, fast ? "f16" : "f32", mode, ms, ams, pm[1], pm[2], pm[3], pm[5], pm[4], flop / ms * 1e-9, 100.0 * flop / ms * 1e-9 / 51.0,
          floor_simt, floor_fp16, flash, faiss);
  fflush(out);
  free(st);
  cudaFree(x);
  cudaFree(cent);
  return 0;
}

int main(int argc, char **argv) {
  const int full = argc > 1 && strcmp(argv[1], "full") == 0;
  const int niter = argc > 2 ? atoi(argv[2]) : 8;
  if (niter < 4 || niter > 200) {
    fprintf(stderr, "niter must be in [4, 200]\n");
    return 2;
  }
  /* Two contexts: the default parity path (certified tensor cores where
   * they serve) and the SIMT reference kernel alone. */
  fkm_ctx *ctx = NULL, *simt = NULL;
  fkm_status r = fkm_ctx_create(FKM_BACKEND_CUDA, 0, &ctx);
  setenv("FLASHKM_CUDA_ASSIGN", "simt", 1);
  if (r == FKM_OK) r = fkm_ctx_create(FKM_BACKEND_CUDA, 0, &simt);
  unsetenv("FLASHKM_CUDA_ASSIGN");
  if (r != FKM_OK) {
    fprintf(stderr, "no CUDA context: %s\n", fkm_status_string(r));
    return 1;
  }
  printf("device: %s\n", fkm_ctx_device_name(ctx));
  printf("niter %d, ms/iter = median over iterations 2..%d; anchors: BENCH.md (H200), not this run\n\n",
         niter, niter - 1);
  printf("| shape (N x K) | dtype | mode | ms/iter | assign ms | group ms | update ms | objective tail ms (side stream, after assign) | points left by the screen / refined | TFLOP/s | %% of fp32 SIMT 51 | fp32 SIMT floor ms | fp16 floor ms | flash-kmeans ms, same dtype (ratio) | FAISS GPU ms (ratio) |\n");
  printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
  int rc = 0;
  const int only = argc > 3 ? atoi(argv[3]) : -1; /* an index into the chosen list */
  for (int a = 0, i = -1; a < (int)(sizeof shapes / sizeof *shapes) && rc == 0; a++) {
    const shape *sh = &shapes[a];
    if (!full && !sh->quick) continue;
    if (only >= 0 && ++i != only) continue;
    rc = run_shape(ctx, "parity (tc+certify)", sh, niter, stdout, 0, NULL);
    if (rc == 0) rc = run_shape(simt, "parity (SIMT only)", sh, niter, stdout, 0, NULL);
    if (rc == 0) rc = run_shape(ctx, "FKM_ASSIGN_FAST", sh, niter, stdout, 1, NULL);
    const char *profiles = getenv("FLASHKM_BENCH_PROFILES");
    char list[256], mode[96];
    snprintf(list, sizeof list, "%s", profiles ? profiles : "");
    for (char *save = NULL, *name = strtok_r(list, ",", &save); name && rc == 0;
         name = strtok_r(NULL, ",", &save)) {
      fkm_profile prof;
      if (fkm_profile_parse(name, &prof) != FKM_OK) {
        fprintf(stderr, "FLASHKM_BENCH_PROFILES: unknown profile %s\n", name);
        return 2;
      }
      snprintf(mode, sizeof mode, "parity, %s", name);
      rc = run_shape(ctx, mode, sh, niter, stdout, 0, &prof);
    }
  }
  fkm_ctx_destroy(ctx);
  fkm_ctx_destroy(simt);
  return rc;
}
