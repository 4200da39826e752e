/* FAISS's k=1 search in a profile's arithmetic (profile.cuh).
 *
 * Compiled with -fmad=false: every fused operation is an explicit fmaf, as
 * in kernels/faiss_scan.h, whose functions these kernels call, so the GPU
 * runs literally the CPU engine's rules.
 *
 * Why the certified labels stand (docs/profiles.md, "Certification"): the
 * cascade's bound covers every profile's formula once its norm term allows
 * for float-accumulated norms (a loop of d terms in any order errs by at
 * most gamma_d |x|^2); a row it certifies with one candidate b has
 * f(b) < f(c) for every other c under the profile's formula f, with a
 * margin above one rounding of |x|^2. Then b is its lane's least value
 * (f is monotone in t = fma(ip, -2, |c|^2)), wins the lane reduction and
 * its block, and only exhaustive_L2sqr_blas_cmax's block start can still
 * move the label: each later block starts its lanes at fl(best - |x|^2),
 * and when fl(fl(best - |x|^2) + |x|^2) < best its first centroid takes
 * over with that value; certify applies exactly that (fkm_cmax_certified).
 * Rows the cascade narrows to two candidates are the near-ties the lane
 * rules decide: replay_pairs replays the scan over the two. The rows the
 * fp16 cascade cannot narrow go through a float32 narrowing first (the
 * same tests with float32 products, kernels/narrow.cuh), which sends most
 * of them to replay_pairs too; the rest are replayed in full, a warp per
 * row (replay_laned). */
#include "profile.cuh"  /* assign.cuh first: blas_code.h's view helper */
#include "blas_code.h"
#include "faiss_scan.h"

