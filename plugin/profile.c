/* Profiles: which FAISS build's arithmetic a run reproduces
 * (include/flashkm.h, fkm_profile; docs/profiles.md).
 *
 * A profile is a FAISS release, a SIMD level and the summation orders of
 * FAISS's own loops in that build. The release decides the structure of
 * FAISS's k=1 search and of Clustering::train (fkm_arith_of below, from
 * FAISS's sources of each release); the loop orders are what the compiler
 * made of FAISS's "imprecise" loops, which the sources do not fix: they
 * were measured on each release's pip wheel (and Debian's 1.7.3) with
 * fkm_probe_identify, and a door that can call FAISS measures them again
 * on the build it loads. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "arith.h"
#include "faiss_scan.h"

/* ------------------------------------------------------------ loop orders */

/* {width, main_fma, tail_width, tail_separate, tail_fma, scalar_fma} */
static const fkm_loop_order LOOP_DOUBLE = {0, 0, 0, 0, 0, 0};  /* 1.7.3 norm */
static const fkm_loop_order LOOP_SEQ = {1, 0, 0, 0, 0, 0};     /* 1.7.3 l2 / ip */
static const fkm_loop_order LOOP_W4 = {4, 0, 0, 0, 0, 0};      /* generic builds */
static const fkm_loop_order LOOP_W4_T2 = {4, 0, 2, 0, 0, 0};   /* generic fvec_L2sqr, GCC 14 */
static const fkm_loop_order LOOP_G10_AVX2 = {8, 1, 4, 1, 0, 1};
static const fkm_loop_order LOOP_G10_AVX512 = {16, 1, 8, 1, 0, 1};
static const fkm_loop_order LOOP_G14_AVX2 = {8, 0, 4, 0, 1, 1};
static const fkm_loop_order LOOP_G14_AVX512 = {16, 1, 8, 0, 1, 1};
static const fkm_loop_order LOOP_110_AVX512 = {16, 0, 8, 0, 1, 1};

/* The canonical form: fields that cannot change a result are zero. */
static fkm_loop_order canon(fkm_loop_order o) {
  if (o.width == 0) o.main_fma = 0;
  if (o.width <= 1) {
    o.tail_width = o.tail_separate = o.tail_fma = 0;
    o.scalar_fma = 0;
  }
  if (o.tail_width == 0) o.tail_separate = o.tail_fma = 0;
  if (o.tail_separate) o.tail_fma = 0;
  return o;
}

static int loop_equal(fkm_loop_order a, fkm_loop_order b) {
  a = canon(a);
  b = canon(b);
  return a.width == b.width && a.main_fma == b.main_fma && a.tail_width == b.tail_width &&
         a.tail_separate == b.tail_separate && a.tail_fma == b.tail_fma &&
         a.scalar_fma == b.scalar_fma;
}

static int is_pow2(int32_t v) { return v > 0 && (v & (v - 1)) == 0; }

static int loop_valid(const fkm_loop_order *o) {
  if (o->width < 0 || o->width > FKM_SCAN_MAX_LANES) return 0;
  if (o->width > 0 && !is_pow2(o->width)) return 0;
  if (o->tail_width != 0 && (!is_pow2(o->tail_width) || o->tail_width >= o->width))
    return 0;
  return 1;
}

/* ------------------------------------------------------------ releases */

/* The releases this library knows, with the loop orders of their builds
 * (index by fkm_simd; a level the release was not built for is absent).
 * Measured: 1.7.3 (Debian), 1.7.4, 1.8.0, 1.9.0, 1.10.0, 1.11.0, 1.12.0,
 * 1.13.2, 1.14.3, 1.15.1 (pip faiss-cpu); the others are taken to be built
 * as their neighbours. */
typedef struct release {
  int version;
  int levels; /* bit l: built for fkm_simd l */
  const fkm_loop_order *norm[3], *l2[3], *ip[3];
} release;

