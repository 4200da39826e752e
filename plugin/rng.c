#include "rng.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

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

/* The prefix of rand_perm(n) without its n-entry array. Step i of FAISS's
 * Fisher-Yates swaps positions i and j_i = i + rand_int(n - i); the draws do
 * not depend on the swaps, so all m are taken first. Then
 *   out[i] = the value at position j_i before step i
 *          = j_i if no earlier step drew j_i, else g(the last one that did),
 *   g(t)   = the value at position t before step t (what step t moves to j_t)
 *          = t if no step before t drew t, else g(the last one that did).
 * So each step needs only the last earlier step with the same draw (prev)
 * and, for positions t < m, the last earlier step that drew t (w); g is one
 * pass over t in increasing order (w(t) < t). prev and w come from the
 * draws grouped by value: a scatter into buckets of 2^s consecutive values
 * (in step order within a bucket), then each bucket on its own thread with a
 * table indexed by the value's low bits. Every pass is sequential or touches
 * an L2-sized table, where a swap loop over the whole range of positions
 * would miss the cache on every step.
 *
 * When n is small against m (n <= DENSE_RATIO * m) the plain swap loop
 * over an n-entry array is faster and small. */
#define DENSE_RATIO 4
#define BUCKET_LOG2_MIN 12 /* values per bucket: 2^12 .. 2^16 (a 256 KiB table) */
#define BUCKET_LOG2_MAX 16
#define BUCKETS_LOG2 10    /* about 2^10 buckets, more only when n > 2^26 */

static fkm_status prefix_dense(int64_t n, int64_t m, int64_t *out, fkm_errbuf *err) {
  int32_t *pos = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
  FKM_RETURN_IF(!pos, err, FKM_ERR_OUT_OF_MEMORY, "rand_perm: cannot allocate %lld entries",
                (long long)n);
  for (int64_t i = 0; i < n; i++) pos[i] = (int32_t)i;
  for (int64_t i = 0; i < m; i++) {
    const int64_t j = out[i];
    const int32_t v = pos[j];
    pos[j] = pos[i];
    out[i] = v;
  }
  free(pos);
  return FKM_OK;
}

static fkm_status prefix_grouped(int64_t n, int64_t m, int64_t *out, const int64_t *count,
                                 int s, fkm_errbuf *err) {
  const int64_t nb = (n + ((int64_t)1 << s) - 1) >> s;
  const uint32_t low = (1u << s) - 1;
#ifdef _OPENMP
  const int threads = omp_get_max_threads();
#else
  const int threads = 1;
#endif
  int64_t *end = malloc(sizeof(int64_t) * (size_t)nb);
  uint64_t *grouped = malloc(sizeof(uint64_t) * (size_t)m); /* step << 32 | low bits of j */
  int32_t *prev = malloc(sizeof(int32_t) * (size_t)m);
  int32_t *g = malloc(sizeof(int32_t) * (size_t)m);
  int32_t *last = malloc((sizeof(int32_t) << s) * (size_t)threads);
  fkm_status st = FKM_OK;
  if (!end || !grouped || !prev || !g || !last) {
    st = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                  "rand_perm: cannot allocate the grouping of %lld draws", (long long)m);
    goto done;
  }
  int64_t at = 0;
  for (int64_t b = 0; b < nb; b++) end[b] = at, at += count[b];
  for (int64_t i = 0; i < m; i++) /* end[b]: bucket b's next free entry, then its end */
    grouped[end[out[i] >> s]++] = (uint64_t)i << 32 | ((uint64_t)out[i] & low);
  memset(g, 0xff, sizeof(int32_t) * (size_t)m); /* w: none */
  memset(last, 0xff, (sizeof(int32_t) << s) * (size_t)threads);
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t b = 0; b < nb; b++) {
#ifdef _OPENMP
    int32_t *tab = last + ((size_t)omp_get_thread_num() << s);
#else
    int32_t *tab = last;
#endif
    const int64_t e0 = b ? end[b - 1] : 0, e1 = end[b];
    for (int64_t e = e0; e < e1; e++) {
      const int32_t i = (int32_t)(grouped[e] >> 32);
      const uint32_t jl = (uint32_t)grouped[e];
      const int64_t j = (b << s) + jl;
      prev[i] = tab[jl];
      tab[jl] = i;
      if (j < m && i < j) g[j] = i; /* steps come in order: the last one wins */
    }
    for (int64_t e = e0; e < e1; e++) tab[(uint32_t)grouped[e]] = -1;
  }
  for (int64_t t = 0; t < m; t++) g[t] = g[t] < 0 ? (int32_t)t : g[g[t]];
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; i++)
    if (prev[i] >= 0) out[i] = g[prev[i]];
done:
  free(end);
  free(grouped);
  free(prev);
  free(g);
  free(last);
  return st;
}

fkm_status fkm_rand_perm_prefix(int64_t n, int64_t seed, int64_t m,
                                int64_t *out, fkm_errbuf *err) {
  FKM_RETURN_IF(n < 0 || n > INT32_MAX, err, FKM_ERR_INVALID_ARG,
                "rand_perm: n = %lld is outside [0, 2^31 - 1] (FAISS's int permutation)",
                (long long)n);
  FKM_RETURN_IF(m < 0 || m > n, err, FKM_ERR_INVALID_ARG,
                "rand_perm: m = %lld is outside [0, n = %lld]", (long long)m,
                (long long)n);
  if (m == 0) return FKM_OK;
  FKM_RETURN_IF(out == NULL, err, FKM_ERR_INVALID_ARG, "rand_perm: out is NULL");
  const int dense = n <= DENSE_RATIO * m;
  int lg = 0;
  while (((int64_t)1 << lg) < n) lg++;
  int s = lg - BUCKETS_LOG2;
  s = s < BUCKET_LOG2_MIN ? BUCKET_LOG2_MIN : s > BUCKET_LOG2_MAX ? BUCKET_LOG2_MAX : s;
  int64_t *count = NULL;
  if (!dense) {
    count = calloc((size_t)((n >> s) + 1), sizeof(int64_t));
    FKM_RETURN_IF(!count, err, FKM_ERR_OUT_OF_MEMORY,
                  "rand_perm: cannot allocate the bucket counts of %lld values", (long long)n);
  }
  /* the draws (step i swaps positions i and out[i]), counted per bucket */
  fkm_mt19937 g;
  fkm_mt_seed(&g, seed);
  for (int64_t i = 0; i < m; i++) {
    out[i] = i + 1 < n ? i + (int64_t)fkm_rand_int(&g, (uint32_t)(n - i)) : i;
    if (count) count[out[i] >> s]++;
  }
  const fkm_status st = dense ? prefix_dense(n, m, out, err)
                              : prefix_grouped(n, m, out, count, s, err);
  free(count);
  return st;
}
