/* FAISS's k=1 flat search, step by step, as pure functions shared by the
 * CPU engine (plugin/cpu_kernels.c) and the CUDA kernels, so that both run
 * literally the same rules (docs/profiles.md says which FAISS code each
 * function reproduces and in which releases):
 *
 *  - fkm_loop_eval: FAISS's own reduction loops (fvec_norm_L2sqr,
 *    fvec_L2sqr, fvec_inner_product) in a build's summation order
 *    (fkm_loop_order);
 *  - fkm_scan_*: how a query row's running best (FAISS's Top1 result
 *    handler: dis_tab[i], ids_tab[i]) is updated by a block of candidate
 *    values, for each scan FAISS has: the plain sequential scan, the lanes
 *    of exhaustive_L2sqr_blas_cmax (AVX2 8 lanes, AVX-512 16), the lanes
 *    of exhaustive_L2sqr_fused_cmax, and the laned Top1 add_results of
 *    FAISS 1.15 (inner product on the BLAS path).
 *
 * Every float operation is written so that no compiler may contract or
 * reorder it (the library builds with -ffp-contract=off, the kernels with
 * -fmad=false); fused operations are explicit fmaf. Lane arrays hold at most
 * FKM_SCAN_MAX_LANES entries. */
#ifndef FKM_KERNELS_FAISS_SCAN_H
#define FKM_KERNELS_FAISS_SCAN_H

#include <float.h>
#include <math.h>
#include <stdint.h>

#include "flashkm.h"

#ifdef __CUDACC__
#define FKM_SCAN_HD __host__ __device__
#else
#define FKM_SCAN_HD
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define FKM_SCAN_MAX_LANES 32

/* ------------------------------------------------------------ loops */

/* Term j of a loop: its two factors (x_j^2, (x_j - y_j)^2 or x_j y_j). */
FKM_SCAN_HD static inline void fkm_loop_term(fkm_probe_fn fn, const float *x,
                                             const float *y, int64_t j, float *u,
                                             float *v) {
  if (fn == FKM_PROBE_NORM) {
    *u = x[j];
    *v = x[j];
  } else if (fn == FKM_PROBE_L2) {
    const float t = x[j] - y[j];
    *u = t;
    *v = t;
  } else {
    *u = x[j];
    *v = y[j];
  }
}

FKM_SCAN_HD static inline float fkm_loop_step(int fused, float acc, float u, float v) {
  if (fused) return fmaf(u, v, acc);
  const float p = u * v;
  return acc + p;
}

FKM_SCAN_HD static inline void fkm_loop_fold(float *acc, int from, int to) {
  for (int w = from; w > to; w /= 2)
    for (int l = 0; l < w / 2; l++) acc[l] = acc[l] + acc[l + w / 2];
}

/** One reduction loop in the order o describes (include/flashkm.h,
 *  fkm_loop_order); o must be valid (width 0, or 1..32 a power of two,
 *  tail_width 0 or a smaller power of two). */
