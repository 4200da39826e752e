/* flashkm train INPUT -k K [options] -o CENTROIDS */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { OPT_OUT = 1, OPT_LABELS, OPT_JSON, OPT_HELP };

/* Statistics held in a buffer handed to the library (beyond: the progress
 * callback's list). */
#define STATS_BUFFER 4096

static const fkm_cli_opt own_opts[] = {{"output", 'o', 1, OPT_OUT},
                                       {"labels", 0, 1, OPT_LABELS},
                                       {"json", 0, 1, OPT_JSON},
                                       {"help", 'h', 0, OPT_HELP},
                                       {NULL, 0, 0, 0}};

static void help(FILE *fp) {
  fputs(
      "usage: flashkm train INPUT -k K [options] -o CENTROIDS\n"
      "\n"
      "Train K centroids on INPUT with FAISS's k-means, bit for bit.\n"
      "INPUT: .fvecs .bvecs .fbin .u8bin .i8bin .npy (float32, float16, uint8,\n"
      "int8), memory-mapped. CENTROIDS: .fvecs, .fbin or .npy (by extension).\n"
      "\n"
      "Output options:\n"
      "  -o, --output FILE               the k x d float32 centroids (required)\n"
      "      --labels FILE               label of every input point (.npy int64,\n"
      "                                  .ivecs or .ibin int32)\n"
      "      --json FILE                 parameters, device, dtype, subsample size,\n"
      "                                  per-iteration statistics, times\n",
      fp);
  fkm_cli_train_opts_help(fp);
  fputs(
      "\n"
      "Progress goes to stderr: a live line on a terminal, plain lines otherwise.\n"
      "Ctrl-C stops after the current iteration (exit code 130, nothing written).\n"
      "\n"
      "Under an MPI launcher (mpiexec -np P flashkm train ...), the P processes\n"
      "train together: each maps INPUT and reads its own 1/P of the rows, and\n"
      "rank 0 writes the outputs, the same bits as one process\n"
      "(docs/distributed.md). An INPUT with {rank} in its name (part_{rank}.fvecs)\n"
      "is one shard file per rank, in rank order (--weights likewise).\n",
      fp);
}

/* JSON numbers cannot be NaN or Inf. */


typedef struct run_report {
  const char *input;
  const fkm_cli_train_opts *o;
  const fkm_cli_inputs *in;
  fkm_ctx *ctx;
  const fkm_iteration_stats *stats;
  int64_t n_stats;
  double t_load, t_train, t_total;
  int ranks;
} run_report;

