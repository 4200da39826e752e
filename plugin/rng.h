/* FAISS's random streams (docs/contract.md section 1): mt19937, rand_int, rand_float,
 * rand_perm. */
#ifndef FKM_RNG_H
#define FKM_RNG_H

#include <stdint.h>

#include "split_plan.h"
#include "status.h"

/* the generator itself: kernels/split_plan.h (host and device) */
/** next() % max, modulo bias included. max >= 1. */
static inline uint32_t fkm_rand_int(fkm_mt19937 *g, uint32_t max) {
  return fkm_mt_next(g) % max;
}

/** The first m entries of faiss::rand_perm(n, seed) into out, O(m) memory. */
fkm_status fkm_rand_perm_prefix(int64_t n, int64_t seed, int64_t m,
                                int64_t *out, fkm_errbuf *err);

#endif
