/* The sort-inverse update and the small per-iteration kernels around it.
 *
 * Order is the contract (docs/contract.md section 5): each centroid's sum is one float
 * chain over its points in increasing training index, so partial sums can
 * never be combined. Parallelism comes from the (centroid, dimension) pairs:
 * one thread per pair walks its segment of the stably sorted row list. A
 * cluster holding half the points is therefore d chains of n/2 additions,
 * all running at once, while every other cluster proceeds in parallel: the
 * update's critical path is the largest cluster's length, not n.
 * Compiled with -fmad=false: nothing contracts, products are __fmul_rn.
 */
#include "update.cuh"

#include "flashkm.h"

#include "cp_async.cuh"
#include "dispatch.cuh"
#include "faiss_scan.h"
#include "grid_stride.cuh"
#include "fchain.h"
#include "packed.cuh"
#include "split_block.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <float.h>
#include <limits.h>

#include <type_traits>

namespace {

constexpr int THREADS = 256;

unsigned blocks_for(int64_t count) {
  return (unsigned)((count + THREADS - 1) / THREADS);
}

/* The q-th non-frozen centroid: centroids come in blocks of kp (one
 * problem's), the first k_frozen of each block frozen. */
__device__ __forceinline__ int64_t moving_centroid(int64_t q, int64_t kp, int64_t k_frozen) {
  const int64_t moving = kp - k_frozen;
  return q / moving * kp + k_frozen + q % moving;
}

/* Unweighted count of a segment of len rows: adding 1.0f in float is exact
 * up to 2^24 and saturates there (2^24 + 1 rounds to even, back to 2^24). */
__device__ __forceinline__ float unweighted_count(int64_t len) {
  return (float)(len < 16777216 ? len : 16777216);
}

/* The end of a (centroid c, dimension j) chain: c[j] = sum * fl(1 / count)
 * when count != 0, else sum (stored where col: j < d); counts[c] once, by
 * the thread of dimension 0. */
__device__ __forceinline__ void store_mean(float sum, float count, int64_t c, int64_t d,
                                           int64_t j, bool col, float *__restrict__ centroids,
                                           float *__restrict__ counts) {
  if (count != 0.0f) sum = __fmul_rn(sum, __fdiv_rn(1.0f, count));
  if (col) centroids[c * d + j] = sum;
  if (j == 0) counts[c] = count;
}

/* Layout: x (n, d) row-major (reading FKM_ASSIGN_FAST's exact 16-bit packed
 * copy instead was measured: half the bytes, but the packed layout's index
 * arithmetic per element made the kernel 2.4x slower at 1M x 1024), rows
 * (n) the training rows sorted by label, offsets/hist (k) the
 * segments. Centroids come in blocks of kp (one problem's); the first
 * k_frozen of each block are skipped. Thread t owns the pair (c, j) with
 * j = t % d and c the (t / d)-th non-frozen centroid: for d >= 32 a warp
 * covers consecutive dimensions of one centroid (coalesced row reads, the
 * row index is a broadcast); for small d a warp covers several centroids.
 * Each thread reads its segment R rows at a time, all loads issued before
 * the R in-order additions, so R loads are in flight per thread (R is
 * larger when there are few pairs, to keep enough bytes in flight). */
/* W: 0 unweighted; 1 weighted, sum + fl(x w) (two roundings); 2 weighted,
 * fma(x, w, sum) (the AVX builds of FAISS before 1.14.2, docs/profiles.md). */
__device__ __forceinline__ float weighted_add(int W, float sum, float v, float w) {
  return W == 2 ? __fmaf_rn(v, w, sum) : __fadd_rn(sum, __fmul_rn(v, w));
}

template <int W, int R>
__global__ void __launch_bounds__(THREADS)
centroid_sums(const float *__restrict__ x, const float *__restrict__ w,
              const int32_t *__restrict__ rows, const int32_t *__restrict__ hist,
              const int32_t *__restrict__ offsets, int64_t d, int64_t pairs, int64_t kp,
              int64_t k_frozen, int64_t skip_above, float *__restrict__ centroids,
              float *__restrict__ counts) {
  const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= pairs) return;
  const int64_t j = t % d, c = moving_centroid(t / d, kp, k_frozen);
  if (hist[c] > skip_above) return; /* centroid_sums_long's */
  const int64_t b = offsets[c], e = b + hist[c];
  float sum = 0.0f, count = 0.0f;
  for (int64_t i = b; i < e; i += R) {
    float v[R], wv[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
      if (i + r < e) {
        const int64_t row = rows[i + r];
        v[r] = x[row * d + j];
        wv[r] = W ? w[row] : 1.0f;
      } else {
        v[r] = 0.0f;
        wv[r] = 0.0f;
      }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
      if (i + r < e) {
        if (W) {
          count = __fadd_rn(count, wv[r]);
          sum = weighted_add(W, sum, v[r], wv[r]);
        } else {
          sum = __fadd_rn(sum, v[r]);
        }
      }
    }
  }
  if (!W) count = unweighted_count(e - b);
  store_mean(sum, count, c, d, j, true, centroids, counts);
}

/* Long segments (more than LONG_SEG rows, e.g. 1M points in 256 clusters,
 * or one cluster holding half the points): one thread per (c, j) walks its
 * segment with at most R loads in flight and two dependent latencies (row
 * index, then value) per R rows, so the longest segment alone sets the
 * kernel's time. Here one warp owns centroid c and dimensions [j0, j0 + 32):
 * the rows stream through shared memory in a ring of LS stages of LR rows
 * (cp.async, LS - 1 stages in flight; 4-byte copies, so any d), the row
 * indices are read two stages ahead of their copies, and lane l adds column
 * j0 + l of each staged row in order: the same in-order chain, the same
 * bits, with the loads far ahead of it. */
constexpr int LONG_SEG = 1024, MID_SEG = 512, PACKED_SEG = 64, LR = 64, LS = 4;

