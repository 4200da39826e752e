/* FAISS's PQ encoding (kernels/pq.cuh). Thread t of the nearest-centroid
 * kernel takes sub-quantizer t / n and row t % n, so a warp reads the same
 * centroid at the same time (one broadcast load) and rows one after the
 * other.
 *
 * The scan is kernels/faiss_scan.h's fkm_pq_nearest, run as it is. Its
 * run-time widths (the sub-vector's, the lanes', the reference loop's
 * summation width and tail) index small arrays, which then live in local
 * memory; pq_nearest_at's instances instead get them as template arguments, written
 * into its copy of the rule, so that the compiler folds them and keeps the
 * arrays in registers: the same functions, the same operations in the same
 * order. The launcher picks the instance whose arguments equal the rule's
 * (the loop orders of FAISS's releases); any other rule (an order a door
 * measured) runs the run-time scan (pq_nearest_at<0, -1, -1, 0>). args.generic
 * (the engine's FLASHKM_CUDA_PQ=generic, for measurements) runs it for every
 * rule. */
#include "pq.cuh"

#include "grid_stride.cuh"

namespace {

__global__ void pq_check_lists(const int64_t *lists, int64_t n, int64_t nlist,
                               unsigned long long *bad) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    if (lists[i] < 0 || lists[i] >= nlist) atomicMin(bad, (unsigned long long)i);
}

/* D: sub-vector width (0: the run-time d / M); L: the rule's lanes at D
 * (0: the reference scan; < 0: the rule's own); W, E: the reference's
 * summation width and tail width (W < 0: the rule's own, for the lanes,
 * which do not read them). pq_nearest_at<0, -1, -1, 0> is the run-time
 * scan. */
template <int D, int L, int W, int E>
__global__ void pq_nearest_at(const fkm_pq_launch_args a) {
  fkm_pq_rule rule = a.rule;
  if (L >= 0) rule.lanes = L;
  if (W >= 0) {
    rule.l2.width = W;
    rule.l2.tail_width = E;
  }
  const int dsub = D ? D : (int)(a.d / a.M);
  const int64_t ksub = (int64_t)1 << a.nbits, total = a.n * a.M;
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total;
       t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t m = t / a.n, i = t % a.n;
    float r[D ? D : FKM_PQ_MAX_DSUB];
    fkm_pq_subvector(a.x + i * a.d, a.coarse ? a.coarse + a.lists[i] * a.d : nullptr, m, dsub,
                     r);
    a.idx[i * a.M + m] = (uint32_t)fkm_pq_nearest(&rule, r, a.pq + m * ksub * dsub, dsub, ksub);
  }
}

typedef void (*pq_kernel)(const fkm_pq_launch_args);

/* The reference's (width, tail width) pairs of FAISS's releases
 * (plugin/profile.c): width 0 sums in double. */
constexpr int PQ_ORDERS[][2] = {{0, 0}, {1, 0}, {4, 0}, {4, 2}, {8, 4}, {16, 8}};

template <int D, int O>
pq_kernel pick_order(const fkm_loop_order &o) {
  if constexpr (O < (int)(sizeof PQ_ORDERS / sizeof PQ_ORDERS[0])) {
    if (o.width == PQ_ORDERS[O][0] && o.tail_width == PQ_ORDERS[O][1])
      return pq_nearest_at<D, 0, PQ_ORDERS[O][0], PQ_ORDERS[O][1]>;
    return pick_order<D, O + 1>(o);
  } else {
    return nullptr;
  }
}

/* The instance for sub-vector width D under rule, or NULL. */
template <int D>
pq_kernel pick_width(int dsub, const fkm_pq_rule &rule) {
  if constexpr (D > FKM_PQ_MAX_DSUB) {
    return nullptr;
  } else {
    if (dsub != D) return pick_width<D + 1>(dsub, rule);
    const int lanes = fkm_pq_lanes(&rule, D);
    if constexpr (D == 2 || D == 4 || D == 8) {
      if (lanes == 8) return pq_nearest_at<D, 8, -1, 0>;
      if (lanes == 16) return pq_nearest_at<D, 16, -1, 0>;
    }
    if (lanes != 0) return nullptr;
    if constexpr (D == 12) /* fvec_op_ny_D12 reads no loop order: any instance at 12 */
      if (rule.d12) return pq_nearest_at<D, 0, 0, 0>;
    return pick_order<D, 0>(rule.l2);
  }
}

__global__ void pq_pack(const fkm_pq_launch_args a) {
  const int64_t code_size = (a.M * a.nbits + 7) / 8;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < a.n;
       i += (int64_t)gridDim.x * blockDim.x) {
    fkm_pq_packer p = fkm_pq_pack_begin(a.codes + i * code_size, a.nbits);
    for (int64_t m = 0; m < a.M; m++) fkm_pq_pack_push(&p, a.idx[i * a.M + m]);
    fkm_pq_pack_end(&p);
  }
}

}  // namespace

extern "C" cudaError_t fkm_launch_pq_encode(const fkm_pq_launch_args *a, cudaStream_t s) {
  if (a->n <= 0) return cudaSuccess;
  const pq_kernel k = a->generic ? nullptr : pick_width<1>((int)(a->d / a->M), a->rule);
  (k ? k : pq_nearest_at<0, -1, -1, 0>)<<<fkm_grid_for(a->n * a->M), FKM_GRID_THREADS, 0, s>>>(*a);
  pq_pack<<<fkm_grid_for(a->n), FKM_GRID_THREADS, 0, s>>>(*a);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_pq_check_lists(const int64_t *lists, int64_t n, int64_t nlist,
                                                 unsigned long long *bad, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  pq_check_lists<<<fkm_grid_for(n), FKM_GRID_THREADS, 0, s>>>(lists, n, nlist, bad);
  return cudaGetLastError();
}