FKM_SCAN_HD static inline float fkm_loop_eval(const fkm_loop_order *o, fkm_probe_fn fn,
                                              const float *x, const float *y,
                                              int64_t d) {
  float u, v;
  if (o->width == 0) { /* float products summed in double, one rounding */
    double s = 0;
    for (int64_t j = 0; j < d; j++) {
      fkm_loop_term(fn, x, y, j, &u, &v);
      const float p = u * v;
      s = s + (double)p;
    }
    return (float)s;
  }
  float acc[FKM_SCAN_MAX_LANES];
  const int W = o->width;
  for (int l = 0; l < W; l++) acc[l] = 0.0f;
  const int64_t main = d / W * W;
  for (int64_t j0 = 0; j0 < main; j0 += W) /* lane l takes terms l, l + W, ... */
    for (int l = 0; l < W; l++) {
      fkm_loop_term(fn, x, y, j0 + l, &u, &v);
      acc[l] = fkm_loop_step(o->main_fma, acc[l], u, v);
    }
  int64_t j = main;
  const int E = o->tail_width;
  float res;
  if (E > 0 && o->tail_separate) {
    fkm_loop_fold(acc, W, 1);
    res = acc[0];
    if (d - j >= E) {
      float e[FKM_SCAN_MAX_LANES];
      for (int l = 0; l < E; l++) {
        fkm_loop_term(fn, x, y, j + l, &u, &v);
        e[l] = fkm_loop_step(0, 0.0f, u, v);
      }
      j += E;
      fkm_loop_fold(e, E, 1);
      res = res + e[0];
    }
  } else if (E > 0) {
    fkm_loop_fold(acc, W, E);
    if (d - j >= E) {
      for (int l = 0; l < E; l++) {
        fkm_loop_term(fn, x, y, j + l, &u, &v);
        acc[l] = fkm_loop_step(o->tail_fma, acc[l], u, v);
      }
      j += E;
    }
    fkm_loop_fold(acc, E, 1);
    res = acc[0];
  } else {
    fkm_loop_fold(acc, W, 1);
    res = acc[0];
  }
  for (; j < d; j++) {
    fkm_loop_term(fn, x, y, j, &u, &v);
    res = fkm_loop_step(o->scalar_fma, res, u, v);
  }
  return res;
}

/** flashkm's dot product: an fma chain over j = 0..d-1 from 0. */
FKM_SCAN_HD static inline float fkm_ip_chain(const float *x, const float *y, int64_t d) {
  float t = 0.0f;
  for (int64_t j = 0; j < d; j++) t = fmaf(x[j], y[j], t);
  return t;
}

/** The fused kernels' scalar loops, l2_sqr<DIM> and dot_product<DIM>
 *  (`out = x0 * y0; out += xj * yj`), as GCC compiles them under -mfma:
 *  the first addition fuses the first product, fma(x0, y0, fl(x1 y1)),
 *  the rest is an fma chain; the AVX-512 kernel's l2_sqr<4> is two
 *  horizontal adds, (p0 + p1) + (p2 + p3). Measured on FAISS 1.8.0 to 1.15.1
 *  for d <= 16 (AVX2) and d <= 17 (AVX-512); from d = 18 the AVX-512
 *  kernel's norms are vectorised over its points in an order this does not
 *  model (docs/profiles.md). */
FKM_SCAN_HD static inline float fkm_fused_dot(const float *x, const float *y, int64_t d) {
  if (d == 1) return x[0] * y[0];
  const float p1 = x[1] * y[1];
  float s = fmaf(x[0], y[0], p1);
  for (int64_t j = 2; j < d; j++) s = fmaf(x[j], y[j], s);
  return s;
}

FKM_SCAN_HD static inline float fkm_fused_norm(const float *x, int64_t d, int hadd4) {
  if (hadd4 && d == 4) {
    const float p0 = x[0] * x[0], p1 = x[1] * x[1], p2 = x[2] * x[2], p3 = x[3] * x[3];
    const float a = p0 + p1, b = p2 + p3;
    return a + b;
  }
  return fkm_fused_dot(x, x, d);
}

/* ------------------------------------------------------------ scans */

/** FAISS's Top1 result of one query row: dis_tab[i], ids_tab[i]. */
typedef struct fkm_top1 {
  float dis;
  int64_t idx;
} fkm_top1;

/** begin_multiple: the neutral value of CMax (FLT_MAX, L2) or CMin
 *  (-FLT_MAX, inner product), no index. */
FKM_SCAN_HD static inline fkm_top1 fkm_top1_begin(int l2) {
  fkm_top1 r;
  r.dis = l2 ? FLT_MAX : -FLT_MAX;
  r.idx = -1;
  return r;
}

/** The 1.7.3 formula of the L2 BLAS paths' scalar code:
 *  x_norms[i] + y_norms[j] - 2 * ip, negative values set to 0. */
