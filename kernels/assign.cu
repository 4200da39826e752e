/* FlashAssign, parity mode: the reference label and distance of
 * docs/contract.md section 3 computed on the GPU with plain fp32 FMA, the N x K matrix never written.
 *
 * Why plain fp32 is exact here: the reference inner product is the chain
 * t = fmaf(x_j, c_j, t) for j = 0..d-1, and CUDA's fmaf is the IEEE fused
 * multiply-add. A SIMT GEMM whose threads each own (point, centroid)
 * accumulators and step through j in increasing order computes that chain
 * bit for bit. The file is compiled with -fmad=false; every fused operation
 * is written as fmaf, every other one is an explicitly rounded intrinsic.
 */
#include "assign.cuh"
#include "faiss_scan.h"
#include "cp_async.cuh"
#include "packed.cuh"
#include "sm90.cuh"

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
 * occupancy on sm_80/sm_90; this is the correctness-first path.
 * Blocks stride over the row blocks (gridDim.x of them at a time): the
 * refine pass launches a few blocks for a row count known only on the
 * device. */
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
  __shared__ float As[BK][BM + 1];
  __shared__ float Bs[BK][BN + 1];
  const int tid = threadIdx.x;
  const int tx = tid % TX, ty = tid / TX;
  for (int64_t m0 = (int64_t)blockIdx.x * BM; m0 < n; m0 += (int64_t)gridDim.x * BM) {
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
        /* the full chunk with a compile-time trip count, the tail without */
        auto fma_chunk = [&](auto full) {
          constexpr bool FULL = decltype(full)::value;
#pragma unroll
          for (int kk = 0; kk < (FULL ? BK : kmax); kk++) {
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
        };
        if (kmax == BK)
          fma_chunk(std::true_type{});
        else
          fma_chunk(std::false_type{});
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
  const int64_t m = rows ? (int64_t)*count : n;
  for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < m;
       p += (int64_t)gridDim.x * blockDim.x) {
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
}

/* ------------------------------------------------ certified tensor-core path
 *
 * A cascade of three stages, each on the rows the one before left: the
 * screen (a tensor-core pass keeping per point the two least bounded values
 * h and the index of the least: state Top2; certify proves test (1) and
 * computes that pair's reference distance), the same pass over the rows it
 * left keeping the full state (Cert: tests (1) and (2), two candidates
 * computed exactly), and the SIMT reference kernel over the rest. Labels
 * and distances are the reference's bits either way.
 *
 * Operands: x packed once as fp16 of x 2^sx (fkm_launch_pack_x), each
 * centroid as fp16 of c 2^sc(c) (pack_centroids); the fast value of a pair is
 * g = fl(cn - acc 2^(1 - sx - sc)) (L2) or fl(-acc 2^(-sx - sc)) (IP), and
 * h = fl(g - A(x) |c|'). The bound E(x, c) <= A(x) |c| + beta (X + C) + eta3
 * with A(x) = alpha |x| + gamma 2^-sx, the tests (1) and (2), and why a
 * certified label is the reference's: docs/certification.md section 1.
 * Per pair two fused operations, five min/max or compares and eight
 * selects, no branch. */
constexpr int MBM = FKM_MMA_BM, MBN = FKM_MMA_BN, MBK = FKM_MMA_BK;
constexpr int MMA_THREADS = 256; /* 8 warps: 4 along points x 2 along centroids */
constexpr int MSTAGES = 3;       /* cp.async pipeline depth */
constexpr int TILE = FKM_TILE;   /* 16-bit elements of one 128 x 64 tile (16 KB) */
constexpr int RES_MAX_CHUNKS = 4; /* x tile resident in shared memory up to d = 256 */
static_assert(MBM == MBN, "one tile loader serves both operands");

/* The scale exponent of a matrix whose max|v| has the bits mb: max|v| 2^s in
 * [2^14, 2^15) (0 for an all-zero matrix). */
__host__ __device__ inline int scale_exp(int mb) {
  if (mb <= 0) return 0;
  const int e = (mb >> 23) & 0xff;
  if (e == 0) { /* subnormal: the exponent of its leading bit */
    int m = mb & 0x7fffff, lead = 0;
    while (m > 1) m >>= 1, lead++;
    return 14 - (lead - 149);
  }
  return 14 - (e - 127);
}

struct Cert {
  float g1, h1, h2, h3; /* h1 <= h2 <= h3 */
  int b1, hb1, hb2;     /* -1 when empty */
};
static_assert(sizeof(Cert) == 28, "fkm_mma_work_layout reserves 28 bytes per state");

__device__ __forceinline__ void cert_init(Cert &t) {
  t.g1 = t.h1 = t.h2 = t.h3 = INFINITY;
  t.b1 = t.hb1 = t.hb2 = -1;
}

/* Pushes come in increasing index order within a thread (strict compares
 * keep the lowest index on ties). */
__device__ __forceinline__ void cert_push(Cert &t, float g, float h, int idx) {
  const bool pg = g < t.g1, p1 = h < t.h1, p2 = h < t.h2;
  t.g1 = pg ? g : t.g1;
  t.b1 = pg ? idx : t.b1;
  t.h3 = fminf(t.h3, fmaxf(h, t.h2));
  t.h2 = p1 ? t.h1 : p2 ? h : t.h2;
  t.hb2 = p1 ? t.hb1 : p2 ? idx : t.hb2;
  t.h1 = p1 ? h : t.h1;
  t.hb1 = p1 ? idx : t.hb1;
}

/* (value, index) order; empty entries (index -1) last. */
__device__ __forceinline__ bool lex_less(float a, int ia, float b, int ib) {
  if (ia < 0) return false;
  if (ib < 0) return true;
  return a < b || (a == b && ia < ib);
}

/* Merge of two disjoint candidate sets: the argmin of g, the two least h of
 * the four entries, the other two join h3. */
__device__ __forceinline__ void cert_merge(Cert &t, const Cert &o) {
  if (lex_less(o.g1, o.b1, t.g1, t.b1)) t.g1 = o.g1, t.b1 = o.b1;
  float l1, l2; /* h of the two entries that drop out */
  if (lex_less(o.h1, o.hb1, t.h1, t.hb1)) {
    if (lex_less(o.h2, o.hb2, t.h1, t.hb1)) {
      l1 = t.h1, l2 = t.h2;
      t.h2 = o.h2, t.hb2 = o.hb2;
    } else {
      l1 = o.h2, l2 = t.h2;
      t.h2 = t.h1, t.hb2 = t.hb1;
    }
    t.h1 = o.h1, t.hb1 = o.hb1;
  } else if (lex_less(o.h1, o.hb1, t.h2, t.hb2)) {
    l1 = t.h2, l2 = o.h2;
    t.h2 = o.h1, t.hb2 = o.hb1;
  } else {
    l1 = o.h1, l2 = o.h2;
  }
  t.h3 = fminf(fminf(t.h3, o.h3), fminf(l1, l2));
}

__device__ __forceinline__ Cert cert_shfl(const Cert &t, int off) {
  Cert o;
  o.g1 = __shfl_xor_sync(0xffffffffu, t.g1, off);
  o.h1 = __shfl_xor_sync(0xffffffffu, t.h1, off);
  o.h2 = __shfl_xor_sync(0xffffffffu, t.h2, off);
  o.h3 = __shfl_xor_sync(0xffffffffu, t.h3, off);
  o.b1 = __shfl_xor_sync(0xffffffffu, t.b1, off);
  o.hb1 = __shfl_xor_sync(0xffffffffu, t.hb1, off);
  o.hb2 = __shfl_xor_sync(0xffffffffu, t.hb2, off);
  return o;
}

/* The bound's constants (see above), inflated by 1%. */
struct BoundConsts {
  float alpha, beta, gamma, eta;
};

/* float_norms: the norms are a FAISS build's float loops (a profile's,
 * kernels/profile.cu) instead of float squares summed in double: each errs
 * by up to 1.01 d u of the norm instead of 3u, in E_ref (both norms, and
 * one more rounding of the cmax formula) and in E_fast (|c|^2), which the
 * extra 3.07 d u (X + C) covers (docs/profiles.md, "Certification"). */
__host__ __device__ inline BoundConsts bound_consts(bool l2, int64_t d, bool float_norms) {
  const double u = 0x1p-24, dd = (double)d, dp = (double)((d + MBK - 1) / MBK * MBK);
  const double rt = sqrt(dp);
  const double eip = 1.01 * (0x1p-10 + dp * 0x1p-22 + rt * 0x1p-38);
  const double f = l2 ? 2.01 : 1.01;
  BoundConsts b;
  b.alpha = (float)(1.01 * (l2 ? f * eip : f * eip + 1.01 * dd * u));
  b.beta = (float)(1.01 * (l2 ? 16.0 + 1.01 * dd + 2.03 + (float_norms ? 3.07 * dd : 0.0) : 0.53) *
                    u);
  b.gamma = (float)(1.01 * f * 1.01 * rt * 0x1p-25);
  b.eta = (float)(4.0 * (8.0 * dd + 64.0) * 0x1p-149) + 0x1p-149f;
  return b;
}

/* A(x) = alpha |x| + gamma 2^-sx, rounded up (xn: the float |x|^2). Pass 1
 * and certify evaluate it with this one function: the same bits. */
__device__ __forceinline__ float point_a(const BoundConsts &bc, float xn, int sx) {
  const float up = 1.0f + 0x1p-20f;
  const float gam = __fadd_ru(ldexpf(bc.gamma, -sx), 0x1p-149f);
  return __fadd_ru(__fmul_ru(__fmul_ru(bc.alpha, __fsqrt_ru(xn)), up), gam);
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

/* Bits of the maximum of non-negative floats (or +inf, NaN: then nothing
 * certifies), reduced per block then with an integer atomicMax (the bit
 * patterns of such values order like the values): exact and
 * order-independent. */
__device__ __forceinline__ void block_max_to(int m, int *dst) {
  __shared__ int red[32];
  for (int off = 16; off > 0; off /= 2) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x < 32) {
    m = (int)threadIdx.x < (int)(blockDim.x >> 5) ? red[threadIdx.x] : 0;
    for (int off = 16; off > 0; off /= 2) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (threadIdx.x == 0) atomicMax(dst, m);
  }
}

/* *bc_max = max_c beta C, i.e. of cb[k + c] (zeroed first). */
__global__ void bound_max(const float *__restrict__ cb, int64_t k, float *bc_max) {
  int m = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < k;
       i += (int64_t)gridDim.x * blockDim.x)
    m = max(m, __float_as_int(cb[k + i]));
  block_max_to(m, reinterpret_cast<int *>(bc_max));
}

