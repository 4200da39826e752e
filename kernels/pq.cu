/* FAISS's PQ encoding (kernels/pq.cuh). Thread t of the nearest-centroid
 * kernel takes sub-quantizer t / n and row t % n, so a warp reads the same
 * centroid at the same time (one broadcast load) and rows one after the
 * other. */
#include "pq.cuh"

#include "grid_stride.cuh"

namespace {

__global__ void pq_check_lists(const int64_t *lists, int64_t n, int64_t nlist,
                               unsigned long long *bad) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    if (lists[i] < 0 || lists[i] >= nlist) atomicMin(bad, (unsigned long long)i);
}

__global__ void pq_nearest(const fkm_pq_launch_args a) {
  const int dsub = (int)(a.d / a.M);
  const int64_t ksub = (int64_t)1 << a.nbits, total = a.n * a.M;
  for (int64_t t = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; t < total;
       t += (int64_t)gridDim.x * blockDim.x) {
    const int64_t m = t / a.n, i = t % a.n;
    float r[FKM_PQ_MAX_DSUB];
    fkm_pq_subvector(a.x + i * a.d, a.coarse ? a.coarse + a.lists[i] * a.d : nullptr, m, dsub,
                     r);
    a.idx[i * a.M + m] =
        (uint32_t)fkm_pq_nearest(&a.rule, r, a.pq + m * ksub * dsub, dsub, ksub);
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
  pq_nearest<<<fkm_grid_for(a->n * a->M), FKM_GRID_THREADS, 0, s>>>(*a);
  pq_pack<<<fkm_grid_for(a->n), FKM_GRID_THREADS, 0, s>>>(*a);
  return cudaGetLastError();
}

extern "C" cudaError_t fkm_launch_pq_check_lists(const int64_t *lists, int64_t n, int64_t nlist,
                                                 unsigned long long *bad, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  pq_check_lists<<<fkm_grid_for(n), FKM_GRID_THREADS, 0, s>>>(lists, n, nlist, bad);
  return cudaGetLastError();
}
