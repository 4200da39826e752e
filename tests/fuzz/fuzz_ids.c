/* libFuzzer target: the CLI's id reader (FKM_FUZZ_EXT: "ivecs" or "ibin",
 * ground-truth neighbours) on arbitrary bytes.
 *
 * Properties: a failure leaves *ids NULL with a one-line message naming
 * the file; a success is (n, k), n, k > 0, with n * k int32 values in the
 * input widened to int64 in an array the caller frees, every one readable
 * and equal to the bytes it came from (for .ibin, in place after the
 * 8-byte header). */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "matrix_io.h"

#ifndef FKM_FUZZ_EXT
#error "compile with -DFKM_FUZZ_EXT=\"ivecs\" or \"ibin\""
#endif

static uint64_t g_sum;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char msg[FKM_CLI_MSG_LEN];
  memset(msg, 0x5a, sizeof msg);
  int64_t n = -7, k = -7, not_set, *ids = &not_set; /* must be overwritten */
  int rc = fkm_cli_parse_ids("fuzz." FKM_FUZZ_EXT, FKM_FUZZ_EXT, data, size, &n, &k, &ids, msg);
  if (rc != 0) {
    FUZZ_CHECK(rc == -1 && ids == NULL);
    FUZZ_CHECK(memchr(msg, '\0', sizeof msg) != NULL && strchr(msg, '\n') == NULL);
    FUZZ_CHECK(strncmp(msg, "fuzz." FKM_FUZZ_EXT ": ", strlen("fuzz." FKM_FUZZ_EXT ": ")) == 0);
    return 0;
  }
  FUZZ_CHECK(ids != NULL && n > 0 && k > 0);
  FUZZ_CHECK((uint64_t)n <= size && (uint64_t)k <= size && (uint64_t)n * (uint64_t)k * 4 <= size);
  g_sum += fuzz_touch(ids, (size_t)n * (size_t)k * sizeof *ids);
  int is_vecs = !strcmp(FKM_FUZZ_EXT, "ivecs");
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < k; j++) {
      size_t at = is_vecs ? (size_t)(i * (k + 1) + 1 + j) * 4 : 8 + (size_t)(i * k + j) * 4;
      int32_t v;
      memcpy(&v, data + at, 4);
      FUZZ_CHECK(ids[i * k + j] == v);
    }
  free(ids);
  return 0;
}
