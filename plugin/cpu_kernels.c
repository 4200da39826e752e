#define _GNU_SOURCE /* dladdr, RTLD_NOLOAD */
#include "cpu_kernels.h"
#include "cpu_loops.h"
#include "faiss_scan.h"

#include <dlfcn.h>
#include <float.h>
#include <math.h>
#include <omp.h>
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

void fkm_cpu_norms_arith(const fkm_arith *a, fkm_path path, const float *x, int64_t n,
                         int64_t d, float *out) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) out[i] = fkm_arith_norm(a, path, x + i * d, d);
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
void fkm_cpu_assign_rows_portable(const fkm_cpu_assign_args *a,
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

void fkm_cpu_ip_block_portable(const float *x, int64_t d, const float *panels, int64_t i0,
                               int64_t i1, int64_t p0, int64_t p1, float *out, int64_t ldo) {
  for (int64_t p = p0; p < p1; p++) {
    const float *pan = panels + p * d * FKM_CPU_PANEL;
    for (int64_t i = i0; i < i1; i++) {
      const float *xi = x + i * d;
      float *o = out + (i - i0) * ldo + (p - p0) * FKM_CPU_PANEL;
      for (int lane = 0; lane < FKM_CPU_PANEL; lane++) {
        float ip = 0.0f;
        for (int64_t j = 0; j < d; j++) ip = fmaf(xi[j], pan[j * FKM_CPU_PANEL + lane], ip);
        o[lane] = ip;
      }
    }
  }
}

#ifdef FKM_HAVE_AVX2_KERNEL
int fkm_cpu_has_avx2_fma(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
#else
int fkm_cpu_has_avx2_fma(void) { return 0; }
#endif

/* Rows are handled in chunks: every panel is applied to a chunk while it
 * sits in L1, and a chunk's best-per-lane state stays in L2. */
enum { ROW_CHUNK = 96 };

/* The centroids as panels of FKM_CPU_PANEL, transposed; padding lanes NaN
 * (scale: each value times it, exactly; 1 or -2). NULL when out of memory. */
static float *make_panels(const float *c, int64_t k, int64_t d, float scale) {
  const int64_t np = (k + FKM_CPU_PANEL - 1) / FKM_CPU_PANEL;
  float *panels = malloc(sizeof(float) * (size_t)(np * d * FKM_CPU_PANEL));
  if (!panels) return NULL;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < np; p++) {
    float *pan = panels + p * d * FKM_CPU_PANEL;
    for (int lane = 0; lane < FKM_CPU_PANEL; lane++) {
      int64_t ci = p * FKM_CPU_PANEL + lane;
      for (int64_t j = 0; j < d; j++)
        pan[j * FKM_CPU_PANEL + lane] = ci < k ? scale * c[ci * d + j] : NAN;
    }
  }
  return panels;
}

static int plain_assign(const fkm_cpu_assign_args *a) {
  float *panels = make_panels(a->c, a->k, a->d, 1.0f);
  if (!panels) return -1;
  const int avx2 = fkm_cpu_has_avx2_fma();
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

/* ------------------------------------------------------------ profiles */

/* The direct path (exhaustive_L2sqr_seq / exhaustive_inner_product_seq):
 * FAISS's own loop per pair (cpu_loops.h, a panel of centroids at a time),
 * a sequential strict scan. */
static int direct_assign(const fkm_cpu_assign_args *a) {
  float *panels = make_panels(a->c, a->k, a->d, 1.0f);
  if (!panels) return -1;
  const int avx2 = fkm_cpu_has_avx2_fma();
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i0 = 0; i0 < a->n; i0 += ROW_CHUNK) {
    const int64_t i1 = a->n - i0 < ROW_CHUNK ? a->n : i0 + ROW_CHUNK;
#ifdef FKM_HAVE_AVX2_KERNEL
    if (avx2) {
      fkm_cpu_direct_rows_avx2(a, panels, i0, i1);
      continue;
    }
#endif
    (void)avx2;
    fkm_direct_rows(a, panels, i0, i1);
  }
  free(panels);
  return 0;
}

static void ip_block(int avx2, const float *x, int64_t d, const float *panels, int64_t i0,
                     int64_t i1, int64_t p0, int64_t p1, float *out, int64_t ldo) {
#ifdef FKM_HAVE_AVX2_KERNEL
  if (avx2) {
    fkm_cpu_ip_block_avx2(x, d, panels, i0, i1, p0, p1, out, ldo);
    return;
  }
#endif
  (void)avx2;
  fkm_cpu_ip_block_portable(x, d, panels, i0, i1, p0, p1, out, ldo);
}

/* FAISS's database blocks (distance_compute_blas_database_bs). */
enum { DB_BLOCK = 1024 };
_Static_assert(DB_BLOCK % FKM_SCAN_MAX_LANES == 0, "the fused lanes run whole vectors per block");

/* One scan per row of a row block, of the kind the path needs: the plain
 * rule (top), exhaustive_L2sqr_blas_cmax's lanes (cs), FAISS 1.15's laned
 * Top1 (ls). Exactly one array is set. */
typedef struct row_scans {
  fkm_top1 *top;
  fkm_cmax_scan *cs;
  fkm_lanes_scan *ls;
} row_scans;

/* Row i (the block's row r) against centroids [j0, j1), whose dot products
 * are line[0 .. j1 - j0). */
static void scan_block(const row_scans *s, const fkm_cpu_assign_args *a, int64_t r, int64_t i,
                       int64_t j0, int64_t j1, const float *line) {
  if (s->cs) {
    fkm_cmax_scan *c = &s->cs[r];
    fkm_cmax_block(c, j0, j1 - j0);
    fkm_cmax_feed_all(c, line, a->cn + j0);
    fkm_cmax_block_end(c);
  } else if (s->ls) {
    fkm_lanes_scan *c = &s->ls[r];
    fkm_lanes_block(c, j0, j1 - j0);
    fkm_lanes_feed_all(c, line);
    fkm_lanes_block_end(c);
  } else {
    const int l2 = a->metric == FKM_METRIC_L2;
    for (int64_t j = j0; j < j1; j++)
      fkm_scan_plain(&s->top[r], l2, l2 ? fkm_l2_plain(a->xn[i], a->cn[j], line[j - j0]) : line[j - j0],
                     j);
  }
}

/* Rows [i0, i1)'s labels and distances from their finished scans (fs: the
 * fused kernel's, when that path ran). */
static void store_results(const fkm_cpu_assign_args *a, const row_scans *s, fkm_fused_scan *fs,
                          int64_t i0, int64_t i1) {
  for (int64_t i = i0; i < i1; i++) {
    const int64_t r = i - i0;
    const fkm_top1 t = fs ? fkm_fused_end(&fs[r]) : s->cs ? s->cs[r].r : s->ls ? s->ls[r].r : s->top[r];
    a->labels[i] = t.idx;
    a->dist[i] = t.dis;
  }
}

/* The paths whose scans need the dot products themselves: the cmax lanes,
 * the fused kernel's lanes, FAISS 1.15's laned Top1. Dot products of a row
 * chunk against a block of 1024 centroids at a time, then each row's scan
 * in centroid order. The fused kernel's main part multiplies -2 x by c:
 * its panels hold -2 c, exactly, and the same chain gives that product. */
static int laned_assign(const fkm_cpu_assign_args *a) {
  const fkm_arith *ar = a->arith;
  const int64_t d = a->d, k = a->k;
  const int l2 = a->metric == FKM_METRIC_L2;
  const int fused = a->path == FKM_PATH_FUSED;
  float *panels = make_panels(a->c, k, d, fused ? -2.0f : 1.0f);
  if (!panels) return -1;
  const int avx2 = fkm_cpu_has_avx2_fma();
  const int64_t nchunks = (a->n + ROW_CHUNK - 1) / ROW_CHUNK;
  int failed = 0;
#pragma omp parallel
  {
    float *buf = malloc(sizeof(float) * ROW_CHUNK * DB_BLOCK);
    fkm_cmax_scan *cs = l2 && !fused ? malloc(sizeof(fkm_cmax_scan) * ROW_CHUNK) : NULL;
    fkm_lanes_scan *ls = !l2 ? malloc(sizeof(fkm_lanes_scan) * ROW_CHUNK) : NULL;
    fkm_fused_scan *fs = fused ? malloc(sizeof(fkm_fused_scan) * ROW_CHUNK) : NULL;
    const row_scans scans = {NULL, cs, ls};
    const int ok = buf && (cs || ls || fs);
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < nchunks; ch++) {
      if (!ok) continue;
      const int64_t i0 = ch * ROW_CHUNK, i1 = i0 + ROW_CHUNK < a->n ? i0 + ROW_CHUNK : a->n;
      for (int64_t i = i0; i < i1; i++) {
        if (fused) fkm_fused_begin(&fs[i - i0], ar->fused_lanes, k, a->xn[i]);
        if (cs) fkm_cmax_begin(&cs[i - i0], ar->cmax_lanes, a->xn[i]);
        if (ls) fkm_lanes_begin(&ls[i - i0], ar->top1_lanes, 0);
      }
      for (int64_t j0 = 0; j0 < k; j0 += DB_BLOCK) {
        const int64_t j1 = j0 + DB_BLOCK < k ? j0 + DB_BLOCK : k;
        ip_block(avx2, a->x, d, panels, i0, i1, j0 / FKM_CPU_PANEL,
                 (j1 + FKM_CPU_PANEL - 1) / FKM_CPU_PANEL, buf, DB_BLOCK);
        for (int64_t i = i0; i < i1; i++) {
          const float *ips = buf + (i - i0) * DB_BLOCK, *xi = a->x + i * d;
          if (fused) {
            fkm_fused_scan *s = &fs[i - i0];
            int64_t j = j0;
            if (d > 1) { /* the main part's whole vectors of lanes (DB_BLOCK is a multiple) */
              const int64_t jm = s->main <= j0 ? j0 : s->main < j1 ? s->main : j1;
              fkm_fused_feed_run(s, j0, jm, ips, a->cn);
              j = jm;
            }
            for (; j < j1; j++) {
              if (j < s->main)
                fkm_fused_feed_main(s, j, fkm_fused_t(xi, a->c + j * d, d, ips[j - j0], a->cn[j]));
              else
                fkm_fused_feed_left(s, j, fkm_fused_dot(xi, a->c + j * d, d), a->cn[j]);
            }
          } else {
            scan_block(&scans, a, i - i0, i, j0, j1, ips);
          }
        }
      }
      store_results(a, &scans, fused ? fs : NULL, i0, i1);
    }
    free(buf);
    free(cs);
    free(ls);
    free(fs);
  }
  free(panels);
  return failed ? -1 : 0;
}

