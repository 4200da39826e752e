/* FAISS's random streams (docs/contract.md section 1): mt19937, rand_int, rand_float,
 * rand_perm. */
#ifndef FKM_RNG_H
#define FKM_RNG_H

#include <stdint.h>

#include "status.h"

typedef struct fkm_mt19937 {
  uint32_t state[624];
  int index;
} fkm_mt19937;

/** std::mt19937 seeded with the low 32 bits of seed (faiss::RandomGenerator). */
void fkm_mt_seed(fkm_mt19937 *g, int64_t seed);
uint32_t fkm_mt_next(fkm_mt19937 *g);
/** next() % max, modulo bias included. max >= 1. */
static inline uint32_t fkm_rand_int(fkm_mt19937 *g, uint32_t max) {
  return fkm_mt_next(g) % max;
}
/** float(next()) / float(4294967295): may be exactly 1.0f. */
static inline float fkm_rand_float(fkm_mt19937 *g) {
  return (float)fkm_mt_next(g) / 4294967296.0f;
}

/** The first m entries of faiss::rand_perm(n, seed) into out, O(m) memory. */
fkm_status fkm_rand_perm_prefix(int64_t n, int64_t seed, int64_t m,
                                int64_t *out, fkm_errbuf *err);

#endif
