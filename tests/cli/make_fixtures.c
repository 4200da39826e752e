/* Writes the CLI tests' input files into the directory argv[1]: one small
 * clustered data set in every format the CLI reads (same values in each),
 * and one broken file per error the CLI must name. Deterministic. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#ifdef FKM_FIXTURES_ZLIB
#include <zlib.h>
#endif

enum { N = 3000, D = 8, BLOBS = 12, NQ = 100 };

static const char *dir;
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static double uniform(void) { /* xorshift64*, 53 bits */
  rng_state ^= rng_state >> 12;
  rng_state ^= rng_state << 25;
  rng_state ^= rng_state >> 27;
  return (double)((rng_state * 0x2545f4914f6cdd1dull) >> 11) * 0x1p-53;
}

static FILE *open_out(const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  FILE *f = fopen(path, "wb");
  if (!f) {
    perror(path);
    exit(1);
  }
  return f;
}

static void put_i32(FILE *f, int32_t v) { fwrite(&v, 4, 1, f); }

static void write_bin(const char *name, int32_t n, int32_t d, const void *x, size_t esize,
                      size_t keep_bytes) {
  FILE *f = open_out(name);
  put_i32(f, n);
  put_i32(f, d);
  size_t bytes = (size_t)n * (size_t)d * esize;
  fwrite(x, 1, keep_bytes < bytes ? keep_bytes : bytes, f);
  fclose(f);
}

static void write_vecs(const char *name, int32_t n, int32_t d, const void *x, size_t esize,
                       int32_t bad_row, int32_t bad_d, size_t cut_bytes) {
  FILE *f = open_out(name);
  for (int32_t i = 0; i < n; i++) {
    put_i32(f, i == bad_row ? bad_d : d);
    fwrite((const char *)x + (size_t)i * (size_t)d * esize, esize, (size_t)d, f);
  }
  fclose(f);
  if (cut_bytes) { /* cut the file short by cut_bytes */
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    rewind(f);
    char *buf = malloc((size_t)len);
    size_t got = fread(buf, 1, (size_t)len, f);
    fclose(f);
    f = fopen(path, "wb");
    fwrite(buf, 1, got - cut_bytes, f);
    fclose(f);
    free(buf);
  }
}

/* A .npy file whose header is `skew` bytes longer than numpy's padding to
 * 64: skew = 1 puts the data at an odd offset (numpy still loads it). */
static void write_npy_skewed(const char *name, const char *descr, const char *shape,
                             const void *x, size_t bytes, size_t keep_bytes, size_t skew) {
  char dict[256];
  snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr,
           shape);
  size_t body = strlen(dict) + 1, hlen = (10 + body + 63) / 64 * 64 - 10 + skew;
  FILE *f = open_out(name);
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)(hlen & 0xff),
                           (unsigned char)(hlen >> 8)};
  fwrite(pre, 1, 10, f);
  fputs(dict, f);
  for (size_t i = body; i < hlen; i++) fputc(' ', f);
  fputc('\n', f);
  fwrite(x, 1, keep_bytes < bytes ? keep_bytes : bytes, f);
  fclose(f);
}

static void write_npy(const char *name, const char *descr, const char *shape, const void *x,
                      size_t bytes, size_t keep_bytes) {
  write_npy_skewed(name, descr, shape, x, bytes, keep_bytes, 0);
}

/* An idx3 image file (big-endian header, one byte per pixel) of `count`
 * images of rows x cols, holding `have` bytes of pixels; gzip'd when the
 * name ends in .gz. */
static void write_idx(const char *name, uint32_t count, uint32_t rows, uint32_t cols,
                      const uint8_t *px, size_t have) {
  unsigned char h[16];
  const uint32_t v[4] = {0x803, count, rows, cols};
  for (int i = 0; i < 16; i++) h[i] = (unsigned char)(v[i / 4] >> (24 - 8 * (i % 4)));
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  size_t len = strlen(path);
  if (len > 3 && strcmp(path + len - 3, ".gz") == 0) {
#ifdef FKM_FIXTURES_ZLIB
    gzFile g = gzopen(path, "wb");
    if (!g || gzwrite(g, h, 16) != 16 || (have && gzwrite(g, px, (unsigned)have) != (int)have)) {
      fprintf(stderr, "%s: cannot write\n", path);
      exit(1);
    }
    gzclose(g);
#endif
    return;
  }
  FILE *f = open_out(name);
  fwrite(h, 1, 16, f);
  fwrite(px, 1, have, f);
  fclose(f);
}

