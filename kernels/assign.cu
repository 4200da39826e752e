/* FlashAssign, parity mode: the reference label and distance of SPEC section
 * 3 computed on the GPU with plain fp32 FMA, the N x K matrix never written.
 *
 * Why plain fp32 is exact here: the reference inner product is the chain
 * t = fmaf(x_j, c_j, t) for j = 0..d-1, and CUDA's fmaf is the IEEE fused
 * multiply-add. A SIMT GEMM whose threads each own (point, centroid)
 * accumulators and step through j in increasing order computes that chain
 * bit for bit. The file is compiled with -fmad=false; every fused operation
 * is written as fmaf, every other one is an explicitly rounded intrinsic.
 */
#include "assign.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <float.h>

#include <type_traits>

#include "flashkm.h"

namespace {

constexpr int BM = FKM_ASSIGN_BM;
constexpr int BN = FKM_ASSIGN_BN;
constexpr int BK = FKM_ASSIGN_BK;
constexpr int TM = 4, TN = 4;               /* accumulators per thread */
constexpr int THREADS = (BM / TM) * (BN / TN); /* 256 */
constexpr int TX = BN / TN;                 /* 16 threads along centroids */

/* Strict improvement in the metric's direction. */
template <bool L2>
__device__ __forceinline__ bool better(float v, float best) {
  return L2 ? v < best : v > best;
}

/* Lexicographic (value, index) combine of two partial argmins that cover
 * disjoint centroid subsets: equal values go to the lower index, which is
 * what one sequential strict scan over all centroids keeps. Partial bests
 * are never NaN (they start at +-inf and only take values that compare). */
template <bool L2>
__device__ __forceinline__ void combine(float &bv, int &bi, float ov, int oi) {
  if (oi < 0) return;
  if (bi < 0 || better<L2>(ov, bv) || (ov == bv && oi < bi)) {
    bv = ov;
    bi = oi;
  }
}

/* The SIMT assignment kernel.
 * Layout: x (n, d) and c (k, d) row-major floats. Block (blockIdx.x,
 * blockIdx.y) owns BM = 64 points and the centroid range
 * [blockIdx.y * k_per_split, +k_per_split), walked in tiles of BN = 64.
 * Each of the 256 threads owns TM x TN = 4 x 4 (point, centroid)
 * accumulators: points ty + 16 i, centroids tx + 16 j of the tile (strided,
 * so that a warp's shared-memory reads hit distinct banks or broadcast).
 * Dimensions are staged BK = 16 at a time in shared memory, transposed; the
 * tail chunk runs only its valid dimensions (no zero padding: fmaf(0, 0, -0)
 * would turn a -0 accumulator into +0).
 * After each centroid tile every thread folds its 16 distances into a
 * per-point running best (strict, increasing index); at the end the 16
 * threads sharing a point combine lexicographically.
 * Tile sizes: the classic 64 x 64 x 16 SIMT tile, 8.5 KB shared memory, good
 * occupancy on sm_80/sm_90; this is the correctness-first path. */
template <bool L2>
__global__ void __launch_bounds__(THREADS)
assign_simt(const float *__restrict__ x, const float *__restrict__ xn,
            const float *__restrict__ c, const float *__restrict__ cn,
            int64_t n, int64_t d, int64_t k, int64_t k_per_split,
            int32_t *__restrict__ labels, float *__restrict__ dist,
            float *__restrict__ part_v, int32_t *__restrict__ part_i,
            const int32_t *__restrict__ rows, const int *__restrict__ count) {
  /* rows != NULL: the refine pass; the block's points are rows[m0 + r] for
   * m0 + r < *count, results go to those rows. */
  const int64_t stride = n; /* of the partials */
  if (rows) n = *count;
  if ((int64_t)blockIdx.x * BM >= n) return;
  __shared__ float As[BK][BM + 1];
  __shared__ float Bs[BK][BN + 1];
  const int tid = threadIdx.x;
  const int tx = tid % TX, ty = tid / TX;
  const int64_t m0 = (int64_t)blockIdx.x * BM;
  const int64_t kb = (int64_t)blockIdx.y * k_per_split;
  int64_t ke = kb + k_per_split;
  if (ke > k) ke = k;

  float best[TM];
  int bidx[TM];
  float pxn[TM];
#pragma unroll
  for (int i = 0; i < TM; i++) {
    best[i] = L2 ? INFINITY : -INFINITY;
    bidx[i] = -1;
    const int64_t p = m0 + ty + 16 * i;
    pxn[i] = (L2 && p < n) ? xn[rows ? rows[p] : p] : 0.0f;
  }

  for (int64_t n0 = kb; n0 < ke; n0 += BN) {
    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; i++)
#pragma unroll
      for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;

    for (int64_t k0 = 0; k0 < d; k0 += BK) {
      const int kmax = (int)((d - k0) < BK ? (d - k0) : BK);
      /* Stage BM x BK of x and BN x BK of c (coalesced along dimensions). */
#pragma unroll
      for (int r = 0; r < (BM * BK) / THREADS; r++) {
        const int e = tid + r * THREADS;
        const int row = e / BK, col = e % BK;
        const int64_t p = m0 + row;
        As[col][row] = (p < n && col < kmax) ? x[(rows ? rows[p] : p) * d + k0 + col] : 0.0f;
        const int64_t q = n0 + row;
        Bs[col][row] = (q < ke && col < kmax) ? c[q * d + k0 + col] : 0.0f;
      }
      __syncthreads();
      if (kmax == BK) {
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
          float a[TM], b[TN];
#pragma unroll
          for (int i = 0; i < TM; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
          for (int j = 0; j < TN; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
          for (int i = 0; i < TM; i++)
#pragma unroll
            for (int j = 0; j < TN; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
      } else {
        for (int kk = 0; kk < kmax; kk++) {
          float a[TM], b[TN];
#pragma unroll
          for (int i = 0; i < TM; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
          for (int j = 0; j < TN; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
          for (int i = 0; i < TM; i++)
#pragma unroll
            for (int j = 0; j < TN; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
      }
      __syncthreads();
    }

    /* Distances and the running strict argmin, centroids in increasing
     * order within this thread's subset. */
#pragma unroll
    for (int j = 0; j < TN; j++) {
      const int64_t q = n0 + tx + 16 * j;
      if (q >= ke) continue;
      const float qcn = L2 ? cn[q] : 0.0f;
#pragma unroll
      for (int i = 0; i < TM; i++) {
        float dis;
        if (L2) {
          dis = __fsub_rn(__fadd_rn(pxn[i], qcn), __fadd_rn(acc[i][j], acc[i][j]));
          if (dis < 0.0f) dis = 0.0f;
        } else {
          dis = acc[i][j];
        }
        if (better<L2>(dis, best[i])) {
          best[i] = dis;
          bidx[i] = (int)q;
        }
      }
    }
  }

  /* The 16 threads of a point are lanes tx = 0..15 of one half-warp. */
#pragma unroll
  for (int i = 0; i < TM; i++) {
#pragma unroll
    for (int off = TX / 2; off > 0; off /= 2) {
      const float ov = __shfl_xor_sync(0xffffffffu, best[i], off);
      const int oi = __shfl_xor_sync(0xffffffffu, bidx[i], off);
      combine<L2>(best[i], bidx[i], ov, oi);
    }
    const int64_t p = m0 + ty + 16 * i;
    if (tx == 0 && p < n) {
      if (part_v) {
        part_v[(int64_t)blockIdx.y * stride + p] = best[i];
        part_i[(int64_t)blockIdx.y * stride + p] = bidx[i];
      } else {
        const int64_t out = rows ? rows[p] : p;
        labels[out] = bidx[i];
        dist[out] = best[i];
      }
    }
  }
}

/* Combine the ksplit partial results of each point in increasing centroid
 * range order with a strict comparison: a later range wins only when it is
 * strictly better, so ties keep the lowest index. One thread per point. */
template <bool L2>
__global__ void assign_combine(const float *__restrict__ part_v,
                               const int32_t *__restrict__ part_i, int64_t n,
                               int64_t ksplit, int32_t *__restrict__ labels,
                               float *__restrict__ dist, const int32_t *__restrict__ rows,
                               const int *__restrict__ count) {
  /* rows != NULL: partials of the refine pass, point i is rows[i], i < *count */
  const int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= (rows ? (int64_t)*count : n)) return;
  float bv = L2 ? INFINITY : -INFINITY;
  int bi = -1;
  for (int64_t s = 0; s < ksplit; s++) {
    const int oi = part_i[s * n + p];
    const float ov = part_v[s * n + p];
    if (oi >= 0 && better<L2>(ov, bv)) {
      bv = ov;
      bi = oi;
    }
  }
  const int64_t out = rows ? rows[p] : p;
  labels[out] = bi;
  dist[out] = bv;
}

/* ------------------------------------------------ certified tensor-core path
 *
 * Pass 1 (assign_tc) computes every distance approximately with tf32 tensor
 * cores and keeps, per point, what the proof below needs. Pass 2 (certify)
 * proves for most points that the reference formula picks the fast pass's
 * label, and computes the reference distance of that one pair exactly; the
 * other points go to a list that the SIMT reference kernel recomputes
 * against all centroids (pass 3). Labels and distances are the reference's
 * bits either way.
 *
 * The proof (SPEC section 3), standard model, u = 2^-24, X = |x|^2,
 * C = |c|^2 (real), eta an absolute slack for underflow (each rounding in
 * the subnormal range errs by at most 2^-150):
 *  - norms: |xn_f - X| <= 3u X + d 2^-150 (float squares, double sum,
 *    one rounding), likewise cn.
 *  - reference inner product (fmaf chain): |ip_ref - <x,c>| <= gamma_d
 *    sum|x_j c_j| <= 1.01 d u |x||c|.
 *  - reference distance fl(fl(xn + cn) - 2 ip_ref):
 *    E_ref <= (8u + 1.01 d u)(X + C) + eta (the fl(xn + cn) and final
 *    roundings each add u times at most 2(X + C); |x||c| <= (X + C)/2).
 *  - fast inner product: tf32 rounding (rna) of each operand is relative
 *    2^-11, products of tf32 values are exact in fp32, and the MMA's fp32
 *    accumulation is taken as 2 ulps per addition (Hopper's MMA does not
 *    round to nearest): E_ip <= 1.01 (2^-10 + d 2^-22) |x||c| + eta.
 *  - fast distance fl(fl(xn + cn) - fl(2 ip_fast)): E_fast <= 8u (X + C) +
 *    2.01 E_ip.
 *  So E(x, c) = E_fast + E_ref <= alpha |x||c| + beta (X + C) + eta3 bounds
 *  |value - true distance| for both formulas, per pair. With |c| <= Cn and
 *  beta C <= BC for every centroid (maxima over all k, rounded up),
 *  E(x) = alpha |x| Cn + beta X + BC + eta3 >= E(x, c) for every c. Let b be
 *  the centroid of least fast value f1 = f(b) and f2 the least fast value
 *  of the other centroids. If f2 - E(x) > f1 + E(x), then for every c != b:
 *  ref(c) >= true(c) - E_ref >= f(c) - E(x) >= f2 - E(x) > f1 + E(x) >=
 *  true(b) + E_ref >= ref(b): b is the reference's strict argmin (clamping
 *  at 0 keeps that: the loser's raw value is > 0). Inner product: the same
 *  on -ip, with E = 1.01 E_ip + 1.01 d u |x||c| + eta. A non-finite fast
 *  value poisons the point (never certified). The bound terms are evaluated
 *  in float from constants inflated by 1%, rounded upwards, and the test
 *  itself uses directed rounding.
 *
 * Per point, pass 1 keeps only f1, its index i1 and f2 (two compares per
 * pair: the bound is per point, applied once in pass 2). */
constexpr int TBM = FKM_TC_BM, TBN = FKM_TC_BN, TBK = FKM_TC_BK;
constexpr int TC_THREADS = 256; /* 8 warps: 4 along points x 2 along centroids */

__device__ __forceinline__ uint32_t to_tf32(float v) {
  uint32_t r;
  asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(v));
  return r;
}

__device__ __forceinline__ void mma_tf32(float (&acc)[4], const uint32_t (&a)[4],
                                         const uint32_t (&b)[2]) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, "
      "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

struct Cert {
  float f1, f2; /* least fast value, least of the others; f2 = -inf: poisoned */
  int i1;       /* index of f1, lowest on ties; -1 when empty */
};

__device__ __forceinline__ void cert_init(Cert &t) {
  t.f1 = INFINITY;
  t.f2 = INFINITY;
  t.i1 = -1;
}

/* Pushes come in increasing index order within a thread. */
__device__ __forceinline__ void cert_push(Cert &t, float f, int idx) {
  if (!(fabsf(f) <= FLT_MAX)) {
    t.f2 = -INFINITY;
  } else if (f < t.f1) {
    t.f2 = fminf(t.f2, t.f1); /* keeps -inf: poison is sticky */
    t.f1 = f;
    t.i1 = idx;
  } else {
    t.f2 = fminf(t.f2, f);
  }
}

/* Merge of two disjoint candidate sets. */
__device__ __forceinline__ void cert_merge(Cert &t, const Cert &o) {
  const bool poisoned = t.f2 == -INFINITY || o.f2 == -INFINITY;
  float f2;
  if (o.i1 >= 0 && (t.i1 < 0 || o.f1 < t.f1 || (o.f1 == t.f1 && o.i1 < t.i1))) {
    f2 = fminf(t.f1, o.f2);
    t.f1 = o.f1;
    t.i1 = o.i1;
  } else {
    f2 = fminf(t.f2, o.f1);
  }
  t.f2 = poisoned ? -INFINITY : f2;
}

/* The test of the proof above, e = E(x) rounded up. */
__device__ __forceinline__ bool cert_ok(const Cert &t, float e) {
  return t.i1 >= 0 && t.f2 > -INFINITY && __fsub_rd(t.f2, e) > __fadd_ru(t.f1, e);
}

__device__ __forceinline__ Cert cert_shfl(const Cert &t, int off) {
  Cert o;
  o.f1 = __shfl_xor_sync(0xffffffffu, t.f1, off);
  o.f2 = __shfl_xor_sync(0xffffffffu, t.f2, off);
  o.i1 = __shfl_xor_sync(0xffffffffu, t.i1, off);
  return o;
}

/* The bound's constants (see above), inflated by 1%. */
struct BoundConsts {
  float alpha, beta, eta;
};

__host__ __device__ inline BoundConsts bound_consts(bool l2, int64_t d) {
  const double u = 0x1p-24, dd = (double)d;
  const double eip = 1.01 * (0x1p-10 + dd * 0x1p-22);
  BoundConsts b;
  b.alpha = (float)(1.01 * (l2 ? 2.01 * eip : 1.01 * eip + 1.01 * dd * u));
  b.beta = l2 ? (float)(1.01 * (16.0 + 1.01 * dd) * u) : 0.0f;
  b.eta = (float)(4.0 * (8.0 * dd + 64.0) * 0x1p-149) + 0x1p-149f;
  return b;
}

/* Per centroid: cb[c] = |c| and cb[k + c] = beta C, rounded up a little. */
__global__ void centroid_bounds(const float *__restrict__ cn, int64_t k, float beta,
                                float *__restrict__ cb) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= k) return;
  const float up = 1.0f + 0x1p-20f;
  cb[i] = __fmul_ru(__fsqrt_ru(cn[i]), up);
  cb[k + i] = __fmul_ru(__fmul_ru(beta, cn[i]), up);
}

/* cmax[0] = max_c cb[c], cmax[1] = max_c cb[k + c] (cmax zeroed first).
 * The values are >= 0 (or +inf, NaN: then nothing certifies), so their bit
 * patterns order like the values and an integer atomicMax gives the exact,
 * order-independent maximum. */
__global__ void bound_max(const float *__restrict__ cb, int64_t k, float *cmax) {
  __shared__ int red[2][256];
  int m0 = 0, m1 = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < k;
       i += (int64_t)gridDim.x * blockDim.x) {
    m0 = max(m0, __float_as_int(cb[i]));
    m1 = max(m1, __float_as_int(cb[k + i]));
  }
  red[0][threadIdx.x] = m0;
  red[1][threadIdx.x] = m1;
  __syncthreads();
  for (int w = blockDim.x / 2; w > 0; w /= 2) {
    if ((int)threadIdx.x < w) {
      red[0][threadIdx.x] = max(red[0][threadIdx.x], red[0][threadIdx.x + w]);
      red[1][threadIdx.x] = max(red[1][threadIdx.x], red[1][threadIdx.x + w]);
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    atomicMax(reinterpret_cast<int *>(cmax), red[0][0]);
    atomicMax(reinterpret_cast<int *>(cmax) + 1, red[1][0]);
  }
}

/* Pass 1. Layout as the SIMT kernel: block (blockIdx.x, blockIdx.y) owns
 * TBM = 128 points and the centroid range of split blockIdx.y, in tiles of
 * TBN = 64, dimensions staged TBK = 32 at a time in shared memory as tf32
 * (rows padded by 4 words: the fragment reads of a warp hit 32 distinct
 * banks). Warp w computes rows 32 (w / 2) .. +32 and columns 32 (w % 2) ..
 * +32 of the tile with m16n8k8 tf32 MMAs (2 x 4 per k-step, 32 fp32
 * accumulators per thread). Fragment layout (PTX ISA, m16n8k8 .tf32): lane
 * = 4 g + t; A: (g, t), (g + 8, t), (g, t + 4), (g + 8, t + 4); B: (k = t,
 * n = g), (t + 4, g); C: (g, 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1).
 * Each thread keeps a Cert for its 4 rows; quads, then the two column warps,
 * are merged at the end. The global loads of the next step are in flight
 * during the current step's MMAs (registers); a deeper cp.async/TMA
 * pipeline and wgmma are the next steps. */
template <bool L2, bool VEC>
__global__ void __launch_bounds__(TC_THREADS)
assign_tc(const float *__restrict__ x, const float *__restrict__ xn,
          const float *__restrict__ c, const float *__restrict__ cn, int64_t n, int64_t d,
          int64_t k, int64_t k_per_split, Cert *__restrict__ out) {
  __shared__ __align__(16) uint32_t As[TBM][TBK + 4];
  __shared__ __align__(16) uint32_t Bs[TBN][TBK + 4];
  __shared__ Cert red[TBM];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3, wm = warp >> 1, wn = warp & 1;
  const int64_t m0 = (int64_t)blockIdx.x * TBM;
  const int64_t kb = (int64_t)blockIdx.y * k_per_split;
  const int64_t ke = kb + k_per_split < k ? kb + k_per_split : k;

  Cert st[4]; /* rows wm*32 + (q/2)*16 + (q%2)*8 + g */
  float pxn[4];
#pragma unroll
  for (int q = 0; q < 4; q++) {
    cert_init(st[q]);
    const int64_t p = m0 + wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g;
    pxn[q] = p < n ? xn[p] : 0.0f;
  }

  /* Steps are (centroid tile, dimension chunk) pairs in order; the global
   * loads of step s + 1 are issued into registers before the MMAs of step s
   * (a two-stage register pipeline). */
  /* VEC (d % 4 == 0, 16-byte aligned rows): 16-byte loads and stores. */
  constexpr int RA = (TBM * TBK) / TC_THREADS, RB = (TBN * TBK) / TC_THREADS;
  constexpr int RA4 = RA / 4, RB4 = RB / 4, C4 = TBK / 4;
  const int64_t nk = (d + TBK - 1) / TBK;
  const int64_t ntile = ke > kb ? (ke - kb + TBN - 1) / TBN : 0;
  const int64_t steps = ntile * nk;
  float ra[RA], rb[RB];
  auto fetch = [&](int64_t step) {
    const int64_t n0 = kb + (step / nk) * TBN, k0 = (step % nk) * TBK;
    if constexpr (VEC) {
#pragma unroll
      for (int r = 0; r < RA4; r++) {
        const int e = tid + r * TC_THREADS, row = e / C4, col = (e % C4) * 4;
        const int64_t p = m0 + row, kk = k0 + col;
        const float4 v = p < n && kk < d ? *reinterpret_cast<const float4 *>(x + p * d + kk)
                                         : make_float4(0.f, 0.f, 0.f, 0.f);
        ra[4 * r] = v.x, ra[4 * r + 1] = v.y, ra[4 * r + 2] = v.z, ra[4 * r + 3] = v.w;
      }
#pragma unroll
      for (int r = 0; r < RB4; r++) {
        const int e = tid + r * TC_THREADS, row = e / C4, col = (e % C4) * 4;
        const int64_t q = n0 + row, kk = k0 + col;
        const float4 v = q < ke && kk < d ? *reinterpret_cast<const float4 *>(c + q * d + kk)
                                          : make_float4(0.f, 0.f, 0.f, 0.f);
        rb[4 * r] = v.x, rb[4 * r + 1] = v.y, rb[4 * r + 2] = v.z, rb[4 * r + 3] = v.w;
      }
    } else {
#pragma unroll
      for (int r = 0; r < RA; r++) {
        const int e = tid + r * TC_THREADS, row = e / TBK, col = e % TBK;
        const int64_t p = m0 + row, kk = k0 + col;
        ra[r] = p < n && kk < d ? x[p * d + kk] : 0.0f;
      }
#pragma unroll
      for (int r = 0; r < RB; r++) {
        const int e = tid + r * TC_THREADS, row = e / TBK, col = e % TBK;
        const int64_t q = n0 + row, kk = k0 + col;
        rb[r] = q < ke && kk < d ? c[q * d + kk] : 0.0f;
      }
    }
  };
  float acc[2][4][4];
#pragma unroll
  for (int mt = 0; mt < 2; mt++)
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
      for (int r = 0; r < 4; r++) acc[mt][nt][r] = 0.0f;
  if (steps > 0) fetch(0);
  for (int64_t step = 0; step < steps; step++) {
    if constexpr (VEC) {
#pragma unroll
      for (int r = 0; r < RA4; r++) {
        const int e = tid + r * TC_THREADS;
        *reinterpret_cast<uint4 *>(&As[e / C4][(e % C4) * 4]) =
            make_uint4(to_tf32(ra[4 * r]), to_tf32(ra[4 * r + 1]), to_tf32(ra[4 * r + 2]),
                       to_tf32(ra[4 * r + 3]));
      }
#pragma unroll
      for (int r = 0; r < RB4; r++) {
        const int e = tid + r * TC_THREADS;
        *reinterpret_cast<uint4 *>(&Bs[e / C4][(e % C4) * 4]) =
            make_uint4(to_tf32(rb[4 * r]), to_tf32(rb[4 * r + 1]), to_tf32(rb[4 * r + 2]),
                       to_tf32(rb[4 * r + 3]));
      }
    } else {
#pragma unroll
      for (int r = 0; r < RA; r++) {
        const int e = tid + r * TC_THREADS;
        As[e / TBK][e % TBK] = to_tf32(ra[r]);
      }
#pragma unroll
      for (int r = 0; r < RB; r++) {
        const int e = tid + r * TC_THREADS;
        Bs[e / TBK][e % TBK] = to_tf32(rb[r]);
      }
    }
    __syncthreads();
    if (step + 1 < steps) fetch(step + 1);
#pragma unroll
    for (int ks = 0; ks < TBK; ks += 8) {
      uint32_t a[2][4], b[4][2];
#pragma unroll
      for (int mt = 0; mt < 2; mt++) {
        const int rbase = wm * 32 + mt * 16;
        a[mt][0] = As[rbase + g][ks + t];
        a[mt][1] = As[rbase + g + 8][ks + t];
        a[mt][2] = As[rbase + g][ks + t + 4];
        a[mt][3] = As[rbase + g + 8][ks + t + 4];
      }
#pragma unroll
      for (int nt = 0; nt < 4; nt++) {
        const int cbase = wn * 32 + nt * 8;
        b[nt][0] = Bs[cbase + g][ks + t];
        b[nt][1] = Bs[cbase + g][ks + t + 4];
      }
#pragma unroll
      for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++) mma_tf32(acc[mt][nt], a[mt], b[nt]);
    }
    __syncthreads();
    if (step % nk != nk - 1) continue;
    const int64_t n0 = kb + (step / nk) * TBN;

#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
      for (int j = 0; j < 2; j++) {
        const int64_t q = n0 + wn * 32 + nt * 8 + 2 * t + j;
        if (q >= ke) continue;
        const float qcn = L2 ? cn[q] : 0.0f;
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
          for (int h = 0; h < 2; h++) {
            const int r = mt * 2 + h;
            const float v = acc[mt][nt][h * 2 + j];
            const float f =
                L2 ? __fsub_rn(__fadd_rn(pxn[r], qcn), __fadd_rn(v, v)) : -v;
            cert_push(st[r], f, (int)q);
          }
      }
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
      for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int r = 0; r < 4; r++) acc[mt][nt][r] = 0.0f;
  }

#pragma unroll
  for (int q = 0; q < 4; q++) {
    cert_merge(st[q], cert_shfl(st[q], 1));
    cert_merge(st[q], cert_shfl(st[q], 2));
  }
  if (wn == 1 && t == 0)
#pragma unroll
    for (int q = 0; q < 4; q++) red[wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g] = st[q];
  __syncthreads();
  if (wn == 0 && t == 0)
#pragma unroll
    for (int q = 0; q < 4; q++) {
      const int row = wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g;
      const int64_t p = m0 + row;
      if (p >= n) continue;
      cert_merge(st[q], red[row]);
      out[(int64_t)blockIdx.y * n + p] = st[q];
    }
}

constexpr int CERT_THREADS = 128;
constexpr int CERT_BK = 32;

/* Pass 2: one thread per point (block = 128 points). Merges the splits'
 * Cert states in order, applies the test, and for a certified point
 * computes the reference value of (point, best) exactly: the fmaf chain
 * over j in order, x staged through shared memory (coalesced), the
 * centroid row read from L1/L2. Uncertain points are appended to rows[]
 * (order irrelevant: each is recomputed independently). */
template <bool L2>
__global__ void __launch_bounds__(CERT_THREADS)
certify(const float *__restrict__ x, const float *__restrict__ xn,
        const float *__restrict__ c, const float *__restrict__ cn, int64_t n, int64_t d,
        int64_t ksplit, const Cert *__restrict__ st, BoundConsts bc,
        const float *__restrict__ cmax, int32_t *__restrict__ labels,
        float *__restrict__ dist, int32_t *__restrict__ rows, int *__restrict__ count) {
  __shared__ float xs[CERT_THREADS][CERT_BK + 1];
  const int64_t m0 = (int64_t)blockIdx.x * CERT_THREADS;
  const int64_t p = m0 + threadIdx.x;
  bool ok = false;
  int label = -1;
  if (p < n) {
    Cert t;
    cert_init(t);
    for (int64_t s = 0; s < ksplit; s++) cert_merge(t, st[s * n + p]);
    /* E(x) = alpha |x| Cn + beta X + BC + eta, every term rounded up. */
    const float up = 1.0f + 0x1p-20f, v = xn[p];
    const float ax = __fmul_ru(__fmul_ru(bc.alpha, __fsqrt_ru(v)), up);
    const float bx = __fadd_ru(__fmul_ru(__fmul_ru(bc.beta, v), up), bc.eta);
    const float e = __fadd_ru(__fmul_ru(ax, cmax[0]), __fadd_ru(bx, cmax[1]));
    ok = cert_ok(t, e);
    label = t.i1;
  }
  float ip = 0.0f;
  const float *crow = ok ? c + (int64_t)label * d : c;
  for (int64_t k0 = 0; k0 < d; k0 += CERT_BK) {
    const int kmax = (int)(d - k0 < CERT_BK ? d - k0 : CERT_BK);
    __syncthreads();
    for (int e = threadIdx.x; e < CERT_THREADS * CERT_BK; e += CERT_THREADS) {
      const int r = e / CERT_BK, col = e % CERT_BK;
      xs[r][col] = (m0 + r < n && col < kmax) ? x[(m0 + r) * d + k0 + col] : 0.0f;
    }
    __syncthreads();
    if (ok)
      for (int j = 0; j < kmax; j++) ip = fmaf(xs[threadIdx.x][j], crow[k0 + j], ip);
  }
  if (p >= n) return;
  if (ok) {
    float dis = ip;
    if (L2) {
      dis = __fsub_rn(__fadd_rn(xn[p], cn[label]), __fadd_rn(ip, ip));
      if (dis < 0.0f) dis = 0.0f;
    }
    labels[p] = label;
    dist[p] = dis;
  } else {
    rows[atomicAdd(count, 1)] = (int32_t)p;
  }
}

/* ------------------------------------------------ FKM_ASSIGN_FAST
 *
 * fp16/bf16 data only (the training set is held as float, converted exactly
 * from the data type, so converting it back is exact); centroids are rounded
 * to the data type (round to nearest). Same tiling as assign_tc with
 * m16n8k16 MMAs: two per 32-dimension stage. Fragment layout (PTX ISA,
 * m16n8k16 .f16/.bf16): lane = 4 g + t; A registers hold pairs (g, 2t..2t+1),
 * (g + 8, 2t..), (g, 2t + 8..), (g + 8, 2t + 8..); B pairs (k = 2t..2t+1,
 * n = g), (2t + 8.., g); C as for tf32. Each thread keeps a strict argmin for
 * its 4 rows in increasing centroid order; quads and the two column warps
 * merge lexicographically: deterministic, lowest index on ties. */
template <typename T> __device__ __forceinline__ uint16_t to_bits(float v);
template <> __device__ __forceinline__ uint16_t to_bits<__half>(float v) {
  return __half_as_ushort(__float2half_rn(v));
}
template <> __device__ __forceinline__ uint16_t to_bits<__nv_bfloat16>(float v) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}
template <typename T> __device__ __forceinline__ float from_bits(uint16_t b);
template <> __device__ __forceinline__ float from_bits<__half>(uint16_t b) {
  return __half2float(__ushort_as_half(b));
}
template <> __device__ __forceinline__ float from_bits<__nv_bfloat16>(uint16_t b) {
  return __bfloat162float(__ushort_as_bfloat16(b));
}

