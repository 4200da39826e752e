/* flashkm datapath bench: the whole fkm_train call of the CUDA engine from
 * where the user's data lives (host memory as numpy gives it: pageable;
 * device memory), with FAISS's defaults (max_points_per_centroid 256, so a
 * subsample), against the floor of the bytes the call must move.
 *
 * usage: flashkm_datapath_bench [case index] [repeats]
 *
 * Per case and data location: the median wall time of `repeats` calls
 * after one warm-up call in the same process; "loop" is fkm_train's own
 * time of the iterations (the last statistics entry's time: from the end of
 * the engine's begin to the last iteration's synchronisation); "outside"
 * is wall - loop; "row list drawn alone" is one fkm_train_rows call before
 * them (FAISS's rand_perm prefix: the first call draws it; later calls on
 * the context read the list it kept, so it is not part of their "outside").
 * The floor is the training rows' bytes over the pinned
 * host-to-device copy rate measured at the start of this run (0 for device
 * data), plus the loop time; the last column is wall / floor.
 * With FLASHKM_BENCH_VERBOSE=1 the engine's log lines (its begin phases)
 * are printed for the last call. Case 2: out of core, a training set
 * streamed under a budget against the same run in core.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "flashkm.h"

typedef struct bench_case {
  long long n, d, k;
  int niter;
} bench_case;

static const bench_case cases[] = {
    {1000000, 128, 1024, 25}, /* the data-path issue's first shape */
    {16000000, 128, 4096, 5}, /* 8 GiB of host data */
};

#define CHECK_CUDA(call)                                                                   \
  do {                                                                                     \
    cudaError_t e_ = (call);                                                               \
    if (e_ != cudaSuccess) {                                                               \
      fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); \
      return 1;                                                                            \
    }                                                                                      \
  } while (0)

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void on_log(void *user, fkm_log_level level, const char *msg) {
  (void)level;
  if (user && strncmp(msg, "cuda engine: begin", 18) == 0) printf("    %s\n", msg);
}

/* Host-to-device copy rate from pinned (or pageable) memory, GB/s: the
 * best of 5 copies of `bytes`. */
static int copy_rate(size_t bytes, int pinned, double *gbs) {
  void *h = NULL, *d = NULL;
  if (pinned) CHECK_CUDA(cudaMallocHost(&h, bytes));
  else if (!(h = malloc(bytes))) return 1;
  memset(h, 1, bytes);
  CHECK_CUDA(cudaMalloc(&d, bytes));
  double best = 1e30;
  for (int r = 0; r < 5; r++) {
    const double t0 = now();
    CHECK_CUDA(cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice));
    const double t = now() - t0;
    if (t < best) best = t;
  }
  *gbs = (double)bytes / best * 1e-9;
  cudaFree(d);
  if (pinned) cudaFreeHost(h);
  else free(h);
  return 0;
}

/* n x d normal-ish values (sums of uniforms from xorshift), host. */
static float *make_data(long long n, long long d) {
  const size_t count = (size_t)(n * d);
  float *x = malloc(sizeof(float) * count);
  if (!x) return NULL;
  uint64_t s = 88172645463325252ull;
  for (size_t i = 0; i < count; i++) {
    float v = 0;
    for (int j = 0; j < 3; j++) {
      s ^= s << 13, s ^= s >> 7, s ^= s << 17;
      v += (float)(s >> 40) * 0x1p-24f;
    }
    x[i] = v - 1.5f + (float)((i / (size_t)d) % 64) * 0.05f; /* 64 loose groups */
  }
  return x;
}

/* Out of core: every row trained on (no subsample), in core and streamed
 * under a budget of a quarter of the in-core workspace; ms per iteration
 * (median of iterations 1..niter-1) against the bus floor of the training
 * set per iteration. */
