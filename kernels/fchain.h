/* Exact block steps of the objective's float chain (docs/contract.md
 * section 4): obj = fl(...fl(fl(s0 + a1) + a2)...), round to nearest even at
 * every step. Pure integer arithmetic on float bit patterns, shared by the
 * CUDA kernels (kernels/update.cu) and the host test that checks them
 * (tests/cpu/test_fchain.cpp), so both run literally the same rules.
 *
 * Inside one binade of the running sum s (ulp u), a run of additions is an
 * integer sum in units of u whose ties depend only on the parity of s/u; so
 * a run is summarised, per candidate exponent and parity, by its total T and
 * its least and greatest partial P_j, and applying it is an O(1) check
 * (every partial strictly inside the binade) and an integer addition. Joining
 * summaries is exact and associative. The proof, and the rules at the
 * binade's ends, zero and the subnormals: docs/certification.md section 3.
 * A summary holds three candidate exponents (base .. base + 2) chosen from
 * an estimate of s at the run's start; a wrong guess, or a run that crosses
 * a binade, makes fkm_fc_apply refuse and the caller adds value by value.
 */
#ifndef FKM_KERNELS_FCHAIN_H
#define FKM_KERNELS_FCHAIN_H

#include <stdint.h>

#ifdef __CUDACC__
#define FKM_HD __host__ __device__
#else
#define FKM_HD
#endif

