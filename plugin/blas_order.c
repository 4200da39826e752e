/* The summation order of a BLAS's sgemm, learned by probing (blas_order.h).
 *
 * The probe (the technique of FPRev, arXiv 2411.00442): x all ones, y_j all
 * ones but y_j[r] = 2^40 and y_j[q] = -2^40. Every one summed into a partial
 * sum that holds +-2^40 is absorbed (2^40 + m = 2^40 for m < 2^16), the two
 * cancel exactly where their subtrees meet, and the ones summed after that
 * count: the result is d - L(r, q), L the number of terms in the smallest
 * subtree of the summation holding r and q. In one fma chain L(r, r + 1) is
 * 2; with u interleaved chains L(r, r + u) is 2 and L(r, r + v) > 2 for
 * v < u. Each column j of a call can carry its own pair, so one call with
 * q = j probes every q < ny at once. */
#define _GNU_SOURCE /* dladdr, RTLD_NOLOAD */
#include "blas_order.h"

#include <dlfcn.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const float BIG = 1099511627776.0f; /* 2^40 */
enum { CHAIN_COUNTS = 5 }; /* 2^ul chains, ul = 0 .. 4: 1 .. FKM_BLAS_ORDER_MAX_LANES */

static void call(fkm_sgemm_fn sgemm, const fkm_blas_order *o, const float *y, const float *x,
                 float *ip) {
  int m = (int)o->ny, n = (int)o->nx, k = (int)o->d, lda = k, ldb = k, ldc = m;
  const float one = 1.0f;
  float zero = 0.0f;
  sgemm("T", "N", &m, &n, &k, &one, y, &lda, x, &ldb, &zero, ip, &ldc);
}

/* y_j: ones, BIG at r, -BIG at q(j) (no -BIG where q(j) is out of range) */
static void probe_rows(const fkm_blas_order *o, float *y, int64_t r, int64_t q_fixed,
                       int64_t q_base) {
  const int64_t d = o->d;
  for (int64_t j = 0; j < o->ny; j++) {
    float *yj = y + j * d;
    for (int64_t k = 0; k < d; k++) yj[k] = 1.0f;
    yj[r] = BIG;
    const int64_t q = q_fixed >= 0 ? q_fixed : q_base + j;
    if (q > r && q < d) yj[q] = -BIG;
  }
}

/* One segment [b, e) of a dot product in the code's order (blas_code.h). */
static float segment(uint8_t code, const float *yj, const float *xi, int64_t b, int64_t e) {
  const int u = fkm_blas_code_lanes(code), rounded = fkm_blas_code_rounded(code);
  const int64_t m = fkm_blas_code_main_end(code, b, e);
  float acc[FKM_BLAS_ORDER_MAX_LANES];
  for (int l = 0; l < u; l++) acc[l] = 0.0f;
  for (int64_t k = b; k < e; k++) {
    const int l = k < m ? (int)((k - b) % u) : 0;
    acc[l] = rounded ? acc[l] + yj[k] * xi[k] : fmaf(yj[k], xi[k], acc[l]);
  }
  for (int w = u; w > 1; w /= 2)
    for (int l = 0; l < w / 2; l++) acc[l] = acc[l] + acc[l + w / 2];
  return acc[0];
}

static float dot_code(const fkm_blas_order *o, uint8_t code, const float *yj, const float *xi) {
  float c = 0.0f;
  for (int s = 0; s < o->nseg; s++) {
    const float part = segment(code, yj, xi, o->seg[s], o->seg[s + 1]);
    c = s == 0 ? part : c + part;
  }
  return c;
}

float fkm_blas_order_dot(const fkm_blas_order *o, int64_t i, int64_t j, const float *yj,
                         const float *xi) {
  return dot_code(o, o->code[i * o->ny + j], yj, xi);
}

/* Segments from L(0, q) of one-chain elements (lq[q], q = 1 .. d - 1):
 * L = q + 1 inside segment 0; for q in a later segment, L is that
 * segment's end. */
static int segments_of(fkm_blas_order *o, const int64_t *lq) {
  const int64_t d = o->d;
  int64_t end0 = 1;
  while (end0 < d && lq[end0] == end0 + 1) end0++;
  o->nseg = 0;
  o->seg[o->nseg++] = 0;
  for (int64_t b = end0; b < d;) {
    if (o->nseg == FKM_BLAS_ORDER_MAX_SEGS) return 0;
    const int64_t e = lq[b];
    if (e <= b || e > d) return 0;
    for (int64_t q = b; q < e; q++)
      if (lq[q] != e) return 0;
    o->seg[o->nseg++] = b;
    b = e;
  }
  o->seg[o->nseg] = d;
  return 1;
}