#define G10 {&LOOP_W4, &LOOP_G10_AVX2, &LOOP_G10_AVX512}
#define G14_NORM {&LOOP_W4, &LOOP_G14_AVX2, &LOOP_G14_AVX512}
#define G14_L2 {&LOOP_W4_T2, &LOOP_G14_AVX2, &LOOP_G14_AVX512}
#define G14 G14_NORM, G14_L2, G14_NORM
#define ALL_LEVELS 7

static const release RELEASES[] = {
    {10703, 1, {&LOOP_DOUBLE, 0, 0}, {&LOOP_SEQ, 0, 0}, {&LOOP_SEQ, 0, 0}},
    {10704, 3, {&LOOP_W4, &LOOP_G10_AVX2, 0}, {&LOOP_W4, &LOOP_G10_AVX2, 0},
     {&LOOP_W4, &LOOP_G10_AVX2, 0}},
    {10800, ALL_LEVELS, G10, G10, G10},
    {10900, ALL_LEVELS, G10, G10, G10},
    {11000, ALL_LEVELS,
     {&LOOP_W4, &LOOP_G14_AVX2, &LOOP_110_AVX512},
     {&LOOP_W4_T2, &LOOP_G14_AVX2, &LOOP_110_AVX512},
     {&LOOP_W4, &LOOP_G14_AVX2, &LOOP_110_AVX512}},
    {11100, ALL_LEVELS, G14},
    {11200, ALL_LEVELS, G14},
    {11300, ALL_LEVELS, G14},
    {11301, ALL_LEVELS, G14},
    {11302, ALL_LEVELS, G14},
    {11400, ALL_LEVELS, G14},
    {11401, ALL_LEVELS, G14},
    {11402, ALL_LEVELS, G14},
    {11403, ALL_LEVELS, G14},
    {11500, ALL_LEVELS, G14},
    {11501, ALL_LEVELS, G14},
};
#define NRELEASES ((int)(sizeof RELEASES / sizeof RELEASES[0]))

static const release *find_release(int version) {
  for (int i = 0; i < NRELEASES; i++)
    if (RELEASES[i].version == version) return &RELEASES[i];
  return NULL;
}

static const char *simd_name(fkm_simd s) {
  switch (s) {
    case FKM_SIMD_NONE: return "none";
    case FKM_SIMD_AVX2: return "avx2";
    case FKM_SIMD_AVX512: return "avx512";
  }
  return "?";
}

static int64_t default_threshold(int version) { return version >= 11402 ? 128000 : 20; }

fkm_status fkm_profile_init(fkm_profile *p, int version, fkm_simd simd) {
  if (!p) return FKM_ERR_INVALID_ARG;
  if (simd != FKM_SIMD_NONE && simd != FKM_SIMD_AVX2 && simd != FKM_SIMD_AVX512)
    return FKM_ERR_INVALID_ARG;
  fkm_profile q; /* *p is written on success only */
  memset(&q, 0, sizeof q);
  q.blas_threshold = -1;
  if (version == 0) { /* flashkm's reference: FAISS 1.7.3's formula, no direct path */
    q.simd = FKM_SIMD_NONE;
    q.norm = LOOP_DOUBLE;
    q.l2 = LOOP_SEQ;
    q.ip = LOOP_SEQ;
  } else {
    const release *r = find_release(version);
    if (!r || !(r->levels & (1 << simd))) return FKM_ERR_UNSUPPORTED;
    q.faiss_version = version;
    q.simd = simd;
    q.norm = *r->norm[simd];
    q.l2 = *r->l2[simd];
    q.ip = *r->ip[simd];
  }
  *p = q;
  return FKM_OK;
}

int fkm_profile_nearest(int version) {
  if (version <= 0) return 0;
  int best = RELEASES[0].version;
  for (int i = 0; i < NRELEASES; i++) {
    const int v = RELEASES[i].version;
    if (abs(v - version) < abs(best - version) ||
        (abs(v - version) == abs(best - version) && v < best))
      best = v;
  }
  return best;
}

