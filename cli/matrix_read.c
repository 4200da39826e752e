/* Vector file formats: the readers (see matrix_io.h for the list). Every
 * format is parsed from memory (fkm_cli_matrix_parse, fkm_cli_parse_ids);
 * the path readers map the file and parse the mapping. */
#include "matrix_io.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

int fkm_cli_fail(char *msg, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, FKM_CLI_MSG_LEN, fmt, ap);
  va_end(ap);
  return -1;
}

const char *fkm_cli_extension(const char *path) {
  static _Thread_local char ext[16];
  const char *slash = strrchr(path, '/');
  const char *dot = strrchr(slash ? slash : path, '.');
  ext[0] = '\0';
  if (!dot || strlen(dot + 1) >= sizeof ext) return ext;
  size_t i = 0;
  for (const char *p = dot + 1; *p; p++) ext[i++] = (char)tolower((unsigned char)*p);
  ext[i] = '\0';
  return ext;
}

static size_t elem_size(fkm_cli_elem e) {
  return (e == FKM_CLI_F32) ? 4 : (e == FKM_CLI_F16) ? 2 : 1;
}

static int32_t read_i32(const unsigned char *p) {
  int32_t v;
  memcpy(&v, p, 4);
  return v;
}

/* n * d elements of es bytes after off header bytes, in *bytes; -1 when
 * that does not fit in 64 bits. */
static int checked_bytes(int64_t n, int64_t d, size_t es, uint64_t off, uint64_t *bytes) {
  uint64_t count;
  if (__builtin_mul_overflow((uint64_t)n, (uint64_t)d, &count) ||
      __builtin_mul_overflow(count, (uint64_t)es, &count) ||
      __builtin_add_overflow(count, off, bytes) || *bytes > SIZE_MAX)
    return -1;
  return 0;
}

/* ------------------------------------------------------------- readers */

/* .fbin / .u8bin / .i8bin: int32 n, int32 d, n*d elements. */
static int parse_bin(const char *name, const unsigned char *b, size_t len,
                     fkm_cli_elem e, fkm_cli_matrix *m, char *msg) {
  if (len < 8)
    return fkm_cli_fail(msg, "%s: truncated file: %zu bytes, the header alone is 8",
                name, len);
  int64_t n = read_i32(b), d = read_i32(b + 4);
  if (n <= 0 || d <= 0)
    return fkm_cli_fail(msg, "%s: bad header: n = %lld, d = %lld (both must be > 0)",
                name, (long long)n, (long long)d);
  uint64_t want;
  if (checked_bytes(n, d, elem_size(e), 8, &want) != 0)
    return fkm_cli_fail(msg, "%s: header (n = %lld, d = %lld) overflows 64-bit sizes",
                name, (long long)n, (long long)d);
  if (len < want)
    return fkm_cli_fail(msg, "%s: truncated file: %zu bytes, header (n = %lld, d = %lld) needs %llu",
                name, len, (long long)n, (long long)d, (unsigned long long)want);
  if (len > want)
    return fkm_cli_fail(msg, "%s: %zu bytes, header (n = %lld, d = %lld) needs %llu: trailing data",
                name, len, (long long)n, (long long)d, (unsigned long long)want);
  m->n = n;
  m->d = d;
  m->file_elem = e;
  m->data = b + 8;
  return 0;
}

/* .fvecs / .bvecs: every row is (int32 d, d elements). */
/* The rows of part `part` of `parts` of n rows: [n part / parts, n (part
 * + 1) / parts). */
static void part_rows(int64_t n, int part, int parts, int64_t *lo, int64_t *hi) {
  *lo = n * part / parts;
  *hi = n * (part + 1) / parts;
}

/* A .fvecs / .bvecs / .ivecs file; only the rows of part `part` of `parts`
 * (one part: all of them) are checked and kept (m->first, m->n_all). */