/* The OpenMP runtime a BLAS runs its threads on, when it is not this
 * library's: a pip faiss-cpu wheel's OpenBLAS brings its own libgomp. Two
 * runtimes in one process each keep their idle threads spinning after a
 * parallel region, so the BLAS's team and this library's scans took turns
 * on the same cores. The scans then run on the BLAS's own threads, as
 * FAISS's own loops do (the libgomp ABI: GOMP_parallel and the omp_*
 * queries of that runtime: fkm_cpu_blas_omp), and the engine keeps one
 * thread of its own (engine_cpu.c, threads_enter). Each row's scan is independent: the bits
 * do not depend on which threads run it. */
extern void GOMP_parallel(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);

int fkm_cpu_blas_omp(fkm_sgemm_fn sgemm, fkm_blas_omp *o) {
  Dl_info info;
  if (!sgemm || !dladdr((void *)(uintptr_t)sgemm, &info) || !info.dli_fname) return 0;
  void *h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD); /* the loaded BLAS, and */
  if (!h) return 0;                                           /* its dependencies */
  void *par = dlsym(h, "GOMP_parallel"), *tn = dlsym(h, "omp_get_thread_num"),
       *nt = dlsym(h, "omp_get_num_threads");
  dlclose(h);
  if (!par || !tn || !nt || par == (void *)(uintptr_t)GOMP_parallel) return 0;
  o->parallel = (void (*)(void (*)(void *), void *, unsigned, unsigned))(uintptr_t)par;
  o->thread_num = (int (*)(void))(uintptr_t)tn;
  o->num_threads = (int (*)(void))(uintptr_t)nt;
  o->team = 0;
  return 1;
}

