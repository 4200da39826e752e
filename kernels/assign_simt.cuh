/* The reference assignment on SIMT cores (included by kernels/assign.cu,
 * one translation unit with the other families): FAISS's formula with the
 * fmaf chain in dimension order, the N x K matrix never written; also the
 * refine pass of the certified cascade (refine_staged). */
#ifndef FKM_KERNELS_ASSIGN_SIMT_CUH
#define FKM_KERNELS_ASSIGN_SIMT_CUH

namespace {

constexpr int BM = FKM_ASSIGN_BM;
constexpr int BN = FKM_ASSIGN_BN;
constexpr int BK = FKM_ASSIGN_BK;
constexpr int TM = 4, TN = 4;               /* accumulators per thread */
constexpr int THREADS = (BM / TM) * (BN / TN); /* 256 */
constexpr int TX = BN / TN;                 /* 16 threads along centroids */

/* p, b times bytes further: a batch's problem b in its scratch (the
 * problems' scratch lies side by side, a stride of bytes apart; b is 0 for
 * one problem), NULL kept. */
template <typename P>
__host__ __device__ __forceinline__ P *fkm_bytes_on(P *p, int64_t b, int64_t bytes) {
  typedef typename std::conditional<std::is_const<P>::value, const char, char>::type C;
  return p ? reinterpret_cast<P *>(reinterpret_cast<C *>(p) + b * bytes) : p;
}

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

/* FAISS's distance from the inner product ip (docs/contract.md section 3):
 * L2 (xn + cn) - (ip + ip), each step rounded, clamped at 0; inner product
 * ip itself. */
template <bool L2>
__device__ __forceinline__ float ref_distance(float xn, float cn, float ip) {
  if (!L2) return ip;
  float dis = __fsub_rn(__fadd_rn(xn, cn), __fadd_rn(ip, ip));
  if (dis < 0.0f) dis = 0.0f;
  return dis;
}

/* The strict running argmin: dis replaces the best only when better. */
template <bool L2>
__device__ __forceinline__ void keep_better(float dis, int q, float &best, int &bidx) {
  if (better<L2>(dis, best)) {
    best = dis;
    bidx = q;
  }
}

/* The lexicographic combine over the LANES consecutive lanes (a power of
 * two dividing 32) that share a point; every lane ends with the result. */
template <bool L2, int LANES>
__device__ __forceinline__ void combine_lanes(float &bv, int &bi) {
#pragma unroll
  for (int off = LANES / 2; off > 0; off /= 2) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, off);
    const int oi = __shfl_xor_sync(0xffffffffu, bi, off);
    combine<L2>(bv, bi, ov, oi);
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
        for (int i = 0; i < TM; i++)
          keep_better<L2>(ref_distance<L2>(pxn[i], qcn, acc[i][j]), (int)q, best[i], bidx[i]);
      }
    }

    /* The 16 threads of a point are lanes tx = 0..15 of one half-warp. */
