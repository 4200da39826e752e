/* FAISS's reduction loops (kernels/faiss_scan.h, fkm_loop_eval) for one row
 * of x against a panel of FKM_CPU_PANEL centroids (cpu_kernels.h's layout:
 * pan[j * FKM_CPU_PANEL + lane]): every pair takes exactly fkm_loop_eval's
 * operations in its order, and the pairs sit side by side, so that a
 * compiler vectorises across the panel's lanes. Included by cpu_kernels.c
 * (portable) and cpu_kernels_avx2.c (compiled with -mfma: fmaf is one
 * instruction there), which instantiate the same code. */
#ifndef FKM_CPU_LOOPS_H
#define FKM_CPU_LOOPS_H

#include "cpu_kernels.h"
#include "faiss_scan.h"

#define FKM_LOOP_P FKM_CPU_PANEL
#ifdef __cplusplus /* the kernels' test includes this header */
#define FKM_LOOP_RESTRICT __restrict__
#else
#define FKM_LOOP_RESTRICT restrict
#endif

/* Term j of every lane: (x_j - y_j)^2's factors (l2) or x_j y_j's. The
 * branches sit outside the lane loops, which then vectorise. */
static inline void fkm_panel_term(int l2, const float *x, const float *pan, int64_t j,
                                  float *FKM_LOOP_RESTRICT u, float *FKM_LOOP_RESTRICT v) {
  const float xj = x[j], *y = pan + j * FKM_LOOP_P;
  if (l2) {
    for (int b = 0; b < FKM_LOOP_P; b++) u[b] = v[b] = xj - y[b];
  } else {
    for (int b = 0; b < FKM_LOOP_P; b++) {
      u[b] = xj;
      v[b] = y[b];
    }
  }
}

/* acc = fkm_loop_step(fused, acc, u, v) lane by lane. */
static inline void fkm_panel_step(int fused, float *FKM_LOOP_RESTRICT acc,
                                  const float *FKM_LOOP_RESTRICT u,
                                  const float *FKM_LOOP_RESTRICT v) {
  if (fused) {
    for (int b = 0; b < FKM_LOOP_P; b++) acc[b] = fmaf(u[b], v[b], acc[b]);
  } else {
    for (int b = 0; b < FKM_LOOP_P; b++) {
      const float p = u[b] * v[b];
      acc[b] = acc[b] + p;
    }
  }
}

static inline void fkm_panel_fold(float acc[][FKM_LOOP_P], int from, int to) {
  for (int w = from; w > to; w /= 2)
    for (int l = 0; l < w / 2; l++)
      for (int b = 0; b < FKM_LOOP_P; b++) acc[l][b] = acc[l][b] + acc[l + w / 2][b];
}

/** out[b] = fkm_loop_eval(o, l2 ? L2 : IP, x, centroid b of the panel, d). */
static inline void fkm_loop_eval_panel(const fkm_loop_order *o, int l2, const float *x,
                                       const float *pan, int64_t d, float *out) {
  float u[FKM_LOOP_P], v[FKM_LOOP_P];
  if (o->width == 0) { /* float products summed in double, one rounding */
    double s[FKM_LOOP_P] = {0};
    for (int64_t j = 0; j < d; j++) {
      fkm_panel_term(l2, x, pan, j, u, v);
      for (int b = 0; b < FKM_LOOP_P; b++) {
        const float p = u[b] * v[b];
        s[b] = s[b] + (double)p;
      }
    }
    for (int b = 0; b < FKM_LOOP_P; b++) out[b] = (float)s[b];
    return;
  }
  float acc[FKM_SCAN_MAX_LANES][FKM_LOOP_P];
  const int64_t main = d / o->width * o->width;
  /* Below one vector (d < width) the main loop never runs and every lane
   * stays +0, so folding them into the tail's lanes (or into the scalar
   * result) changes nothing: the same loop with as many lanes as the tail
   * (one without a tail) gives the same bits with less work. */
  const int E = o->tail_width;
  const int W = main > 0 ? o->width : (E > 0 ? E : 1);
  for (int l = 0; l < W; l++)
    for (int b = 0; b < FKM_LOOP_P; b++) acc[l][b] = 0.0f;
  for (int64_t j0 = 0; j0 < main; j0 += W)
    for (int l = 0; l < W; l++) {
      fkm_panel_term(l2, x, pan, j0 + l, u, v);
      fkm_panel_step(o->main_fma, acc[l], u, v);
    }
  int64_t j = main;
  float *res = acc[0];
  if (E > 0 && o->tail_separate) {
    fkm_panel_fold(acc, W, 1);
    if (d - j >= E) {
      float e[FKM_SCAN_MAX_LANES][FKM_LOOP_P];
      for (int l = 0; l < E; l++) {
        fkm_panel_term(l2, x, pan, j + l, u, v);
        for (int b = 0; b < FKM_LOOP_P; b++) e[l][b] = fkm_loop_step(0, 0.0f, u[b], v[b]);
      }
      j += E;
      fkm_panel_fold(e, E, 1);
      for (int b = 0; b < FKM_LOOP_P; b++) res[b] = res[b] + e[0][b];
    }
  } else if (E > 0) {
    fkm_panel_fold(acc, W, E);
    if (d - j >= E) {
      for (int l = 0; l < E; l++) {
        fkm_panel_term(l2, x, pan, j + l, u, v);
        fkm_panel_step(o->tail_fma, acc[l], u, v);
      }
      j += E;
    }
    fkm_panel_fold(acc, E, 1);
  } else {
    fkm_panel_fold(acc, W, 1);
  }
  for (; j < d; j++) {
    fkm_panel_term(l2, x, pan, j, u, v);
    fkm_panel_step(o->scalar_fma, res, u, v);
  }
  for (int b = 0; b < FKM_LOOP_P; b++) out[b] = res[b];
}

