/* The grouping of the training rows by label (the sort-inverse's sort):
 * CUB's stable radix sort of (label, row) pairs, or for a batch a counting
 * sort a problem (the same rows, hist and offsets). Host launchers in
 * group.cuh.
 */
#include "group.cuh"

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
}  // namespace

extern "C" cudaError_t fkm_launch_iota(int32_t *iota, int64_t n, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  iota_kernel<<<blocks_for(n), THREADS, 0, s>>>(iota, n);
  return cudaGetLastError();
}

/* The grouping of a batch by a counting sort, SB blocks of GW warps per
 * problem, in three launches (group_count: each slice's count a bin;
 * group_starts, one block a problem: each slice's first place a bin;
 * group_scatter: the rows to their places): the same rows, hist and
 * offsets as the radix sort of the composed keys (stable; -1 after every
 * label of every problem, in row order). Problem b's rows [b m, (b + 1) m)
 * are cut into one contiguous slice per warp used, wt = sb wu of them in
 * row order (block s's warp w takes slice s wu + w; slices of at most
 * GROUP_SLICE rows, more and shorter where the problems' blocks would be
 * fewer than GROUP_BLOCKS); bin kp holds the -1s.
 * Scratch: wh (problems, wt, kp + 1) int32 per-warp counts (group_starts
 * turns them into first places), then tot (problems) the labelled rows and
 * neg (problems) the -1s (summed by the problem's blocks with integer
 * atomics: zeroed before). */
constexpr int GW = 8, GROUP_SLICE = 2048, GROUP_BLOCKS = 256;
/* the counting sort's scratch above this many bytes: the radix sort (the
 * workspace does not grow for it) */
constexpr size_t GROUP_SCRATCH_MAX = (size_t)64 << 20;

struct GroupPlan {
  int64_t m, kp; /* rows and centroids a problem */
  int wu, sb;    /* warps of a block that take a slice; blocks a problem */
  int32_t *wh, *tot, *neg;
};

__device__ __forceinline__ int group_bin(int32_t label, int64_t kp) {
  return label < 0 ? (int)kp : label;
}

/* Warp w of block s's slice of a problem's m rows: [*r0, *r1). */
__device__ __forceinline__ void group_slice(const GroupPlan &g, int w, int64_t *r0,
                                            int64_t *r1) {
  const int64_t wt = (int64_t)g.sb * g.wu, per = (g.m + wt - 1) / wt;
  *r0 = ((int64_t)blockIdx.x * g.wu + w) * per;
  *r1 = *r0 + per < g.m ? *r0 + per : g.m;
}

__global__ void __launch_bounds__(32 * GW) group_count(const int32_t *__restrict__ labels,
                                                       GroupPlan g) {
  extern __shared__ int32_t sh[]; /* (wu, kp + 1) */
  const int64_t b = blockIdx.y, bins = g.kp + 1, wt = (int64_t)g.sb * g.wu;
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  for (int64_t i = threadIdx.x; i < g.wu * bins; i += blockDim.x) sh[i] = 0;
  __syncthreads();
  if (w < g.wu) {
    int64_t r0, r1;
    group_slice(g, w, &r0, &r1);
    for (int64_t r = r0 + lane; r < r1; r += 32)
      atomicAdd(&sh[w * bins + group_bin(labels[b * g.m + r], g.kp)], 1);
  }
  __syncthreads();
  int32_t labelled = 0, negs = 0;
  int32_t *const mine = g.wh + (b * wt + (int64_t)blockIdx.x * g.wu) * bins;
  for (int64_t i = threadIdx.x; i < g.wu * bins; i += blockDim.x) {
    mine[i] = sh[i];
    if (i % bins == g.kp) negs += sh[i];
    else labelled += sh[i];
  }
  typedef cub::BlockReduce<int32_t, 32 * GW> Reduce;
  __shared__ typename Reduce::TempStorage rs;
  labelled = Reduce(rs).Sum(labelled);
  __syncthreads();
  negs = Reduce(rs).Sum(negs);
  if (threadIdx.x == 0) {
    atomicAdd(&g.tot[b], labelled);
    atomicAdd(&g.neg[b], negs);
  }
}

