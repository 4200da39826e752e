/* flashkm build-ivf and flashkm demo: train a FAISS IVF index through the
 * bridge (fkm_faiss_train_index), optionally beside stock FAISS training of
 * the same factory string, and compare the two: training time, the trained
 * index bit for bit, recall@1 and recall@10. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "faiss_ops.h"
#include "flashkm_faiss.h"

#ifndef FKM_FASHION_MNIST_DIR
#define FKM_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#endif

typedef struct ivf_job {
  const char *factory;
  const char *out_path; /* NULL: do not write the index */
  int nprobe;
  int compare;          /* also train stock FAISS */
  const fkm_cli_train_opts *t;
  const float *x;
  int64_t n, d;
  const float *q; /* queries, or NULL */
  int64_t nq;
  const int64_t *gt; /* (nq, gt_k) true neighbours, or NULL: computed exactly */
  int64_t gt_k;
  const char *json_path; /* the run's report, or NULL */
} ivf_job;

typedef struct ivf_side {
  void *index;
  double t_train, t_add;
  unsigned char *bytes; /* the trained, still empty index, serialised */
  size_t n_bytes;
  float *coarse;
  int64_t nlist, cd;
  double r1, r10;
  fkm_faiss_train_report rep; /* flashkm's side: where the training's time went */
  fkm_faiss_add_stats add;    /* and the add's */
} ivf_side;

static void side_free(ivf_side *s) {
  fkm_fx_index_free(s->index);
  free(s->bytes);
  free(s->coarse);
}

/* 1-recall@1 and 1-recall@10 (FAISS's bench convention): the share of
 * queries whose true nearest neighbour is ranked first / in the top 10. */
static int recall(const ivf_job *j, ivf_side *s, const int64_t *gt, int64_t gt_k, char *msg) {
  const int64_t topk = 10;
  float *D = malloc((size_t)(j->nq * topk) * sizeof *D);
  int64_t *I = malloc((size_t)(j->nq * topk) * sizeof *I);
  int rc = -1;
  if (!D || !I) {
    snprintf(msg, FKM_CLI_MSG_LEN, "out of memory for the search results");
    goto out;
  }
  if (fkm_fx_set_nprobe(s->index, j->nprobe, msg) != 0 ||
      fkm_fx_search(s->index, j->nq, j->q, topk, D, I, msg) != 0)
    goto out;
  int64_t hit1 = 0, hit10 = 0;
  for (int64_t i = 0; i < j->nq; i++) {
    int64_t want = gt[i * gt_k];
    hit1 += I[i * topk] == want;
    for (int64_t r = 0; r < topk; r++)
      if (I[i * topk + r] == want) {
        hit10++;
        break;
      }
  }
  s->r1 = (double)hit1 / (double)j->nq;
  s->r10 = (double)hit10 / (double)j->nq;
  rc = 0;
out:
  free(D);
  free(I);
  return rc;
}

/* Build one side: flashkm (ctx != NULL) or stock FAISS. */
/* Trains (flashkm on ctx, or stock FAISS without one) and fills one index,
 * each a phase on stderr (fkm_cli_phase_begin). */
