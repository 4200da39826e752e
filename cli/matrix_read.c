/* Vector file formats: the memory-mapped readers (see matrix_io.h for the
 * list). */
#include "matrix_io.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* ------------------------------------------------------------- readers */

/* .fbin / .u8bin / .i8bin: int32 n, int32 d, n*d elements. */
static int parse_bin(const char *path, const unsigned char *b, size_t len,
                     fkm_cli_elem e, fkm_cli_matrix *m, char *msg) {
  if (len < 8)
    return fkm_cli_fail(msg, "%s: truncated file: %zu bytes, the header alone is 8",
                path, len);
  int64_t n = read_i32(b), d = read_i32(b + 4);
  if (n <= 0 || d <= 0)
    return fkm_cli_fail(msg, "%s: bad header: n = %lld, d = %lld (both must be > 0)",
                path, (long long)n, (long long)d);
  uint64_t want = 8 + (uint64_t)n * (uint64_t)d * elem_size(e);
  if (len < want)
    return fkm_cli_fail(msg, "%s: truncated file: %zu bytes, header (n = %lld, d = %lld) needs %llu",
                path, len, (long long)n, (long long)d, (unsigned long long)want);
  if (len > want)
    return fkm_cli_fail(msg, "%s: %zu bytes, header (n = %lld, d = %lld) needs %llu: trailing data",
                path, len, (long long)n, (long long)d, (unsigned long long)want);
  m->n = n;
  m->d = d;
  m->file_elem = e;
  m->data = b + 8;
  return 0;
}