/* One warp: centroid c's segment [b, b + len) of rows, column j (lane's). */
template <int W>
__device__ void sum_long_segment(const float *__restrict__ x, const float *__restrict__ w,
                                 const int32_t *__restrict__ rows, int64_t d, int64_t c,
                                 int64_t b, int64_t len, int64_t j, float (*tile)[LR][32],
                                 float (*wt)[LR], float *__restrict__ centroids,
                                 float *__restrict__ counts) {
  const int lane = threadIdx.x;
  const bool col = j < d;
  const int64_t nst = (len + LR - 1) / LR; /* stages */
  /* lane l holds rows l and l + 32 of a stage: the indices of the stage to
   * copy next (cur) and of the one after (nxt) */
  auto load_idx = [&](int64_t st, int32_t *v) {
    const int64_t i0 = st * LR;
    v[0] = st < nst && i0 + lane < len ? rows[b + i0 + lane] : 0;
    v[1] = st < nst && i0 + 32 + lane < len ? rows[b + i0 + 32 + lane] : 0;
  };
  auto issue = [&](int64_t st, const int32_t *v) {
    if (st < nst) {
      const int buf = (int)(st % LS);
      const int m = (int)(len - st * LR < LR ? len - st * LR : LR);
      for (int r = 0; r < m; r++) {
        const int64_t row = __shfl_sync(~0u, v[r >> 5], r & 31);
        if (col) cp_async4(&tile[buf][r][lane], x + row * d + j);
      }
      if (W) {
        if (lane < m) cp_async4(&wt[buf][lane], w + v[0]);
        if (lane + 32 < m) cp_async4(&wt[buf][lane + 32], w + v[1]);
      }
    }
    cp_async_commit(); /* an empty group past the end keeps the count */
  };
  int32_t cur[2], nxt[2];
  for (int64_t st = 0; st < LS - 1; st++) {
    load_idx(st, cur);
    issue(st, cur);
  }
  load_idx(LS - 1, cur);
  load_idx(LS, nxt);
  float sum = 0.0f, count = 0.0f;
  for (int64_t st = 0; st < nst; st++) {
    cp_async_wait<LS - 2>();
    __syncwarp(); /* stage st is in shared memory for every lane */
    const int buf = (int)(st % LS);
    const int m = (int)(len - st * LR < LR ? len - st * LR : LR);
    if (col) {
#pragma unroll 8
      for (int r = 0; r < m; r++) {
        if (W) {
          const float wv = wt[buf][r];
          count = __fadd_rn(count, wv);
          sum = weighted_add(W, sum, tile[buf][r][lane], wv);
        } else {
          sum = __fadd_rn(sum, tile[buf][r][lane]);
        }
      }
    }
    __syncwarp(); /* the buffer of stage st + LS - 1 (the one of st - 1) is free */
    issue(st + LS - 1, cur);
    cur[0] = nxt[0];
    cur[1] = nxt[1];
    load_idx(st + LS + 1, nxt);
  }
  cp_async_wait<0>();
  __syncwarp(); /* the ring is free for the next segment */
  if (!W) count = unweighted_count(len);
  store_mean(sum, count, c, d, j, col, centroids, counts);
}

/* A fixed grid of warps strides over the (centroid, 32-dimension slice)
 * items and takes the long segments: a run without any pays a short scan of
 * hist, not a block per item. */
template <int W>
__global__ void __launch_bounds__(32)
centroid_sums_long(const float *__restrict__ x, const float *__restrict__ w,
                   const int32_t *__restrict__ rows, const int32_t *__restrict__ hist,
                   const int32_t *__restrict__ offsets, int64_t d, int64_t kp, int64_t k_frozen,
                   int64_t total, float *__restrict__ centroids, float *__restrict__ counts) {
  __shared__ float tile[LS][LR][32];
  __shared__ float wt[LS][LR];
  const int64_t slices = (d + 31) / 32;
  for (int64_t item = blockIdx.x; item < total; item += gridDim.x) {
    const int64_t c = moving_centroid(item / slices, kp, k_frozen);
    const int64_t len = hist[c];
    if (len <= LONG_SEG) continue;
    sum_long_segment<W>(x, w, rows, d, c, offsets[c], len,
                               item % slices * 32 + threadIdx.x, tile, wt, centroids, counts);
  }
}

/* Row sources of centroid_sums_long_async: COLS columns per item (lane l's
 * columns j0 + l + 32 w), a row's slice of bytes(j0) bytes (a multiple of
 * 16) at at(row, j0, g), whose 16-byte piece i belongs at piece i ^ g of
 * the staged row; value(row, e) reads element e of a staged row; STAGES
 * stages of 32 rows in shared memory. */

/* x in float (d % 4 == 0, 16-byte aligned): 4 min(32, d - j0) bytes. */
struct FloatRows {
  static constexpr int ROW_BYTES = 128, COLS = 32, STAGES = 8;
  static constexpr bool SCALED = false;
  const float *x;
  int64_t d;
  __device__ const void *at(int32_t row, int64_t j0, int &g) const {
    g = 0;
    return x + (int64_t)row * d + j0;
  }
  __device__ unsigned bytes(int64_t j0) const { return 4u * (unsigned)(d - j0 < 32 ? d - j0 : 32); }
  __device__ float value(const uint8_t *row, int e, float) const {
    return reinterpret_cast<const float *>(row)[e];
  }
};

template <typename T> __device__ __forceinline__ float half_value(const uint8_t *row, int e) {
  const unsigned short b = reinterpret_cast<const unsigned short *>(row)[e];
  if constexpr (std::is_same<T, __half>::value)
    return __half2float(__ushort_as_half(b));
  else
    return __bfloat162float(__ushort_as_bfloat16(b));
}