namespace {

constexpr int THREADS = 128;
constexpr int64_t DB_BLOCK = 1024; /* FAISS's distance_compute_blas_database_bs */

/* One segment [b, e) of a dot product as a BLAS element's code says
 * (blas_code.h; plugin/blas_order.c's segment, the same operations): terms
 * before m in U interleaved chains (term t in chain (t - b) mod U, each
 * from 0), the rest in chain 0, each term fused (fmaf) or, ROUNDED, a
 * rounded product added; the chains folded pairwise (chain l += chain
 * l + w / 2, w halving). Where the rows allow, terms are read four at a
 * time (16-byte loads: a thread reads a row of its own, so that each load
 * uses more of the sector it brings); the order of the operations is the
 * same. */
template <int U, bool ROUNDED>
__device__ __forceinline__ void blas_term(float (&acc)[U], int l, float c, float x) {
  acc[l] = ROUNDED ? __fadd_rn(acc[l], __fmul_rn(c, x)) : fmaf(c, x, acc[l]);
}

template <int U, bool ROUNDED, bool GLOBAL>
__device__ __forceinline__ float blas_segment(const float *__restrict__ xi,
                                              const float *__restrict__ cj, int64_t b, int64_t m,
                                              int64_t e) {
  constexpr int S = U < 4 ? 4 : U; /* terms per step of the 16-byte loop */
  float acc[U];
#pragma unroll
  for (int l = 0; l < U; l++) acc[l] = 0.0f;
  int64_t t = b;
  if (GLOBAL &&
      (reinterpret_cast<uintptr_t>(xi + b) | reinterpret_cast<uintptr_t>(cj + b)) % 16 == 0)
    for (; t + S <= m; t += S)
#pragma unroll
      for (int q = 0; q < S; q += 4) {
        const float4 xv = __ldg(reinterpret_cast<const float4 *>(xi + t + q));
        const float4 cv = __ldg(reinterpret_cast<const float4 *>(cj + t + q));
        blas_term<U, ROUNDED>(acc, (q + 0) % U, cv.x, xv.x);
        blas_term<U, ROUNDED>(acc, (q + 1) % U, cv.y, xv.y);
        blas_term<U, ROUNDED>(acc, (q + 2) % U, cv.z, xv.z);
        blas_term<U, ROUNDED>(acc, (q + 3) % U, cv.w, xv.w);
      }
  for (; t + U <= m; t += U)
#pragma unroll
    for (int l = 0; l < U; l++) blas_term<U, ROUNDED>(acc, l, cj[t + l], xi[t + l]);
#pragma unroll
  for (int l = 0; l < U; l++)
    if (t + l < m) blas_term<U, ROUNDED>(acc, l, cj[t + l], xi[t + l]);
  for (t = m; t < e; t++) blas_term<U, ROUNDED>(acc, 0, cj[t], xi[t]);
#pragma unroll
  for (int w = U; w > 1; w /= 2)
#pragma unroll
    for (int l = 0; l < w / 2; l++) acc[l] = __fadd_rn(acc[l], acc[l + w / 2]);
  return acc[0];
}

template <bool ROUNDED, bool GLOBAL>
__device__ __forceinline__ float blas_segment_of(int u, const float *__restrict__ xi,
                                                 const float *__restrict__ cj, int64_t b,
                                                 int64_t m, int64_t e) {
  return u == 1   ? blas_segment<1, ROUNDED, GLOBAL>(xi, cj, b, m, e)
         : u == 2 ? blas_segment<2, ROUNDED, GLOBAL>(xi, cj, b, m, e)
         : u == 4 ? blas_segment<4, ROUNDED, GLOBAL>(xi, cj, b, m, e)
         : u == 8 ? blas_segment<8, ROUNDED, GLOBAL>(xi, cj, b, m, e)
                  : blas_segment<16, ROUNDED, GLOBAL>(xi, cj, b, m, e);
}

/* <x, c> in a BLAS element's code over the segments seg (count, then
 * count + 1 bounds): each segment as blas_segment, their sums added in
 * order (plugin/blas_order.c's dot_code). GLOBAL: xi and cj are global
 * memory (read 16 bytes at a time where aligned); else shared memory, read
 * a float at a time (the same operations in the same order). */
template <bool GLOBAL = true>
__device__ float code_dot(uint8_t code, const int32_t *__restrict__ seg,
                          const float *__restrict__ xi, const float *__restrict__ cj) {
  const int u = fkm_blas_code_lanes(code);
  const bool rounded = fkm_blas_code_rounded(code);
  float sum = 0.0f;
  for (int q = 0; q < seg[0]; q++) {
    const int64_t b = seg[1 + q], e = seg[2 + q], m = fkm_blas_code_main_end(code, b, e);
    const float part = rounded ? blas_segment_of<true, GLOBAL>(u, xi, cj, b, m, e)
                               : blas_segment_of<false, GLOBAL>(u, xi, cj, b, m, e);
    sum = q == 0 ? part : __fadd_rn(sum, part);
  }
  return sum;
}

/* <x_row, c_j> as FAISS's BLAS computes it for this row and centroid
 * (assign.cuh, fkm_blas_view): the learned order of the element's place
 * in its sgemm call; an element the model does not hold (code 0), and
 * every one without a view, takes flashkm's fmaf chain. GLOBAL as for
 * code_dot. */
template <bool GLOBAL = true>
__device__ float dot_of(const fkm_blas_view &v, int64_t row, int64_t j, int64_t k,
                        const float *__restrict__ xi, const float *__restrict__ cj, int64_t d) {
  if (!v.on) return fkm_ip_chain(xi, cj, d);
  const int32_t *seg;
  const uint8_t code = fkm_blas_view_code(v, row, j, k, &seg);
  return code ? code_dot<GLOBAL>(code, seg, xi, cj) : fkm_ip_chain(xi, cj, d);
}

/* The learner's final choice (plugin/blas_order.h, fkm_blas_draws), a
 * thread per element: the first alive variant whose dot products equal the
 * BLAS's on every draw, or 0. */
__global__ void blas_choose(int64_t nx, int64_t ny, int64_t d, const int32_t *__restrict__ seg,
                            int draws, const float *__restrict__ y, const float *__restrict__ x,
                            const float *__restrict__ ip, const uint16_t *__restrict__ alive,
                            uint8_t *__restrict__ code) {
  const int64_t cells = nx * ny;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < cells;
       e += (int64_t)gridDim.x * blockDim.x) {
    const int64_t i = e / ny, j = e - i * ny;
    const int ul = (code[e] & 7) - 1;
    uint8_t chosen = 0;
    for (int v = 0; code[e] && v < FKM_BLAS_VARIANTS && !chosen; v++) {
      if (!(alive[e] >> v & 1)) continue;
      const uint8_t c = fkm_blas_variant(ul, v);
      bool ok = true;
      for (int k = 0; ok && k < draws; k++)
        ok = code_dot(c, seg, x + (k * nx + i) * d, y + (k * ny + j) * d) == ip[k * cells + e];
      if (ok) chosen = c;
    }
    code[e] = chosen;
  }
}