/* *xmax = bits of max |x_ij| (zeroed first). */
__global__ void abs_max(const float *__restrict__ x, int64_t count, int *xmax) {
  int m = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
       i += (int64_t)gridDim.x * blockDim.x)
    m = max(m, __float_as_int(fabsf(x[i])));
  block_max_to(m, xmax);
}

/* The packed layout: kernels/packed.cuh. */
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

/* Eight 16-bit elements (16 bytes) per thread: rows padded to rows_pad, dims
 * to dp, zeros in the padding. SCALED: fp16 of v 2^s, s from *xmax.
 * count != NULL: packs the rows rows[0 .. *count) of x (a gather; n and
 * rows_pad follow from the count on the device). */
template <typename T, bool SCALED>
__global__ void pack_rows(const float *__restrict__ x, int64_t n, int64_t d, int64_t rows_pad,
                          int64_t dp, const int *__restrict__ xmax,
                          const int32_t *__restrict__ rows, const int *__restrict__ count,
                          uint16_t *__restrict__ out) {
  const int s = SCALED ? scale_exp(*xmax) : 0;
  if (count) n = *count, rows_pad = (n + MBM - 1) / MBM * MBM;
  const int64_t groups = rows_pad * (dp / 8);
  for (int64_t gi = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; gi < groups;
       gi += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = gi / (dp / 8), j0 = (gi % (dp / 8)) * 8;
    uint16_t h[8];
#pragma unroll
    for (int e = 0; e < 8; e++) {
      const float v = row < n && j0 + e < d ? x[(rows ? rows[row] : row) * d + j0 + e] : 0.0f;
      h[e] = to_bits<T>(SCALED ? ldexpf(v, s) : v);
    }
    uint4 w;
    w.x = (uint32_t)h[0] | ((uint32_t)h[1] << 16);
    w.y = (uint32_t)h[2] | ((uint32_t)h[3] << 16);
    w.z = (uint32_t)h[4] | ((uint32_t)h[5] << 16);
    w.w = (uint32_t)h[6] | ((uint32_t)h[7] << 16);
    *reinterpret_cast<uint4 *>(out + packed_at(row, j0, dp)) = w;
  }
}

/* One warp per (padded) centroid row: the packed row and its constants
 * cc[q] = (shift, factor, |c|', 0): g = fl(shift - acc factor) is the fast
 * value, |c|' (PARITY: cb[q], |c| rounded up) enters h.
 * PARITY (fp16): the row scaled by its own power of two; L2: shift = cn,
 * factor = 2^(1 - sx - sc); IP: shift 0, factor 2^(-sx - sc); NaN shift
 * when the factor's exponent leaves [-126, 60] or cn is not finite and below
 * 2^120 (then |g| cannot overflow: |acc| < 2^42 for D <= 4096... and the
 * fast pass never claims anything about that centroid).
 * FAST: the row rounded to T unscaled; L2: shift = the norm of the rounded
 * row (float squares summed in double, a fixed order), factor 2; IP: 0, 1.
 * Padding rows (q >= k) are zero with constants (+inf, 0, 0): their value is
 * fl(-0 0 + inf) = +inf in every row, which changes no state, so the passes
 * need no column mask (a split's range ends on a tile boundary or at k).
 * PARITY: *poison := 1 when some centroid is poisoned (zeroed by the
 * launcher). */
template <typename T, bool PARITY>
__global__ void pack_centroids(const float *__restrict__ c, const float *__restrict__ cn,
                               const float *__restrict__ cb, int64_t k, int64_t d, int64_t dp,
                               bool l2, const int *__restrict__ xmax, uint16_t *__restrict__ out,
                               float4 *__restrict__ cc, int *__restrict__ poison) {
  const int lane = threadIdx.x & 31;
  const int64_t q = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (q >= (k + MBN - 1) / MBN * MBN) return;
  const float *row = c + q * d;
  int m = 0;
  if (q < k)
    for (int64_t j = lane; j < d; j += 32) m = max(m, __float_as_int(fabsf(row[j])));
  for (int off = 16; off > 0; off /= 2) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
  const int sc = PARITY ? scale_exp(m) : 0;
  double s2 = 0.0;
  for (int64_t j = lane; j < dp; j += 32) {
    const float v = q < k && j < d ? row[j] : 0.0f;
    const uint16_t h = to_bits<T>(PARITY ? ldexpf(v, sc) : v);
    out[packed_at(q, j, dp)] = h;
    if (!PARITY) {
      const float r = from_bits<T>(h);
      s2 = __dadd_rn(s2, (double)__fmul_rn(r, r));
    }
  }
  if (!PARITY)
    for (int off = 16; off > 0; off /= 2) s2 = __dadd_rn(s2, __shfl_xor_sync(0xffffffffu, s2, off));
  if (lane != 0) return;
  float4 v = make_float4(INFINITY, 0.0f, 0.0f, 0.0f);
  if (q < k) {
    if (PARITY) {
      const int e = (l2 ? 1 : 0) - scale_exp(*xmax) - sc;
      const float norm = cn[q];
      const bool ok = e >= -126 && e <= 60 && norm >= 0.0f && norm < 0x1p120f;
      v = make_float4(ok ? (l2 ? norm : 0.0f) : NAN, ldexpf(1.0f, e), cb[q], 0.0f);
      if (!ok) atomicOr(poison, 1);
    } else {
      v = make_float4(l2 ? __double2float_rn(s2) : 0.0f, l2 ? 2.0f : 1.0f, 0.0f, 0.0f);
    }
  }
  cc[q] = v;
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const uint16_t *smem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s)
               : "memory");
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

/* cp.async of one packed 128 x 64 tile (16 KB, contiguous, already in its
 * shared-memory order) to dst. */
__device__ __forceinline__ void load_tile(uint16_t *dst, const uint16_t *src, int tid) {
#pragma unroll
  for (int i = 0; i < TILE / 8 / MMA_THREADS; i++) {
    const int e = (tid + i * MMA_THREADS) * 8;
    cp_async16(dst + e, src + e);
  }
}

/* The per-point states of the tensor-core passes, one type per pass; each
 * has init, push (one (point, centroid) value, in increasing centroid order
 * within a thread), merge (disjoint centroid sets) and a lane shuffle.
 *  - Arg, the FAST pass: the strict argmin of g.
 *  - Top2, the parity screen: the least h, its index and the second least
 *    h (ties between the two leave h2 == h1, which certifies nothing).
 *    Per pair two fused operations on the FMA pipe and five ALU
 *    operations (a compare, two min/max, two selects; Cert needs thirteen).
 *  - Cert, the parity pass on the rows the screen left (see above). */
struct Arg {
  float v;
  int i;
};
struct Top2 {
  float h1, h2;
  int b; /* -1 when empty */
};
static_assert(sizeof(Top2) == 12, "fkm_mma_work_layout reserves 12 bytes per screen state");
static_assert(sizeof(Arg) == 8, "fkm_mma_work_layout reserves 8 bytes per FAST partial");