/* FKM_ASSIGN_FAST's packed 16-bit copy of x (kernels/packed.cuh; exact: the
 * data's own type, unscaled): a 64-column slice of a row is its 128 bytes
 * in a tile, whose 16-byte pieces are permuted by the row's swizzle (piece
 * i holds the slice's piece i ^ (r % 8)). Half the bytes of the float rows,
 * and two columns a lane: the row's 128 contiguous bytes come in one
 * item (32-column items read each row's halves in two items far apart in
 * time: B = 64 x 8192 rows into 64, 0.093 ms an iteration on an H100,
 * DRAM 39 % busy). problems packed matrices of rows rows each, stride
 * elements apart (batched runs: global row = problem rows + local row). */
template <typename T> struct PackedRows {
  static constexpr int ROW_BYTES = 128, COLS = 64, STAGES = 4;
  static constexpr bool SCALED = false;
  static_assert(FKM_MMA_BK == 64 && FKM_SEGS_PER_ROW == 8,
                "a 64-column slice is a 128-byte tile row (packed.cuh)");
  const uint16_t *xp;
  int64_t dp, stride;
  uint32_t rows;
  __device__ const void *at(int32_t row, int64_t j0, int &g) const {
    const uint32_t b = (uint32_t)row / rows, r = (uint32_t)row - b * rows;
    g = (int)(r & (FKM_SEGS_PER_ROW - 1u));
    return xp + (int64_t)b * stride + packed_at(r, j0, dp) - g * FKM_SEG_ELEMS;
  }
  __device__ unsigned bytes(int64_t) const { return 128u; }
  __device__ float value(const uint8_t *row, int e, float) const { return half_value<T>(row, e); }
};

/* The parity cascade's packed copy of fp16 rows (fkm_launch_pack_x_batched:
 * fp16 of x 2^sx, sx = scale_exp(xmax[problem])): where sx >= 0 the packing
 * was exact and value times 2^-sx is x's own value (the float rows' bits,
 * half their bytes); a problem with sx < 0 (max|x| >= 2^15) reads its float
 * rows x instead, row by row (sum_float_item). */
struct ScaledPackedRows : PackedRows<__half> {
  static constexpr bool SCALED = true;
  const float *x;
  const int *xmax;
  __device__ int scale(int64_t problem) const { return scale_exp(__ldg(xmax + problem)); }
  __device__ float value(const uint8_t *row, int e, float sc) const {
    return __fmul_rn(half_value<__half>(row, e), sc);
  }
};

/* One (centroid, COLS-column slice) item from x's float rows, each row
 * loaded in the segment's order by every lane (the same chains and bits as
 * the staged rows: a problem whose packed copy is not exact). */
template <int W>
__device__ void sum_float_item(const float *__restrict__ x, const int32_t *__restrict__ rows,
                               int64_t b, int64_t len, int64_t d, int64_t j0, float (&sum)[W],
                               const bool (&col)[W]) {
  for (int64_t i = 0; i < len; i++) {
    const int64_t r = rows[b + i];
#pragma unroll
    for (int w = 0; w < W; w++)
      if (col[w]) sum[w] = __fadd_rn(sum[w], x[r * d + j0 + threadIdx.x + 32 * w]);
  }
}

/* The long segments, unweighted, by 16-byte cp.async (any sm_80+ device):
 * one warp owns centroid c and 32 dimensions (lane l adds column j0 + l of
 * each staged row in order: the same chain, the same bits); a stage's BLR
 * row slices are copied as 16-byte pieces, lane l
 * copying piece l % G of row l / G + 32 / G i (G = pieces per slice; the
 * row's address and permutation come by shuffles from the lane that read
 * its index), each piece put back in its logical place (so the staged rows
 * are plain), AS - 1 stages in flight. It replaced a kernel that copied
 * each row's slice with one cp.async.bulk (lane r, row r): ncu (H100,
 * 1M x 256) counted about 21 warp instructions per row there, 5.6 cycles
 * per issued instruction and DRAM 41 % busy, the per-row copies (whose
 * operands pass through uniform registers one lane at a time) bounding it;
 * here a row costs G / 32 copies and shuffles per lane. Update at
 * 1M x 256: float 0.31 -> 0.22 ms, packed 0.20 -> 0.12 ms. */
constexpr int BLR = 32; /* rows per stage */

