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
#include "faiss_scan.h"
#include "fchain.h"
#include "packed.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <float.h>

#include <type_traits>

#include <cub/block/block_reduce.cuh>
#include <cub/block/block_scan.cuh>
#include <cub/device/device_radix_sort.cuh>

namespace {

constexpr int THREADS = 256;

unsigned blocks_for(int64_t count) {
  return (unsigned)((count + THREADS - 1) / THREADS);
}

/* Bits needed so that labels 0..k-1 and the all-ones pattern of -1 (seen in
 * those bits) sort as k distinct, ordered keys: -1 lands after every label. */
int key_bits(int64_t k) {
  int b = 1;
  while (b < 32 && ((int64_t)1 << b) <= k) b++;
  return b;
}

__global__ void iota_kernel(int32_t *out, int64_t n) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) out[i] = (int32_t)i;
}

/* Batched runs: the global centroid row of each problem-local label. */
__global__ void compose_keys(const int32_t *__restrict__ labels, int64_t n, int64_t rows,
                             int64_t k_problem, int32_t *__restrict__ out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int32_t l = labels[i];
  out[i] = l < 0 ? -1 : (int32_t)(l + i / rows * k_problem);
}

/* Index of the first sorted key >= c, keys compared in their low key bits
 * (mask): the sort's order, where -1 (all ones) lands after every label. */