__device__ __forceinline__ void state_init(Arg &t) { t.v = INFINITY, t.i = -1; }
__device__ __forceinline__ void state_init(Top2 &t) { t.h1 = t.h2 = INFINITY, t.b = -1; }
__device__ __forceinline__ void state_init(Cert &t) { cert_init(t); }

/* g = fl(shift - acc factor), h = fl(g - A(x) |c|') (see the proof). */
__device__ __forceinline__ void state_push(Arg &t, float acc, const float4 &cq, float, int q) {
  const float gv = fmaf(-acc, cq.y, cq.x);
  if (gv < t.v) t.v = gv, t.i = q;
}
__device__ __forceinline__ void state_push(Top2 &t, float acc, const float4 &cq, float pa, int q) {
  const float h = fmaf(-pa, cq.z, fmaf(-acc, cq.y, cq.x));
  const bool p = h < t.h1;
  t.h2 = fminf(t.h2, fmaxf(h, t.h1));
  t.h1 = p ? h : t.h1;
  t.b = p ? q : t.b;
}
__device__ __forceinline__ void state_push(Cert &t, float acc, const float4 &cq, float pa, int q) {
  const float gv = fmaf(-acc, cq.y, cq.x);
  cert_push(t, gv, fmaf(-pa, cq.z, gv), q);
}

__device__ __forceinline__ void state_merge(Arg &t, const Arg &o) { combine<true>(t.v, t.i, o.v, o.i); }
__device__ __forceinline__ void state_merge(Top2 &t, const Top2 &o) {
  t.h2 = fminf(fminf(t.h2, o.h2), fmaxf(t.h1, o.h1));
  if (lex_less(o.h1, o.b, t.h1, t.b)) t.h1 = o.h1, t.b = o.b;
}
__device__ __forceinline__ void state_merge(Cert &t, const Cert &o) { cert_merge(t, o); }

__device__ __forceinline__ Arg state_shfl(const Arg &t, int off) {
  return Arg{__shfl_xor_sync(0xffffffffu, t.v, off), __shfl_xor_sync(0xffffffffu, t.i, off)};
}
__device__ __forceinline__ Top2 state_shfl(const Top2 &t, int off) {
  return Top2{__shfl_xor_sync(0xffffffffu, t.h1, off), __shfl_xor_sync(0xffffffffu, t.h2, off),
              __shfl_xor_sync(0xffffffffu, t.b, off)};
}
__device__ __forceinline__ Cert state_shfl(const Cert &t, int off) { return cert_shfl(t, off); }

/* Lanes t = 0..3 of a quad hold disjoint columns of the same row. */
template <class S> __device__ __forceinline__ void merge_quad(S &s) {
#pragma unroll
  for (int off = 1; off <= 2; off *= 2) state_merge(s, state_shfl(s, off));
}

/* The FAST pass needs no bound term per point. */
template <class S> constexpr bool uses_bound() { return !std::is_same<S, Arg>::value; }

/* A(x) of the pass's row p (rows != NULL: row rows[p] of x), 0 past n or
 * where the pass keeps no bound. */
template <class S>
__device__ __forceinline__ float row_a(const BoundConsts &bc, const float *__restrict__ xn,
                                       const int32_t *__restrict__ rows, int64_t p, int64_t n,
                                       int sx) {
  return uses_bound<S>() && p < n ? point_a(bc, xn[rows ? rows[p] : p], sx) : 0.0f;
}

/* The tensor-core passes: S = Top2 (the parity screen) or Cert (the parity
 * pass over the rows the screen left), T = __half; S = Arg (FAST), T =
 * __half or __nv_bfloat16. One state per point and split: st[split n + p].
 * rows != NULL (the parity pass after the screen): the packed rows xp are
 * the gathered rows rows[0 .. *count) and n is *count, read on the device;
 * blocks past it exit.
 * Block (blockIdx.x, blockIdx.y): MBM = 128 points, the centroid range of
 * split blockIdx.y in tiles of MBN = 128; warp w computes rows 32 (w / 2)
 * .. +32 and columns 64 (w % 2) .. +64 of each tile with m16n8k16 MMAs
 * (2 x 8 per 16 dimensions, 64 fp32 accumulators per thread), fragments
 * through ldmatrix. Dimensions stream in chunks of MBK = 64 through an
 * MSTAGES-deep cp.async pipeline; RES: the block's x rows stay in shared
 * memory for the whole launch (d <= 256), else they stream with the
 * centroids. Fragment layout (PTX ISA, m16n8k16): lane = 4 g + t; C: (g,
 * 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1). After each centroid tile
 * every thread pushes its 4 rows x 16 columns in increasing column order;
 * quads, then the two column warps, merge at the end. */
template <typename T, class S, bool RES>
__global__ void __launch_bounds__(MMA_THREADS, 2)
assign_mma(const uint16_t *__restrict__ xp, const uint16_t *__restrict__ cp,
           const float4 *__restrict__ cc, const float *__restrict__ xn, BoundConsts bc,
           const int *__restrict__ xmax, int64_t n, int64_t dp, int64_t k,
           int64_t k_per_split, const int32_t *__restrict__ rows, const int *__restrict__ count,
           S *__restrict__ st) {
  extern __shared__ __align__(128) uint16_t smem[];
  __shared__ S red[MBM];
  if (count) n = *count;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3, wm = warp >> 1, wn = warp & 1;
  const int64_t m0 = (int64_t)blockIdx.x * MBM;
  if (m0 >= n) return;
  const int64_t kb = (int64_t)blockIdx.y * k_per_split;
  const int64_t ke = kb + k_per_split < k ? kb + k_per_split : k;
  const int nkc = (int)(dp / MBK);
  const int64_t steps = (ke - kb + MBN - 1) / MBN * nkc;
  const uint16_t *xa = xp + m0 * dp;
  uint16_t *Bs = RES ? smem + nkc * TILE : smem; /* stage s: Bs + s TILE (RES) */

  /* Steps are (centroid tile, dimension chunk) pairs in order; the loader
   * and the compute loop each keep their position as counters (no 64-bit
   * division per step). */
  int ld_stg = 0, ld_kc = 0;
  const uint16_t *ld_b = cp + kb * dp; /* the loader's centroid tile */
  auto issue = [&]() {
    const uint16_t *bsrc = ld_b + ld_kc * TILE;
    if (RES) {
      load_tile(Bs + ld_stg * TILE, bsrc, tid);
    } else {
      load_tile(smem + 2 * ld_stg * TILE, xa + ld_kc * TILE, tid);
      load_tile(smem + (2 * ld_stg + 1) * TILE, bsrc, tid);
    }
    ld_stg = ld_stg + 1 == MSTAGES ? 0 : ld_stg + 1;
    if (++ld_kc == nkc) ld_kc = 0, ld_b += MBN * dp;
  };

  S st4[4]; /* rows wm*32 + (q/2)*16 + (q%2)*8 + g */
  float pa[4];
  const int sx = uses_bound<S>() ? scale_exp(*xmax) : 0;
#pragma unroll
  for (int q = 0; q < 4; q++) {
    state_init(st4[q]);
    const int64_t p = m0 + wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g;
    pa[q] = row_a<S>(bc, xn, rows, p, n, sx);
  }
  float acc[2][8][4];
  auto zero_acc = [&]() {
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
      for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int r = 0; r < 4; r++) acc[mt][nt][r] = 0.0f;
  };
  zero_acc();

  if (RES)
    for (int kc = 0; kc < nkc; kc++) load_tile(smem + kc * TILE, xa + kc * TILE, tid);