template <typename T>
__device__ __forceinline__ void mma_16(float (&acc)[4], const uint32_t (&a)[4],
                                       const uint32_t (&b)[2]) {
  if constexpr (std::is_same<T, __half>::value)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
        "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
        "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* cn[i] = float(sum_j double(float(r_j * r_j))), r = centroid i rounded to T. */
template <typename T>
__global__ void rounded_norms(const float *__restrict__ c, int64_t k, int64_t d,
                              float *__restrict__ cn) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= k) return;
  double s = 0.0;
  for (int64_t j = 0; j < d; j++) {
    const float r = from_bits<T>(to_bits<T>(c[i * d + j]));
    s = __dadd_rn(s, (double)__fmul_rn(r, r));
  }
  cn[i] = __double2float_rn(s);
}

constexpr int FBK = 32;

template <bool L2, typename T>
__global__ void __launch_bounds__(TC_THREADS)
assign_fast(const float *__restrict__ x, const float *__restrict__ xn,
            const float *__restrict__ c, const float *__restrict__ cnr, int64_t n, int64_t d,
            int64_t k, int64_t k_per_split, int32_t *__restrict__ labels,
            float *__restrict__ dist, float *__restrict__ part_v, int32_t *__restrict__ part_i) {
  __shared__ __align__(16) uint16_t As[TBM][FBK + 8];
  __shared__ __align__(16) uint16_t Bs[TBN][FBK + 8];
  __shared__ float red_v[TBM];
  __shared__ int red_i[TBM];
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3, wm = warp >> 1, wn = warp & 1;
  const int64_t m0 = (int64_t)blockIdx.x * TBM;
  const int64_t kb = (int64_t)blockIdx.y * k_per_split;
  const int64_t ke = kb + k_per_split < k ? kb + k_per_split : k;
  float best[4], pxn[4];
  int bidx[4];
#pragma unroll
  for (int q = 0; q < 4; q++) {
    best[q] = L2 ? INFINITY : -INFINITY;
    bidx[q] = -1;
    const int64_t p = m0 + wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g;
    pxn[q] = L2 && p < n ? xn[p] : 0.0f;
  }
  constexpr int RA = (TBM * FBK) / TC_THREADS, RB = (TBN * FBK) / TC_THREADS;
  const int64_t nk = (d + FBK - 1) / FBK;
  const int64_t ntile = ke > kb ? (ke - kb + TBN - 1) / TBN : 0;
  const int64_t steps = ntile * nk;
  float ra[RA], rb[RB];
  auto fetch = [&](int64_t step) {
    const int64_t n0 = kb + (step / nk) * TBN, k0 = (step % nk) * FBK;
#pragma unroll
    for (int r = 0; r < RA; r++) {
      const int e = tid + r * TC_THREADS, row = e / FBK, col = e % FBK;
      const int64_t p = m0 + row, kk = k0 + col;
      ra[r] = p < n && kk < d ? x[p * d + kk] : 0.0f;
    }
#pragma unroll
    for (int r = 0; r < RB; r++) {
      const int e = tid + r * TC_THREADS, row = e / FBK, col = e % FBK;
      const int64_t q = n0 + row, kk = k0 + col;
      rb[r] = q < ke && kk < d ? c[q * d + kk] : 0.0f;
    }
  };
  float acc[2][4][4];
#pragma unroll
  for (int mt = 0; mt < 2; mt++)
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
      for (int r = 0; r < 4; r++) acc[mt][nt][r] = 0.0f;
  if (steps > 0) fetch(0);
  for (int64_t step = 0; step < steps; step++) {
#pragma unroll
    for (int r = 0; r < RA; r++) {
      const int e = tid + r * TC_THREADS;
      As[e / FBK][e % FBK] = to_bits<T>(ra[r]);
    }
#pragma unroll
    for (int r = 0; r < RB; r++) {
      const int e = tid + r * TC_THREADS;
      Bs[e / FBK][e % FBK] = to_bits<T>(rb[r]);
    }
    __syncthreads();
    if (step + 1 < steps) fetch(step + 1);
#pragma unroll
    for (int ks = 0; ks < FBK; ks += 16) {
      uint32_t a[2][4], b[4][2];
#pragma unroll
      for (int mt = 0; mt < 2; mt++) {
        const int rbase = wm * 32 + mt * 16;
        a[mt][0] = *reinterpret_cast<const uint32_t *>(&As[rbase + g][ks + 2 * t]);
        a[mt][1] = *reinterpret_cast<const uint32_t *>(&As[rbase + g + 8][ks + 2 * t]);
        a[mt][2] = *reinterpret_cast<const uint32_t *>(&As[rbase + g][ks + 2 * t + 8]);
        a[mt][3] = *reinterpret_cast<const uint32_t *>(&As[rbase + g + 8][ks + 2 * t + 8]);
      }
#pragma unroll
      for (int nt = 0; nt < 4; nt++) {
        const int cbase = wn * 32 + nt * 8;
        b[nt][0] = *reinterpret_cast<const uint32_t *>(&Bs[cbase + g][ks + 2 * t]);
        b[nt][1] = *reinterpret_cast<const uint32_t *>(&Bs[cbase + g][ks + 2 * t + 8]);
      }
#pragma unroll
      for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 4; nt++) mma_16<T>(acc[mt][nt], a[mt], b[nt]);
    }
    __syncthreads();
    if (step % nk != nk - 1) continue;
    const int64_t n0 = kb + (step / nk) * TBN;
#pragma unroll
    for (int nt = 0; nt < 4; nt++)
#pragma unroll
      for (int j = 0; j < 2; j++) {
        const int64_t q = n0 + wn * 32 + nt * 8 + 2 * t + j;
        if (q >= ke) continue;
        const float qcn = L2 ? cnr[q] : 0.0f;
#pragma unroll
        for (int mt = 0; mt < 2; mt++)
#pragma unroll
          for (int h = 0; h < 2; h++) {
            const int r = mt * 2 + h;
            const float v = acc[mt][nt][h * 2 + j];
            float dis = v;
            if (L2) {
              dis = __fsub_rn(__fadd_rn(pxn[r], qcn), __fadd_rn(v, v));
              if (dis < 0.0f) dis = 0.0f;
            }
            if (better<L2>(dis, best[r])) {
              best[r] = dis;
              bidx[r] = (int)q;
            }
          }
      }
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
      for (int nt = 0; nt < 4; nt++)
#pragma unroll
        for (int r = 0; r < 4; r++) acc[mt][nt][r] = 0.0f;
  }
