/* Reading and writing the vector files the CLI understands.
 *
 * Inputs are memory-mapped. Formats (picked by file extension):
 *   .fvecs  rows of (int32 d, d float32)           .bvecs  rows of (int32 d, d uint8)
 *   .fbin   int32 n, int32 d, then n*d float32     .u8bin / .i8bin  same with uint8 / int8
 *   .npy    NumPy v1-v3, C order, 1-D or 2-D, dtype <f4, <f2, |u1, |i1
 * float32 and float16 data is used in place (no copy) when its rows are
 * contiguous (.fbin, .npy) and aligned; .fvecs rows are gathered (or, for
 * a training run, read in place at their stride), data at an
 * unaligned offset (a .npy header may put it there) is copied, and 8-bit
 * data is converted to float32, as FAISS does with such files. Every reader
 * also parses from memory (fkm_cli_matrix_parse, fkm_cli_parse_ids,
 * fkm_cli_parse_idx_images): the path readers map the file and parse the
 * mapping, and tests/fuzz feeds them arbitrary bytes.
 *
 * Outputs (.fvecs, .fbin, .npy for float32; .npy, .ivecs, .ibin for labels)
 * are written to a temporary file beside the target and renamed into place
 * only when complete, so a failure never leaves a half-written file.
 *
 * Every failure fills a one-line message that names the file and the problem.
 */
#ifndef FKM_CLI_MATRIX_IO_H
#define FKM_CLI_MATRIX_IO_H

#include <stddef.h>
#include <stdint.h>

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define FKM_CLI_MSG_LEN 1024