/* Problem blockIdx.x's bins, GROUP_STARTS a round (each thread a bin):
 * hist and offsets (the bin's rows, its first place among the problem's
 * labelled rows, after the labelled rows of the problems before it), and
 * each slice's counts in wh replaced by the slice's first place in its bin
 * (the -1s' bin after every labelled row of every problem, in problem
 * order). A bin's counts over the problem's slices are read twice, eight
 * loads in flight. */
constexpr int GROUP_STARTS = 1024;

__global__ void __launch_bounds__(GROUP_STARTS) group_starts(int64_t problems, GroupPlan g,
                                                             int32_t *__restrict__ hist,
                                                             int32_t *__restrict__ offsets) {
  const int64_t b = blockIdx.x, bins = g.kp + 1, wt = (int64_t)g.sb * g.wu;
  /* the labelled rows of problems before b, of all; the -1s before b */
  int64_t before = 0, all = 0, neg_before = 0;
  for (int64_t q = threadIdx.x; q < problems; q += blockDim.x) {
    all += g.tot[q];
    if (q < b) before += g.tot[q], neg_before += g.neg[q];
  }
  typedef cub::BlockReduce<int64_t, GROUP_STARTS> Reduce;
  typedef cub::BlockScan<int32_t, GROUP_STARTS> Scan;
  __shared__ union {
    typename Reduce::TempStorage r;
    typename Scan::TempStorage s;
  } tmp;
  __shared__ int64_t base[3];
  __shared__ int32_t carry;
  before = Reduce(tmp.r).Sum(before);
  __syncthreads();
  all = Reduce(tmp.r).Sum(all);
  __syncthreads();
  neg_before = Reduce(tmp.r).Sum(neg_before);
  if (threadIdx.x == 0) base[0] = before, base[1] = all, base[2] = neg_before, carry = 0;
  __syncthreads();
  int32_t *const wb = g.wh + b * wt * bins;
  for (int64_t j0 = 0; j0 < bins; j0 += blockDim.x) {
    const int64_t j = j0 + threadIdx.x;
    int32_t total = 0;
    if (j < bins) {
#pragma unroll 8
      for (int64_t u = 0; u < wt; u++) total += wb[u * bins + j];
    }
    /* exclusive prefix over the labelled bins of this problem */
    int32_t pre = 0, chunk = 0;
    Scan(tmp.s).ExclusiveSum(j < g.kp ? total : 0, pre, chunk);
    pre += carry;
    if (j < bins) {
      int64_t at = j < g.kp ? base[0] + pre : base[1] + base[2];
      if (j < g.kp) {
        offsets[b * g.kp + j] = (int32_t)(base[0] + pre);
        hist[b * g.kp + j] = total;
      }
#pragma unroll 8
      for (int64_t u = 0; u < wt; u++) {
        const int32_t v = wb[u * bins + j];
        wb[u * bins + j] = (int32_t)at;
        at += v;
      }
    }
    __syncthreads(); /* every thread's carry read, the scan's storage free */
    if (threadIdx.x == 0) carry += chunk;
    __syncthreads();
  }
}

__global__ void __launch_bounds__(32 * GW) group_scatter(const int32_t *__restrict__ labels,
                                                         GroupPlan g,
                                                         int32_t *__restrict__ rows) {
  extern __shared__ int32_t sh[]; /* (wu, kp + 1): each warp's next position a bin */
  const int64_t b = blockIdx.y, bins = g.kp + 1, wt = (int64_t)g.sb * g.wu;
  const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
  /* this block's slices' first places (group_starts) */
  const int32_t *const wb = g.wh + (b * wt + (int64_t)blockIdx.x * g.wu) * bins;
  for (int64_t i = threadIdx.x; i < g.wu * bins; i += blockDim.x) sh[i] = wb[i];
  __syncthreads();
  /* each warp its slice in row order: a row's place is its bin's next,
   * after the lanes below it with the same bin */
  if (w < g.wu) {
    int64_t r0, r1;
    group_slice(g, w, &r0, &r1);
    for (int64_t r = r0; r < r1; r += 32) {
      const bool in = r + lane < r1;
      const int bin = in ? group_bin(labels[b * g.m + r + lane], g.kp) : -1;
      const unsigned same = __match_any_sync(~0u, bin);
      const int rank = __popc(same & ((1u << lane) - 1u));
      const int32_t start = in ? sh[w * bins + bin] : 0;
      __syncwarp();
      if (in) {
        rows[start + rank] = (int32_t)(b * g.m + r + lane);
        if (rank == 0) sh[w * bins + bin] = start + __popc(same);
      }
      __syncwarp();
    }
  }
}