/* One block of rows scanned by a foreign team: thread t takes a contiguous
 * share, as a static schedule. */
typedef struct scan_job {
  const row_scans *scans;
  const fkm_cpu_assign_args *a;
  const fkm_blas_omp *omp;
  const float *ip;
  int64_t i0, i1, j0, j1;
} scan_job;

static void scan_job_run(void *p) {
  const scan_job *w = p;
  const int64_t t = w->omp->thread_num(), T = w->omp->num_threads(), m = w->i1 - w->i0;
  for (int64_t r = m * t / T; r < m * (t + 1) / T; r++)
    scan_block(w->scans, w->a, r, w->i0 + r, w->j0, w->j1, w->ip + r * (w->j1 - w->j0));
}

/* The BLAS path with the caller's BLAS: FAISS's loop of
 * exhaustive_L2sqr_blas / exhaustive_inner_product_blas, query blocks of
 * query_bs rows by database blocks of database_bs centroids, each an sgemm
 * from this thread with FAISS's arguments, so every dot product is the one
 * FAISS gets from that BLAS (its summation order may depend on the block's
 * shape, the element's place in it and the BLAS's threads: all the same
 * here). Each row's scan then reads them in centroid order, as above. */
static int blas_assign(const fkm_cpu_assign_args *a) {
  const fkm_arith *ar = a->arith;
  const int64_t d = a->d, k = a->k, n = a->n;
  const int l2 = a->metric == FKM_METRIC_L2;
  const int cmax = l2 && ar && ar->cmax_lanes > 0, laned = !l2 && ar && ar->top1_lanes > 1;
  const int64_t qbs = a->query_bs < n ? a->query_bs : n;
  const int64_t dbs = a->database_bs < k ? a->database_bs : k;
  float *ip = malloc(sizeof(float) * (size_t)qbs * (size_t)dbs);
  fkm_top1 *top = !cmax && !laned ? malloc(sizeof(fkm_top1) * (size_t)qbs) : NULL;
  fkm_cmax_scan *cs = cmax ? malloc(sizeof(fkm_cmax_scan) * (size_t)qbs) : NULL;
  fkm_lanes_scan *ls = laned ? malloc(sizeof(fkm_lanes_scan) * (size_t)qbs) : NULL;
  const row_scans scans = {top, cs, ls};
  int rc = ip && (top || cs || ls) ? 0 : -1;
  for (int64_t i0 = 0; i0 < n && rc == 0; i0 += qbs) {
    const int64_t i1 = i0 + qbs < n ? i0 + qbs : n;
    for (int64_t i = i0; i < i1; i++) {
      if (top) top[i - i0] = fkm_top1_begin(l2);
      if (cs) fkm_cmax_begin(&cs[i - i0], ar->cmax_lanes, a->xn[i]);
      if (ls) fkm_lanes_begin(&ls[i - i0], ar->top1_lanes, 0);
    }
    for (int64_t j0 = 0; j0 < k; j0 += dbs) {
      const int64_t j1 = j0 + dbs < k ? j0 + dbs : k;
      int nyi = (int)(j1 - j0), nxi = (int)(i1 - i0), di = (int)d;
      float one = 1.0f, zero = 0.0f;
      a->sgemm("Transpose", "Not transpose", &nyi, &nxi, &di, &one, a->c + j0 * d, &di,
               a->x + i0 * d, &di, &zero, ip, &nyi);
      if (a->blas_omp) {
        scan_job job = {&scans, a, a->blas_omp, ip, i0, i1, j0, j1};
        a->blas_omp->parallel(scan_job_run, &job, a->blas_omp->team, 0);
        continue;
      }
#pragma omp parallel for schedule(static)
      for (int64_t i = i0; i < i1; i++)
        scan_block(&scans, a, i - i0, i, j0, j1, ip + (i - i0) * (j1 - j0));
    }
    store_results(a, &scans, NULL, i0, i1);
  }
  free(ip);
  free(top);
  free(cs);
  free(ls);
  return rc;
}

int fkm_cpu_assign(const fkm_cpu_assign_args *a) {
  const fkm_arith *ar = a->arith;
  if (a->sgemm && a->path == FKM_PATH_BLAS && a->n > 0) return blas_assign(a);
  if (!ar) return plain_assign(a);
  if (a->path == FKM_PATH_DIRECT) return direct_assign(a);
  if (a->path == FKM_PATH_FUSED ||
      (a->metric == FKM_METRIC_L2 ? ar->cmax_lanes > 0 : ar->top1_lanes > 1))
    return laned_assign(a);
  return plain_assign(a);
}