fkm_status fkm_profile_name(const fkm_profile *p, char *buf, size_t size) {
  if (!p || !buf || size == 0) return FKM_ERR_INVALID_ARG;
  if (p->faiss_version == 0) {
    snprintf(buf, size, "flashkm");
    return FKM_OK;
  }
  fkm_profile ref;
  const int known = fkm_profile_init(&ref, p->faiss_version, p->simd) == FKM_OK;
  const int v = p->faiss_version;
  int n = snprintf(buf, size, "faiss-%d.%d.%d-%s", v / 10000, v / 100 % 100, v % 100,
                   simd_name(p->simd));
  if (known && (!loop_equal(p->norm, ref.norm) || !loop_equal(p->l2, ref.l2) ||
                !loop_equal(p->ip, ref.ip))) {
    if (n >= 0 && (size_t)n < size) n += snprintf(buf + n, size - (size_t)n, "+loops");
  }
  if (p->blas_threshold >= 0 && p->blas_threshold != default_threshold(v) && n >= 0 &&
      (size_t)n < size)
    snprintf(buf + n, size - (size_t)n, "+blas=%lld", (long long)p->blas_threshold);
  return FKM_OK;
}

/* The level FAISS's loader (and 1.14.2+'s dispatch) picks on this CPU. */
static fkm_simd host_simd(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512cd"))
    return FKM_SIMD_AVX512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return FKM_SIMD_AVX2;
#endif
  return FKM_SIMD_NONE;
}

fkm_status fkm_profile_parse(const char *name, fkm_profile *p) {
  if (!name || !p) return FKM_ERR_INVALID_ARG;
  if (strcmp(name, "flashkm") == 0) return fkm_profile_init(p, 0, FKM_SIMD_NONE);
  if (strncmp(name, "faiss-", 6) != 0) return FKM_ERR_INVALID_ARG;
  const char *s = name + 6;
  int part[3] = {0, 0, 0}, nparts = 0;
  while (nparts < 3 && isdigit((unsigned char)*s)) {
    long v = 0;
    while (isdigit((unsigned char)*s) && v < 1000) v = v * 10 + (*s++ - '0');
    if (v >= 100) return FKM_ERR_INVALID_ARG;
    part[nparts++] = (int)v;
    if (*s != '.') break;
    s++;
  }
  if (nparts < 2 || part[0] < 1) return FKM_ERR_INVALID_ARG;
  const int version = part[0] * 10000 + part[1] * 100 + part[2];
  fkm_simd simd;
  if (*s == '\0') {
    simd = host_simd();
    if (version == 10703) simd = FKM_SIMD_NONE;
    if (version == 10704 && simd == FKM_SIMD_AVX512) simd = FKM_SIMD_AVX2;
  } else if (strcmp(s, "-none") == 0 || strcmp(s, "-generic") == 0) {
    simd = FKM_SIMD_NONE;
  } else if (strcmp(s, "-avx2") == 0) {
    simd = FKM_SIMD_AVX2;
  } else if (strcmp(s, "-avx512") == 0) {
    simd = FKM_SIMD_AVX512;
  } else {
    return FKM_ERR_INVALID_ARG;
  }
  return fkm_profile_init(p, version, simd);
}

/* ------------------------------------------------------------ probes */

/* Inputs that tell the orders apart: every d in 1..FKM_PROBE_MAX_D twice,
 * values of mixed sign and magnitude (so that sums round), drawn from a
 * fixed SplitMix64 stream. */