#pragma unroll
  for (int s = 0; s < MSTAGES - 1; s++) {
    if (s < steps) issue();
    cp_async_commit();
  }
  int stg = MSTAGES - 1, kc = nkc - 1; /* advanced at the top of each step */
  int64_t n0 = kb - MBN;
  for (int64_t step = 0; step < steps; step++) {
    stg = stg + 1 == MSTAGES ? 0 : stg + 1;
    if (++kc == nkc) kc = 0, n0 += MBN;
    cp_async_wait<MSTAGES - 2>();
    __syncthreads(); /* stage stg landed; the stage refilled below is free */
    if (step + MSTAGES - 1 < steps) issue();
    cp_async_commit();
    const uint16_t *At = RES ? smem + kc * TILE : smem + 2 * stg * TILE;
    const uint16_t *Bt = RES ? Bs + stg * TILE : smem + (2 * stg + 1) * TILE;
#pragma unroll
    for (int ks = 0; ks < MBK / 16; ks++) {
      uint32_t a[2][4], b[8][2];
#pragma unroll
      for (int mt = 0; mt < 2; mt++)
        ldsm_x4(a[mt], At + swz(wm * 32 + mt * 16 + (lane & 15), ks * 2 + (lane >> 4)));
#pragma unroll
      for (int np = 0; np < 4; np++) {
        uint32_t r[4];
        ldsm_x4(r, Bt + swz(wn * 64 + np * 16 + (lane & 7) + ((lane >> 4) << 3),
                            ks * 2 + ((lane >> 3) & 1)));
        b[2 * np][0] = r[0], b[2 * np][1] = r[1], b[2 * np + 1][0] = r[2], b[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 8; nt++) mma_16<T>(acc[mt][nt], a[mt], b[nt]);
    }
    if (kc != nkc - 1) continue;

    /* columns past ke are padding (value +inf); cc is readable up to k
     * rounded up to MBN */
    const float4 *ccp = cc + n0 + wn * 64 + 2 * t;
    const int qb = (int)n0 + wn * 64 + 2 * t;
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
      for (int j = 0; j < 2; j++) {
        const float4 cq = __ldg(ccp + nt * 8 + j);
#pragma unroll
        for (int r = 0; r < 4; r++)
          state_push(st4[r], acc[r >> 1][nt][(r & 1) * 2 + j], cq, pa[r], qb + nt * 8 + j);
      }
    zero_acc();
  }
  cp_async_wait<0>();

  /* quads (lanes t = 0..3 hold disjoint columns of the same rows), then the
   * two column warps through shared memory */
#pragma unroll
  for (int q = 0; q < 4; q++) merge_quad(st4[q]);
  if (wn == 1 && t == 0)
#pragma unroll
    for (int q = 0; q < 4; q++) red[wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g] = st4[q];
  __syncthreads();
  if (wn == 0 && t == 0)
#pragma unroll
    for (int q = 0; q < 4; q++) {
      const int row = wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g;
      const int64_t p = m0 + row;
      if (p >= n) continue;
      state_merge(st4[q], red[row]);
      st[(int64_t)blockIdx.y * n + p] = st4[q];
    }
}

/* ------------------------------------------------ Hopper: the passes on wgmma
 *
 * assign_wgmma computes what assign_mma computes (the same per-pair values g
 * and h up to the order in which the tensor cores add the exact fp16
 * products, which the proof's model of the fp32 accumulation covers; the
 * same states, pushed in the same order) with sm_90a's asynchronous
 * warpgroup MMA.
 *
 * Work items are (WG_ROWS = 256 points, centroid range) pairs, item = row
 * group * ksplit + range; block b takes items b, b + gridDim.x, ... (a
 * persistent grid of one block per multiprocessor, or one block per item).
 * Block: WG_CWG = 4 consumer warpgroups (warps 0-15) and a producer
 * warpgroup (warps 16-19, one thread of which works); 96 registers per
 * thread at launch, then 24 for the producer and 112 for the consumers
 * (setmaxnreg; at 96 the consumers' loop spilled: 1M x 1024 parity went
 * from 2.04 to 1.84 ms per iteration on an H100).
 * Consumer warpgroup w owns points m0 + 64 w .. +64 of the item; each of its
 * warps owns 16 of them (lane = 4 g + t: rows g and g + 8) and, per tile,
 * all 128 centroids: wgmma m64n128k16 leaves (row g or g + 8, column
 * 8 i + 2 t + j) in d[4 i + 2 h + j], the m16n8 fragment of mma.sync per 8
 * columns, so the same pushes apply; a thread pushes its 32 columns per
 * tile in increasing order and the quads merge at the end of the item (no
 * cross-warp merge: a warp sees every centroid of its rows).
 * Each warpgroup has one set of accumulators: it issues a tile's MMAs,
 * waits for them, and pushes; the four warpgroups drift apart, so that the
 * tensor cores serve one while the others push (measured against two
 * warpgroups with double-buffered accumulators: 2-3% faster, and simpler).
 * Operands come from shared memory through matrix descriptors (K-major,
 * 128-byte swizzle: exactly the packed tile layout, see packed_at). An
 * item's x rows (two packed row blocks of dp / 64 tiles; the last item may
 * have one) are resident in one of two buffers (the next item's rows load
 * while this one computes); centroid chunks stream through a ring of nslots
 * 16 KB slots (two tiles), each filled by one bulk copy (cp.async.bulk,
 * completion counted on the slot's "full" mbarrier) with, on a tile's first
 * chunk, the tile's 128 centroid constants (2 KB, into the tile's constant
 * slot), and handed back through its "empty" mbarrier by the 512 consumer
 * threads once the tile's pushes are done.
 * STREAM (dp > 128: an item's rows no longer fit): each of WG_STREAM_SLOTS
 * slots holds a centroid chunk and the item's x chunk of the same 64
 * dimensions (48 KB); a warpgroup issues a chunk's MMAs once its slot is
 * full (a fence and a commit group per chunk, at most two in flight) and
 * hands the slot back once they completed; the constants come from global
 * memory (they stay in L1). The item's x chunks are then read once per
 * centroid tile: the plan cuts the centroids into ranges
 * (fkm_assign_plan_wgmma) so that the blocks running at once share a few
 * row groups whose x stays in L2 (measured at 1M x 1024, d = 768: one range
 * read x from DRAM once per tile, and the assignment took 3.97 ms instead
 * of 2.56). */
constexpr int WG_CWG = 4;                 /* consumer warpgroups */
constexpr int WG_ROWS = 64 * WG_CWG;      /* rows per item */
constexpr int WG_RB = WG_ROWS / MBM;      /* packed 128-row blocks per item */
constexpr int WG_THREADS = 128 * (WG_CWG + 1); /* + the producer warpgroup */
constexpr int WG_SLOTS_MAX = 8;
constexpr int WG_MAX_CHUNKS = 2;          /* dp <= 128: x rows resident */
constexpr int WG_STREAM_SLOTS = 4;        /* beyond: slots of a centroid and an x chunk */
/* ring slots: two tiles (a tile is dp / 64 slots), eight where d <= 64 */
__host__ __device__ constexpr int wg_slots(int nkc) { return nkc == 1 ? 8 : 4; }
/* Registers per thread: 96 at launch (five warps per SM sub-partition),
 * then the producer warpgroup gives 72 of its own back and the consumer
 * warps take 16 more (4 x 16 <= 72 per sub-partition: setmaxnreg.inc waits
 * for registers the block released, 120 would wait forever); at 96 the
 * screen's loop spilled. */
constexpr int WG_PRODUCER_REGS = 24, WG_CONSUMER_REGS = 112;
static_assert(4 * (WG_CONSUMER_REGS - 96) <= 96 - WG_PRODUCER_REGS, "the registers released");
static_assert(WG_ROWS % MBM == 0, "an item is whole packed row blocks");
static_assert(wg_slots(1) <= WG_SLOTS_MAX && wg_slots(2) <= WG_SLOTS_MAX, "barrier arrays");

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* Matrix descriptor of a K-major operand in the 128-byte swizzle: rows of
 * 128 bytes, groups of 8 rows 1024 bytes apart (the stride byte offset), the
 * leading byte offset unused for this layout (1 by convention); bits 62-63
 * = 1: 128-byte swizzle. The address must sit on a 1024-byte boundary plus
 * a multiple of 32 bytes inside the first row (one k16 step per 32 bytes). */
__device__ __forceinline__ uint64_t sw128_desc(const void *p) {
  return (uint64_t)((smem_addr(p) & 0x3FFFFu) >> 4) | ((uint64_t)1 << 16) |
         ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

/* Registers move from the producer warpgroup to the consumers. */
template <int R> __device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> __device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Keeps the compiler from moving accesses of the accumulators across the
 * wgmma fences and waits. */
__device__ __forceinline__ void acc_fence(float (&d)[64]) {
#pragma unroll
  for (int i = 0; i < 64; i++) asm volatile("" : "+f"(d[i])::"memory");
}

/* d (+)= A B^T for a 64 x 16 slice of x and a 128 x 16 slice of centroids;
 * scale_d 0 overwrites d. TYPE: the operand type of the instruction. */
#define FKM_WGMMA_128(TYPE)                                                        \
  asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %66, 0;\n"                    \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {"    \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
               "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
               "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, " \
               "%64, %65, p, 1, 1, 0, 0;\n}\n"                                     \
               : FKM_WGMMA_D(d)                                                    \
               : "l"(da), "l"(db), "r"(scale_d))
#define FKM_WGMMA_D(d) \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
  "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
  "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
  "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
  "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
template <typename T>
__device__ __forceinline__ void wgmma_128(float (&d)[64], uint64_t da, uint64_t db, int scale_d) {
  if constexpr (std::is_same<T, __half>::value)
    FKM_WGMMA_128("f16");
  else
    FKM_WGMMA_128("bf16");
}
#undef FKM_WGMMA_128
#undef FKM_WGMMA_D
#endif