template <class Src>
__global__ void __launch_bounds__(32)
centroid_sums_long_async(Src src, const int32_t *__restrict__ rows,
                         const int32_t *__restrict__ hist, const int32_t *__restrict__ offsets,
                         int64_t d, int64_t kp, int64_t k_frozen, int64_t total, int64_t min_len,
                         float *__restrict__ centroids, float *__restrict__ counts) {
  constexpr int G = Src::ROW_BYTES / 16, RPP = 32 / G; /* pieces per row, rows per pass */
  constexpr int AS = Src::STAGES, W = Src::COLS / 32; /* stages; columns a lane */
  __shared__ __align__(128) uint8_t tile[AS][BLR][Src::ROW_BYTES];
  const int lane = threadIdx.x, q = lane % G;
  const int64_t slices = (d + Src::COLS - 1) / Src::COLS;
  for (int64_t item = blockIdx.x; item < total; item += gridDim.x) {
    const int64_t c = moving_centroid(item / slices, kp, k_frozen);
    const int64_t len = hist[c];
    if (len <= min_len) continue;
    const int64_t b = offsets[c], j0 = item % slices * Src::COLS, nst = (len + BLR - 1) / BLR;
    float sum[W], sc = 1.0f;
    bool col[W];
#pragma unroll
    for (int w = 0; w < W; w++) sum[w] = 0.0f, col[w] = j0 + lane + 32 * w < d;
    if constexpr (Src::SCALED) {
      const int sx = src.scale(c / kp);
      if (sx < 0) { /* the packing of this problem is not exact */
        sum_float_item<W>(src.x, rows, b, len, d, j0, sum, col);
#pragma unroll
        for (int w = 0; w < W; w++)
          store_mean(sum[w], unweighted_count(len), c, d, j0 + lane + 32 * w, col[w], centroids,
                     counts);
        continue;
      }
      sc = ldexpf(1.0f, -sx);
    }
    const int pieces = (int)(src.bytes(j0) / 16); /* of a row's slice */
    auto index = [&](int64_t st) { /* lane's row of stage st, -1 past the segment */
      const int64_t i = st * BLR + lane;
      return st < nst && i < len ? rows[b + i] : -1;
    };
    auto issue = [&](int64_t st, int32_t row) {
      if (st < nst) {
        int g = 0; /* the row's piece permutation */
        const char *from = row >= 0 ? static_cast<const char *>(src.at(row, j0, g)) : nullptr;
        uint8_t(*t)[Src::ROW_BYTES] = tile[st % AS];
#pragma unroll
        for (int p = 0; p < BLR / RPP; p++) {
          const int r = p * RPP + lane / G;
          const char *f = reinterpret_cast<const char *>(
              __shfl_sync(~0u, reinterpret_cast<uintptr_t>(from), r));
          const int gr = __shfl_sync(~0u, g, r);
          if (f && q < pieces) cp_async16(&t[r][16 * (q ^ gr)], f + 16 * q);
        }
      }
      cp_async_commit(); /* an empty group past the end keeps the count */
    };
    int32_t nxt = index(0);
    for (int64_t st = 0; st < AS - 1; st++) {
      const int32_t row = nxt;
      nxt = index(st + 1);
      issue(st, row);
    }
    for (int64_t st = 0; st < nst; st++) {
      cp_async_wait<AS - 2>();
      /* stage st is in shared memory for every lane, and every lane is done
       * with stage st - 1, whose buffer the refill below takes */
      __syncwarp();
      const int m = (int)(len - st * BLR < BLR ? len - st * BLR : BLR);
      const uint8_t(*t)[Src::ROW_BYTES] = tile[st % AS];
#pragma unroll
      for (int w = 0; w < W; w++) {
        if (!col[w]) continue;
        const int e = lane + 32 * w;
        if (m == BLR) {
#pragma unroll
          for (int r = 0; r < BLR; r++) sum[w] = __fadd_rn(sum[w], src.value(t[r], e, sc));
        } else {
          for (int r = 0; r < m; r++) sum[w] = __fadd_rn(sum[w], src.value(t[r], e, sc));
        }
      }
      const int32_t row = nxt;
      nxt = index(st + AS);
      issue(st + AS - 1, row);
    }
    cp_async_wait<0>();
    __syncwarp(); /* the ring is free for the next item */
#pragma unroll
    for (int w = 0; w < W; w++)
      store_mean(sum[w], unweighted_count(len), c, d, j0 + lane + 32 * w, col[w], centroids,
                 counts);
  }
}

cudaError_t launch_sums(const fkm_update_args *a, int64_t moving, cudaStream_t s) {
  const int64_t pairs = moving * a->d;
  /* below about 2^17 pairs, 8 loads per thread leave the memory system
   * underfed (1M x 256 at d = 128 has 2^15) */
  const bool deep = pairs < (1 << 17);
  /* Segments longer than long_min rows go to a staged kernel, beside the
   * simple one: where segments average >= 2 LONG_SEG rows (1M x 256), those
   * over LONG_SEG (measured on an H100 with the 4-byte cp.async kernel:
   * 1M x 256's update 0.65 -> 0.39 ms, but 1M x 1024's, 1k rows per
   * centroid, 0.26 -> 0.34); where the 16-byte kernel applies and segments
   * average >= MID_SEG rows (1M x 1024), those over MID_SEG / 2. Elsewhere
   * a rare long segment stays in the simple kernel. */
  const bool async16 = !a->weights && (a->xp || (a->d % 4 == 0 &&
                                                  reinterpret_cast<uintptr_t>(a->x) % 16 == 0));
  const int64_t avg = a->n / moving;
  /* From a packed 16-bit copy with segments averaging PACKED_SEG rows or
   * more (a batch of B = 64 x 8192 rows into 64 centroids, 128 rows), every
   * segment goes to the staged kernel (H100: 0.337 -> 0.290 ms an
   * iteration; at 32 rows a segment, B = 1024 x 256 into 8, it lost:
   * 0.249 -> 0.271 ms). 64, not 128: the (32, 75600) call into 1,000
   * (76 rows a segment) read 1.24 GB of float rows an iteration in the
   * simple kernel; from the packed copy its update took 0.495 -> 0.283 ms
   * (H100, results v45). */
  const int64_t long_min = avg >= 2 * LONG_SEG                   ? LONG_SEG
                           : async16 && avg >= MID_SEG             ? MID_SEG / 2
                           : async16 && a->xp && avg >= PACKED_SEG ? 0
                                                                   : INT64_MAX;
  const bool longs = long_min != INT64_MAX;
  cudaError_t e;
  if (longs && a->aux) { /* fork */
    e = cudaEventRecord(a->ev_fork, s);
    if (e == cudaSuccess) e = cudaStreamWaitEvent(a->aux, a->ev_fork, 0);
    if (e != cudaSuccess) return e;
  }
  auto kern = !a->weights          ? (deep ? centroid_sums<0, 32> : centroid_sums<0, 8>)
              : a->weighted_fma ? (deep ? centroid_sums<2, 32> : centroid_sums<2, 8>)
                                : (deep ? centroid_sums<1, 32> : centroid_sums<1, 8>);
  kern<<<blocks_for(pairs), THREADS, 0, s>>>(a->x, a->weights, a->rows, a->hist, a->offsets,
                                             a->d, pairs, a->k_problem, a->k_frozen,
                                             long_min, a->centroids, a->counts);
  e = cudaGetLastError();
  if (e != cudaSuccess || !longs) return e;
  /* the long segments on the aux stream, beside the short ones (disjoint
   * centroids), joined back before anything after the update */
  const int64_t total = moving * ((a->d + 31) / 32); /* 32-column items */
  const unsigned grid = (unsigned)(total < 4096 ? total : 4096);
  const cudaStream_t ls = a->aux ? a->aux : s;
  /* unweighted: the 16-byte cp.async kernel, from the packed 16-bit copy
   * when there is one, else from float x where d % 4 == 0 and x is 16-byte
   * aligned */
  auto sums = [&](auto src) {
    auto kern = centroid_sums_long_async<decltype(src)>;
    /* the warps that fit at once (shared memory allows 13 an SM on an
     * H100), each taking further items in turn: a grid of 2048 was 1.19
     * waves there, its last 332 warps running their items after the others
     * (ncu, B = 64 x 8192 rows into 64: 108 us, DRAM 39 % busy) */
    int64_t fit = 1;
    const cudaError_t oe = fkm_resident_blocks(kern, 32, 0, &fit);
    if (oe != cudaSuccess) return oe;
    constexpr int COLS = decltype(src)::COLS;
    const int64_t items = moving * ((a->d + COLS - 1) / COLS);
    const unsigned bgrid = (unsigned)(items < fit ? items : fit);
    kern<<<bgrid, 32, 0, ls>>>(src, a->rows, a->hist, a->offsets, a->d, a->k_problem,
                               a->k_frozen, items, long_min, a->centroids, a->counts);
    return cudaGetLastError();
  };
  if (async16 && a->xp && a->xp_xmax) {
    ScaledPackedRows src;
    src.xp = a->xp, src.dp = fkm_pack_dims(a->d), src.stride = a->xp_stride;
    src.rows = (uint32_t)a->xp_rows, src.x = a->x, src.xmax = a->xp_xmax;
    e = sums(src);
    if (e != cudaSuccess) return e;
  } else if (async16 && a->xp) {
    const int64_t dp = fkm_pack_dims(a->d);
    e = by_half_dtype(a->xp_dtype, [&](auto type) {
      return sums(PackedRows<decltype(type)>{a->xp, dp, a->xp_stride, (uint32_t)a->xp_rows});
    });
    if (e != cudaSuccess) return e;
  } else if (async16) {
    e = sums(FloatRows{a->x, a->d});
    if (e != cudaSuccess) return e;
  } else {
    auto lk = !a->weights          ? centroid_sums_long<0>
              : a->weighted_fma ? centroid_sums_long<2>
                                : centroid_sums_long<1>;
    lk<<<grid, 32, 0, ls>>>(a->x, a->weights, a->rows, a->hist, a->offsets, a->d,
                            a->k_problem, a->k_frozen, total, a->centroids, a->counts);
  }
  e = cudaGetLastError();
  if (e != cudaSuccess || !a->aux) return e;
  e = cudaEventRecord(a->ev_join, a->aux);
  return e != cudaSuccess ? e : cudaStreamWaitEvent(s, a->ev_join, 0);
}