#pragma unroll
    for (int i = 0; i < TM; i++) {
      combine_lanes<L2, TX>(best[i], bidx[i]);
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

/* One tile of a GEMM-staged reference pass (assign_simt_staged, the
 * narrowing pass of kernels/narrow.cuh): acc[i][j] = the fmaf chain over
 * dimensions 0..d-1 in order of the block's row ty + TYN i and centroid
 * n0 + tx + TXN j (the tile is TYN x TM rows by TXN x TN centroids, 256
 * threads; a thread owns rows ty + TYN i and centroids tx + TXN j, the TXN
 * threads of a row being consecutive lanes):
 *  - BK dimensions a step, copied by cp.async into one of two shared
 *    buffers while the other's products run (no staging registers), rows
 *    as they lie in memory (16-byte copies where VEC: d % 4 == 0 and
 *    16-byte aligned arrays; 4-byte ones otherwise), out-of-range rows
 *    and dimensions zero-filled;
 *  - a thread reads 4 dimensions of a row as one float4 (rows RS floats
 *    apart: the TXN different rows a quarter-warp reads fall in distinct
 *    banks) and runs its TM x TN chains over them in dimension order; the
 *    tail step (d % BK) reads its valid dimensions one at a time.
 * arow(t): the row of x that is the block's row t, or -1 past the rows. */
template <int TXN, int TM, int TN, bool VEC, class RowOf>
__device__ __forceinline__ void staged_products(float (&As)[2][256 / TXN * TM][BK + 4],
                                                float (&Bs)[2][TXN * TN][BK + 4], RowOf arow,
                                                const float *__restrict__ x,
                                                const float *__restrict__ c, int64_t n0,
                                                int64_t k, int64_t d, float (&acc)[TM][TN]) {
  constexpr int TYN = 256 / TXN, SBM = TYN * TM, SBN = TXN * TN;
  static_assert(TXN * TYN == 256 && 32 % TXN == 0 && BK % 4 == 0, "tile");
  const int tid = threadIdx.x;
  const int tx = tid % TXN, ty = tid / TXN;
  const int64_t steps = (d + BK - 1) / BK;
  /* step s's rows and centroids into buffer b: a thread copies W floats
   * at dimension col of rows r0 + tid / CPR + RP t (every row's copies
   * are CPR consecutive threads) */
  constexpr int W = VEC ? 4 : 1, CPR = BK / W, RP = 256 / CPR;
  constexpr int NA = (SBM + RP - 1) / RP, NB = (SBN + RP - 1) / RP;
  const int col = tid % CPR * W, r = tid / CPR;
  const float *pa[NA], *pb[NB];
  bool oka[NA], okb[NB];
#pragma unroll
  for (int t = 0; t < NA; t++) {
    const int64_t g = r + RP * t < SBM ? arow(r + RP * t) : -1;
    oka[t] = g >= 0;
    pa[t] = oka[t] ? x + g * d + col : x;
  }
#pragma unroll
  for (int t = 0; t < NB; t++) {
    okb[t] = r + RP * t < SBN && n0 + r + RP * t < k;
    pb[t] = okb[t] ? c + (n0 + r + RP * t) * d + col : c;
  }
  auto stage = [&](int64_t s, int b) {
    const int64_t k0 = s * BK;
    const bool dim_ok = col < d - k0; /* every dimension of a copy, or none */
    /* NR rows of buf from the row pointers p (any: a valid address) */
    auto rows = [&](auto &buf, const float *const *p, const bool *ok, const float *any,
                    auto nrows, auto ncopies) {
      constexpr int NR = decltype(nrows)::value, NT = decltype(ncopies)::value;
#pragma unroll
      for (int t = 0; t < NT; t++) {
        if (NR % RP != 0 && r + RP * t >= NR) break;
        const bool v = ok[t] && dim_ok;
        if (VEC)
          cp_async16_zfill(&buf[r + RP * t][col], v ? p[t] + k0 : any, v);
        else
          cp_async4_zfill(&buf[r + RP * t][col], v ? p[t] + k0 : any, v);
      }
    };
    rows(As[b], pa, oka, x, std::integral_constant<int, SBM>{},
         std::integral_constant<int, NA>{});
    rows(Bs[b], pb, okb, c, std::integral_constant<int, SBN>{},
         std::integral_constant<int, NB>{});
    cp_async_commit();
  };
#pragma unroll
  for (int i = 0; i < TM; i++)
#pragma unroll
    for (int j = 0; j < TN; j++) acc[i][j] = 0.0f;
  stage(0, 0);
  for (int64_t s = 0; s < steps; s++) {
    const int b = (int)(s & 1);
    if (s + 1 < steps) {
      stage(s + 1, b ^ 1);
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const int kmax = (int)((d - s * BK) < BK ? (d - s * BK) : BK);
    if (kmax == BK) {
#pragma unroll
      for (int k4 = 0; k4 < BK; k4 += 4) {
        float4 a[TM], w[TN];
#pragma unroll
        for (int i = 0; i < TM; i++)
          a[i] = *reinterpret_cast<const float4 *>(&As[b][ty + TYN * i][k4]);
#pragma unroll
        for (int j = 0; j < TN; j++)
          w[j] = *reinterpret_cast<const float4 *>(&Bs[b][tx + TXN * j][k4]);
#pragma unroll
        for (int i = 0; i < TM; i++)
#pragma unroll
          for (int j = 0; j < TN; j++) {
            acc[i][j] = fmaf(a[i].x, w[j].x, acc[i][j]);
            acc[i][j] = fmaf(a[i].y, w[j].y, acc[i][j]);
            acc[i][j] = fmaf(a[i].z, w[j].z, acc[i][j]);
            acc[i][j] = fmaf(a[i].w, w[j].w, acc[i][j]);
          }
      }
    } else {
      for (int kk = 0; kk < kmax; kk++) {
#pragma unroll
        for (int i = 0; i < TM; i++)
#pragma unroll
          for (int j = 0; j < TN; j++)
            acc[i][j] = fmaf(As[b][ty + TYN * i][kk], Bs[b][tx + TXN * j][kk], acc[i][j]);
      }
    }
    __syncthreads(); /* buffer b is step s + 2's */
  }
}

/* The reference formula's distances of one staged tile (acc, centroids
 * n0 + tx + TXN j below k; tx the thread's lane among its row's TXN) folded into each row's running strict argmin,
 * centroids in increasing order. pxn(i): |x|^2 of the thread's row i, read
 * here, TN times a tile (kept in registers across the tiles, the TM = 8
 * instances spill: ptxas -v). */
template <bool L2, int TXN, int TM, int TN, class XnOf>
__device__ __forceinline__ void argmin_tile(const float (&acc)[TM][TN], int tx, int64_t n0,
                                            int64_t k, const float *__restrict__ cn, XnOf pxn,
                                            float (&best)[TM], int (&bidx)[TM]) {
#pragma unroll
  for (int j = 0; j < TN; j++) {
    const int64_t q = n0 + tx + TXN * j;
    if (q >= k) continue;
    const float qcn = L2 ? cn[q] : 0.0f;
#pragma unroll
    for (int i = 0; i < TM; i++)
      keep_better<L2>(ref_distance<L2>(pxn(i), qcn, acc[i][j]), (int)q, best[i], bidx[i]);
  }
}

/* The reference argmin of the rows row_of(p), p < n, over the centroids
 * [kb, ke) (a block a tile of rows at a time, striding): staged_products'
 * tiles, argmin_tile's strict scan, the lanes of a row combined
 * lexicographically; put(p, value, index) takes each row's result. */
template <bool L2, int TXN, int TM, int TN, bool VEC, class RowOf, class Put>
__device__ __forceinline__ void staged_argmin(float (&As)[2][256 / TXN * TM][BK + 4],
                                              float (&Bs)[2][TXN * TN][BK + 4], RowOf row_of,
                                              int64_t n, int64_t kb, int64_t ke,
                                              const float *__restrict__ x,
                                              const float *__restrict__ xn,
                                              const float *__restrict__ c,
                                              const float *__restrict__ cn, int64_t d, Put put) {
  constexpr int TYN = 256 / TXN, SBM = TYN * TM, SBN = TXN * TN;
  const int tid = threadIdx.x;
  const int tx = tid % TXN, ty = tid / TXN;
  for (int64_t m0 = (int64_t)blockIdx.x * SBM; m0 < n; m0 += (int64_t)gridDim.x * SBM) {
    float best[TM];
    int bidx[TM];
#pragma unroll
    for (int i = 0; i < TM; i++) {
      best[i] = L2 ? INFINITY : -INFINITY;
      bidx[i] = -1;
    }
    const auto arow = [&](int t) { return m0 + t < n ? row_of(m0 + t) : (int64_t)-1; };
    for (int64_t n0 = kb; n0 < ke; n0 += SBN) {
      float acc[TM][TN];
      staged_products<TXN, TM, TN, VEC>(As, Bs, arow, x, c, n0, ke, d, acc);
      argmin_tile<L2, TXN>(acc, tx, n0, ke, cn,
                           [&](int i) {
                             const int64_t p = m0 + ty + TYN * i;
                             return L2 && p < n ? xn[row_of(p)] : 0.0f;
                           },
                           best, bidx);
    }
#pragma unroll
    for (int i = 0; i < TM; i++) {
      combine_lanes<L2, TXN>(best[i], bidx[i]);
      const int64_t p = m0 + ty + TYN * i;
      if (tx == 0 && p < n) put(p, best[i], bidx[i]);
    }
  }
}

/* The reference kernel of a batch in one launch
 * (fkm_launch_assign_simt_batched): assign_simt's arithmetic (each
 * (point, centroid) accumulator the fmaf chain in dimension order from 0,
 * the same distance formula, the strict argmin per thread, the
 * lexicographic combine), so its bits, with the staging of a GEMM that
 * keeps the FMA pipe busy (staged_products): the block is TYN x TM points
 * by TXN x TN centroids, a tile walked over k. Layer z of the grid is
 * problem z. */
template <bool L2, int TXN, int TM, int TN, bool VEC>
__global__ void __launch_bounds__(256, 2)
assign_simt_staged(const float *__restrict__ x, const float *__restrict__ xn,
                   const float *__restrict__ c, const float *__restrict__ cn, int64_t n,
                   int64_t d, int64_t k, int32_t *__restrict__ labels,
                   float *__restrict__ dist) {
  {
    const int64_t z = blockIdx.z;
    x += z * n * d;
    xn += z * n;
    c += z * k * d;
    cn += z * k;
    labels += z * n;
    dist += z * n;
  }
  __shared__ __align__(16) float As[2][256 / TXN * TM][BK + 4];
  __shared__ __align__(16) float Bs[2][TXN * TN][BK + 4];
  staged_argmin<L2, TXN, TM, TN, VEC>(
      As, Bs, [](int64_t p) { return p; }, n, 0, k, x, xn, c, cn, d,
      [&](int64_t p, float v, int i) {
        labels[p] = i;
        dist[p] = v;
      });
}

/* The cascade's refine pass (launch_tc): the reference kernel over the
 * rows rows[0 .. *count) and centroid range y (kps centroids), with
 * assign_simt_staged's staging and arithmetic (128 rows by 64 centroids a
 * block), each row's argmin of the range into part_v / part_i[y stride +
 * p] for assign_combine, as assign_simt's refine writes them. Layer z of
 * the grid is problem z of a batch: its stride rows of x and k centroids,
 * its list and partials in its scratch, ws bytes further. */
template <bool L2, bool VEC>
__global__ void __launch_bounds__(256, 2)
refine_staged(const float *__restrict__ x, const float *__restrict__ xn,
              const float *__restrict__ c, const float *__restrict__ cn, int64_t d, int64_t k,
              int64_t kps, const int32_t *__restrict__ rows, const int *__restrict__ count,
              float *__restrict__ part_v, int32_t *__restrict__ part_i, int64_t stride,
              int64_t ws) {
  {
    const int64_t z = blockIdx.z;
    x += z * stride * d;
    xn += z * stride;
    c += z * k * d;
    cn += z * k;
    rows = fkm_bytes_on(rows, z, ws);
    count = fkm_bytes_on(count, z, ws);
    part_v = fkm_bytes_on(part_v, z, ws);
    part_i = fkm_bytes_on(part_i, z, ws);
  }
  constexpr int TXN = 16, TM = 8, TN = 4;
  __shared__ __align__(16) float As[2][256 / TXN * TM][BK + 4];
  __shared__ __align__(16) float Bs[2][TXN * TN][BK + 4];
  const int64_t kb = (int64_t)blockIdx.y * kps, ke = kb + kps < k ? kb + kps : k;
  staged_argmin<L2, TXN, TM, TN, VEC>(
      As, Bs, [&](int64_t p) { return (int64_t)rows[p]; }, *count, kb, ke, x, xn, c, cn, d,
      [&](int64_t p, float v, int i) {
        part_v[(int64_t)blockIdx.y * stride + p] = v;
        part_i[(int64_t)blockIdx.y * stride + p] = i;
      });
}

/* Combine the ksplit partial results of each point in increasing centroid
 * range order with a strict comparison: a later range wins only when it is
 * strictly better, so ties keep the lowest index. One thread per point.
 * Problem blockIdx.y of a batch: its n labels and distances, its partials
 * and list ws bytes further. */
template <bool L2>
__global__ void assign_combine(const float *__restrict__ part_v,
                               const int32_t *__restrict__ part_i, int64_t n,
                               int64_t ksplit, int32_t *__restrict__ labels,
                               float *__restrict__ dist, const int32_t *__restrict__ rows,
                               const int *__restrict__ count, int64_t ws) {
  {
    const int64_t z = blockIdx.y;
    labels += z * n;
    dist += z * n;
    part_v = fkm_bytes_on(part_v, z, ws);
    part_i = fkm_bytes_on(part_i, z, ws);
    rows = fkm_bytes_on(rows, z, ws);
    count = fkm_bytes_on(count, z, ws);
  }
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