static int write_json(const char *path, const run_report *r, char *msg) {
  fkm_cli_outfile out;
  if (fkm_cli_out_open(&out, path, msg) != 0) return -1;
  FILE *fp = out.fp;
  const fkm_params *p = &r->o->params;
  int64_t n = r->in->n_all, k = r->o->k;
  int64_t cap = k * (int64_t)p->max_points_per_centroid;
  int64_t n_train = n > cap ? cap : n; /* fkm_train_rows's count, without a context */
  fprintf(fp, "{\n  \"flashkm_version\": ");
  fkm_cli_json_str(fp, fkm_version_string());
  fprintf(fp, ",\n  \"input\": ");
  fkm_cli_json_str(fp, r->input);
  fprintf(fp, ",\n  \"n\": %lld,\n  \"d\": %lld,\n  \"k\": %lld,\n", (long long)n,
          (long long)r->in->x.d, (long long)k);
  fprintf(fp, "  \"file_dtype\": \"%s\",\n  \"dtype\": \"%s\",\n",
          fkm_cli_dtype_name(r->in->x.file_elem),
          r->in->x.dtype == FKM_DTYPE_F16 ? "float16" : "float32");
  fprintf(fp, "  \"n_train\": %lld,\n  \"subsampled\": %s,\n  \"n_init\": %lld,\n",
          (long long)n_train, n > cap ? "true" : "false", (long long)r->in->n_init);
  fprintf(fp,
          "  \"params\": {\"niter\": %d, \"nredo\": %d, \"seed\": %lld, \"spherical\": %d, "
          "\"int_centroids\": %d, \"frozen_centroids\": %d, \"min_points_per_centroid\": %d, "
          "\"max_points_per_centroid\": %d, \"metric\": \"%s\", \"assign_mode\": \"%s\", "
          "\"weights\": %s, \"init_method\": \"%s\", \"afkmc2_chain_length\": %d, "
          "\"use_faster_subsampling\": %d, \"early_stop_threshold\": ",
          p->niter, p->nredo, (long long)p->seed, p->spherical, p->int_centroids,
          p->frozen_centroids, p->min_points_per_centroid, p->max_points_per_centroid,
          p->metric == FKM_METRIC_L2 ? "l2" : "ip",
          p->assign_mode == FKM_ASSIGN_FAST ? "fast" : "faiss",
          r->o->weights_path ? "true" : "false",
          p->init_method == FKM_INIT_KMEANS_PLUS_PLUS ? "kmeans++"
          : p->init_method == FKM_INIT_AFK_MC2       ? "afkmc2"
                                                      : "random",
          p->afkmc2_chain_length, p->use_faster_subsampling);
  fkm_cli_json_num(fp, p->early_stop_threshold);
  fprintf(fp, "},\n");
  char prof[128];
  fkm_cli_profile_describe(r->o, prof, sizeof prof);
  fprintf(fp, "  \"profile\": ");
  fkm_cli_json_str(fp, prof);
  fprintf(fp, ",\n  \"backend\": \"%s\",\n  \"ranks\": %d,\n  \"device\": ",
          fkm_cli_backend_name(fkm_ctx_backend(r->ctx)), r->ranks);
  fkm_cli_json_str(fp, fkm_ctx_device_name(r->ctx));
  fprintf(fp, ",\n  \"iteration_stats\": [");
  for (int64_t i = 0; i < r->n_stats; i++) {
    const fkm_iteration_stats *s = &r->stats[i];
    fprintf(fp, "%s\n    {\"obj\": ", i ? "," : "");
    fkm_cli_json_num(fp, s->obj);
    fprintf(fp, ", \"obj_double\": ");
    fkm_cli_json_num(fp, s->obj_double);
    fprintf(fp, ", \"time\": ");
    fkm_cli_json_num(fp, s->time);
    fprintf(fp, ", \"time_search\": ");
    fkm_cli_json_num(fp, s->time_search);
    fprintf(fp, ", \"imbalance_factor\": ");
    fkm_cli_json_num(fp, s->imbalance_factor);
    fprintf(fp, ", \"nsplit\": %d}", s->nsplit);
  }
  fprintf(fp, "%s],\n  \"obj\": ", r->n_stats ? "\n  " : "");
  fkm_cli_json_num(fp, r->n_stats ? r->stats[r->n_stats - 1].obj : 0.0);
  fprintf(fp, ",\n  \"times\": {\"load_s\": ");
  fkm_cli_json_num(fp, r->t_load);
  fprintf(fp, ", \"train_s\": ");
  fkm_cli_json_num(fp, r->t_train);
  fprintf(fp, ", \"total_s\": ");
  fkm_cli_json_num(fp, r->t_total);
  fprintf(fp, "}\n}\n");
  return fkm_cli_out_commit(&out, msg);
}

/* The outputs' names and places, checked by the rank that writes them;
 * every rank returns its exit code. */