static int parse_vecs(const char *name, const unsigned char *b, size_t len,
                      fkm_cli_elem e, const char *format, int in_place, int part, int parts,
                      fkm_cli_matrix *m, char *msg) {
  if (len < 4)
    return fkm_cli_fail(msg, "%s: truncated file: %zu bytes, not even one row header",
                name, len);
  int64_t d = read_i32(b);
  if (d <= 0 || d > (1 << 24))
    return fkm_cli_fail(msg, "%s: wrong magic: the first row's dimension is %lld; not a .%s file",
                name, (long long)d, format);
  size_t es = elem_size(e), row = 4 + (size_t)d * es;
  if (len % row != 0)
    return fkm_cli_fail(msg, "%s: truncated file: %zu bytes is not a whole number of rows of %zu bytes (d = %lld)",
                name, len, row, (long long)d);
  const int64_t n_all = (int64_t)(len / row);
  int64_t lo, hi;
  part_rows(n_all, part, parts, &lo, &hi);
  for (int64_t i = lo; i < hi; i++) {
    int32_t di = read_i32(b + (size_t)i * row);
    if (di != d)
      return fkm_cli_fail(msg, "%s: dimension mismatch at row %lld: %d, the first row has %lld",
                  name, (long long)i, di, (long long)d);
  }
  const int64_t n = hi - lo;
  m->n = n;
  m->d = d;
  m->file_elem = e;
  m->n_all = n_all;
  m->first = lo;
  b += (size_t)lo * row;
  if (in_place) { /* the rows where they are, 4 + d es bytes apart */
    m->data = b + 4;
    m->row_stride = (int64_t)row;
    return 0;
  }
  unsigned char *dst = malloc((size_t)(n > 0 ? n : 1) * (size_t)d * es); /* less than len */
  if (!dst) return fkm_cli_fail(msg, "%s: out of memory gathering %lld rows", name, (long long)n);
  for (int64_t i = 0; i < n; i++)
    memcpy(dst + (size_t)i * (size_t)d * es, b + (size_t)i * row + 4, (size_t)d * es);
  m->owned = dst;
  m->data = dst;
  return 0;
}

/* Value of key in a .npy header dict ("'descr': '<f4'"): pointer just after
 * the colon, or NULL. */
static const char *npy_field(const char *hdr, const char *key) {
  const char *p = strstr(hdr, key);
  if (!p) return NULL;
  p = strchr(p + strlen(key), ':');
  if (!p) return NULL;
  p++;
  while (*p == ' ') p++;
  return p;
}

/* The dimensions of a .npy shape, "(3000, 8)", "(3000,)" or "()", each a
 * plain decimal number that must fit in int64. Returns how many there are
 * (the first 3 are stored), -1 when the text is not a shape, -2 when a
 * dimension overflows. *end receives the closing parenthesis. */
static int npy_dims(const char *p, int64_t dims[3], const char **end) {
  int nd = 0;
  if (*p++ != '(') return -1;
  for (;;) {
    while (*p == ' ') p++;
    if (*p == ')') break;
    if (!isdigit((unsigned char)*p)) return -1;
    int64_t v = 0;
    for (; isdigit((unsigned char)*p); p++) {
      int digit = *p - '0';
      if (v > (INT64_MAX - digit) / 10) return -2;
      v = v * 10 + digit;
    }
    if (nd < 3) dims[nd] = v;
    nd++;
    while (*p == ' ') p++;
    if (*p == ',') p++;
    else if (*p != ')') return -1;
  }
  *end = p;
  return nd;
}

/* The .npy preamble: version, header length, where the header starts. */
static int npy_preamble(const char *name, const unsigned char *b, size_t len, size_t *hoff,
                        size_t *hlen, char *msg) {
  if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
    return fkm_cli_fail(msg, "%s: wrong magic: not a .npy file", name);
  if (b[6] == 1) {
    *hlen = (size_t)b[8] | ((size_t)b[9] << 8);
    *hoff = 10;
  } else if (b[6] == 2 || b[6] == 3) {
    if (len < 12) return fkm_cli_fail(msg, "%s: truncated file: .npy header cut short", name);
    *hlen = (size_t)b[8] | ((size_t)b[9] << 8) | ((size_t)b[10] << 16) | ((size_t)b[11] << 24);
    *hoff = 12;
  } else {
    return fkm_cli_fail(msg, "%s: unsupported .npy version %d", name, b[6]);
  }
  if (*hlen > len - *hoff)
    return fkm_cli_fail(msg, "%s: truncated file: .npy header cut short", name);
  return 0;
}

