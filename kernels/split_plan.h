/* FAISS's split of empty clusters (faiss::split_clusters of 1.7.3 with
 * 1.15's fallback; docs/contract.md section 2) and the mt19937 stream it
 * draws from, written once for the host (plugin/lloyd.c, plugin/rng.c) and
 * the device (kernels/update.cu's loop tail), so that the Lloyd loop that
 * runs without the host (docs/cuda-engine.md, "The loop on the device")
 * splits with literally the same rules as the host loop.
 *
 * Every operation is integer arithmetic, a float division by two, a float
 * comparison, or double arithmetic followed by one rounding to float: the
 * same bits wherever IEEE binary32/64 with round to nearest even is used
 * (host C and CUDA C alike; nvcc contracts no a * b + c here: there is
 * none). */
#ifndef FKM_KERNELS_SPLIT_PLAN_H
#define FKM_KERNELS_SPLIT_PLAN_H

#include <stdint.h>

#ifdef __CUDACC__
#define FKM_SP_HD __host__ __device__ static inline
#else
#define FKM_SP_HD static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum { FKM_MT_WORDS = 624, FKM_MT_SHIFT = 397, FKM_SPLIT_SEED = 1234 };

typedef struct fkm_mt19937 {
  uint32_t state[FKM_MT_WORDS];
  int index;
} fkm_mt19937;

/** std::mt19937 seeded with the low 32 bits of seed (faiss::RandomGenerator). */
FKM_SP_HD void fkm_mt_seed(fkm_mt19937 *g, int64_t seed) {
  g->state[0] = (uint32_t)seed;
  for (int i = 1; i < FKM_MT_WORDS; i++) {
    const uint32_t p = g->state[i - 1];
    g->state[i] = 1812433253u * (p ^ (p >> 30)) + (uint32_t)i;
  }
  g->index = FKM_MT_WORDS;
}

FKM_SP_HD uint32_t fkm_mt_mix(uint32_t a, uint32_t b, uint32_t c) {
  const uint32_t y = (a & 0x80000000u) | (b & 0x7fffffffu);
  return c ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
}

/** The state's next 624 words (the three ranges of i where i + 1 and
 *  i + 397 wrap differently, without a modulo per word). */
FKM_SP_HD void fkm_mt_twist(fkm_mt19937 *g) {
  uint32_t *s = g->state;
  int i = 0;
  for (; i < FKM_MT_WORDS - FKM_MT_SHIFT; i++) s[i] = fkm_mt_mix(s[i], s[i + 1], s[i + FKM_MT_SHIFT]);
  for (; i < FKM_MT_WORDS - 1; i++)
    s[i] = fkm_mt_mix(s[i], s[i + 1], s[i + FKM_MT_SHIFT - FKM_MT_WORDS]);
  s[FKM_MT_WORDS - 1] = fkm_mt_mix(s[FKM_MT_WORDS - 1], s[0], s[FKM_MT_SHIFT - 1]);
  g->index = 0;
}

FKM_SP_HD uint32_t fkm_mt_temper(uint32_t y) {
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

FKM_SP_HD uint32_t fkm_mt_next(fkm_mt19937 *g) {
  if (g->index >= FKM_MT_WORDS) fkm_mt_twist(g);
  return fkm_mt_temper(g->state[g->index++]);
}

/** The float of a drawn word w: float(w) / 2^32 (may be exactly 1.0f). */
FKM_SP_HD float fkm_mt_unit(uint32_t w) { return (float)w / 4294967296.0f; }

/** float(next()) / 2^32 (faiss::RandomGenerator::rand_float). */
FKM_SP_HD float fkm_rand_float(fkm_mt19937 *g) { return fkm_mt_unit(fkm_mt_next(g)); }

/** The chance that a try of a cluster of count h takes it: float((h - 1) /
 *  denom), denom = double(float(n_train - kk)) (fkm_split_denom). */
FKM_SP_HD double fkm_split_denom(int64_t n_train, int64_t kk) {
  return (double)(float)(n_train - kk);
}
FKM_SP_HD float fkm_split_chance(float h, double denom) {
  return (float)(((double)h - 1.0) / denom);
}

/** Whether one of the kk movable counts h[0..kk) is zero. */
FKM_SP_HD int fkm_split_any_empty(const float *h, int64_t kk) {
  for (int64_t i = 0; i < kk; i++)
    if (h[i] == 0) return 1;
  return 0;
}

/** The splits of the empty clusters among the kk movable counts h (updated
 *  as FAISS updates them), n_train > kk training points: pairs[2 i] is the
 *  i-th empty cluster, pairs[2 i + 1] the cluster it splits (indices into h,
 *  in FAISS's order: the centroids are split in that order). rng: any state,
 *  seeded here. Returns the number of pairs. */
FKM_SP_HD int64_t fkm_split_pairs(float *h, int64_t kk, int64_t n_train, fkm_mt19937 *rng,
                                  int64_t *pairs) {
  fkm_mt_seed(rng, FKM_SPLIT_SEED);
  const double denom = fkm_split_denom(n_train, kk);
  const int64_t max_tries = 10 * kk;
  int64_t np = 0;
  for (int64_t ci = 0; ci < kk; ci++) {
    if (h[ci] != 0) continue;
    int64_t cj = 0, tries = 0;
    int found = 0;
    for (; tries < max_tries; cj = (cj + 1) % kk) {
      const float p = fkm_split_chance(h[cj], denom);
      const float r = fkm_rand_float(rng);
      if (r < p) {
        found = 1;
        break;
      }
      tries++;
    }
    if (!found) { /* FAISS 1.15's fallback: the first largest cluster */
      cj = 0;
      for (int64_t j = 1; j < kk; j++)
        if (h[j] > h[cj]) cj = j;
    }
    pairs[2 * np] = ci;
    pairs[2 * np + 1] = cj;
    np++;
    h[ci] = h[cj] / 2;
    h[cj] -= h[ci];
  }
  return np;
}

#ifdef __cplusplus
}
#endif

#endif
