/* Writes the fuzz targets' seed corpus into DIR/<target>/: a few valid files
 * per reader (one row, several rows, every dtype and .npy version, data at
 * odd offsets, gzip'd idx3 in one and in two members) and a few broken ones,
 * and for the API target inputs that decode to valid calls. Deterministic;
 * rerunning it rewrites the same files. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

static const char *root;

/* A growing byte string. */
typedef struct bytes {
  unsigned char b[1 << 16];
  size_t n;
} bytes;

static void put(bytes *o, const void *p, size_t n) {
  if (o->n + n > sizeof o->b) {
    fprintf(stderr, "make_corpus: seed too large\n");
    exit(1);
  }
  memcpy(o->b + o->n, p, n);
  o->n += n;
}

static void put_i32(bytes *o, int32_t v) { put(o, &v, 4); }
static void put_u8(bytes *o, unsigned v) {
  unsigned char c = (unsigned char)v;
  put(o, &c, 1);
}
static void put_be32(bytes *o, uint32_t v) {
  for (int i = 3; i >= 0; i--) put_u8(o, (v >> (8 * i)) & 0xff);
}

static void save(const char *target, const char *name, const bytes *o) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", root, target);
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    perror(path);
    exit(1);
  }
  snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
  FILE *f = fopen(path, "wb");
  if (!f || fwrite(o->b, 1, o->n, f) != o->n || fclose(f) != 0) {
    perror(path);
    exit(1);
  }
}

/* Element i of a small matrix, as float32 / float16 bits / a byte. */
static float val(int i) { return (float)((i * 7) % 11) - 5.0f; }
static uint16_t half_bits(int i) { return (uint16_t)(0x3c00 + (i % 5) * 0x100); }

static void put_elems(bytes *o, int count, int es) {
  for (int i = 0; i < count; i++) {
    if (es == 4) {
      float v = val(i);
      put(o, &v, 4);
    } else if (es == 2) {
      uint16_t h = half_bits(i);
      put(o, &h, 2);
    } else {
      put_u8(o, (unsigned)(i * 37) & 0xff);
    }
  }
}

/* ------------------------------------------------------------ .bin, .vecs */

static void bin_seeds(const char *target, int es) {
  static const int shapes[][2] = {{1, 1}, {3, 4}, {7, 2}};
  for (int s = 0; s < 3; s++) {
    bytes o = {.n = 0};
    put_i32(&o, shapes[s][0]);
    put_i32(&o, shapes[s][1]);
    put_elems(&o, shapes[s][0] * shapes[s][1], es);
    char name[32];
    snprintf(name, sizeof name, "valid_%dx%d", shapes[s][0], shapes[s][1]);
    save(target, name, &o);
    o.n -= 1;
    save(target, s == 1 ? "truncated" : "truncated_small", &o);
  }
  bytes o = {.n = 0};
  put_i32(&o, INT32_MAX);
  put_i32(&o, INT32_MAX);
  put_elems(&o, 4, es);
  save(target, "huge_header", &o);
}

static void vecs_seeds(const char *target, int es) {
  bytes o = {.n = 0};
  put_i32(&o, 3);
  put_elems(&o, 3, es);
  save(target, "valid_1x3", &o);
  for (int r = 1; r < 4; r++) {
    put_i32(&o, 3);
    put_elems(&o, 3, es);
  }
  save(target, "valid_4x3", &o);
  o.n -= 2;
  save(target, "truncated", &o);
  o.n = 4 + 3 * (size_t)es;
  put_i32(&o, 2);
  put_elems(&o, 3, es);
  save(target, "dimension_mismatch", &o);
}

/* ------------------------------------------------------------------ .npy */

/* version 1-3, header padded so that the data starts at offset 64 * m +
 * skew, count elements of es bytes. */
static void npy_seed(const char *name, int version, const char *descr, const char *shape,
                     int count, int es, int skew) {
  char dict[200];
  snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr,
           shape);
  size_t pre = version == 1 ? 10 : 12, body = strlen(dict) + 1;
  size_t hlen = (pre + body + 63) / 64 * 64 - pre + (size_t)skew;
  bytes o = {.n = 0};
  put(&o, "\x93NUMPY", 6);
  put_u8(&o, (unsigned)version);
  put_u8(&o, 0);
  for (size_t i = 0; i < pre - 8; i++) put_u8(&o, (hlen >> (8 * i)) & 0xff);
  put(&o, dict, strlen(dict));
  for (size_t i = body; i < hlen; i++) put_u8(&o, ' ');
  put_u8(&o, '\n');
  put_elems(&o, count, es);
  save("npy", name, &o);
}

