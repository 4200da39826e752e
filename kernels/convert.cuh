/* Data movement kernels: exact dtype conversion with an optional row
 * gather, input checks, label widening. Host launchers, included from C and
 * CUDA; nothing here synchronises.
 */
#ifndef FKM_KERNELS_CONVERT_CUH
#define FKM_KERNELS_CONVERT_CUH

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/** out row i := float(src row (rows ? rows[i] : i)), i < n, d columns.
 *  Without rows and with the problems back to back the conversion is one
 *  flat pass over their elements (no row arithmetic).
 *  dtype: an fkm_dtype; f16/bf16 are converted exactly. src, rows, out:
 *  device. problems > 1: the same for problem b = 0 .. problems - 1 from
 *  src + b src_stride into out + b out_stride (elements), in one launch
 *  (0 and 1: one problem). */
typedef struct fkm_convert_args {
  int dtype;
  const void *src;
  const int64_t *rows; /* (n) or NULL */
  int64_t n, d;
  float *out;          /* (n, d) */
  int64_t problems, src_stride, out_stride;
  /* Optional (rows NULL, and the problems back to back: one problem, or
   * both strides n d): *first := min(*first, the index in src of the first
   * NaN/Inf among the elements converted), as fkm_launch_first_nonfinite
   * over them would give it, in the same pass. Set *first to ~0ull
   * beforehand. NULL: no check. */
  unsigned long long *first;
} fkm_convert_args;
cudaError_t fkm_launch_convert(const fkm_convert_args *a, cudaStream_t s);

/** *first := min(*first, index of the first NaN/Inf among count elements of
 *  dtype at src). Set *first to ~0ull (memset 0xff) beforehand. */
cudaError_t fkm_launch_first_nonfinite(int dtype, const void *src,
                                       int64_t count,
                                       unsigned long long *first,
                                       cudaStream_t s);

/** *first := min(*first, first i with w[i] not finite or negative). */
cudaError_t fkm_launch_first_bad_weight(const float *w, int64_t n,
                                        unsigned long long *first,
                                        cudaStream_t s);

/** out[i] = (int64) in[i]. */
cudaError_t fkm_launch_widen_labels(const int32_t *in, int64_t n,
                                    int64_t *out, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