/* Streamed runs (docs/data-path.md): one chunk's rows added to every
 * non-frozen centroid's chains, continuing them: acc (k, d) holds each
 * (c, j)'s float sum over the earlier chunks' rows, cnt (k) the weighted
 * count (thread j = 0 of c owns it); the same additions in the same order
 * as centroid_sums over the whole training set. A centroid without rows in
 * the chunk is left as it is. */
template <int W, int R>
__global__ void __launch_bounds__(THREADS)
chunk_sums(const float *__restrict__ x, const float *__restrict__ w,
           const int32_t *__restrict__ rows, const int32_t *__restrict__ hist,
           const int32_t *__restrict__ offsets, int64_t d, int64_t pairs, int64_t kp,
           int64_t k_frozen, float *__restrict__ acc, float *__restrict__ cnt) {
  const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= pairs) return;
  const int64_t j = t % d, c = moving_centroid(t / d, kp, k_frozen);
  const int64_t b = offsets[c], e = b + hist[c];
  if (e == b) return;
  float sum = acc[c * d + j], count = W && j == 0 ? cnt[c] : 0.0f;
  for (int64_t i = b; i < e; i += R) {
    float v[R], wv[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
      const int64_t row = i + r < e ? rows[i + r] : 0;
      v[r] = i + r < e ? x[row * d + j] : 0.0f;
      wv[r] = W && i + r < e ? w[row] : 0.0f;
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
      if (i + r >= e) break;
      if (W) {
        count = __fadd_rn(count, wv[r]);
        sum = weighted_add(W, sum, v[r], wv[r]);
      } else {
        sum = __fadd_rn(sum, v[r]);
      }
    }
  }
  acc[c * d + j] = sum;
  if (W && j == 0) cnt[c] = count;
}

/* A rank's slice of chains (fkm_launch_rank_chains): thread (i, j) of the
 * slice continues centroid k_frozen + c0 + i's sum j (j < d) or its count
 * (j == d) over the centroid's rows in order. */
template <int W>
__global__ void __launch_bounds__(THREADS)
rank_chains(const float *__restrict__ x, const float *__restrict__ w,
            const int32_t *__restrict__ rows, const int32_t *__restrict__ hist,
            const int32_t *__restrict__ offsets, int64_t d, int64_t cells, int64_t first,
            float *__restrict__ part) {
  const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= cells) return;
  const int64_t j = t % (d + 1), c = first + t / (d + 1);
  const int64_t b = offsets[c], e = b + hist[c];
  float v = part[t];
  if (j < d) {
    for (int64_t i = b; i < e; i++) {
      const int64_t row = rows[i];
      v = W ? weighted_add(W, v, x[row * d + j], w[row]) : __fadd_rn(v, x[row * d + j]);
    }
  } else {
    for (int64_t i = b; i < e; i++) v = __fadd_rn(v, W ? w[rows[i]] : 1.0f);
  }
  part[t] = v;
}

/* The chunk's label counts added to seen (k). */
__global__ void add_hist(const int32_t *__restrict__ hist, int64_t k, int64_t *__restrict__ seen) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c < k) seen[c] += hist[c];
}