/* A draw of rows x d values from a fixed xorshift stream. kind 0: 1 + r
 * 2^-23 with r < 2^12 (the product of two is inexact, within 2^-10 of 1);
 * kind 1: the same signed by the Thue-Morse sequence of the term's index
 * (every chain of a power-of-two stride sees signs that keep changing, its
 * partial sums stay near 1, and a rounded product changes the result
 * almost surely); kind 2: full mantissas, random signs and exponents -3 to
 * 3 (the partial sums grow and mix scales, so moving a term to another
 * chain changes the rounding); kind 3: integers 0-255 (pixels). */
static void fill(float *v, int64_t rows, int64_t d, uint64_t seed, int kind) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int64_t r = 0; r < rows; r++)
    for (int64_t t = 0; t < d; t++) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      uint32_t bits; /* the value's bits, built directly (exact, and no libm call) */
      if (kind == 3) {
        const float val = (float)(s >> 56);
        memcpy(&bits, &val, sizeof bits);
      } else if (kind == 2) { /* sign, exponent 127 - 3 .. 127 + 3, 23 mantissa bits */
        bits = (uint32_t)(s & 1) << 31 | (uint32_t)(124 + (s >> 1) % 7) << 23 |
               (uint32_t)(s >> 41);
      } else { /* 1 + (s >> 52) 2^-23 */
        bits = 0x3f800000u | (uint32_t)(s >> 52);
      }
      if (kind == 1 && __builtin_parityll((unsigned long long)t)) bits |= 0x80000000u;
      memcpy(v + r * d + t, &bits, sizeof bits);
    }
}

/* Variant v of an element whose chains are 2^ul (docs/profiles.md): products
 * rounded when v is odd; no loop remainder for v < 2, else the remainder
 * after groups of u 2^(v / 2 - 1) terms goes to chain 0. Its code, or 0
 * when there is no such variant (one chain has no remainder; groups past
 * 128) or when it sums every segment as the variant with half its group
 * does (the same main parts: the same order). */
static uint8_t variant_code(const fkm_blas_order *o, int ul, int v) {
  const int gi = v >> 1;
  const uint8_t c = fkm_blas_variant(ul, v);
  if (gi == 0 || !c) return c;
  const uint8_t half = fkm_blas_variant(ul, v - 2);
  for (int s = 0; s < o->nseg; s++)
    if (fkm_blas_code_main_end(c, o->seg[s], o->seg[s + 1]) !=
        fkm_blas_code_main_end(half, o->seg[s], o->seg[s + 1]))
      return c;
  return 0;
}

fkm_status fkm_blas_order_choose_host(void *user, fkm_blas_order *o, const fkm_blas_draws *dr,
                                      fkm_errbuf *err) {
  (void)user;
  (void)err;
  const int64_t ny = o->ny, nx = o->nx, d = o->d, cells = nx * ny;
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t i = 0; i < nx; i++)
    for (int64_t j = 0; j < ny; j++) {
      const int64_t e = i * ny + j;
      const int ul = (o->code[e] & 7) - 1;
      uint8_t chosen = 0;
      for (int v = 0; v < FKM_BLAS_VARIANTS && !chosen; v++) {
        if (!(dr->alive[e] >> v & 1)) continue;
        const uint8_t c = fkm_blas_variant(ul, v);
        int ok = 1;
        for (int k = 0; ok && k < dr->draws; k++)
          ok = dot_code(o, c, dr->y + (k * ny + j) * d, dr->x + (k * nx + i) * d) ==
               dr->ip[k * cells + e];
        if (ok) chosen = c;
      }
      o->code[e] = chosen;
    }
  return FKM_OK;
}

/* One structural probe (y's rows set): the variants of each element whose
 * value of the probe is not the BLAS's die. The model's value depends on
 * the code alone, so each chain count's variants have a few distinct
 * values, each with the mask of the variants that give it; a probe whose
 * live variants all give one value per chain count cannot tell them apart
 * and is not called (0 returned). */
