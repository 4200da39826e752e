/* Vector file formats: the atomic writers (see matrix_io.h). */
#define _XOPEN_SOURCE 700 /* realpath */
#include "matrix_io.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------- the run's files in flight
 *
 * Every temporary file and every output the run has put in place is listed
 * here until the run keeps them (fkm_cli_outputs_keep): a fatal signal then
 * removes them all (fkm_cli_outputs_remove, async-signal-safe), so a run
 * leaves its complete outputs or none. Slots are written by the main thread
 * only; a slot's state is stored after its paths. */
enum { SLOT_FREE = 0, SLOT_WRITING = 1, SLOT_PLACED = 2 };
#define MAX_SLOTS 8
static struct slot {
  char tmp[4096];
  char final[4096];
  volatile sig_atomic_t state;
} g_slots[MAX_SLOTS];

static void slot_set(struct slot *s, sig_atomic_t state) {
  atomic_signal_fence(memory_order_seq_cst);
  s->state = state;
  atomic_signal_fence(memory_order_seq_cst);
}

static struct slot *slot_open(const char *tmp, const char *final) {
  for (int i = 0; i < MAX_SLOTS; i++) {
    struct slot *s = &g_slots[i];
    if (s->state != SLOT_FREE) continue;
    snprintf(s->tmp, sizeof s->tmp, "%s", tmp);
    snprintf(s->final, sizeof s->final, "%s", final);
    slot_set(s, SLOT_WRITING);
    return s;
  }
  return NULL; /* more files than slots: only the first eight are guarded */
}

static struct slot *slot_of(const char *tmp) {
  for (int i = 0; i < MAX_SLOTS; i++)
    if (g_slots[i].state != SLOT_FREE && !strcmp(g_slots[i].tmp, tmp)) return &g_slots[i];
  return NULL;
}

void fkm_cli_outputs_remove(void) {
  for (int i = 0; i < MAX_SLOTS; i++) {
    struct slot *s = &g_slots[i];
    const sig_atomic_t state = s->state;
    if (state == SLOT_FREE) continue;
    unlink(s->tmp);
    if (state == SLOT_PLACED) unlink(s->final);
    s->state = SLOT_FREE;
  }
}

int fkm_cli_outputs_pending(void) {
  for (int i = 0; i < MAX_SLOTS; i++)
    if (g_slots[i].state != SLOT_FREE) return 1;
  return 0;
}

void fkm_cli_outputs_keep(void) {
  for (int i = 0; i < MAX_SLOTS; i++) slot_set(&g_slots[i], SLOT_FREE);
}

int fkm_cli_temp_path(const char *path, char *tmp, size_t len, char *msg) {
  int w = snprintf(tmp, len, "%s.tmp-XXXXXX", path);
  if (w < 0 || (size_t)w >= len) return fkm_cli_fail(msg, "%s: path too long", path);
  /* no signal between the file's creation and its slot: one landing there
   * would remove the other outputs and leave this file (a fatal signal
   * arriving meanwhile is delivered once the slot holds the name) */
  sigset_t all, saved;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &saved);
  int fd = mkstemp(tmp);
  if (fd >= 0) slot_open(tmp, path);
  const int e = errno;
  sigprocmask(SIG_SETMASK, &saved, NULL);
  if (fd < 0) return fkm_cli_fail(msg, "%s: cannot create a file beside it: %s", path, strerror(e));
  /* mkstemp makes it 0600: give it the mode a plain create would (0666
   * less the umask), whichever writer fills it */
  const mode_t mask = umask(0);
  umask(mask);
  fchmod(fd, 0666 & ~mask);
  close(fd);
  return 0;
}

int fkm_cli_temp_commit(const char *tmp, const char *path, char *msg) {
  struct slot *s = slot_of(tmp);
  if (s) slot_set(s, SLOT_PLACED); /* a signal from here on removes both names */
  if (rename(tmp, path) != 0) {
    int e = errno;
    fkm_cli_temp_discard(tmp);
    return fkm_cli_fail(msg, "%s: cannot rename the finished file into place: %s", path,
                        strerror(e));
  }
  return 0;
}