/* After the last chunk: store_mean's ending for every (c, j), counts and
 * hist64 as finish_counts gives them. */
__global__ void finish_means(const float *__restrict__ acc, const float *__restrict__ cnt,
                             const int64_t *__restrict__ seen, int64_t k, int64_t d, int64_t kp,
                             int64_t k_frozen, int weighted, float *__restrict__ centroids,
                             float *__restrict__ counts, int64_t *__restrict__ hist64) {
  const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= k * d) return;
  const int64_t c = t / d, j = t % d;
  if (j == 0) hist64[c] = seen[c];
  if (c % kp < k_frozen) {
    if (j == 0) counts[c] = 0.0f;
    return;
  }
  const float count = weighted ? cnt[c] : unweighted_count(seen[c]);
  store_mean(acc[t], count, c, d, j, true, centroids, counts);
}

__global__ void chains_scale(const float *__restrict__ msg, int64_t k, int64_t d,
                             int64_t k_frozen, float *__restrict__ centroids,
                             float *__restrict__ counts) {
  const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= k * d) return;
  const int64_t c = t / d, j = t % d;
  if (c < k_frozen) {
    if (j == 0) counts[c] = 0.0f;
    return;
  }
  const float *m = msg + (c - k_frozen) * (d + 1);
  store_mean(m[j], m[d], c, d, j, true, centroids, counts);
}

__global__ void widen_hist(const int32_t *__restrict__ hist, int64_t k, int64_t *__restrict__ out) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c < k) out[c] = hist[c];
}

__global__ void finish_counts(const int32_t *__restrict__ hist, int64_t k, int64_t kp,
                              int64_t k_frozen, float *__restrict__ counts,
                              int64_t *__restrict__ hist64) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= k) return;
  hist64[c] = hist[c];
  if (c % kp < k_frozen) counts[c] = 0.0f;
}

}  // namespace

#include "objective.cuh"  /* the objective's chains: their own family */

namespace {

/* Split row operations (dst, src) = pairs[2 p] + base, pairs[2 p + 1] +
 * base, in order, by the block: thread t owns dimensions t, t + blockDim,
 * ...: each column is processed by one thread through all pairs in order,
 * so no barrier is needed between pairs. */
__device__ void split_rows(float *__restrict__ cent, int64_t d, const int64_t *__restrict__ pairs,
                           int64_t count, int64_t base) {
  const float up = 1.0f + 1.0f / 1024.0f, down = 1.0f - 1.0f / 1024.0f;
  for (int64_t p = 0; p < count; p++) {
    float *dst = cent + (pairs[2 * p] + base) * d;
    float *src = cent + (pairs[2 * p + 1] + base) * d;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const float v = src[j];
      const bool even = (j % 2) == 0;
      dst[j] = __fmul_rn(v, even ? up : down);
      src[j] = __fmul_rn(v, even ? down : up);
    }
  }
}

__global__ void splits(float *__restrict__ cent, int64_t d,
                       const int64_t *__restrict__ pairs, int64_t count) {
  split_rows(cent, d, pairs, count, 0);
}

__device__ __forceinline__ unsigned long long device_clock() {
  unsigned long long t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__global__ void clock_stamp(unsigned long long *stamps, const int *iteration) {
  stamps[iteration ? 2 * (int64_t)*iteration + 1 : 0] = device_clock();
}

/* A block per problem (fkm_tail_args): the records, then the plan
 * (kernels/split_block.cuh) and the splits of the rows. */
__global__ void __launch_bounds__(THREADS) iteration_tail(fkm_tail_args a) {
  __shared__ fkm_mt19937 rng;
  __shared__ long long nsplit;
  const int64_t p = blockIdx.x, k = a.k, kk = a.k - a.k_frozen;
  const int64_t it = *a.iteration;
  const int64_t *hist = a.hist64 + p * k;
  int64_t *hrec = a.hist_records + (it * a.problems + p) * k;
  for (int64_t j = threadIdx.x; j < k; j += blockDim.x) hrec[j] = hist[j];
  float *h = a.counts + p * k + a.k_frozen;
  if (threadIdx.x == 0) nsplit = 0;
  int empty = 0;
  for (int64_t j = threadIdx.x; j < kk; j += blockDim.x) empty |= h[j] == 0;
  if (__syncthreads_or(empty)) {
    int64_t *pairs = a.pairs + 2 * p * k;
    const int64_t np = fkm_split::block_split_pairs(h, kk, a.n_train, &rng, pairs);
    if (threadIdx.x == 0) nsplit = np;
    split_rows(a.centroids, a.d, pairs, np, p * k + a.k_frozen);
  }
  if (threadIdx.x == 0) {
    a.records[it * a.problems + p] = fkm_iteration_record{a.obj[p], nsplit};
    __threadfence();
    if (atomicAdd(a.done, 1u) == gridDim.x - 1) { /* the last block */
      *a.done = 0;
      a.stamps[2 * it + 2] = device_clock();
      *a.iteration = (int)(it + 1);
    }
  }
}

/* The plan alone, a block per problem (fkm_launch_split_plan). */
__global__ void __launch_bounds__(THREADS)
    split_plan(float *counts, int64_t k, int64_t k_frozen, int64_t n_train, int64_t *pairs,
               long long *nsplit) {
  __shared__ fkm_mt19937 rng;
  const int64_t p = blockIdx.x;
  const int64_t np = fkm_split::block_split_pairs(counts + p * k + k_frozen, k - k_frozen,
                                                  n_train, &rng, pairs + 2 * p * k);
  if (threadIdx.x == 0) nsplit[p] = np;
}

/* One thread per row (the norm is a chain in j): fvec_renorm_L2, its norm
 * in the profile's loop order. */
__global__ void post_process(float *__restrict__ cent, int64_t k, int64_t d,
                             int spherical, int int_centroids, fkm_loop_order norm) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= k) return;
  float *ci = cent + i * d;
  if (spherical) {
    const float nr = fkm_loop_eval(&norm, FKM_PROBE_NORM, ci, ci, d);
    if (nr > 0.0f) {
      const float inv = __double2float_rn(__ddiv_rn(1.0, (double)__fsqrt_rn(nr)));
      for (int64_t j = 0; j < d; j++) ci[j] = __fmul_rn(ci[j], inv);
    }
  }
  if (int_centroids)
    for (int64_t j = 0; j < d; j++) ci[j] = roundf(ci[j]);
}

}  // namespace