/* Where a warpgroup stands in its block's sequence of (item, tile). */
struct WgTile {
  int64_t m0, kb, n0; /* item rows, range start, tile's first centroid */
  int item_i;             /* ordinal of the item in this block's sequence */
  int j, nt;              /* tile within the item, tiles of the item */
};

template <typename T, class S, bool STREAM>
__global__ void __launch_bounds__(WG_THREADS, 1)
assign_wgmma(const uint16_t *__restrict__ xp, const uint16_t *__restrict__ cp,
             const float4 *__restrict__ cc, const float *__restrict__ xn, BoundConsts bc,
             const int *__restrict__ xmax, int64_t n, int64_t dp, int64_t k,
             int64_t k_per_split, int64_t ksplit, int nslots,
             const int32_t *__restrict__ rows, const int *__restrict__ count,
             S *__restrict__ st) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  extern __shared__ uint8_t wg_raw[];
  if (count) n = *count; /* the gathered rows (see assign_mma) */
  __shared__ uint64_t full[WG_SLOTS_MAX], empty[WG_SLOTS_MAX], xfull[2], xempty[2];
  const int nkc = (int)(dp / MBK);
  uint16_t *xs = reinterpret_cast<uint16_t *>(
      wg_raw + ((1024u - (smem_addr(wg_raw) & 1023u)) & 1023u)); /* 2 x WG_RB x nkc tiles */
  uint16_t *ring = xs + (STREAM ? 0 : 2 * WG_RB * nkc * TILE);   /* nslots slots */
  float4 *ccs = reinterpret_cast<float4 *>(ring + nslots * TILE); /* nslots / nkc x MBN */
  constexpr int SLOT = STREAM ? (1 + WG_RB) * TILE : TILE;       /* a slot's elements */
  /* the warp index through a shuffle: provably warp-uniform for ptxas, which
   * otherwise serialises the wgmma of a possibly divergent path */
  const int tid = threadIdx.x, lane = tid & 31;
  const int warp = __shfl_sync(0xffffffffu, tid >> 5, 0);
  const int64_t items = (n + WG_ROWS - 1) / WG_ROWS * ksplit;
  /* (item, tile) cursor: false past the block's last item */
  auto start_item = [&](WgTile &c, int64_t item, int item_i) {
    if (item >= items) return false;
    c.m0 = item / ksplit * WG_ROWS;
    c.kb = item % ksplit * k_per_split;
    const int64_t ke = c.kb + k_per_split < k ? c.kb + k_per_split : k;
    c.nt = (int)((ke - c.kb + MBN - 1) / MBN);
    c.item_i = item_i;
    c.j = 0;
    c.n0 = c.kb;
    return true;
  };
  auto advance = [&](WgTile &c) {
    if (++c.j < c.nt) {
      c.n0 += MBN;
      return true;
    }
    return start_item(c, (int64_t)blockIdx.x + (int64_t)(c.item_i + 1) * gridDim.x,
                      c.item_i + 1);
  };

  /* every consumer thread hands slots and x buffers back itself (its own
   * reads are then ordered before the refill that the producer issues) */
  constexpr unsigned consumer_warps = 4 * WG_CWG, consumers = 32 * consumer_warps;
  if (tid == 0) {
    for (int i = 0; i < nslots; i++) mbar_init(&full[i], 1), mbar_init(&empty[i], consumers);
    for (int i = 0; i < 2 && !STREAM; i++) mbar_init(&xfull[i], 1), mbar_init(&xempty[i], consumers);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (warp >= (int)consumer_warps) { /* the producer */
    setmaxnreg_dec<WG_PRODUCER_REGS>();
    if (warp != (int)consumer_warps || lane != 0) return;
    WgTile c;
    int slot = 0, round = 0;
    for (bool more = start_item(c, blockIdx.x, 0); more;) {
      const int buf = c.item_i & 1;
      /* the item's packed row blocks that exist (the last may be short) */
      const int rbs = (int)((n - c.m0 + MBM - 1) / MBM < WG_RB ? (n - c.m0 + MBM - 1) / MBM
                                                                : WG_RB);
      if (!STREAM) {
        if (c.item_i >= 2) mbar_wait(&xempty[buf], (unsigned)((c.item_i >> 1) - 1) & 1u);
        mbar_expect_tx(&xfull[buf], (unsigned)(rbs * nkc * TILE * 2));
        for (int rb = 0; rb < rbs; rb++)
          for (int kc = 0; kc < nkc; kc++)
            bulk_load(xs + ((buf * WG_RB + rb) * nkc + kc) * TILE,
                      xp + (c.m0 + rb * MBM) * dp + kc * TILE, TILE * 2, &xfull[buf]);
      }
      const int64_t item_i = c.item_i;
      do { /* the item's tiles, chunk by chunk */
        const uint16_t *src = cp + c.n0 * dp;
        for (int kc = 0; kc < nkc; kc++) {
          if (round > 0) mbar_wait(&empty[slot], (unsigned)(round - 1) & 1u);
          uint16_t *sl = ring + slot * SLOT;
          if (STREAM) { /* the centroid chunk and the item's x chunk */
            mbar_expect_tx(&full[slot], (unsigned)((1 + rbs) * TILE * 2));
            bulk_load(sl, src + kc * TILE, TILE * 2, &full[slot]);
            for (int rb = 0; rb < rbs; rb++)
              bulk_load(sl + (1 + rb) * TILE, xp + (c.m0 + rb * MBM) * dp + kc * TILE,
                        TILE * 2, &full[slot]);
          } else {
            mbar_expect_tx(&full[slot], TILE * 2 + (kc == 0 ? MBN * 16 : 0));
            bulk_load(sl, src + kc * TILE, TILE * 2, &full[slot]);
            if (kc == 0) bulk_load(ccs + slot / nkc * MBN, cc + c.n0, MBN * 16, &full[slot]);
          }
          if (++slot == nslots) slot = 0, round++;
        }
        more = advance(c);
      } while (more && c.item_i == item_i);
    }
    return;
  }

  setmaxnreg_inc<WG_CONSUMER_REGS>();
  const int wg = warp >> 2, g = lane >> 2, t = lane & 3;
  const int rbase = wg * 64 + (warp & 3) * 16 + g; /* rows rbase, rbase + 8 of an item */
  const int sx = uses_bound<S>() ? scale_exp(*xmax) : 0;
  S st2[2];
  float pa[2];
  float acc[64];
  int slot = 0, round = 0; /* this warpgroup's position in the ring */
  WgTile c;
  for (bool more = start_item(c, blockIdx.x, 0); more; more = advance(c)) {
    const int buf = c.item_i & 1;
    if (c.j == 0) {
      if (!STREAM) mbar_wait(&xfull[buf], (unsigned)(c.item_i >> 1) & 1u);
#pragma unroll
      for (int h = 0; h < 2; h++) {
        state_init(st2[h]);
        const int64_t p = c.m0 + rbase + 8 * h;
        pa[h] = row_a<S>(bc, xn, rows, p, n, sx);
      }
    }
    /* Every warpgroup computes every tile, also one whose rows lie past n
     * in the last item (its results are not stored; where its packed row
     * block was not loaded it reads the buffer's older rows). */
    const int slot0 = slot;
    if (STREAM) {
      /* chunk by chunk: a chunk's MMAs are issued once its slot is full and
       * its slot is handed back once they completed, while the next
       * chunk's run (a fence and a commit group per chunk, at most two
       * groups in flight) */
      int prev = 0;
      for (int kc = 0; kc < nkc; kc++) {
        mbar_wait(&full[slot], (unsigned)round & 1u);
        wg_fence();
        acc_fence(acc);
        const uint16_t *sl = ring + slot * SLOT;
        const uint64_t da = sw128_desc(sl + (1 + wg / 2) * TILE + (wg % 2) * 64 * MBK);
        const uint64_t db = sw128_desc(sl);
#pragma unroll
        for (int ks = 0; ks < MBK / 16; ks++) wgmma_128<T>(acc, da + 2 * ks, db + 2 * ks, kc | ks);
        wg_commit();
        if (kc > 0) {
          wg_wait<1>();
          acc_fence(acc);
          mbar_arrive(&empty[prev]);
        }
        prev = slot;
        if (++slot == nslots) slot = 0, round++;
      }
      wg_wait<0>();
      acc_fence(acc);
      mbar_arrive(&empty[prev]);
    } else {
      /* all of the tile's chunks arrive before the first wgmma: a wait (a
       * retry loop) between the fence and the MMAs makes ptxas serialise
       * them (C7520) */
      for (int kc = 0; kc < nkc; kc++) {
        mbar_wait(&full[slot], (unsigned)round & 1u);
        if (++slot == nslots) slot = 0, round++;
      }
      wg_fence();
      const uint64_t da0 =
          sw128_desc(xs + (buf * WG_RB + wg / 2) * nkc * TILE + (wg % 2) * 64 * MBK);
      for (int kc = 0, sl = slot0; kc < nkc; kc++) {
        const uint64_t da = da0 + (uint64_t)((kc * TILE * 2) >> 4);
        const uint64_t db = sw128_desc(ring + sl * TILE);
#pragma unroll
        for (int ks = 0; ks < MBK / 16; ks++) wgmma_128<T>(acc, da + 2 * ks, db + 2 * ks, kc | ks);
        if (++sl == nslots) sl = 0;
      }
      wg_commit();
      wg_wait<0>();
      acc_fence(acc);
    }
    /* the item's last wgmma completed: its x buffer may be refilled */
    if (!STREAM && c.j == c.nt - 1) mbar_arrive(&xempty[buf]);
    {
      /* the tile's constants (STREAM: from global memory, where they stay
       * in L1); columns past ke are padding (value +inf) */
      const float4 *ccp = (STREAM ? cc + c.n0 : ccs + slot0 / nkc * MBN) + 2 * t;
      const int qb = (int)c.n0 + 2 * t;
#pragma unroll
      for (int i = 0; i < 16; i++)
#pragma unroll
        for (int jj = 0; jj < 2; jj++) {
          const float4 cq = ccp[8 * i + jj];
#pragma unroll
          for (int h = 0; h < 2; h++)
            state_push(st2[h], acc[4 * i + 2 * h + jj], cq, pa[h], qb + 8 * i + jj);
        }
    }
    /* the tile's slots (and constants) are free */
    for (int kc = 0, sl = slot0; kc < nkc && !STREAM; kc++) {
      mbar_arrive(&empty[sl]);
      if (++sl == nslots) sl = 0;
    }
    if (c.j != c.nt - 1) continue;
#pragma unroll
    for (int h = 0; h < 2; h++) {
      merge_quad(st2[h]);
      const int64_t p = c.m0 + rbase + 8 * h;
      if (t == 0 && p < n) st[c.kb / k_per_split * n + p] = st2[h];
    }
  }
#else
  (void)xp, (void)cp, (void)cc, (void)xn, (void)bc, (void)xmax, (void)n, (void)dp, (void)k;
  (void)k_per_split, (void)ksplit, (void)nslots, (void)rows, (void)count, (void)st;
#endif
}

