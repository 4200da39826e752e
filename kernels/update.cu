/* The sort-inverse update and the small per-iteration kernels around it.
 *
 * Order is the contract (SPEC section 5): each centroid's sum is one float
 * chain over its points in increasing training index, so partial sums can
 * never be combined. Parallelism comes from the (centroid, dimension) pairs:
 * one thread per pair walks its segment of the stably sorted row list. A
 * cluster holding half the points is therefore d chains of n/2 additions,
 * all running at once, while every other cluster proceeds in parallel: the
 * update's critical path is the largest cluster's length, not n.
 * Compiled with -fmad=false: nothing contracts, products are __fmul_rn.
 */
#include "update.cuh"

#include <float.h>

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

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

/* Integer histogram: atomics on int32 give the same counts in any order. */
__global__ void histogram(const int32_t *__restrict__ labels, int64_t n,
                          int64_t k, int32_t *__restrict__ hist) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const int32_t l = labels[i];
  if (l >= 0 && l < k) atomicAdd(&hist[l], 1);
}

/* Layout: x (n, d) row-major, rows (n) the training rows sorted by label,
 * offsets/hist (k) the segments. Thread t owns the pair (c, j) =
 * (k_frozen + t / d, t % d): for d >= 32 a warp covers consecutive
 * dimensions of one centroid (coalesced row reads, the row index is a
 * broadcast); for small d a warp covers several centroids. Each thread reads
 * its segment R rows at a time, all loads issued before the R in-order
 * additions, so R loads are in flight per thread. */
constexpr int R = 8;

template <bool WEIGHTED>
__global__ void __launch_bounds__(THREADS)
centroid_sums(const float *__restrict__ x, const float *__restrict__ w,
              const int32_t *__restrict__ rows, const int32_t *__restrict__ hist,
              const int32_t *__restrict__ offsets, int64_t d, int64_t k,
              int64_t k_frozen, float *__restrict__ centroids,
              float *__restrict__ counts) {
  const int64_t t = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (t >= (k - k_frozen) * d) return;
  const int64_t c = k_frozen + t / d, j = t % d;
  const int64_t b = offsets[c], e = b + hist[c];
  float sum = 0.0f, count = 0.0f;
  for (int64_t i = b; i < e; i += R) {
    float v[R], wv[R];
#pragma unroll
    for (int r = 0; r < R; r++) {
      if (i + r < e) {
        const int64_t row = rows[i + r];
        v[r] = x[row * d + j];
        wv[r] = WEIGHTED ? w[row] : 1.0f;
      } else {
        v[r] = 0.0f;
        wv[r] = 0.0f;
      }
    }
#pragma unroll
    for (int r = 0; r < R; r++) {
      if (i + r < e) {
        if (WEIGHTED) {
          count = __fadd_rn(count, wv[r]);
          sum = __fadd_rn(sum, __fmul_rn(v[r], wv[r]));
        } else {
          sum = __fadd_rn(sum, v[r]);
        }
      }
    }
  }
  /* Unweighted: adding 1.0f in float is exact up to 2^24 and saturates
   * there (2^24 + 1 rounds to even, back to 2^24). */
  if (!WEIGHTED) count = (float)(e - b < 16777216 ? e - b : 16777216);
  if (count != 0.0f) sum = __fmul_rn(sum, __fdiv_rn(1.0f, count));
  centroids[c * d + j] = sum;
  if (j == 0) counts[c] = count;
}

__global__ void finish_counts(const int32_t *__restrict__ hist, int64_t k,
                              int64_t k_frozen, float *__restrict__ counts,
                              int64_t *__restrict__ hist64) {
  const int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= k) return;
  hist64[c] = hist[c];
  if (c < k_frozen) counts[c] = 0.0f;
}

