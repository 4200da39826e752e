/* Internal status plumbing: every internal function returns fkm_status and
 * records a message on the context; these macros propagate it. Nothing here
 * aborts or prints. */
#ifndef FKM_STATUS_H
#define FKM_STATUS_H

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define FKM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define FKM_PRINTF(a, b)
#endif

/** Where messages go: a fixed buffer owned by the context. */
typedef struct fkm_errbuf {
  char msg[512];
} fkm_errbuf;

/** Record "message" for status s in err (may be NULL); returns s. */
fkm_status fkm_fail(fkm_errbuf *err, fkm_status s, const char *fmt, ...)
    FKM_PRINTF(3, 4);

/** FKM_ERR_NOT_FINITE for element bad (row-major) of `what`, batch problems
 *  of n rows of d values back to back: "what contains NaN or Inf at row r,
 *  column j" (batch > 1: "in problem b at row r, column j"). */
fkm_status fkm_fail_not_finite(fkm_errbuf *err, const char *what, int64_t bad, int64_t batch,
                               int64_t n, int64_t d);

/** FKM_ERR_NUMERIC for a row of `what` ("x", "training set") with no
 *  finite distance to any centroid; problem >= 0 names the batched problem. */
fkm_status fkm_fail_no_finite(fkm_errbuf *err, const char *what, int64_t problem, int64_t row);

/** Weights w[0 .. n) finite and >= 0; messages name w[i] as
 *  weights[first + i]. */
fkm_status fkm_check_weights(fkm_errbuf *err, const float *w, int64_t n, int64_t first);

#define FKM_FORWARD(expr)                     \
  do {                                        \
    fkm_status fkm_fwd_s_ = (expr);           \
    if (fkm_fwd_s_ != FKM_OK) return fkm_fwd_s_; \
  } while (0)

#define FKM_RETURN_IF(cond, err, status, ...)              \
  do {                                                     \
    if (cond) return fkm_fail((err), (status), __VA_ARGS__); \
  } while (0)

#ifdef __cplusplus
}
#endif

#endif