#pragma unroll
  for (int q = 0; q < 4; q++)
#pragma unroll
    for (int off = 1; off <= 2; off *= 2) {
      const float ov = __shfl_xor_sync(0xffffffffu, best[q], off);
      const int oi = __shfl_xor_sync(0xffffffffu, bidx[q], off);
      combine<L2>(best[q], bidx[q], ov, oi);
    }
  if (wn == 1 && t == 0)
#pragma unroll
    for (int q = 0; q < 4; q++) {
      const int row = wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g;
      red_v[row] = best[q];
      red_i[row] = bidx[q];
    }
  __syncthreads();
  if (wn == 0 && t == 0)
#pragma unroll
    for (int q = 0; q < 4; q++) {
      const int row = wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g;
      const int64_t p = m0 + row;
      if (p >= n) continue;
      combine<L2>(best[q], bidx[q], red_v[row], red_i[row]);
      if (part_v) {
        part_v[(int64_t)blockIdx.y * n + p] = best[q];
        part_i[(int64_t)blockIdx.y * n + p] = bidx[q];
      } else {
        labels[p] = bidx[q];
        dist[p] = best[q];
      }
    }
}

/* One thread per row; the row's squares are summed in double in order.
 * The reads are strided across a warp; this runs once per run for the
 * training set and once per iteration for the k centroids. */