extern "C" cudaError_t fkm_launch_update(const fkm_update_args *a, cudaStream_t s) {
  const int64_t moving = a->k / a->k_problem * (a->k_problem - a->k_frozen);
  if (moving > 0) {
    cudaError_t e = launch_sums(a, moving, s);
    if (e != cudaSuccess) return e;
  }
  finish_counts<<<blocks_for(a->k), THREADS, 0, s>>>(a->hist, a->k, a->k_problem, a->k_frozen,
                                                     a->counts, a->hist64);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_update_chunk(const fkm_update_args *a, float *acc,
                                               float *cnt, int64_t *seen, cudaStream_t s) {
  const int64_t moving = a->k / a->k_problem * (a->k_problem - a->k_frozen);
  const int64_t pairs = moving * a->d;
  const bool deep = pairs < (1 << 17); /* as launch_sums */
  if (pairs > 0) {
    auto kern = !a->weights          ? (deep ? chunk_sums<0, 32> : chunk_sums<0, 8>)
                : a->weighted_fma ? (deep ? chunk_sums<2, 32> : chunk_sums<2, 8>)
                                  : (deep ? chunk_sums<1, 32> : chunk_sums<1, 8>);
    kern<<<blocks_for(pairs), THREADS, 0, s>>>(a->x, a->weights, a->rows, a->hist, a->offsets,
                                               a->d, pairs, a->k_problem, a->k_frozen, acc,
                                               cnt);
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  add_hist<<<blocks_for(a->k), THREADS, 0, s>>>(a->hist, a->k, seen);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_rank_chains(const fkm_update_args *a, int64_t c0, int64_t c1,
                                               float *part, cudaStream_t s) {
  const int64_t cells = (c1 - c0) * (a->d + 1);
  if (cells <= 0 || a->n == 0) return cudaSuccess;
  auto kern = !a->weights ? rank_chains<0> : a->weighted_fma ? rank_chains<2> : rank_chains<1>;
  kern<<<blocks_for(cells), THREADS, 0, s>>>(a->x, a->weights, a->rows, a->hist, a->offsets,
                                             a->d, cells, a->k_frozen + c0, part);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_update_finish(const fkm_update_args *a, const float *acc,
                                                const float *cnt, const int64_t *seen,
                                                cudaStream_t s) {
  if (a->k * a->d > 0)
    finish_means<<<blocks_for(a->k * a->d), THREADS, 0, s>>>(
        acc, cnt, seen, a->k, a->d, a->k_problem, a->k_frozen, a->weights != NULL,
        a->centroids, a->counts, a->hist64);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_chains_scale(const float *msg, int64_t k, int64_t d,
                                               int64_t k_frozen, float *centroids,
                                               float *counts, cudaStream_t s) {
  if (k * d > 0)
    chains_scale<<<blocks_for(k * d), THREADS, 0, s>>>(msg, k, d, k_frozen, centroids, counts);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_widen_hist(const int32_t *hist, int64_t k, int64_t *out,
                                             cudaStream_t s) {
  if (k > 0) widen_hist<<<blocks_for(k), THREADS, 0, s>>>(hist, k, out);
  return cudaGetLastError();
}

namespace {

/* launch(p0, np) for each slice of at most 65535 problems (gridDim.y's
 * limit: problem p0 + blockIdx.y), until one fails. */
template <class F> cudaError_t problem_slices(int64_t problems, F launch) {
  for (int64_t p0 = 0; p0 < problems; p0 += 65535) {
    const cudaError_t e = launch(p0, (unsigned)(problems - p0 < 65535 ? problems - p0 : 65535));
    if (e != cudaSuccess) return e;
  }
  return cudaGetLastError();
}

}  // namespace

extern "C" cudaError_t fkm_launch_objective_labels(const int32_t *labels, int64_t r0,
                                                   int64_t r1, int64_t problems, int64_t stride,
                                                   fkm_objective *out, cudaStream_t s) {
  const int64_t n = r1 - r0;
  return problem_slices(problems, [&](int64_t p0, unsigned np) {
    if (r0 == 0) objective_reset<<<dim3(1, np), 1, 0, s>>>(out + p0);
    if (n <= 0) return cudaGetLastError();
    const unsigned g = blocks_for(n) < 1024u ? blocks_for(n) : 1024u;
    objective_bad<<<dim3(g, np), THREADS, 0, s>>>(labels + p0 * stride, r0, r1, stride, out + p0);
    return cudaGetLastError();
  });
}

namespace {

/* values a piece of the chains (fkm_launch_objective) */
constexpr int64_t OBJ_PIECE = (int64_t)1 << 22;

/* fkm_launch_objective's chains over rows [r0, r1) (the reset and label
 * check done), with the scratch layout l of the whole call. */
cudaError_t launch_chains(const float *dist, int64_t r0, int64_t r1, int64_t problems,
                          int64_t stride, fkm_objective *out, void *scratch,
                          const ObjectiveScratch &l, cudaStream_t s, cudaStream_t aux,
                          cudaEvent_t ev_fork, cudaEvent_t ev_join) {
  const int64_t n = r1 - r0;
  if (n <= 0) return cudaGetLastError();
  return problem_slices(problems, [&](int64_t p0, unsigned np) {
    cudaError_t e;
    const float *dp = dist + p0 * stride;
    fkm_objective *op = out + p0;
    char *base = static_cast<char *>(scratch) + (size_t)p0 * l.bytes;
    double *est = reinterpret_cast<double *>(base + l.est);
    fkm_fc_sum *bsum = reinterpret_cast<fkm_fc_sum *>(base + l.bsum);
    fkm_fc_sum *gsum = reinterpret_cast<fkm_fc_sum *>(base + l.gsum);
    const size_t ss = l.bytes;
    /* the double chain (its own scratch and result field) beside the float
     * chain: both are sequential walks of a single warp */
    const cudaStream_t ds = aux ? aux : s;
    if (aux) {
      if ((e = cudaEventRecord(ev_fork, s)) != cudaSuccess) return e;
      if ((e = cudaStreamWaitEvent(aux, ev_fork, 0)) != cudaSuccess) return e;
    }
    DBlock *blk = reinterpret_cast<DBlock *>(base);
    const unsigned nb = (unsigned)((n + DBLOCK * DWARPS - 1) / (DBLOCK * DWARPS));
    dchain_blocks<<<dim3(nb, np), 32 * DWARPS, 0, ds>>>(dp, r0, r1, stride, blk, ss);
    dchain_seq<<<dim3(1, np), 32, 0, ds>>>(dp, r0, r1, stride, blk, ss, op);
    const unsigned eb = (unsigned)((fc_blocks(n) + FC_EST_WARPS - 1) / FC_EST_WARPS);
    fchain_estimate<<<dim3(eb, np), 32 * FC_EST_WARPS, 0, s>>>(dp, r0, r1, stride, est, ss);
    fchain_prefix<<<dim3(1, np), FC_SCAN, 0, s>>>(est, fc_blocks(n), ss, op);
    fchain_summarise<<<dim3((unsigned)fc_groups(n), np), 32 * FC_WARPS, 0, s>>>(
        dp, r0, r1, stride, est, bsum, gsum, ss);
    fchain_walk<<<dim3(1, np), 32, 0, s>>>(dp, r0, r1, stride, bsum, gsum, ss, op);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    if (aux) {
      if ((e = cudaEventRecord(ev_join, aux)) != cudaSuccess) return e;
      if ((e = cudaStreamWaitEvent(s, ev_join, 0)) != cudaSuccess) return e;
    }
    return cudaSuccess;
  });
}

}  // namespace

extern "C" cudaError_t fkm_launch_objective(const float *dist, const int32_t *labels,
                                            int64_t r0, int64_t r1, int64_t problems,
                                            int64_t stride, fkm_objective *out,
                                            void *scratch, cudaStream_t s,
                                            cudaStream_t aux, cudaEvent_t ev_fork,
                                            cudaEvent_t ev_join) {
  const int64_t n = r1 - r0;
  const ObjectiveScratch l = objective_scratch(n);
  if (n > 0 && n <= OBJ_SMALL_MAX) /* a thread block a problem, everything in one launch */
    return problem_slices(problems, [&](int64_t p0, unsigned np) {
      objective_small<<<dim3(1, np), 32 * OBJ_SMALL_WARPS, 0, s>>>(
          dist + p0 * stride, labels + p0 * stride, r0, r1, stride,
          static_cast<char *>(scratch) + (size_t)p0 * l.bytes, l, out + p0);
      return cudaGetLastError();
    });
  /* the reset and the label check first, on s */
  cudaError_t e = fkm_launch_objective_labels(labels, r0, r1, problems, stride, out, s);
  if (e != cudaSuccess) return e;
  /* The chains in pieces of at most OBJ_PIECE values, each from the exact
   * state the one before left: the estimate of s at a block's start (a
   * double sum) then drifts from the float chain by at most OBJ_PIECE
   * values, which keeps its exponent within the summaries' candidates
   * even where the float chain has saturated (docs/certification.md
   * section 3). */
  for (int64_t q0 = r0; q0 < r1; q0 += OBJ_PIECE) {
    const int64_t q1 = r1 - q0 < OBJ_PIECE ? r1 : q0 + OBJ_PIECE;
    e = launch_chains(dist, q0, q1, problems, stride, out, scratch, l, s, aux, ev_fork, ev_join);
    if (e != cudaSuccess) return e;
  }
  return cudaGetLastError();
}

extern "C" size_t fkm_objective_scratch_bytes(int64_t n, int64_t problems) {
  return objective_scratch(n).bytes * (size_t)(problems > 0 ? problems : 1);
}

extern "C" cudaError_t fkm_launch_splits(float *centroids, int64_t d,
                                         const int64_t *pairs, int64_t count,
                                         cudaStream_t s) {
  if (count == 0) return cudaSuccess;
  splits<<<1, THREADS, 0, s>>>(centroids, d, pairs, count);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_iteration_tail(const fkm_tail_args *a, cudaStream_t s) {
  if (a->problems < 1 || a->problems > INT_MAX) return cudaErrorInvalidValue;
  iteration_tail<<<(unsigned)a->problems, THREADS, 0, s>>>(*a);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_split_plan(float *counts, int64_t problems, int64_t k,
                                             int64_t k_frozen, int64_t n_train, int64_t *pairs,
                                             long long *nsplit, cudaStream_t s) {
  if (problems < 1 || problems > INT_MAX) return cudaErrorInvalidValue;
  split_plan<<<(unsigned)problems, THREADS, 0, s>>>(counts, k, k_frozen, n_train, pairs, nsplit);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_clock_stamp(unsigned long long *stamps, const int *iteration,
                                              cudaStream_t s) {
  clock_stamp<<<1, 1, 0, s>>>(stamps, iteration);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_post_process(float *centroids, int64_t k, int64_t d,
                                               int spherical, int int_centroids,
                                               const fkm_loop_order *norm, cudaStream_t s) {
  if (!spherical && !int_centroids) return cudaSuccess;
  post_process<<<blocks_for(k), THREADS, 0, s>>>(centroids, k, d, spherical,
                                                 int_centroids, *norm);
  return cudaGetLastError();
}