/* .fvecs / .bvecs: every row is (int32 d, d elements). */
static int parse_vecs(const char *path, const unsigned char *b, size_t len,
                      fkm_cli_elem e, const char *format, fkm_cli_matrix *m, char *msg) {
  if (len < 4)
    return fkm_cli_fail(msg, "%s: truncated file: %zu bytes, not even one row header",
                path, len);
  int64_t d = read_i32(b);
  if (d <= 0 || d > (1 << 24))
    return fkm_cli_fail(msg, "%s: wrong magic: the first row's dimension is %lld; not a .%s file",
                path, (long long)d, format);
  size_t row = 4 + (size_t)d * elem_size(e);
  if (len % row != 0)
    return fkm_cli_fail(msg, "%s: truncated file: %zu bytes is not a whole number of rows of %zu bytes (d = %lld)",
                path, len, row, (long long)d);
  int64_t n = (int64_t)(len / row);
  for (int64_t i = 0; i < n; i++) {
    int32_t di = read_i32(b + (size_t)i * row);
    if (di != d)
      return fkm_cli_fail(msg, "%s: dimension mismatch at row %lld: %d, the first row has %lld",
                  path, (long long)i, di, (long long)d);
  }
  size_t es = elem_size(e);
  unsigned char *dst = malloc((size_t)n * (size_t)d * es);
  if (!dst) return fkm_cli_fail(msg, "%s: out of memory gathering %lld rows", path, (long long)n);
  for (int64_t i = 0; i < n; i++)
    memcpy(dst + (size_t)i * (size_t)d * es, b + (size_t)i * row + 4, (size_t)d * es);
  m->n = n;
  m->d = d;
  m->file_elem = e;
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

static int parse_npy(const char *path, const unsigned char *b, size_t len,
                     fkm_cli_matrix *m, char *msg) {
  if (len < 10 || memcmp(b, "\x93NUMPY", 6) != 0)
    return fkm_cli_fail(msg, "%s: wrong magic: not a .npy file", path);
  size_t hlen, hoff;
  if (b[6] == 1) {
    hlen = (size_t)b[8] | ((size_t)b[9] << 8);
    hoff = 10;
  } else if (b[6] == 2 || b[6] == 3) {
    if (len < 12) return fkm_cli_fail(msg, "%s: truncated file: .npy header cut short", path);
    hlen = (size_t)b[8] | ((size_t)b[9] << 8) | ((size_t)b[10] << 16) | ((size_t)b[11] << 24);
    hoff = 12;
  } else {
    return fkm_cli_fail(msg, "%s: unsupported .npy version %d", path, b[6]);
  }
  if (hoff + hlen > len) return fkm_cli_fail(msg, "%s: truncated file: .npy header cut short", path);
  char hdr[4096];
  if (hlen >= sizeof hdr) return fkm_cli_fail(msg, "%s: .npy header too long (%zu bytes)", path, hlen);
  memcpy(hdr, b + hoff, hlen);
  hdr[hlen] = '\0';

  const char *descr = npy_field(hdr, "'descr'");
  const char *fortran = npy_field(hdr, "'fortran_order'");
  const char *shape = npy_field(hdr, "'shape'");
  if (!descr || !fortran || !shape)
    return fkm_cli_fail(msg, "%s: malformed .npy header: %s", path, hdr);
  fkm_cli_elem e;
  if (!strncmp(descr, "'<f4'", 5)) e = FKM_CLI_F32;
  else if (!strncmp(descr, "'<f2'", 5)) e = FKM_CLI_F16;
  else if (!strncmp(descr, "'|u1'", 5)) e = FKM_CLI_U8;
  else if (!strncmp(descr, "'|i1'", 5)) e = FKM_CLI_I8;
  else {
    char dt[16] = {0};
    sscanf(descr, "%15[^,}]", dt);
    return fkm_cli_fail(msg, "%s: unsupported .npy dtype %s (float32, float16, uint8, int8 are)", path, dt);
  }
  if (!strncmp(fortran, "True", 4))
    return fkm_cli_fail(msg, "%s: .npy array is in Fortran order; save it C-contiguous", path);
  long long dims[3];
  int nd = 0;
  const char *p = shape;
  if (*p++ != '(') return fkm_cli_fail(msg, "%s: malformed .npy shape", path);
  while (*p && *p != ')') {
    while (*p == ' ' || *p == ',') p++;
    if (*p == ')') break;
    char *end;
    long long v = strtoll(p, &end, 10);
    if (end == p) return fkm_cli_fail(msg, "%s: malformed .npy shape", path);
    if (nd == 3) return fkm_cli_fail(msg, "%s: .npy array has more than 2 dimensions", path);
    dims[nd++] = v;
    p = end;
  }
  if (nd == 0) return fkm_cli_fail(msg, "%s: .npy array is a scalar, not a matrix", path);
  if (nd == 3) return fkm_cli_fail(msg, "%s: .npy array has more than 2 dimensions", path);
  int64_t n = dims[0], d = nd == 2 ? dims[1] : 1;
  if (n <= 0 || d <= 0)
    return fkm_cli_fail(msg, "%s: empty .npy array (shape %lld x %lld)", path, (long long)n, (long long)d);
  uint64_t want = hoff + hlen + (uint64_t)n * (uint64_t)d * elem_size(e);
  if (len < want)
    return fkm_cli_fail(msg, "%s: truncated file: %zu bytes, shape (%lld, %lld) needs %llu",
                path, len, (long long)n, (long long)d, (unsigned long long)want);
  m->n = n;
  m->d = d;
  m->file_elem = e;
  m->data = b + hoff + hlen;
  return 0;
}

/* 8-bit data becomes float32, as FAISS's tools do with .bvecs. */
static int widen_bytes(const char *path, fkm_cli_matrix *m, char *msg) {
  size_t count = (size_t)m->n * (size_t)m->d;
  float *f = malloc(count * sizeof *f);
  if (!f) return fkm_cli_fail(msg, "%s: out of memory converting %zu bytes to float", path, count);
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
  return 0;
}

static int map_file(const char *path, fkm_cli_matrix *m, char *msg) {
  int fd = open(path, O_RDONLY);
  if (fd < 0) return fkm_cli_fail(msg, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return fkm_cli_fail(msg, "%s: not a regular file", path);
  }
  size_t len = (size_t)st.st_size;
  if (len == 0) {
    close(fd);
    return fkm_cli_fail(msg, "%s: empty file", path);
  }
  void *map = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return fkm_cli_fail(msg, "%s: cannot map: %s", path, strerror(errno));
  m->map = map;
  m->map_len = len;
  return 0;
}

int fkm_cli_matrix_read(const char *path, fkm_cli_matrix *m, char *msg) {
  memset(m, 0, sizeof *m);
  const char *ext = fkm_cli_extension(path);
  enum { FBIN, U8BIN, I8BIN, FVECS, BVECS, NPY } kind;
  if (!strcmp(ext, "fbin")) kind = FBIN;
  else if (!strcmp(ext, "u8bin")) kind = U8BIN;
  else if (!strcmp(ext, "i8bin")) kind = I8BIN;
  else if (!strcmp(ext, "fvecs")) kind = FVECS;
  else if (!strcmp(ext, "bvecs")) kind = BVECS;
  else if (!strcmp(ext, "npy")) kind = NPY;
  else
    return fkm_cli_fail(msg, "%s: unknown format '.%s' (known: .fvecs .bvecs .fbin .u8bin .i8bin .npy)",
                path, ext);

  if (map_file(path, m, msg) != 0) return -1;
  void *map = m->map;
  size_t len = m->map_len;

  int rc;
  switch (kind) {
    case FBIN: rc = parse_bin(path, map, len, FKM_CLI_F32, m, msg); break;
    case U8BIN: rc = parse_bin(path, map, len, FKM_CLI_U8, m, msg); break;
    case I8BIN: rc = parse_bin(path, map, len, FKM_CLI_I8, m, msg); break;
    case FVECS: rc = parse_vecs(path, map, len, FKM_CLI_F32, "fvecs", m, msg); break;
    case BVECS: rc = parse_vecs(path, map, len, FKM_CLI_U8, "bvecs", m, msg); break;
    default: rc = parse_npy(path, map, len, m, msg); break;
  }
  if (rc == 0 && (m->file_elem == FKM_CLI_U8 || m->file_elem == FKM_CLI_I8))
    rc = widen_bytes(path, m, msg);
  if (rc != 0) {
    fkm_cli_matrix_free(m);
    return -1;
  }
  m->dtype = m->file_elem == FKM_CLI_F16 ? FKM_DTYPE_F16 : FKM_DTYPE_F32;
  return 0;
}

int fkm_cli_read_ids(const char *path, int64_t *n, int64_t *k, int64_t **ids, char *msg) {
  fkm_cli_matrix m;
  memset(&m, 0, sizeof m);
  *ids = NULL;
  const char *ext = fkm_cli_extension(path);
  int is_vecs = !strcmp(ext, "ivecs");
  if (!is_vecs && strcmp(ext, "ibin"))
    return fkm_cli_fail(msg, "%s: unknown format '.%s' for ground truth (known: .ivecs .ibin)", path, ext);
  if (map_file(path, &m, msg) != 0) return -1;
  /* int32 has the size of float32: the float parsers check the layout. */
  int rc = is_vecs ? parse_vecs(path, m.map, m.map_len, FKM_CLI_F32, "ivecs", &m, msg)
                   : parse_bin(path, m.map, m.map_len, FKM_CLI_F32, &m, msg);
  if (rc == 0) {
    int64_t count = m.n * m.d;
    int64_t *out = malloc((size_t)count * sizeof *out);
    if (!out) {
      rc = fkm_cli_fail(msg, "%s: out of memory", path);
    } else {
      const unsigned char *src = m.data;
      for (int64_t i = 0; i < count; i++) out[i] = read_i32(src + 4 * i);
      *ids = out;
      *n = m.n;
      *k = m.d;
    }
  }
  fkm_cli_matrix_free(&m);
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
  if (m->dtype == FKM_DTYPE_F32) {
    const float *x = m->data;
    for (int64_t i = 0; i < m->n; i++)
      for (int64_t j = 0; j < m->d; j++)
        if (!isfinite(x[i * m->d + j])) {
          if (col) *col = j;
          return i;
        }
  } else {
    const uint16_t *x = m->data;
    for (int64_t i = 0; i < m->n; i++)
      for (int64_t j = 0; j < m->d; j++)
        if ((x[i * m->d + j] & 0x7c00) == 0x7c00) {
          if (col) *col = j;
          return i;
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