static int run_streamed(fkm_ctx *ctx, long long n, long long d, long long k, int niter,
                        const float *x, double pinned_gbs) {
  fkm_params p;
  fkm_params_init(&p);
  p.niter = niter;
  p.max_points_per_centroid = (int)(n / k + 1);
  fkm_memory_plan plan;
  if (fkm_train_memory(ctx, &p, 1, n, d, k, FKM_DTYPE_F32, &plan) != FKM_OK) return 1;
  float *cent = malloc(sizeof(float) * (size_t)(k * d));
  float *ref = malloc(sizeof(float) * (size_t)(k * d));
  fkm_iteration_stats *st = calloc((size_t)niter, sizeof *st);
  if (!cent || !ref || !st) return 1;
  const double floor_ms = (double)n * (double)d * 4.0 / (pinned_gbs * 1e9) * 1e3;
  for (int mode = 0; mode < 2; mode++) {
    p.memory_budget = mode ? plan.in_core_bytes / 4 : 0;
    fkm_memory_plan got;
    if (fkm_train_memory(ctx, &p, 1, n, d, k, FKM_DTYPE_F32, &got) != FKM_OK) return 1;
    int64_t ns = 0;
    const double t0 = now();
    const fkm_status s = fkm_train(ctx, &p, n, d, k, FKM_DTYPE_F32, x, NULL, mode ? cent : ref,
                                   0, NULL, NULL, st, niter, &ns);
    const double wall = (now() - t0) * 1e3;
    if (s != FKM_OK) {
      fprintf(stderr, "fkm_train: %s: %s\n", fkm_status_string(s), fkm_ctx_last_error(ctx));
      return 1;
    }
    double it[64];
    int m = 0;
    for (int i = 1; i < ns && m < 64; i++, m++) it[m] = 1e3 * (st[i].time - st[i - 1].time);
    qsort(it, (size_t)m, sizeof *it, cmp_double);
    printf("| %lld x %lld, k=%lld | %s | %zu | %lld | %.2f | %.2f | %.2f | %.1f |\n", n, d, k,
           mode ? "streamed" : "in core", got.bytes, (long long)got.chunk_rows, it[m / 2],
           mode ? floor_ms : 0.0, mode ? it[m / 2] / floor_ms : 0.0, wall);
  }
  printf("\nstreamed centroids %s the in-core ones\n\n",
         memcmp(cent, ref, sizeof(float) * (size_t)(k * d)) ? "DIFFER from" : "are bit-identical to");
  free(cent);
  free(ref);
  free(st);
  return 0;
}

static int run_case(fkm_ctx *ctx, const bench_case *c, const void *x, const char *where,
                    int repeats, double pinned_gbs) {
  fkm_params p;
  fkm_params_init(&p);
  p.niter = c->niter;
  const int verbose = getenv("FLASHKM_BENCH_VERBOSE") != NULL;
  float *cent = malloc(sizeof(float) * (size_t)(c->k * c->d));
  fkm_iteration_stats *st = calloc((size_t)c->niter, sizeof *st);
  double wall[64], loop[64];
  if (!cent || !st || repeats > 64) return 1;
  int64_t ns = 0, n_train = 0;
  if (fkm_train_rows(ctx, &p, c->n, c->k, NULL, &n_train) != FKM_OK) return 1;
  /* the subsample's row list alone (the loop draws it before begin) */
  int64_t *rows = malloc(sizeof(int64_t) * (size_t)n_train);
  const double ts0 = now();
  if (!rows || fkm_train_rows(ctx, &p, c->n, c->k, rows, &n_train) != FKM_OK) return 1;
  const double sub_ms = (now() - ts0) * 1e3;
  free(rows);
  for (int r = -1; r < repeats; r++) {
    p.verbose = verbose && r == repeats - 1;
    p.log = on_log;
    p.log_user = p.verbose ? &p : NULL;
    const double t0 = now();
    const fkm_status s = fkm_train(ctx, &p, c->n, c->d, c->k, FKM_DTYPE_F32, x, NULL, cent, 0,
                                   NULL, NULL, st, c->niter, &ns);
    const double t = now() - t0;
    if (s != FKM_OK) {
      fprintf(stderr, "fkm_train: %s: %s\n", fkm_status_string(s), fkm_ctx_last_error(ctx));
      return 1;
    }
    if (r < 0) continue;
    wall[r] = t * 1e3;
    loop[r] = st[ns - 1].time * 1e3;
  }
  qsort(wall, (size_t)repeats, sizeof *wall, cmp_double);
  qsort(loop, (size_t)repeats, sizeof *loop, cmp_double);
  const double w = wall[repeats / 2], l = loop[repeats / 2];
  const int host = strcmp(where, "host") == 0;
  const double bytes = (double)n_train * (double)c->d * 4.0;
  const double floor_ms = (host ? bytes / (pinned_gbs * 1e9) * 1e3 : 0.0) + l;
  printf("| %lld x %lld, k=%lld, niter %d | %s | %lld | %.1f | %.1f | %.1f | %.1f | %.1f | %.2f |\n",
         c->n, c->d, c->k, c->niter, where, (long long)n_train, w, l, w - l, sub_ms, floor_ms,
         w / floor_ms);
  fflush(stdout);
  free(cent);
  free(st);
  return 0;
}

