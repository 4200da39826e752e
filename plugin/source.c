/* Data sources: validation and reads (source.h). */
#include "source.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "engine.h"

/* Rows copied one by one below this many bytes in a read; above, the rows
 * are spread over OpenMP's threads (a gather from a large host matrix is
 * bound by memory latency per row, not by one core's copy rate), and a
 * contiguous block is copied in pieces of this size on those threads (one
 * core copies pageable memory at a fraction of the bus's rate). */
#define PARALLEL_READ_BYTES ((size_t)1 << 20)
/* 16-bit rows converted per block when the caller gives no scratch. */
#define READ_FLOAT_BLOCK ((int64_t)1 << 16)
/* Indices handed to a callback per call when the caller reads a range. */
#define RANGE_BLOCK 1024

fkm_source fkm_source_of_matrix(const void *x, int64_t n, int64_t d, fkm_dtype dtype) {
  fkm_source s;
  memset(&s, 0, sizeof s);
  s.n = n;
  s.d = d;
  s.dtype = dtype;
  s.base = x;
  s.row_stride = d * (int64_t)fkm_dtype_size(dtype);
  return s;
}

fkm_status fkm_source_validate(const fkm_source *src, fkm_errbuf *err) {
  FKM_RETURN_IF(!src, err, FKM_ERR_INVALID_ARG, "src is NULL");
  FKM_RETURN_IF(src->n < 0 || src->d < 1, err, FKM_ERR_INVALID_ARG,
                "src: n = %lld must be >= 0 and d = %lld >= 1", (long long)src->n,
                (long long)src->d);
  FKM_RETURN_IF(src->dtype != FKM_DTYPE_F32 && src->dtype != FKM_DTYPE_F16 &&
                    src->dtype != FKM_DTYPE_BF16,
                err, FKM_ERR_INVALID_ARG, "src->dtype = %d is not a fkm_dtype",
                (int)src->dtype);
  FKM_RETURN_IF(src->d > INT64_MAX / 8 || src->n > INT64_MAX / 8 / src->d, err,
                FKM_ERR_INVALID_ARG, "src: n * d overflows 64-bit byte offsets");
  FKM_RETURN_IF(!src->read && !src->base && src->n > 0, err, FKM_ERR_INVALID_ARG,
                "src has neither rows (base) nor a read callback (use fkm_source_host or "
                "fkm_source_callback)");
  const int64_t row = src->d * (int64_t)fkm_dtype_size(src->dtype);
  FKM_RETURN_IF(!src->read && src->row_stride < row, err, FKM_ERR_INVALID_ARG,
                "src->row_stride = %lld bytes is less than a row (%lld bytes)",
                (long long)src->row_stride, (long long)row);
  FKM_RETURN_IF(!src->read && src->n > 0 && src->row_stride > INT64_MAX / src->n, err,
                FKM_ERR_INVALID_ARG, "src: n * row_stride overflows 64-bit byte offsets");
  return FKM_OK;
}

static fkm_status read_callback(const fkm_source *src, const int64_t *rows, int64_t first,
                                int64_t count, void *dst, fkm_errbuf *err) {
  const size_t row = (size_t)src->d * fkm_dtype_size(src->dtype);
  int64_t idx[RANGE_BLOCK];
  for (int64_t i0 = 0; i0 < count;) {
    const int64_t m = rows ? count : (count - i0 < RANGE_BLOCK ? count - i0 : RANGE_BLOCK);
    if (!rows)
      for (int64_t i = 0; i < m; i++) idx[i] = first + i0 + i;
    const int rc = src->read(src->user, rows ? rows : idx, m, (char *)dst + row * (size_t)i0);
    FKM_RETURN_IF(rc != 0, err, FKM_ERR_SOURCE,
                  "the source's read callback returned %d (reading %lld rows from row "
                  "%lld)",
                  rc, (long long)m, (long long)(rows ? rows[0] : first + i0));
    i0 += m;
  }
  return FKM_OK;
}

fkm_status fkm_source_read(const fkm_source *src, const int64_t *rows, int64_t first,
                           int64_t count, void *dst, fkm_errbuf *err) {
  if (count <= 0) return FKM_OK;
  if (src->read) return read_callback(src, rows, first, count, dst, err);
  const size_t row = (size_t)src->d * fkm_dtype_size(src->dtype);
  const char *base = src->base;
  char *out = dst;
  if (!rows && (size_t)src->row_stride == row) { /* one block, in pieces on OpenMP's threads */
    const char *in = base + (size_t)first * row;
    const size_t bytes = row * (size_t)count;
    const int64_t pieces = (int64_t)((bytes + PARALLEL_READ_BYTES - 1) / PARALLEL_READ_BYTES);
#pragma omp parallel for schedule(static) if (pieces > 1)
    for (int64_t p = 0; p < pieces; p++) {
      const size_t at = (size_t)p * PARALLEL_READ_BYTES;
      memcpy(out + at, in + at, bytes - at < PARALLEL_READ_BYTES ? bytes - at : PARALLEL_READ_BYTES);
    }
    return FKM_OK;
  }
  const size_t stride = (size_t)src->row_stride;
#pragma omp parallel for schedule(static) if (row * (size_t)count >= PARALLEL_READ_BYTES)
  for (int64_t i = 0; i < count; i++)
    memcpy(out + row * (size_t)i, base + stride * (size_t)(rows ? rows[i] : first + i), row);
  return FKM_OK;
}