static void npy_seeds(void) {
  npy_seed("f4_2d", 1, "<f4", "(3, 4)", 12, 4, 0);
  npy_seed("f4_1row", 1, "<f4", "(1, 1)", 1, 4, 0);
  npy_seed("f4_1d", 1, "<f4", "(5,)", 5, 4, 0);
  npy_seed("f2_2d", 1, "<f2", "(2, 3)", 6, 2, 0);
  npy_seed("u1_2d", 1, "|u1", "(4, 2)", 8, 1, 0);
  npy_seed("i1_2d", 1, "|i1", "(2, 2)", 4, 1, 0);
  npy_seed("v2_f4", 2, "<f4", "(2, 2)", 4, 4, 0);
  npy_seed("v3_f4", 3, "<f4", "(2, 2)", 4, 4, 0);
  npy_seed("odd_offset_f4", 1, "<f4", "(3, 2)", 6, 4, 1);
  npy_seed("offset_2_f4", 1, "<f4", "(3, 2)", 6, 4, 2);
  npy_seed("odd_offset_f2", 1, "<f2", "(3, 2)", 6, 2, 1);
  npy_seed("trailing_data", 1, "<f4", "(2, 2)", 6, 4, 0);
  npy_seed("truncated", 1, "<f4", "(4, 4)", 15, 4, 0);
  npy_seed("three_d", 1, "<f4", "(2, 2, 2)", 8, 4, 0);
  npy_seed("scalar", 1, "<f4", "()", 1, 4, 0);
  npy_seed("big_endian", 1, ">f4", "(2, 2)", 4, 4, 0);
  npy_seed("float64", 1, "<f8", "(2, 2)", 8, 4, 0);
  npy_seed("shape_overflow", 1, "<f4", "(4611686018427387904, 4)", 4, 4, 0);
  npy_seed("dim_overflow", 1, "<f4", "(4, 99999999999999999999)", 4, 4, 0);
  npy_seed("u1_shape_overflow", 1, "|u1", "(4611686018427387903, 4)", 4, 1, 0);
}

/* ------------------------------------------------------------------- idx3 */

static void idx_image(bytes *o, uint32_t count, uint32_t rows, uint32_t cols, size_t pixels) {
  put_be32(o, 0x803);
  put_be32(o, count);
  put_be32(o, rows);
  put_be32(o, cols);
  for (size_t i = 0; i < pixels; i++) put_u8(o, (unsigned)(i * 29) & 0xff);
}

/* in as gzip, in `members` gzip members (gzip(1) concatenates them so). */
static void gzip_of(const bytes *in, int members, bytes *out) {
  out->n = 0;
  size_t cut = members == 1 ? in->n : in->n / 2;
  const unsigned char *part[2] = {in->b, in->b + cut};
  size_t len[2] = {cut, in->n - cut};
  for (int m = 0; m < members; m++) {
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, 9, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK) exit(1);
    z.next_in = (Bytef *)part[m];
    z.avail_in = (uInt)len[m];
    z.next_out = out->b + out->n;
    z.avail_out = (uInt)(sizeof out->b - out->n);
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) exit(1);
    out->n = sizeof out->b - z.avail_out;
    deflateEnd(&z);
  }
}

static void idx_seeds(void) {
  bytes raw = {.n = 0}, gz = {.n = 0};
  idx_image(&raw, 3, 2, 2, 12);
  save("idx3", "raw_3x2x2", &raw);
  gzip_of(&raw, 1, &gz);
  save("idx3", "gzip_3x2x2", &gz);
  gzip_of(&raw, 2, &gz);
  save("idx3", "gzip_two_members", &gz);
  raw.n = 0;
  idx_image(&raw, 1, 28, 28, 784);
  save("idx3", "raw_1x28x28", &raw);
  gzip_of(&raw, 1, &gz);
  gz.n -= 9;
  save("idx3", "gzip_truncated", &gz);
  raw.n = 0;
  idx_image(&raw, 4, 3, 3, 30);
  save("idx3", "raw_truncated", &raw);
  raw.n = 0;
  idx_image(&raw, 60000, 0xffffffffu, 0xffffffffu, 0);
  save("idx3", "pixels_overflow", &raw);
}

/* -------------------------------------------------------------------- ids */

static void id_seeds(void) {
  bytes o = {.n = 0};
  for (int r = 0; r < 3; r++) {
    put_i32(&o, 2);
    put_i32(&o, r);
    put_i32(&o, -1);
  }
  save("ivecs", "valid_3x2", &o);
  o.n = 0;
  put_i32(&o, 1);
  put_i32(&o, 7);
  save("ivecs", "valid_1x1", &o);
  o.n = 0;
  put_i32(&o, 3);
  put_i32(&o, 2);
  for (int i = 0; i < 6; i++) put_i32(&o, i * 1000 - 1);
  save("ibin", "valid_3x2", &o);
  o.n = 8;
  put_i32(&o, 5);
  save("ibin", "truncated", &o);
}