static int build_side(const ivf_job *j, fkm_ctx *ctx, ivf_side *s, char *msg) {
  const int quiet = j->t->quiet;
  fkm_metric metric = j->t->params.metric;
  if (fkm_fx_index_factory(j->d, j->factory, metric, &s->index, msg) != 0) return -1;
  double t0 = fkm_cli_now();
  int rc = 0;
  if (ctx) {
    fkm_cli_phase_begin(quiet, "training '%s' on %lld x %lld with flashkm (%s)", j->factory,
                        (long long)j->n, (long long)j->d, fkm_ctx_device_name(ctx));
    s->rep.struct_size = sizeof s->rep;
    fkm_status st = fkm_faiss_train_index_report(ctx, s->index, j->n, j->x, &s->rep);
    if (st != FKM_OK) {
      snprintf(msg, FKM_CLI_MSG_LEN, "flashkm training of '%s' failed: %s: %s", j->factory,
               fkm_status_string(st), fkm_ctx_last_error(ctx));
      rc = -1;
    }
  } else {
    fkm_cli_phase_begin(quiet, "training '%s' with stock FAISS %s", j->factory,
                        fkm_fx_version());
    rc = fkm_fx_train(s->index, j->n, j->x, msg);
  }
  fkm_cli_phase_end();
  if (rc != 0) return -1;
  s->t_train = fkm_cli_now() - t0;
  if (j->compare && (fkm_fx_serialize(s->index, &s->bytes, &s->n_bytes, msg) != 0 ||
                     fkm_fx_coarse_centroids(s->index, &s->nlist, &s->cd, &s->coarse, msg) != 0))
    return -1;
  fkm_cli_phase_begin(quiet, "adding the %lld vectors%s", (long long)j->n,
                      ctx ? " (coarse assignment by flashkm)" : " to FAISS's index");
  t0 = fkm_cli_now();
  if (ctx) {
    s->add.struct_size = sizeof s->add;
    fkm_status st = fkm_faiss_add_report(ctx, s->index, j->n, j->x, NULL, &s->add);
    if (st != FKM_OK) {
      snprintf(msg, FKM_CLI_MSG_LEN, "adding to '%s' failed: %s: %s", j->factory,
               fkm_status_string(st), fkm_ctx_last_error(ctx));
      rc = -1;
    }
  } else {
    rc = fkm_fx_add(s->index, j->n, j->x, msg);
  }
  s->t_add = fkm_cli_now() - t0;
  fkm_cli_phase_end();
  return rc;
}

static int write_index_atomic(void *index, const char *path, char *msg) {
  char tmp[4096];
  if (fkm_cli_temp_path(path, tmp, sizeof tmp, msg) != 0) return -1;
  if (fkm_fx_write(index, tmp, msg) != 0) {
    fkm_cli_temp_discard(tmp);
    return -1;
  }
  return fkm_cli_temp_commit(tmp, path, msg);
}

/* The two trainings parted ways: find out whether only FAISS's BLAS near-ties
 * (docs/contract.md section 3) explain it, with the P1 lockstep on the IVF's own
 * clustering parameters. Exit code: 0 when they do. */
static int explain_difference(const ivf_job *j, fkm_ctx *ctx, void *faiss_index) {
  char msg[FKM_CLI_MSG_LEN];
  fkm_params p;
  fkm_params_init(&p);
  int64_t nlist;
  int direct;
  if (fkm_fx_ivf_params(faiss_index, &p, &nlist, &direct, msg) != 0) {
    fkm_cli_error("%s", msg);
    return FKM_EXIT_FAIL;
  }
  /* the run's arithmetic: its profile and BLAS (the linked FAISS's) */
  p.profile = j->t->params.profile;
  p.blas_sgemm = j->t->params.blas_sgemm;
  p.blas_query_bs = j->t->params.blas_query_bs;
  p.blas_database_bs = j->t->params.blas_database_bs;
  if (!direct) {
    printf("parity     DIFFERENT: the IVF trains on pre-transformed vectors; run flashkm parity "
           "on them to see why\n");
    return FKM_EXIT_FAIL;
  }
  printf("parity     lockstep check: each of the %d iterations from FAISS's own centroids...\n",
         p.niter);
  fflush(stdout);
  fkm_cli_inputs in;
  memset(&in, 0, sizeof in);
  in.x.n = j->n;
  in.x.d = j->d;
  in.x.dtype = FKM_DTYPE_F32;
  in.x.data = j->x;
  fkm_cli_lockstep_result res;
  memset(&res, 0, sizeof res);
  if (fkm_cli_lockstep(ctx, &p, &in, nlist, 5, &res) != 0) return FKM_EXIT_FAIL;
  if (res.applicable && res.passed) {
    printf("parity     EQUIVALENT: every iteration gives FAISS's centroids bit for bit, except that "
           "FAISS's BLAS\n           and the engine's own summation order break %lld near-tie(s) "
           "differently (in %lld iteration(s),\n           each gap within float rounding, "
           "docs/profiles.md); the runs then part ways legitimately\n",
           (long long)res.points_near_tie, (long long)res.steps_near_tie);
    return FKM_EXIT_OK;
  }
  printf("parity     DIFFERENT: not explained by near-ties (see the lockstep lines above)\n");
  return FKM_EXIT_FAIL;
}

