/* The flashkm command: shared pieces of the subcommands. */
#ifndef FKM_CLI_H
#define FKM_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "flashkm.h"
#include "matrix_io.h"

/* Exit codes, documented in the README (the flashkm command). */
enum {
  FKM_EXIT_OK = 0,
  FKM_EXIT_FAIL = 1,        /* an error, or a parity level failed */
  FKM_EXIT_USAGE = 2,       /* bad command line */
  FKM_EXIT_INTERRUPTED = 130 /* Ctrl-C: 128 + SIGINT */
};

/** "flashkm: error: <message>" on stderr. */
void fkm_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ------------------------------------------------------- option parsing */

typedef struct fkm_cli_opt {
  const char *name; /* long name without "--" */
  char short_name;  /* 0: none */
  int has_arg;
  int id;
} fkm_cli_opt;

/** Walks argv from *i. Returns 1 with *id / *val set for an option, 2 with
 *  *val set for a positional argument, 0 at the end, -1 on a bad option
 *  (message printed, with the closest known option). "--name=value",
 *  "--name value", "-k 64", "-k64" and grouped flags ("-qv") work. */
int fkm_cli_next(int argc, char **argv, int *i, const fkm_cli_opt *opts,
                 int *id, const char **val);

/** The name among names[0..n) closest to word[0..len) (edit distance, or a
 *  prefix of it), or NULL when none is close: "did you mean" suggestions. */
const char *fkm_cli_closest(const char *word, size_t len, const char *const *names, size_t n);

/** Record the one positional INPUT of cmd; -1 (message printed) if *input
 *  is already set. */
int fkm_cli_take_input(const char *cmd, const char *val, const char **input);

/** Parse an integer / number option value; -1 (with message) if malformed or
 *  outside [lo, hi]. */
int fkm_cli_int(const char *opt, const char *val, long long lo, long long hi,
                long long *out);

/* ---------------------------------------------- the training options */

/** Options shared by train, parity and bench (FAISS's names). */
typedef struct fkm_cli_train_opts {
  fkm_params params;
  int64_t k;
  const char *init_path;
  const char *weights_path;
  fkm_backend backend;
  int device;
  int threads;
  int quiet;
  int profile_given;     /* --faiss-profile on the command line */
  int early_stop_given;  /* --early-stop-threshold on the command line */
  char profile_arg[64];  /* "linked", "flashkm" or the profile named */
} fkm_cli_train_opts;

/** Ids of the shared options start here; subcommands use ids below it. */
#define FKM_CLI_TRAIN_OPT_BASE 1000
extern const fkm_cli_opt fkm_cli_train_opts_table[];

/** A subcommand's option table: its own options (NULL-terminated), then the
 *  shared training options named in keep (NULL: all of them). table must
 *  hold FKM_CLI_MAX_OPTS entries. */
#define FKM_CLI_MAX_OPTS 64
void fkm_cli_make_table(const fkm_cli_opt *own, const char *const *keep, fkm_cli_opt *table);

void fkm_cli_train_opts_init(fkm_cli_train_opts *o);
/** Apply option `id` (from fkm_cli_train_opts_table); -1 on a bad value. */
int fkm_cli_train_opts_apply(fkm_cli_train_opts *o, int id, const char *val);
/** "faiss-1.7.3-none (the linked FAISS)": the run's profile, for reports. */
void fkm_cli_profile_describe(const fkm_cli_train_opts *o, char *buf, size_t size);
/** Help text of the shared options. */
void fkm_cli_train_opts_help(FILE *fp);

/** Inputs of one training run, loaded and checked against each other. In a
 *  distributed run x and weights are this rank's rows first .. first + x.n
 *  of the input's n_all. */
typedef struct fkm_cli_inputs {
  fkm_cli_matrix x, init, weights;
  int64_t n_init;
  int64_t n_all, first;
} fkm_cli_inputs;

/** Load INPUT, --init and --weights and check them (k <= n, dimensions,
 *  counts, finite values). rows_in_place: a .fvecs INPUT stays in its
 *  mapping at its row stride (in->x.row_stride, for fkm_train_source).
 *  Prints the error; returns -1 on failure. */
int fkm_cli_inputs_load(const char *input, const fkm_cli_train_opts *o, int rows_in_place,
                        fkm_cli_inputs *in);
/** The same for rank `rank` of `size` (ranks.c): the input stays mapped and
 *  this rank's x and weights are its rows n_all * rank / size .. n_all *
 *  (rank + 1) / size, the only ones it checks (the library names a bad
 *  value by its row in the whole input). shard: input (and the weights) are
 *  this rank's own file, all of its rows (pass rank 0 of 1); k and the
 *  values are the library's to check, over all ranks. */
int fkm_cli_inputs_load_part(const char *input, const fkm_cli_train_opts *o, int rows_in_place,
                             int rank, int size, int shard, fkm_cli_inputs *in);
void fkm_cli_inputs_free(fkm_cli_inputs *in);

/* ------------------------------------------------------ MPI ranks (ranks.c) */

/** This process's place in an `mpiexec -np P flashkm ...` launch. */
typedef struct fkm_cli_ranks {
  int rank, size;
  int mpi; /* MPI_Init ran */
} fkm_cli_ranks;