FKM_SCAN_HD static inline float fkm_l2_plain(float xn, float cn, float ip) {
  const float s = xn + cn, two = ip + ip;
  float dis = s - two;
  if (dis < 0) dis = 0;
  return dis;
}

/** Plain sequential scan (Top1 add_result / add_results without lanes):
 *  strictly better values win, so the lowest index wins ties. */
FKM_SCAN_HD static inline void fkm_scan_plain(fkm_top1 *r, int l2, float v, int64_t j) {
  if (l2 ? r->dis > v : r->dis < v) {
    r->dis = v;
    r->idx = j;
  }
}

/* The lane reduction shared by the cmax and fused kernels: each lane's
 * candidate is its least t plus |x|^2 (negative set to 0); a strictly
 * smaller candidate wins, an equal one with a lower index too. cur_idx is
 * the kernels' uint32_t copy of the running index. */
FKM_SCAN_HD static inline void fkm_lane_reduce_l2(const float *lmin, const uint32_t *lidx,
                                                  int lanes, int64_t j0, float xn,
                                                  float *cur, uint32_t *cur_idx) {
  for (int l = 0; l < lanes; l++) {
    float cand = lmin[l] + xn;
    if (cand < 0) cand = 0;
    const int64_t ci = (int64_t)lidx[l] + j0;
    if (*cur > cand) {
      *cur = cand;
      *cur_idx = (uint32_t)ci;
    } else if (*cur == cand && (int64_t)*cur_idx > ci) {
      *cur_idx = (uint32_t)ci;
    }
  }
}

/** exhaustive_L2sqr_blas_cmax, fed one centroid at a time in increasing
 *  order, block by block (FAISS's database blocks of 1024 centroids). In a
 *  block [j0, j0 + count) the lanes keep the least t = fma(ip, -2, |c|^2),
 *  starting from the running best less |x|^2; the main loop covers count
 *  rounded down to 2 * lanes (two vectors a step); the rest is scanned with
 *  the plain formula after the lane reduction; the block's result replaces
 *  the running one only when strictly smaller (add_result). */
typedef struct fkm_cmax_scan {
  float lmin[FKM_SCAN_MAX_LANES];
  uint32_t lidx[FKM_SCAN_MAX_LANES];
  float left[2 * FKM_SCAN_MAX_LANES];
  int lanes;
  int64_t j0, count, main;
  float xn;
  fkm_top1 r; /* the running result */
} fkm_cmax_scan;

FKM_SCAN_HD static inline void fkm_cmax_begin(fkm_cmax_scan *s, int lanes, float xn) {
  s->lanes = lanes;
  s->xn = xn;
  s->r = fkm_top1_begin(1);
}

FKM_SCAN_HD static inline void fkm_cmax_block(fkm_cmax_scan *s, int64_t j0, int64_t count) {
  s->j0 = j0;
  s->count = count;
  s->main = count / (2 * s->lanes) * (2 * s->lanes);
  const float init = s->r.dis - s->xn;
  for (int l = 0; l < s->lanes; l++) {
    s->lmin[l] = init;
    s->lidx[l] = 0;
  }
  /* a tail centroid never fed (a replay over some candidates only) never wins */
  for (int64_t q = s->main; q < count; q++) s->left[q - s->main] = INFINITY;
}

/** Centroid j0 + q of the current block: its dot product and norm. */
FKM_SCAN_HD static inline void fkm_cmax_feed(fkm_cmax_scan *s, int64_t q, float ip, float cn) {
  if (q < s->main) {
    const float t = fmaf(ip, -2.0f, cn);
    const int l = (int)(q % s->lanes);
    if (!(s->lmin[l] <= t)) { /* _CMP_LE_OS keeps the lane's value */
      s->lmin[l] = t;
      s->lidx[l] = (uint32_t)q;
    }
  } else {
    s->left[q - s->main] = fkm_l2_plain(s->xn, cn, ip);
  }
}

