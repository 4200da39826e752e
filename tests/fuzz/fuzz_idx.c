/* libFuzzer target: the idx3 image reader (flashkm demo's Fashion-MNIST
 * files), gzip'd or not, on arbitrary bytes.
 *
 * Properties: a failure leaves the matrix empty with a one-line message
 * naming the file; a success is (n, d) float32 pixels, n, d > 0, each an
 * integer in [0, 255], owned by the matrix, no more bytes than the input can
 * hold (deflate expands at most 1032-fold). An input that is not gzip data
 * is also gzip'd here, as two members split in the middle, and must read
 * the same: the gzip path and the raw path agree. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fuzz.h"
#include "matrix_io.h"

static uint64_t g_sum;

static int is_empty(const fkm_cli_matrix *m) {
  static const fkm_cli_matrix zero;
  return memcmp(m, &zero, sizeof zero) == 0;
}

static int parse(const uint8_t *in, size_t size, fkm_cli_matrix *m) {
  char msg[FKM_CLI_MSG_LEN];
  memset(msg, 0x5a, sizeof msg);
  int rc = fkm_cli_parse_idx_images("fuzz.idx3", in, size, m, msg);
  if (rc != 0) {
    FUZZ_CHECK(rc == -1 && is_empty(m));
    FUZZ_CHECK(memchr(msg, '\0', sizeof msg) != NULL && strchr(msg, '\n') == NULL);
    FUZZ_CHECK(strncmp(msg, "fuzz.idx3: ", 11) == 0);
    return rc;
  }
  FUZZ_CHECK(m->n > 0 && m->d > 0 && m->owned != NULL && m->data == m->owned);
  FUZZ_CHECK(m->dtype == FKM_DTYPE_F32 && m->map == NULL);
  FUZZ_CHECK((uint64_t)m->n * (uint64_t)m->d <= 1032 * (uint64_t)size);
  const float *x = m->data;
  for (int64_t i = 0; i < m->n * m->d; i++)
    FUZZ_CHECK(x[i] >= 0.0f && x[i] <= 255.0f && x[i] == (float)(int)x[i]);
  g_sum += fuzz_touch(x, (size_t)(m->n * m->d) * sizeof *x);
  return 0;
}

/* Appends one gzip member of in[0..len) to out (room bytes); its size, or 0. */
static size_t gzip_member(const uint8_t *in, size_t len, uint8_t *out, size_t room) {
  z_stream z;
  memset(&z, 0, sizeof z);
  if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) return 0;
  z.next_in = (Bytef *)in;
  z.avail_in = (uInt)len;
  z.next_out = out;
  z.avail_out = (uInt)room;
  int rc = deflate(&z, Z_FINISH);
  size_t used = room - z.avail_out;
  deflateEnd(&z);
  return rc == Z_STREAM_END ? used : 0;
}

static void check_gzip_agrees(const uint8_t *data, size_t size, int rc,
                              const fkm_cli_matrix *raw) {
  size_t half = size / 2, room = 2 * (size + 64) + 1024;
  uint8_t *gz = malloc(room);
  if (!gz) return;
  size_t a = gzip_member(data, half, gz, room);
  size_t b = a ? gzip_member(data + half, size - half, gz + a, room - a) : 0;
  if (b) {
    fkm_cli_matrix m;
    int rc_gz = parse(gz, a + b, &m);
    FUZZ_CHECK(rc_gz == rc);
    if (rc == 0)
      FUZZ_CHECK(m.n == raw->n && m.d == raw->d &&
                 memcmp(m.data, raw->data, (size_t)(m.n * m.d) * sizeof(float)) == 0);
    fkm_cli_matrix_free(&m);
  }
  free(gz);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fkm_cli_matrix m;
  int rc = parse(data, size, &m);
  if (!(size >= 2 && data[0] == 0x1f && data[1] == 0x8b)) check_gzip_agrees(data, size, rc, &m);
  fkm_cli_matrix_free(&m);
  FUZZ_CHECK(is_empty(&m));
  return 0;
}
