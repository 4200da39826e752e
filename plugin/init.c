/* Centroid seeding beyond the random permutation: FAISS 1.14's
 * ClusteringInitialization (k-means++ and AFK-MC^2), with its random streams
 * as libstdc++ draws them: std::mt19937_64, uniform_int_distribution<size_t>
 * (Lemire's multiply-shift with rejection, libstdc++ 11+), and
 * uniform_real_distribution<double> (generate_canonical: one 64-bit draw,
 * converted to double and scaled by 2^-64). Distances are the profile's
 * fvec_L2sqr (its loop order), accumulated in double as FAISS does.
 * Runs on the host over the training set (docs/profiles.md). */
#include "init.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "faiss_scan.h"

/* ------------------------------------------------------------ streams */

typedef struct mt64 {
  uint64_t s[312];
  int i;
} mt64;

static void mt64_seed(mt64 *g, uint64_t seed) {
  g->s[0] = seed;
  for (int i = 1; i < 312; i++)
    g->s[i] = 6364136223846793005ull * (g->s[i - 1] ^ (g->s[i - 1] >> 62)) + (uint64_t)i;
  g->i = 312;
}

static uint64_t mt64_next(mt64 *g) {
  if (g->i >= 312) {
    for (int i = 0; i < 312; i++) {
      const uint64_t y = (g->s[i] & 0xffffffff80000000ull) | (g->s[(i + 1) % 312] & 0x7fffffffull);
      uint64_t v = g->s[(i + 156) % 312] ^ (y >> 1);
      if (y & 1) v ^= 0xb5026f5aa96619e9ull;
      g->s[i] = v;
    }
    g->i = 0;
  }
  uint64_t z = g->s[g->i++];
  z ^= (z >> 29) & 0x5555555555555555ull;
  z ^= (z << 17) & 0x71d67fffeda60000ull;
  z ^= (z << 37) & 0xfff7eee000000000ull;
  z ^= z >> 43;
  return z;
}

/* uniform_int_distribution<size_t>(0, n - 1) */
static uint64_t uniform_index(mt64 *g, uint64_t n) {
  const uint64_t range = n; /* urange + 1 */
  unsigned __int128 product = (unsigned __int128)mt64_next(g) * range;
  uint64_t low = (uint64_t)product;
  if (low < range) {
    const uint64_t threshold = (0 - range) % range;
    while (low < threshold) {
      product = (unsigned __int128)mt64_next(g) * range;
      low = (uint64_t)product;
    }
  }
  return (uint64_t)(product >> 64);
}

/* generate_canonical<double, 53>(mt19937_64) */
static double canonical(mt64 *g) {
  const double sum = (double)mt64_next(g);
  double r = sum / 18446744073709551616.0;
  if (r >= 1.0) r = nextafter(1.0, 0.0);
  return r;
}

/* uniform_real_distribution<double>(0, b) */
static double uniform_real(mt64 *g, double b) {
  const double r = canonical(g);
  const double p = r * b;
  return p + 0.0;
}

/* sample_from_cumsum: the first index whose cumulative weight is not below
 * a uniform draw in [0, total); uniform when the total is not positive. */
static int64_t sample_cumsum(const double *cum, int64_t n, mt64 *g) {
  if (n == 0) return 0;
  const double total = cum[n - 1];
  if (!(total > 0)) return (int64_t)uniform_index(g, (uint64_t)n);
  const double r = uniform_real(g, total);
  int64_t lo = 0, hi = n; /* lower_bound */
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (cum[mid] < r)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < n - 1 ? lo : n - 1;
}

/* ------------------------------------------------------------ seeding */

static float l2(const fkm_arith *a, const float *x, const float *y, int64_t d) {
  return fkm_loop_eval(&a->l2, FKM_PROBE_L2, x, y, d);
}

/* distance_to_nearest_centroid: std::min over the new centroids, then the
 * existing ones, from FLT_MAX. */
static float nearest(const fkm_arith *a, const float *x, int64_t d, const float *cent,
                     int64_t nc, const float *exist, int64_t ne) {
  if (nc == 0 && ne == 0) return INFINITY;
  float m = FLT_MAX;
  for (int64_t c = 0; c < nc; c++) {
    const float v = l2(a, x, cent + c * d, d);
    if (v < m) m = v;
  }
  for (int64_t c = 0; c < ne; c++) {
    const float v = l2(a, x, exist + c * d, d);
    if (v < m) m = v;
  }
  return m;
}

/* init_distances_for_d2_sampling; returns the index of the first new
 * centroid (0 with existing centroids, else 1 after a uniform pick). */
static int64_t d2_start(const fkm_arith *a, const fkm_init_args *s, double *dist,
                        double *sum, int64_t *first, mt64 *g) {
  const int64_t n = s->n, d = s->d;
  *sum = 0;
  if (s->n_exist > 0) {
    for (int64_t i = 0; i < n; i++) {
      dist[i] = (double)nearest(a, s->x + i * d, d, NULL, 0, s->exist, s->n_exist);
      *sum += dist[i];
    }
    return 0;
  }
  *first = (int64_t)uniform_index(g, (uint64_t)n);
  memcpy(s->out, s->x + *first * d, sizeof(float) * (size_t)d);
  for (int64_t i = 0; i < n; i++) {
    dist[i] = (double)l2(a, s->x + i * d, s->out, d);
    *sum += dist[i];
  }
  return 1;
}