/* The fused kernel's lanes over centroids [j0, j1) of the main part (a
 * multiple of the lanes from j0, which is one too): t = dp + |c|^2 kept
 * per lane when strictly smaller (fkm_fused_feed_main, d >= 2), written as
 * selects over a whole vector of lanes at a time so that they vectorise. */
static inline void fkm_fused_feed_lanes(fkm_fused_scan *s, int lanes, int64_t j0, int64_t j1,
                                        const float *dp, const float *cn) {
  for (int64_t j = j0; j < j1; j += lanes)
    for (int l = 0; l < lanes; l++) {
      const float t = dp[j - j0 + l] + cn[j + l];
      const int keep = t < s->lmin[l];
      s->lmin[l] = keep ? t : s->lmin[l];
      s->lidx[l] = keep ? (uint32_t)(j + l) : s->lidx[l];
    }
}

/** fkm_fused_feed_lanes for centroids [j0, j1) (j0 a multiple of the
 *  lanes), the lane count a constant where it is FAISS's (8 or 16). */
static inline void fkm_fused_feed_run(fkm_fused_scan *s, int64_t j0, int64_t j1,
                                      const float *dp, const float *cn) {
  if (s->lanes == 8)
    fkm_fused_feed_lanes(s, 8, j0, j1, dp, cn);
  else if (s->lanes == 16)
    fkm_fused_feed_lanes(s, 16, j0, j1, dp, cn);
  else
    fkm_fused_feed_lanes(s, s->lanes, j0, j1, dp, cn);
}

/** The direct path (exhaustive_L2sqr_seq / exhaustive_inner_product_seq)
 *  for rows [i0, i1): each row against every panel, then FAISS's plain
 *  sequential strict scan in centroid order. */
static inline void fkm_direct_rows(const fkm_cpu_assign_args *a, const float *panels,
                                   int64_t i0, int64_t i1) {
  const int l2 = a->metric == FKM_METRIC_L2;
  const fkm_loop_order *o = l2 ? &a->arith->l2 : &a->arith->ip;
  const int64_t d = a->d, np = (a->k + FKM_LOOP_P - 1) / FKM_LOOP_P;
  float val[FKM_LOOP_P];
  for (int64_t i = i0; i < i1; i++) {
    fkm_top1 r = fkm_top1_begin(l2);
    for (int64_t p = 0; p < np; p++) {
      fkm_loop_eval_panel(o, l2, a->x + i * d, panels + p * d * FKM_LOOP_P, d, val);
      const int64_t lanes = a->k - p * FKM_LOOP_P < FKM_LOOP_P ? a->k - p * FKM_LOOP_P
                                                               : FKM_LOOP_P;
      for (int64_t b = 0; b < lanes; b++) fkm_scan_plain(&r, l2, val[b], p * FKM_LOOP_P + b);
    }
    a->labels[i] = r.idx;
    a->dist[i] = r.dis;
  }
}

#endif