/* 1 in a build whose code for this device has the wgmma kernels (sm_90a). */
__global__ void wgmma_probe(int *out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *out = 1;
#else
  *out = 0;
#endif
}

/* FAST: the ranges' argmins combined in increasing range order (a later
 * range wins only when strictly better), then the reported distance. */
template <bool L2>
__global__ void fast_finish(const Arg *__restrict__ part, int64_t n, int64_t ksplit, const float *__restrict__ xn,
                            int32_t *__restrict__ labels, float *__restrict__ dist) {
  const int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n) return;
  Arg b;
  state_init(b);
  for (int64_t s = 0; s < ksplit; s++) state_merge(b, part[s * n + p]);
  labels[p] = b.i;
  dist[p] = L2 ? fmaxf(__fadd_rn(xn[p], b.v), 0.0f) : -b.v;
}

constexpr int CERT_THREADS = 128;
/* Grid of the kernels over a row list whose length is known only on the
 * device (blocks stride over it): two blocks per multiprocessor of an H100. */
constexpr unsigned FEW_BLOCKS = 264;
/* The certify of the Cert states: twice that (four blocks per
 * multiprocessor), its loads of gathered rows are latency-bound (measured at
 * 1M x 1024 with 54k such rows, with the refine grid below: the assignment
 * 0.02 ms faster). */
constexpr unsigned CERT2_BLOCKS = 2 * FEW_BLOCKS;
/* Row blocks of the refine pass's grid (times its centroid ranges). */
constexpr int64_t REFINE_ROW_BLOCKS = 64;
constexpr int CERT_BK = 32;

/* Certify: one thread per point (blocks of 128 points stride over them).
 * Merges the splits' states, applies the proof's tests, and computes the
 * reference value of
 * (point, candidate) exactly for its one or two candidates: the fmaf chain
 * over j in order, x staged through shared memory (VEC: 16-byte loads, all
 * of a stage in flight at once; the block's row indices read once), the
 * centroid rows read CERT_BK values ahead from L1/L2 (16-byte loads when
 * VEC). Uncertain points are appended to rows[] (order irrelevant: each is
 * recomputed on its own). */
template <bool VEC>
__device__ __forceinline__ float cert_chunk(float ip, const float (&xr)[CERT_BK + 1],
                                            const float *crow, int kmax) {
  if (VEC && kmax == CERT_BK) {
    float cv[CERT_BK];
#pragma unroll
    for (int j = 0; j < CERT_BK; j += 4) {
      const float4 w = __ldg(reinterpret_cast<const float4 *>(crow + j));
      cv[j] = w.x, cv[j + 1] = w.y, cv[j + 2] = w.z, cv[j + 3] = w.w;
    }
#pragma unroll
    for (int j = 0; j < CERT_BK; j++) ip = fmaf(xr[j], cv[j], ip);
  } else {
    for (int j = 0; j < kmax; j++) ip = fmaf(xr[j], crow[j], ip);
  }
  return ip;
}

/* The proof's tests on a point's merged state: 0 (uncertain), 1 (b1 is the
 * reference's label) or 2 (it is b1 or b2). pax = A(x), bx = B(x). */
__device__ __forceinline__ int candidates(const Cert &t, float pax, float bx,
                                          const float *__restrict__ cb, int &b1, int &b2) {
  b1 = t.b1;
  b2 = -1;
  if (t.b1 < 0) return 0;
  /* U = g1 + A(x) |b|' + B(x), rounded up */
  const float u = __fadd_ru(__fadd_ru(t.g1, __fmul_ru(pax, cb[t.b1])), bx);
  const bool in = t.hb1 == t.b1 || t.hb2 == t.b1;
  const float hm = t.hb1 == t.b1 ? t.h2 : t.h1; /* least h over c != b */
  const int c2 = t.hb1 == t.b1 ? t.hb2 : t.hb1;
  const float hm2 = in ? t.h3 : t.h2; /* least h outside {b, c2} */
  if (__fsub_rd(hm, bx) > u) return 1;
  if (c2 < 0 || !(__fsub_rd(hm2, bx) > u)) return 0;
  b2 = c2;
  return 2;
}
/* The screen keeps b = the least h, and g(b) <= h1 + A(x) |b|' + (the
 * rounding of h, within B(x)): U = h1 + 2 (A(x) |b|' + B(x)) bounds
 * ref(b) - X, and test (1) applies with hm = h2. */
__device__ __forceinline__ int candidates(const Top2 &t, float pax, float bx,
                                          const float *__restrict__ cb, int &b1, int &b2) {
  b1 = t.b;
  b2 = -1;
  if (t.b < 0) return 0;
  const float ab = __fadd_ru(__fmul_ru(pax, cb[t.b]), bx);
  const float u = __fadd_ru(__fadd_ru(t.h1, ab), ab);
  return __fsub_rd(t.h2, bx) > u ? 1 : 0;
}

/* S = Top2 after the screen, Cert after the pass over the rows the screen
 * left; in_rows != NULL: the states are those of rows in_rows[0 ..
 * *in_count) (stride *in_count), which are the rows labels are written to
 * and appended to rows[]. cmax_lanes (L2): a certified label's value is
 * exhaustive_L2sqr_blas_cmax's (fkm_cmax_certified); defer_pairs: a row
 * narrowed to two candidates is listed in pairs[] (row, b1, b2) instead of
 * decided (a profile's laned scan decides it, profile.cu). */