/** Every centroid of the current block at once (ip[q], cn[q] for q < count):
 *  the same per-lane sequence as fkm_cmax_feed in order, lane by lane in
 *  groups of `lanes` (no division per element; the inner loop vectorises). */
FKM_SCAN_HD static inline void fkm_cmax_feed_all(fkm_cmax_scan *s, const float *ip,
                                                 const float *cn) {
  const int lanes = s->lanes;
  for (int64_t q0 = 0; q0 < s->main; q0 += lanes)
    for (int l = 0; l < lanes; l++) {
      const float t = fmaf(ip[q0 + l], -2.0f, cn[q0 + l]);
      const int keep = s->lmin[l] <= t; /* _CMP_LE_OS keeps the lane's value */
      s->lmin[l] = keep ? s->lmin[l] : t;
      s->lidx[l] = keep ? s->lidx[l] : (uint32_t)(q0 + l);
    }
  for (int64_t q = s->main; q < s->count; q++) s->left[q - s->main] = fkm_l2_plain(s->xn, cn[q], ip[q]);
}

FKM_SCAN_HD static inline void fkm_cmax_block_end(fkm_cmax_scan *s) {
  float cur = s->r.dis;
  uint32_t cur_idx = (uint32_t)s->r.idx;
  fkm_lane_reduce_l2(s->lmin, s->lidx, s->lanes, s->j0, s->xn, &cur, &cur_idx);
  for (int64_t q = s->main; q < s->count; q++) {
    const float dis = s->left[q - s->main];
    if (cur > dis) {
      cur = dis;
      cur_idx = (uint32_t)(s->j0 + q);
    }
  }
  if (s->r.dis > cur) {
    s->r.dis = cur;
    s->r.idx = (int64_t)cur_idx;
  }
}

/** exhaustive_L2sqr_blas_cmax's result for a row whose unique winner, with
 *  a margin above every rounding of the formula (the CUDA cascade's
 *  certificate, docs/profiles.md), is centroid b with dot product ip: b's
 *  value in the formula of its position (a lane value, or the plain
 *  formula in the last block's tail); then each later block starts its
 *  lanes at fl(best - |x|^2), and when fl(fl(best - |x|^2) + |x|^2) < best
 *  that block's first centroid takes the label with that value. */
FKM_SCAN_HD static inline fkm_top1 fkm_cmax_certified(int64_t b, float ip, float cn, float xn,
                                                      int64_t k, int lanes) {
  const int64_t j0 = b / 1024 * 1024, count = k - j0 < 1024 ? k - j0 : 1024;
  const int64_t main = count / (2 * lanes) * (2 * lanes);
  fkm_top1 r;
  r.idx = b;
  if (b - j0 < main) {
    r.dis = fmaf(ip, -2.0f, cn) + xn;
    if (r.dis < 0) r.dis = 0;
  } else {
    r.dis = fkm_l2_plain(xn, cn, ip);
  }
  for (int64_t jb = j0 + 1024; jb < k; jb += 1024) {
    const float t = r.dis - xn;
    float cand = t + xn;
    if (cand < 0) cand = 0;
    if (r.dis > cand) {
      r.dis = cand;
      r.idx = jb;
    }
  }
  return r;
}

/** exhaustive_L2sqr_fused_cmax (d <= 16 on AVX2, <= 32 on AVX-512): lanes
 *  over all ny centroids (no blocks), main part ny rounded down to lanes;
 *  a lane's value is fl(dp + |c|^2) with the kernel's own norms
 *  (fkm_fused_norm) and dot product (fkm_fused_dp), kept when strictly
 *  smaller. */
typedef struct fkm_fused_scan {
  float lmin[FKM_SCAN_MAX_LANES];
  uint32_t lidx[FKM_SCAN_MAX_LANES];
  float left_dis[FKM_SCAN_MAX_LANES];
  int lanes;
  int64_t ny, main;
  float xn;
} fkm_fused_scan;

