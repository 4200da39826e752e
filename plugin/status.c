#include "status.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>

fkm_status fkm_fail(fkm_errbuf *err, fkm_status s, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return s;
}

fkm_status fkm_fail_not_finite(fkm_errbuf *err, const char *what, int64_t bad, int64_t batch,
                               int64_t n, int64_t d) {
  const int64_t row = bad / d, col = bad % d;
  if (batch > 1)
    return fkm_fail(err, FKM_ERR_NOT_FINITE,
                    "%s contains NaN or Inf in problem %lld at row %lld, column %lld", what,
                    (long long)(row / n), (long long)(row % n), (long long)col);
  return fkm_fail(err, FKM_ERR_NOT_FINITE, "%s contains NaN or Inf at row %lld, column %lld",
                  what, (long long)row, (long long)col);
}

fkm_status fkm_fail_no_finite(fkm_errbuf *err, const char *what, int64_t problem, int64_t row) {
  static const char cause[] = "has no finite distance to any centroid: a NaN or Inf in it "
                              "(params->check_finite = 0 lets them through) or a float "
                              "overflow in |x|^2 or <x, c>";
  if (problem >= 0)
    return fkm_fail(err, FKM_ERR_NUMERIC, "%s of problem %lld, row %lld %s", what,
                    (long long)problem, (long long)row, cause);
  return fkm_fail(err, FKM_ERR_NUMERIC, "%s row %lld %s", what, (long long)row, cause);
}

fkm_status fkm_check_weights(fkm_errbuf *err, const float *w, int64_t n, int64_t first) {
  for (int64_t i = 0; i < n; i++) {
    FKM_RETURN_IF(!isfinite(w[i]), err, FKM_ERR_NOT_FINITE, "weights[%lld] is not finite",
                  (long long)(first + i));
    FKM_RETURN_IF(w[i] < 0, err, FKM_ERR_INVALID_ARG, "weights[%lld] = %g is negative",
                  (long long)(first + i), (double)w[i]);
  }
  return FKM_OK;
}

const char *fkm_status_string(fkm_status status) {
  switch (status) {
    case FKM_OK: return "success";
    case FKM_ERR_INVALID_ARG: return "invalid argument";
    case FKM_ERR_NOT_FINITE: return "input contains NaN or Inf";
    case FKM_ERR_OUT_OF_MEMORY: return "out of memory";
    case FKM_ERR_UNSUPPORTED: return "unsupported by this build or backend";
    case FKM_ERR_NO_DEVICE: return "no usable CUDA device";
    case FKM_ERR_CUDA: return "CUDA error";
    case FKM_ERR_INTERRUPTED: return "interrupted by the progress callback";
    case FKM_ERR_NUMERIC: return "arithmetic overflow made the result undefined";
    case FKM_ERR_FAISS: return "FAISS error";
    case FKM_ERR_INTERNAL: return "internal error";
    case FKM_ERR_SOURCE: return "the data source failed to read";
  }
  return "unknown status";
}
