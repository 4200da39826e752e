/* The grouping of the training rows by label, the sort of the
 * sort-inverse update (docs/contract.md section 5; kernels/group.cu): host
 * launchers. Included from C and CUDA; nothing here synchronises.
 */
#ifndef FKM_KERNELS_GROUP_CUH
#define FKM_KERNELS_GROUP_CUH

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Bytes of scratch the grouping of n labels of problems problems needs
 *  (CUB's sort, or a batch's counting sort where that needs more); k: all
 *  centroids (of every problem). */
cudaError_t fkm_group_temp_bytes(int64_t n, int64_t k, int64_t problems, size_t *bytes);

/** Stable grouping of the training rows by label.
 *  labels (n) in [0, k) or -1; iota (n) = 0..n-1 (fkm_launch_iota);
 *  out: sorted_keys / rows (n): rows sorted by label, stable (a radix sort
 *  of (label, index) pairs); hist (k) int32 label counts (labels -1 are not
 *  counted and sort after every valid label); offsets (k) the start of each
 *  label's segment in the sorted order (found by binary search, so hist and
 *  offsets need no atomics and no scan).
 *  Batched runs (problems > 1): the n rows are problems blocks of
 *  n / problems rows, labels are local to the problem (in [0, k /
 *  problems)); the keys sorted are the global centroid rows b * (k /
 *  problems) + label, written to composed (n) first. Batches of at most
 *  4096 problems whose per-warp label counts fit temp are grouped instead
 *  by a counting sort, a few blocks per problem (the same rows, hist and
 *  offsets; sorted_keys and composed are left unwritten). */
typedef struct fkm_group_args {
  const int32_t *labels;
  const int32_t *iota;
  int64_t n, k;
  int64_t problems;   /* >= 1 */
  int32_t *composed;  /* (n) scratch when problems > 1, else unused */
  int32_t *sorted_keys;
  int32_t *rows;
  int32_t *hist;
  int32_t *offsets;
  void *temp;
  size_t temp_bytes;
  int radix_only;     /* batched runs: 1 keeps the radix sort where the
                         per-problem counting sort applies (tests, A/B) */
} fkm_group_args;
cudaError_t fkm_launch_group(const fkm_group_args *a, cudaStream_t s);

/** iota[i] = i for i < n. */
cudaError_t fkm_launch_iota(int32_t *iota, int64_t n, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