static int structural_probe(fkm_sgemm_fn sgemm, const fkm_blas_order *o, const float *y,
                            const float *x, float *ip, const uint16_t may[CHAIN_COUNTS],
                            uint16_t *alive) {
  const int64_t cells = o->nx * o->ny;
  float value[CHAIN_COUNTS][FKM_BLAS_VARIANTS]; /* chain count ul's distinct values */
  uint16_t mask[CHAIN_COUNTS][FKM_BLAS_VARIANTS];
  int nvalues[CHAIN_COUNTS] = {0};
  for (int ul = 0; ul < CHAIN_COUNTS; ul++)
    for (int v = 0; v < FKM_BLAS_VARIANTS; v++) {
      if (!(may[ul] >> v & 1)) continue;
      const float m = dot_code(o, fkm_blas_variant(ul, v), y, x); /* row 0 of each */
      int k = 0;
      while (k < nvalues[ul] && value[ul][k] != m) k++;
      if (k == nvalues[ul]) value[ul][nvalues[ul]++] = m, mask[ul][k] = 0;
      mask[ul][k] |= (uint16_t)(1u << v);
    }
  uint16_t live[CHAIN_COUNTS] = {0}; /* the variants some element of each chain count has */
  for (int64_t c = 0; c < cells; c++)
    if (o->code[c]) live[(o->code[c] & 7) - 1] |= alive[c];
  int tells = 0;
  for (int ul = 0; ul < CHAIN_COUNTS; ul++)
    for (int k = 0; k < nvalues[ul]; k++)
      tells |= (mask[ul][k] & live[ul]) != 0 && (mask[ul][k] & live[ul]) != live[ul];
  if (!tells) return 0;
  call(sgemm, o, y, x, ip);
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < cells; c++) {
    if (!alive[c]) continue;
    const int ul = (o->code[c] & 7) - 1;
    uint16_t keep = 0;
    for (int k = 0; k < nvalues[ul]; k++)
      if (value[ul][k] == ip[c]) keep = mask[ul][k];
    alive[c] &= keep;
  }
  return 1;
}

/* The probes see the tree, not how a term joins it (fused or rounded
 * products) nor where a kernel's loop remainder goes: each element takes
 * the first variant that reproduces (1) the structural probes that tell
 * the remainders apart, L(b, t) of a segment's first term b and the last
 * term t of each group size's main part and the segment's last term
 * (structural_probe: only those whose live variants differ), (2) a
 * probe whose sum is exact but for one product's rounding, and (3) the
 * BLAS on three draws of data; an element no variant reproduces is
 * unmodelled. x arrives all ones (the probes' rows). */