/* Where flashkm's build went, phase by phase, and who ran each. */
static void print_phases(const ivf_side *fk, const ivf_side *fs) {
  const fkm_faiss_train_report *r = &fk->rep;
  printf("phases     flashkm: pre-transform %.3f s%s, ", r->pretransform_seconds,
         r->pretransform_by_flashkm ? " (OPQ's PQ k-means by flashkm, rotations by FAISS)" : "");
  if (r->coarse_by_flashkm && r->codebooks_by_flashkm)
    printf("coarse k-means %.3f s (flashkm), codebooks %.3f s (PQ k-means %.3f s by flashkm; "
           "polysemous training and tables %.3f s and the residuals by FAISS)",
           r->coarse_seconds, r->rest_seconds, r->codebooks_kmeans_seconds,
           r->polysemous_seconds);
  else if (r->coarse_by_flashkm)
    printf("coarse k-means %.3f s (flashkm), rest of training %.3f s (FAISS: codebooks, tables)",
           r->coarse_seconds, r->rest_seconds);
  else
    printf("training %.3f s (FAISS's own, coarse k-means included)", r->rest_seconds);
  if (fk->add.encode_by_flashkm)
    printf(", add %.3f s (coarse assignment %.3f s and PQ encoding %.3f s by flashkm, lists "
           "%.3f s by FAISS)",
           fk->t_add, fk->add.assign_seconds, fk->add.encode_seconds, fk->add.add_seconds);
  else if (fk->add.assign_by_flashkm)
    printf(", add %.3f s (coarse assignment %.3f s by flashkm, encoding and lists %.3f s by "
           "FAISS)",
           fk->t_add, fk->add.assign_seconds, fk->add.add_seconds);
  else
    printf(", add %.3f s (FAISS)", fk->t_add);
  if (fs) printf("\n           FAISS: train %.3f s, add %.3f s", fs->t_train, fs->t_add);
  printf("\n");
}

static void json_side(FILE *fp, const char *name, const ivf_side *s, int recall, int flashkm) {
  fprintf(fp, "  \"%s\": {", name);
  if (flashkm) {
    fprintf(fp, "\"pretransform_s\": ");
    fkm_cli_json_num(fp, s->rep.pretransform_seconds);
    fprintf(fp, ", \"pretransform_by_flashkm\": %s",
            s->rep.pretransform_by_flashkm ? "true" : "false");
    fprintf(fp, ", \"coarse_kmeans_s\": ");
    fkm_cli_json_num(fp, s->rep.coarse_seconds);
    fprintf(fp, ", \"coarse_by_flashkm\": %s, \"codebooks_by_flashkm\": %s, \"rest_of_train_s\": ",
            s->rep.coarse_by_flashkm ? "true" : "false",
            s->rep.codebooks_by_flashkm ? "true" : "false");
    fkm_cli_json_num(fp, s->rep.rest_seconds);
    fprintf(fp, ", \"codebooks_kmeans_s\": ");
    fkm_cli_json_num(fp, s->rep.codebooks_kmeans_seconds);
    fprintf(fp, ", \"polysemous_and_tables_s\": ");
    fkm_cli_json_num(fp, s->rep.polysemous_seconds);
    fprintf(fp, ", \"add_assign_by_flashkm\": %s, \"add_assign_s\": ",
            s->add.assign_by_flashkm ? "true" : "false");
    fkm_cli_json_num(fp, s->add.assign_seconds);
    fprintf(fp, ", \"add_encode_by_flashkm\": %s, \"add_encode_s\": ",
            s->add.encode_by_flashkm ? "true" : "false");
    /* FAISS's add_core encodes and stores in one: add_encode_s is both */
    fkm_cli_json_num(fp, s->add.encode_by_flashkm ? s->add.encode_seconds
                                                   : s->add.add_seconds);
    if (s->add.encode_by_flashkm) {
      fprintf(fp, ", \"add_lists_s\": ");
      fkm_cli_json_num(fp, s->add.add_seconds);
    }
    fprintf(fp, ", ");
  }
  fprintf(fp, "\"train_s\": ");
  fkm_cli_json_num(fp, s->t_train);
  fprintf(fp, ", \"add_s\": ");
  fkm_cli_json_num(fp, s->t_add);
  if (recall) {
    fprintf(fp, ", \"recall_at_1\": ");
    fkm_cli_json_num(fp, s->r1);
    fprintf(fp, ", \"recall_at_10\": ");
    fkm_cli_json_num(fp, s->r10);
  }
  fprintf(fp, "}");
}