/** Joins MPI_COMM_WORLD when an MPI launcher started this process (rank 0
 *  of 1 otherwise). Prints the error; -1 on failure. */
int fkm_cli_ranks_begin(fkm_cli_ranks *r);
void fkm_cli_ranks_end(fkm_cli_ranks *r);
/** Makes ctx distributed over the ranks; prints the error, -1 on failure. */
int fkm_cli_ranks_attach(const fkm_cli_ranks *r, fkm_ctx *ctx);
/** Whether ok holds on every rank (collective). */
int fkm_cli_ranks_all(const fkm_cli_ranks *r, int ok);
/** Rank 0's code on every rank (collective). */
int fkm_cli_ranks_root_code(const fkm_cli_ranks *r, int code);
/** The rows over all ranks (*n_all) and those before this rank (*first). */
int fkm_cli_ranks_count(const fkm_cli_ranks *r, int64_t n_mine, int64_t *n_all, int64_t *first);
/** Every rank's n_mine values, in rank order, into all on rank 0 (all may
 *  be mine: rank 0's own come first). */
int fkm_cli_ranks_gather(const fkm_cli_ranks *r, const int64_t *mine, int64_t n_mine,
                         int64_t *all);

/** Create a context for the options' backend/device/threads; prints the
 *  error and returns NULL on failure. */
fkm_ctx *fkm_cli_context(const fkm_cli_train_opts *o);

const char *fkm_cli_backend_name(fkm_backend b);
const char *fkm_cli_dtype_name(fkm_cli_elem e);

/* ------------------------------------------------------ progress, Ctrl-C */

/** The handlers of SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGPIPE (main.c
 *  installs them first): a fatal one removes the run's files in flight
 *  (fkm_cli_outputs_remove) before the process dies of it. */
void fkm_cli_signals_install(void);
/** From here on the first Ctrl-C asks the run to stop after the current
 *  iteration (fkm_cli_interrupted); a second one, or one while outputs are
 *  written, ends the process (nothing written). */
void fkm_cli_sigint_install(void);
int fkm_cli_interrupted(void);

typedef struct fkm_cli_progress {
  int64_t niter_total; /* niter * nredo */
  int64_t done;
  int tty;
  int quiet;
  double t_start, t_last;
  fkm_iteration_stats last;
  /* every iteration's statistics, as they come (a run of niter = 2^31 - 1
   * that stops early needs room for the iterations it ran only) */
  fkm_iteration_stats *all;
  int64_t n_all, cap_all;
  int out_of_memory; /* the list could not grow: the run was stopped */
} fkm_cli_progress;

void fkm_cli_progress_init(fkm_cli_progress *p, const fkm_params *params, int quiet);
/** fkm_progress_fn: records the statistics, prints, and returns non-zero
 *  after Ctrl-C (or when the list cannot grow). */
int fkm_cli_progress_cb(void *user, int redo, int iter, const fkm_iteration_stats *s);
/** Ends the live line. */
void fkm_cli_progress_end(fkm_cli_progress *p);
/** Releases the statistics list. */
void fkm_cli_progress_free(fkm_cli_progress *p);
/** A long phase that reports no progress of its own (FAISS's training, an
 *  index add, exact ground truth): "LABEL..." on stderr, on a terminal
 *  rewritten with the seconds so far, and "LABEL: 6.04 s" when it ends.
 *  Nothing when quiet. One phase at a time. */
void fkm_cli_phase_begin(int quiet, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void fkm_cli_phase_end(void);

/** fkm_log_fn: warnings (and verbose info) to stderr. */
void fkm_cli_log_cb(void *user, fkm_log_level level, const char *msg);

/** JSON values for the --json reports: a number (null when not finite), a
 *  string with its escapes. */
void fkm_cli_json_num(FILE *fp, double v);
void fkm_cli_json_str(FILE *fp, const char *s);

/** Monotonic seconds. */
double fkm_cli_now(void);

/** docs/contract.md's P1 lockstep (cmd_parity.c, FAISS builds only): every iteration
 *  started from FAISS's own centroids, flashkm against faiss::Clustering.
 *  Prints its report lines; returns 0 when it ran (-2 after Ctrl-C). */
typedef struct fkm_cli_lockstep_result {
  int applicable;           /* nredo = 1, nothing frozen, n > k */
  int passed;               /* every comparable step equal bit for bit */
  int64_t steps_near_tie;   /* steps whose assignments differ at near-ties only */
  int64_t points_near_tie;  /* the points of those near-ties */
} fkm_cli_lockstep_result;
int fkm_cli_lockstep(fkm_ctx *ctx, const fkm_params *params, fkm_cli_inputs *in, int64_t k,
                     int max_list, fkm_cli_lockstep_result *res);

/* ------------------------------------------------------- subcommands */

int fkm_cli_cmd_train(int argc, char **argv);
int fkm_cli_cmd_build_ivf(int argc, char **argv);
int fkm_cli_cmd_parity(int argc, char **argv);
int fkm_cli_cmd_bench(int argc, char **argv);
int fkm_cli_cmd_demo(int argc, char **argv);

#endif