static fkm_status kmeans_pp(const fkm_arith *a, const fkm_init_args *s, fkm_errbuf *err) {
  const int64_t n = s->n, d = s->d, k = s->k;
  mt64 g;
  mt64_seed(&g, s->seed);
  double *md = malloc(sizeof(double) * (size_t)n), *cum = malloc(sizeof(double) * (size_t)n);
  if (!md || !cum) {
    free(md);
    free(cum);
    return fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                    "k-means++: cannot allocate the distances of %lld points", (long long)n);
  }
  double sum;
  int64_t first = 0;
  const int64_t c0 = d2_start(a, s, md, &sum, &first, &g);
  for (int64_t c = c0; c < k; c++) {
    cum[0] = md[0];
    for (int64_t i = 1; i < n; i++) cum[i] = cum[i - 1] + md[i];
    const int64_t next = sample_cumsum(cum, n, &g);
    float *cent = s->out + c * d;
    memcpy(cent, s->x + next * d, sizeof(float) * (size_t)d);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
      const double v = (double)l2(a, s->x + i * d, cent, d);
      if (v < md[i]) md[i] = v;
    }
  }
  free(md);
  free(cum);
  return FKM_OK;
}

/* A small open-addressing set of chosen indices (std::unordered_set's
 * membership is all AFK-MC^2 uses). */
typedef struct idxset {
  int64_t *slot;
  uint64_t mask;
} idxset;

static int set_has(const idxset *t, int64_t v, int insert) {
  for (uint64_t h = ((uint64_t)v * 0x9e3779b97f4a7c15ull) >> 20;; h++) {
    int64_t *e = &t->slot[h & t->mask];
    if (*e == v) return 1;
    if (*e < 0) {
      if (insert) *e = v;
      return 0;
    }
  }
}

static fkm_status afkmc2(const fkm_arith *a, const fkm_init_args *s, fkm_errbuf *err) {
  const int64_t n = s->n, d = s->d, k = s->k;
  mt64 g;
  mt64_seed(&g, s->seed);
  uint64_t slots = 16;
  while (slots < 2 * (uint64_t)k + 2) slots <<= 1;
  idxset chosen = {malloc(sizeof(int64_t) * slots), slots - 1};
  double *dist = malloc(sizeof(double) * (size_t)n), *q = malloc(sizeof(double) * (size_t)n),
         *cum = malloc(sizeof(double) * (size_t)n);
  fkm_status st = FKM_OK;
  if (!chosen.slot || !dist || !q || !cum) {
    st = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                  "AFK-MC^2: cannot allocate the proposal of %lld points", (long long)n);
    goto out;
  }
  memset(chosen.slot, 0xff, sizeof(int64_t) * slots);
  double sum;
  int64_t first = 0;
  const int64_t c0 = d2_start(a, s, dist, &sum, &first, &g);
  if (c0 == 1) {
    set_has(&chosen, first, 1);
    if (k == 1) goto out;
  }
  const double uniform_term = 0.5 / (double)n;
  for (int64_t i = 0; i < n; i++) {
    const double d2 = sum > 0 ? 0.5 * dist[i] / sum : 0.0;
    q[i] = d2 + uniform_term;
    cum[i] = (i > 0 ? cum[i - 1] : 0.0) + q[i];
  }
  for (int64_t c = c0; c < k; c++) {
    int64_t cur;
    do cur = sample_cumsum(cum, n, &g);
    while (set_has(&chosen, cur, 0));
    double cur_dist = (double)nearest(a, s->x + cur * d, d, s->out, c, s->exist, s->n_exist);
    double cur_q = q[cur];
    for (int m = 0; m < s->chain_length; m++) {
      const int64_t prop = sample_cumsum(cum, n, &g);
      if (set_has(&chosen, prop, 0)) continue;
      const double prop_dist =
          (double)nearest(a, s->x + prop * d, d, s->out, c, s->exist, s->n_exist);
      const double prop_q = q[prop];
      double accept = 0.0;
      if (cur_dist <= 0) {
        accept = 0.0;
      } else if (prop_q > 0) {
        const double num = prop_dist * cur_q, den = cur_dist * prop_q;
        const double ratio = num / den;
        accept = ratio < 1.0 ? ratio : 1.0; /* std::min(1.0, ratio) */
      }
      if (uniform_real(&g, 1.0) < accept) {
        cur = prop;
        cur_dist = prop_dist;
        cur_q = prop_q;
      }
    }
    set_has(&chosen, cur, 1);
    memcpy(s->out + c * d, s->x + cur * d, sizeof(float) * (size_t)d);
  }
out:
  free(chosen.slot);
  free(dist);
  free(q);
  free(cum);
  return st;
}

fkm_status fkm_init_centroids(const fkm_arith *a, fkm_init_method method,
                              const fkm_init_args *s, fkm_errbuf *err) {
  FKM_RETURN_IF(s->n < s->k, err, FKM_ERR_INVALID_ARG,
                "initialisation: %lld points for %lld centroids", (long long)s->n,
                (long long)s->k);
  if (s->k == 0) return FKM_OK;
  switch (method) {
    case FKM_INIT_KMEANS_PLUS_PLUS: return kmeans_pp(a, s, err);
    case FKM_INIT_AFK_MC2: return afkmc2(a, s, err);
    case FKM_INIT_RANDOM: break;
  }
  return fkm_fail(err, FKM_ERR_INTERNAL, "initialisation method %d has no seeding here",
                  (int)method);
}