FKM_SCAN_HD static inline void fkm_fused_begin(fkm_fused_scan *s, int lanes, int64_t ny,
                                               float xn) {
  s->lanes = lanes;
  s->ny = ny;
  s->main = ny / lanes * lanes;
  s->xn = xn;
  const float init = FLT_MAX - xn; /* res.dis_tab[i] - x_norm, dis_tab neutral */
  for (int l = 0; l < lanes; l++) {
    s->lmin[l] = init;
    s->lidx[l] = 0;
  }
}

/** The kernel's dot product of the main part: (-2 x_0) y_0, then an fma
 *  chain of (-2 x_j) y_j (not -2 times the chain: in the subnormal range
 *  the two can round apart). */
FKM_SCAN_HD static inline float fkm_fused_dp(const float *x, const float *y, int64_t d) {
  float dp = (-2.0f * x[0]) * y[0];
  for (int64_t j = 1; j < d; j++) dp = fmaf(-2.0f * x[j], y[j], dp);
  return dp;
}

/** A lane value of the main part: dp + |c|^2, dp = fkm_fused_dp(x, y, d);
 *  at d = 1 the kernel's lone product and the addition are one fma (GCC
 *  contracts the vector multiply and add its intrinsics expand to). */
FKM_SCAN_HD static inline float fkm_fused_t(const float *x, const float *y, int64_t d,
                                            float dp, float cn) {
  if (d == 1) return fmaf(-2.0f * x[0], y[0], cn);
  return dp + cn;
}

/** Centroid j < s->main with its lane value t (fkm_fused_t); centroids are
 *  fed in increasing order. */
FKM_SCAN_HD static inline void fkm_fused_feed_main(fkm_fused_scan *s, int64_t j, float t) {
  const int l = (int)(j % s->lanes);
  if (t < s->lmin[l]) {
    s->lmin[l] = t;
    s->lidx[l] = (uint32_t)j;
  }
}

/** Centroid j >= s->main (the leftovers, fewer than the lanes): the plain
 *  formula with the kernel's dot_product<DIM> (fkm_fused_dot) and norms. */
FKM_SCAN_HD static inline void fkm_fused_feed_left(fkm_fused_scan *s, int64_t j, float ip,
                                                   float cn) {
  s->left_dis[j - s->main] = fkm_l2_plain(s->xn, cn, ip);
}

FKM_SCAN_HD static inline fkm_top1 fkm_fused_end(const fkm_fused_scan *s) {
  float cur = FLT_MAX;
  uint32_t cur_idx = 0xffffffffu; /* ids_tab[i] = -1 as the kernel's uint32_t */
  fkm_lane_reduce_l2(s->lmin, s->lidx, s->lanes, 0, s->xn, &cur, &cur_idx);
  for (int64_t j = s->main; j < s->ny; j++) {
    const float dis = s->left_dis[j - s->main];
    if (cur > dis) {
      cur = dis;
      cur_idx = (uint32_t)j;
    }
  }
  fkm_top1 r = fkm_top1_begin(1);
  if (r.dis > cur) {
    r.dis = cur;
    r.idx = (int64_t)cur_idx;
  }
  return r;
}

/** FAISS 1.15's laned Top1 add_results, fed one value at a time in
 *  increasing centroid order, block by block [j0, j0 + count) (inner
 *  products: larger wins; distances: smaller wins): lane l keeps the
 *  strictly better values of positions l, l + lanes, ... of whole vectors,
 *  starting from the running best; the lanes are merged in lane order
 *  (strictly better wins, so on a tie the lower lane wins, not the lower
 *  index); the block's tail is scanned in order. */
typedef struct fkm_lanes_scan {
  float best[FKM_SCAN_MAX_LANES];
  int32_t bidx[FKM_SCAN_MAX_LANES];
  float tail[FKM_SCAN_MAX_LANES];
  int lanes, l2;
  int64_t j0, count, main;
  fkm_top1 r;
} fkm_lanes_scan;

