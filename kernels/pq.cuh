/* FAISS's ProductQuantizer::compute_codes on the GPU (fkm_pq_encode): one
 * thread per (row, sub-quantizer) running kernels/faiss_scan.h's
 * fkm_pq_nearest (specialised per width and loop order, kernels/pq.cu), then one thread per row packing the indices into FAISS's
 * code bytes. Host launcher, included from C and CUDA; nothing here
 * synchronises. */
#ifndef FKM_KERNELS_PQ_CUH
#define FKM_KERNELS_PQ_CUH

#include <stdint.h>

#include <cuda_runtime_api.h>

#include "faiss_scan.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Rows [0, n) of a chunk: codes (n, (M * nbits + 7) / 8) of x (n, d) (less
 *  coarse[lists[i]] when coarse is set; lists checked beforehand). idx:
 *  scratch (n, M). All pointers device. */
typedef struct fkm_pq_launch_args {
  fkm_pq_rule rule;
  int64_t n, d, M;
  int nbits;
  const float *x, *pq, *coarse;
  const int64_t *lists;
  int64_t nlist;
  uint32_t *idx;
  uint8_t *codes;
  int generic; /* the run-time scan whatever the rule (kernels/pq.cu) */
} fkm_pq_launch_args;
cudaError_t fkm_launch_pq_encode(const fkm_pq_launch_args *a, cudaStream_t s);

/** *bad := min(*bad, first i < n with lists[i] outside [0, nlist)); set
 *  *bad to ~0ull beforehand. Device pointers. */
cudaError_t fkm_launch_pq_check_lists(const int64_t *lists, int64_t n, int64_t nlist,
                                      unsigned long long *bad, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