/* A row's norm as the profile computes it (xi: global or shared memory). */
__device__ __forceinline__ float profile_norm(const fkm_scan_desc &s, const float *xi, int64_t d) {
  return s.path == 1 ? fkm_fused_norm(xi, d, s.fused_norm4_hadd)
                     : fkm_loop_eval(&s.norm, FKM_PROBE_NORM, xi, xi, d);
}

__global__ void profile_norms(fkm_scan_desc s, const float *__restrict__ x, int64_t n,
                              int64_t d, float *__restrict__ out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  out[i] = profile_norm(s, x + i * d, d);
}

/* The same norms, a warp's 32 rows staged through shared memory first: the
 * warp reads them as consecutive 128-byte pieces, NORM_LOADS in flight a
 * lane (one thread per row reads 32 rows 4 d bytes apart), then each lane
 * computes its row's norm from the staged copy, the same function on the
 * same values. Rows ld floats apart in the tile (ld odd: a lane's row and
 * its neighbours' fall in distinct banks). */
constexpr int NORM_ROWS = 32, NORM_LOADS = 8;

__global__ void __launch_bounds__(NORM_ROWS)
profile_norms_staged(fkm_scan_desc s, const float *__restrict__ x, int64_t n, int64_t d,
                     int64_t ld, float *__restrict__ out) {
  extern __shared__ float tile[];
  const int lane = threadIdx.x;
  const int64_t r0 = (int64_t)blockIdx.x * NORM_ROWS;
  const int rows = n - r0 < NORM_ROWS ? (int)(n - r0) : NORM_ROWS;
  const float *src = x + r0 * d;
  for (int r = 0; r < rows; r += NORM_LOADS)
    for (int64_t j = lane; j < d; j += NORM_ROWS) {
      float v[NORM_LOADS];
#pragma unroll
      for (int u = 0; u < NORM_LOADS; u++) v[u] = r + u < rows ? src[(r + u) * d + j] : 0.0f;
#pragma unroll
      for (int u = 0; u < NORM_LOADS; u++)
        if (r + u < rows) tile[(r + u) * ld + j] = v[u];
    }
  __syncwarp();
  if (lane < rows) out[r0 + lane] = profile_norm(s, tile + lane * ld, d);
}

/* Rows up to this many floats are staged (the tile: 32 rows, 48 KB at most). */
constexpr int64_t NORM_STAGED_MAX_D = (48 * 1024) / (NORM_ROWS * 4) - 1;

/* The exact replay of one row's scan over the k centroids, in order (the
 * BLAS path's dot products in v's order). */