FKM_SCAN_HD static inline void fkm_lanes_begin(fkm_lanes_scan *s, int lanes, int l2) {
  s->lanes = lanes;
  s->l2 = l2;
  s->r = fkm_top1_begin(l2);
}

FKM_SCAN_HD static inline void fkm_lanes_block(fkm_lanes_scan *s, int64_t j0, int64_t count) {
  s->j0 = j0;
  s->count = count;
  s->main = count / s->lanes * s->lanes;
  for (int l = 0; l < s->lanes; l++) {
    s->best[l] = s->r.dis;
    s->bidx[l] = (int32_t)s->r.idx;
  }
  for (int64_t q = s->main; q < count; q++) s->tail[q - s->main] = s->l2 ? INFINITY : -INFINITY;
}

FKM_SCAN_HD static inline void fkm_lanes_feed(fkm_lanes_scan *s, int64_t q, float v) {
  if (q < s->main) {
    const int l = (int)(q % s->lanes);
    if (s->l2 ? v < s->best[l] : v > s->best[l]) {
      s->best[l] = v;
      s->bidx[l] = (int32_t)(s->j0 + q);
    }
  } else {
    s->tail[q - s->main] = v;
  }
}

/** Every value of the current block at once (v[q] for q < count), as
 *  fkm_lanes_feed in order, lane by lane in groups of `lanes`. */
FKM_SCAN_HD static inline void fkm_lanes_feed_all(fkm_lanes_scan *s, const float *v) {
  const int lanes = s->lanes;
  for (int64_t q0 = 0; q0 < s->main; q0 += lanes)
    for (int l = 0; l < lanes; l++) {
      const float x = v[q0 + l];
      const int take = s->l2 ? x < s->best[l] : x > s->best[l];
      s->best[l] = take ? x : s->best[l];
      s->bidx[l] = take ? (int32_t)(s->j0 + q0 + l) : s->bidx[l];
    }
  for (int64_t q = s->main; q < s->count; q++) s->tail[q - s->main] = v[q];
}

FKM_SCAN_HD static inline void fkm_lanes_block_end(fkm_lanes_scan *s) {
  for (int l = 0; l < s->lanes; l++)
    if (s->l2 ? s->r.dis > s->best[l] : s->r.dis < s->best[l]) {
      s->r.dis = s->best[l];
      s->r.idx = (int64_t)s->bidx[l];
    }
  for (int64_t q = s->main; q < s->count; q++)
    fkm_scan_plain(&s->r, s->l2, s->tail[q - s->main], s->j0 + q);
}

/* ------------------------------------------------------------ PQ encoding */

/** ProductQuantizer::compute_code's nearest centroid of one sub-vector
 *  (dsub < 16: fvec_L2sqr_ny_nearest; docs/profiles.md, "PQ encoding"):
 *
 *  - lanes 0 (every generic build, and d not 2, 4 or 8): the reference,
 *    the distances of fvec_L2sqr_ny in order, the first strictly smaller
 *    one from +inf wins (index 0 when none is);
 *  - lanes 8 (AVX2 kernels D2 / D4 / D8, and the AVX2 code of 1.8.0's
 *    AVX-512 build): centroid i of the whole groups of 8 goes to lane
 *    i % 8, which takes i unless its value is strictly smaller (so a tie
 *    goes to the later index) and keeps min(value, distance); the lanes are
 *    merged in lane order with a strict comparison from +inf, then the
 *    centroids past the last group are scanned strictly;
 *  - lanes 16 (AVX-512 kernels, 1.9+): as 8, but a lane takes i only when
 *    its distance is strictly smaller.
 *  A group's distance is the fma chain fma(t_{d-1}, t_{d-1}, ... fma(t1, t1,
 *  t0 t0)), t_j = x_j - y_j; a leftover centroid's is the kernel's own
 *  (fkm_pq_tail_dis). The reference's distance is fvec_L2sqr in the build's
 *  loop order, or the fvec_op_ny_D12 kernel at d = 12 where the build has
 *  one (d12). */