/** Formats a one-line message into msg (FKM_CLI_MSG_LEN bytes); returns -1. */
int fkm_cli_fail(char *msg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

typedef enum fkm_cli_elem {
  FKM_CLI_F32 = 0,
  FKM_CLI_F16 = 1,
  FKM_CLI_U8 = 2,
  FKM_CLI_I8 = 3
} fkm_cli_elem;

/** A dense row-major (n, d) matrix ready for flashkm: data is float32 or
 *  float16 (dtype), either pointing into a mapping or into owned memory. */
typedef struct fkm_cli_matrix {
  int64_t n, d;
  fkm_dtype dtype;
  fkm_cli_elem file_elem; /* element type stored in the file */
  const void *data;
  int64_t row_stride;     /* bytes between rows when they are not packed (a .fvecs
                             file read in place, fkm_cli_matrix_read_rows), else 0 */
  void *owned;            /* heap copy, or NULL */
  void *map;              /* mmap base, or NULL */
  size_t map_len;
  int64_t n_all, first;   /* the file's rows; these n are rows first .. first + n of them */
} fkm_cli_matrix;

/** Map and check `path`. On failure returns -1 with a message in msg and
 *  leaves *m empty. */
int fkm_cli_matrix_read(const char *path, fkm_cli_matrix *m, char *msg);

/** fkm_cli_matrix_read, but a .fvecs file of float32 rows stays in its
 *  mapping, rows 4 + 4 d bytes apart (m->row_stride): nothing is gathered,
 *  for a training run that reads rows through a flashkm data source. */
int fkm_cli_matrix_read_rows(const char *path, fkm_cli_matrix *m, char *msg);

/** fkm_cli_matrix_read_rows for part `part` of `parts` (a distributed
 *  run's rank): only the rows n_all * part / parts .. n_all * (part + 1) /
 *  parts are checked, gathered and widened (m->first, m->n_all). */
int fkm_cli_matrix_read_part(const char *path, int part, int parts, fkm_cli_matrix *m,
                             char *msg);

/** 8-bit data (m->file_elem U8 or I8, m->data n * d bytes) becomes owned
 *  float32 values, as FAISS's tools do with .bvecs; m->dtype is float32. */
int fkm_cli_matrix_widen(const char *name, fkm_cli_matrix *m, char *msg);

/** Parse the len bytes at `bytes` as a file of format ext (an extension as
 *  fkm_cli_extension gives it: "fvecs", "npy", ...); name is the file's name
 *  in messages. On success m->data may point into bytes (when m->owned is
 *  NULL), so bytes must stay valid and unchanged until fkm_cli_matrix_free;
 *  m->map is NULL. On failure returns -1 with a message and leaves *m
 *  empty. */
int fkm_cli_matrix_parse(const char *name, const char *ext, const void *bytes, size_t len,
                         fkm_cli_matrix *m, char *msg);

/** Read an (n, k) int32 id matrix (.ivecs or .ibin, e.g. ground-truth
 *  neighbours) into a malloc'd int64 array. */
int fkm_cli_read_ids(const char *path, int64_t *n, int64_t *k, int64_t **ids, char *msg);
/** The same from len bytes at `bytes` (ext "ivecs" or "ibin"); *ids owns
 *  its memory, bytes may go once it returns. */
int fkm_cli_parse_ids(const char *name, const char *ext, const void *bytes, size_t len,
                      int64_t *n, int64_t *k, int64_t **ids, char *msg);

/** An idx3 image file (Fashion-MNIST's train-images-idx3-ubyte.gz), gzip'd
 *  or not (told by its first bytes), as float32 rows of rows * cols pixels
 *  valued 0..255 (mnist.c). A missing "NAME.gz" is looked for as "NAME". */
int fkm_cli_read_idx_images(const char *path, fkm_cli_matrix *m, char *msg);
/** The same from len bytes at `bytes`; *m owns its memory. */
int fkm_cli_parse_idx_images(const char *name, const void *bytes, size_t len,
                             fkm_cli_matrix *m, char *msg);

/** Map `path` (a non-empty regular file) read-only into *map, *len bytes;
 *  fkm_cli_unmap releases it. */
int fkm_cli_map(const char *path, void **map, size_t *len, char *msg);
void fkm_cli_unmap(void *map, size_t len);

/** Release a matrix (accepts an empty or zeroed one). */
void fkm_cli_matrix_free(fkm_cli_matrix *m);

/** Find the first non-finite value; returns its row, or -1 if all finite. */
int64_t fkm_cli_matrix_first_nonfinite(const fkm_cli_matrix *m, int64_t *col);

/** Convert to float32 in place (a float16 matrix gets an owned float copy;
 *  float32 matrices are left as they are). Returns -1 on out-of-memory. */
int fkm_cli_matrix_to_f32(fkm_cli_matrix *m, char *msg);

/** Write an (n, d) float32 matrix; the format follows the extension of path
 *  (.fvecs, .fbin, .npy). Atomic: temp file + rename. */
int fkm_cli_write_f32(const char *path, int64_t n, int64_t d, const float *x,
                      char *msg);

/** Write n labels; .npy (int64), .ivecs or .ibin (int32). Atomic. */
int fkm_cli_write_labels(const char *path, int64_t n, const int64_t *labels,
                         char *msg);

/** 1 if the extension of path is one fkm_cli_write_f32 accepts (else 0, with
 *  a message), checked before any work starts. */
int fkm_cli_check_f32_output(const char *path, char *msg);
int fkm_cli_check_label_output(const char *path, char *msg);

/** Lower-case extension of path without the dot ("fvecs"), or "". */
const char *fkm_cli_extension(const char *path);

/** Atomic output of arbitrary content: open a temp file beside path, the
 *  caller writes to *fp, then commit renames it into place (or abort removes
 *  it). */
typedef struct fkm_cli_outfile {
  char tmp[4096];
  char final[4096];
  void *fp; /* FILE* */
} fkm_cli_outfile;

int fkm_cli_out_open(fkm_cli_outfile *o, const char *path, char *msg);
int fkm_cli_out_commit(fkm_cli_outfile *o, char *msg);
void fkm_cli_out_abort(fkm_cli_outfile *o);

/** A temporary path beside path for a writer that takes a file name (FAISS's
 *  write_index); fkm_cli_temp_commit renames it into place, or
 *  fkm_cli_temp_discard removes it. */
int fkm_cli_temp_path(const char *path, char *tmp, size_t len, char *msg);
int fkm_cli_temp_commit(const char *tmp, const char *path, char *msg);
void fkm_cli_temp_discard(const char *tmp);

/** The run's files in flight: every temporary file, and every output put in
 *  place, until fkm_cli_outputs_keep() (the run succeeded) forgets them.
 *  fkm_cli_outputs_remove() deletes them all; it is async-signal-safe, for
 *  the fatal-signal handler (common.c), so a killed run leaves its complete
 *  outputs or none (SIGKILL excepted: a *.tmp-XXXXXX file may then remain,
 *  never a partial file under an output's name). */
void fkm_cli_outputs_remove(void);
int fkm_cli_outputs_pending(void);
void fkm_cli_outputs_keep(void);

/** Before any work: path can be created (its directory exists and is
 *  writable, it is not a directory); what names it in the message
 *  ("the centroids"). */
int fkm_cli_check_writable(const char *path, const char *what, char *msg);
/** Before any work: no two of the count outputs (NULL entries skipped) are
 *  the same file; names[i] is paths[i]'s option ("-o"). */
int fkm_cli_check_distinct(const char *const *paths, const char *const *names, int count,
                           char *msg);

#ifdef __cplusplus
}
#endif

#endif