static fkm_status choose_variants(fkm_sgemm_fn sgemm, fkm_blas_order *o, float *y, float *x,
                                  float *ip, fkm_blas_choose_fn choose, void *choose_user,
                                  fkm_errbuf *err) {
  const int64_t ny = o->ny, nx = o->nx, d = o->d, cells = nx * ny;
  uint16_t *alive = malloc(sizeof(uint16_t) * (size_t)cells);
  /* the draws' kinds (y, x): rounded products, reassociation, pixels */
  static const int ykind[] = {1, 2, 3}, xkind[] = {0, 2, 3};
  enum { DRAWS = sizeof ykind / sizeof *ykind };
  float *dy = malloc(sizeof(float) * (size_t)(DRAWS * ny * d));
  float *dx = malloc(sizeof(float) * (size_t)(DRAWS * nx * d));
  float *dip = malloc(sizeof(float) * (size_t)(DRAWS * cells));
  fkm_status st = FKM_OK;
  if (!alive || !dy || !dx || !dip)
    st = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY, "BLAS order: cannot allocate the checks");
  /* the variants an element of 2^ul chains may take (variant_code) */
  uint16_t may[CHAIN_COUNTS] = {0};
  for (int ul = 0; ul < CHAIN_COUNTS; ul++)
    for (int v = 0; v < FKM_BLAS_VARIANTS; v++)
      if (variant_code(o, ul, v)) may[ul] |= (uint16_t)(1u << v);
  int grouped = 0; /* an element of several chains: remainders to tell apart */
  for (int64_t e = 0; st == FKM_OK && e < cells; e++) {
    const int ul = (o->code[e] & 7) - 1;
    alive[e] = o->code[e] ? may[ul] : 0;
    grouped |= ul > 0 && alive[e] > 3;
  }
  /* (1) the structural probes: x all ones, y_j ones with +BIG at b, -BIG at t */
  for (int s = 0; st == FKM_OK && grouped && s < o->nseg; s++) {
    const int64_t b = o->seg[s], e = o->seg[s + 1];
    int64_t last = -1;
    for (int gl = 1; gl <= 8; gl++) { /* groups 2 .. 128, then the segment's end */
      const int64_t t = gl < 8 ? b + (e - b) / ((int64_t)1 << gl) * ((int64_t)1 << gl) - 1 : e - 1;
      if (t <= b || t == last) continue;
      last = t;
      probe_rows(o, y, b, t, 0);
      structural_probe(sgemm, o, y, x, ip, may, alive);
    }
  }
  /* (2) fused or rounded products: term 0's product is -1 and term 16's
   * (1 + 2^-12)^2 = 1 + 2^-11 + 2^-24, every other term 0. Both are in
   * chain 0 of the first segment whatever the lanes and groups, so the sum
   * is fl(-1 + that) = 2^-11 + 2^-24 where the product is fused, and
   * -1 + fl(1 + 2^-11 + 2^-24) = 2^-11 where it is rounded first (a tie,
   * to even). */
  if (st == FKM_OK && o->seg[1] - o->seg[0] > 16) {
    const float h = 1.0f + 0x1p-12f;
    memset(x, 0, sizeof(float) * (size_t)(nx * d));
    memset(y, 0, sizeof(float) * (size_t)(ny * d));
    for (int64_t i = 0; i < nx; i++) x[i * d] = 1.0f, x[i * d + 16] = h;
    for (int64_t j = 0; j < ny; j++) y[j * d] = -1.0f, y[j * d + 16] = h;
    call(sgemm, o, y, x, ip);
    const uint16_t fused = 0x5555, rounded = 0xaaaa; /* even, odd variants */
    for (int64_t e = 0; e < cells; e++) {
      if (ip[e] == 0x1p-11f + 0x1p-24f) alive[e] &= fused;
      else if (ip[e] == 0x1p-11f) alive[e] &= rounded;
    }
  }
  /* (3) the draws, kept; then each element's first variant that reproduces all */
  for (int draw = 0; st == FKM_OK && draw < DRAWS; draw++) {
    fill(dy + draw * ny * d, ny, d, 11 + (uint64_t)draw, ykind[draw]);
    fill(dx + draw * nx * d, nx, d, 23 + (uint64_t)draw, xkind[draw]);
    call(sgemm, o, dy + draw * ny * d, dx + draw * nx * d, dip + draw * cells);
  }
  if (st == FKM_OK) {
    const fkm_blas_draws dr = {.draws = DRAWS, .y = dy, .x = dx, .ip = dip, .alive = alive};
    st = choose ? choose(choose_user, o, &dr, err) : fkm_blas_order_choose_host(NULL, o, &dr, err);
  }
  if (st == FKM_OK) {
    o->modelled = 0;
    for (int64_t e = 0; e < cells; e++) o->modelled += o->code[e] != 0;
  }
  free(alive);
  free(dy);
  free(dx);
  free(dip);
  return st;
}

static fkm_status learn(fkm_sgemm_fn sgemm, fkm_blas_order *o, float *y, float *x, float *ip,
                        int64_t *lq, fkm_blas_choose_fn choose, void *choose_user,
                        fkm_errbuf *err) {
  const int64_t ny = o->ny, nx = o->nx, d = o->d, cells = nx * ny;
  o->nseg = 1;
  o->seg[0] = 0;
  o->seg[1] = d;
  if (d == 1) { /* one term: nothing to order */
    memset(o->code, fkm_blas_code(0, 0, 0), (size_t)cells);
    o->modelled = cells;
    return FKM_OK;
  }
  for (int64_t t = 0; t < nx * d; t++) x[t] = 1.0f;
  /* lanes: the least u in 1, 2, 4, ... with L(0, u) == 2 */
  memset(o->code, 0, (size_t)cells);
  int64_t left = cells; /* elements whose chains are not found yet */
  for (int ul = 0, u = 1; u <= FKM_BLAS_ORDER_MAX_LANES && u < d && left > 0; ul++, u *= 2) {
    probe_rows(o, y, 0, u, 0);
    call(sgemm, o, y, x, ip);
    for (int64_t e = 0; e < cells; e++)
      if (!o->code[e] && d - (int64_t)ip[e] == 2) {
        o->code[e] = fkm_blas_code(ul, 0, 0);
        left--;
      }
  }
  /* L(0, q) for every q from one-chain elements: column j carries q = base + j */
  for (int64_t q = 0; q < d; q++) lq[q] = -1;
  for (int64_t base = 0; base < d; base += ny) {
    probe_rows(o, y, 0, -1, base);
    call(sgemm, o, y, x, ip);
    for (int64_t j = 0; j < ny && base + j < d; j++)
      for (int64_t i = 0; i < nx; i++)
        if (fkm_blas_code_lanes(o->code[i * ny + j]) == 1) {
          lq[base + j] = d - (int64_t)ip[i * ny + j];
          break;
        }
  }
  int found = 1;
  for (int64_t q = 1; q < d; q++) found &= lq[q] >= 0;
  FKM_RETURN_IF(!found || !segments_of(o, lq), err, FKM_ERR_UNSUPPORTED,
                "BLAS order: no segment structure found for sgemm(%lld x %lld, d = %lld) "
                "(no element sums its first segment in one chain)",
                (long long)ny, (long long)nx, (long long)d);
  return choose_variants(sgemm, o, y, x, ip, choose, choose_user, err);
}