typedef enum fkm_pq_sum {
  FKM_PQ_HADD = 1, /* _mm_hadd_ps twice (1.7.4): (v0 + v1) + (v2 + v3) */
  FKM_PQ_HSUM = 2  /* horizontal_sum (1.8+): (v0 + v2) + (v1 + v3) */
} fkm_pq_sum;

typedef struct fkm_pq_rule {
  int lanes;          /* 0, 8 or 16 (only at d = 2, 4, 8) */
  fkm_pq_sum sum;     /* the kernels' horizontal sums (lanes > 0, or d12) */
  int d12;            /* d = 12 through fvec_op_ny_D12 (1.7.4 - 1.13, AVX builds) */
  fkm_loop_order l2;  /* fvec_L2sqr: every other d of the reference */
} fkm_pq_rule;

#define FKM_PQ_MAX_DSUB 15

FKM_SCAN_HD static inline float fkm_pq_sq(const float *r, const float *y, int j) {
  const float t = r[j] - y[j];
  return t * t;
}

/** The four partial sums v0..v3 folded by the kernel's horizontal sum. */
FKM_SCAN_HD static inline float fkm_pq_fold4(fkm_pq_sum sum, const float *v) {
  if (sum == FKM_PQ_HADD) return (v[0] + v[1]) + (v[2] + v[3]);
  return (v[0] + v[2]) + (v[1] + v[3]);
}

/** A whole group's distance: the fma chain from t0 t0. */
FKM_SCAN_HD static inline float fkm_pq_chain(const float *r, const float *y, int d) {
  float acc = fkm_pq_sq(r, y, 0);
  for (int j = 1; j < d; j++) {
    const float t = r[j] - y[j];
    acc = fmaf(t, t, acc);
  }
  return acc;
}

/** A leftover centroid's distance in the kernel of d = 2, 4 or 8. */
FKM_SCAN_HD static inline float fkm_pq_tail_dis(fkm_pq_sum sum, const float *r, const float *y,
                                                int d) {
  float a[8];
  for (int j = 0; j < d; j++) a[j] = fkm_pq_sq(r, y, j);
  if (d == 2) { /* sub0 * sub0 + sub1 * sub1, contracted by the compiler */
    const float t = r[0] - y[0];
    return fmaf(t, t, a[1]);
  }
  if (d == 4) return fkm_pq_fold4(sum, a);
  /* d == 8: 1.7.4 hadd twice then high + low; 1.8+ (low + high) folded */
  if (sum == FKM_PQ_HADD) return ((a[4] + a[5]) + (a[6] + a[7])) + ((a[0] + a[1]) + (a[2] + a[3]));
  float v[4];
  for (int j = 0; j < 4; j++) v[j] = a[j] + a[j + 4];
  return fkm_pq_fold4(sum, v);
}

/** The reference's distance (fvec_L2sqr_ny's). */
FKM_SCAN_HD static inline float fkm_pq_ref_dis(const fkm_pq_rule *rule, const float *r,
                                               const float *y, int d) {
  if (d == 12 && rule->d12) { /* fvec_op_ny_D12 as GCC contracts it */
    float v[4];
    for (int j = 0; j < 4; j++) {
      const float t0 = r[j] - y[j], t8 = r[j + 8] - y[j + 8];
      v[j] = fmaf(t8, t8, fmaf(t0, t0, fkm_pq_sq(r, y, j + 4)));
    }
    return fkm_pq_fold4(rule->sum, v);
  }
  return fkm_loop_eval(&rule->l2, FKM_PROBE_L2, r, y, d);
}

/** The lanes of the scan at width d: the rule's at the kernels' widths 2,
 *  4 and 8, else 0 (the reference). */
FKM_SCAN_HD static inline int fkm_pq_lanes(const fkm_pq_rule *rule, int d) {
  return (d == 2 || d == 4 || d == 8) ? rule->lanes : 0;
}