int64_t fkm_first_nonfinite(fkm_dtype dtype, const void *x, int64_t count) {
  if (dtype == FKM_DTYPE_F32) {
    const float *f = x;
    for (int64_t i = 0; i < count; i++)
      if (!isfinite(f[i])) return i;
    return -1;
  }
  const uint16_t *h = x, mask = dtype == FKM_DTYPE_F16 ? 0x7c00u : 0x7f80u;
  for (int64_t i = 0; i < count; i++)
    if ((h[i] & mask) == mask) return i;
  return -1;
}

int64_t fkm_first_nonfinite_all(fkm_dtype dtype, const void *x, int64_t count) {
  return dtype == FKM_DTYPE_F32 ? fkm_cpu_first_nonfinite(x, count)
                                : fkm_first_nonfinite(dtype, x, count);
}

fkm_status fkm_source_read_checked(const fkm_source *src, const int64_t *rows, int64_t first,
                                   int64_t count, void *dst, int64_t *bad, fkm_errbuf *err) {
  const int64_t d = src->d;
  const size_t row = (size_t)d * fkm_dtype_size(src->dtype);
  int64_t least = INT64_MAX;
  *bad = -1;
  if (count <= 0) return FKM_OK;
  if (src->read) FKM_FORWARD(read_callback(src, rows, first, count, dst, err));
  const char *base = src->base;
  const size_t stride = (size_t)src->row_stride;
  char *out = dst;
  /* each row copied (host rows) and checked while it is in cache; the least
   * bad element in the source's order, whatever the threads' order */
#pragma omp parallel for schedule(static) reduction(min : least) \
    if (row * (size_t)count >= PARALLEL_READ_BYTES)
  for (int64_t i = 0; i < count; i++) {
    const int64_t r = rows ? rows[i] : first + i;
    char *o = out + row * (size_t)i;
    if (!src->read) memcpy(o, base + stride * (size_t)r, row);
    const int64_t j = fkm_first_nonfinite(src->dtype, o, d);
    if (j >= 0 && r * d + j < least) least = r * d + j;
  }
  if (least != INT64_MAX) *bad = least;
  return FKM_OK;
}

fkm_status fkm_source_read_float(const fkm_source *src, const int64_t *rows, int64_t first,
                                 int64_t count, float *dst, void *raw, int64_t raw_rows,
                                 int64_t *bad, fkm_errbuf *err) {
  const int64_t d = src->d;
  if (bad) *bad = -1;
  if (count <= 0) return FKM_OK;
  if (src->dtype == FKM_DTYPE_F32)
    return bad ? fkm_source_read_checked(src, rows, first, count, dst, bad, err)
               : fkm_source_read(src, rows, first, count, dst, err);
  /* 16-bit rows through the scratch, a block at a time; converted values are
   * finite exactly when their encoding is, so the raw rows are checked */
  void *own = NULL;
  if (!raw || raw_rows < 1) {
    raw_rows = count < READ_FLOAT_BLOCK ? count : READ_FLOAT_BLOCK;
    raw = own = malloc(fkm_dtype_size(src->dtype) * (size_t)(raw_rows * d));
    FKM_RETURN_IF(!raw, err, FKM_ERR_OUT_OF_MEMORY,
                  "cannot allocate the staging of %lld rows of %lld values", (long long)raw_rows,
                  (long long)d);
  }
  fkm_status s = FKM_OK;
  int64_t least = INT64_MAX;
  for (int64_t i0 = 0; i0 < count && s == FKM_OK; i0 += raw_rows) {
    const int64_t m = count - i0 < raw_rows ? count - i0 : raw_rows, *r = rows ? rows + i0 : NULL;
    int64_t e = -1;
    s = bad ? fkm_source_read_checked(src, r, first + i0, m, raw, &e, err)
            : fkm_source_read(src, r, first + i0, m, raw, err);
    if (s != FKM_OK) break;
    fkm_cpu_to_float(src->dtype, raw, m, d, dst + i0 * d);
    if (e >= 0 && e < least) least = e;
  }
  free(own);
  if (bad && least != INT64_MAX) *bad = least;
  return s;
}