__device__ fkm_top1 replay_row(const fkm_scan_desc &s, const fkm_blas_view &v, int64_t row,
                               const float *__restrict__ xi, float xn,
                               const float *__restrict__ c, const float *__restrict__ cn,
                               int64_t d, int64_t k) {
  const int l2 = s.metric == FKM_METRIC_L2;
  if (s.path == 2) { /* direct: FAISS's own loop per pair */
    fkm_top1 r = fkm_top1_begin(l2);
    const fkm_loop_order *o = l2 ? &s.l2 : &s.ip;
    for (int64_t j = 0; j < k; j++)
      fkm_scan_plain(&r, l2, fkm_loop_eval(o, l2 ? FKM_PROBE_L2 : FKM_PROBE_IP, xi, c + j * d, d),
                     j);
    return r;
  }
  if (s.path == 1) { /* fused kernel */
    fkm_fused_scan f;
    fkm_fused_begin(&f, s.fused_lanes, k, xn);
    for (int64_t j = 0; j < k; j++) {
      const float *cj = c + j * d;
      if (j < f.main)
        fkm_fused_feed_main(&f, j, fkm_fused_t(xi, cj, d, fkm_fused_dp(xi, cj, d), cn[j]));
      else
        fkm_fused_feed_left(&f, j, fkm_fused_dot(xi, cj, d), cn[j]);
    }
    return fkm_fused_end(&f);
  }
  if (l2 && s.cmax_lanes > 0) {
    fkm_cmax_scan m;
    fkm_cmax_begin(&m, s.cmax_lanes, xn);
    for (int64_t j0 = 0; j0 < k; j0 += DB_BLOCK) {
      const int64_t cnt = k - j0 < DB_BLOCK ? k - j0 : DB_BLOCK;
      fkm_cmax_block(&m, j0, cnt);
      for (int64_t q = 0; q < cnt; q++)
        fkm_cmax_feed(&m, q, dot_of(v, row, j0 + q, k, xi, c + (j0 + q) * d, d), cn[j0 + q]);
      fkm_cmax_block_end(&m);
    }
    return m.r;
  }
  if (!l2 && s.top1_lanes > 1) {
    fkm_lanes_scan t;
    fkm_lanes_begin(&t, s.top1_lanes, 0);
    for (int64_t j0 = 0; j0 < k; j0 += DB_BLOCK) {
      const int64_t cnt = k - j0 < DB_BLOCK ? k - j0 : DB_BLOCK;
      fkm_lanes_block(&t, j0, cnt);
      for (int64_t q = 0; q < cnt; q++)
        fkm_lanes_feed(&t, q, dot_of(v, row, j0 + q, k, xi, c + (j0 + q) * d, d));
      fkm_lanes_block_end(&t);
    }
    return t.r;
  }
  fkm_top1 r = fkm_top1_begin(l2); /* the plain scan */
  for (int64_t j = 0; j < k; j++) {
    const float ip = dot_of(v, row, j, k, xi, c + j * d, d);
    fkm_scan_plain(&r, l2, l2 ? fkm_l2_plain(xn, cn[j], ip) : ip, j);
  }
  return r;
}

/* One thread per row: rows[p] for p < *count, or every row p < n. */
__global__ void __launch_bounds__(THREADS)
profile_replay(fkm_scan_desc s, fkm_blas_view v, const float *__restrict__ x,
               const float *__restrict__ xn,
               const float *__restrict__ c, const float *__restrict__ cn, int64_t n, int64_t d,
               int64_t k, const int32_t *__restrict__ rows, const int *__restrict__ count,
               int32_t *__restrict__ labels, float *__restrict__ dist) {
  if (count) n = *count;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < n;
       p += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = rows ? rows[p] : p;
    const fkm_top1 r = replay_row(s, v, row, x + row * d, xn ? xn[row] : 0.0f, c, cn, d, k);
    labels[row] = (int32_t)r.idx;
    dist[row] = r.dis;
  }
}

/* A deferred row (the cascade narrowed it to two candidates, or, with a
 * BLAS order, to one or two: b2 -1; every other centroid worse than each
 * with a margin): the scan replayed over the candidates alone. The others
 * hold lanes only with values that lose the reduction to a candidate, so
 * leaving them out changes no outcome; the blocks without a candidate
 * still run their starts (cmax's block rule). plain: the sequential scan
 * (the lowest index among equal values). */