/* -------------------------------------------------------------------- api */

/* fuzz_api.c's decoding: calls - 1, then per call an op and its fields.
 * I64(v) is take_i64's encoding of a small v in [1, 32], ZERO its 0; a
 * params mask of zero keeps every default. */
#define I64(v) 0, (v) - 1
#define ZERO 2, 0 /* take_i64's first edge */

static void api_seed(const char *name, const unsigned char *b, size_t n) {
  bytes o = {.n = 0};
  put(&o, b, n);
  save("api", name, &o);
}

static void api_seeds(void) {
  /* op, mask (4), [batch,] n, d, k, n_init, cap, dtype, source (0: the array),
   * null ctx, present (60: x, labels, distances, statistics and their
   * counts; no weights), fill seeds */
  static const unsigned char train[] = {0, 0, 0, 0, 0, 0, I64(32), I64(2), I64(4),
                                        ZERO, I64(8), 0, 0, 0, 60, 7};
  static const unsigned char train_f16[] = {0, 0, 0, 0, 0, 0, I64(24), I64(3), I64(3),
                                            I64(1), I64(4), 1, 0, 0, 62, 9, 1, 3};
  static const unsigned char batched[] = {0, 1, 0, 0, 0, 0, I64(3), I64(16), I64(2),
                                          I64(3), ZERO, I64(4), 0, 0, 0, 60, 7};
  /* subsampled (max_points_per_centroid 2: 8 of 32 rows; a batch's 6 of 16):
   * the harness repeats a call that succeeds, which reads the context's kept
   * row list the second time */
  static const unsigned char subsampled[] = {0, 0, 0x80, 0, 0, 0, 0, 1, 0, I64(32), I64(2),
                                             I64(4), ZERO, I64(8), 0, 0, 0, 60, 7};
  static const unsigned char batched_sub[] = {0, 1, 0x80, 0, 0, 0, 0, 1, 0, I64(3), I64(16),
                                              I64(2), I64(3), ZERO, I64(4), 0, 0, 0, 60, 7};
  /* progress and log callbacks, the run stopped at the 2nd iteration */
  static const unsigned char stopped[] = {0, 0, 0, 0x30, 0, 2, I64(32), I64(2), I64(4),
                                          ZERO, I64(8), 0, 0, 0, 60, 7};
  static const unsigned char assign[] = {0, 2, 0, 0, 0, 0, I64(16), I64(3), I64(4), 0, 12, 1, 2};
  static const unsigned char params[] = {0, 3, 1};
  static const unsigned char threads[] = {0, 4, 0, 2, 0};
  static const unsigned char perm[] = {0, 7, I64(30), I64(5), I64(10), 0};
  static const unsigned char probe[] = {0, 8, 8, 0, 5, 0, 0, 1};
  static const unsigned char misc[] = {0, 9, 0, 0, 1, 0, 1, 0, 3};
  /* fkm_order_coverage with a BLAS (params bit 20): n, d, k, f32, covered set */
  static const unsigned char coverage[] = {0, 12, 0, 0, 0x10, 0, I64(30), I64(4), I64(5), 0, 1};
  unsigned char parse[2 + 2 + 64 + 1 + 4] = {0, 5, 0, 0};
  memcpy(parse + 4, "faiss-1.8.0-avx2", 16);
  api_seed("train", train, sizeof train);
  api_seed("train_f16", train_f16, sizeof train_f16);
  api_seed("train_batched", batched, sizeof batched);
  api_seed("train_stopped", stopped, sizeof stopped);
  api_seed("train_subsampled", subsampled, sizeof subsampled);
  api_seed("train_batched_subsampled", batched_sub, sizeof batched_sub);
  api_seed("assign", assign, sizeof assign);
  api_seed("params_init", params, sizeof params);
  api_seed("threads", threads, sizeof threads);
  api_seed("profile_parse", parse, sizeof parse);
  api_seed("rand_perm", perm, sizeof perm);
  api_seed("probe", probe, sizeof probe);
  api_seed("misc", misc, sizeof misc);
  api_seed("order_coverage", coverage, sizeof coverage);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_corpus DIR\n");
    return 2;
  }
  root = argv[1];
  if (mkdir(root, 0755) != 0 && errno != EEXIST) {
    perror(root);
    return 1;
  }
  bin_seeds("fbin", 4);
  bin_seeds("u8bin", 1);
  bin_seeds("i8bin", 1);
  vecs_seeds("fvecs", 4);
  vecs_seeds("bvecs", 1);
  npy_seeds();
  idx_seeds();
  id_seeds();
  api_seeds();
  return 0;
}