static uint64_t probe_mix(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

static float probe_value(uint64_t key) {
  const uint64_t r = probe_mix(key);
  const float mant = (float)(r >> 40) / 16777216.0f; /* [0, 1), 24 bits */
  const int e = (int)((r >> 8) % 7) - 3;
  const float v = (mant + 0.5f) * ldexpf(1.0f, e);
  return (r & 1) ? -v : v;
}

fkm_status fkm_probe_case(int i, int64_t *d, float *x, float *y) {
  if (i < 0 || i >= FKM_PROBE_CASES || !d || !x || !y) return FKM_ERR_INVALID_ARG;
  *d = 1 + i % FKM_PROBE_MAX_D;
  for (int j = 0; j < FKM_PROBE_MAX_D; j++) {
    x[j] = j < *d ? probe_value(((uint64_t)i << 20) | (uint64_t)(2 * j)) : 0.0f;
    y[j] = j < *d ? probe_value(((uint64_t)i << 20) | (uint64_t)(2 * j + 1)) : 0.0f;
  }
  return FKM_OK;
}

/* Every order the library models, canonical and distinct, in a fixed order
 * (the known builds' orders come first among equals). */
static int candidates(fkm_loop_order *out, int cap) {
  int n = 0;
  const fkm_loop_order known[] = {LOOP_DOUBLE,     LOOP_SEQ,       LOOP_W4,
                                  LOOP_W4_T2,      LOOP_G10_AVX2,  LOOP_G10_AVX512,
                                  LOOP_G14_AVX2,   LOOP_G14_AVX512, LOOP_110_AVX512};
  for (size_t i = 0; i < sizeof known / sizeof known[0] && n < cap; i++) out[n++] = known[i];
  static const int widths[] = {0, 1, 2, 4, 8, 16, 32};
  for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
    const int w = widths[wi];
    for (int tw = 0; tw == 0 || tw < w; tw = tw ? 2 * tw : 2) {
      for (int bits = 0; bits < 16; bits++) {
        fkm_loop_order o = {w, bits & 1, tw, (bits >> 1) & 1, (bits >> 2) & 1, (bits >> 3) & 1};
        o = canon(o);
        int dup = 0;
        for (int k = 0; k < n && !dup; k++) dup = loop_equal(out[k], o);
        if (!dup && n < cap) out[n++] = o;
      }
      if (w <= 2) break; /* no tail narrower than the main loop to try */
    }
  }
  return n;
}

static int same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

fkm_status fkm_probe_identify(fkm_probe_fn fn, const float *observed, fkm_loop_order *order) {
  if (!observed || !order ||
      (fn != FKM_PROBE_NORM && fn != FKM_PROBE_L2 && fn != FKM_PROBE_IP))
    return FKM_ERR_INVALID_ARG;
  fkm_loop_order cand[512];
  const int nc = candidates(cand, 512);
  float x[FKM_PROBE_MAX_D], y[FKM_PROBE_MAX_D];
  int alive[512];
  for (int c = 0; c < nc; c++) alive[c] = 1;
  for (int i = 0; i < FKM_PROBE_CASES; i++) {
    int64_t d;
    fkm_probe_case(i, &d, x, y);
    for (int c = 0; c < nc; c++)
      if (alive[c] && !same_bits(fkm_loop_eval(&cand[c], fn, x, y, d), observed[i]))
        alive[c] = 0;
  }
  for (int c = 0; c < nc; c++)
    if (alive[c]) {
      *order = cand[c];
      return FKM_OK;
    }
  return FKM_ERR_UNSUPPORTED;
}

/* ------------------------------------------------------------ traits */