__global__ void __launch_bounds__(THREADS)
replay_pairs(fkm_scan_desc s, fkm_blas_view v, int plain, const float *__restrict__ x,
             const float *__restrict__ xn, const float *__restrict__ c,
             const float *__restrict__ cn, int64_t d, int64_t k,
             const int32_t *__restrict__ pairs, const int *__restrict__ count,
             int32_t *__restrict__ labels, float *__restrict__ dist) {
  const int n = *count;
  const bool l2 = s.metric == FKM_METRIC_L2;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < n;
       p += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = pairs[3 * p];
    const int64_t b1 = pairs[3 * p + 1], b2 = pairs[3 * p + 2] < 0 ? b1 : pairs[3 * p + 2];
    const int64_t cand[2] = {b1 < b2 ? b1 : b2, b1 < b2 ? b2 : b1};
    const float *xi = x + row * d;
    const float ip[2] = {dot_of(v, row, cand[0], k, xi, c + cand[0] * d, d),
                         cand[1] != cand[0] ? dot_of(v, row, cand[1], k, xi, c + cand[1] * d, d)
                                            : 0.0f};
    fkm_top1 r;
    if (plain) {
      r = fkm_top1_begin(l2);
      for (int e = 0; e < 2; e++)
        if (e == 0 || cand[1] != cand[0])
          fkm_scan_plain(&r, l2, l2 ? fkm_l2_plain(xn[row], cn[cand[e]], ip[e]) : ip[e], cand[e]);
    } else if (l2) {
      fkm_cmax_scan m;
      fkm_cmax_begin(&m, s.cmax_lanes, xn[row]);
      for (int64_t j0 = 0; j0 < k; j0 += DB_BLOCK) {
        const int64_t cnt = k - j0 < DB_BLOCK ? k - j0 : DB_BLOCK;
        fkm_cmax_block(&m, j0, cnt);
        for (int e = 0; e < 2; e++)
          if (cand[e] >= j0 && cand[e] < j0 + cnt && (e == 0 || cand[1] != cand[0]))
            fkm_cmax_feed(&m, cand[e] - j0, ip[e], cn[cand[e]]);
        fkm_cmax_block_end(&m);
      }
      r = m.r;
    } else {
      fkm_lanes_scan t;
      fkm_lanes_begin(&t, s.top1_lanes, 0);
      for (int64_t j0 = 0; j0 < k; j0 += DB_BLOCK) {
        const int64_t cnt = k - j0 < DB_BLOCK ? k - j0 : DB_BLOCK;
        fkm_lanes_block(&t, j0, cnt);
        for (int e = 0; e < 2; e++)
          if (cand[e] >= j0 && cand[e] < j0 + cnt && (e == 0 || cand[1] != cand[0]))
            fkm_lanes_feed(&t, cand[e] - j0, ip[e]);
        fkm_lanes_block_end(&t);
      }
      r = t.r;
    }
    labels[row] = (int32_t)r.idx;
    dist[row] = r.dis;
  }
}

/* (v, i) better than (w, j) in a lane's sequence of strict comparisons:
 * the smaller distance (larger inner product), the earlier position on a
 * tie; i < 0 is an empty slot. */
__device__ __forceinline__ bool lane_better(bool l2, float v, int64_t i, float w, int64_t j) {
  if (i < 0) return false;
  if (j < 0) return true;
  if (l2 ? v < w : v > w) return true;
  return v == w && i < j;
}

/* One warp per row the cascade could not certify, for the laned BLAS scans
 * (cmax, FAISS 1.15's laned top-1), LANED_ROWS rows (warps) per block.
 * The block walks the centroids 32 at a time; their rows go through shared
 * memory in tiles of 32 dimensions (one coalesced load serves the block's
 * rows), and thread t of each warp runs the fma chain of its row with
 * centroid j0 + q0 + t over the tiles in order (j = 0..d-1, as
 * fkm_ip_chain). A lane's values (positions q = l mod L) are combined
 * across the warp with shuffles into the least value at its earliest
 * position, which is what the lane's sequential strict comparisons keep,
 * and merged into the lane's state (every thread keeps the state of lane
 * t mod L); the block's end (lane reduction, tail, add_result) runs as the
 * sequential code, every thread alike. A NaN anywhere in a row (outside the
 * proof's assumptions) makes its warp's thread 0 replay that row alone,
 * sequentially, after the walk. Measured on an H200 at 1M x 1024, d = 128
 * (about 3800 such rows): the same replay with each thread reading its
 * centroid's row from global memory took 3 ms.
 *
 * In a BLAS's order each thread sums its own centroid's row in that order,
 * from global memory, or, STAGED (fkm_blas_view.staged, where the rows fit
 * in shared memory), from whole rows staged there: each warp's row once
 * per row, the step's 32 centroid rows once per step, at an odd stride (a
 * thread per row reads its own bank). The same operations in the same
 * order: only where the operands come from differs. */
constexpr int LANED_ROWS = 8, TILE_D = 32;