fkm_status fkm_blas_order_learn(fkm_sgemm_fn sgemm, int64_t ny, int64_t nx, int64_t d,
                                fkm_blas_order *o, fkm_errbuf *err) {
  return fkm_blas_order_learn_with(sgemm, ny, nx, d, NULL, NULL, o, err);
}

fkm_status fkm_blas_order_learn_with(fkm_sgemm_fn sgemm, int64_t ny, int64_t nx, int64_t d,
                                     fkm_blas_choose_fn choose, void *choose_user,
                                     fkm_blas_order *o, fkm_errbuf *err) {
  FKM_RETURN_IF(!o, err, FKM_ERR_INVALID_ARG, "BLAS order: o is NULL");
  memset(o, 0, sizeof *o);
  FKM_RETURN_IF(!sgemm, err, FKM_ERR_INVALID_ARG, "BLAS order: sgemm is NULL");
  FKM_RETURN_IF(ny < 1 || nx < 1 || d < 1 || ny > INT32_MAX || nx > INT32_MAX ||
                    ny * nx > ((int64_t)1 << 40),
                err, FKM_ERR_INVALID_ARG, "BLAS order: a call of %lld x %lld, d = %lld",
                (long long)ny, (long long)nx, (long long)d);
  FKM_RETURN_IF(d > 65536, err, FKM_ERR_UNSUPPORTED,
                "BLAS order: d = %lld > 65536 (the probe's ones would not be absorbed)",
                (long long)d);
  o->ny = ny;
  o->nx = nx;
  o->d = d;
  float *y = malloc(sizeof(float) * (size_t)(ny * d));
  float *x = malloc(sizeof(float) * (size_t)(nx * d));
  float *ip = malloc(sizeof(float) * (size_t)(nx * ny));
  int64_t *lq = malloc(sizeof(int64_t) * (size_t)d);
  o->code = malloc((size_t)(nx * ny));
  fkm_status s = FKM_OK;
  if (!y || !x || !ip || !lq || !o->code)
    s = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                 "BLAS order: cannot allocate the probes of a %lld x %lld x %lld call",
                 (long long)ny, (long long)nx, (long long)d);
  if (s == FKM_OK) s = learn(sgemm, o, y, x, ip, lq, choose, choose_user, err);
  free(y);
  free(x);
  free(ip);
  free(lq);
  if (s != FKM_OK) fkm_blas_order_free(o);
  return s;
}

void fkm_blas_order_free(fkm_blas_order *o) {
  if (!o) return;
  free(o->code);
  o->code = NULL;
  o->modelled = 0;
}

int fkm_blas_threads(fkm_sgemm_fn sgemm) {
  Dl_info info;
  if (!sgemm || !dladdr((void *)(uintptr_t)sgemm, &info) || !info.dli_fname) return 0;
  void *h = dlopen(info.dli_fname, RTLD_LAZY | RTLD_NOLOAD); /* the BLAS and its runtime */
  if (!h) return 0;
  int (*omp)(void) = (int (*)(void))(uintptr_t)dlsym(h, "omp_get_max_threads");
  int (*own)(void) = (int (*)(void))(uintptr_t)dlsym(h, "openblas_get_num_threads");
  const int t = omp ? omp() : own ? own() : 0;
  dlclose(h);
  return t;
}