/* --json: the run's parameters, each side's phases and recall, the verdict. */
static int write_report(const ivf_job *j, fkm_ctx *ctx, const ivf_side *fk, const ivf_side *fs,
                        const char *verdict, char *msg) {
  fkm_cli_outfile out;
  if (fkm_cli_out_open(&out, j->json_path, msg) != 0) return -1;
  FILE *fp = out.fp;
  fprintf(fp, "{\n  \"flashkm_version\": ");
  fkm_cli_json_str(fp, fkm_version_string());
  fprintf(fp, ",\n  \"factory\": ");
  fkm_cli_json_str(fp, j->factory);
  fprintf(fp, ",\n  \"n\": %lld,\n  \"d\": %lld,\n  \"metric\": \"%s\",\n  \"backend\": \"%s\",\n"
              "  \"device\": ",
          (long long)j->n, (long long)j->d,
          j->t->params.metric == FKM_METRIC_L2 ? "l2" : "ip",
          fkm_cli_backend_name(fkm_ctx_backend(ctx)));
  fkm_cli_json_str(fp, fkm_ctx_device_name(ctx));
  fprintf(fp, ",\n  \"nlist\": %lld,\n  \"queries\": %lld,\n  \"nprobe\": %d,\n",
          (long long)fk->rep.nlist, (long long)(j->q ? j->nq : 0), j->nprobe);
  json_side(fp, "flashkm", fk, j->q != NULL, 1);
  fprintf(fp, ",\n");
  if (fs) {
    json_side(fp, "faiss", fs, j->q != NULL, 0);
    fprintf(fp, ",\n  \"faiss_version\": ");
    fkm_cli_json_str(fp, fkm_fx_version());
    fprintf(fp, ",\n  \"verdict\": ");
    fkm_cli_json_str(fp, verdict ? verdict : "");
    fprintf(fp, "\n}\n");
  } else {
    fprintf(fp, "  \"faiss\": null,\n  \"verdict\": null\n}\n");
  }
  return fkm_cli_out_commit(&out, msg);
}