static int train_args_check(const char *out_path, const char *labels_path, const char *json_path,
                            const fkm_cli_ranks *rk) {
  char msg[FKM_CLI_MSG_LEN];
  int rc = FKM_EXIT_OK;
  const char *outs[] = {out_path, labels_path, json_path};
  static const char *const out_opts[] = {"-o", "--labels", "--json"};
  if (rk->rank == 0) {
    if (!fkm_cli_check_f32_output(out_path, msg) ||
        (labels_path && !fkm_cli_check_label_output(labels_path, msg)) ||
        fkm_cli_check_distinct(outs, out_opts, 3, msg) != 0) {
      fkm_cli_error("%s", msg);
      rc = FKM_EXIT_USAGE;
    } else if (fkm_cli_check_writable(out_path, "the centroids", msg) != 0 ||
               (labels_path && fkm_cli_check_writable(labels_path, "the labels", msg) != 0) ||
               (json_path && fkm_cli_check_writable(json_path, "the report", msg) != 0)) {
      /* an output that cannot be written fails now, not after the training */
      fkm_cli_error("%s", msg);
      rc = FKM_EXIT_FAIL;
    }
  }
  return fkm_cli_ranks_root_code(rk, rc);
}

/* pattern with "{rank}" replaced by rank, into out; -1 (printed) when it
 * does not fit or names no shard (a second {rank} too). */
static int with_rank(const char *pattern, int rank, char *out, size_t size) {
  const char *at = strstr(pattern, "{rank}");
  if (!at || strstr(at + 6, "{rank}")) {
    fkm_cli_error("%s: a shard file's name holds {rank} once (and --weights with it)", pattern);
    return -1;
  }
  const int len = snprintf(out, size, "%.*s%d%s", (int)(at - pattern), pattern, rank, at + 6);
  if (len < 0 || (size_t)len >= size) {
    fkm_cli_error("%s: the shard's name is too long", pattern);
    return -1;
  }
  return 0;
}

/* The run on every rank (one, without a launcher); rank 0 reports and
 * writes. Ends the ranks. */
