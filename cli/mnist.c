/* idx3 image files, Fashion-MNIST's format (big-endian header: magic 0x803,
 * count, rows, cols; then one byte per pixel), gzip'd or not, read into
 * float32 rows of rows*cols pixels valued 0..255. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#define ZLIB_CONST
#include <zlib.h>

#include "matrix_io.h"

enum { IDX_HEADER = 16, IDX_MAX_IMAGES = 1 << 24, IDX_MAX_PIXELS = 1 << 20 };

/* deflate expands at most 1032-fold (a 258-byte match in two bits): a
 * header asking for more than that of its data lies, and nothing is
 * allocated for it. */
#define DEFLATE_MAX_RATIO 1032

static uint32_t be32(const unsigned char *b) {
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

/* The image count and the pixels per image of a 16-byte header. */
static int idx_header(const char *name, const unsigned char *h, int64_t *n, int64_t *d,
                      char *msg) {
  if (be32(h) != 0x803)
    return fkm_cli_fail(msg, "%s: wrong magic 0x%x: not an idx3 image file", name, be32(h));
  uint32_t count = be32(h + 4), rows = be32(h + 8), cols = be32(h + 12);
  if (count == 0 || count > IDX_MAX_IMAGES || rows == 0 || cols == 0 ||
      (uint64_t)rows * cols > IDX_MAX_PIXELS) /* in 64 bits: no overflow */
    return fkm_cli_fail(msg, "%s: implausible idx header: %u images of %u x %u pixels", name,
                        count, rows, cols);
  *n = count;
  *d = (int64_t)rows * cols;
  return 0;
}

/* gzip data being inflated: the input not yet handed to zlib, in pieces of
 * at most UINT_MAX bytes (zlib counts in unsigned int). */
typedef struct gzip_data {
  z_stream z;
  const unsigned char *in;
  size_t left;
} gzip_data;

static void gzip_feed(gzip_data *g) {
  uInt take = g->left > UINT_MAX ? UINT_MAX : (uInt)g->left;
  g->z.next_in = g->in;
  g->z.avail_in = take;
  g->in += take;
  g->left -= take;
}

/* Inflates the next `want` bytes into out, across gzip members as gzip
 * concatenates them. 0 when they came, 1 when the data ends first, -1 when
 * it is corrupt. */
static int gzip_read(gzip_data *g, unsigned char *out, size_t want) {
  size_t done = 0;
  while (done < want) {
    if (g->z.avail_in == 0) {
      if (g->left == 0) return 1;
      gzip_feed(g);
    }
    size_t room = want - done;
    uInt chunk = room > UINT_MAX ? UINT_MAX : (uInt)room;
    g->z.next_out = out + done;
    g->z.avail_out = chunk;
    int rc = inflate(&g->z, Z_NO_FLUSH);
    done += chunk - g->z.avail_out;
    if (rc == Z_STREAM_END) {
      if (done < want && g->z.avail_in == 0 && g->left == 0) return 1;
      if (done < want && inflateReset(&g->z) != Z_OK) return -1;
    } else if (rc != Z_OK) {
      return -1;
    }
  }
  return 0;
}

/* Pixels as floats, owned by *m. */
static int idx_matrix(const char *name, const unsigned char *px, int64_t n, int64_t d,
                      fkm_cli_matrix *m, char *msg) {
  m->n = n;
  m->d = d;
  m->file_elem = FKM_CLI_U8;
  m->data = px;
  return fkm_cli_matrix_widen(name, m, msg);
}

static int parse_raw(const char *name, const unsigned char *b, size_t len, fkm_cli_matrix *m,
                     char *msg) {
  int64_t n = 0, d = 0;
  if (len < IDX_HEADER) return fkm_cli_fail(msg, "%s: truncated file: no idx header", name);
  if (idx_header(name, b, &n, &d, msg) != 0) return -1;
  if ((uint64_t)(len - IDX_HEADER) < (uint64_t)n * (uint64_t)d)
    return fkm_cli_fail(msg, "%s: truncated file: fewer than %lld images", name, (long long)n);
  return idx_matrix(name, b + IDX_HEADER, n, d, m, msg);
}

/* The header first; nothing is allocated before it is checked. */
static int gzip_header(const char *name, gzip_data *g, size_t len, int64_t *n, int64_t *d,
                     char *msg) {
  unsigned char h[IDX_HEADER];
  int rc = gzip_read(g, h, sizeof h);
  if (rc > 0) return fkm_cli_fail(msg, "%s: truncated file: no idx header", name);
  if (rc < 0)
    return fkm_cli_fail(msg, "%s: corrupt gzip data: %s", name, g->z.msg ? g->z.msg : "?");
  if (idx_header(name, h, n, d, msg) != 0) return -1;
  if ((uint64_t)*n * (uint64_t)*d / DEFLATE_MAX_RATIO > len)
    return fkm_cli_fail(msg, "%s: truncated file: %zu bytes of gzip data cannot hold %lld images",
                        name, len, (long long)*n);
  return 0;
}

static int gzip_pixels(const char *name, gzip_data *g, int64_t n, int64_t d, fkm_cli_matrix *m,
                     char *msg) {
  unsigned char *px = malloc((size_t)n * (size_t)d);
  if (!px) return fkm_cli_fail(msg, "%s: out of memory for %lld images", name, (long long)n);
  int rc = gzip_read(g, px, (size_t)n * (size_t)d);
  if (rc > 0)
    fkm_cli_fail(msg, "%s: truncated file: fewer than %lld images", name, (long long)n);
  else if (rc < 0)
    fkm_cli_fail(msg, "%s: corrupt gzip data: %s", name, g->z.msg ? g->z.msg : "?");
  else
    rc = idx_matrix(name, px, n, d, m, msg);
  free(px);
  return rc == 0 ? 0 : -1;
}

static int parse_gzip(const char *name, const unsigned char *b, size_t len, fkm_cli_matrix *m,
                    char *msg) {
  gzip_data g;
  memset(&g, 0, sizeof g);
  g.in = b;
  g.left = len;
  if (inflateInit2(&g.z, 16 + MAX_WBITS) != Z_OK)
    return fkm_cli_fail(msg, "%s: out of memory starting zlib", name);
  int64_t n = 0, d = 0;
  int rc = gzip_header(name, &g, len, &n, &d, msg);
  if (rc == 0) rc = gzip_pixels(name, &g, n, d, m, msg);
  inflateEnd(&g.z);
  return rc;
}

int fkm_cli_parse_idx_images(const char *name, const void *bytes, size_t len,
                             fkm_cli_matrix *m, char *msg) {
  memset(m, 0, sizeof *m);
  const unsigned char *b = bytes;
  if (len >= 2 && b[0] == 0x1f && b[1] == 0x8b) return parse_gzip(name, b, len, m, msg);
  return parse_raw(name, b, len, m, msg);
}

/* "NAME.gz", or when it is missing its uncompressed "NAME"; the file used
 * goes to used. */
static int map_idx(const char *path, char *used, size_t size, void **map, size_t *len,
                   char *msg) {
  snprintf(used, size, "%s", path);
  if (fkm_cli_map(path, map, len, msg) == 0) return 0;
  size_t plen = strlen(path);
  char ignored[FKM_CLI_MSG_LEN];
  if (plen > 3 && plen - 3 < size && strcmp(path + plen - 3, ".gz") == 0) {
    snprintf(used, size, "%.*s", (int)(plen - 3), path);
    if (fkm_cli_map(used, map, len, ignored) == 0) return 0;
  }
  size_t n = strlen(msg);
  snprintf(msg + n, FKM_CLI_MSG_LEN - n, " (is Debian's dataset-fashion-mnist installed?)");
  return -1;
}

int fkm_cli_read_idx_images(const char *path, fkm_cli_matrix *m, char *msg) {
  memset(m, 0, sizeof *m);
  char used[4096];
  void *map;
  size_t len;
  if (map_idx(path, used, sizeof used, &map, &len, msg) != 0) return -1;
  int rc = fkm_cli_parse_idx_images(used, map, len, m, msg);
  fkm_cli_unmap(map, len);
  return rc;
}