static int npy_dtype(const char *name, const char *descr, fkm_cli_elem *e, char *msg) {
  if (!strncmp(descr, "'<f4'", 5)) *e = FKM_CLI_F32;
  else if (!strncmp(descr, "'<f2'", 5)) *e = FKM_CLI_F16;
  else if (!strncmp(descr, "'|u1'", 5)) *e = FKM_CLI_U8;
  else if (!strncmp(descr, "'|i1'", 5)) *e = FKM_CLI_I8;
  else {
    char dt[16] = {0};
    sscanf(descr, "%15[^,}]", dt);
    return fkm_cli_fail(msg, "%s: unsupported .npy dtype %s (float32, float16, uint8, int8 are)",
                        name, dt);
  }
  return 0;
}

/* The (n, d) of a shape (1-D: d = 1), overflow-checked; shape text in messages. */
static int npy_shape(const char *name, const char *shape, int64_t *n, int64_t *d, char *msg) {
  int64_t dims[3];
  const char *end = shape;
  int nd = npy_dims(shape, dims, &end);
  int shown = nd >= 0 ? (int)(end - shape) + 1 : (int)strcspn(shape, ")}") + 1;
  if (shown > 64) shown = 64;
  if (nd == -2)
    return fkm_cli_fail(msg, "%s: .npy shape %.*s: a dimension does not fit in 64 bits", name,
                        shown, shape);
  if (nd < 0) return fkm_cli_fail(msg, "%s: malformed .npy shape %.*s", name, shown, shape);
  if (nd == 0) return fkm_cli_fail(msg, "%s: .npy array is a scalar, not a matrix", name);
  if (nd > 2) return fkm_cli_fail(msg, "%s: .npy array has more than 2 dimensions", name);
  *n = dims[0];
  *d = nd == 2 ? dims[1] : 1;
  if (*n <= 0 || *d <= 0)
    return fkm_cli_fail(msg, "%s: empty .npy array (shape %lld x %lld)", name, (long long)*n,
                        (long long)*d);
  return 0;
}

/* .npy: the data follows the header; bytes after the array are ignored, as
 * they always were. */