template <bool L2, bool VEC, class S>
__global__ void __launch_bounds__(CERT_THREADS)
certify(const float *__restrict__ x, const float *__restrict__ xn,
        const float *__restrict__ c, const float *__restrict__ cn, int64_t n, int64_t d,
        int64_t ksplit, const S *__restrict__ st, BoundConsts bc,
        const float *__restrict__ cb, const float *__restrict__ bc_max,
        const int *__restrict__ xmax, const int *__restrict__ poison,
        const int32_t *__restrict__ in_rows, const int *__restrict__ in_count,
        int32_t *__restrict__ labels, float *__restrict__ dist, int32_t *__restrict__ rows,
        int *__restrict__ count, int64_t k, int cmax_lanes, int defer_pairs,
        int32_t *__restrict__ pairs, int *__restrict__ pair_count) {
  __shared__ float xs[CERT_THREADS][CERT_BK + 1];
  __shared__ int64_t srow[CERT_THREADS]; /* the block's rows of x, -1 past n */
  if (in_count) n = *in_count;
  /* blocks stride over the points (the pass over the rows the screen left
   * launches a few blocks for a count known only on the device) */
  for (int64_t m0 = (int64_t)blockIdx.x * CERT_THREADS; m0 < n;
       m0 += (int64_t)gridDim.x * CERT_THREADS) {
    const int64_t p = m0 + threadIdx.x;
    const int64_t row = p < n ? (in_rows ? in_rows[p] : p) : -1;
    srow[threadIdx.x] = row;
    int ncand = 0, b1 = -1, b2 = -1; /* 0: uncertain, 1: b1, 2: b1 and b2 */
    if (p < n) {
      S t;
      state_init(t);
      for (int64_t s = 0; s < ksplit; s++) state_merge(t, st[s * n + p]);
      if (*poison == 0) {
        /* B(x) = beta X + BC + eta, rounded up */
        const float v = xn[row], up = 1.0f + 0x1p-20f;
        const float bx = __fadd_ru(__fadd_ru(__fmul_ru(__fmul_ru(bc.beta, v), up), bc.eta), *bc_max);
        ncand = candidates(t, point_a(bc, v, scale_exp(*xmax)), bx, cb, b1, b2);
      }
    }
    float ip1 = 0.0f, ip2 = 0.0f;
    const float *c1 = ncand ? c + (int64_t)b1 * d : c;
    const float *c2 = ncand == 2 ? c + (int64_t)b2 * d : c;
    for (int64_t k0 = 0; k0 < d; k0 += CERT_BK) {
      const int kmax = (int)(d - k0 < CERT_BK ? d - k0 : CERT_BK);
      __syncthreads();
      if (VEC && kmax == CERT_BK) {
        constexpr int Q = CERT_BK / 4; /* float4 per row and stage */
        float4 v[Q]; /* CERT_THREADS rows x Q float4 = Q per thread */
#pragma unroll
        for (int i = 0; i < CERT_BK / 4; i++) {
          const int e = (int)threadIdx.x + i * CERT_THREADS, r = e / Q;
          const float4 *xr = reinterpret_cast<const float4 *>(x + srow[r] * d + k0);
          v[i] = srow[r] >= 0 ? __ldg(xr + e % Q) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
#pragma unroll
        for (int i = 0; i < CERT_BK / 4; i++) {
          const int e = (int)threadIdx.x + i * CERT_THREADS, r = e / Q, col = e % Q * 4;
          xs[r][col] = v[i].x, xs[r][col + 1] = v[i].y, xs[r][col + 2] = v[i].z,
          xs[r][col + 3] = v[i].w;
        }
      } else {
        for (int e = threadIdx.x; e < CERT_THREADS * CERT_BK; e += CERT_THREADS) {
          const int r = e / CERT_BK, col = e % CERT_BK;
          xs[r][col] = srow[r] >= 0 && col < kmax ? x[srow[r] * d + k0 + col] : 0.0f;
        }
      }
      __syncthreads();
      if (ncand) ip1 = cert_chunk<VEC>(ip1, xs[threadIdx.x], c1 + k0, kmax);
      if (ncand == 2) ip2 = cert_chunk<VEC>(ip2, xs[threadIdx.x], c2 + k0, kmax);
    }
    if (p >= n) continue;
    if (ncand == 2 && defer_pairs) {
      const int slot = atomicAdd(pair_count, 1);
      pairs[3 * slot] = (int32_t)row;
      pairs[3 * slot + 1] = b1;
      pairs[3 * slot + 2] = b2;
      continue;
    }
    if (L2 && ncand == 1 && cmax_lanes) {
      const fkm_top1 r = fkm_cmax_certified(b1, ip1, cn[b1], xn[row], k, cmax_lanes);
      labels[row] = (int32_t)r.idx;
      dist[row] = r.dis;
      continue;
    }
    float v1 = ip1, v2 = ip2;
    if (L2 && ncand) {
      v1 = __fsub_rn(__fadd_rn(xn[row], cn[b1]), __fadd_rn(ip1, ip1));
      if (v1 < 0.0f) v1 = 0.0f;
      if (ncand == 2) {
        v2 = __fsub_rn(__fadd_rn(xn[row], cn[b2]), __fadd_rn(ip2, ip2));
        if (v2 < 0.0f) v2 = 0.0f;
      }
    }
    int label = b1;
    float dis = v1;
    if (ncand == 2) {
      if (v1 != v1 || v2 != v2) {
        ncand = 0; /* cannot happen within the proof's assumptions: recompute */
      } else if (better<L2>(v2, v1) || (v2 == v1 && b2 < b1)) {
        label = b2;
        dis = v2;
      }
    }
    if (ncand) {
      labels[row] = label;
      dist[row] = dis;
    } else {
      rows[atomicAdd(count, 1)] = (int32_t)row;
    }
  }
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

/* The centroids packed into the scratch with their constants (PARITY:
 * fp16, each row scaled; poison raised for a centroid the bound cannot
 * cover). */
template <typename T, bool PARITY>
cudaError_t launch_pack_centroids(const fkm_assign_args *a, const fkm_mma_work &lay,
                                  const float *cb, int *poison, cudaStream_t s) {
  char *w = static_cast<char *>(a->work);
  const int64_t dp = fkm_pack_dims(a->d), kp = fkm_round_up(a->k, MBN);
  pack_centroids<T, PARITY><<<(unsigned)((kp * 32 + 255) / 256), 256, 0, s>>>(
      a->c, a->cn, cb, a->k, a->d, dp, a->metric == FKM_METRIC_L2, a->xmax,
      reinterpret_cast<uint16_t *>(w + lay.cpack), reinterpret_cast<float4 *>(w + lay.cconst),
      poison);
  return cudaGetLastError();
}

/* One tensor-core pass (state S) over the n packed rows xp, or over the
 * *count gathered rows (rows != NULL, at most n), centroids in ksplit ranges
 * of k_per_split: wgmma where the plan has it (x rows streamed beside the
 * centroid chunks where d > 128), else mma.sync
 * (x resident in shared memory when d <= 256). */
template <typename T, class S>
cudaError_t launch_pass(const fkm_assign_args *a, const fkm_assign_plan *plan,
                        const fkm_mma_work &lay, const uint16_t *xp, int64_t n,
                        const int32_t *rows, const int *count, int64_t ksplit,
                        int64_t k_per_split, const BoundConsts &bc, S *st, cudaStream_t s) {
  char *w = static_cast<char *>(a->work);
  const uint16_t *cpack = reinterpret_cast<const uint16_t *>(w + lay.cpack);
  const float4 *cc = reinterpret_cast<const float4 *>(w + lay.cconst);
  const int64_t dp = fkm_pack_dims(a->d), row_blocks = (n + MBM - 1) / MBM;
  const int nkc = (int)(dp / MBK);
  cudaError_t e;
  if (plan->wgmma > 0) {
    /* x rows resident per item up to WG_MAX_CHUNKS chunks, else streamed
     * with the centroid chunks */
    const bool stream = nkc > WG_MAX_CHUNKS;
    const int nslots = stream ? WG_STREAM_SLOTS : wg_slots(nkc);
    const size_t smem =
        1024 + (stream ? sizeof(uint16_t) * TILE * (size_t)((1 + WG_RB) * nslots)
                       : sizeof(uint16_t) * TILE * (size_t)(2 * WG_RB * nkc + nslots) +
                             (size_t)(nslots / nkc) * MBN * 16);
    auto kern = stream ? assign_wgmma<T, S, true> : assign_wgmma<T, S, false>;
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    const int64_t items = (n + WG_ROWS - 1) / WG_ROWS * ksplit;
    /* Parity: persistent, one block per multiprocessor (measured 3% faster
     * at 1M x 1024 than a block per item). FAST: a block per item, so that
     * the objective's kernels on the side stream find free multiprocessors
     * between blocks (persistent, FAST's objective tail grew from 0.2 to
     * 0.6 ms at 1M x 1024 and the iteration got 7% slower). */
    const int64_t cap = uses_bound<S>() ? plan->wgmma : items;
    const unsigned blocks = (unsigned)(items < cap ? items : cap);
    kern<<<blocks, WG_THREADS, smem, s>>>(xp, cpack, cc, a->xn, bc, a->xmax, n, dp, a->k,
                                          k_per_split, ksplit, nslots, rows, count, st);
    return cudaGetLastError();
  }
  const bool res = nkc <= RES_MAX_CHUNKS;
  const size_t smem = sizeof(uint16_t) * TILE * (size_t)(res ? nkc + MSTAGES : 2 * MSTAGES);
  auto kern = res ? assign_mma<T, S, true> : assign_mma<T, S, false>;
  e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e == cudaSuccess) /* room for two blocks per multiprocessor where registers allow */
    e = cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout,
                             cudaSharedmemCarveoutMaxShared);
  if (e != cudaSuccess) return e;
  const dim3 grid((unsigned)row_blocks, (unsigned)ksplit);
  kern<<<grid, MMA_THREADS, smem, s>>>(xp, cpack, cc, a->xn, bc, a->xmax, n, dp, a->k,
                                       k_per_split, rows, count, st);
  return cudaGetLastError();
}

