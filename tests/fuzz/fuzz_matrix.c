/* libFuzzer target: one matrix reader of the CLI (FKM_FUZZ_EXT: "fvecs",
 * "bvecs", "fbin", "u8bin", "i8bin" or "npy") on arbitrary bytes.
 *
 * Properties:
 *  - a failure leaves the matrix empty and a one-line message naming the
 *    file;
 *  - a success is an (n, d) matrix, n, d > 0, of float32 or float16 at an
 *    address aligned for its type, every element readable (ASan checks
 *    each byte), no more elements than the input has bytes, pointing into
 *    the input or into memory the matrix owns;
 *  - the input parsed again from an odd address gives the same matrix (the
 *    reader copies what it cannot use in place);
 *  - the CLI's follow-ups work on it (first non-finite value, float16 to
 *    float32), and fkm_cli_matrix_free releases everything (LeakSanitizer). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "matrix_io.h"

#ifndef FKM_FUZZ_EXT
#error "compile with -DFKM_FUZZ_EXT=\"npy\" (the format this target reads)"
#endif

static uint64_t g_sum; /* keeps fuzz_touch's loads */

static int is_empty(const fkm_cli_matrix *m) {
  static const fkm_cli_matrix zero;
  return memcmp(m, &zero, sizeof zero) == 0;
}

static size_t elem_bytes(const fkm_cli_matrix *m) { return m->dtype == FKM_DTYPE_F16 ? 2 : 4; }

static void check_failure(const fkm_cli_matrix *m, const char *msg) {
  FUZZ_CHECK(is_empty(m));
  FUZZ_CHECK(memchr(msg, '\0', FKM_CLI_MSG_LEN) != NULL);
  FUZZ_CHECK(strncmp(msg, "fuzz." FKM_FUZZ_EXT ": ", strlen("fuzz." FKM_FUZZ_EXT ": ")) == 0);
  FUZZ_CHECK(strchr(msg, '\n') == NULL);
}

static void check_success(const fkm_cli_matrix *m, const uint8_t *in, size_t size) {
  FUZZ_CHECK(m->n > 0 && m->d > 0 && m->data != NULL && m->map == NULL);
  FUZZ_CHECK(m->dtype == FKM_DTYPE_F32 || m->dtype == FKM_DTYPE_F16);
  FUZZ_CHECK((uint64_t)m->n <= size && (uint64_t)m->d <= size &&
             (uint64_t)m->n * (uint64_t)m->d <= size);
  size_t bytes = (size_t)m->n * (size_t)m->d * elem_bytes(m);
  FUZZ_CHECK((uintptr_t)m->data % elem_bytes(m) == 0);
  const uint8_t *data = m->data;
  if (m->owned) FUZZ_CHECK(m->data == m->owned);
  else FUZZ_CHECK(data >= in && bytes <= size && (size_t)(data - in) <= size - bytes);
  g_sum += fuzz_touch(m->data, bytes);
}

/* The CLI's next steps: the NaN check, then float32 for FAISS. */
static void follow_up(fkm_cli_matrix *m) {
  char msg[FKM_CLI_MSG_LEN];
  int64_t col = -1, row = fkm_cli_matrix_first_nonfinite(m, &col);
  FUZZ_CHECK(row >= -1 && row < m->n);
  if (row >= 0) FUZZ_CHECK(col >= 0 && col < m->d);
  if (fkm_cli_matrix_to_f32(m, msg) != 0) return; /* out of memory only */
  FUZZ_CHECK(m->dtype == FKM_DTYPE_F32 && (uintptr_t)m->data % 4 == 0);
  g_sum += fuzz_touch(m->data, (size_t)m->n * (size_t)m->d * 4);
}

static int parse(const uint8_t *in, size_t size, fkm_cli_matrix *m) {
  char msg[FKM_CLI_MSG_LEN];
  memset(msg, 0x5a, sizeof msg);
  int rc = fkm_cli_matrix_parse("fuzz." FKM_FUZZ_EXT, FKM_FUZZ_EXT, in, size, m, msg);
  FUZZ_CHECK(rc == 0 || rc == -1);
  if (rc != 0) check_failure(m, msg);
  else check_success(m, in, size);
  return rc;
}

static int same_matrix(const fkm_cli_matrix *a, const fkm_cli_matrix *b) {
  return a->n == b->n && a->d == b->d && a->dtype == b->dtype &&
         a->file_elem == b->file_elem &&
         memcmp(a->data, b->data, (size_t)a->n * (size_t)a->d * elem_bytes(a)) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fkm_cli_matrix m, odd;
  int rc = parse(data, size, &m);
  /* The same bytes one past an aligned address. */
  uint8_t *shifted = malloc(size + 1);
  if (!shifted) return 0;
  if (size > 0) memcpy(shifted + 1, data, size);
  int rc_odd = parse(shifted + 1, size, &odd);
  FUZZ_CHECK(rc == rc_odd);
  if (rc == 0) {
    FUZZ_CHECK(same_matrix(&m, &odd));
    follow_up(&m);
  }
  fkm_cli_matrix_free(&m);
  fkm_cli_matrix_free(&odd);
  FUZZ_CHECK(is_empty(&m) && is_empty(&odd));
  free(shifted);
  return 0;
}