static int train_ranks(const char *input, fkm_cli_train_opts *opts, const char *out_path,
                       const char *labels_path, const char *json_path, fkm_cli_ranks *rk,
                       double t0) {
  fkm_cli_train_opts o = *opts;
  char msg[FKM_CLI_MSG_LEN];
  const int root = rk->rank == 0;
  fkm_cli_inputs in;
  /* INPUT with {rank}: each rank's own shard file (and --weights the same) */
  char mine[4096], wmine[4096];
  const int shard = strstr(input, "{rank}") != NULL;
  const int ok_names = !shard || (with_rank(input, rk->rank, mine, sizeof mine) == 0 &&
                                  (!o.weights_path ||
                                   with_rank(o.weights_path, rk->rank, wmine, sizeof wmine) == 0));
  if (shard && ok_names && o.weights_path) o.weights_path = wmine;
  const int loaded =
      ok_names && fkm_cli_inputs_load_part(shard ? mine : input, &o, 1, shard ? 0 : rk->rank,
                                           shard ? 1 : rk->size, shard, &in) == 0;
  /* every rank loaded (collective), then the shards' rows are counted */
  const int all_loaded = fkm_cli_ranks_all(rk, loaded);
  const int counted = all_loaded && (!shard || fkm_cli_ranks_count(rk, in.x.n, &in.n_all,
                                                                   &in.first) == 0);
  if (!all_loaded || !counted) {
    if (loaded) {
      if (root && !all_loaded)
        fkm_cli_error("another rank could not load its rows of %s (its message above)", input);
      if (all_loaded && !counted) fkm_cli_error("out of memory counting the ranks' rows");
      fkm_cli_inputs_free(&in);
    }
    fkm_cli_ranks_end(rk);
    return FKM_EXIT_FAIL;
  }
  double t_load = fkm_cli_now() - t0;
  fkm_ctx *ctx = fkm_cli_context(&o);
  if (!fkm_cli_ranks_all(rk, ctx && fkm_cli_ranks_attach(rk, ctx) == 0)) {
    fkm_ctx_destroy(ctx);
    fkm_cli_inputs_free(&in);
    fkm_cli_ranks_end(rk);
    return FKM_EXIT_FAIL;
  }

  int64_t n = in.x.n, d = in.x.d, k = o.k;
  /* The statistics: the library's copy when it fits a small buffer, else
   * the progress callback's list (the iterations actually run). */
  int64_t want = (int64_t)o.params.niter * o.params.nredo + 1;
  int64_t cap = want < STATS_BUFFER ? want : STATS_BUFFER;
  float *centroids = calloc((size_t)(k * d), sizeof *centroids);
  /* rank 0 gathers every rank's labels after its own */
  const int64_t n_labels = root ? in.n_all : n;
  int64_t *labels = labels_path ? malloc((size_t)(n_labels > 0 ? n_labels : 1) * sizeof *labels)
                                : NULL;
  fkm_iteration_stats *stats = calloc((size_t)cap, sizeof *stats);
  int rc = FKM_EXIT_FAIL;
  fkm_cli_progress prog;
  fkm_cli_progress_init(&prog, &o.params, o.quiet || !root);
  const int have = centroids && stats && (!labels_path || labels);
  if (!fkm_cli_ranks_all(rk, have)) {
    fkm_cli_error("out of memory for %lld x %lld centroids and %lld labels", (long long)k,
                  (long long)d, (long long)n_labels);
    goto done;
  }
  if (in.n_init) memcpy(centroids, in.init.data, (size_t)(in.n_init * d) * sizeof(float));

  o.params.progress = fkm_cli_progress_cb;
  o.params.progress_user = &prog;
  o.params.log = root ? fkm_cli_log_cb : NULL; /* the same lines on every rank: rank 0 says them */
  if (!o.quiet && root) {
    char prof[128], ranks[48] = "";
    fkm_cli_profile_describe(&o, prof, sizeof prof);
    if (rk->mpi) snprintf(ranks, sizeof ranks, " x %d MPI ranks", rk->size);
    fprintf(stderr, "flashkm %s: %lld x %lld %s (%s) -> k = %lld on %s%s, profile %s\n",
            fkm_version_string(), (long long)in.n_all, (long long)d,
            fkm_cli_dtype_name(in.x.file_elem), input, (long long)k, fkm_ctx_device_name(ctx),
            ranks, prof);
  }
  fkm_cli_sigint_install();
  double t1 = fkm_cli_now();
  int64_t n_stats = 0;
  fkm_status s;
  fkm_params p = o.params;
  /* one process: every value of the inputs was checked when they were
   * loaded; ranks: the library checks them and names the row in all of x */
  if (!rk->mpi) p.check_finite = 0;
  if (in.x.row_stride) { /* rows in the mapping at their stride (.fvecs): read in place */
    fkm_source src;
    s = fkm_source_host(&src, in.x.data, n, d, in.x.dtype, in.x.row_stride);
    if (s == FKM_OK)
      s = fkm_train_source(ctx, &p, &src, k, in.weights.data, centroids, in.n_init, labels,
                           NULL, stats, cap, &n_stats);
  } else {
    s = fkm_train(ctx, &p, n, d, k, in.x.dtype, in.x.data, in.weights.data, centroids,
                  in.n_init, labels, NULL, stats, cap, &n_stats);
  }
  double t_train = fkm_cli_now() - t1;
  fkm_cli_progress_end(&prog);
  /* s and its message are every rank's: rank 0 says it */
  if (s == FKM_ERR_INTERRUPTED && prog.out_of_memory) {
    fkm_cli_error("out of memory for the statistics of iteration %lld; no output written",
                  (long long)prog.n_all + 1);
    goto done;
  }
  if (s == FKM_ERR_INTERRUPTED) {
    if (root)
      fkm_cli_error("interrupted after iteration %lld/%lld; no output written",
                    (long long)prog.done, (long long)prog.niter_total);
    rc = FKM_EXIT_INTERRUPTED;
    goto done;
  }
  if (s != FKM_OK) {
    if (root)
      fkm_cli_error("%s: training failed: %s: %s", input, fkm_status_string(s),
                    fkm_ctx_last_error(ctx));
    goto done;
  }
  if (labels) fkm_cli_ranks_gather(rk, labels, n, labels);
  if (!root) { /* rank 0 writes; its exit code is every rank's */
    rc = fkm_cli_ranks_root_code(rk, FKM_EXIT_OK);
    goto done;
  }
  const fkm_iteration_stats *all = stats;
  if (n_stats > cap) { /* beyond the buffer: the progress list holds them */
    all = prog.all;
    if (n_stats > prog.n_all) n_stats = prog.n_all;
  }

  /* Each file appears complete or not at all; if a later one fails, the
   * earlier ones of this run are removed so no partial result remains. */
  run_report rep = {input, &o, &in, ctx, all, n_stats, t_load, t_train, 0.0, rk->size};
  if (fkm_cli_write_f32(out_path, k, d, centroids, msg) != 0) goto write_failed;
  if (labels && fkm_cli_write_labels(labels_path, in.n_all, labels, msg) != 0) goto write_failed;
  rep.t_total = fkm_cli_now() - t0;
  if (json_path && write_json(json_path, &rep, msg) != 0) goto write_failed;
  fkm_cli_outputs_keep();
  if (!o.quiet)
    fprintf(stderr, "done: %lld iterations in %.3f s (%.2f ms/iter), objective %.9g -> %s\n",
            (long long)n_stats, t_train, n_stats ? 1e3 * t_train / (double)n_stats : 0.0,
            n_stats ? (double)all[n_stats - 1].obj : 0.0, out_path);
  rc = fkm_cli_ranks_root_code(rk, FKM_EXIT_OK);
  goto done;
write_failed:
  fkm_cli_error("%s", msg);
  fkm_cli_outputs_remove(); /* the outputs this run put in place */
  rc = fkm_cli_ranks_root_code(rk, FKM_EXIT_FAIL);
done:
  fkm_cli_progress_free(&prog);
  free(centroids);
  free(labels);
  free(stats);
  fkm_ctx_destroy(ctx); /* its communicator before MPI_Finalize */
  fkm_cli_inputs_free(&in);
  fkm_cli_ranks_end(rk);
  return rc;
}