__global__ void row_norms(const float *__restrict__ x, int64_t n, int64_t d,
                          float *__restrict__ out) {
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= n) return;
  const float *xi = x + i * d;
  double s = 0.0;
  for (int64_t j = 0; j < d; j++) {
    const float v = xi[j];
    s = __dadd_rn(s, (double)__fmul_rn(v, v));
  }
  out[i] = __double2float_rn(s);
}

template <bool L2>
cudaError_t launch_simt(const fkm_assign_args *a, const fkm_assign_plan *plan, cudaStream_t s) {
  const bool split = plan->ksplit > 1;
  float *pv = split ? static_cast<float *>(a->work) : nullptr;
  int32_t *pi = split ? reinterpret_cast<int32_t *>(pv + plan->ksplit * a->n) : nullptr;
  const dim3 grid((unsigned)plan->row_blocks, (unsigned)plan->ksplit);
  assign_simt<L2><<<grid, THREADS, 0, s>>>(a->x, a->xn, a->c, a->cn, a->n, a->d, a->k,
                                           plan->k_per_split, a->labels, a->dist, pv, pi,
                                           nullptr, nullptr);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || !split) return e;
  assign_combine<L2><<<(unsigned)((a->n + 255) / 256), 256, 0, s>>>(
      pv, pi, a->n, plan->ksplit, a->labels, a->dist, nullptr, nullptr);
  return cudaGetLastError();
}

