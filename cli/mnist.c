/* Fashion-MNIST's gzip'd idx3 image files (big-endian header: magic 0x803,
 * count, rows, cols; then one byte per pixel), read with zlib into float32
 * rows of rows*cols pixels valued 0..255. */
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "cli.h"

static uint32_t be32(const unsigned char *b) {
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

int fkm_cli_read_idx_images(const char *path, fkm_cli_matrix *m, char *msg) {
  memset(m, 0, sizeof *m);
  gzFile f = gzopen(path, "rb");
  if (!f) {
    snprintf(msg, FKM_CLI_MSG_LEN, "%s: cannot open (is Debian's dataset-fashion-mnist installed?)",
             path);
    return -1;
  }
  unsigned char h[16];
  int rc = -1;
  if (gzread(f, h, 16) != 16) {
    snprintf(msg, FKM_CLI_MSG_LEN, "%s: truncated file: no idx header", path);
    goto out;
  }
  if (be32(h) != 0x803) {
    snprintf(msg, FKM_CLI_MSG_LEN, "%s: wrong magic 0x%x: not an idx3 image file", path, be32(h));
    goto out;
  }
  int64_t n = be32(h + 4), d = (int64_t)be32(h + 8) * be32(h + 12);
  if (n <= 0 || d <= 0 || n > (1 << 24) || d > (1 << 20)) {
    snprintf(msg, FKM_CLI_MSG_LEN, "%s: implausible idx header: %lld images of %lld pixels",
             path, (long long)n, (long long)d);
    goto out;
  }
  size_t count = (size_t)(n * d);
  unsigned char *bytes = malloc(count);
  float *x = malloc(count * sizeof *x);
  if (!bytes || !x) {
    free(bytes);
    free(x);
    snprintf(msg, FKM_CLI_MSG_LEN, "%s: out of memory", path);
    goto out;
  }
  if ((size_t)gzread(f, bytes, (unsigned)count) != count) {
    free(bytes);
    free(x);
    snprintf(msg, FKM_CLI_MSG_LEN, "%s: truncated file: fewer than %lld images", path,
             (long long)n);
    goto out;
  }
  for (size_t i = 0; i < count; i++) x[i] = (float)bytes[i];
  free(bytes);
  m->n = n;
  m->d = d;
  m->dtype = FKM_DTYPE_F32;
  m->file_elem = FKM_CLI_U8;
  m->owned = x;
  m->data = x;
  rc = 0;
out:
  gzclose(f);
  return rc;
}