int fkm_cli_cmd_train(int argc, char **argv) {
  double t0 = fkm_cli_now();
  fkm_cli_train_opts o;
  fkm_cli_train_opts_init(&o);
  const char *input = NULL, *out_path = NULL, *labels_path = NULL, *json_path = NULL;

  fkm_cli_opt table[FKM_CLI_MAX_OPTS];
  fkm_cli_make_table(own_opts, NULL, table);

  int i = 0, id, r;
  const char *val;
  while ((r = fkm_cli_next(argc, argv, &i, table, &id, &val)) != 0) {
    if (r < 0) return FKM_EXIT_USAGE;
    if (r == 2) {
      if (fkm_cli_take_input("train", val, &input)) return FKM_EXIT_USAGE;
      continue;
    }
    switch (id) {
      case OPT_OUT: out_path = val; break;
      case OPT_LABELS: labels_path = val; break;
      case OPT_JSON: json_path = val; break;
      case OPT_HELP: help(stdout); return FKM_EXIT_OK;
      default:
        if (fkm_cli_train_opts_apply(&o, id, val) != 0) return FKM_EXIT_USAGE;
    }
  }
  if (!input || o.k < 0 || !out_path) {
    fkm_cli_error("train needs INPUT, -k K and -o CENTROIDS (see flashkm train --help)");
    return FKM_EXIT_USAGE;
  }
  fkm_cli_ranks rk;
  if (fkm_cli_ranks_begin(&rk) != 0) return FKM_EXIT_FAIL;
  const int rc_args = train_args_check(out_path, labels_path, json_path, &rk);
  if (rc_args != FKM_EXIT_OK) {
    fkm_cli_ranks_end(&rk);
    return rc_args;
  }
  return train_ranks(input, &o, out_path, labels_path, json_path, &rk, t0);
}