void fkm_cli_temp_discard(const char *tmp) {
  struct slot *s = slot_of(tmp);
  if (s) slot_set(s, SLOT_WRITING); /* never the final name: it is not ours */
  unlink(tmp);
  if (s) slot_set(s, SLOT_FREE);
}

int fkm_cli_out_open(fkm_cli_outfile *o, const char *path, char *msg) {
  memset(o, 0, sizeof *o);
  if (strlen(path) >= sizeof o->final) return fkm_cli_fail(msg, "%s: path too long", path);
  strcpy(o->final, path);
  if (fkm_cli_temp_path(path, o->tmp, sizeof o->tmp, msg) != 0) return -1;
  int fd = open(o->tmp, O_WRONLY | O_TRUNC);
  o->fp = fd >= 0 ? fdopen(fd, "wb") : NULL;
  if (!o->fp) {
    int e = errno;
    if (fd >= 0) close(fd);
    fkm_cli_temp_discard(o->tmp);
    return fkm_cli_fail(msg, "%s: cannot open: %s", path, strerror(e));
  }
  return 0;
}

int fkm_cli_out_commit(fkm_cli_outfile *o, char *msg) {
  FILE *fp = o->fp;
  o->fp = NULL;
  int bad = ferror(fp);
  if (fclose(fp) != 0) bad = 1;
  if (bad) {
    int e = errno;
    fkm_cli_temp_discard(o->tmp);
    return fkm_cli_fail(msg, "%s: write failed: %s", o->final, strerror(e));
  }
  return fkm_cli_temp_commit(o->tmp, o->final, msg);
}

void fkm_cli_out_abort(fkm_cli_outfile *o) {
  if (o->fp) {
    fclose(o->fp);
    o->fp = NULL;
    fkm_cli_temp_discard(o->tmp);
  }
}

/* --------------------------------------------- outputs checked up front */

int fkm_cli_check_writable(const char *path, const char *what, char *msg) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    return fkm_cli_fail(msg, "%s: %s is a directory, not a file name", path, what);
  char tmp[4096];
  int w = snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path);
  if (w < 0 || (size_t)w >= sizeof tmp) return fkm_cli_fail(msg, "%s: path too long", path);
  int fd = mkstemp(tmp);
  if (fd < 0)
    return fkm_cli_fail(msg, "%s: cannot write %s there: %s", path, what, strerror(errno));
  close(fd);
  unlink(tmp);
  return 0;
}

/* The file a path names, for comparing two outputs: its directory resolved
 * (links, "..", ".") and its last component. */
static int identity(const char *path, char *out, size_t len) {
  char dir[4096], real[PATH_MAX];
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  if (slash) {
    size_t n = slash == path ? 1 : (size_t)(slash - path);
    if (n >= sizeof dir) return -1;
    memcpy(dir, path, n);
    dir[n] = '\0';
  } else {
    strcpy(dir, ".");
  }
  if (!realpath(dir, real)) return -1;
  int w = snprintf(out, len, "%s/%s", real, base);
  return w < 0 || (size_t)w >= len ? -1 : 0;
}

int fkm_cli_check_distinct(const char *const *paths, const char *const *names, int count,
                           char *msg) {
  char a[8192], b[8192];
  for (int i = 0; i < count; i++)
    for (int j = i + 1; j < count; j++) {
      if (!paths[i] || !paths[j]) continue;
      int same = !strcmp(paths[i], paths[j]);
      if (!same && identity(paths[i], a, sizeof a) == 0 &&
          identity(paths[j], b, sizeof b) == 0)
        same = !strcmp(a, b);
      if (same)
        return fkm_cli_fail(msg, "%s and %s name the same file (%s): one would overwrite the "
                            "other",
                            names[i], names[j], paths[j]);
    }
  return 0;
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