#ifdef __cplusplus
extern "C" {
#endif

enum {
  FKM_FC_BLOCK = 256, /* values per block summary */
  FKM_FC_GROUP = 32,  /* blocks per group summary */
  FKM_FC_FINITE = 1,  /* flag: every value is finite */
  FKM_FC_NEGZERO = 2, /* flag: every value is -0 */
  FKM_FC_NONNEG = 4,  /* flag: every value is >= 0 or a zero */
  FKM_FC_NONPOS = 8   /* flag: every value is <= 0 or a zero */
};

/* One run at one exponent; index p = parity of S. */
typedef struct fkm_fc_run {
  int64_t d[2];  /* T = R_m - S */
  int64_t lo[2]; /* least partial P_j (fkm_fc_none() for an empty run) */
  int64_t hi[2]; /* greatest partial (-fkm_fc_none() for an empty run) */
  int32_t bad;
} fkm_fc_run;

/* A run at the candidate biased exponents base, base + 1, base + 2. */
typedef struct fkm_fc_sum {
  fkm_fc_run run[3];
  int32_t base;
  uint32_t flags; /* FKM_FC_FINITE | FKM_FC_NEGZERO, and-ed over the run */
} fkm_fc_sum;

static inline FKM_HD int64_t fkm_fc_none(void) { return (int64_t)1 << 62; }

static inline FKM_HD int64_t fkm_fc_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline FKM_HD int64_t fkm_fc_max(int64_t a, int64_t b) { return a > b ? a : b; }

/* Parity of an int64 without relying on the sign of %. */
static inline FKM_HD int fkm_fc_odd(int64_t v) { return (int)((uint64_t)v & 1u); }

static inline FKM_HD void fkm_fc_run_init(fkm_fc_run *x) {
  int p;
  for (p = 0; p < 2; p++) {
    x->d[p] = 0;
    x->lo[p] = fkm_fc_none();
    x->hi[p] = -fkm_fc_none();
  }
  x->bad = 0;
}

/* a / u for u = 2^(ec - 150), ec >= 1: *r = rint(a / u) and *tie = 0, or
 * for a / u = t + 1/2 exactly, *r = t (the floor) and *tie = 1. Returns 0
 * when a is NaN or infinite or |a / u| >= 2^25. */
static inline FKM_HD int fkm_fc_units(uint32_t a, int ec, int64_t *r, int *tie) {
  const int ea = (int)((a >> 23) & 0xffu);
  const int64_t m = (int64_t)((a & 0x7fffffu) | (ea ? 0x800000u : 0u));
  const int sh = (ea ? ea : 1) - ec; /* a / u = m 2^sh */
  int64_t t = 0;
  *tie = 0;
  if (ea == 255) return 0;
  if (m == 0) {
    t = 0;
  } else if (sh >= 0) {
    if (sh >= 26) return 0;
    t = m << sh;
    if (t >= ((int64_t)1 << 25)) return 0;
  } else if (sh >= -25) {
    const int k = -sh;
    const int64_t f = m & (((int64_t)1 << k) - 1), h = (int64_t)1 << (k - 1);
    t = (m >> k) + (f > h ? 1 : 0);
    *tie = f == h;
  } /* else m < 2^24 <= 2^(k-1): below half a unit, t = 0 */
  if (a >> 31) t = *tie ? -t - 1 : -t; /* floor of -(t + 1/2) for a tie */
  *r = t;
  return 1;
}

/* Appends the value a (float bits) to a run at exponent ec. */
static inline FKM_HD void fkm_fc_run_push(fkm_fc_run *x, uint32_t a, int ec) {
  int64_t r;
  int tie, p;
  if (!fkm_fc_units(a, ec, &r, &tie)) {
    x->bad = 1;
    return;
  }
  for (p = 0; p < 2; p++) {
    /* the tie goes to the even one of R + r and R + r + 1, R = S + d */
    const int64_t rr = r + (tie && fkm_fc_odd(p + x->d[p] + r) ? 1 : 0);
    x->d[p] += rr;
    x->lo[p] = fkm_fc_min(x->lo[p], x->d[p]);
    x->hi[p] = fkm_fc_max(x->hi[p], x->d[p]);
  }
}

/* The run a followed by the run b (same exponent). */
static inline FKM_HD fkm_fc_run fkm_fc_run_join(const fkm_fc_run *a, const fkm_fc_run *b) {
  fkm_fc_run x;
  int p;
  for (p = 0; p < 2; p++) {
    const int q = fkm_fc_odd(p + a->d[p]); /* parity of S after a */
    x.d[p] = a->d[p] + b->d[q];
    x.lo[p] = fkm_fc_min(a->lo[p], a->d[p] + b->lo[q]);
    x.hi[p] = fkm_fc_max(a->hi[p], a->d[p] + b->hi[q]);
  }
  x.bad = a->bad | b->bad;
  return x;
}

/* The run of a summary at exponent ec, bad when ec is not a candidate. */
static inline FKM_HD fkm_fc_run fkm_fc_run_at(const fkm_fc_sum *s, int ec) {
  const int c = ec - s->base;
  fkm_fc_run x;
  if (c >= 0 && c < 3) return s->run[c];
  fkm_fc_run_init(&x);
  x.bad = 1;
  return x;
}

/* Candidates around the estimate est (float bits) of s at the run's start:
 * its exponent (counting subnormals and zero as 1, which shares their grid)
 * and its neighbours, shifted to stay within 1..254. */
static inline FKM_HD int fkm_fc_base(uint32_t est) {
  const int e = (int)((est >> 23) & 0xffu) - 1;
  return e < 1 ? 1 : e > 252 ? 252 : e;
}

static inline FKM_HD void fkm_fc_sum_init(fkm_fc_sum *x, int base) {
  int c;
  for (c = 0; c < 3; c++) fkm_fc_run_init(&x->run[c]);
  x->base = base;
  x->flags = FKM_FC_FINITE | FKM_FC_NEGZERO | FKM_FC_NONNEG | FKM_FC_NONPOS;
}

static inline FKM_HD uint32_t fkm_fc_flags(uint32_t a) {
  const int zero = (a & 0x7fffffffu) == 0;
  return (((a >> 23) & 0xffu) != 0xffu ? (uint32_t)FKM_FC_FINITE : 0u) |
         (a == 0x80000000u ? (uint32_t)FKM_FC_NEGZERO : 0u) |
         (!(a >> 31) || zero ? (uint32_t)FKM_FC_NONNEG : 0u) |
         ((a >> 31) || zero ? (uint32_t)FKM_FC_NONPOS : 0u);
}

static inline FKM_HD void fkm_fc_sum_push(fkm_fc_sum *x, uint32_t a) {
  int c;
  for (c = 0; c < 3; c++) fkm_fc_run_push(&x->run[c], a, x->base + c);
  x->flags &= fkm_fc_flags(a);
}

/* A finite float s (bits b) in units of its binade: ec the exponent of the
 * units (1 for zeros and subnormals, whose grid is the same 2^-149),
 * *S = s / u (|S| < 2^24, signed), and the bounds every partial must stay
 * strictly inside (lo < S + P < hi). */
static inline FKM_HD int fkm_fc_decode(uint32_t b, int64_t *S, int64_t *lo, int64_t *hi) {
  const int e = (int)((b >> 23) & 0xffu), ec = e ? e : 1, neg = (int)(b >> 31);
  *S = (int64_t)((b & 0x7fffffu) | (e ? 0x800000u : 0u));
  if (neg) *S = -*S;
  *lo = ec == 1 ? -((int64_t)1 << 24) : neg ? -((int64_t)1 << 24) : (int64_t)1 << 23;
  *hi = ec == 1 ? (int64_t)1 << 24 : neg ? -((int64_t)1 << 23) : (int64_t)1 << 24;
  return ec;
}

/* x's run at exponent ec, or NULL when it has none or it is bad. */
static inline FKM_HD const fkm_fc_run *fkm_fc_run_for(const fkm_fc_sum *x, int ec) {
  const int c = ec - x->base;
  return c < 0 || c > 2 || x->run[c].bad ? 0 : &x->run[c];
}

/* Whether every partial of run stays inside the binade from S: strictly
 * inside (lo, hi), except on the edge toward zero for a run whose values
 * all move s away from zero (flags: the run's summary's). A partial on that
 * edge is s = +-2^e exactly; an addition there that moved toward zero would
 * round on the finer grid below, one that moves away rounds on the binade's
 * own grid like any other (a float chain that saturates, its sum stuck
 * where half its ulp exceeds the values, often sits exactly there). */
static inline FKM_HD int fkm_fc_fits(const fkm_fc_run *run, uint32_t flags, int64_t S,
                                     int64_t lo, int64_t hi) {
  const int p = fkm_fc_odd(S);
  const int64_t lo_ok = S > 0 && (flags & FKM_FC_NONNEG) ? lo - 1 : lo;
  const int64_t hi_ok = S < 0 && (flags & FKM_FC_NONPOS) ? hi + 1 : hi;
  return S + run->lo[p] > lo_ok && S + run->hi[p] < hi_ok;
}

/* The float bits of R units at exponent ec (|R| < 2^24, and |R| >= 2^23
 * where ec > 1); R == 0 is -0 when negzero. At ec == 1 R's bits are the
 * exponent field 0 or 1 and the mantissa; above, the hidden bit is dropped. */
static inline FKM_HD uint32_t fkm_fc_encode(int64_t R, int ec, int negzero) {
  if (R == 0) return negzero ? 0x80000000u : 0u;
  return (R < 0 ? 0x80000000u : 0u) |
         (ec == 1 ? (uint32_t)(R < 0 ? -R : R)
                  : ((uint32_t)ec << 23) | ((uint32_t)(R < 0 ? -R : R) - 0x800000u));
}

/* One O(1) step of the walker: *s (float bits) becomes the chain's value
 * after the summarised run and 1 is returned, or 0 when the summary cannot
 * be applied to this s (then *s is unchanged and the caller adds the run's
 * values one by one). */
static inline FKM_HD int fkm_fc_apply(const fkm_fc_sum *x, uint32_t *s) {
  const uint32_t b = *s;
  int64_t S, lo, hi;
  const fkm_fc_run *run;
  if (((b >> 23) & 0xffu) == 255u) /* inf plus finite values stays; NaN goes value by value */
    return (b & 0x7fffffu) == 0 && (x->flags & FKM_FC_FINITE);
  const int ec = fkm_fc_decode(b, &S, &lo, &hi);
  run = fkm_fc_run_for(x, ec);
  if (!run || !fkm_fc_fits(run, x->flags, S, lo, hi)) return 0;
  *s = fkm_fc_encode(S + run->d[fkm_fc_odd(S)], ec,
                     b == 0x80000000u && (x->flags & FKM_FC_NEGZERO));
  return 1;
}

/* Runs applied one after the other, as a function of the parity q of the
 * starting S: S -> S + d[q] (the parity after each run follows from q and
 * the offsets, so a sequence of runs that all apply is such a map too).
 * fkm_fc_then(a, b): a, then b. Associative, so a warp can scan it. */
typedef struct fkm_fc_step {
  int64_t d[2];
} fkm_fc_step;

static inline FKM_HD fkm_fc_step fkm_fc_then(fkm_fc_step a, fkm_fc_step b) {
  fkm_fc_step r; /* selects, not b.d[parity]: registers on the device */
  r.d[0] = a.d[0] + (fkm_fc_odd(a.d[0]) ? b.d[1] : b.d[0]);
  r.d[1] = a.d[1] + (fkm_fc_odd(1 + a.d[1]) ? b.d[1] : b.d[0]);
  return r;
}

/* The walker's prefix step over summaries x[0..m) for a finite *s: the
 * longest prefix whose runs all fit, each checked at the S the composed
 * offsets of the ones before it give, is applied at once; returns its
 * length (*s unchanged when 0). The same value as fkm_fc_apply one summary
 * at a time (integer additions are exact). The CUDA walker computes the
 * prefixes of up to 32 summaries at once, one per lane (a shuffle scan of
 * fkm_fc_then); this is its sequential statement. */
static inline FKM_HD int fkm_fc_apply_prefix(const fkm_fc_sum *x, int m, uint32_t *s) {
  int64_t S, lo, hi;
  const int ec = fkm_fc_decode(*s, &S, &lo, &hi), q = fkm_fc_odd(S);
  fkm_fc_step acc = {{0, 0}};
  int i, negzero = *s == 0x80000000u;
  for (i = 0; i < m; i++) {
    const fkm_fc_run *run = fkm_fc_run_for(&x[i], ec);
    fkm_fc_step st;
    if (!run || !fkm_fc_fits(run, x[i].flags, S + acc.d[q], lo, hi)) break;
    st.d[0] = run->d[0];
    st.d[1] = run->d[1];
    acc = fkm_fc_then(acc, st);
    negzero = negzero && (x[i].flags & FKM_FC_NEGZERO);
  }
  if (i > 0) *s = fkm_fc_encode(S + acc.d[q], ec, negzero);
  return i;
}

#ifdef __cplusplus
}
#endif

#undef FKM_HD

#endif
