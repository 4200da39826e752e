/* The objective's float and double chains on the GPU (included by
 * kernels/update.cu, one translation unit with the update): the float sum
 * of the distances in point order, computed in parallel and bit-exact
 * (kernels/fchain.h; docs/certification.md section 3), and the double sum
 * beside it, with their scratch layout. */
#ifndef FKM_KERNELS_OBJECTIVE_CUH
#define FKM_KERNELS_OBJECTIVE_CUH

#include <cub/block/block_scan.cuh>

namespace {

/* The objective (docs/contract.md section 4): obj = fl(...fl(fl(0 + d0) +
 * d1)...), obj_double likewise in double, both in point order: sequential
 * chains by definition (no partial sums may be combined). The float chain is
 * cut into blocks of FKM_FC_BLOCK values and groups of FKM_FC_GROUP blocks,
 * summarised per candidate exponent (kernels/fchain.h): fchain_estimate and
 * fchain_prefix estimate s at each block's start, fchain_summarise builds
 * the summaries in parallel, fchain_walk (one warp) applies group summaries
 * and adds value by value (__fadd_rn) the blocks it refuses. The double
 * chain adds blocks exactly where their values share a grid (dchain_blocks,
 * dchain_seq). Why both are bit-exact: docs/certification.md section 3. */
/* Batched objectives: blockIdx.y is the problem; its values start
 * blockIdx.y * xs elements further, its scratch blockIdx.y * ss bytes
 * further, its result is o[blockIdx.y]. */
template <typename T> __device__ __forceinline__ T *problem_ptr(T *p, size_t bytes) {
  return reinterpret_cast<T *>(reinterpret_cast<uintptr_t>(p) + (size_t)blockIdx.y * bytes);
}

__global__ void objective_reset(fkm_objective *o) {
  o += blockIdx.y;
  o->obj = 0.0f;
  o->obj_double = 0.0;
  o->bad_label = -1;
}

/* The first of rows i0, i0 + step, ... below r1 without a label, or -1. */
__device__ __forceinline__ long long first_unlabelled(const int32_t *__restrict__ labels,
                                                      int64_t i0, int64_t r1, int64_t step) {
  for (int64_t i = i0; i < r1; i += step)
    if (labels[i] < 0) return i;
  return -1;
}

__global__ void objective_bad(const int32_t *__restrict__ labels, int64_t r0, int64_t r1,
                              int64_t xs, fkm_objective *o) {
  labels += blockIdx.y * xs;
  o += blockIdx.y;
  const int64_t i0 = r0 + (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  const long long bad = first_unlabelled(labels, i0, r1, (int64_t)gridDim.x * blockDim.x);
  if (bad >= 0) atomicMin((unsigned long long *)&o->bad_label, (unsigned long long)bad);
}

constexpr int FC_LANE = FKM_FC_BLOCK / 32; /* values per lane of a block's warp */
constexpr int FC_WARPS = 32;                /* warps per group in fchain_summarise */

static_assert(FKM_FC_GROUP == 32, "a group is one warp's lanes");
static_assert(FKM_FC_GROUP % FC_WARPS == 0, "whole blocks per warp");

__host__ __device__ int64_t fc_blocks(int64_t n) { return (n + FKM_FC_BLOCK - 1) / FKM_FC_BLOCK; }
__host__ __device__ int64_t fc_groups(int64_t n) { return (fc_blocks(n) + FKM_FC_GROUP - 1) / FKM_FC_GROUP; }

/* The estimate of s, part 1: est of block b = the double sum of its finite
 * values, by a warp (each lane its FC_LANE values, then a fixed shuffle
 * tree: deterministic, and only a guess), in every lane. */
__device__ double fc_block_estimate(const float *__restrict__ dist, int64_t r0, int64_t n,
                                    int64_t b) {
  const int lane = threadIdx.x % 32;
  double t = 0.0;
  for (int j = 0; j < FC_LANE; j++) {
    const int64_t i = b * FKM_FC_BLOCK + lane * FC_LANE + j;
    const float v = i < n ? dist[r0 + i] : 0.0f;
    t += fabsf(v) <= FLT_MAX ? (double)v : 0.0;
  }
  for (int off = 16; off > 0; off /= 2) t += __shfl_xor_sync(~0u, t, off);
  return t;
}

constexpr int FC_EST_WARPS = 8; /* blocks estimated by a thread block */
__global__ void __launch_bounds__(32 * FC_EST_WARPS)
fchain_estimate(const float *__restrict__ dist, int64_t r0, int64_t r1, int64_t xs,
                double *__restrict__ est, size_t ss) {
  dist += blockIdx.y * xs;
  est = problem_ptr(est, ss);
  const int64_t b = (int64_t)blockIdx.x * FC_EST_WARPS + threadIdx.x / 32;
  if (b >= fc_blocks(r1 - r0)) return;
  const double t = fc_block_estimate(dist, r0, r1 - r0, b);
  if (threadIdx.x % 32 == 0) est[b] = t;
}

/* Part 2, one thread block: est[b] := obj + est[0] + ... + est[b - 1], each
 * thread scanning a contiguous slice around one block-wide scan. */
constexpr int FC_SCAN = 1024;

__global__ void __launch_bounds__(FC_SCAN)
fchain_prefix(double *__restrict__ est, int64_t nb, size_t ss, const fkm_objective *o) {
  est = problem_ptr(est, ss);
  o += blockIdx.y;
  using Scan = cub::BlockScan<double, FC_SCAN>;
  __shared__ typename Scan::TempStorage tmp;
  const int64_t per = (nb + FC_SCAN - 1) / FC_SCAN;
  const int64_t b0 = threadIdx.x * per, b1 = b0 + per < nb ? b0 + per : nb;
  double mine = 0.0;
  for (int64_t b = b0; b < b1; b++) mine += est[b];
  double run;
  Scan(tmp).ExclusiveSum(mine, run);
  run += (double)o->obj;
  for (int64_t b = b0; b < b1; b++) {
    const double v = est[b];
    est[b] = run;
    run += v;
  }
}

__device__ fkm_fc_run shfl_down_run(const fkm_fc_run &x, int off) {
  fkm_fc_run y;
  for (int p = 0; p < 2; p++) {
    y.d[p] = __shfl_down_sync(~0u, x.d[p], off);
    y.lo[p] = __shfl_down_sync(~0u, x.lo[p], off);
    y.hi[p] = __shfl_down_sync(~0u, x.hi[p], off);
  }
  y.bad = __shfl_down_sync(~0u, x.bad, off);
  return y;
}

/* Joins the 32 lanes' summaries (same base) in lane order into lane 0. The
 * join is exact integer arithmetic and associative, so this tree gives the
 * sequential fold's summary. */
__device__ void warp_join(fkm_fc_sum *x) {
  const int lane = threadIdx.x % 32;
  for (int off = 1; off < 32; off <<= 1) {
    const bool take = (lane & (2 * off - 1)) == 0;
    for (int c = 0; c < 3; c++) {
      const fkm_fc_run y = shfl_down_run(x->run[c], off);
      if (take) x->run[c] = fkm_fc_run_join(&x->run[c], &y);
    }
    const uint32_t f = __shfl_down_sync(~0u, x->flags, off);
    if (take) x->flags &= f;
  }
}

/* Block b's summary (a warp: lane l pushes values 8l .. 8l + 7 of the
 * block at its three candidate exponents, from est, the estimate of s at
 * the block's start; the lanes joined), in lane 0. */
__device__ fkm_fc_sum fc_block_summary(const float *__restrict__ dist, int64_t r0, int64_t n,
                                       int64_t b, double est) {
  const int lane = threadIdx.x % 32;
  fkm_fc_sum x;
  fkm_fc_sum_init(&x, fkm_fc_base(__float_as_uint(__double2float_rn(est))));
  const int64_t i0 = b * FKM_FC_BLOCK + lane * FC_LANE;
#pragma unroll
  for (int t = 0; t < FC_LANE; t++)
    if (i0 + t < n) fkm_fc_sum_push(&x, __float_as_uint(dist[r0 + i0 + t]));
  warp_join(&x);
  return x;
}

/* A group's summary from its bn <= 32 block summaries (a warp), joined at
 * the first block's candidates (a block lacking one makes the group's run
 * at that exponent bad), in lane 0. */
__device__ fkm_fc_sum fc_group_summary(const fkm_fc_sum *blk, int bn) {
  const int lane = threadIdx.x % 32;
  const int gbase = blk[0].base;
  fkm_fc_sum x;
  fkm_fc_sum_init(&x, gbase);
  if (lane < bn) {
    for (int c = 0; c < 3; c++) x.run[c] = fkm_fc_run_at(&blk[lane], gbase + c);
    x.flags = blk[lane].flags;
  }
  warp_join(&x);
  return x;
}

/* One thread block per group: warp w summarises blocks of the group
 * (fc_block_summary), then warp 0 joins them (fc_group_summary). Layout:
 * bsum (nb), gsum (ng). */
__global__ void __launch_bounds__(32 * FC_WARPS)
fchain_summarise(const float *__restrict__ dist, int64_t r0, int64_t r1, int64_t xs,
                 const double *__restrict__ est, fkm_fc_sum *__restrict__ bsum,
                 fkm_fc_sum *__restrict__ gsum, size_t ss) {
  dist += blockIdx.y * xs;
  est = problem_ptr(est, ss);
  bsum = problem_ptr(bsum, ss);
  gsum = problem_ptr(gsum, ss);
  __shared__ fkm_fc_sum blk[FKM_FC_GROUP];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n = r1 - r0, nb = fc_blocks(n), b0 = (int64_t)blockIdx.x * FKM_FC_GROUP;
  const int bn = (int)(nb - b0 < FKM_FC_GROUP ? nb - b0 : FKM_FC_GROUP);
  for (int k = warp * (FKM_FC_GROUP / FC_WARPS); k < (warp + 1) * (FKM_FC_GROUP / FC_WARPS) && k < bn;
       k++) {
    const fkm_fc_sum x = fc_block_summary(dist, r0, n, b0 + k, est[b0 + k]);
    if (lane == 0) {
      bsum[b0 + k] = x;
      blk[k] = x;
    }
  }
  __syncthreads();
  if (warp != 0) return;
  const fkm_fc_sum x = fc_group_summary(blk, bn);
  if (lane == 0) gsum[blockIdx.x] = x;
}

/* fkm_fc_apply_prefix on a warp: lane i holds summary x[i] (m <= 32, in
 * shared memory), the lanes scan the composed offsets (fkm_fc_then), lane i
 * checks its run at S plus the offsets of the runs before it, and the
 * summaries before the first lane that does not fit are applied at once.
 * *s (finite, the same in every lane) is updated in every lane. */
__device__ int fc_apply_prefix(const fkm_fc_sum *x, int m, uint32_t *s) {
  const int lane = threadIdx.x % 32;
  int64_t S, lo, hi;
  const int ec = fkm_fc_decode(*s, &S, &lo, &hi), q = fkm_fc_odd(S);
  const fkm_fc_run *run = lane < m ? fkm_fc_run_for(&x[lane], ec) : nullptr;
  fkm_fc_step inc;
  inc.d[0] = run ? run->d[0] : 0;
  inc.d[1] = run ? run->d[1] : 0;
  for (int off = 1; off < 32; off <<= 1) { /* inclusive scan of the offsets */
    fkm_fc_step y;
    y.d[0] = __shfl_up_sync(~0u, inc.d[0], off);
    y.d[1] = __shfl_up_sync(~0u, inc.d[1], off);
    if (lane >= off) inc = fkm_fc_then(y, inc);
  }
  const int64_t incq = q ? inc.d[1] : inc.d[0];
  int64_t before = __shfl_up_sync(~0u, incq, 1); /* the runs before this lane's */
  if (lane == 0) before = 0;
  const bool fits = run && fkm_fc_fits(run, x[lane].flags, S + before, lo, hi);
  const unsigned bad = __ballot_sync(~0u, lane < m && !fits);
  const int n = bad ? __ffs((int)bad) - 1 : m;
  if (n == 0) return 0;
  const int64_t R = S + __shfl_sync(~0u, incq, n - 1);
  const unsigned nz = __ballot_sync(~0u, lane < n && (x[lane].flags & FKM_FC_NEGZERO));
  const unsigned first = n == 32 ? ~0u : (1u << n) - 1u;
  *s = fkm_fc_encode(R, ec, *s == 0x80000000u && (nz & first) == first);
  return n;
}

/* The longest prefix of x[0..m) that applies to s (every lane): the warp
 * step for a finite s, else one summary by fkm_fc_apply (an infinite s). */
__device__ int fc_advance(const fkm_fc_sum *x, int m, uint32_t *s) {
  if (((*s >> 23) & 0xffu) != 255u) return fc_apply_prefix(x, m, s);
  uint32_t t = *s;
  const int ok = threadIdx.x % 32 == 0 ? fkm_fc_apply(&x[0], &t) : 0;
  *s = __shfl_sync(~0u, t, 0);
  return __shfl_sync(~0u, ok, 0);
}

/* One warp walks the chain from s (the result in every lane): 32 group summaries at a time
 * are staged in shared memory and applied by warp steps (fc_advance); a
 * group that does not apply has its block summaries staged and applied the
 * same way, and a block that does not apply has its values staged and
 * added one by one by lane 0 (FKM_FC_BLOCK dependent float additions).
 * Applying the summaries one at a time took about 200 us at 1M values on
 * an H100 (ncu); a warp step costs about what one such application did. */
__device__ uint32_t fc_walk(const float *__restrict__ dist, int64_t r0, int64_t r1,
                           const fkm_fc_sum *__restrict__ bsum,
                           const fkm_fc_sum *__restrict__ gsum, uint32_t s) {
  __shared__ fkm_fc_sum tile[32];
  __shared__ fkm_fc_sum blk[FKM_FC_GROUP];
  __shared__ float vals[FKM_FC_BLOCK];
  const int lane = threadIdx.x % 32;
  const int64_t n = r1 - r0, nb = fc_blocks(n), ng = fc_groups(n);
  for (int64_t g0 = 0; g0 < ng; g0 += 32) {
    const int gn = (int)(ng - g0 < 32 ? ng - g0 : 32);
    __syncwarp();
    if (lane < gn) tile[lane] = gsum[g0 + lane];
    __syncwarp();
    for (int gi = 0; gi < gn;) {
      gi += fc_advance(tile + gi, gn - gi, &s);
      if (gi == gn) break;
      /* group g0 + gi does not apply: its blocks */
      const int64_t b0 = (g0 + gi) * FKM_FC_GROUP;
      const int bn = (int)(nb - b0 < FKM_FC_GROUP ? nb - b0 : FKM_FC_GROUP);
      __syncwarp();
      if (lane < bn) blk[lane] = bsum[b0 + lane];
      __syncwarp();
      for (int bi = 0; bi < bn;) {
        bi += fc_advance(blk + bi, bn - bi, &s);
        if (bi == bn) break;
        /* block b0 + bi does not apply: its values */
        const int64_t i0 = (b0 + bi) * FKM_FC_BLOCK;
        const int m = (int)(n - i0 < FKM_FC_BLOCK ? n - i0 : FKM_FC_BLOCK);
        __syncwarp();
        for (int t = lane; t < m; t += 32) vals[t] = dist[r0 + i0 + t];
        __syncwarp();
        if (lane == 0) {
          float f = __uint_as_float(s);
#pragma unroll 8
          for (int t = 0; t < m; t++) f = __fadd_rn(f, vals[t]);
          s = __float_as_uint(f);
        }
        s = __shfl_sync(~0u, s, 0);
        bi++;
      }
      gi++;
    }
  }
  return s;
}

__global__ void __launch_bounds__(32)
fchain_walk(const float *__restrict__ dist, int64_t r0, int64_t r1, int64_t xs,
            const fkm_fc_sum *__restrict__ bsum, const fkm_fc_sum *__restrict__ gsum, size_t ss,
            fkm_objective *o) {
  o += blockIdx.y;
  const uint32_t s = fc_walk(dist + blockIdx.y * xs, r0, r1, problem_ptr(bsum, ss),
                             problem_ptr(gsum, ss), __float_as_uint(o->obj));
  if (threadIdx.x == 0) o->obj = __uint_as_float(s);
}

constexpr int DBLOCK = 512;
constexpr int DCACHE = 512; /* block summaries dchain_seq stages at a time */

/* Exponent of the lowest set bit of a nonzero finite float. */
__device__ __forceinline__ int lowbit_exp(float v) {
  const uint32_t b = __float_as_uint(v), e = (b >> 23) & 0xffu;
  const uint32_t m = e ? ((b & 0x7fffffu) | 0x800000u) : (b & 0x7fffffu);
  return (e ? (int)e - 150 : -149) + __ffs((int)m) - 1;
}

/* Per block of DBLOCK values: glow (least low-bit exponent of the nonzero
 * values, 1 << 30 when all zero), T = sum of v / 2^glow (< 2^62), and ok (all
 * values finite, >= 0, and each v / 2^glow < 2^53). */
struct DBlock {
  unsigned long long t;
  int glow, ok;
};

constexpr int DLANE = DBLOCK / 32; /* values per lane of a block's warp */

/* The summary of the DBLOCK values from i0 (those below r1), by a warp (the
 * same in every lane): min, and, integer sum: exact in any order. */
__device__ DBlock dblock_of(const float *__restrict__ dist, int64_t i0, int64_t r1) {
  const int lane = threadIdx.x % 32;
  float v[DLANE];
  int glow = 1 << 30, ok = 1;
#pragma unroll
  for (int t = 0; t < DLANE; t++) {
    const int64_t i = i0 + t * 32 + lane;
    v[t] = i < r1 ? dist[i] : 0.0f;
    const bool fin = v[t] >= 0.0f && v[t] <= FLT_MAX; /* false for NaN, inf, negatives */
    ok &= fin;
    if (fin && v[t] != 0.0f) glow = min(glow, lowbit_exp(v[t]));
  }
  for (int off = 16; off > 0; off /= 2) glow = min(glow, __shfl_xor_sync(~0u, glow, off));
  unsigned long long q = 0;
#pragma unroll
  for (int t = 0; t < DLANE; t++) {
    if (!ok || v[t] == 0.0f) continue;
    const double qd = ldexp((double)v[t], -glow); /* an integer, exact */
    if (qd >= 0x1p53) ok = 0;
    else q += (unsigned long long)qd; /* 16 values below 2^53 each: below 2^57 */
  }
  for (int off = 16; off > 0; off /= 2) q += __shfl_xor_sync(~0u, q, off);
  return DBlock{q, glow, __all_sync(~0u, ok)};
}

/* The double chain's blocks, a warp a block. */
constexpr int DWARPS = 8;
__global__ void __launch_bounds__(32 * DWARPS)
dchain_blocks(const float *__restrict__ dist, int64_t r0, int64_t r1, int64_t xs,
              DBlock *__restrict__ out, size_t ss) {
  dist += blockIdx.y * xs;
  out = problem_ptr(out, ss);
  const int64_t b = (int64_t)blockIdx.x * DWARPS + threadIdx.x / 32;
  if (r0 + b * DBLOCK >= r1) return;
  const DBlock db = dblock_of(dist, r0 + b * DBLOCK, r1);
  if (threadIdx.x % 32 == 0) out[b] = db;
}

/* One exact block addition s += (the block's values) where the test below
 * holds; false (s untouched) elsewhere. The values are >= 0, finite, and
 * multiples of 2^glow; s is a multiple of 2^ls (its lowest set bit), so
 * every partial sum s + v_1 + ... + v_j is a multiple of 2^g, g =
 * min(ls, glow), and they increase: all are doubles (and each addition is
 * exact) iff the last, F = s + T 2^glow, is below 2^(g + 53). Then F =
 * (s / 2^g + T 2^(glow - g)) 2^g, an integer below 2^53 times 2^g: exact,
 * whether or not F leaves s's binade (growing sums cross one every
 * doubling; those blocks used to go value by value). */
__device__ __forceinline__ bool dblock_apply(const DBlock &db, double &s) {
  if (db.ok && db.glow == (1 << 30)) return true; /* all zeros: s + 0 = s for s >= +0 */
  if (!db.ok || !(s >= 0.0)) return false;
  const unsigned long long b = (unsigned long long)__double_as_longlong(s);
  const int be = (int)(b >> 52);
  if (be == 0) { /* +0 or subnormal: the general form, rare */
    const int g = s > 0.0 ? min(db.glow, -1074) : db.glow;
    const double S = ldexp(s, -g);
    const int sh = db.glow - g;
    if (!(S < 0x1p53 && sh < 53 && db.t < (1ull << (53 - sh)))) return false;
    const unsigned long long tot = (unsigned long long)S + (db.t << sh);
    if (tot >= (1ull << 53)) return false;
    s = ldexp((double)tot, g);
    return true;
  }
  const unsigned long long m = (b & ((1ull << 52) - 1)) | (1ull << 52);
  const int ls = be - 1075 + __ffsll((long long)m) - 1; /* s's lowest set bit */
  const int g = min(ls, db.glow), sh = db.glow - g;
  /* s / 2^g = m / 2^(g - E) (E = be - 1075 <= ls), an integer below 2^53
   * when g >= E (g < E: the values are finer than s's last bit, and F >= s
   * >= 2^(g + 53)); F below 2^(g + 53) and, with g + 53 <= 1023, finite */
  if (g < be - 1075 || sh >= 53 || db.t >= (1ull << (53 - sh)) || g + 53 > 1023) return false;
  const unsigned long long tot = (m >> (g - (be - 1075))) + (db.t << sh);
  if (tot >= (1ull << 53)) return false;
  s = ldexp((double)tot, g);
  return true;
}

/* One warp walks the double chain. While s is a positive normal double with
 * exponent field be, a block that passes dblock_apply's test adds the
 * integer T 2^(glow - E) to s's significand, so 32 consecutive blocks are
 * applied at once: each lane computes its block's addend for the current
 * be, a warp scan gives the running significands, and the walk advances to
 * the first block that is refused or would take the significand to 2^53
 * (the sum leaving s's binade). That block goes through dblock_apply (which
 * also takes it across the binade when that is exact, and covers s = 0 and
 * subnormal s) or value by value on lane 0, its values staged in shared
 * memory. The same bits as applying the blocks one by one: the
 * significand's partial sums are the scan's. The block summaries come
 * through shared memory DCACHE at a time (one memory latency per DCACHE
 * blocks, not per warp step). */
__device__ double dchain_walk(const float *__restrict__ dist, int64_t r0, int64_t r1,
                              const DBlock *__restrict__ blk, double s) {
  __shared__ float vals[DBLOCK];
  __shared__ DBlock cache[DCACHE]; /* blocks [cb, cb + DCACHE) */
  const int lane = threadIdx.x % 32;
  const int64_t nb = (r1 - r0 + DBLOCK - 1) / DBLOCK;
  int64_t b = 0, cb = -DCACHE;
  while (b < nb) {
    if (b + 32 > cb + DCACHE) { /* stage the next DCACHE summaries: one latency */
      cb = b;
      __syncwarp();
      for (int j = lane; j < DCACHE && cb + j < nb; j += 32) cache[j] = blk[cb + j];
      __syncwarp();
    }
    const unsigned long long sb = (unsigned long long)__double_as_longlong(s);
    const int be = (int)(sb >> 52); /* >= 2048 for a negative s */
    int adv = 0;
    if (be > 0 && be < 2047) {
      unsigned long long v = 0;
      bool ok = false;
      if (b + lane < nb) {
        const DBlock db = cache[b - cb + lane];
        if (db.ok && db.glow == (1 << 30)) {
          ok = true; /* all zeros */
        } else if (db.ok) {
          const int sh = db.glow - (be - 1075);
          ok = sh >= 0 && sh < 53 && db.t < (1ull << (53 - sh));
          v = ok ? db.t << sh : 0;
        }
      }
      for (int off = 1; off < 32; off <<= 1) { /* inclusive scan, < 2^58: no overflow */
        const unsigned long long y = __shfl_up_sync(~0u, v, off);
        if (lane >= off) v += y;
      }
      const unsigned long long m = (sb & ((1ull << 52) - 1)) | (1ull << 52);
      const unsigned bad = __ballot_sync(~0u, !(ok && m + v < (1ull << 53)));
      adv = bad ? __ffs((int)bad) - 1 : 32;
      if (adv > 0) {
        const unsigned long long mv = m + __shfl_sync(~0u, v, adv - 1);
        s = __longlong_as_double((long long)(((unsigned long long)be << 52) | (mv - (1ull << 52))));
        b += adv;
      }
    }
    if (adv == 32 || b >= nb) continue;
    /* block b on its own */
    int done = 0;
    if (lane == 0) done = (int)dblock_apply(cache[b - cb], s);
    if (!__shfl_sync(~0u, done, 0)) {
      const int64_t i0 = r0 + b * DBLOCK;
      const int m = (int)(r1 - i0 < DBLOCK ? r1 - i0 : DBLOCK);
      __syncwarp();
      for (int t = lane; t < m; t += 32) vals[t] = dist[i0 + t];
      __syncwarp();
      if (lane == 0)
        for (int t = 0; t < m; t++) s = __dadd_rn(s, (double)vals[t]);
    }
    s = __shfl_sync(~0u, s, 0);
    b++;
  }
  return s;
}

__global__ void __launch_bounds__(32)
dchain_seq(const float *__restrict__ dist, int64_t r0, int64_t r1, int64_t xs,
           const DBlock *__restrict__ blk, size_t ss, fkm_objective *o) {
  o += blockIdx.y;
  const double s = dchain_walk(dist + blockIdx.y * xs, r0, r1, problem_ptr(blk, ss),
                               o->obj_double);
  if (threadIdx.x == 0) o->obj_double = s;
}

/* The objective's scratch: the double chain's blocks, then the float
 * chain's estimates and block and group summaries, each 256-byte aligned. */
struct ObjectiveScratch {
  size_t est, bsum, gsum, bytes;
};

size_t align256(size_t b) { return (b + 255) & ~(size_t)255; }

ObjectiveScratch objective_scratch(int64_t n) {
  ObjectiveScratch l;
  l.est = align256(sizeof(DBlock) * (size_t)((n + DBLOCK - 1) / DBLOCK + 1));
  l.bsum = l.est + align256(sizeof(double) * (size_t)fc_blocks(n));
  l.gsum = l.bsum + align256(sizeof(fkm_fc_sum) * (size_t)fc_blocks(n));
  l.bytes = l.gsum + align256(sizeof(fkm_fc_sum) * (size_t)fc_groups(n));
  return l;
}


/* A problem of at most OBJ_SMALL_MAX values in one thread block: the
 * estimates, the double chain's blocks, the label check, the prefix, the
 * block and group summaries, then both walks (warps 0 and 1 at once): the
 * steps of the kernels above with the same scratch and the same bits, one
 * launch instead of eight (B = 64 problems of 8192 values: the objective's
 * six chain kernels and their fork took about 0.12 ms an iteration on an
 * H100). */
constexpr int OBJ_SMALL_WARPS = 16;
constexpr int64_t OBJ_SMALL_MAX = 32768;

__global__ void __launch_bounds__(32 * OBJ_SMALL_WARPS)
objective_small(const float *__restrict__ dist, const int32_t *__restrict__ labels, int64_t r0,
                int64_t r1, int64_t xs, char *scratch, ObjectiveScratch l, fkm_objective *o) {
  dist += blockIdx.y * xs;
  labels += blockIdx.y * xs;
  o += blockIdx.y;
  char *base = scratch + (size_t)blockIdx.y * l.bytes;
  DBlock *dblk = reinterpret_cast<DBlock *>(base);
  double *est = reinterpret_cast<double *>(base + l.est);
  fkm_fc_sum *bsum = reinterpret_cast<fkm_fc_sum *>(base + l.bsum);
  fkm_fc_sum *gsum = reinterpret_cast<fkm_fc_sum *>(base + l.gsum);
  __shared__ fkm_objective st;
  __shared__ unsigned long long bad;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t n = r1 - r0, nb = fc_blocks(n), ng = fc_groups(n);
  const int64_t nd = (n + DBLOCK - 1) / DBLOCK;
  if (threadIdx.x == 0) {
    if (r0 == 0) st = fkm_objective{0.0f, 0.0, -1};
    else st = *o;
    bad = ~0ull;
  }
  __syncthreads();
  for (int64_t b = warp; b < nb; b += OBJ_SMALL_WARPS) {
    const double t = fc_block_estimate(dist, r0, n, b);
    if (lane == 0) est[b] = t;
  }
  for (int64_t b = warp; b < nd; b += OBJ_SMALL_WARPS) {
    const DBlock db = dblock_of(dist, r0 + b * DBLOCK, r1);
    if (lane == 0) dblk[b] = db;
  }
  const long long mine = first_unlabelled(labels, r0 + threadIdx.x, r1, blockDim.x);
  if (mine >= 0) atomicMin(&bad, (unsigned long long)mine);
  __syncthreads();
  if (threadIdx.x == 0) { /* est[b] := obj + the estimates before b */
    double run = (double)st.obj;
    for (int64_t b = 0; b < nb; b++) {
      const double v = est[b];
      est[b] = run;
      run += v;
    }
  }
  __syncthreads();
  for (int64_t b = warp; b < nb; b += OBJ_SMALL_WARPS) {
    const fkm_fc_sum x = fc_block_summary(dist, r0, n, b, est[b]);
    if (lane == 0) bsum[b] = x;
  }
  __syncthreads();
  for (int64_t g = warp; g < ng; g += OBJ_SMALL_WARPS) {
    const int64_t b0 = g * FKM_FC_GROUP;
    const int bn = (int)(nb - b0 < FKM_FC_GROUP ? nb - b0 : FKM_FC_GROUP);
    const fkm_fc_sum x = fc_group_summary(bsum + b0, bn);
    if (lane == 0) gsum[g] = x;
  }
  __syncthreads();
  if (warp == 0) {
    const uint32_t s = fc_walk(dist, r0, r1, bsum, gsum, __float_as_uint(st.obj));
    if (lane == 0) o->obj = __uint_as_float(s);
  } else if (warp == 1) {
    const double s = dchain_walk(dist, r0, r1, dblk, st.obj_double);
    if (lane == 0) o->obj_double = s;
  } else if (threadIdx.x == 64) { /* the first bad label of all the rows so far */
    o->bad_label = st.bad_label >= 0 ? st.bad_label : bad == ~0ull ? -1 : (long long)bad;
  }
}

}  // namespace

#endif