static int run_ivf(const ivf_job *j) {
  char msg[FKM_CLI_MSG_LEN];
  ivf_side fk, fs;
  memset(&fk, 0, sizeof fk);
  memset(&fs, 0, sizeof fs);
  int64_t *gt_own = NULL;
  int rc = FKM_EXIT_FAIL;
  int quiet = j->t->quiet;
  const char *verdict = NULL; /* with --compare-faiss */

  fkm_ctx *ctx = fkm_cli_context(j->t);
  if (!ctx) return FKM_EXIT_FAIL;
  if (build_side(j, ctx, &fk, msg) != 0) goto fail;
  if (j->out_path && write_index_atomic(fk.index, j->out_path, msg) != 0) goto fail;
  fkm_cli_outputs_keep();
  if (j->compare) {
    if (build_side(j, NULL, &fs, msg) != 0) goto fail;
  }

  const int64_t *gt = j->gt;
  int64_t gt_k = j->gt_k;
  if (j->q && !gt) {
    fkm_cli_phase_begin(quiet, "exact ground truth for %lld queries", (long long)j->nq);
    float *D = malloc((size_t)j->nq * sizeof *D);
    gt_own = malloc((size_t)j->nq * sizeof *gt_own);
    if (!D || !gt_own) {
      free(D);
      snprintf(msg, FKM_CLI_MSG_LEN, "out of memory for the ground truth");
      goto fail;
    }
    int k_rc = fkm_fx_knn(j->t->params.metric, j->d, j->n, j->x, j->nq, j->q, 1, D, gt_own, msg);
    fkm_cli_phase_end();
    free(D);
    if (k_rc != 0) goto fail;
    gt = gt_own;
    gt_k = 1;
  }
  if (j->q) {
    fkm_cli_phase_begin(quiet, "searching %lld queries (nprobe %d)%s", (long long)j->nq,
                        j->nprobe, j->compare ? " in both indexes" : "");
    int r_rc = recall(j, &fk, gt, gt_k, msg);
    if (r_rc == 0 && j->compare) r_rc = recall(j, &fs, gt, gt_k, msg);
    fkm_cli_phase_end();
    if (r_rc != 0) goto fail;
  }

  /* The report. */
  printf("index      %s, %s, %lld vectors of d = %lld\n", j->factory,
         j->t->params.metric == FKM_METRIC_L2 ? "L2" : "inner product", (long long)j->n,
         (long long)j->d);
  printf("device     %s (backend %s)\n", fkm_ctx_device_name(ctx),
         fkm_cli_backend_name(fkm_ctx_backend(ctx)));
  if (j->q) printf("queries    %lld, nprobe %d, recall = share of true nearest neighbours found\n",
                   (long long)j->nq, j->nprobe);
  printf("\n%-16s %10s %10s", "", "train (s)", "add (s)");
  if (j->q) printf(" %10s %10s", "recall@1", "recall@10");
  printf("\n%-16s %10.3f %10.3f", "flashkm", fk.t_train, fk.t_add);
  if (j->q) printf(" %10.4f %10.4f", fk.r1, fk.r10);
  if (j->compare) {
    char name[32];
    snprintf(name, sizeof name, "FAISS %s", fkm_fx_version());
    printf("\n%-16s %10.3f %10.3f", name, fs.t_train, fs.t_add);
    if (j->q) printf(" %10.4f %10.4f", fs.r1, fs.r10);
    printf("\n\nspeedup    %.2fx (training)\n", fs.t_train / fk.t_train);
    int64_t rows_diff = 0;
    int same_shape = fk.nlist == fs.nlist && fk.cd == fs.cd;
    if (same_shape)
      for (int64_t r = 0; r < fk.nlist; r++)
        rows_diff += memcmp(fk.coarse + r * fk.cd, fs.coarse + r * fs.cd,
                            (size_t)fk.cd * sizeof(float)) != 0;
    int bytes_same = fk.n_bytes == fs.n_bytes && !memcmp(fk.bytes, fs.bytes, fk.n_bytes);
    if (same_shape && rows_diff == 0 && bytes_same) {
      printf("parity     IDENTICAL: the %lld coarse centroids and the whole trained index "
             "(%zu bytes) equal stock FAISS's bit for bit\n",
             (long long)fk.nlist, fk.n_bytes);
      rc = FKM_EXIT_OK;
      verdict = "IDENTICAL";
    } else {
      printf("parity     %lld of %lld coarse centroids differ (trained index bytes %s)\n",
             (long long)rows_diff, (long long)fk.nlist, bytes_same ? "equal" : "differ");
      rc = explain_difference(j, ctx, fs.index);
      verdict = rc == FKM_EXIT_OK ? "EQUIVALENT" : "DIFFERENT";
    }
  } else {
    printf("\n");
    rc = FKM_EXIT_OK;
  }
  print_phases(&fk, j->compare ? &fs : NULL);
  if (j->out_path) printf("written    %s (faiss.read_index opens it)\n", j->out_path);
  if (j->json_path && write_report(j, ctx, &fk, j->compare ? &fs : NULL, verdict, msg) != 0) {
    rc = FKM_EXIT_FAIL;
    goto fail;
  }
  goto done;
fail:
  fkm_cli_phase_end(); /* a phase the failure interrupted */
  fkm_cli_error("%s", msg);
done:
  free(gt_own);
  side_free(&fk);
  side_free(&fs);
  fkm_ctx_destroy(ctx);
  return rc;
}

/* Options shared by build-ivf and demo. */
enum {
  OPT_FACTORY = 1,
  OPT_OUT,
  OPT_QUERIES,
  OPT_GT,
  OPT_NPROBE,
  OPT_COMPARE,
  OPT_JSON,
  OPT_DATA,
  OPT_NQ,
  OPT_HELP
};