static int parse_npy(const char *name, const unsigned char *b, size_t len,
                     fkm_cli_matrix *m, char *msg) {
  size_t hoff = 0, hlen = 0;
  if (npy_preamble(name, b, len, &hoff, &hlen, msg) != 0) return -1;
  char hdr[4096];
  if (hlen >= sizeof hdr)
    return fkm_cli_fail(msg, "%s: .npy header too long (%zu bytes)", name, hlen);
  /* control bytes as spaces: numpy ends the header with '\n', and a
   * message quoting it stays one line */
  for (size_t i = 0; i < hlen; i++) {
    unsigned char c = b[hoff + i];
    hdr[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
  }
  hdr[hlen] = '\0';

  const char *descr = npy_field(hdr, "'descr'");
  const char *fortran = npy_field(hdr, "'fortran_order'");
  const char *shape = npy_field(hdr, "'shape'");
  if (!descr || !fortran || !shape)
    return fkm_cli_fail(msg, "%s: malformed .npy header: %.200s", name, hdr);
  fkm_cli_elem e = FKM_CLI_F32;
  if (npy_dtype(name, descr, &e, msg) != 0) return -1;
  if (!strncmp(fortran, "True", 4))
    return fkm_cli_fail(msg, "%s: .npy array is in Fortran order; save it C-contiguous", name);
  int64_t n = 0, d = 0;
  if (npy_shape(name, shape, &n, &d, msg) != 0) return -1;
  uint64_t want;
  if (checked_bytes(n, d, elem_size(e), hoff + hlen, &want) != 0)
    return fkm_cli_fail(msg, "%s: .npy shape (%lld, %lld) of %zu-byte elements overflows 64-bit sizes",
                        name, (long long)n, (long long)d, elem_size(e));
  if (len < want)
    return fkm_cli_fail(msg, "%s: truncated file: %zu bytes, shape (%lld, %lld) needs %llu",
                name, len, (long long)n, (long long)d, (unsigned long long)want);
  m->n = n;
  m->d = d;
  m->file_elem = e;
  m->data = b + hoff + hlen;
  return 0;
}

int fkm_cli_matrix_widen(const char *name, fkm_cli_matrix *m, char *msg) {
  size_t count = (size_t)m->n * (size_t)m->d;
  float *f = malloc(count * sizeof *f);
  if (!f) return fkm_cli_fail(msg, "%s: out of memory converting %zu bytes to float", name, count);
  if (m->file_elem == FKM_CLI_U8) {
    const uint8_t *s = m->data;
    for (size_t i = 0; i < count; i++) f[i] = (float)s[i];
  } else {
    const int8_t *s = m->data;
    for (size_t i = 0; i < count; i++) f[i] = (float)s[i];
  }
  free(m->owned);
  m->owned = f;
  m->data = f;
  m->dtype = FKM_DTYPE_F32;
  return 0;
}

/* float32 / float16 data at an address that is no multiple of its size (a
 * .npy header may put it there, and numpy loads such files) is copied to
 * owned memory: the library loads it as float or uint16_t. Aligned data
 * stays where it is. */
static int align_data(const char *name, fkm_cli_matrix *m, char *msg) {
  size_t es = elem_size(m->file_elem);
  if ((uintptr_t)m->data % es == 0) return 0;
  size_t bytes = (size_t)m->n * (size_t)m->d * es;
  void *copy = malloc(bytes);
  if (!copy)
    return fkm_cli_fail(msg, "%s: out of memory copying %zu unaligned bytes", name, bytes);
  memcpy(copy, m->data, bytes);
  free(m->owned);
  m->owned = copy;
  m->data = copy;
  return 0;
}

int fkm_cli_map(const char *path, void **map, size_t *len, char *msg) {
  *map = NULL;
  *len = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return fkm_cli_fail(msg, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return fkm_cli_fail(msg, "%s: not a regular file", path);
  }
  if (st.st_size == 0) {
    close(fd);
    return fkm_cli_fail(msg, "%s: empty file", path);
  }
  void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return fkm_cli_fail(msg, "%s: cannot map: %s", path, strerror(errno));
  *map = p;
  *len = (size_t)st.st_size;
  return 0;
}

void fkm_cli_unmap(void *map, size_t len) {
  if (map) munmap(map, len);
}

/* The matrix formats (by extension); -1 with a message for another. */
static int check_format(const char *name, const char *ext, char *msg) {
  static const char *const known[] = {"fvecs", "bvecs", "fbin", "u8bin", "i8bin", "npy"};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (!strcmp(ext, known[i])) return 0;
  return fkm_cli_fail(msg,
                      "%s: unknown format '.%s' (known: .fvecs .bvecs .fbin .u8bin .i8bin .npy, "
                      "and idx3 image files named *idx3-ubyte or *idx3-ubyte.gz)",
                      name, ext);
}

/* An idx3 image file goes by its name (MNIST's and Fashion-MNIST's
 * train-images-idx3-ubyte.gz), not by an extension. */
static int is_idx3_name(const char *path) {
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  static const char *const tails[] = {"idx3-ubyte", "idx3-ubyte.gz"};
  for (size_t i = 0; i < 2; i++) {
    size_t t = strlen(tails[i]);
    if (n >= t && !strcasecmp(base + n - t, tails[i])) return 1;
  }
  return 0;
}

static int check_id_format(const char *name, const char *ext, char *msg) {
  if (!strcmp(ext, "ivecs") || !strcmp(ext, "ibin")) return 0;
  return fkm_cli_fail(msg, "%s: unknown format '.%s' for ground truth (known: .ivecs .ibin)",
                      name, ext);
}

/* Part `part` of `parts` of a parsed matrix whose packed data (elements of
 * es bytes) holds all its rows: the data pointer moves, nothing is copied
 * (m->first, m->n_all). */
static void keep_part(fkm_cli_matrix *m, size_t es, int part, int parts) {
  int64_t lo, hi;
  m->n_all = m->n;
  part_rows(m->n, part, parts, &lo, &hi);
  m->data = (const char *)m->data + es * (size_t)m->d * (size_t)lo;
  m->first = lo;
  m->n = hi - lo;
}

static int parse_matrix(const char *name, const char *ext, const void *bytes, size_t len,
                        int rows_in_place, int part, int parts, fkm_cli_matrix *m,
                        char *msg) {
  memset(m, 0, sizeof *m);
  if (check_format(name, ext, msg) != 0) return -1;
  const unsigned char *b = bytes;
  int rc;
  if (!strcmp(ext, "fbin")) rc = parse_bin(name, b, len, FKM_CLI_F32, m, msg);
  else if (!strcmp(ext, "u8bin")) rc = parse_bin(name, b, len, FKM_CLI_U8, m, msg);
  else if (!strcmp(ext, "i8bin")) rc = parse_bin(name, b, len, FKM_CLI_I8, m, msg);
  else if (!strcmp(ext, "fvecs"))
    rc = parse_vecs(name, b, len, FKM_CLI_F32, "fvecs", rows_in_place, part, parts, m, msg);
  else if (!strcmp(ext, "bvecs"))
    rc = parse_vecs(name, b, len, FKM_CLI_U8, "bvecs", 0, part, parts, m, msg);
  else rc = parse_npy(name, b, len, m, msg);
  /* a part of the rows: before 8-bit rows are widened, only this part */
  if (rc == 0 && m->n_all == 0 && m->n > 0) keep_part(m, elem_size(m->file_elem), part, parts);
  if (rc == 0 && (m->file_elem == FKM_CLI_U8 || m->file_elem == FKM_CLI_I8))
    rc = fkm_cli_matrix_widen(name, m, msg);
  if (rc == 0 && !m->row_stride) rc = align_data(name, m, msg);
  if (rc != 0) {
    fkm_cli_matrix_free(m);
    return -1;
  }
  m->dtype = m->file_elem == FKM_CLI_F16 ? FKM_DTYPE_F16 : FKM_DTYPE_F32;
  return 0;
}

int fkm_cli_matrix_parse(const char *name, const char *ext, const void *bytes, size_t len,
                         fkm_cli_matrix *m, char *msg) {
  return parse_matrix(name, ext, bytes, len, 0, 0, 1, m, msg);
}

static int read_matrix(const char *path, int rows_in_place, int part, int parts,
                       fkm_cli_matrix *m, char *msg) {
  memset(m, 0, sizeof *m);
  if (is_idx3_name(path)) { /* decompressed whole: then this part of its rows */
    if (fkm_cli_read_idx_images(path, m, msg) != 0) return -1;
    keep_part(m, sizeof(float), part, parts); /* widened to float32 */
    return 0;
  }
  const char *ext = fkm_cli_extension(path);
  void *map;
  size_t len;
  if (check_format(path, ext, msg) != 0 || fkm_cli_map(path, &map, &len, msg) != 0) return -1;
  if (parse_matrix(path, ext, map, len, rows_in_place, part, parts, m, msg) != 0) {
    fkm_cli_unmap(map, len);
    return -1;
  }
  m->map = map;
  m->map_len = len;
  return 0;
}

int fkm_cli_matrix_read(const char *path, fkm_cli_matrix *m, char *msg) {
  return read_matrix(path, 0, 0, 1, m, msg);
}

int fkm_cli_matrix_read_rows(const char *path, fkm_cli_matrix *m, char *msg) {
  return read_matrix(path, 1, 0, 1, m, msg);
}

int fkm_cli_matrix_read_part(const char *path, int part, int parts, fkm_cli_matrix *m,
                             char *msg) {
  return read_matrix(path, 1, part, parts, m, msg);
}

int fkm_cli_parse_ids(const char *name, const char *ext, const void *bytes, size_t len,
                      int64_t *n, int64_t *k, int64_t **ids, char *msg) {
  fkm_cli_matrix m;
  memset(&m, 0, sizeof m);
  *ids = NULL;
  if (check_id_format(name, ext, msg) != 0) return -1;
  int is_vecs = !strcmp(ext, "ivecs");
  /* int32 has the size of float32: the float parsers check the layout. */
  int rc = is_vecs ? parse_vecs(name, bytes, len, FKM_CLI_F32, "ivecs", 0, 0, 1, &m, msg)
                   : parse_bin(name, bytes, len, FKM_CLI_F32, &m, msg);
  if (rc == 0) {
    size_t count = (size_t)m.n * (size_t)m.d; /* at most len / 4 */
    int64_t *out = malloc(count * sizeof *out);
    if (!out) {
      rc = fkm_cli_fail(msg, "%s: out of memory", name);
    } else {
      const unsigned char *src = m.data;
      for (size_t i = 0; i < count; i++) out[i] = read_i32(src + 4 * i);
      *ids = out;
      *n = m.n;
      *k = m.d;
    }
  }
  fkm_cli_matrix_free(&m);
  return rc;
}

int fkm_cli_read_ids(const char *path, int64_t *n, int64_t *k, int64_t **ids, char *msg) {
  *ids = NULL;
  const char *ext = fkm_cli_extension(path);
  void *map;
  size_t len;
  if (check_id_format(path, ext, msg) != 0 || fkm_cli_map(path, &map, &len, msg) != 0) return -1;
  int rc = fkm_cli_parse_ids(path, ext, map, len, n, k, ids, msg);
  fkm_cli_unmap(map, len);
  return rc;
}

void fkm_cli_matrix_free(fkm_cli_matrix *m) {
  if (!m) return;
  free(m->owned);
  if (m->map) munmap(m->map, m->map_len);
  memset(m, 0, sizeof *m);
}

static float half_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  float v;
  if (exp == 0) {
    v = ldexpf((float)man, -24); /* subnormal or zero: exact */
    return sign ? -v : v;
  }
  uint32_t bits = sign | (exp == 31 ? 0xff << 23 : (exp + 112) << 23) | (man << 13);
  memcpy(&v, &bits, 4);
  return v;
}

