/* FAISS's split plan (kernels/split_plan.h's fkm_split_pairs) made by one
 * thread block: the same draws, tries, pairs and counts, so the loop on the
 * device (kernels/update.cu's iteration tail) splits as the host loop.
 *
 * The plan is sequential: empty cluster after empty cluster, each trying
 * cj = 0, 1, ... with one mt19937 draw a try until r < (h[cj] - 1) / denom,
 * then moving counts. A try's outcome depends only on its draw and on the
 * counts, which change only between two empty clusters; so the block tests
 * up to blockDim tries at once (try t: cluster cj + t, the state's word
 * index + t) and keeps the first that succeeds, consuming exactly the draws
 * the sequential loop would. The 624-word twist runs in four parallel
 * steps (words [0, 227) from old words, [227, 454) and [454, 623) from the
 * step before, 623 last); thread 0 seeds. On one thread, 65536 clusters
 * about half of them empty, each trying about kk / 2 others (the GPU
 * suite's largest k), are some 10^9 draws an iteration: a suite run did
 * not finish (docs/cuda-engine.md). Needs blockDim >= 227. */
#ifndef FKM_KERNELS_SPLIT_BLOCK_CUH
#define FKM_KERNELS_SPLIT_BLOCK_CUH

#include <climits>
#include <cstdint>

#include "split_plan.h"

namespace fkm_split {

/* The least thread index whose pred holds, or INT_MAX; every thread gets it.
 * first: shared scratch. */
__device__ __forceinline__ int block_first(int pred, int *first) {
  if (threadIdx.x == 0) *first = INT_MAX;
  __syncthreads();
  if (pred) atomicMin(first, (int)threadIdx.x);
  __syncthreads();
  const int f = *first;
  __syncthreads(); /* read by all before the next call resets it */
  return f;
}

/* Words [lo, hi) of the twist, each from words the steps before left. */
__device__ __forceinline__ void twist_step(uint32_t *s, int lo, int hi) {
  const int i = lo + (int)threadIdx.x;
  uint32_t v = 0;
  if (i < hi) v = fkm_mt_mix(s[i], s[(i + 1) % FKM_MT_WORDS], s[(i + FKM_MT_SHIFT) % FKM_MT_WORDS]);
  __syncthreads();
  if (i < hi) s[i] = v;
  __syncthreads();
}

/* fkm_mt_twist by the block. */
__device__ inline void block_twist(fkm_mt19937 *g) {
  const int a = FKM_MT_WORDS - FKM_MT_SHIFT; /* 227 */
  twist_step(g->state, 0, a);
  twist_step(g->state, a, 2 * a);
  twist_step(g->state, 2 * a, FKM_MT_WORDS - 1);
  twist_step(g->state, FKM_MT_WORDS - 1, FKM_MT_WORDS);
  if (threadIdx.x == 0) g->index = 0;
  __syncthreads();
}

/* A float's bits as an unsigned that orders as the floats do, both zeros
 * equal (not NaN: counts are finite). */
__device__ __forceinline__ uint32_t ordered(float v) {
  const uint32_t u = __float_as_uint(v);
  return v == 0.0f ? 0x80000000u : (u & 0x80000000u) ? ~u : u | 0x80000000u;
}

/* The first index of the largest of h[0..kk) (fkm_split_pairs' fallback):
 * the greatest of (value, -index) keys, one atomicMax a thread. best:
 * shared scratch. */
__device__ inline int64_t block_first_largest(const float *h, int64_t kk,
                                              unsigned long long *best) {
  float v = 0.0f;
  int64_t at = -1;
  for (int64_t j = threadIdx.x; j < kk; j += blockDim.x) /* this thread's first largest */
    if (at < 0 || h[j] > v) v = h[j], at = j;
  if (threadIdx.x == 0) *best = 0;
  __syncthreads();
  if (at >= 0)
    atomicMax(best, (unsigned long long)ordered(v) << 32 | (0xffffffffu - (uint32_t)at));
  __syncthreads();
  const int64_t r = 0xffffffffu - (uint32_t)(*best & 0xffffffffu);
  __syncthreads(); /* read by all before a next call resets it */
  return r;
}

/* fkm_split_pairs by the block: every thread calls it and gets the count. g:
 * shared. */
__device__ inline int64_t block_split_pairs(float *h, int64_t kk, int64_t n_train,
                                            fkm_mt19937 *g, int64_t *pairs) {
  __shared__ int first;
  __shared__ unsigned long long best;
  if (threadIdx.x == 0) fkm_mt_seed(g, FKM_SPLIT_SEED);
  __syncthreads();
  const double denom = fkm_split_denom(n_train, kk);
  const int64_t max_tries = 10 * kk, bd = blockDim.x;
  int64_t np = 0, ci = -1;
  for (;;) {
    int64_t next = kk; /* the next empty cluster after ci, in the counts as they are now */
    for (int64_t base = ci + 1; base < kk; base += bd) {
      const int64_t j = base + threadIdx.x;
      const int f = block_first(j < kk && h[j] == 0, &first);
      if (f != INT_MAX) {
        next = base + f;
        break;
      }
    }
    if (next >= kk) break;
    ci = next;
    int64_t cj = 0, tries = 0;
    int found = 0;
    while (tries < max_tries && !found) {
      if (g->index >= FKM_MT_WORDS) block_twist(g);
      const int idx = g->index;
      int64_t m = FKM_MT_WORDS - idx;
      if (m > bd) m = bd;
      if (m > max_tries - tries) m = max_tries - tries;
      int hit = 0;
      if ((int64_t)threadIdx.x < m) {
        const float p = fkm_split_chance(h[(cj + threadIdx.x) % kk], denom);
        const float r = fkm_mt_unit(fkm_mt_temper(g->state[idx + threadIdx.x]));
        hit = r < p;
      }
      const int f = block_first(hit, &first);
      found = f != INT_MAX;
      const int64_t failed = found ? f : m; /* tries before the success, or all m */
      cj = (cj + failed) % kk;
      tries += failed;
      if (threadIdx.x == 0) g->index = idx + (int)(failed + found); /* one draw a try */
      __syncthreads();
    }
    if (!found) cj = block_first_largest(h, kk, &best);
    if (threadIdx.x == 0) {
      pairs[2 * np] = ci;
      pairs[2 * np + 1] = cj;
      h[ci] = h[cj] / 2;
      h[cj] -= h[ci];
    }
    np++;
    __syncthreads();
  }
  return np;
}

}  // namespace fkm_split

#endif
