/* The float32 narrowing of a profile's rows (included by kernels/assign.cu
 * after certify.cuh): the rows the fp16 cascade left, neither certified
 * nor narrowed to two candidates, before a profile replays them in full.
 *
 * A profile's full replay (kernels/profile.cu: a BLAS's order, FAISS's
 * laned scans) walks every centroid of a row in that order, a warp per
 * row; where many rows reach it (1M x 128 into 16,384 centroids: 19-29 %
 * of the rows, 95 % of the assignment, bench/results v31) it is the
 * assignment's cost. This pass keeps the Cert state of the second stage
 * (tc_states.cuh) for those rows from float32 products instead of fp16:
 * each (row, centroid) the fmaf chain in dimension order (the reference
 * kernel's products, staged_products), g = fl(|c|^2 - 2 ip) (L2) or
 * fl(-ip), h = g - A32(x) |c|' rounded down. Certify then applies tests
 * (1) and (2) with the float32 bound (bound_consts_f32): its alpha is the
 * chain's error, about 2^-24 d against fp16's 2^-10, so almost every row
 * leaves with one or two candidates, which the profile decides in its own
 * order; only the rest is replayed in full. docs/certification.md
 * section 2 has the bound. */
#ifndef FKM_KERNELS_NARROW_CUH
#define FKM_KERNELS_NARROW_CUH

namespace {

/* The bound's constants for float32 products: bound_consts's beta, gamma
 * and eta (the reference's errors, the norms, the roundings of g and h),
 * with alpha from the fmaf chain: |ip32 - <x, c>| <= gamma_d sum|x_j c_j|
 * <= 1.01 d u |x||c|, taken twice over (L2: 2.01 times that in g; inner
 * product: 1.01 times it plus the 1.01 d u |x||c| of bound_consts). */
__host__ __device__ inline BoundConsts bound_consts_f32(bool l2, int64_t d, bool float_norms) {
  BoundConsts b = bound_consts(l2, d, float_norms);
  const double u = 0x1p-24, dd = (double)d, eip = 2.0 * 1.01 * dd * u;
  b.alpha = (float)(1.01 * (l2 ? 2.01 * eip : 1.01 * eip + 1.01 * dd * u));
  return b;
}

/* NW_TXN x NW_TN centroids by 256 / NW_TXN x NW_TM rows a block tile. */
constexpr int NW_TXN = 16, NW_TM = 4, NW_TN = 4;

/* Rows rows[0 .. *count) of x, centroids [y kps, (y + 1) kps) for grid row
 * y: each row's Cert state over its range into st[y *count + p] (the
 * layout certify merges). A row's NW_TXN threads keep disjoint centroid
 * subsets, pushed in increasing index, merged by shuffles. A NaN h (outside
 * the proof's assumptions) is taken as -inf: that centroid then stays a
 * candidate, never excluded. */
template <bool L2, bool VEC>
__global__ void __launch_bounds__(256, 2)
narrow_f32(const float *__restrict__ x, const float *__restrict__ xn,
           const float *__restrict__ c, const float *__restrict__ cn, int64_t d, int64_t k,
           int64_t kps, const int32_t *__restrict__ rows, const int *__restrict__ count,
           BoundConsts bc, const int *__restrict__ xmax, const float *__restrict__ cb,
           Cert *__restrict__ st) {
  constexpr int TYN = 256 / NW_TXN, SBM = TYN * NW_TM, SBN = NW_TXN * NW_TN;
  __shared__ __align__(16) float As[2][SBM][BK + 4];
  __shared__ __align__(16) float Bs[2][SBN][BK + 4];
  const int64_t n = *count;
  const int tx = (int)threadIdx.x % NW_TXN, ty = (int)threadIdx.x / NW_TXN;
  const int64_t kb = (int64_t)blockIdx.y * kps, ke = kb + kps < k ? kb + kps : k;
  const int sx = scale_exp(*xmax);
  for (int64_t m0 = (int64_t)blockIdx.x * SBM; m0 < n; m0 += (int64_t)gridDim.x * SBM) {
    Cert t[NW_TM];
    float pax[NW_TM];
#pragma unroll
    for (int i = 0; i < NW_TM; i++) {
      cert_init(t[i]);
      const int64_t p = m0 + ty + TYN * i;
      pax[i] = p < n ? point_a(bc, xn[rows[p]], sx) : 0.0f;
    }
    const auto arow = [&](int r) { return m0 + r < n ? (int64_t)rows[m0 + r] : (int64_t)-1; };
    for (int64_t n0 = kb; n0 < ke; n0 += SBN) {
      float acc[NW_TM][NW_TN];
      staged_products<NW_TXN, NW_TM, NW_TN, VEC>(As, Bs, arow, x, c, n0, ke, d, acc);
#pragma unroll
      for (int j = 0; j < NW_TN; j++) {
        const int64_t q = n0 + tx + NW_TXN * j;
        if (q >= ke) continue;
        const float qcn = L2 ? cn[q] : 0.0f, qcb = cb[q];
#pragma unroll
        for (int i = 0; i < NW_TM; i++) {
          const float ip = acc[i][j];
          const float g = L2 ? __fsub_rn(qcn, __fadd_rn(ip, ip)) : -ip;
          float h = __fsub_rd(g, __fmul_ru(pax[i], qcb));
          if (h != h) h = -INFINITY;
          cert_push(t[i], g, h, (int)q);
        }
      }
    }
#pragma unroll
    for (int i = 0; i < NW_TM; i++) {
#pragma unroll
      for (int off = NW_TXN / 2; off > 0; off /= 2) cert_merge(t[i], cert_shfl(t[i], off));
      const int64_t p = m0 + ty + TYN * i;
      if (tx == 0 && p < n) st[(int64_t)blockIdx.y * n + p] = t[i];
    }
  }
}

}  // namespace

#endif