__device__ __forceinline__ int64_t lower_bound(const int32_t *__restrict__ keys, int64_t n,
                                               uint32_t mask, uint32_t c) {
  int64_t lo = 0, hi = n;
  while (lo < hi) {
    const int64_t mid = (lo + hi) >> 1;
    if (((uint32_t)keys[mid] & mask) < c) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/* Segment c of the sorted keys: offsets[c], hist[c] (one thread per
 * centroid, two binary searches; no atomics, no scan). */
__global__ void segments(const int32_t *__restrict__ keys, int64_t n, int64_t k, uint32_t mask,
                         int32_t *__restrict__ hist, int32_t *__restrict__ offsets) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= k) return;
  const int64_t b = lower_bound(keys, n, mask, (uint32_t)c);
  const int64_t e = lower_bound(keys, n, mask, (uint32_t)c + 1);
  offsets[c] = (int32_t)b;
  hist[c] = (int32_t)(e - b);
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
constexpr int LONG_SEG = 1024, MID_SEG = 512, LR = 64, LS = 4;

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

/* Row sources of centroid_sums_long_async: 32 columns per item (lane l's
 * column j0 + l), a row's slice of bytes(j0) bytes (a multiple of 16) at
 * at(row, j0, g), whose 16-byte piece i belongs at piece i ^ g of the
 * staged row; value() reads lane l's element of a staged row. */

/* x in float (d % 4 == 0, 16-byte aligned): 4 min(32, d - j0) bytes. */
struct FloatRows {
  static constexpr int ROW_BYTES = 128;
  const float *x;
  int64_t d;
  __device__ const void *at(int32_t row, int64_t j0, int &g) const {
    g = 0;
    return x + (int64_t)row * d + j0;
  }
  __device__ unsigned bytes(int64_t j0) const { return 4u * (unsigned)(d - j0 < 32 ? d - j0 : 32); }
  __device__ float value(const uint8_t *row, int lane) const {
    return reinterpret_cast<const float *>(row)[lane];
  }
};

/* FKM_ASSIGN_FAST's packed 16-bit copy of x (kernels/packed.cuh; exact: the
 * data's own type, unscaled): a 32-column slice of a row is one half of its
 * 128 bytes in a tile (the other half where r % 8 >= 4), 64 contiguous
 * bytes whose 16-byte pieces are permuted by the row's swizzle (piece i
 * holds the slice's piece i ^ (r % 4)). Half the bytes of the float rows.
 * problems packed matrices of rows rows each, stride elements apart
 * (batched runs: global row = problem rows + local row). */
template <typename T> struct PackedRows {
  static constexpr int ROW_BYTES = 64; /* 32 columns of 16 bits: half a tile row */
  static_assert(2 * 32 * 2 == FKM_MMA_BK * 2 && FKM_SEGS_PER_ROW == 8,
                "a 32-column slice is half of a 128-byte tile row (packed.cuh)");
  const uint16_t *xp;
  int64_t dp, stride;
  uint32_t rows;
  __device__ const void *at(int32_t row, int64_t j0, int &g) const {
    const uint32_t b = (uint32_t)row / rows, r = (uint32_t)row - b * rows;
    g = (int)(r & 3u);
    return xp + (int64_t)b * stride + packed_at(r, j0 & ~(int64_t)(FKM_MMA_BK - 1), dp) -
           (r & (FKM_SEGS_PER_ROW - 1u)) * FKM_SEG_ELEMS + (((j0 >> 5) & 1) ^ ((r >> 2) & 1)) * 32;
  }
  __device__ unsigned bytes(int64_t) const { return 64u; }
  __device__ float value(const uint8_t *row, int lane) const {
    const unsigned short b = reinterpret_cast<const unsigned short *>(row)[lane];
    if constexpr (std::is_same<T, __half>::value)
      return __half2float(__ushort_as_half(b));
    else
      return __bfloat162float(__ushort_as_bfloat16(b));
  }
};

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
constexpr int BLR = 32, AS = 8; /* rows per stage, stages */

template <class Src>
__global__ void __launch_bounds__(32)
centroid_sums_long_async(Src src, const int32_t *__restrict__ rows,
                         const int32_t *__restrict__ hist, const int32_t *__restrict__ offsets,
                         int64_t d, int64_t kp, int64_t k_frozen, int64_t total, int64_t min_len,
                         float *__restrict__ centroids, float *__restrict__ counts) {
  constexpr int G = Src::ROW_BYTES / 16, RPP = 32 / G; /* pieces per row, rows per pass */
  __shared__ __align__(128) uint8_t tile[AS][BLR][Src::ROW_BYTES];
  const int lane = threadIdx.x, q = lane % G;
  const int64_t slices = (d + 31) / 32;
  for (int64_t item = blockIdx.x; item < total; item += gridDim.x) {
    const int64_t c = moving_centroid(item / slices, kp, k_frozen);
    const int64_t len = hist[c];
    if (len <= min_len) continue;
    const int64_t b = offsets[c], j0 = item % slices * 32, nst = (len + BLR - 1) / BLR;
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
    float sum = 0.0f;
    const bool col = j0 + lane < d;
    for (int64_t st = 0; st < nst; st++) {
      cp_async_wait<AS - 2>();
      /* stage st is in shared memory for every lane, and every lane is done
       * with stage st - 1, whose buffer the refill below takes */
      __syncwarp();
      const int m = (int)(len - st * BLR < BLR ? len - st * BLR : BLR);
      const uint8_t(*t)[Src::ROW_BYTES] = tile[st % AS];
      if (col) {
        if (m == BLR) {
#pragma unroll
          for (int r = 0; r < BLR; r++) sum = __fadd_rn(sum, src.value(t[r], lane));
        } else {
          for (int r = 0; r < m; r++) sum = __fadd_rn(sum, src.value(t[r], lane));
        }
      }
      const int32_t row = nxt;
      nxt = index(st + AS);
      issue(st + AS - 1, row);
    }
    cp_async_wait<0>();
    __syncwarp(); /* the ring is free for the next item */
    store_mean(sum, unweighted_count(len), c, d, j0 + lane, col, centroids, counts);
  }
}

/* moving: the non-frozen centroids of all problems, pairs = moving * d. */
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
  const int64_t long_min = avg >= 2 * LONG_SEG          ? LONG_SEG
                           : async16 && avg >= MID_SEG ? MID_SEG / 2
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
  const int64_t total = moving * ((a->d + 31) / 32);
  const unsigned grid = (unsigned)(total < 4096 ? total : 4096);
  const cudaStream_t ls = a->aux ? a->aux : s;
  /* unweighted: the 16-byte cp.async kernel, from the packed 16-bit copy
   * when there is one, else from float x where d % 4 == 0 and x is 16-byte
   * aligned */
  /* about the blocks that fit at once; warps take further items in turn */
  const unsigned bgrid = grid < 2048 ? grid : 2048;
  auto sums = [&](auto src) {
    centroid_sums_long_async<<<bgrid, 32, 0, ls>>>(src, a->rows, a->hist, a->offsets, a->d,
                                                   a->k_problem, a->k_frozen, total, long_min,
                                                   a->centroids, a->counts);
  };
  if (async16 && a->xp) {
    const int64_t dp = fkm_pack_dims(a->d);
    if (a->xp_dtype == FKM_DTYPE_F16)
      sums(PackedRows<__half>{a->xp, dp, a->xp_stride, (uint32_t)a->xp_rows});
    else
      sums(PackedRows<__nv_bfloat16>{a->xp, dp, a->xp_stride, (uint32_t)a->xp_rows});
  } else if (async16) {
    sums(FloatRows{a->x, a->d});
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

__global__ void finish_counts(const int32_t *__restrict__ hist, int64_t k, int64_t kp,
                              int64_t k_frozen, float *__restrict__ counts,
                              int64_t *__restrict__ hist64) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= k) return;
  hist64[c] = hist[c];
  if (c % kp < k_frozen) counts[c] = 0.0f;
}

/* The objective (docs/contract.md section 4): obj = fl(...fl(fl(0 + d0) +
 * d1)...), obj_double likewise in double, both in point order: sequential
 * chains by definition (no partial sums may be combined). The float chain is
 * cut into blocks of FKM_FC_BLOCK values and groups of FKM_FC_GROUP blocks,
 * summarised per candidate exponent (kernels/fchain.h): fchain_estimate and
 * fchain_prefix estimate s at each block's start, fchain_summarise builds
 * the summaries in parallel, fchain_walk (one warp) applies group summaries
 * and adds value by value (__fadd_rn) the blocks it refuses. The double
 * chain adds blocks exactly where their values share a grid (dchain_blocks,
 * dchain_seq). Why both are bit-exact: docs/certification.md section 3. */
