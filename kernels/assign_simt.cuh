/* The reference assignment on SIMT cores (included by kernels/assign.cu,
 * one translation unit with the other families): FAISS's formula with the
 * fmaf chain in dimension order, the N x K matrix never written; also the
 * refine pass of the certified cascade. */
#ifndef FKM_KERNELS_ASSIGN_SIMT_CUH
#define FKM_KERNELS_ASSIGN_SIMT_CUH

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
   * m0 + r < *count, results go to those rows. A grid of several layers
   * (fkm_launch_assign_simt_batched, no partials, no rows): layer z is
   * problem z, whose arrays follow problem 0's at z times their sizes. */
  if (blockIdx.z > 0) {
    const int64_t z = blockIdx.z;
    x += z * n * d;
    xn += z * n;
    c += z * k * d;
    cn += z * k;
    labels += z * n;
    dist += z * n;
  }
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

}  // namespace

#endif