/* build-ivf and demo take these of the shared options. */
static const char *const engine_opts[] = {"metric", "backend", "device", "threads", "quiet", NULL};

static const char engine_help[] =
    "      --metric l2|ip              distance of the index (l2)\n"
    "      --backend cpu|cuda|auto     flashkm engine (auto: CUDA when present)\n"
    "      --device N                  CUDA device ordinal (0)\n"
    "      --threads N                 CPU engine threads (0: all)\n"
    "  -q, --quiet                     no progress lines\n";

static int load_f32(const char *path, fkm_cli_matrix *m) {
  char msg[FKM_CLI_MSG_LEN];
  if (fkm_cli_matrix_read(path, m, msg) != 0 || fkm_cli_matrix_to_f32(m, msg) != 0) {
    fkm_cli_error("%s", msg);
    return -1;
  }
  int64_t col = 0, row = fkm_cli_matrix_first_nonfinite(m, &col);
  if (row >= 0) {
    fkm_cli_error("%s: NaN or Inf at row %lld, column %lld", path, (long long)row,
                  (long long)col);
    fkm_cli_matrix_free(m);
    return -1;
  }
  return 0;
}

/* What build-ivf and demo start from: their options and the engine's, the
 * training defaults, nprobe 16 (a recall worth reading). */
static void job_start(ivf_job *j, fkm_cli_train_opts *t, const fkm_cli_opt *own,
                      fkm_cli_opt *table) {
  fkm_cli_make_table(own, engine_opts, table);
  fkm_cli_train_opts_init(t);
  memset(j, 0, sizeof *j);
  j->nprobe = 16;
  j->t = t;
}

