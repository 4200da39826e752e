#include "rng.h"

#include <stdlib.h>
#include <string.h>

void fkm_mt_seed(fkm_mt19937 *g, int64_t seed) {
  g->state[0] = (uint32_t)seed;
  for (int i = 1; i < 624; i++) {
    uint32_t p = g->state[i - 1];
    g->state[i] = 1812433253u * (p ^ (p >> 30)) + (uint32_t)i;
  }
  g->index = 624;
}

/* The twist without a modulo per word (the three ranges of i where i + 1
 * and i + 397 wrap differently). */
static inline uint32_t mt_mix(uint32_t a, uint32_t b, uint32_t c) {
  const uint32_t y = (a & 0x80000000u) | (b & 0x7fffffffu);
  return c ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
}

static void mt_twist(fkm_mt19937 *g) {
  uint32_t *s = g->state;
  int i = 0;
  for (; i < 624 - 397; i++) s[i] = mt_mix(s[i], s[i + 1], s[i + 397]);
  for (; i < 623; i++) s[i] = mt_mix(s[i], s[i + 1], s[i + 397 - 624]);
  s[623] = mt_mix(s[623], s[0], s[396]);
  g->index = 0;
}

uint32_t fkm_mt_next(fkm_mt19937 *g) {
  if (g->index >= 624) mt_twist(g);
  uint32_t y = g->state[g->index++];
  y ^= y >> 11;
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= y >> 18;
  return y;
}

/* Sparse Fisher-Yates: a position that was never swapped holds its own
 * index, so only touched positions are stored: (position, value) pairs of
 * 32 bits each (n < 2^31) packed in one word of an open-addressing table of
 * at least 2m slots (a step stores one entry: position j; position i is
 * final after step i and goes to out[i]). When the table would not be
 * smaller than n 32-bit values, a dense array is used instead. Every draw is
 * taken first (they do not depend on the swaps), so that the swap loop can
 * prefetch the slots of the steps ahead: the loop is bound by memory
 * latency, not by a chain of cache misses. */
#define SWAP_EMPTY UINT64_MAX
#define SWAP_AHEAD 32

typedef struct swap_map {
  uint64_t *slots; /* key << 32 | value, SWAP_EMPTY when free */
  uint64_t mask;
  int32_t *dense;
} swap_map;

/* The slot of a key: its low bits. The keys looked up in order (position i
 * of step i) then walk the table in order, and the keys stored (positions
 * j, uniform in [i, n)) spread evenly over it. */
static inline uint64_t slot_hash(const swap_map *m, int64_t key) {
  return (uint64_t)key & m->mask;
}

static inline void map_prefetch(const swap_map *m, int64_t key) {
  if (m->dense) __builtin_prefetch(m->dense + key, 1);
  else __builtin_prefetch(m->slots + slot_hash(m, key), 1);
}

/* The slot of key: its entry, or the free slot where it goes. */
static inline uint64_t *slot_of(swap_map *m, int64_t key) {
  for (uint64_t h = slot_hash(m, key);; h = (h + 1) & m->mask) {
    uint64_t *s = &m->slots[h];
    if (*s == SWAP_EMPTY || (int64_t)(*s >> 32) == key) return s;
  }
}

static inline int64_t map_get(swap_map *m, int64_t key) {
  if (m->dense) return m->dense[key];
  const uint64_t v = *slot_of(m, key);
  return v == SWAP_EMPTY ? key : (int64_t)(uint32_t)v;
}

static inline void map_set(swap_map *m, int64_t key, int64_t val) {
  if (m->dense) {
    m->dense[key] = (int32_t)val;
    return;
  }
  *slot_of(m, key) = (uint64_t)key << 32 | (uint32_t)val;
}

fkm_status fkm_rand_perm_prefix(int64_t n, int64_t seed, int64_t m,
                                int64_t *out, fkm_errbuf *err) {
  FKM_RETURN_IF(n < 0 || n > INT32_MAX, err, FKM_ERR_INVALID_ARG,
                "rand_perm: n = %lld is outside [0, 2^31 - 1] (FAISS's int permutation)",
                (long long)n);
  FKM_RETURN_IF(m < 0 || m > n, err, FKM_ERR_INVALID_ARG,
                "rand_perm: m = %lld is outside [0, n = %lld]", (long long)m,
                (long long)n);
  if (m > 0) FKM_RETURN_IF(out == NULL, err, FKM_ERR_INVALID_ARG, "rand_perm: out is NULL");
  swap_map map = {0};
  int lg = 4;
  while (((uint64_t)1 << lg) < 2 * (uint64_t)m) lg++;
  const uint64_t slots = (uint64_t)1 << lg;
  if (slots * 2 >= (uint64_t)n) {
    map.dense = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    FKM_RETURN_IF(!map.dense, err, FKM_ERR_OUT_OF_MEMORY,
                  "rand_perm: cannot allocate %lld entries", (long long)n);
    for (int64_t i = 0; i < n; i++) map.dense[i] = (int32_t)i;
  } else {
    map.slots = malloc(sizeof(uint64_t) * slots);
    FKM_RETURN_IF(!map.slots, err, FKM_ERR_OUT_OF_MEMORY,
                  "rand_perm: cannot allocate a %llu-slot swap map",
                  (unsigned long long)slots);
    memset(map.slots, 0xff, sizeof(uint64_t) * slots);
    map.mask = slots - 1;
  }
  /* the draws: step i swaps positions i and out[i] */
  fkm_mt19937 g;
  fkm_mt_seed(&g, seed);
  for (int64_t i = 0; i < m; i++)
    out[i] = i + 1 < n ? i + (int64_t)fkm_rand_int(&g, (uint32_t)(n - i)) : i;
  for (int64_t i = 0; i < m; i++) {
    if (i + SWAP_AHEAD < m) {
      map_prefetch(&map, i + SWAP_AHEAD);
      map_prefetch(&map, out[i + SWAP_AHEAD]);
    }
    const int64_t j = out[i], vi = map_get(&map, i), vj = map_get(&map, j);
    map_set(&map, j, vi);
    out[i] = vj;
  }
  free(map.dense);
  free(map.slots);
  return FKM_OK;
}