template <bool STAGED>
__global__ void __launch_bounds__(32 * LANED_ROWS)
replay_laned(fkm_scan_desc s, fkm_blas_view order, const float *__restrict__ x,
             const float *__restrict__ xn,
             const float *__restrict__ c, const float *__restrict__ cn, int64_t d, int64_t k,
             const int32_t *__restrict__ rows, const int *__restrict__ count,
             int32_t *__restrict__ labels, float *__restrict__ dist) {
  __shared__ float ct[32][TILE_D + 1];        /* 32 centroids x a tile of dimensions */
  __shared__ float xt[LANED_ROWS][TILE_D];    /* each warp's row, the same tile */
  extern __shared__ float stage[];            /* STAGED: LANED_ROWS rows, then 32 */
  const unsigned full = 0xffffffffu;
  const int t = (int)(threadIdx.x & 31), w = (int)(threadIdx.x >> 5);
  const int64_t stride = d | 1; /* the staged centroid rows' */
  float *const xs = stage + w * d, *const cs = stage + LANED_ROWS * d;
  const bool l2 = s.metric == FKM_METRIC_L2;
  const int L = l2 ? s.cmax_lanes : s.top1_lanes, step = l2 ? 2 * L : L;
  const float empty = l2 ? INFINITY : -INFINITY;
  const int n = *count;
  for (int64_t p0 = (int64_t)blockIdx.x * LANED_ROWS; p0 < n;
       p0 += (int64_t)gridDim.x * LANED_ROWS) {
    const int64_t p = p0 + w;
    const bool live = p < n; /* idle warps still load tiles and meet the barriers */
    const int64_t row = live ? rows[p] : 0;
    const float *xi = x + row * d;
    const float x2 = l2 && live ? xn[row] : 0.0f;
    if (STAGED && live) { /* this warp's row (read by this warp alone) */
      __syncwarp(); /* the previous row is used up */
      for (int64_t col = t; col < d; col += 32) xs[col] = xi[col];
    }
    fkm_top1 r = fkm_top1_begin(l2);
    bool bad = false;
    for (int64_t j0 = 0; j0 < k; j0 += DB_BLOCK) {
      const int64_t cnt = k - j0 < DB_BLOCK ? k - j0 : DB_BLOCK;
      const int64_t main = cnt / step * step;
      /* lane t % L: cmax starts at fl(best - |x|^2), index 0 (local); the
       * laned top-1 at the running best and its index */
      float lv = l2 ? r.dis - x2 : r.dis;
      int64_t li = l2 ? 0 : r.idx;
      float tailv = empty; /* this thread's tail value (the last chunk's) */
      for (int64_t q0 = 0; q0 < cnt; q0 += 32) {
        const int64_t q = q0 + t;
        float ip = 0.0f;
        if (STAGED) { /* the step's centroid rows staged whole, each thread its own */
          __syncthreads(); /* the previous step's rows are used up */
          for (int r32 = w; r32 < 32; r32 += LANED_ROWS) {
            const int64_t j = j0 + q0 + r32;
            if (j < j0 + cnt)
              for (int64_t col = t; col < d; col += 32) cs[r32 * stride + col] = c[j * d + col];
          }
          __syncthreads();
          if (live && q < cnt) ip = dot_of<false>(order, row, j0 + q, k, xs, cs + t * stride, d);
        } else if (order.on) { /* the BLAS's order: each thread its own centroid, from L2 */
          if (live && q < cnt) ip = dot_of(order, row, j0 + q, k, xi, c + (j0 + q) * d, d);
        }
        for (int64_t dt = 0; !order.on && dt < d; dt += TILE_D) {
          const int width = (int)(d - dt < TILE_D ? d - dt : TILE_D);
          __syncthreads(); /* the previous tile is used up */
          for (int e = (int)threadIdx.x; e < 32 * TILE_D; e += 32 * LANED_ROWS) {
            const int r32 = e / TILE_D, col = e % TILE_D;
            const int64_t j = j0 + q0 + r32;
            ct[r32][col] = j < j0 + cnt && col < width ? c[j * d + dt + col] : 0.0f;
          }
          xt[w][t] = live && t < width ? xi[dt + t] : 0.0f;
          __syncthreads();
          for (int jj = 0; jj < width; jj++) ip = fmaf(xt[w][jj], ct[t][jj], ip);
        }
        float v = empty;
        int64_t vi = -1;
        if (live && q < cnt) {
          const float val = l2 ? (q < main ? fmaf(ip, -2.0f, cn[j0 + q])
                                           : fkm_l2_plain(x2, cn[j0 + q], ip))
                               : ip;
          bad = bad || val != val;
          if (q < main) {
            v = val;
            vi = l2 ? q : j0 + q;
          } else {
            tailv = val;
          }
        }
        for (int off = L; off < 32; off *= 2) { /* the lane's chunk winner */
          const float ov = __shfl_xor_sync(full, v, off);
          const int64_t oi = __shfl_xor_sync(full, vi, off);
          if (lane_better(l2, ov, oi, v, vi)) {
            v = ov;
            vi = oi;
          }
        }
        if (vi >= 0 && (l2 ? v < lv : v > lv)) { /* strictly better than the state */
          lv = v;
          li = vi;
        }
      }
      /* the block's end, as the sequential code (every thread alike) */
      const int64_t qlast = (cnt - 1) / 32 * 32; /* the tail lies in the last chunk */
      if (l2) {
        float cur = r.dis;
        uint32_t cur_idx = (uint32_t)r.idx;
        for (int l = 0; l < L; l++) {
          const float mv = __shfl_sync(full, lv, l);
          const int64_t mi = __shfl_sync(full, li, l);
          float cand = mv + x2;
          if (cand < 0) cand = 0;
          const int64_t ci = mi + j0;
          if (cur > cand) {
            cur = cand;
            cur_idx = (uint32_t)ci;
          } else if (cur == cand && (int64_t)cur_idx > ci) {
            cur_idx = (uint32_t)ci;
          }
        }
        for (int64_t q = main; q < cnt; q++) {
          const float dv = __shfl_sync(full, tailv, (int)(q - qlast));
          if (cur > dv) {
            cur = dv;
            cur_idx = (uint32_t)(j0 + q);
          }
        }
        if (r.dis > cur) {
          r.dis = cur;
          r.idx = (int64_t)cur_idx;
        }
      } else {
        for (int l = 0; l < L; l++) {
          const float mv = __shfl_sync(full, lv, l);
          const int64_t mi = __shfl_sync(full, li, l);
          if (r.dis < mv) {
            r.dis = mv;
            r.idx = (int64_t)(int32_t)mi;
          }
        }
        for (int64_t q = main; q < cnt; q++)
          fkm_scan_plain(&r, 0, __shfl_sync(full, tailv, (int)(q - qlast)), j0 + q);
      }
    }
    bad = __any_sync(full, bad);
    if (live && t == 0) {
      if (bad) r = replay_row(s, order, row, xi, x2, c, cn, d, k);
      labels[row] = (int32_t)r.idx;
      dist[row] = r.dis;
    }
  }
}