/* The parity cascade (see "certified tensor-core path"): the screen over
 * every row, certify its states (test (1)), gather and pack the rows it
 * left, the Cert pass over them, certify (tests (1) and (2)), and the
 * reference kernel over the rest. Every count stays on the device. */
template <bool L2>
cudaError_t launch_tc(const fkm_assign_args *a, const fkm_assign_plan *plan, cudaStream_t s) {
  const int64_t n = a->n, k = a->k, d = a->d;
  const fkm_mma_work lay = fkm_mma_work_layout(n, k, d, plan);
  char *w = static_cast<char *>(a->work);
  int *count = reinterpret_cast<int *>(w), *count1 = count + 1, *pair_count = count + 2;
  int *poison = reinterpret_cast<int *>(w + 64);
  float *bc_max = reinterpret_cast<float *>(w + 128);
  int32_t *rows = reinterpret_cast<int32_t *>(w + lay.rows);
  int32_t *rows1 = reinterpret_cast<int32_t *>(w + lay.rows1);
  int32_t *pairs = reinterpret_cast<int32_t *>(w + lay.pairs);
  float *cb = reinterpret_cast<float *>(w + lay.cb);
  Top2 *st1 = reinterpret_cast<Top2 *>(w + lay.states);
  uint16_t *xg = reinterpret_cast<uint16_t *>(w + lay.gath);
  Cert *st2 = reinterpret_cast<Cert *>(w + lay.partials); /* then the refine partials */
  const BoundConsts bc = bound_consts(L2, d, a->float_norms != 0);
  cudaError_t e = cudaMemsetAsync(w, 0, 256, s);
  if (e != cudaSuccess) return e;
  centroid_bounds<<<(unsigned)((k + 255) / 256), 256, 0, s>>>(a->cn, k, bc.beta, cb);
  bound_max<<<(unsigned)((k + 255) / 256 < 128 ? (k + 255) / 256 : 128), 256, 0, s>>>(cb, k,
                                                                                       bc_max);
  e = launch_pack_centroids<__half, true>(a, lay, cb, poison, s);
  if (e == cudaSuccess)
    e = launch_pass<__half, Top2>(a, plan, lay, a->xp, n, nullptr, nullptr, plan->ksplit,
                                  plan->k_per_split, bc, st1, s);
  if (e != cudaSuccess) return e;
  const bool vec = d % 4 == 0 && reinterpret_cast<uintptr_t>(a->c) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(a->x) % 16 == 0;
  const unsigned cblocks = (unsigned)((n + CERT_THREADS - 1) / CERT_THREADS);
  auto cert1 = vec ? certify<L2, true, Top2> : certify<L2, false, Top2>;
  cert1<<<cblocks, CERT_THREADS, 0, s>>>(a->x, a->xn, a->c, a->cn, n, d, plan->ksplit, st1, bc,
                                         cb, bc_max, a->xmax, poison, nullptr, nullptr,
                                         a->labels, a->dist, rows1, count1, k, a->cmax_lanes,
                                         a->defer_pairs, pairs, pair_count);
  /* the rows the screen left, gathered and packed like x */
  const int64_t dp = fkm_pack_dims(d), groups = fkm_round_up(n, MBM) * (dp / 8);
  const unsigned gblocks = (unsigned)((groups + 255) / 256 < 4096 ? (groups + 255) / 256 : 4096);
  pack_rows<__half, true><<<gblocks, 256, 0, s>>>(a->x, n, d, 0, dp, a->xmax, rows1, count1, xg);
  e = launch_pass<__half, Cert>(a, plan, lay, xg, n, rows1, count1, plan->cert_split,
                                plan->cert_k_per_split, bc, st2, s);
  if (e != cudaSuccess) return e;
  auto cert2 = vec ? certify<L2, true, Cert> : certify<L2, false, Cert>;
  /* the rows the screen left: a few blocks stride over them (their count
   * is on the device) */
  const unsigned c2blocks = cblocks < CERT2_BLOCKS ? cblocks : CERT2_BLOCKS;
  cert2<<<c2blocks, CERT_THREADS, 0, s>>>(a->x, a->xn, a->c, a->cn, n, d, plan->cert_split, st2,
                                         bc, cb, bc_max, a->xmax, poison, rows1, count1,
                                         a->labels, a->dist, rows, count, k, a->cmax_lanes,
                                         a->defer_pairs, pairs, pair_count);
  /* The reference kernel on the rows left, centroids split in refine_split
   * ranges combined in order (the number of rows is on the device; blocks
   * past it exit at once). */
  float *pv = reinterpret_cast<float *>(w + lay.partials);
  int32_t *pi = reinterpret_cast<int32_t *>(pv + plan->refine_split * n);
  /* few rows are left: a small grid (blocks stride over the rows), so that
   * the blocks that find nothing to do cost little */
  const int64_t rblocks =
      (n + BM - 1) / BM < REFINE_ROW_BLOCKS ? (n + BM - 1) / BM : REFINE_ROW_BLOCKS;
  const dim3 rgrid((unsigned)rblocks, (unsigned)plan->refine_split);
  assign_simt<L2><<<rgrid, THREADS, 0, s>>>(a->x, a->xn, a->c, a->cn, n, d, a->k,
                                            plan->refine_k_per_split, a->labels, a->dist, pv, pi,
                                            rows, count);
  const unsigned cmblocks = (unsigned)((n + 255) / 256 < FEW_BLOCKS ? (n + 255) / 256 : FEW_BLOCKS);
  assign_combine<L2><<<cmblocks, 256, 0, s>>>(pv, pi, n, plan->refine_split,
                                                                 a->labels, a->dist, rows, count);
  return cudaGetLastError();
}

template <bool L2, typename T>
cudaError_t launch_fast(const fkm_assign_args *a, const fkm_assign_plan *plan, cudaStream_t s) {
  const int64_t n = a->n;
  const fkm_mma_work lay = fkm_mma_work_layout(n, a->k, a->d, plan);
  Arg *part = reinterpret_cast<Arg *>(static_cast<char *>(a->work) + lay.partials);
  const BoundConsts bc = bound_consts(L2, a->d, false); /* unused by the FAST pass */
  cudaError_t e = launch_pack_centroids<T, false>(a, lay, nullptr, nullptr, s);
  if (e == cudaSuccess)
    e = launch_pass<T, Arg>(a, plan, lay, a->xp, n, nullptr, nullptr, plan->ksplit,
                            plan->k_per_split, bc, part, s);
  if (e != cudaSuccess) return e;
  fast_finish<L2><<<(unsigned)((n + 255) / 256), 256, 0, s>>>(part, n, plan->ksplit, a->xn,
                                                              a->labels, a->dist);
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

extern "C" cudaError_t fkm_launch_pack_x(const float *x, int64_t n, int64_t d, int fast_dtype,
                                         uint16_t *xp, int *xmax, cudaStream_t s) {
  const int64_t dp = fkm_pack_dims(d), rp = fkm_round_up(n, MBM);
  if (rp == 0) return cudaSuccess;
  const int64_t groups = rp * (dp / 8);
  const unsigned blocks = (unsigned)((groups + 255) / 256 < 4096 ? (groups + 255) / 256 : 4096);
  if (fast_dtype == FKM_DTYPE_F16) {
    pack_rows<__half, false><<<blocks, 256, 0, s>>>(x, n, d, rp, dp, nullptr, nullptr, nullptr, xp);
  } else if (fast_dtype == FKM_DTYPE_BF16) {
    pack_rows<__nv_bfloat16, false><<<blocks, 256, 0, s>>>(x, n, d, rp, dp, nullptr, nullptr,
                                                            nullptr, xp);
  } else {
    cudaError_t e = cudaMemsetAsync(xmax, 0, sizeof(int), s);
    if (e != cudaSuccess) return e;
    if (n * d > 0)
      abs_max<<<blocks < 1024 ? blocks : 1024, 256, 0, s>>>(x, n * d, xmax);
    pack_rows<__half, true><<<blocks, 256, 0, s>>>(x, n, d, rp, dp, xmax, nullptr, nullptr, xp);
  }
  return cudaGetLastError();
}


extern "C" cudaError_t fkm_assign_probe_wgmma(int *ok) {
  *ok = 0;
  int *d = nullptr;
  cudaError_t e = cudaMalloc(&d, sizeof(int));
  if (e != cudaSuccess) return e;
  wgmma_probe<<<1, 1>>>(d);
  e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaMemcpy(ok, d, sizeof(int), cudaMemcpyDeviceToHost);
  const cudaError_t f = cudaFree(d);
  return e != cudaSuccess ? e : f;
}
