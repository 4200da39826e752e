/* Host side of fkm_pq_encode and fkm_pq_slices (plugin/pq.h). */
#include "pq.h"

#include <string.h>

#include "cpu_kernels.h"
#include "source.h"

fkm_status fkm_pq_fail_list(fkm_errbuf *err, int64_t i, int64_t v, int64_t nlist) {
  return fkm_fail(err, FKM_ERR_INVALID_ARG, "lists[%lld] = %lld is outside [0, nlist = %lld)",
                  (long long)i, (long long)v, (long long)nlist);
}

fkm_status fkm_pq_check_lists(fkm_errbuf *err, const int64_t *lists, int64_t n, int64_t nlist) {
  for (int64_t i = 0; i < n; i++)
    if (lists[i] < 0 || lists[i] >= nlist) return fkm_pq_fail_list(err, i, lists[i], nlist);
  return FKM_OK;
}

fkm_status fkm_pq_check_host(fkm_errbuf *err, const fkm_pq_args *a) {
  const int64_t dsub = a->d / a->M, ksub = (int64_t)1 << a->nbits;
  if (a->check_finite) {
    int64_t bad;
    if ((bad = fkm_first_nonfinite_all(FKM_DTYPE_F32, a->x, a->n * a->d)) >= 0)
      return fkm_fail_not_finite(err, "x", bad, 1, a->n, a->d);
    if ((bad = fkm_first_nonfinite_all(FKM_DTYPE_F32, a->pq, a->M * ksub * dsub)) >= 0)
      return fkm_fail_not_finite(err, "pq_centroids", bad, 1, a->M * ksub, dsub);
    if (a->coarse &&
        (bad = fkm_first_nonfinite_all(FKM_DTYPE_F32, a->coarse, a->nlist * a->d)) >= 0)
      return fkm_fail_not_finite(err, "coarse", bad, 1, a->nlist, a->d);
  }
  return a->lists ? fkm_pq_check_lists(err, a->lists, a->n, a->nlist) : FKM_OK;
}

void fkm_pq_rows(const fkm_pq_args *a, int64_t i0, int64_t i1, fkm_pq_nearest_fn nearest,
                 const void *self) {
  const int dsub = (int)(a->d / a->M);
  const int64_t code_size = fkm_pq_code_size(a->M, a->nbits);
#pragma omp parallel for schedule(static)
  for (int64_t i = i0; i < i1; i++) {
    float r[FKM_PQ_MAX_DSUB];
    const float *x = a->x + i * a->d;
    const float *c = a->coarse ? a->coarse + a->lists[i] * a->d : NULL;
    fkm_pq_packer p = fkm_pq_pack_begin(a->codes + i * code_size, a->nbits);
    for (int64_t m = 0; m < a->M; m++) {
      fkm_pq_subvector(x, c, m, dsub, r);
      fkm_pq_pack_push(&p, (uint32_t)nearest(self, r, m));
    }
    fkm_pq_pack_end(&p);
  }
}

/* The scalar rule on sub-quantizer m's centroids. */
static int64_t nearest_scalar(const void *self, const float *r, int64_t m) {
  const fkm_pq_args *a = self;
  const int dsub = (int)(a->d / a->M);
  const int64_t ksub = (int64_t)1 << a->nbits;
  return fkm_pq_nearest(&a->rule, r, a->pq + m * ksub * dsub, dsub, ksub);
}

#ifdef FKM_HAVE_AVX2_KERNEL
/* Whether the AVX2 rows apply: the CPU has AVX2+FMA, the codebook is whole
 * groups of the rule's lanes (no leftovers), and the reference's loop is a
 * float one (width >= 1). */
static int avx2_applies(const fkm_pq_args *a) {
  const int dsub = (int)(a->d / a->M);
  const int64_t ksub = (int64_t)1 << a->nbits;
  const int lanes = fkm_pq_lanes(&a->rule, dsub);
  if (!fkm_cpu_has_avx2_fma() || ksub % 8 != 0 || ksub % (lanes ? lanes : 8) != 0) return 0;
  return lanes > 0 || (dsub == 12 && a->rule.d12) || a->rule.l2.width >= 1;
}
#endif

fkm_status fkm_pq_encode_host(fkm_errbuf *err, const fkm_pq_args *a, int64_t i0, int64_t i1) {
#ifdef FKM_HAVE_AVX2_KERNEL
  if (avx2_applies(a)) {
    FKM_RETURN_IF(fkm_pq_encode_rows_avx2(a, i0, i1) != 0, err, FKM_ERR_OUT_OF_MEMORY,
                  "cpu engine: cannot allocate the PQ codebooks' transposed copy");
    return FKM_OK;
  }
#endif
  (void)err;
  fkm_pq_rows(a, i0, i1, nearest_scalar, a);
  return FKM_OK;
}

void fkm_pq_slice_rows(const float *x, int64_t n, int64_t d, int64_t M, float *out) {
  const int64_t ds = d / M, block = 256; /* rows whose slices stay in cache together */
#pragma omp parallel for schedule(static)
  for (int64_t i0 = 0; i0 < n; i0 += block) {
    const int64_t i1 = n - i0 < block ? n : i0 + block;
    for (int64_t m = 0; m < M; m++)
      for (int64_t i = i0; i < i1; i++)
        memcpy(out + (m * n + i) * ds, x + i * d + m * ds, sizeof(float) * (size_t)ds);
  }
}
