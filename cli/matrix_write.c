/* Vector file formats: the atomic writers (see matrix_io.h). */
#include "matrix_io.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------- writers */

int fkm_cli_temp_path(const char *path, char *tmp, size_t len, char *msg) {
  int w = snprintf(tmp, len, "%s.tmp-XXXXXX", path);
  if (w < 0 || (size_t)w >= len) return fkm_cli_fail(msg, "%s: path too long", path);
  int fd = mkstemp(tmp);
  if (fd < 0) return fkm_cli_fail(msg, "%s: cannot create a file beside it: %s", path, strerror(errno));
  close(fd);
  return 0;
}

int fkm_cli_out_open(fkm_cli_outfile *o, const char *path, char *msg) {
  memset(o, 0, sizeof *o);
  if (strlen(path) >= sizeof o->final) return fkm_cli_fail(msg, "%s: path too long", path);
  strcpy(o->final, path);
  int w = snprintf(o->tmp, sizeof o->tmp, "%s.tmp-XXXXXX", path);
  if (w < 0 || (size_t)w >= sizeof o->tmp) return fkm_cli_fail(msg, "%s: path too long", path);
  int fd = mkstemp(o->tmp);
  if (fd < 0) return fkm_cli_fail(msg, "%s: cannot create: %s", path, strerror(errno));
  fchmod(fd, 0644);
  o->fp = fdopen(fd, "wb");
  if (!o->fp) {
    close(fd);
    unlink(o->tmp);
    return fkm_cli_fail(msg, "%s: cannot open: %s", path, strerror(errno));
  }
  return 0;
}

int fkm_cli_out_commit(fkm_cli_outfile *o, char *msg) {
  FILE *fp = o->fp;
  o->fp = NULL;
  int bad = ferror(fp);
  if (fclose(fp) != 0) bad = 1;
  if (bad) {
    unlink(o->tmp);
    return fkm_cli_fail(msg, "%s: write failed: %s", o->final, strerror(errno));
  }
  if (rename(o->tmp, o->final) != 0) {
    int e = errno;
    unlink(o->tmp);
    return fkm_cli_fail(msg, "%s: cannot rename the finished file into place: %s", o->final, strerror(e));
  }
  return 0;
}

void fkm_cli_out_abort(fkm_cli_outfile *o) {
  if (o->fp) {
    fclose(o->fp);
    o->fp = NULL;
    unlink(o->tmp);
  }
}

static void write_npy_header(FILE *fp, const char *descr, int64_t n, int64_t d, int two_d) {
  char dict[256];
  if (two_d)
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld, %lld), }",
             descr, (long long)n, (long long)d);
  else
    snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%lld,), }",
             descr, (long long)n);
  size_t body = strlen(dict) + 1; /* + '\n' */
  size_t total = (10 + body + 63) / 64 * 64;
  size_t hlen = total - 10;
  unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                           (unsigned char)(hlen & 0xff), (unsigned char)(hlen >> 8)};
  fwrite(pre, 1, 10, fp);
  fputs(dict, fp);
  for (size_t i = body; i < hlen; i++) fputc(' ', fp);
  fputc('\n', fp);
}

int fkm_cli_check_f32_output(const char *path, char *msg) {
  const char *e = fkm_cli_extension(path);
  if (!strcmp(e, "fvecs") || !strcmp(e, "fbin") || !strcmp(e, "npy")) return 1;
  fkm_cli_fail(msg, "%s: cannot write '.%s' (use .fvecs, .fbin or .npy)", path, e);
  return 0;
}

int fkm_cli_check_label_output(const char *path, char *msg) {
  const char *e = fkm_cli_extension(path);
  if (!strcmp(e, "ivecs") || !strcmp(e, "ibin") || !strcmp(e, "npy")) return 1;
  fkm_cli_fail(msg, "%s: cannot write labels as '.%s' (use .npy, .ivecs or .ibin)", path, e);
  return 0;
}

int fkm_cli_write_f32(const char *path, int64_t n, int64_t d, const float *x, char *msg) {
  if (!fkm_cli_check_f32_output(path, msg)) return -1;
  const char *e = fkm_cli_extension(path);
  if ((!strcmp(e, "fvecs") || !strcmp(e, "fbin")) && (n > INT32_MAX || d > INT32_MAX))
    return fkm_cli_fail(msg, "%s: %lld x %lld does not fit the int32 header of .%s", path,
                (long long)n, (long long)d, e);
  fkm_cli_outfile o;
  if (fkm_cli_out_open(&o, path, msg) != 0) return -1;
  FILE *fp = o.fp;
  if (!strcmp(e, "fvecs")) {
    int32_t d32 = (int32_t)d;
    for (int64_t i = 0; i < n; i++) {
      fwrite(&d32, 4, 1, fp);
      fwrite(x + i * d, 4, (size_t)d, fp);
    }
  } else if (!strcmp(e, "fbin")) {
    int32_t h[2] = {(int32_t)n, (int32_t)d};
    fwrite(h, 4, 2, fp);
    fwrite(x, 4, (size_t)(n * d), fp);
  } else {
    write_npy_header(fp, "<f4", n, d, 1);
    fwrite(x, 4, (size_t)(n * d), fp);
  }
  return fkm_cli_out_commit(&o, msg);
}

int fkm_cli_write_labels(const char *path, int64_t n, const int64_t *labels, char *msg) {
  if (!fkm_cli_check_label_output(path, msg)) return -1;
  const char *e = fkm_cli_extension(path);
  fkm_cli_outfile o;
  if (fkm_cli_out_open(&o, path, msg) != 0) return -1;
  FILE *fp = o.fp;
  if (!strcmp(e, "npy")) {
    write_npy_header(fp, "<i8", n, 1, 0);
    fwrite(labels, 8, (size_t)n, fp);
  } else {
    int is_vecs = !strcmp(e, "ivecs");
    if (!is_vecs) {
      int32_t h[2] = {(int32_t)n, 1};
      fwrite(h, 4, 2, fp);
    }
    for (int64_t i = 0; i < n; i++) {
      int32_t one = 1, l = (int32_t)labels[i];
      if (is_vecs) fwrite(&one, 4, 1, fp);
      fwrite(&l, 4, 1, fp);
    }
  }
  return fkm_cli_out_commit(&o, msg);
}