int fkm_cli_cmd_build_ivf(int argc, char **argv) {
  static const fkm_cli_opt own[] = {{"factory", 0, 1, OPT_FACTORY},
                                    {"output", 'o', 1, OPT_OUT},
                                    {"queries", 0, 1, OPT_QUERIES},
                                    {"gt", 0, 1, OPT_GT},
                                    {"nprobe", 0, 1, OPT_NPROBE},
                                    {"compare-faiss", 0, 0, OPT_COMPARE},
                                    {"json", 0, 1, OPT_JSON},
                                    {"help", 'h', 0, OPT_HELP},
                                    {NULL, 0, 0, 0}};
  fkm_cli_opt table[FKM_CLI_MAX_OPTS];
  fkm_cli_train_opts t;
  ivf_job j;
  job_start(&j, &t, own, table);
  const char *input = NULL, *qpath = NULL, *gtpath = NULL;
  int i = 0, id, r;
  const char *val;
  long long v;
  while ((r = fkm_cli_next(argc, argv, &i, table, &id, &val)) != 0) {
    if (r < 0) return FKM_EXIT_USAGE;
    if (r == 2) {
      if (fkm_cli_take_input("build-ivf", val, &input)) return FKM_EXIT_USAGE;
      continue;
    }
    switch (id) {
      case OPT_FACTORY: j.factory = val; break;
      case OPT_OUT: j.out_path = val; break;
      case OPT_QUERIES: qpath = val; break;
      case OPT_GT: gtpath = val; break;
      case OPT_NPROBE:
        if (fkm_cli_int("--nprobe", val, 1, 1 << 24, &v)) return FKM_EXIT_USAGE;
        j.nprobe = (int)v;
        break;
      case OPT_COMPARE: j.compare = 1; break;
      case OPT_JSON: j.json_path = val; break;
      case OPT_HELP:
        printf(
            "usage: flashkm build-ivf INPUT --factory \"IVF4096,PQ32\" -o INDEX.faiss\n"
            "                         [--queries Q --gt GT] [--compare-faiss]\n\n"
            "Train a FAISS index whose coarse level is IVF with flashkm's k-means (with\n"
            "FAISS 1.7 an IVF-PQ's codebooks too; the rest - SQ, OPQ, polysemous... - by\n"
            "FAISS itself), add INPUT to it (the coarse assignment by flashkm, encoding by\n"
            "FAISS) and write it with faiss::write_index: faiss.read_index opens the file.\n"
            "INPUT as for train.\n\n"
            "  --factory STRING        faiss::index_factory description (required)\n"
            "  -o, --output FILE       where to write the index (required)\n"
            "  --queries FILE          queries for recall@1 / recall@10\n"
            "  --gt FILE               their true nearest neighbours (.ivecs / .ibin);\n"
            "                          without it: exact search with FAISS's flat index\n"
            "  --nprobe N              lists probed when searching (16)\n"
            "  --compare-faiss         also train stock FAISS on the same data: both\n"
            "                          training times, the speedup, the parity verdict\n"
            "                          (IDENTICAL or EQUIVALENT exit 0, DIFFERENT 1)\n"
            "                          and both recalls\n"
            "  --json FILE             the run as JSON: each phase's time (pre-transform,\n"
            "                          coarse k-means, rest of training, add: assignment\n"
            "                          and encoding) for flashkm and FAISS, recalls, the\n"
            "                          verdict\n");
        fputs(engine_help, stdout);
        return FKM_EXIT_OK;
      default:
        if (fkm_cli_train_opts_apply(&t, id, val) != 0) return FKM_EXIT_USAGE;
    }
  }
  if (!input || !j.factory || !j.out_path) {
    fkm_cli_error("build-ivf needs INPUT, --factory and -o INDEX (see flashkm build-ivf --help)");
    return FKM_EXIT_USAGE;
  }
  if (gtpath && !qpath) {
    fkm_cli_error("--gt needs --queries");
    return FKM_EXIT_USAGE;
  }
  char wmsg[FKM_CLI_MSG_LEN];
  const char *outs[2] = {j.out_path, j.json_path};
  static const char *const out_opts[2] = {"-o", "--json"};
  if (fkm_cli_check_distinct(outs, out_opts, 2, wmsg) != 0) {
    fkm_cli_error("%s", wmsg);
    return FKM_EXIT_USAGE;
  }
  if (fkm_cli_check_writable(j.out_path, "the index", wmsg) != 0 ||
      (j.json_path && fkm_cli_check_writable(j.json_path, "the report", wmsg) != 0)) {
    fkm_cli_error("%s", wmsg);
    return FKM_EXIT_FAIL;
  }

  fkm_cli_matrix x, q;
  memset(&q, 0, sizeof q);
  int64_t *gt = NULL;
  if (load_f32(input, &x) != 0) return FKM_EXIT_FAIL;
  int rc = FKM_EXIT_FAIL;
  char msg[FKM_CLI_MSG_LEN];
  if (qpath) {
    if (load_f32(qpath, &q) != 0) goto out;
    if (q.d != x.d) {
      fkm_cli_error("%s: dimension mismatch: d = %lld, the input %s has d = %lld", qpath,
                    (long long)q.d, input, (long long)x.d);
      goto out;
    }
  }
  if (gtpath) {
    int64_t gn;
    if (fkm_cli_read_ids(gtpath, &gn, &j.gt_k, &gt, msg) != 0) {
      fkm_cli_error("%s", msg);
      goto out;
    }
    if (gn != q.n) {
      fkm_cli_error("%s: %lld rows of ground truth for %lld queries in %s", gtpath,
                    (long long)gn, (long long)q.n, qpath);
      goto out;
    }
  }
  j.x = x.data;
  j.n = x.n;
  j.d = x.d;
  j.q = qpath ? q.data : NULL;
  j.nq = q.n;
  j.gt = gt;
  rc = run_ivf(&j);
out:
  free(gt);
  fkm_cli_matrix_free(&x);
  fkm_cli_matrix_free(&q);
  return rc;
}