/* The dynamic shared memory replay_laned<true> stages rows of d floats in
 * (LANED_ROWS rows, 32 at an odd stride), its limit raised where it passes
 * the default 48 KiB; 0 where the device cannot give it (the replay then
 * reads global memory). */
cudaError_t stage_bytes(int64_t d, size_t *bytes) {
  *bytes = 0;
  /* its static arrays (ct, xt) and the staged rows */
  const size_t fixed = sizeof(float) * (32 * (TILE_D + 1) + LANED_ROWS * TILE_D);
  const size_t want = sizeof(float) * (size_t)(LANED_ROWS * d + 32 * (d | 1));
  if (want + fixed > 48 * 1024) {
    int dev = 0, optin = 0;
    cudaError_t e = cudaGetDevice(&dev);
    if (e == cudaSuccess) e = cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    if (e != cudaSuccess) return e;
    if (want + fixed > (size_t)optin) return cudaSuccess;
    e = cudaFuncSetAttribute(replay_laned<true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                             (int)want);
    if (e != cudaSuccess) return e;
  }
  *bytes = want;
  return cudaSuccess;
}

unsigned grid_for(int64_t rows) {
  const int64_t b = (rows + THREADS - 1) / THREADS;
  return (unsigned)(b < 1 ? 1 : b < 65535 ? b : 65535);
}

}  // namespace