/* The objective (SPEC section 4): obj = fl(...fl(fl(0 + d0) + d1)...),
 * obj_double likewise in double, both in point order: sequential chains by
 * definition (no partial sums may be combined).
 * The float chain rounds at almost every step: one thread runs it from
 * shared memory while warps 2..7 stream the next stage in; its floor is n
 * dependent float additions (4 cycles each on Hopper).
 * The double chain mostly does not round (float addends, 53-bit sums): it is
 * cut into blocks of DBLOCK values; where a block's values are all >= 0 and
 * multiples of g = min(ulp(s), least low bit of the block) with
 * s + sum < 2^53 g, every partial sum in it is a multiple of g below 2^53 g,
 * exactly representable, so the block adds exactly: one integer sum
 * (dchain_blocks, in parallel) and one exact addition (dchain_seq). Other
 * blocks (a rounding step, a negative value) run value by value. */
__global__ void objective_reset(fkm_objective *o) {
  o->obj = 0.0f;
  o->obj_double = 0.0;
  o->bad_label = -1;
}

__global__ void objective_bad(const int32_t *__restrict__ labels, int64_t r0, int64_t r1,
                              fkm_objective *o) {
  long long bad = -1;
  for (int64_t i = r0 + (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < r1;
       i += (int64_t)gridDim.x * blockDim.x)
    if (labels[i] < 0) {
      bad = i;
      break;
    }
  if (bad >= 0) atomicMin((unsigned long long *)&o->bad_label, (unsigned long long)bad);
}

constexpr int CHAIN_THREADS = 256;
constexpr int CHAIN_STAGE = 4096; /* floats per shared-memory stage */
constexpr int LOADERS = 64;       /* threads 64..255 load */

__global__ void __launch_bounds__(CHAIN_THREADS)
objective_chain(const float *__restrict__ dist, int64_t r0, int64_t r1, fkm_objective *o) {
  __shared__ float4 buf[2][CHAIN_STAGE / 4];
  const int tid = threadIdx.x;
  const int64_t n = r1 - r0;
  const int64_t stages = (n + CHAIN_STAGE - 1) / CHAIN_STAGE;
  auto load = [&](int64_t st) {
    float *b = reinterpret_cast<float *>(buf[st & 1]);
    const int64_t base = st * CHAIN_STAGE;
    for (int t = tid - LOADERS; t < CHAIN_STAGE; t += CHAIN_THREADS - LOADERS)
      b[t] = base + t < n ? dist[r0 + base + t] : 0.0f;
  };
  float s = o->obj;
  if (tid >= LOADERS && stages > 0) load(0);
  __syncthreads();
  for (int64_t st = 0; st < stages; st++) {
    const int m = (int)(n - st * CHAIN_STAGE < CHAIN_STAGE ? n - st * CHAIN_STAGE : CHAIN_STAGE);
    const float4 *b = buf[st & 1];
    const float *f = reinterpret_cast<const float *>(b);
    if (tid >= LOADERS) {
      if (st + 1 < stages) load(st + 1);
    } else if (tid == 0) { /* the float chain, 8 vector loads ahead */
      int t = 0;
      for (; t + 32 <= m; t += 32) {
        float4 v[8];
#pragma unroll
        for (int r = 0; r < 8; r++) v[r] = b[t / 4 + r];
#pragma unroll
        for (int r = 0; r < 8; r++) {
          s = __fadd_rn(s, v[r].x);
          s = __fadd_rn(s, v[r].y);
          s = __fadd_rn(s, v[r].z);
          s = __fadd_rn(s, v[r].w);
        }
      }
      for (; t < m; t++) s = __fadd_rn(s, f[t]);
    }
    __syncthreads();
  }
  if (tid == 0) o->obj = s;
}

constexpr int DBLOCK = 512;

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
dchain_blocks(const float *__restrict__ dist, int64_t r0, int64_t r1, DBlock *__restrict__ out) {
  __shared__ int s_glow, s_ok;
  __shared__ unsigned long long s_t;
  const int64_t i = r0 + (int64_t)blockIdx.x * DBLOCK + threadIdx.x;
  const float v = i < r1 ? dist[i] : 0.0f;
  const bool fin = v >= 0.0f && v <= FLT_MAX; /* false for NaN, inf, negatives */
  if (threadIdx.x == 0) {
    s_glow = 1 << 30;
    s_ok = 1;
    s_t = 0ull;
  }
  __syncthreads();
  if (!fin) atomicAnd(&s_ok, 0);
  if (fin && v != 0.0f) atomicMin(&s_glow, lowbit_exp(v));
  __syncthreads();
  const int glow = s_glow;
  if (fin && v != 0.0f) {
    const double q = ldexp((double)v, -glow); /* an integer, exact */
    if (q >= 0x1p53) atomicAnd(&s_ok, 0);
    else atomicAdd(&s_t, (unsigned long long)q);
  }
  __syncthreads();
  if (threadIdx.x == 0) out[blockIdx.x] = DBlock{s_t, glow, s_ok};
}

/* One thread: the double chain over the blocks, exact block additions where
 * the test above holds, value by value elsewhere. */
__global__ void dchain_seq(const float *__restrict__ dist, int64_t r0, int64_t r1,
                           const DBlock *__restrict__ blk, fkm_objective *o) {
  double s = o->obj_double;
  const int64_t nb = (r1 - r0 + DBLOCK - 1) / DBLOCK;
  for (int64_t b = 0; b < nb; b++) {
    const DBlock db = blk[b];
    bool done = false;
    if (db.ok && db.glow == (1 << 30)) {
      done = true; /* all zeros: s + 0 = s for s >= +0 */
    } else if (db.ok && s >= 0.0) {
      int g = db.glow;
      if (s > 0.0) {
        const int ulp = (int)((__double_as_longlong(s) >> 52) & 0x7ff) - 1075;
        g = min(g, ulp);
      }
      /* s / 2^g and T 2^(glow - g) as integers below 2^53 */
      const double S = ldexp(s, -g);
      const int sh = db.glow - g;
      if (S < 0x1p53 && sh < 53 && db.t < (1ull << (53 - sh))) {
        const unsigned long long tt = db.t << sh;
        const unsigned long long tot = (unsigned long long)S + tt;
        if (tot < (1ull << 53)) {
          s = ldexp((double)tot, g);
          done = true;
        }
      }
    }
    if (!done) {
      const int64_t e = r0 + (b + 1) * DBLOCK < r1 ? r0 + (b + 1) * DBLOCK : r1;
      for (int64_t i = r0 + b * DBLOCK; i < e; i++) s = __dadd_rn(s, (double)dist[i]);
    }
  }
  o->obj_double = s;
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

/* One thread per row (the norm is a chain in j). */
__global__ void post_process(float *__restrict__ cent, int64_t k, int64_t d,
                             int spherical, int int_centroids) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= k) return;
  float *ci = cent + i * d;
  if (spherical) {
    double s = 0.0;
    for (int64_t j = 0; j < d; j++) s = __dadd_rn(s, (double)__fmul_rn(ci[j], ci[j]));
    const float nr = __double2float_rn(s);
    if (nr > 0.0f) {
      const float inv = __double2float_rn(__ddiv_rn(1.0, (double)__fsqrt_rn(nr)));
      for (int64_t j = 0; j < d; j++) ci[j] = __fmul_rn(ci[j], inv);
    }
  }
  if (int_centroids)
    for (int64_t j = 0; j < d; j++) ci[j] = roundf(ci[j]);
}

}  // namespace