int main(int argc, char **argv) {
  const int only = argc > 1 ? atoi(argv[1]) : -1;
  const int repeats = argc > 2 ? atoi(argv[2]) : 5;
  if (repeats < 1 || repeats > 64) {
    fprintf(stderr, "repeats must be in [1, 64]\n");
    return 2;
  }
  fkm_ctx *ctx = NULL;
  if (fkm_ctx_create(FKM_BACKEND_CUDA, 0, &ctx) != FKM_OK) {
    fprintf(stderr, "no CUDA context\n");
    return 1;
  }
  double pinned = 0, pageable = 0;
  if (copy_rate((size_t)256 << 20, 1, &pinned) || copy_rate((size_t)256 << 20, 0, &pageable))
    return 1;
  printf("device: %s\n", fkm_ctx_device_name(ctx));
  printf("host-to-device copy, 256 MiB: pinned %.1f GB/s, pageable %.1f GB/s\n", pinned,
         pageable);
  printf("wall: median of %d calls after a warm-up; loop: the iterations (fkm_train's "
         "statistics); floor: training bytes / pinned rate + loop\n\n",
         repeats);
  printf("| call | data | training rows | wall ms | loop ms | outside ms | row list drawn alone ms | floor ms | wall / floor |\n");
  printf("|---|---|---|---|---|---|---|---|---|\n");
  int rc = 0;
  for (int i = 0; i < (int)(sizeof cases / sizeof *cases) && rc == 0; i++) {
    if (only >= 0 && i != only) continue;
    const bench_case *c = &cases[i];
    float *x = make_data(c->n, c->d);
    if (!x) {
      fprintf(stderr, "cannot allocate %lld x %lld floats\n", c->n, c->d);
      return 1;
    }
    rc = run_case(ctx, c, x, "host", repeats, pinned);
    float *dx = NULL;
    const size_t bytes = sizeof(float) * (size_t)(c->n * c->d);
    if (rc == 0 && cudaMalloc((void **)&dx, bytes) == cudaSuccess &&
        cudaMemcpy(dx, x, bytes, cudaMemcpyHostToDevice) == cudaSuccess)
      rc = run_case(ctx, c, dx, "device", repeats, pinned);
    else if (rc == 0)
      rc = 1;
    cudaFree(dx);
    free(x);
  }
  if (rc == 0 && (only < 0 || only == 2)) {
    const long long n = 4000000, d = 128, k = 1024;
    float *x = make_data(n, d);
    if (!x) return 1;
    printf("\nOut of core (every row trained on; streamed: memory_budget = in-core / 4), "
           "pageable then pinned host data:\n\n");
    printf("| call | mode | device bytes | chunk rows | ms/iter | bus floor ms/iter | ratio | "
           "wall ms |\n|---|---|---|---|---|---|---|---|\n");
    rc = run_streamed(ctx, n, d, k, 6, x, pinned);
    float *px = NULL;
    if (rc == 0 && cudaMallocHost((void **)&px, sizeof(float) * (size_t)(n * d)) == cudaSuccess) {
      memcpy(px, x, sizeof(float) * (size_t)(n * d));
      rc = run_streamed(ctx, n, d, k, 6, px, pinned);
      cudaFreeHost(px);
    }
    free(x);
  }
  fkm_ctx_destroy(ctx);
  return rc;
}
