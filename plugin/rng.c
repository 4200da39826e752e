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

static void mt_twist(fkm_mt19937 *g) {
  uint32_t *s = g->state;
  for (int i = 0; i < 624; i++) {
    uint32_t y = (s[i] & 0x80000000u) | (s[(i + 1) % 624] & 0x7fffffffu);
    uint32_t v = s[(i + 397) % 624] ^ (y >> 1);
    s[i] = (y & 1u) ? v ^ 0x9908b0dfu : v;
  }
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
 * index, so only touched positions are stored, in an open-addressing table
 * of at least 4m slots (two entries touched per step). When the table would
 * not be much smaller than n, a dense array is used instead. */
typedef struct swap_map {
  int64_t *keys, *vals;
  uint64_t mask;
  int64_t *dense;
} swap_map;

static int64_t *slot_of(swap_map *m, int64_t key, int *found) {
  uint64_t h = ((uint64_t)key * 0x9e3779b97f4a7c15ull) >> 17;
  for (;; h++) {
    uint64_t s = h & m->mask;
    if (m->keys[s] == key) { *found = 1; return &m->vals[s]; }
    if (m->keys[s] < 0) { m->keys[s] = key; *found = 0; return &m->vals[s]; }
  }
}

static int64_t map_get(swap_map *m, int64_t key) {
  if (m->dense) return m->dense[key];
  int found;
  int64_t *v = slot_of(m, key, &found);
  if (!found) *v = key;
  return *v;
}

static void map_set(swap_map *m, int64_t key, int64_t val) {
  if (m->dense) { m->dense[key] = val; return; }
  int found;
  *slot_of(m, key, &found) = val;
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
  uint64_t slots = 16;
  while (slots < 4 * (uint64_t)m) slots <<= 1;
  if (slots / 2 >= (uint64_t)n) {
    map.dense = malloc(sizeof(int64_t) * (size_t)(n > 0 ? n : 1));
    FKM_RETURN_IF(!map.dense, err, FKM_ERR_OUT_OF_MEMORY,
                  "rand_perm: cannot allocate %lld entries", (long long)n);
    for (int64_t i = 0; i < n; i++) map.dense[i] = i;
  } else {
    map.keys = malloc(sizeof(int64_t) * slots);
    map.vals = malloc(sizeof(int64_t) * slots);
    if (!map.keys || !map.vals) {
      free(map.keys);
      free(map.vals);
      return fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                      "rand_perm: cannot allocate a %llu-slot swap map",
                      (unsigned long long)slots);
    }
    memset(map.keys, 0xff, sizeof(int64_t) * slots);
    map.mask = slots - 1;
  }
  fkm_mt19937 g;
  fkm_mt_seed(&g, seed);
  for (int64_t i = 0; i < m; i++) {
    if (i + 1 < n) {
      int64_t j = i + (int64_t)fkm_rand_int(&g, (uint32_t)(n - i));
      int64_t vi = map_get(&map, i), vj = map_get(&map, j);
      map_set(&map, i, vj);
      map_set(&map, j, vi);
    }
    out[i] = map_get(&map, i);
  }
  free(map.dense);
  free(map.keys);
  free(map.vals);
  return FKM_OK;
}