static void make_subdir(const char *name) {
  char path[4096];
  snprintf(path, sizeof path, "%s/%s", dir, name);
  mkdir(path, 0755); /* may exist already */
}

/* float -> IEEE half, round to nearest even (values here are small, normal). */
static uint16_t to_half(float v) {
  uint32_t b;
  memcpy(&b, &v, 4);
  uint32_t sign = (b >> 16) & 0x8000;
  int32_t exp = (int32_t)((b >> 23) & 0xff) - 127 + 15;
  uint32_t man = b & 0x7fffff;
  if (exp <= 0) return (uint16_t)sign; /* not used: flush tiny values */
  uint32_t h = sign | ((uint32_t)exp << 10) | (man >> 13);
  uint32_t rest = man & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1))) h++;
  return (uint16_t)h;
}

static float from_half(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff;
  if (exp == 0) return sign ? -0.0f : 0.0f;
  uint32_t b = sign | ((exp + 112) << 23) | (man << 13);
  float v;
  memcpy(&v, &b, 4);
  return v;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: make_fixtures DIR\n");
    return 2;
  }
  dir = argv[1];
  mkdir(dir, 0755); /* may exist already */
  static float x[N * D], q[NQ * D], centers[BLOBS * D], w[N], f16as32[N * D];
  static uint16_t h[N * D];
  static uint8_t u8[N * D];
  static int8_t i8[N * D];
  for (int i = 0; i < BLOBS * D; i++) centers[i] = (float)(40.0 * uniform() - 20.0);
  for (int i = 0; i < N; i++) {
    int b = (int)(uniform() * BLOBS);
    for (int j = 0; j < D; j++) {
      double g = uniform() + uniform() + uniform() - 1.5; /* bell-shaped noise */
      x[i * D + j] = (float)(centers[b * D + j] + 2.0 * g);
    }
    w[i] = (float)(0.5 + uniform());
  }
  for (int i = 0; i < NQ * D; i++) q[i] = x[(i * 7) % (N * D)] + (float)(uniform() - 0.5);
  for (int i = 0; i < N * D; i++) {
    h[i] = to_half(x[i]);
    f16as32[i] = from_half(h[i]);
    long v = lround(x[i] * 3.0f + 128.0f);
    u8[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    i8[i] = (int8_t)(u8[i] - 128);
  }
  char shape[64];
  snprintf(shape, sizeof shape, "(%d, %d)", N, D);
  size_t fb = sizeof x;

  /* The same data in every format. */
  write_bin("blobs.fbin", N, D, x, 4, SIZE_MAX);
  write_vecs("blobs.fvecs", N, D, x, 4, -1, 0, 0);
  write_npy("blobs.npy", "<f4", shape, x, fb, SIZE_MAX);
  write_npy("blobs_f16.npy", "<f2", shape, h, sizeof h, SIZE_MAX);
  write_npy("blobs_f16as32.npy", "<f4", shape, f16as32, fb, SIZE_MAX);
  write_bin("blobs.u8bin", N, D, u8, 1, SIZE_MAX);
  write_vecs("blobs.bvecs", N, D, u8, 1, -1, 0, 0);
  write_npy("blobs_u8.npy", "|u1", shape, u8, sizeof u8, SIZE_MAX);
  write_bin("blobs.i8bin", N, D, i8, 1, SIZE_MAX);
  write_npy("blobs_i8.npy", "|i1", shape, i8, sizeof i8, SIZE_MAX);
  write_bin("queries.fbin", NQ, D, q, 4, SIZE_MAX);
  char wshape[32];
  snprintf(wshape, sizeof wshape, "(%d,)", N);
  write_npy("weights.npy", "<f4", wshape, w, sizeof w, SIZE_MAX);
  write_bin("init.fbin", 4, D, x, 4, SIZE_MAX);
  /* One shard file per MPI rank, uneven (one shard of a single row). */
  const int cuts[5] = {0, N / 5, N / 5 + 1, 3 * N / 4, N};
  for (int r = 0; r < 4; r++) {
    int rows = cuts[r + 1] - cuts[r];
    char name[32], rshape[64], rwshape[32];
    snprintf(rshape, sizeof rshape, "(%d, %d)", rows, D);
    snprintf(rwshape, sizeof rwshape, "(%d,)", rows);
    snprintf(name, sizeof name, "shard_%d.npy", r);
    write_npy(name, "<f4", rshape, x + (size_t)cuts[r] * D, sizeof(float) * rows * D, SIZE_MAX);
    snprintf(name, sizeof name, "wshard_%d.npy", r);
    write_npy(name, "<f4", rwshape, w + cuts[r], sizeof(float) * rows, SIZE_MAX);
  }
  write_bin("small.fbin", 10, D, x, 4, SIZE_MAX);

  /* Broken inputs, one problem each. */
  write_vecs("dim_mismatch.fvecs", N, D, x, 4, 17, 7, 0);
  write_vecs("truncated.fvecs", N, D, x, 4, -1, 0, 5);
  write_bin("truncated.fbin", N, D, x, 4, fb - 12);
  write_npy("truncated.npy", "<f4", shape, x, fb, fb / 2);
  write_npy("float64.npy", "<f8", "(10, 8)", x, 640, SIZE_MAX);
  write_npy("three_d.npy", "<f4", "(10, 2, 4)", x, 320, SIZE_MAX);
  FILE *f = open_out("bad_magic.npy");
  fputs("NOT A NUMPY FILE AT ALL", f);
  fclose(f);
  f = open_out("bad_magic.fvecs");
  put_i32(f, -3);
  fwrite(x, 4, 64, f);
  fclose(f);
  f = open_out("empty.fbin");
  fclose(f);
  f = open_out("blobs.txt");
  fputs("1 2 3\n", f);
  fclose(f);
  static float bad[N * D];
  memcpy(bad, x, sizeof bad);
  bad[123 * D + 5] = NAN;
  write_bin("nan.fbin", N, D, bad, 4, SIZE_MAX);
  static uint16_t badh[N * D];
  memcpy(badh, h, sizeof badh);
  badh[7 * D + 2] = 0x7c00; /* +Inf */
  write_npy("inf_f16.npy", "<f2", shape, badh, sizeof badh, SIZE_MAX);
  write_bin("init_d7.fbin", 4, 7, x, 4, SIZE_MAX);
  write_bin("init_13.fbin", 13, D, x, 4, SIZE_MAX);
  write_bin("weights_short.fbin", N - 1, 1, w, 4, SIZE_MAX);
  static float wneg[N];
  memcpy(wneg, w, sizeof wneg);
  wneg[42] = -1.0f;
  write_npy("weights_negative.npy", "<f4", wshape, wneg, sizeof wneg, SIZE_MAX);
  write_bin("queries_d7.fbin", NQ, 7, q, 4, SIZE_MAX);
  static int32_t gt[(NQ - 1) * 1];
  for (int i = 0; i < NQ - 1; i++) gt[i] = i;
  write_vecs("gt_short.ivecs", NQ - 1, 1, gt, 4, -1, 0, 0);

  /* Issue 19: headers whose sizes overflow, data at unaligned offsets. */
  write_npy("npy_shape_overflow.npy", "<f4", "(4611686018427387904, 4)", x, 128, SIZE_MAX);
  write_npy("npy_dim_overflow.npy", "<f4", "(4, 99999999999999999999)", x, 128, SIZE_MAX);
  write_npy("npy_u8_shape_overflow.npy", "|u1", "(4611686018427387903, 4)", u8, 128, SIZE_MAX);
  write_bin("fbin_huge_header.fbin", INT32_MAX, INT32_MAX, x, 4, 64);
  write_npy_skewed("blobs_odd.npy", "<f4", shape, x, fb, SIZE_MAX, 1);
  write_npy_skewed("blobs_off2.npy", "<f4", shape, x, fb, SIZE_MAX, 2);
  write_npy_skewed("blobs_f16_odd.npy", "<f2", shape, h, sizeof h, SIZE_MAX, 1);
  /* idx3 image sets for flashkm demo --data: 2000 + 200 images of 4 x 4. */
  static uint8_t px[2200 * 16];
  for (int i = 0; i < 2200 * 16; i++) px[i] = u8[i % (N * D)];
  make_subdir("idx_raw");
  write_idx("idx_raw/train-images-idx3-ubyte", 2000, 4, 4, px, 2000 * 16);
  write_idx("idx_raw/t10k-images-idx3-ubyte", 200, 4, 4, px + 2000 * 16, 200 * 16);
  write_bin("idx_raw_train.u8bin", 2000, 16, px, 1, SIZE_MAX); /* the same pixels */
  make_subdir("idx_pixels_overflow");
  write_idx("idx_pixels_overflow/train-images-idx3-ubyte.gz", 60000, 0xffffffffu, 0xffffffffu,
            u8, 64);
  make_subdir("idx_truncated");
  write_idx("idx_truncated/train-images-idx3-ubyte.gz", 1000, 28, 28, u8, 10 * 784);
  make_subdir("idx_header_too_large");
  write_idx("idx_header_too_large/train-images-idx3-ubyte.gz", 1 << 24, 1024, 1024, u8, 64);
  return 0;
}