template <bool L2>
cudaError_t launch_tc(const fkm_assign_args *a, const fkm_assign_plan *plan, cudaStream_t s) {
  const int64_t n = a->n, k = a->k;
  /* work: count and cmax (256 B), rows (n), centroid bounds (2k), Cert
   * states (24 B reserved per state) */
  char *w = static_cast<char *>(a->work);
  int *count = reinterpret_cast<int *>(w);
  float *cmax = reinterpret_cast<float *>(w + 128);
  int32_t *rows = reinterpret_cast<int32_t *>(w + 256);
  float *cb = reinterpret_cast<float *>(w + 256 + 4 * n);
  Cert *st = reinterpret_cast<Cert *>(w + 256 + 4 * n + 8 * k);
  const BoundConsts bc = bound_consts(L2, a->d);
  cudaError_t e = cudaMemsetAsync(w, 0, 256, s);
  if (e != cudaSuccess) return e;
  centroid_bounds<<<(unsigned)((k + 255) / 256), 256, 0, s>>>(a->cn, k, bc.beta, cb);
  bound_max<<<(unsigned)((k + 255) / 256 < 128 ? (k + 255) / 256 : 128), 256, 0, s>>>(cb, k,
                                                                                       cmax);
  const dim3 grid((unsigned)plan->row_blocks, (unsigned)plan->ksplit);
  const bool vec = a->d % 4 == 0 && reinterpret_cast<uintptr_t>(a->x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(a->c) % 16 == 0;
  if (vec)
    assign_tc<L2, true><<<grid, TC_THREADS, 0, s>>>(a->x, a->xn, a->c, a->cn, n, a->d, k,
                                                    plan->k_per_split, st);
  else
    assign_tc<L2, false><<<grid, TC_THREADS, 0, s>>>(a->x, a->xn, a->c, a->cn, n, a->d, k,
                                                     plan->k_per_split, st);
  certify<L2><<<(unsigned)((n + CERT_THREADS - 1) / CERT_THREADS), CERT_THREADS, 0, s>>>(
      a->x, a->xn, a->c, a->cn, n, a->d, plan->ksplit, st, bc, cmax, a->labels, a->dist, rows,
      count);
  /* Pass 3: the reference kernel on the uncertain rows, centroids split in
   * refine_split ranges combined in order (the number of rows is on the
   * device; blocks past it exit at once). */
  float *pv = reinterpret_cast<float *>(w + 256 + 4 * n + 8 * k + 24 * plan->ksplit * n);
  int32_t *pi = reinterpret_cast<int32_t *>(pv + plan->refine_split * n);
  const dim3 rgrid((unsigned)((n + BM - 1) / BM), (unsigned)plan->refine_split);
  assign_simt<L2><<<rgrid, THREADS, 0, s>>>(a->x, a->xn, a->c, a->cn, n, a->d, a->k,
                                            plan->refine_k_per_split, a->labels, a->dist, pv, pi,
                                            rows, count);
  assign_combine<L2><<<(unsigned)((n + 255) / 256), 256, 0, s>>>(pv, pi, n, plan->refine_split,
                                                                 a->labels, a->dist, rows, count);
  return cudaGetLastError();
}

template <bool L2, typename T>
cudaError_t launch_fast(const fkm_assign_args *a, const fkm_assign_plan *plan, cudaStream_t s) {
  const int64_t n = a->n, k = a->k;
  char *w = static_cast<char *>(a->work);
  float *cnr = reinterpret_cast<float *>(w + 256);
  const bool split = plan->ksplit > 1;
  float *pv = split ? reinterpret_cast<float *>(w + 256 + 4 * k) : nullptr;
  int32_t *pi = split ? reinterpret_cast<int32_t *>(pv + plan->ksplit * n) : nullptr;
  rounded_norms<T><<<(unsigned)((k + 255) / 256), 256, 0, s>>>(a->c, k, a->d, cnr);
  const dim3 grid((unsigned)plan->row_blocks, (unsigned)plan->ksplit);
  assign_fast<L2, T><<<grid, TC_THREADS, 0, s>>>(a->x, a->xn, a->c, cnr, n, a->d, k,
                                                 plan->k_per_split, a->labels, a->dist, pv, pi);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || !split) return e;
  assign_combine<L2><<<(unsigned)((n + 255) / 256), 256, 0, s>>>(
      pv, pi, n, plan->ksplit, a->labels, a->dist, nullptr, nullptr);
  return cudaGetLastError();
}

}  // namespace

extern "C" cudaError_t fkm_launch_assign(const fkm_assign_args *a,
                                         const fkm_assign_plan *plan,
                                         cudaStream_t s) {
  if (a->n == 0) return cudaSuccess;
  const bool l2 = a->metric == FKM_METRIC_L2;
  if (plan->fast_dtype == FKM_DTYPE_F16)
    return l2 ? launch_fast<true, __half>(a, plan, s) : launch_fast<false, __half>(a, plan, s);
  if (plan->fast_dtype == FKM_DTYPE_BF16)
    return l2 ? launch_fast<true, __nv_bfloat16>(a, plan, s)
              : launch_fast<false, __nv_bfloat16>(a, plan, s);
  if (plan->tc) return l2 ? launch_tc<true>(a, plan, s) : launch_tc<false>(a, plan, s);
  return l2 ? launch_simt<true>(a, plan, s) : launch_simt<false>(a, plan, s);
}

extern "C" cudaError_t fkm_launch_row_norms(const float *x, int64_t n, int64_t d,
                                            float *out, cudaStream_t s) {
  if (n == 0) return cudaSuccess;
  row_norms<<<(unsigned)((n + 255) / 256), 256, 0, s>>>(x, n, d, out);
  return cudaGetLastError();
}
