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
#include "blas_order.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const float BIG = 1099511627776.0f; /* 2^40 */

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

float fkm_blas_order_dot(const fkm_blas_order *o, int64_t i, int64_t j, const float *yj,
                         const float *xi) {
  const int u = o->lanes[i * o->ny + j];
  float c = 0.0f;
  for (int s = 0; s < o->nseg; s++) {
    float acc[FKM_BLAS_ORDER_MAX_LANES];
    for (int l = 0; l < u; l++) acc[l] = 0.0f;
    const int64_t b = o->seg[s];
    for (int64_t k = b; k < o->seg[s + 1]; k++) {
      const int l = (int)((k - b) % u);
      acc[l] = fmaf(yj[k], xi[k], acc[l]);
    }
    for (int w = u; w > 1; w /= 2)
      for (int l = 0; l < w / 2; l++) acc[l] = acc[l] + acc[l + w / 2];
    c = s == 0 ? acc[0] : c + acc[0];
  }
  return c;
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

/* A draw of data: varied exponents (kind 0) or small integers (kind 1), from a
 * fixed xorshift stream. */
static void fill(float *v, int64_t count, uint64_t seed, int kind) {
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 1;
  for (int64_t t = 0; t < count; t++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    if (kind)
      v[t] = (float)(s >> 56);
    else
      v[t] = ldexpf((float)(s >> 40) / 16777216.0f - 0.5f, (int)((s >> 8) % 9) - 4);
  }
}

static fkm_status learn(fkm_sgemm_fn sgemm, fkm_blas_order *o, float *y, float *x, float *ip,
                        int64_t *lq, fkm_errbuf *err) {
  const int64_t ny = o->ny, nx = o->nx, d = o->d, cells = nx * ny;
  o->nseg = 1;
  o->seg[0] = 0;
  o->seg[1] = d;
  if (d == 1) { /* one term: nothing to order */
    memset(o->lanes, 1, (size_t)cells);
    o->modelled = cells;
    return FKM_OK;
  }
  for (int64_t t = 0; t < nx * d; t++) x[t] = 1.0f;
  /* lanes: the least u in 1, 2, 4, ... with L(0, u) == 2 */
  memset(o->lanes, 0, (size_t)cells);
  int64_t left = cells; /* elements whose chains are not found yet */
  for (int u = 1; u <= FKM_BLAS_ORDER_MAX_LANES && u < d && left > 0; u *= 2) {
    probe_rows(o, y, 0, u, 0);
    call(sgemm, o, y, x, ip);
    for (int64_t e = 0; e < cells; e++)
      if (!o->lanes[e] && d - (int64_t)ip[e] == 2) {
        o->lanes[e] = (uint8_t)u;
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
        if (o->lanes[i * ny + j] == 1) {
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
  /* every element checked on two draws: what the model misses is unmodelled */
  for (int kind = 0; kind < 2; kind++) {
    fill(y, ny * d, 11 + (uint64_t)kind, kind);
    fill(x, nx * d, 23 + (uint64_t)kind, kind);
    call(sgemm, o, y, x, ip);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < nx; i++)
      for (int64_t j = 0; j < ny; j++) {
        uint8_t *u = &o->lanes[i * ny + j];
        if (*u && fkm_blas_order_dot(o, i, j, y + j * d, x + i * d) != ip[i * ny + j]) *u = 0;
      }
  }
  o->modelled = 0;
  for (int64_t e = 0; e < cells; e++) o->modelled += o->lanes[e] != 0;
  return FKM_OK;
}

fkm_status fkm_blas_order_learn(fkm_sgemm_fn sgemm, int64_t ny, int64_t nx, int64_t d,
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
  o->lanes = malloc((size_t)(nx * ny));
  fkm_status s = FKM_OK;
  if (!y || !x || !ip || !lq || !o->lanes)
    s = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                 "BLAS order: cannot allocate the probes of a %lld x %lld x %lld call",
                 (long long)ny, (long long)nx, (long long)d);
  if (s == FKM_OK) s = learn(sgemm, o, y, x, ip, lq, err);
  free(y);
  free(x);
  free(ip);
  free(lq);
  if (s != FKM_OK) fkm_blas_order_free(o);
  return s;
}

void fkm_blas_order_free(fkm_blas_order *o) {
  if (!o) return;
  free(o->lanes);
  o->lanes = NULL;
  o->modelled = 0;
}