/* Batched objectives: blockIdx.y is the problem; its values start
 * blockIdx.y * xs elements further, its scratch blockIdx.y * ss bytes
 * further, its result is o[blockIdx.y]. */
template <typename T> __device__ __forceinline__ T *problem_ptr(T *p, size_t bytes) {
  return reinterpret_cast<T *>(reinterpret_cast<uintptr_t>(p) + (size_t)blockIdx.y * bytes);
}

__global__ void objective_reset(fkm_objective *o) {
  o += blockIdx.y;
  o->obj = 0.0f;
  o->obj_double = 0.0;
  o->bad_label = -1;
}

__global__ void objective_bad(const int32_t *__restrict__ labels, int64_t r0, int64_t r1,
                              int64_t xs, fkm_objective *o) {
  labels += blockIdx.y * xs;
  o += blockIdx.y;
  long long bad = -1;
  for (int64_t i = r0 + (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < r1;
       i += (int64_t)gridDim.x * blockDim.x)
    if (labels[i] < 0) {
      bad = i;
      break;
    }
  if (bad >= 0) atomicMin((unsigned long long *)&o->bad_label, (unsigned long long)bad);
}

constexpr int FC_LANE = FKM_FC_BLOCK / 32; /* values per lane of a block's warp */
constexpr int FC_WARPS = 32;                /* warps per group in fchain_summarise */

static_assert(FKM_FC_GROUP == 32, "a group is one warp's lanes");
static_assert(FKM_FC_GROUP % FC_WARPS == 0, "whole blocks per warp");

__host__ __device__ int64_t fc_blocks(int64_t n) { return (n + FKM_FC_BLOCK - 1) / FKM_FC_BLOCK; }
__host__ __device__ int64_t fc_groups(int64_t n) { return (fc_blocks(n) + FKM_FC_GROUP - 1) / FKM_FC_GROUP; }

/* The estimate of s, part 1: one thread per value, one thread block per
 * block of values; est[b] = the double sum of block b's finite values (a
 * fixed reduction tree: deterministic, and only a guess). */
__global__ void __launch_bounds__(FKM_FC_BLOCK)
fchain_estimate(const float *__restrict__ dist, int64_t r0, int64_t r1, int64_t xs,
                double *__restrict__ est, size_t ss) {
  dist += blockIdx.y * xs;
  est = problem_ptr(est, ss);
  using Reduce = cub::BlockReduce<double, FKM_FC_BLOCK>;
  __shared__ typename Reduce::TempStorage tmp;
  const int64_t i = r0 + (int64_t)blockIdx.x * FKM_FC_BLOCK + threadIdx.x;
  const float v = i < r1 ? dist[i] : 0.0f;
  const double t = Reduce(tmp).Sum(fabsf(v) <= FLT_MAX ? (double)v : 0.0);
  if (threadIdx.x == 0) est[blockIdx.x] = t;
}

/* Part 2, one thread block: est[b] := obj + est[0] + ... + est[b - 1], each
 * thread scanning a contiguous slice around one block-wide scan. */
constexpr int FC_SCAN = 1024;

__global__ void __launch_bounds__(FC_SCAN)
fchain_prefix(double *__restrict__ est, int64_t nb, size_t ss, const fkm_objective *o) {
  est = problem_ptr(est, ss);
  o += blockIdx.y;
  using Scan = cub::BlockScan<double, FC_SCAN>;
  __shared__ typename Scan::TempStorage tmp;
  const int64_t per = (nb + FC_SCAN - 1) / FC_SCAN;
  const int64_t b0 = threadIdx.x * per, b1 = b0 + per < nb ? b0 + per : nb;
  double mine = 0.0;
  for (int64_t b = b0; b < b1; b++) mine += est[b];
  double run;
  Scan(tmp).ExclusiveSum(mine, run);
  run += (double)o->obj;
  for (int64_t b = b0; b < b1; b++) {
    const double v = est[b];
    est[b] = run;
    run += v;
  }
}

__device__ fkm_fc_run shfl_down_run(const fkm_fc_run &x, int off) {
  fkm_fc_run y;
  for (int p = 0; p < 2; p++) {
    y.d[p] = __shfl_down_sync(~0u, x.d[p], off);
    y.lo[p] = __shfl_down_sync(~0u, x.lo[p], off);
    y.hi[p] = __shfl_down_sync(~0u, x.hi[p], off);
  }
  y.bad = __shfl_down_sync(~0u, x.bad, off);
  return y;
}

/* Joins the 32 lanes' summaries (same base) in lane order into lane 0. The
 * join is exact integer arithmetic and associative, so this tree gives the
 * sequential fold's summary. */
__device__ void warp_join(fkm_fc_sum *x) {
  const int lane = threadIdx.x % 32;
  for (int off = 1; off < 32; off <<= 1) {
    const bool take = (lane & (2 * off - 1)) == 0;
    for (int c = 0; c < 3; c++) {
      const fkm_fc_run y = shfl_down_run(x->run[c], off);
      if (take) x->run[c] = fkm_fc_run_join(&x->run[c], &y);
    }
    const uint32_t f = __shfl_down_sync(~0u, x->flags, off);
    if (take) x->flags &= f;
  }
}

/* One thread block per group: warp w summarises block w of the
 * group, lane l pushing values 8l .. 8l + 7 of a block at its three
 * candidate exponents, then the lanes joined; warp 0 then joins the group's
 * blocks at the first block's candidates (a block lacking one makes the
 * group's run at that exponent bad). Layout: bsum (nb), gsum (ng). */
__global__ void __launch_bounds__(32 * FC_WARPS)
fchain_summarise(const float *__restrict__ dist, int64_t r0, int64_t r1, int64_t xs,
                 const double *__restrict__ est, fkm_fc_sum *__restrict__ bsum,
                 fkm_fc_sum *__restrict__ gsum, size_t ss) {
  dist += blockIdx.y * xs;
  est = problem_ptr(est, ss);
  bsum = problem_ptr(bsum, ss);
  gsum = problem_ptr(gsum, ss);
  __shared__ fkm_fc_sum blk[FKM_FC_GROUP];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n = r1 - r0, nb = fc_blocks(n), b0 = (int64_t)blockIdx.x * FKM_FC_GROUP;
  const int bn = (int)(nb - b0 < FKM_FC_GROUP ? nb - b0 : FKM_FC_GROUP);
  for (int k = warp * (FKM_FC_GROUP / FC_WARPS); k < (warp + 1) * (FKM_FC_GROUP / FC_WARPS) && k < bn;
       k++) {
    const int64_t b = b0 + k;
    fkm_fc_sum x;
    fkm_fc_sum_init(&x, fkm_fc_base(__float_as_uint(__double2float_rn(est[b]))));
    const int64_t i0 = b * FKM_FC_BLOCK + lane * FC_LANE;
#pragma unroll
    for (int t = 0; t < FC_LANE; t++)
      if (i0 + t < n) fkm_fc_sum_push(&x, __float_as_uint(dist[r0 + i0 + t]));
    warp_join(&x);
    if (lane == 0) {
      bsum[b] = x;
      blk[k] = x;
    }
  }
  __syncthreads();
  if (warp != 0) return;
  const int gbase = blk[0].base;
  fkm_fc_sum x;
  fkm_fc_sum_init(&x, gbase);
  if (lane < bn) {
    for (int c = 0; c < 3; c++) x.run[c] = fkm_fc_run_at(&blk[lane], gbase + c);
    x.flags = blk[lane].flags;
  }
  warp_join(&x);
  if (lane == 0) gsum[blockIdx.x] = x;
}

/* fkm_fc_apply_prefix on a warp: lane i holds summary x[i] (m <= 32, in
 * shared memory), the lanes scan the composed offsets (fkm_fc_then), lane i
 * checks its run at S plus the offsets of the runs before it, and the
 * summaries before the first lane that does not fit are applied at once.
 * *s (finite, the same in every lane) is updated in every lane. */
__device__ int fc_apply_prefix(const fkm_fc_sum *x, int m, uint32_t *s) {
  const int lane = threadIdx.x % 32;
  int64_t S, lo, hi;
  const int ec = fkm_fc_decode(*s, &S, &lo, &hi), q = fkm_fc_odd(S);
  const fkm_fc_run *run = lane < m ? fkm_fc_run_for(&x[lane], ec) : nullptr;
  fkm_fc_step inc;
  inc.d[0] = run ? run->d[0] : 0;
  inc.d[1] = run ? run->d[1] : 0;
  for (int off = 1; off < 32; off <<= 1) { /* inclusive scan of the offsets */
    fkm_fc_step y;
    y.d[0] = __shfl_up_sync(~0u, inc.d[0], off);
    y.d[1] = __shfl_up_sync(~0u, inc.d[1], off);
    if (lane >= off) inc = fkm_fc_then(y, inc);
  }
  const int64_t incq = q ? inc.d[1] : inc.d[0];
  int64_t before = __shfl_up_sync(~0u, incq, 1); /* the runs before this lane's */
  if (lane == 0) before = 0;
  const bool fits = run && fkm_fc_fits(run, S + before, lo, hi);
  const unsigned bad = __ballot_sync(~0u, lane < m && !fits);
  const int n = bad ? __ffs((int)bad) - 1 : m;
  if (n == 0) return 0;
  const int64_t R = S + __shfl_sync(~0u, incq, n - 1);
  const unsigned nz = __ballot_sync(~0u, lane < n && (x[lane].flags & FKM_FC_NEGZERO));
  const unsigned first = n == 32 ? ~0u : (1u << n) - 1u;
  *s = fkm_fc_encode(R, ec, *s == 0x80000000u && (nz & first) == first);
  return n;
}

/* The longest prefix of x[0..m) that applies to s (every lane): the warp
 * step for a finite s, else one summary by fkm_fc_apply (an infinite s). */
__device__ int fc_advance(const fkm_fc_sum *x, int m, uint32_t *s) {
  if (((*s >> 23) & 0xffu) != 255u) return fc_apply_prefix(x, m, s);
  uint32_t t = *s;
  const int ok = threadIdx.x % 32 == 0 ? fkm_fc_apply(&x[0], &t) : 0;
  *s = __shfl_sync(~0u, t, 0);
  return __shfl_sync(~0u, ok, 0);
}

/* One warp walks the chain (s in every lane): 32 group summaries at a time
 * are staged in shared memory and applied by warp steps (fc_advance); a
 * group that does not apply has its block summaries staged and applied the
 * same way, and a block that does not apply has its values staged and
 * added one by one by lane 0 (FKM_FC_BLOCK dependent float additions).
 * Applying the summaries one at a time took about 200 us at 1M values on
 * an H100 (ncu); a warp step costs about what one such application did. */
__global__ void __launch_bounds__(32)
fchain_walk(const float *__restrict__ dist, int64_t r0, int64_t r1, int64_t xs,
            const fkm_fc_sum *__restrict__ bsum, const fkm_fc_sum *__restrict__ gsum, size_t ss,
            fkm_objective *o) {
  dist += blockIdx.y * xs;
  bsum = problem_ptr(bsum, ss);
  gsum = problem_ptr(gsum, ss);
  o += blockIdx.y;
  __shared__ fkm_fc_sum tile[32];
  __shared__ fkm_fc_sum blk[FKM_FC_GROUP];
  __shared__ float vals[FKM_FC_BLOCK];
  const int lane = threadIdx.x;
  const int64_t n = r1 - r0, nb = fc_blocks(n), ng = fc_groups(n);
  uint32_t s = __float_as_uint(o->obj);
  for (int64_t g0 = 0; g0 < ng; g0 += 32) {
    const int gn = (int)(ng - g0 < 32 ? ng - g0 : 32);
    __syncwarp();
    if (lane < gn) tile[lane] = gsum[g0 + lane];
    __syncwarp();
    for (int gi = 0; gi < gn;) {
      gi += fc_advance(tile + gi, gn - gi, &s);
      if (gi == gn) break;
      /* group g0 + gi does not apply: its blocks */
      const int64_t b0 = (g0 + gi) * FKM_FC_GROUP;
      const int bn = (int)(nb - b0 < FKM_FC_GROUP ? nb - b0 : FKM_FC_GROUP);
      __syncwarp();
      if (lane < bn) blk[lane] = bsum[b0 + lane];
      __syncwarp();
      for (int bi = 0; bi < bn;) {
        bi += fc_advance(blk + bi, bn - bi, &s);
        if (bi == bn) break;
        /* block b0 + bi does not apply: its values */
        const int64_t i0 = (b0 + bi) * FKM_FC_BLOCK;
        const int m = (int)(n - i0 < FKM_FC_BLOCK ? n - i0 : FKM_FC_BLOCK);
        __syncwarp();
        for (int t = lane; t < m; t += 32) vals[t] = dist[r0 + i0 + t];
        __syncwarp();
        if (lane == 0) {
          float f = __uint_as_float(s);
#pragma unroll 8
          for (int t = 0; t < m; t++) f = __fadd_rn(f, vals[t]);
          s = __float_as_uint(f);
        }
        s = __shfl_sync(~0u, s, 0);
        bi++;
      }
      gi++;
    }
  }
  if (lane == 0) o->obj = __uint_as_float(s);
}

constexpr int DBLOCK = 512;
constexpr int DCACHE = 512; /* block summaries dchain_seq stages at a time */

/* Exponent of the lowest set bit of a nonzero finite float. */
__device__ __forceinline__ int lowbit_exp(float v) {
  const uint32_t b = __float_as_uint(v), e = (b >> 23) & 0xffu;
  const uint32_t m = e ? ((b & 0x7fffffu) | 0x800000u) : (b & 0x7fffffu);
  return (e ? (int)e - 150 : -149) + __ffs((int)m) - 1;
}

/* Per block of DBLOCK values: glow (least low-bit exponent of the nonzero
 * values, 1 << 30 when all zero), T = sum of v / 2^glow (< 2^62), and ok (all
 * values finite, >= 0, and each v / 2^glow < 2^53). */
struct DBlock {
  unsigned long long t;
  int glow, ok;
};

__global__ void __launch_bounds__(DBLOCK)
dchain_blocks(const float *__restrict__ dist, int64_t r0, int64_t r1, int64_t xs,
              DBlock *__restrict__ out, size_t ss) {
  dist += blockIdx.y * xs;
  out = problem_ptr(out, ss);
  constexpr int W = DBLOCK / 32;
  __shared__ int s_glow[W], s_ok[W];
  __shared__ unsigned long long s_t[W];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int64_t i = r0 + (int64_t)blockIdx.x * DBLOCK + threadIdx.x;
  const float v = i < r1 ? dist[i] : 0.0f;
  const bool fin = v >= 0.0f && v <= FLT_MAX; /* false for NaN, inf, negatives */
  /* warp then block reductions (min, and, integer sum: exact in any order) */
  int glow = fin && v != 0.0f ? lowbit_exp(v) : 1 << 30;
  for (int off = 16; off > 0; off /= 2) glow = min(glow, __shfl_xor_sync(~0u, glow, off));
  if (lane == 0) s_glow[warp] = glow;
  __syncthreads();
  glow = s_glow[0];
  for (int w = 1; w < W; w++) glow = min(glow, s_glow[w]);
  unsigned long long q = 0;
  int ok = fin;
  if (fin && v != 0.0f) {
    const double qd = ldexp((double)v, -glow); /* an integer, exact */
    if (qd >= 0x1p53) ok = 0;
    else q = (unsigned long long)qd;
  }
  for (int off = 16; off > 0; off /= 2) q += __shfl_xor_sync(~0u, q, off);
  ok = __all_sync(~0u, ok);
  if (lane == 0) s_t[warp] = q, s_ok[warp] = ok;
  __syncthreads();
  if (threadIdx.x == 0) {
    unsigned long long t = 0;
    for (int w = 0; w < W; w++) t += s_t[w], ok &= s_ok[w];
    out[blockIdx.x] = DBlock{t, glow, ok};
  }
}

/* One exact block addition s += (the block's values) where the test below
 * holds; false (s untouched) elsewhere. The values are >= 0, finite, and
 * multiples of 2^glow; s is a multiple of 2^ls (its lowest set bit), so
 * every partial sum s + v_1 + ... + v_j is a multiple of 2^g, g =
 * min(ls, glow), and they increase: all are doubles (and each addition is
 * exact) iff the last, F = s + T 2^glow, is below 2^(g + 53). Then F =
 * (s / 2^g + T 2^(glow - g)) 2^g, an integer below 2^53 times 2^g: exact,
 * whether or not F leaves s's binade (growing sums cross one every
 * doubling; those blocks used to go value by value). */
__device__ __forceinline__ bool dblock_apply(const DBlock &db, double &s) {
  if (db.ok && db.glow == (1 << 30)) return true; /* all zeros: s + 0 = s for s >= +0 */
  if (!db.ok || !(s >= 0.0)) return false;
  const unsigned long long b = (unsigned long long)__double_as_longlong(s);
  const int be = (int)(b >> 52);
  if (be == 0) { /* +0 or subnormal: the general form, rare */
    const int g = s > 0.0 ? min(db.glow, -1074) : db.glow;
    const double S = ldexp(s, -g);
    const int sh = db.glow - g;
    if (!(S < 0x1p53 && sh < 53 && db.t < (1ull << (53 - sh)))) return false;
    const unsigned long long tot = (unsigned long long)S + (db.t << sh);
    if (tot >= (1ull << 53)) return false;
    s = ldexp((double)tot, g);
    return true;
  }
  const unsigned long long m = (b & ((1ull << 52) - 1)) | (1ull << 52);
  const int ls = be - 1075 + __ffsll((long long)m) - 1; /* s's lowest set bit */
  const int g = min(ls, db.glow), sh = db.glow - g;
  /* s / 2^g = m / 2^(g - E) (E = be - 1075 <= ls), an integer below 2^53
   * when g >= E (g < E: the values are finer than s's last bit, and F >= s
   * >= 2^(g + 53)); F below 2^(g + 53) and, with g + 53 <= 1023, finite */
  if (g < be - 1075 || sh >= 53 || db.t >= (1ull << (53 - sh)) || g + 53 > 1023) return false;
  const unsigned long long tot = (m >> (g - (be - 1075))) + (db.t << sh);
  if (tot >= (1ull << 53)) return false;
  s = ldexp((double)tot, g);
  return true;
}

/* One warp walks the double chain. While s is a positive normal double with
 * exponent field be, a block that passes dblock_apply's test adds the
 * integer T 2^(glow - E) to s's significand, so 32 consecutive blocks are
 * applied at once: each lane computes its block's addend for the current
 * be, a warp scan gives the running significands, and the walk advances to
 * the first block that is refused or would take the significand to 2^53
 * (the sum leaving s's binade). That block goes through dblock_apply (which
 * also takes it across the binade when that is exact, and covers s = 0 and
 * subnormal s) or value by value on lane 0, its values staged in shared
 * memory. The same bits as applying the blocks one by one: the
 * significand's partial sums are the scan's. The block summaries come
 * through shared memory DCACHE at a time (one memory latency per DCACHE
 * blocks, not per warp step). */
__global__ void __launch_bounds__(32)
dchain_seq(const float *__restrict__ dist, int64_t r0, int64_t r1, int64_t xs,
           const DBlock *__restrict__ blk, size_t ss, fkm_objective *o) {
  dist += blockIdx.y * xs;
  blk = problem_ptr(blk, ss);
  o += blockIdx.y;
  __shared__ float vals[DBLOCK];
  __shared__ DBlock cache[DCACHE]; /* blocks [cb, cb + DCACHE) */
  const int lane = threadIdx.x;
  double s = o->obj_double; /* the same in every lane */
  const int64_t nb = (r1 - r0 + DBLOCK - 1) / DBLOCK;
  int64_t b = 0, cb = -DCACHE;
  while (b < nb) {
    if (b + 32 > cb + DCACHE) { /* stage the next DCACHE summaries: one latency */
      cb = b;
      __syncwarp();
      for (int j = lane; j < DCACHE && cb + j < nb; j += 32) cache[j] = blk[cb + j];
      __syncwarp();
    }
    const unsigned long long sb = (unsigned long long)__double_as_longlong(s);
    const int be = (int)(sb >> 52); /* >= 2048 for a negative s */
    int adv = 0;
    if (be > 0 && be < 2047) {
      unsigned long long v = 0;
      bool ok = false;
      if (b + lane < nb) {
        const DBlock db = cache[b - cb + lane];
        if (db.ok && db.glow == (1 << 30)) {
          ok = true; /* all zeros */
        } else if (db.ok) {
          const int sh = db.glow - (be - 1075);
          ok = sh >= 0 && sh < 53 && db.t < (1ull << (53 - sh));
          v = ok ? db.t << sh : 0;
        }
      }
      for (int off = 1; off < 32; off <<= 1) { /* inclusive scan, < 2^58: no overflow */
        const unsigned long long y = __shfl_up_sync(~0u, v, off);
        if (lane >= off) v += y;
      }
      const unsigned long long m = (sb & ((1ull << 52) - 1)) | (1ull << 52);
      const unsigned bad = __ballot_sync(~0u, !(ok && m + v < (1ull << 53)));
      adv = bad ? __ffs((int)bad) - 1 : 32;
      if (adv > 0) {
        const unsigned long long mv = m + __shfl_sync(~0u, v, adv - 1);
        s = __longlong_as_double((long long)(((unsigned long long)be << 52) | (mv - (1ull << 52))));
        b += adv;
      }
    }
    if (adv == 32 || b >= nb) continue;
    /* block b on its own */
    int done = 0;
    if (lane == 0) done = (int)dblock_apply(cache[b - cb], s);
    if (!__shfl_sync(~0u, done, 0)) {
      const int64_t i0 = r0 + b * DBLOCK;
      const int m = (int)(r1 - i0 < DBLOCK ? r1 - i0 : DBLOCK);
      __syncwarp();
      for (int t = lane; t < m; t += 32) vals[t] = dist[i0 + t];
      __syncwarp();
      if (lane == 0)
        for (int t = 0; t < m; t++) s = __dadd_rn(s, (double)vals[t]);
    }
    s = __shfl_sync(~0u, s, 0);
    b++;
  }
  if (lane == 0) o->obj_double = s;
}

/* One block; thread t owns dimensions t, t + blockDim, ...: each column is
 * processed by one thread through all pairs in order, so no barrier is
 * needed between pairs. */
__global__ void splits(float *__restrict__ cent, int64_t d,
                       const int64_t *__restrict__ pairs, int64_t count) {
  const float up = 1.0f + 1.0f / 1024.0f, down = 1.0f - 1.0f / 1024.0f;
  for (int64_t p = 0; p < count; p++) {
    float *dst = cent + pairs[2 * p] * d;
    float *src = cent + pairs[2 * p + 1] * d;
    for (int64_t j = threadIdx.x; j < d; j += blockDim.x) {
      const float v = src[j];
      const bool even = (j % 2) == 0;
      dst[j] = __fmul_rn(v, even ? up : down);
      src[j] = __fmul_rn(v, even ? down : up);
    }
  }
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

/* The objective's scratch: the double chain's blocks, then the float
 * chain's estimates and block and group summaries, each 256-byte aligned. */
struct ObjectiveScratch {
  size_t est, bsum, gsum, bytes;
};

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

ObjectiveScratch objective_scratch(int64_t n) {
  ObjectiveScratch l;
  l.est = align256(sizeof(DBlock) * (size_t)((n + DBLOCK - 1) / DBLOCK + 1));
  l.bsum = l.est + align256(sizeof(double) * (size_t)fc_blocks(n));
  l.gsum = l.bsum + align256(sizeof(fkm_fc_sum) * (size_t)fc_blocks(n));
  l.bytes = l.gsum + align256(sizeof(fkm_fc_sum) * (size_t)fc_groups(n));
  return l;
}

}  // namespace

extern "C" cudaError_t fkm_group_temp_bytes(int64_t n, int64_t k, size_t *bytes) {
  return cub::DeviceRadixSort::SortPairs(nullptr, *bytes, (const int32_t *)nullptr,
                                         (int32_t *)nullptr, (const int32_t *)nullptr,
                                         (int32_t *)nullptr, n, 0, key_bits(k));
}

extern "C" cudaError_t fkm_launch_iota(int32_t *iota, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  iota_kernel<<<blocks_for(n), THREADS, 0, s>>>(iota, n);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_group(const fkm_group_args *a, cudaStream_t s) {
  const int32_t *keys = a->labels;
  cudaError_t e;
  if (a->problems > 1 && a->n > 0) {
    compose_keys<<<blocks_for(a->n), THREADS, 0, s>>>(a->labels, a->n, a->n / a->problems,
                                                      a->k / a->problems, a->composed);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    keys = a->composed;
  }
  size_t tb = a->temp_bytes;
  const int bits = key_bits(a->k);
  e = cub::DeviceRadixSort::SortPairs(a->temp, tb, keys, a->sorted_keys, a->iota, a->rows,
                                      a->n, 0, bits, s);
  if (e != cudaSuccess) return e;
  const uint32_t mask = bits >= 32 ? ~0u : (1u << bits) - 1u;
  segments<<<blocks_for(a->k), THREADS, 0, s>>>(a->sorted_keys, a->n, a->k, mask, a->hist,
                                                a->offsets);
  return cudaGetLastError();
}

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

extern "C" cudaError_t fkm_launch_objective(const float *dist, const int32_t *labels,
                                            int64_t r0, int64_t r1, int64_t problems,
                                            int64_t stride, fkm_objective *out,
                                            void *scratch, cudaStream_t s,
                                            cudaStream_t aux, cudaEvent_t ev_fork,
                                            cudaEvent_t ev_join) {
  const int64_t n = r1 - r0;
  const ObjectiveScratch l = objective_scratch(n);
  cudaError_t e;
  /* gridDim.y is at most 65535: problems in slices of that many */
  for (int64_t p0 = 0; p0 < problems; p0 += 65535) {
    const unsigned np = (unsigned)(problems - p0 < 65535 ? problems - p0 : 65535);
    const float *dp = dist + p0 * stride;
    fkm_objective *op = out + p0;
    char *base = static_cast<char *>(scratch) + (size_t)p0 * l.bytes;
    if (r0 == 0) objective_reset<<<dim3(1, np), 1, 0, s>>>(op);
    if (n <= 0) continue;
    const unsigned g = blocks_for(n) < 1024u ? blocks_for(n) : 1024u;
    objective_bad<<<dim3(g, np), THREADS, 0, s>>>(labels + p0 * stride, r0, r1, stride, op);
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
    const unsigned nb = (unsigned)((n + DBLOCK - 1) / DBLOCK);
    dchain_blocks<<<dim3(nb, np), DBLOCK, 0, ds>>>(dp, r0, r1, stride, blk, ss);
    dchain_seq<<<dim3(1, np), 32, 0, ds>>>(dp, r0, r1, stride, blk, ss, op);
    fchain_estimate<<<dim3((unsigned)fc_blocks(n), np), FKM_FC_BLOCK, 0, s>>>(dp, r0, r1, stride,
                                                                              est, ss);
    fchain_prefix<<<dim3(1, np), FC_SCAN, 0, s>>>(est, fc_blocks(n), ss, op);
    fchain_summarise<<<dim3((unsigned)fc_groups(n), np), 32 * FC_WARPS, 0, s>>>(
        dp, r0, r1, stride, est, bsum, gsum, ss);
    fchain_walk<<<dim3(1, np), 32, 0, s>>>(dp, r0, r1, stride, bsum, gsum, ss, op);
    if ((e = cudaGetLastError()) != cudaSuccess) return e;
    if (aux) {
      if ((e = cudaEventRecord(ev_join, aux)) != cudaSuccess) return e;
      if ((e = cudaStreamWaitEvent(s, ev_join, 0)) != cudaSuccess) return e;
    }
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

extern "C" cudaError_t fkm_launch_post_process(float *centroids, int64_t k, int64_t d,
                                               int spherical, int int_centroids,
                                               const fkm_loop_order *norm, cudaStream_t s) {
  if (!spherical && !int_centroids) return cudaSuccess;
  post_process<<<blocks_for(k), THREADS, 0, s>>>(centroids, k, d, spherical,
                                                 int_centroids, *norm);
  return cudaGetLastError();
}