fkm_status fkm_arith_of(const fkm_profile *p, fkm_arith *a, fkm_errbuf *err) {
  memset(a, 0, sizeof *a);
  const int v = p->faiss_version;
  FKM_RETURN_IF(!loop_valid(&p->norm) || !loop_valid(&p->l2) || !loop_valid(&p->ip), err,
                FKM_ERR_INVALID_ARG,
                "params->profile: a loop order is malformed (width 0 or a power of two "
                "up to 32, tail_width 0 or a smaller power of two)");
  a->version = v;
  a->simd = p->simd;
  a->norm = canon(p->norm);
  a->l2 = canon(p->l2);
  a->ip = canon(p->ip);
  a->top1_lanes = 1;
  if (v == 0) { /* flashkm: the reference order, every newer parameter available */
    a->threshold = -1;
    a->early_stop = 1;
    a->init_methods = 1;
    a->faster_subsampling = 2;
    return FKM_OK;
  }
  const release *r = find_release(v);
  FKM_RETURN_IF(!r, err, FKM_ERR_UNSUPPORTED,
                "params->profile: FAISS %d.%d.%d has no profile in flashkm %s (nearest: "
                "%d.%d.%d)",
                v / 10000, v / 100 % 100, v % 100, fkm_version_string(),
                fkm_profile_nearest(v) / 10000, fkm_profile_nearest(v) / 100 % 100,
                fkm_profile_nearest(v) % 100);
  FKM_RETURN_IF((unsigned)p->simd > FKM_SIMD_AVX512 || !(r->levels & (1 << p->simd)), err,
                FKM_ERR_UNSUPPORTED,
                "params->profile: FAISS %d.%d.%d was not built for SIMD level %d", v / 10000,
                v / 100 % 100, v % 100, (int)p->simd);
  const int dd = v >= 11402; /* the dynamic-dispatch builds */
  const int avx = p->simd != FKM_SIMD_NONE;
  a->direct_nxd = dd;
  a->threshold = p->blas_threshold >= 0 ? p->blas_threshold : default_threshold(v);
  if (v >= 10704 && avx) {
    /* exhaustive_L2sqr_blas_cmax: the AVX2 code in every AVX build until
     * 1.14.1 (an AVX-512 wheel is compiled with __AVX2__ too); 16 lanes at
     * AVX-512 from 1.14.2 */
    a->cmax_lanes = dd && p->simd == FKM_SIMD_AVX512 ? 16 : 8;
    /* exhaustive_L2sqr_fused_cmax: the simdlib kernel (d <= 16) with AVX2;
     * the AVX-512 kernel (d <= 32) needs __AVX512F__ (1.8.0+; 1.7.4 tested
     * a macro no compiler defines) */
    if (p->simd == FKM_SIMD_AVX512 && v >= 10800) {
      a->fused_max_d = 32;
      a->fused_lanes = 16;
      a->fused_norm4_hadd = 1;
    } else {
      a->fused_max_d = 16;
      a->fused_lanes = 8;
    }
  }
  if (v >= 11500 && avx) a->top1_lanes = p->simd == FKM_SIMD_AVX512 ? 16 : 8;
  a->weighted_fma = avx && !dd && v >= 10704;
  a->early_stop = dd;
  a->init_methods = v >= 11400;
  a->faster_subsampling = v >= 11402 ? 2 : v >= 10900 ? 1 : 0;
  a->seed_clock = v >= 10900;
  return FKM_OK;
}

void fkm_arith_pq_rule(const fkm_arith *a, fkm_pq_rule *rule) {
  const int v = a->version, avx = a->simd != FKM_SIMD_NONE;
  memset(rule, 0, sizeof *rule);
  rule->l2 = a->l2;
  rule->sum = v >= 10800 ? FKM_PQ_HSUM : FKM_PQ_HADD;
  if (!avx || v < 10704) return; /* generic builds (and 1.7.3, Debian's): the reference */
  /* D2 / D4 / D8 kernels from 1.7.4; 16 lanes in the AVX-512 code of 1.9+
   * (1.8.0's AVX-512 build runs the AVX2 kernels) */
  rule->lanes = a->simd == FKM_SIMD_AVX512 && v >= 10900 ? 16 : 8;
  /* fvec_L2sqr_ny's D12 kernel until 1.14 sent every other d to fvec_L2sqr */
  rule->d12 = v < 11400;
}

fkm_path fkm_arith_path(const fkm_arith *a, fkm_metric metric, int64_t nx, int64_t d) {
  if (a->threshold >= 0) {
    const int direct = a->direct_nxd ? (nx * d < a->threshold) : (nx < a->threshold);
    if (direct) return FKM_PATH_DIRECT;
  }
  if (metric == FKM_METRIC_L2 && d <= a->fused_max_d) return FKM_PATH_FUSED;
  return FKM_PATH_BLAS;
}

float fkm_arith_norm(const fkm_arith *a, fkm_path path, const float *x, int64_t d) {
  if (path == FKM_PATH_FUSED) return fkm_fused_norm(x, d, a->fused_norm4_hadd);
  return fkm_loop_eval(&a->norm, FKM_PROBE_NORM, x, x, d);
}