/** The index of the nearest of ny centroids y (ny, d) to the sub-vector r,
 *  d <= FKM_PQ_MAX_DSUB, under rule (see fkm_pq_rule). */
FKM_SCAN_HD static inline int64_t fkm_pq_nearest(const fkm_pq_rule *rule, const float *r,
                                                 const float *y, int d, int64_t ny) {
  float cur = INFINITY;
  int64_t cur_idx = 0;
  const int lanes = fkm_pq_lanes(rule, d);
  if (lanes == 0) {
    for (int64_t i = 0; i < ny; i++) {
      const float dis = fkm_pq_ref_dis(rule, r, y + i * d, d);
      if (dis < cur) {
        cur = dis;
        cur_idx = i;
      }
    }
    return cur_idx;
  }
  const int64_t main = ny / lanes * lanes;
  if (main > 0) {
    float lmin[16];
    uint32_t lidx[16];
    for (int l = 0; l < lanes; l++) {
      lmin[l] = INFINITY;
      lidx[l] = 0;
    }
    for (int64_t i0 = 0; i0 < main; i0 += lanes)
      for (int l = 0; l < lanes; l++) {
        const int64_t i = i0 + l;
        const float dis = fkm_pq_chain(r, y + i * d, d);
        /* AVX2: the index moves unless lmin < dis (cmp LT, blendv);
         * AVX-512: only when dis < lmin (mask blend); both min_ps */
        const int take = lanes == 8 ? !(lmin[l] < dis) : dis < lmin[l];
        if (take) lidx[l] = (uint32_t)i;
        lmin[l] = dis < lmin[l] ? dis : lmin[l];
      }
    for (int l = 0; l < lanes; l++)
      if (cur > lmin[l]) {
        cur = lmin[l];
        cur_idx = (int64_t)lidx[l];
      }
  }
  for (int64_t i = main; i < ny; i++) {
    const float dis = fkm_pq_tail_dis(rule->sum, r, y + i * d, d);
    if (cur > dis) {
      cur = dis;
      cur_idx = i;
    }
  }
  return cur_idx;
}

/** Sub-vector m of row x (d columns), less the coarse centroid's (IndexIVFPQ's
 *  residual, FAISS's x - c, one rounding) when c is not NULL. */
FKM_SCAN_HD static inline void fkm_pq_subvector(const float *x, const float *c, int64_t m,
                                                int dsub, float *r) {
  for (int j = 0; j < dsub; j++) {
    const int64_t col = m * dsub + j;
    r[j] = c ? x[col] - c[col] : x[col];
  }
}

/** PQEncoderGeneric: a row's M indices packed low bit first, one after
 *  the other, into (M * nbits + 7) / 8 bytes (PQEncoder8 and PQEncoder16
 *  write the same bytes). push each index in order, then end. */
typedef struct fkm_pq_packer {
  uint8_t *code;
  uint32_t reg;
  int fill, nbits;
} fkm_pq_packer;

FKM_SCAN_HD static inline fkm_pq_packer fkm_pq_pack_begin(uint8_t *code, int nbits) {
  fkm_pq_packer p = {code, 0, 0, nbits};
  return p;
}

FKM_SCAN_HD static inline void fkm_pq_pack_push(fkm_pq_packer *p, uint32_t v) {
  int left = p->nbits;
  while (left > 0) {
    const int take = left < 8 - p->fill ? left : 8 - p->fill;
    p->reg |= (v & ((1u << take) - 1u)) << p->fill;
    v >>= take;
    left -= take;
    p->fill += take;
    if (p->fill == 8) {
      *p->code++ = (uint8_t)p->reg;
      p->reg = 0;
      p->fill = 0;
    }
  }
}

FKM_SCAN_HD static inline void fkm_pq_pack_end(fkm_pq_packer *p) {
  if (p->fill > 0) *p->code = (uint8_t)p->reg;
}

#ifdef __cplusplus
}
#endif

#endif