int64_t fkm_cli_matrix_first_nonfinite(const fkm_cli_matrix *m, int64_t *col) {
  const size_t es = m->dtype == FKM_DTYPE_F32 ? 4 : 2;
  const size_t stride = m->row_stride ? (size_t)m->row_stride : es * (size_t)m->d;
  for (int64_t i = 0; i < m->n; i++) {
    const char *r = (const char *)m->data + stride * (size_t)i;
    for (int64_t j = 0; j < m->d; j++) {
      int bad;
      if (m->dtype == FKM_DTYPE_F32) {
        float v;
        memcpy(&v, r + 4 * (size_t)j, 4);
        bad = !isfinite(v);
      } else {
        uint16_t h;
        memcpy(&h, r + 2 * (size_t)j, 2);
        bad = (h & 0x7c00) == 0x7c00;
      }
      if (bad) {
        if (col) *col = j;
        return i;
      }
    }
  }
  return -1;
}

int fkm_cli_matrix_to_f32(fkm_cli_matrix *m, char *msg) {
  if (m->dtype == FKM_DTYPE_F32) return 0;
  size_t count = (size_t)m->n * (size_t)m->d;
  float *f = malloc(count * sizeof *f);
  if (!f) return fkm_cli_fail(msg, "out of memory converting %zu float16 values", count);
  const uint16_t *h = m->data;
  for (size_t i = 0; i < count; i++) f[i] = half_to_float(h[i]);
  free(m->owned);
  m->owned = f;
  m->data = f;
  m->dtype = FKM_DTYPE_F32;
  return 0;
}

