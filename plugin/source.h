/* Data sources (include/flashkm.h, docs/data-path.md): how engines read the
 * rows of a training set that is not one matrix they hold. A source is
 * rows of host memory at a stride, or a callback; every read names its rows
 * (or a contiguous range) and lands packed in a buffer the engine owns. */
#ifndef FKM_SOURCE_H
#define FKM_SOURCE_H

#include "flashkm.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/** Checks a caller's source (sizes, dtype, stride, a base or a callback). */
fkm_status fkm_source_validate(const fkm_source *src, fkm_errbuf *err);

/** A host source over the (n, d) matrix x (row stride d * element size). */
fkm_source fkm_source_of_matrix(const void *x, int64_t n, int64_t d, fkm_dtype dtype);

/** Rows rows[i] (rows NULL: first + i) for i < count, packed in the source's
 *  dtype into dst (count * d elements). Host rows are copied on OpenMP's
 *  threads when there are many. */
fkm_status fkm_source_read(const fkm_source *src, const int64_t *rows, int64_t first,
                           int64_t count, void *dst, fkm_errbuf *err);

/** fkm_source_read, and the first non-finite element of the rows read in
 *  the source's order: *bad = its index r * d + j (r the source's row), or
 *  -1. Host rows are checked as they are copied (one pass over each row). */
fkm_status fkm_source_read_checked(const fkm_source *src, const int64_t *rows, int64_t first,
                                   int64_t count, void *dst, int64_t *bad, fkm_errbuf *err);

/** The first non-finite of count elements of dtype at x (16-bit dtypes by
 *  their encoding: an all-ones exponent), or -1. */
int64_t fkm_first_nonfinite(fkm_dtype dtype, const void *x, int64_t count);

/** fkm_first_nonfinite over a whole matrix: float32 on OpenMP's threads
 *  (fkm_cpu_first_nonfinite), 16-bit elements by their encoding. */
int64_t fkm_first_nonfinite_all(fkm_dtype dtype, const void *x, int64_t count);

/** The same rows as floats into dst (count * d). 16-bit rows go through
 *  raw, scratch of raw_rows rows of the source's dtype, a block at a time
 *  (raw NULL: allocated here). bad non-NULL: the rows are checked and *bad
 *  is the least source element index (row * d + column) of a NaN or Inf
 *  among them, or -1: the same element whatever order the rows are read
 *  in (docs/data-path.md). */
fkm_status fkm_source_read_float(const fkm_source *src, const int64_t *rows, int64_t first,
                                 int64_t count, float *dst, void *raw, int64_t raw_rows,
                                 int64_t *bad, fkm_errbuf *err);

#ifdef __cplusplus
}
#endif

#endif