int fkm_cli_cmd_demo(int argc, char **argv) {
  static const fkm_cli_opt own[] = {{"data", 0, 1, OPT_DATA},
                                    {"factory", 0, 1, OPT_FACTORY},
                                    {"nprobe", 0, 1, OPT_NPROBE},
                                    {"nq", 0, 1, OPT_NQ},
                                    {"json", 0, 1, OPT_JSON},
                                    {"help", 'h', 0, OPT_HELP},
                                    {NULL, 0, 0, 0}};
  fkm_cli_opt table[FKM_CLI_MAX_OPTS];
  fkm_cli_train_opts t;
  ivf_job j;
  job_start(&j, &t, own, table);
  long long nq = 10000;
  j.factory = "IVF1024,Flat";
  j.compare = 1;
  const char *dir = FKM_FASHION_MNIST_DIR;
  int i = 0, id, r;
  const char *val;
  long long v;
  while ((r = fkm_cli_next(argc, argv, &i, table, &id, &val)) != 0) {
    if (r < 0) return FKM_EXIT_USAGE;
    if (r == 2) {
      fkm_cli_error("demo takes no positional argument ('%s')", val);
      return FKM_EXIT_USAGE;
    }
    switch (id) {
      case OPT_DATA: dir = val; break;
      case OPT_FACTORY: j.factory = val; break;
      case OPT_NPROBE:
        if (fkm_cli_int("--nprobe", val, 1, 1 << 24, &v)) return FKM_EXIT_USAGE;
        j.nprobe = (int)v;
        break;
      case OPT_JSON: j.json_path = val; break;
      case OPT_NQ:
        if (fkm_cli_int("--nq", val, 1, 10000, &nq)) return FKM_EXIT_USAGE;
        break;
      case OPT_HELP:
        printf(
            "usage: flashkm demo [--data DIR] [--factory STRING] [--nprobe N]\n\n"
            "Fashion-MNIST (Debian's dataset-fashion-mnist: 70,000 real images of 784\n"
            "pixels): an IVF1024,Flat index over the 60,000 training images is trained\n"
            "with flashkm and with stock FAISS; prints both training times, the speedup,\n"
            "the parity verdict (IDENTICAL or EQUIVALENT exit 0, DIFFERENT 1) and\n"
            "recall@1/@10 of\n"
            "the 10,000 test images against exact search. Runs on whatever backend the\n"
            "machine has (CUDA when present, else the CPU).\n\n"
            "  --data DIR              the idx .gz files (" FKM_FASHION_MNIST_DIR ")\n"
            "  --factory STRING        another IVF index description (IVF1024,Flat)\n"
            "  --nprobe N              lists probed when searching (16)\n"
            "  --nq N                  test images used as queries (10000)\n"
            "  --json FILE             the run as JSON (as build-ivf --json)\n");
        fputs(engine_help, stdout);
        return FKM_EXIT_OK;
      default:
        if (fkm_cli_train_opts_apply(&t, id, val) != 0) return FKM_EXIT_USAGE;
    }
  }
  char path[768], msg[FKM_CLI_MSG_LEN];
  if (j.json_path && fkm_cli_check_writable(j.json_path, "the report", msg) != 0) {
    fkm_cli_error("%s", msg);
    return FKM_EXIT_FAIL;
  }
  fkm_cli_matrix x, q;
  memset(&q, 0, sizeof q);
  snprintf(path, sizeof path, "%s/train-images-idx3-ubyte.gz", dir);
  if (fkm_cli_read_idx_images(path, &x, msg) != 0) {
    fkm_cli_error("%s", msg);
    return FKM_EXIT_FAIL;
  }
  snprintf(path, sizeof path, "%s/t10k-images-idx3-ubyte.gz", dir);
  if (fkm_cli_read_idx_images(path, &q, msg) != 0 || q.d != x.d) {
    if (q.d != x.d && q.n) snprintf(msg, sizeof msg, "%s: images of another size", path);
    fkm_cli_error("%s", msg);
    fkm_cli_matrix_free(&x);
    fkm_cli_matrix_free(&q);
    return FKM_EXIT_FAIL;
  }
  if (q.n > nq) q.n = nq;
  printf("flashkm demo: Fashion-MNIST, %lld training images indexed, %lld test images as "
         "queries\n",
         (long long)x.n, (long long)q.n);
  j.x = x.data;
  j.n = x.n;
  j.d = x.d;
  j.q = q.data;
  j.nq = q.n;
  int rc = run_ivf(&j);
  fkm_cli_matrix_free(&x);
  fkm_cli_matrix_free(&q);
  return rc;
}