extern "C" cudaError_t fkm_launch_profile_norms(const fkm_scan_desc *s, const float *x,
                                                int64_t n, int64_t d, float *out,
                                                cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  if (d <= NORM_STAGED_MAX_D) {
    const int64_t ld = d | 1;
    const size_t smem = sizeof(float) * (size_t)(NORM_ROWS * ld);
    profile_norms_staged<<<(unsigned)((n + NORM_ROWS - 1) / NORM_ROWS), NORM_ROWS, smem,
                           stream>>>(*s, x, n, d, ld, out);
  } else {
    profile_norms<<<(unsigned)((n + 255) / 256), 256, 0, stream>>>(*s, x, n, d, out);
  }
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_assign_profile(const fkm_assign_args *a,
                                                 const fkm_assign_plan *plan,
                                                 const fkm_scan_desc *s, cudaStream_t stream) {
  if (a->n == 0) return cudaSuccess;
  const int plain = fkm_scan_is_plain(s);
  /* the BLAS's order: only the BLAS path takes its dot products from sgemm */
  fkm_blas_view order = a->blas;
  order.on = order.on && s->path == 0;
  if ((!plain || order.on) && (s->path != 0 || !plan->tc)) { /* no cascade: replay every row */
    profile_replay<<<grid_for(a->n), THREADS, 0, stream>>>(*s, order, a->x, a->xn, a->c, a->cn,
                                                            a->n, a->d, a->k, nullptr, nullptr,
                                                            a->labels, a->dist);
    return cudaGetLastError();
  }
  fkm_assign_args ca = *a;
  ca.float_norms = s->norm.width != 0;
  ca.cmax_lanes = s->metric == FKM_METRIC_L2 ? s->cmax_lanes : 0;
  ca.defer_pairs = !plain;
  ca.defer_all = order.on;
  ca.blas = order;
  cudaError_t e = fkm_launch_assign(&ca, plan, stream);
  if (e != cudaSuccess || !fkm_scan_replays_left(s, order.on)) return e;
  /* the rows the cascade left, narrowed in float32: most join the deferred
   * rows, the rest (fkm_assign_narrowed_rows) are replayed in full */
  e = fkm_launch_assign_narrow(&ca, plan, stream);
  if (e != cudaSuccess) return e;
  const int32_t *left = fkm_assign_narrowed_rows(&ca, plan);
  const int *left_count = fkm_assign_narrowed_count(&ca);
  /* the deferred rows and the rows left (counts on the device): grids
   * sized for a few per cent of the rows (every row with a BLAS order),
   * striding */
  const int64_t few = a->n / 16 + 1, listed = order.on ? a->n : few;
  replay_pairs<<<grid_for(listed), THREADS, 0, stream>>>(
      *s, order, plain, a->x, a->xn, a->c, a->cn, a->d, a->k, fkm_assign_pairs(&ca, plan),
      fkm_assign_pair_count(&ca), a->labels, a->dist);
  e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  if (plain) { /* the rows left, a thread per row over every centroid */
    profile_replay<<<grid_for(few), THREADS, 0, stream>>>(*s, order, a->x, a->xn, a->c, a->cn,
                                                          a->n, a->d, a->k, left, left_count,
                                                          a->labels, a->dist);
    return cudaGetLastError();
  }
  const int64_t groups = (few + LANED_ROWS - 1) / LANED_ROWS;
  const unsigned grid = (unsigned)(groups < 65535 ? groups : 65535);
  size_t staged = 0;
  if (order.on && order.staged) {
    e = stage_bytes(a->d, &staged);
    if (e != cudaSuccess) return e;
  }
  auto kern = staged ? replay_laned<true> : replay_laned<false>;
  kern<<<grid, 32 * LANED_ROWS, staged, stream>>>(
      *s, order, a->x, a->xn, a->c, a->cn, a->d, a->k, left, left_count, a->labels, a->dist);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_blas_choose(int64_t nx, int64_t ny, int64_t d,
                                             const int32_t *seg, int draws, const float *y,
                                             const float *x, const float *ip,
                                             const uint16_t *alive, uint8_t *code,
                                             cudaStream_t stream) {
  if (nx * ny == 0) return cudaSuccess;
  blas_choose<<<grid_for(nx * ny), THREADS, 0, stream>>>(nx, ny, d, seg, draws, y, x, ip, alive,
                                                         code);
  return cudaGetLastError();
}
