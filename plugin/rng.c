#include "rng.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

/* The next count words, a state's run at a time (a loop the compiler
 * vectorises). */
static void mt_fill(fkm_mt19937 *g, uint32_t *out, int count) {
  while (count > 0) {
    if (g->index >= 624) fkm_mt_twist(g);
    const int c = 624 - g->index < count ? 624 - g->index : count;
    const uint32_t *s = g->state + g->index;
    for (int j = 0; j < c; j++) out[j] = fkm_mt_temper(s[j]);
    g->index += c;
    out += c;
    count -= c;
  }
}

/* Step i's swap partner for the words w[0..c) of steps i0.. (FAISS's
 * i + rand_int(n - i); FAISS draws nothing at step n - 1, where a word
 * reduced modulo 1 gives i all the same, and no step follows): w mod b as
 * w - q b with q = fl(w / b) rounded to an integer, one b added back when
 * that q was one too many. Every value is an integer below 2^33, so each
 * double operation is exact but the division, whose rounding moves q by at
 * most one; unlike a 32-bit integer division the loop vectorises. */
static void perm_draws(const uint32_t *w, int c, int64_t i0, int64_t n, int64_t *out) {
  for (int j = 0; j < c; j++) {
    const double b = (double)(int32_t)(n - i0 - j); /* n < 2^31 */
    const double x = (double)(int32_t)(w[j] ^ 0x80000000u) + 2147483648.0;
    const double q = (x / b + 0x1p52) - 0x1p52;
    const double r = x - q * b;
    out[j] = i0 + j + (int32_t)(r + (r < 0.0 ? b : 0.0));
  }
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
#define PARALLEL_MIN 16384 /* draws below which the grouping runs on one thread */

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

#ifdef _OPENMP
static int team_limit(void) { return omp_get_max_threads(); }
static int team_member(void) { return omp_get_thread_num(); }
static int team_size(void) { return omp_get_num_threads(); }
#else
static int team_limit(void) { return 1; }
static int team_member(void) { return 0; }
static int team_size(void) { return 1; }
#endif

static fkm_status prefix_grouped(int64_t n, int64_t m, int64_t *out, int s, fkm_errbuf *err) {
  const int64_t nb = (n + ((int64_t)1 << s) - 1) >> s;
  const uint32_t low = (1u << s) - 1;
  /* a short prefix (a run's k initial centroids) on the calling thread:
   * a team's start and its tables would cost more than the work */
  const int threads = m < PARALLEL_MIN ? 1 : team_limit();
  int64_t *end = malloc(sizeof(int64_t) * (size_t)nb);
  uint64_t *grouped = malloc(sizeof(uint64_t) * (size_t)m); /* step << 32 | low bits of j */
  int32_t *prev = malloc(sizeof(int32_t) * (size_t)m);
  int32_t *g = malloc(sizeof(int32_t) * (size_t)m);
  int32_t *last = malloc((sizeof(int32_t) << s) * (size_t)threads);
  int64_t *at = calloc((size_t)threads * (size_t)nb, sizeof(int64_t)); /* [thread][bucket] */
  fkm_status st = FKM_OK;
  if (!end || !grouped || !prev || !g || !last || !at) {
    st = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                  "rand_perm: cannot allocate the grouping of %lld draws", (long long)m);
    goto done;
  }
  /* the draws grouped by bucket, in step order within one: a counting sort
   * on OpenMP's threads, each counting then placing its own range of steps
   * behind the ranges before it (at[t][b]: thread t's next entry of bucket
   * b; end[b]: bucket b's end) */
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const int t = team_member(), nt = team_size();
    const int64_t i0 = m * t / nt, i1 = m * (t + 1) / nt;
    int64_t *mine = at + (size_t)t * (size_t)nb;
    for (int64_t i = i0; i < i1; i++) mine[out[i] >> s]++;
#pragma omp barrier
#pragma omp single
    {
      int64_t e = 0;
      for (int64_t b = 0; b < nb; b++) {
        for (int u = 0; u < nt; u++) {
          const int64_t c = at[(size_t)u * (size_t)nb + (size_t)b];
          at[(size_t)u * (size_t)nb + (size_t)b] = e;
          e += c;
        }
        end[b] = e;
      }
    }
    for (int64_t i = i0; i < i1; i++)
      grouped[mine[out[i] >> s]++] = (uint64_t)i << 32 | ((uint64_t)out[i] & low);
  }
  memset(g, 0xff, sizeof(int32_t) * (size_t)m); /* w: none */
  memset(last, 0xff, (sizeof(int32_t) << s) * (size_t)threads);
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads) if (threads > 1)
  for (int64_t b = 0; b < nb; b++) {
    int32_t *tab = last + ((size_t)team_member() << s);
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
#pragma omp parallel for schedule(static) num_threads(threads) if (threads > 1)
  for (int64_t i = 0; i < m; i++)
    if (prev[i] >= 0) out[i] = g[prev[i]];
done:
  free(end);
  free(grouped);
  free(prev);
  free(g);
  free(last);
  free(at);
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
  /* the draws (step i swaps positions i and out[i]) */
  fkm_mt19937 g;
  fkm_mt_seed(&g, seed);
  uint32_t w[624];
  for (int64_t i0 = 0; i0 < m; i0 += 624) {
    const int c = m - i0 < 624 ? (int)(m - i0) : 624;
    mt_fill(&g, w, c);
    perm_draws(w, c, i0, n, out + i0);
  }
  return dense ? prefix_dense(n, m, out, err) : prefix_grouped(n, m, out, s, err);
}