/* The counting sort's shape for n rows of problems problems, k centroids
 * in all, or wu = 0 where it does not apply: wu warps a block (its counts
 * within 44 KB of shared memory, 48 with the scans'), sb blocks a problem
 * (a warp's slice at most GROUP_SLICE rows: a warp walks its slice 32 rows
 * at a time; one block a problem with 9450 rows a warp, 32 x 75600 rows
 * into 1000 centroids each, took 0.67 ms on an H100 against the radix
 * sort's 0.2), and its scratch's bytes. */
GroupPlan group_shape(int64_t n, int64_t k, int64_t problems, size_t *bytes) {
  GroupPlan g{};
  *bytes = 0;
  if (problems < 2 || problems > 4096 || n == 0 || n % problems != 0 || k % problems != 0)
    return g;
  g.m = n / problems;
  g.kp = k / problems;
  const int64_t bins = g.kp + 1;
  const int wu = (int)(11264 / bins < GW ? 11264 / bins : GW);
  if (wu < 1) return g;
  /* at least GROUP_BLOCKS blocks in all where a warp keeps 32 rows or more
   * (B = 64 x 8192 rows into 64: one block a problem took 29 us to
   * scatter on an H100, 64 blocks on 132 multiprocessors) */
  int64_t sb = (g.m + (int64_t)wu * GROUP_SLICE - 1) / ((int64_t)wu * GROUP_SLICE);
  const int64_t spread = GROUP_BLOCKS / problems, most = g.m / ((int64_t)wu * 32);
  const int64_t want = spread < most ? spread : most;
  if (sb < want) sb = want;
  const size_t need = (size_t)4 * (size_t)problems * ((size_t)(sb * wu) * (size_t)bins + 2);
  if (sb > 65535 || need > GROUP_SCRATCH_MAX) return g;
  g.wu = wu;
  g.sb = (int)sb;
  *bytes = need;
  return g;
}

/* The counting sort's plan, or wu = 0 where it does not apply. */
GroupPlan group_plan(const fkm_group_args *a) {
  size_t need = 0;
  GroupPlan g = group_shape(a->n, a->k, a->problems, &need);
  if (a->radix_only || g.wu == 0 || need > a->temp_bytes) return GroupPlan{};
  const int64_t bins = g.kp + 1;
  g.wh = static_cast<int32_t *>(a->temp);
  g.tot = g.wh + a->problems * g.sb * g.wu * bins;
  g.neg = g.tot + a->problems;
  return g;
}

/* The radix sort's temp, or the counting sort's scratch where that is more
 * (group_shape: at most GROUP_SCRATCH_MAX). */
extern "C" cudaError_t fkm_group_temp_bytes(int64_t n, int64_t k, int64_t problems,
                                            size_t *bytes) {
  const cudaError_t e = cub::DeviceRadixSort::SortPairs(
      nullptr, *bytes, (const int32_t *)nullptr, (int32_t *)nullptr, (const int32_t *)nullptr,
      (int32_t *)nullptr, n, 0, key_bits(k));
  size_t counting = 0;
  (void)group_shape(n, k, problems, &counting);
  if (e == cudaSuccess && *bytes < counting) *bytes = counting;
  return e;
}

extern "C" cudaError_t fkm_launch_group(const fkm_group_args *a, cudaStream_t s) {
  const int32_t *keys = a->labels;
  cudaError_t e;
  const GroupPlan g = group_plan(a);
  if (g.wu > 0) {
    const size_t sh = sizeof(int32_t) * (size_t)g.wu * (size_t)(g.kp + 1);
    const dim3 grid((unsigned)g.sb, (unsigned)a->problems);
    e = cudaMemsetAsync(g.tot, 0, sizeof(int32_t) * 2 * (size_t)a->problems, s);
    if (e != cudaSuccess) return e;
    group_count<<<grid, 32 * GW, sh, s>>>(a->labels, g);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    group_starts<<<(unsigned)a->problems, GROUP_STARTS, 0, s>>>(a->problems, g, a->hist,
                                                                 a->offsets);
    e = cudaGetLastError();
    if (e != cudaSuccess) return e;
    group_scatter<<<grid, 32 * GW, sh, s>>>(a->labels, g, a->rows);
    return cudaGetLastError();
  }
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