extern "C" cudaError_t fkm_group_temp_bytes(int64_t n, int64_t k, size_t *bytes) {
  size_t sort_bytes = 0, scan_bytes = 0;
  cudaError_t e = cub::DeviceRadixSort::SortPairs(
      nullptr, sort_bytes, (const int32_t *)nullptr, (int32_t *)nullptr,
      (const int32_t *)nullptr, (int32_t *)nullptr, n, 0, key_bits(k));
  if (e != cudaSuccess) return e;
  e = cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, (const int32_t *)nullptr,
                                    (int32_t *)nullptr, k);
  if (e != cudaSuccess) return e;
  *bytes = sort_bytes > scan_bytes ? sort_bytes : scan_bytes;
  return cudaSuccess;
}

extern "C" cudaError_t fkm_launch_iota(int32_t *iota, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  iota_kernel<<<blocks_for(n), THREADS, 0, s>>>(iota, n);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_group(const fkm_group_args *a, cudaStream_t s) {
  size_t tb = a->temp_bytes;
  cudaError_t e = cub::DeviceRadixSort::SortPairs(
      a->temp, tb, (const int32_t *)a->labels, a->sorted_keys, a->iota, a->rows,
      a->n, 0, key_bits(a->k), s);
  if (e != cudaSuccess) return e;
  e = cudaMemsetAsync(a->hist, 0, sizeof(int32_t) * (size_t)a->k, s);
  if (e != cudaSuccess) return e;
  if (a->n > 0) {
    histogram<<<blocks_for(a->n), THREADS, 0, s>>>(a->labels, a->n, a->k, a->hist);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  tb = a->temp_bytes;
  return cub::DeviceScan::ExclusiveSum(a->temp, tb, (const int32_t *)a->hist,
                                       a->offsets, a->k, s);
}

extern "C" cudaError_t fkm_launch_update(const fkm_update_args *a, cudaStream_t s) {
  const int64_t pairs = (a->k - a->k_frozen) * a->d;
  if (pairs > 0) {
    if (a->weights)
      centroid_sums<true><<<blocks_for(pairs), THREADS, 0, s>>>(
          a->x, a->weights, a->rows, a->hist, a->offsets, a->d, a->k, a->k_frozen,
          a->centroids, a->counts);
    else
      centroid_sums<false><<<blocks_for(pairs), THREADS, 0, s>>>(
          a->x, a->weights, a->rows, a->hist, a->offsets, a->d, a->k, a->k_frozen,
          a->centroids, a->counts);
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess) return e;
  }
  finish_counts<<<blocks_for(a->k), THREADS, 0, s>>>(a->hist, a->k, a->k_frozen,
                                                     a->counts, a->hist64);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_objective(const float *dist, const int32_t *labels,
                                            int64_t r0, int64_t r1, fkm_objective *out,
                                            void *scratch, cudaStream_t s) {
  if (r0 == 0) objective_reset<<<1, 1, 0, s>>>(out);
  if (r1 > r0) {
    const unsigned g = blocks_for(r1 - r0) < 1024u ? blocks_for(r1 - r0) : 1024u;
    objective_bad<<<g, THREADS, 0, s>>>(labels, r0, r1, out);
    objective_chain<<<1, CHAIN_THREADS, 0, s>>>(dist, r0, r1, out);
    DBlock *blk = static_cast<DBlock *>(scratch);
    const unsigned nb = (unsigned)((r1 - r0 + DBLOCK - 1) / DBLOCK);
    dchain_blocks<<<nb, DBLOCK, 0, s>>>(dist, r0, r1, blk);
    dchain_seq<<<1, 1, 0, s>>>(dist, r0, r1, blk, out);
  }
  return cudaGetLastError();
}

extern "C" size_t fkm_objective_scratch_bytes(int64_t n) {
  return sizeof(DBlock) * (size_t)((n + DBLOCK - 1) / DBLOCK + 1);
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
                                               cudaStream_t s) {
  if (!spherical && !int_centroids) return cudaSuccess;
  post_process<<<blocks_for(k), THREADS, 0, s>>>(centroids, k, d, spherical,
                                                 int_centroids);
  return cudaGetLastError();
}
