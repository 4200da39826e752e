/* flashkm parity and flashkm bench: flashkm next to stock faiss::Clustering
 * on the same data and parameters.
 *
 * parity prints docs/contract.md section 9's levels:
 *   P1 lockstep   each iteration started from FAISS's own centroids: one
 *                 flashkm iteration (fkm_train, niter 1, all k rows given)
 *                 against one FAISS iteration (Clustering, niter 1, same
 *                 rows); centroids, nsplit and imbalance compared bit for bit.
 *                 Where the two assignments differ, the step is checked to be
 *                 a BLAS near-tie (as in P2) and the chain goes on from FAISS's
 *                 centroids. Needs nredo = 1 and no frozen centroids (a chain
 *                 step would freeze all k rows).
 *   P2 assignment labels of every input point against FAISS's final
 *                 centroids: fkm_assign versus FAISS's flat search; where
 *                 the context sums every dot product in FAISS's order
 *                 (fkm_order_coverage) none may differ, elsewhere each
 *                 difference is listed with FAISS's gap and must be within
 *                 the rounding bound below.
 *   P3 end to end centroids and per-iteration statistics of full runs.
 *
 * Bound for P2 (standard model, u = 2^-24, gamma_m = m u / (1 - m u)). For a
 * point x and centroid c, the exact L2 distance is D = |x|^2 + |c|^2 - 2<x,c>.
 * Any implementation that forms the dot product in float in any order (with
 * or without fused multiply-adds: BLAS kernels, our fmaf chain) errs by at
 * most gamma_d sum|x_j c_j| <= gamma_d |x||c|; the norms, float squares summed
 * in any order and rounded, by gamma_{d+1} |x|^2 (and |c|^2); the final float
 * sum and difference by u (|x|^2 + |c|^2) + u |x - c|^2 <= u (2(|x|^2 + |c|^2)
 * + 2|x||c|). So each computed distance is within
 *   E(c) = gamma_{d+1}(|x|^2 + |c|^2) + 2 gamma_d |x||c| + 2u(|x|^2 + |c|^2 + |x||c|)
 * of D. If FAISS ranks c1 before c2 with gap g = dF(c2) - dF(c1) >= 0 while
 * flashkm ranks c2 first (dO(c2) <= dO(c1)), then
 *   g = (dF(c2) - dO(c2)) + (dO(c2) - dO(c1)) + (dO(c1) - dF(c1)) <= 2 E(c1) + 2 E(c2).
 * Inner product: E(c) = gamma_d |x||c|, the same argument. A difference with a
 * larger gap is a real disagreement. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "faiss_ops.h"

enum { OPT_LIST = 1, OPT_HELP };

/* How deep FAISS's ranking is searched for flashkm's label. */
#define FKM_CLI_TOPK 8

static double gamma_m(double m) {
  const double u = 0x1p-24;
  return m * u / (1.0 - m * u);
}

static double sqnorm(const float *v, int64_t d) {
  double s = 0;
  for (int64_t j = 0; j < d; j++) s += (double)v[j] * (double)v[j];
  return s;
}

/* E(c) of the header comment. */
static double dist_error(fkm_metric metric, int64_t d, double xn, double cn) {
  double xc = sqrt(xn) * sqrt(cn);
  if (metric == FKM_METRIC_INNER_PRODUCT) return gamma_m((double)d) * xc;
  return gamma_m((double)d + 1) * (xn + cn) + 2 * gamma_m((double)d) * xc +
         2 * 0x1p-24 * (xn + cn + xc);
}

typedef struct diff_report {
  int64_t n_diff, n_near, n_far;
  double worst_ratio; /* max gap / bound over the differences */
} diff_report;

/* Compares flashkm's labels of x (n rows) on centroids c with FAISS's; lists
 * up to max_list differences (prefix on each line). */
static int compare_labels(fkm_ctx *ctx, const fkm_params *params, const float *x, int64_t n,
                          int64_t d, const float *c, int64_t k, int max_list,
                          const char *prefix, diff_report *rep) {
  char msg[FKM_CLI_MSG_LEN];
  int64_t topk = k < FKM_CLI_TOPK ? k : FKM_CLI_TOPK;
  float *D = malloc((size_t)(n * topk) * sizeof *D);
  int64_t *I = malloc((size_t)(n * topk) * sizeof *I);
  int64_t *L = malloc((size_t)n * sizeof *L);
  int rc = -1;
  memset(rep, 0, sizeof *rep);
  if (!D || !I || !L) {
    fkm_cli_error("out of memory comparing labels");
    goto out;
  }
  if (fkm_fx_knn(params->metric, d, k, c, n, x, topk, D, I, msg) != 0) {
    fkm_cli_error("%s", msg);
    goto out;
  }
  fkm_status s = fkm_assign(ctx, params, n, d, k, FKM_DTYPE_F32, x, c, L, NULL);
  if (s != FKM_OK) {
    fkm_cli_error("fkm_assign failed: %s: %s", fkm_status_string(s), fkm_ctx_last_error(ctx));
    goto out;
  }
  for (int64_t i = 0; i < n; i++) {
    if (L[i] == I[i * topk]) continue;
    rep->n_diff++;
    const float *xi = x + i * d;
    int64_t pos = -1;
    for (int64_t r = 1; r < topk; r++)
      if (I[i * topk + r] == L[i]) pos = r;
    double xn = sqnorm(xi, d);
    double e1 = dist_error(params->metric, d, xn, sqnorm(c + I[i * topk] * d, d));
    double e2 = dist_error(params->metric, d, xn, sqnorm(c + L[i] * d, d));
    double bound = 2 * (e1 + e2);
    double gap = pos < 0 ? INFINITY : fabs((double)D[i * topk + pos] - (double)D[i * topk]);
    int near = gap <= bound;
    if (near) rep->n_near++;
    else rep->n_far++;
    if (bound > 0 && gap / bound > rep->worst_ratio) rep->worst_ratio = gap / bound;
    if (rep->n_diff <= max_list)
      printf("%s%lld: FAISS %lld, flashkm %lld, gap %.3g %s bound %.3g%s\n", prefix,
             (long long)i, (long long)I[i * topk], (long long)L[i], gap, near ? "<=" : ">",
             bound, near ? "" : "  DISAGREEMENT");
  }
  if (rep->n_diff > max_list)
    printf("%s... %lld more\n", prefix, (long long)(rep->n_diff - max_list));
  rc = 0;
out:
  free(D);
  free(I);
  free(L);
  return rc;
}

/* Whether flashkm must give FAISS's labels exactly, near-ties included: the
 * CPU engine sums the BLAS path with FAISS's own BLAS (params->blas_sgemm);
 * the CUDA engine keeps its own order, where near-ties within the bound may
 * differ. */
/* Whether this context computes every dot product of a search of n rows in
 * FAISS's order (fkm_order_coverage): then no label may differ, near-ties
 * included. */
static int labels_exact_of(fkm_ctx *ctx, const fkm_params *p, int64_t n, int64_t d, int64_t k,
                           int64_t *covered) {
  *covered = 0;
  return fkm_order_coverage(ctx, p, n, d, k, FKM_DTYPE_F32, covered) == FKM_OK &&
         *covered == n * k;
}

static int labels_exact(fkm_ctx *ctx, const fkm_params *p, int64_t n, int64_t d, int64_t k) {
  int64_t covered;
  return labels_exact_of(ctx, p, n, d, k, &covered);
}

static int64_t rows_differing(const float *a, const float *b, int64_t k, int64_t d) {
  int64_t m = 0;
  for (int64_t r = 0; r < k; r++) m += memcmp(a + r * d, b + r * d, (size_t)d * sizeof(float)) != 0;
  return m;
}

static int same_bits_f(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }
static int same_bits_d(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* One flashkm and one FAISS run with the given params from the first n_init
 * rows of init; results into cf (flashkm) and cF (FAISS). */
typedef struct pair_run {
  fkm_iteration_stats *sf, *sF;
  int64_t nsf, nsF;
  double tf, tF;
} pair_run;

static int run_pair(fkm_ctx *ctx, const fkm_params *p, const fkm_cli_inputs *in, int64_t k,
                    const float *init, int64_t n_init, float *cf, float *cF, pair_run *pr,
                    int64_t cap) {
  char msg[FKM_CLI_MSG_LEN];
  int64_t n = in->x.n, d = in->x.d;
  size_t bytes = (size_t)(k * d) * sizeof(float);
  memset(cf, 0, bytes);
  memset(cF, 0, bytes);
  if (n_init) {
    memcpy(cf, init, (size_t)(n_init * d) * sizeof(float));
    memcpy(cF, init, (size_t)(n_init * d) * sizeof(float));
  }
  double t0 = fkm_cli_now();
  fkm_status s = fkm_train(ctx, p, n, d, k, FKM_DTYPE_F32, in->x.data, in->weights.data, cf,
                           n_init, NULL, NULL, pr->sf, cap, &pr->nsf);
  pr->tf = fkm_cli_now() - t0;
  if (s != FKM_OK) {
    fkm_cli_error("flashkm training failed: %s: %s", fkm_status_string(s),
                  fkm_ctx_last_error(ctx));
    return s == FKM_ERR_INTERRUPTED ? FKM_EXIT_INTERRUPTED : FKM_EXIT_FAIL;
  }
  t0 = fkm_cli_now();
  if (fkm_fx_clustering(p, n, d, k, in->x.data, in->weights.data, cF, n_init, pr->sF, cap,
                        &pr->nsF, msg) != 0) {
    fkm_cli_error("%s", msg);
    return FKM_EXIT_FAIL;
  }
  pr->tF = fkm_cli_now() - t0;
  if (pr->nsf > cap) pr->nsf = cap;
  if (pr->nsF > cap) pr->nsF = cap;
  return FKM_EXIT_OK;
}

typedef struct parity_ctx {
  const char *input;
  fkm_cli_train_opts *o;
  fkm_cli_inputs *in;
  fkm_ctx *ctx;
  int max_list;
} parity_ctx;

typedef enum { LEVEL_PASS, LEVEL_FAIL, LEVEL_NA } level;
static const char *level_name(level l) {
  return l == LEVEL_PASS ? "PASS" : l == LEVEL_FAIL ? "FAIL" : "n/a ";
}

/* The training rows in FAISS's order (the subsample when n > k * max, by
 * the library's own rule: fkm_train_rows). */
static float *training_rows(const parity_ctx *pc, int64_t *n_train) {
  int64_t n = pc->in->x.n, d = pc->in->x.d, k = pc->o->k;
  int64_t cap = k * (int64_t)pc->o->params.max_points_per_centroid;
  const float *x = pc->in->x.data;
  int64_t *idx = n > cap ? malloc((size_t)cap * sizeof *idx) : NULL;
  if ((n > cap && !idx) ||
      fkm_train_rows(pc->ctx, &pc->o->params, n, k, idx, n_train) != FKM_OK) {
    free(idx);
    return NULL;
  }
  float *rows = malloc((size_t)(*n_train * d) * sizeof *rows);
  for (int64_t i = 0; rows && i < *n_train; i++)
    memcpy(rows + i * d, x + (idx ? idx[i] : i) * d, (size_t)d * sizeof(float));
  free(idx);
  return rows;
}

static int p1_lockstep(const parity_ctx *pc, level *out, int64_t *steps_na,
                       int64_t *points_na) {
  const fkm_params *p0 = &pc->o->params;
  int64_t k = pc->o->k, d = pc->in->x.d;
  *steps_na = 0;
  *points_na = 0;
  if (p0->nredo != 1 || p0->frozen_centroids || pc->in->x.n == k) {
    printf("P1 lockstep    n/a   needs nredo = 1, no frozen centroids and n > k\n");
    *out = LEVEL_NA;
    return 0;
  }
  size_t bytes = (size_t)(k * d) * sizeof(float);
  float *cur = malloc(bytes), *cf = malloc(bytes), *cF = malloc(bytes), *pp = malloc(bytes);
  fkm_iteration_stats sf[2], sF[2];
  pair_run pr = {sf, sF, 0, 0, 0, 0};
  int rc = -1;
  level lv = LEVEL_PASS;
  int64_t obj_equal = 0;
  if (!cur || !cf || !cF || !pp) {
    fkm_cli_error("out of memory");
    goto out;
  }
  /* Every printed line below ends the phase first (a no-op once ended). */
  fkm_cli_phase_begin(pc->o->quiet, "P1 lockstep: %d iterations, each from FAISS's centroids",
                      p0->niter);
  /* Step 0: subsample, initial rows and post-processing (niter = 0). */
  fkm_params p = *p0;
  p.progress = NULL;
  p.niter = 0;
  if (run_pair(pc->ctx, &p, pc->in, k, pc->in->init.data, pc->in->n_init, cf, cF, &pr, 2) != 0)
    goto out;
  int64_t bad0 = rows_differing(cf, cF, k, d);
  if (bad0) {
    fkm_cli_phase_end();
    printf("P1 lockstep    FAIL  initial centroids (niter 0): %lld of %lld rows differ\n",
           (long long)bad0, (long long)k);
    lv = LEVEL_FAIL;
  }
  memcpy(cur, cF, bytes);
  p.niter = 1;
  for (int t = 1; t <= p0->niter; t++) {
    if (fkm_cli_interrupted()) {
      fkm_cli_phase_end();
      fkm_cli_error("interrupted at P1 step %d", t);
      rc = -2;
      goto out;
    }
    if (run_pair(pc->ctx, &p, pc->in, k, cur, k, cf, cF, &pr, 2) != 0) goto out;
    int64_t bad = rows_differing(cf, cF, k, d);
    int st_ok = pr.nsf == 1 && pr.nsF == 1 && sf[0].nsplit == sF[0].nsplit &&
                same_bits_d(sf[0].imbalance_factor, sF[0].imbalance_factor);
    obj_equal += pr.nsf == 1 && pr.nsF == 1 && same_bits_f(sf[0].obj, sF[0].obj);
    if (bad || !st_ok) {
      /* Same start; did the assignments differ? Labels against the
       * post-processed start (FAISS niter = 0 from cur), on the training rows. */
      fkm_cli_phase_end();
      fkm_params p_pp = p;
      p_pp.niter = 0;
      fkm_iteration_stats dummy[2];
      int64_t nd;
      char msg[FKM_CLI_MSG_LEN];
      memcpy(pp, cur, bytes);
      if (fkm_fx_clustering(&p_pp, pc->in->x.n, d, k, pc->in->x.data, pc->in->weights.data, pp,
                            k, dummy, 2, &nd, msg) != 0) {
        fkm_cli_error("%s", msg);
        goto out;
      }
      int64_t n_train;
      float *rows = training_rows(pc, &n_train);
      if (!rows) {
        const char *why = fkm_ctx_last_error(pc->ctx);
        fkm_cli_error("gathering the training rows: %s", *why ? why : "out of memory");
        goto out;
      }
      diff_report dr;
      char prefix[64];
      snprintf(prefix, sizeof prefix, "               iteration %d, training row ", t);
      int crc = compare_labels(pc->ctx, &p, rows, n_train, d, pp, k, pc->max_list, prefix, &dr);
      free(rows);
      if (crc != 0) goto out;
      if (dr.n_diff > 0 && dr.n_far == 0 && !labels_exact(pc->ctx, &p, n_train, d, k)) {
        (*steps_na)++;
        *points_na += dr.n_diff;
      } else {
        printf("P1 lockstep    FAIL  iteration %d: %lld of %lld centroid rows differ, nsplit %d/%d, "
               "imbalance %.17g/%.17g, with %lld label differences (%lld beyond the bound)\n",
               t, (long long)bad, (long long)k, sf[0].nsplit, sF[0].nsplit,
               sf[0].imbalance_factor, sF[0].imbalance_factor, (long long)dr.n_diff,
               (long long)dr.n_far);
        lv = LEVEL_FAIL;
      }
    }
    memcpy(cur, cF, bytes); /* go on from FAISS's centroids */
  }
  fkm_cli_phase_end();
  if (lv == LEVEL_PASS)
    printf("P1 lockstep    PASS  %d iterations from FAISS's centroids: centroids, nsplit and "
           "imbalance equal bit for bit (objective bits equal in %lld)\n",
           p0->niter, (long long)obj_equal);
  if (*steps_na)
    printf("               %lld iteration(s) not comparable: assignments differ only at "
           "near-ties listed above\n",
           (long long)*steps_na);
  *out = lv;
  rc = 0;
out:
  fkm_cli_phase_end();
  free(cur);
  free(cf);
  free(cF);
  free(pp);
  return rc;
}

int fkm_cli_lockstep(fkm_ctx *ctx, const fkm_params *params, fkm_cli_inputs *in, int64_t k,
                     int max_list, fkm_cli_lockstep_result *res) {
  fkm_cli_train_opts o;
  memset(&o, 0, sizeof o);
  o.params = *params;
  o.k = k;
  parity_ctx pc = {NULL, &o, in, ctx, max_list};
  level lv = LEVEL_NA;
  int rc = p1_lockstep(&pc, &lv, &res->steps_near_tie, &res->points_near_tie);
  res->passed = lv == LEVEL_PASS;
  res->applicable = lv != LEVEL_NA;
  return rc;
}

static void parity_help(void) {
  printf(
      "usage: flashkm parity INPUT -k K [options]\n\n"
      "Run stock faiss::Clustering and flashkm on the same data and print the\n"
      "parity report of docs/contract.md section 9:\n"
      "  P1 lockstep: every iteration started from FAISS's own centroids gives\n"
      "     FAISS's centroids, nsplit and imbalance bit for bit;\n"
      "  P2 assignment: labels equal FAISS's. Where every dot product is summed\n"
      "     in FAISS's order (the CPU engine calls the linked FAISS's BLAS; the\n"
      "     CUDA engine follows the order it learned of it, fkm_order_coverage),\n"
      "     every one; elsewhere except at near-ties, each listed with its gap,\n"
      "     which must be within FAISS's float rounding bound. Also listed: the\n"
      "     near-ties flashkm's own summation order would decide otherwise than\n"
      "     FAISS's BLAS;\n"
      "  P3 end to end: trained centroids equal FAISS's bit for bit (on the CUDA\n"
      "     engine n/a when near-ties make the two runs legitimately part ways).\n"
      "Exit code 1 if any level fails. INPUT as for train.\n\n"
      "      --max-listed N              near-ties listed per level (20)\n");
  fkm_cli_train_opts_help(stdout);
}

static void bench_help(void) {
  printf(
      "usage: flashkm bench INPUT -k K [options]\n\n"
      "Training time of flashkm and of stock faiss::Clustering, side by side, on\n"
      "the same data with the same parameters (one run each), and whether the\n"
      "centroids are bit-identical. INPUT as for train.\n\n");
  fkm_cli_train_opts_help(stdout);
}

/* What parity and bench share: options, inputs, context, and the buffers of
 * one flashkm run and one FAISS run. */
typedef struct session {
  fkm_cli_train_opts o;
  fkm_cli_inputs in;
  fkm_ctx *ctx;
  const char *input;
  int max_list;
  int64_t cap; /* stats entries per run */
  float *cf, *cF;
  pair_run pr;
} session;

static void session_close(session *se) {
  free(se->cf);
  free(se->cF);
  free(se->pr.sf);
  free(se->pr.sF);
  fkm_ctx_destroy(se->ctx);
  fkm_cli_inputs_free(&se->in);
}

/* Parse, load, make the context, allocate. Returns -1 after --help. */
static int setup(int argc, char **argv, const char *cmd, session *se) {
  fkm_cli_train_opts *o = &se->o;
  fkm_cli_inputs *in = &se->in;
  fkm_ctx **ctx = &se->ctx;
  const char **input = &se->input;
  int *max_list = &se->max_list;
  static const fkm_cli_opt own[] = {
      {"max-listed", 0, 1, OPT_LIST}, {"help", 'h', 0, OPT_HELP}, {NULL, 0, 0, 0}};
  fkm_cli_opt table[FKM_CLI_MAX_OPTS];
  fkm_cli_make_table(own, NULL, table);
  fkm_cli_train_opts_init(o);
  *input = NULL;
  int i = 0, id, r;
  const char *val;
  long long v;
  while ((r = fkm_cli_next(argc, argv, &i, table, &id, &val)) != 0) {
    if (r < 0) return FKM_EXIT_USAGE;
    if (r == 2) {
      if (fkm_cli_take_input(cmd, val, input)) return FKM_EXIT_USAGE;
      continue;
    }
    if (id == OPT_HELP) {
      if (!strcmp(cmd, "parity")) parity_help();
      else bench_help();
      return -1;
    }
    if (id == OPT_LIST) {
      if (fkm_cli_int("--max-listed", val, 0, 1 << 30, &v)) return FKM_EXIT_USAGE;
      *max_list = (int)v;
      continue;
    }
    if (fkm_cli_train_opts_apply(o, id, val) != 0) return FKM_EXIT_USAGE;
  }
  if (!*input || o->k < 0) {
    fkm_cli_error("%s needs INPUT and -k K (see flashkm %s --help)", cmd, cmd);
    return FKM_EXIT_USAGE;
  }
  if (o->params.assign_mode == FKM_ASSIGN_FAST) {
    fkm_cli_error("--fast gives approximate labels by design: %s compares FAISS's exact mode",
                  cmd);
    return FKM_EXIT_USAGE;
  }
  if (fkm_cli_inputs_load(*input, o, 0, in) != 0) return FKM_EXIT_FAIL;
  char msg[FKM_CLI_MSG_LEN];
  if (fkm_cli_matrix_to_f32(&in->x, msg) != 0) { /* FAISS takes float32 */
    fkm_cli_error("%s", msg);
    fkm_cli_inputs_free(in);
    return FKM_EXIT_FAIL;
  }
  *ctx = fkm_cli_context(o);
  if (!*ctx) {
    fkm_cli_inputs_free(in);
    return FKM_EXIT_FAIL;
  }
  se->cap = (int64_t)o->params.niter * o->params.nredo + 1;
  size_t bytes = (size_t)(o->k * in->x.d) * sizeof(float);
  se->cf = malloc(bytes);
  se->cF = malloc(bytes);
  se->pr.sf = calloc((size_t)se->cap, sizeof(fkm_iteration_stats));
  se->pr.sF = calloc((size_t)se->cap, sizeof(fkm_iteration_stats));
  if (!se->cf || !se->cF) {
    fkm_cli_error("out of memory for 2 x %lld x %lld centroids", (long long)o->k,
                  (long long)in->x.d);
    session_close(se);
    return FKM_EXIT_FAIL;
  }
  if (!se->pr.sf || !se->pr.sF) { /* both sides' statistics are compared whole */
    fkm_cli_error("out of memory for the iteration statistics: 2 x %lld entries of %zu bytes "
                  "(niter * nredo + 1; lower --niter)",
                  (long long)se->cap, sizeof(fkm_iteration_stats));
    session_close(se);
    return FKM_EXIT_FAIL;
  }
  o->params.log = fkm_cli_log_cb;
  if (!o->quiet)
    fprintf(stderr, "%s: %lld x %lld %s (%s), k = %lld, flashkm on %s vs FAISS %s\n", cmd,
            (long long)in->x.n, (long long)in->x.d, fkm_cli_dtype_name(in->x.file_elem), *input,
            (long long)o->k, fkm_ctx_device_name(*ctx), fkm_fx_version());
  return FKM_EXIT_OK;
}

int fkm_cli_cmd_parity(int argc, char **argv) {
  session se;
  memset(&se, 0, sizeof se);
  se.max_list = 20;
  int rc = setup(argc, argv, "parity", &se);
  if (rc < 0) return FKM_EXIT_OK; /* --help */
  if (rc != FKM_EXIT_OK) return rc;
  fkm_cli_sigint_install();
  fkm_cli_train_opts o = se.o;
  fkm_cli_inputs in = se.in;
  fkm_ctx *ctx = se.ctx;
  float *cf = se.cf, *cF = se.cF;
  pair_run pr = se.pr;
  int64_t k = o.k, d = in.x.d, cap = se.cap;
  int max_list = se.max_list;
  parity_ctx pc = {se.input, &o, &in, ctx, max_list};
  level l1 = LEVEL_NA, l2, l3;
  int64_t steps_na = 0, points_na = 0;
  rc = FKM_EXIT_FAIL;

  int p1 = p1_lockstep(&pc, &l1, &steps_na, &points_na);
  if (p1 == -2) rc = FKM_EXIT_INTERRUPTED;
  if (p1 != 0) goto out;

  fkm_cli_phase_begin(o.quiet, "P3: whole runs of flashkm and FAISS");
  int prc = run_pair(ctx, &o.params, &in, k, in.init.data, in.n_init, cf, cF, &pr, cap);
  fkm_cli_phase_end();
  if (prc != FKM_EXIT_OK) {
    rc = prc;
    goto out;
  }

  diff_report dr;
  printf("P2 assignment  on FAISS's final centroids, %lld points:\n", (long long)in.x.n);
  if (compare_labels(ctx, &o.params, in.x.data, in.x.n, d, cF, k, max_list, "               row ",
                     &dr) != 0)
    goto out;
  int64_t covered;
  const int exact = labels_exact_of(ctx, &o.params, in.x.n, d, k, &covered);
  l2 = (exact ? dr.n_diff : dr.n_far) ? LEVEL_FAIL : LEVEL_PASS;
  printf("P2 assignment  %s  %lld labels differ: %lld near-ties within the bound, %lld beyond "
         "(worst gap/bound %.3g); %lld of %lld dot products summed in FAISS's order%s\n",
         level_name(l2), (long long)dr.n_diff, (long long)dr.n_near, (long long)dr.n_far,
         dr.worst_ratio, (long long)covered, (long long)(in.x.n * k),
         exact ? ": none may differ" : "");
  if (o.params.blas_sgemm) {
    /* The near-ties FAISS's BLAS decided: where flashkm's own order (an fma
     * chain) would have given another label. */
    fkm_params own = o.params;
    own.blas_sgemm = NULL;
    diff_report orr;
    printf("P2 order       the labels flashkm's own summation order would give instead "
           "(FAISS's label, own order's, their gap):\n");
    if (compare_labels(ctx, &own, in.x.data, in.x.n, d, cF, k, max_list,
                       "               own order, row ", &orr) != 0)
      goto out;
    printf("P2 order       %lld points are near-ties between the two orders, %s\n",
           (long long)orr.n_diff,
           exact ? "each decided as FAISS's BLAS decides it"
                 : "those outside FAISS's order decided by flashkm's");
  }

  int64_t bad = rows_differing(cf, cF, k, d);
  int64_t st_bad = pr.nsf != pr.nsF;
  for (int64_t i = 0; i < pr.nsf && i < pr.nsF; i++)
    st_bad += !same_bits_f(pr.sf[i].obj, pr.sF[i].obj) || pr.sf[i].nsplit != pr.sF[i].nsplit ||
              !same_bits_d(pr.sf[i].imbalance_factor, pr.sF[i].imbalance_factor);
  if (bad == 0 && st_bad == 0) {
    l3 = LEVEL_PASS;
    printf("P3 end to end  PASS  %lld centroids equal bit for bit; objective, nsplit, imbalance "
           "equal in all %lld iterations\n",
           (long long)k, (long long)pr.nsf);
  } else if (bad == 0) {
    /* The objective sums FAISS's BLAS distances: it may differ in the last
     * bits where the centroids do not. */
    l3 = LEVEL_PASS;
    printf("P3 end to end  PASS  %lld centroids equal bit for bit; %lld of %lld iterations "
           "report other objective bits (BLAS dot-product order)\n",
           (long long)k, (long long)st_bad, (long long)pr.nsf);
  } else if (!exact && (dr.n_near > 0 || steps_na > 0 || l1 == LEVEL_NA)) {
    l3 = LEVEL_NA;
    printf("P3 end to end  n/a   %lld of %lld centroids differ; near-ties (P1/P2) let FAISS and "
           "flashkm part ways legitimately\n",
           (long long)bad, (long long)k);
  } else {
    l3 = LEVEL_FAIL;
    printf("P3 end to end  FAIL  %lld of %lld centroids differ%s\n", (long long)bad,
           (long long)k, exact ? "" : " with no near-tie to explain it");
  }
  printf("times          flashkm %.3f s, FAISS %.3f s (speedup %.2fx)\n", pr.tf, pr.tF,
         pr.tF / pr.tf);
  int failed = l1 == LEVEL_FAIL || l2 == LEVEL_FAIL || l3 == LEVEL_FAIL;
  printf("verdict        %s\n", failed ? "FAIL" : "PASS");
  rc = failed ? FKM_EXIT_FAIL : FKM_EXIT_OK;
out:
  session_close(&se);
  return rc;
}

int fkm_cli_cmd_bench(int argc, char **argv) {
  session se;
  memset(&se, 0, sizeof se);
  int rc = setup(argc, argv, "bench", &se);
  if (rc < 0) return FKM_EXIT_OK; /* --help */
  if (rc != FKM_EXIT_OK) return rc;
  fkm_cli_sigint_install();
  const fkm_cli_train_opts o = se.o;
  int64_t k = o.k, d = se.in.x.d;
  pair_run *pr = &se.pr;
  rc = run_pair(se.ctx, &o.params, &se.in, k, se.in.init.data, se.in.n_init, se.cf, se.cF, pr,
                se.cap);
  if (rc != FKM_EXIT_OK) goto out;
  int64_t bad = rows_differing(se.cf, se.cF, k, d);
  char name[32];
  snprintf(name, sizeof name, "FAISS %s", fkm_fx_version());
  printf("%lld x %lld, k = %lld, niter %d, nredo %d; flashkm on %s\n", (long long)se.in.x.n,
         (long long)d, (long long)k, o.params.niter, o.params.nredo, fkm_ctx_device_name(se.ctx));
  printf("%-14s %12s %12s\n", "", "train (s)", "ms/iter");
  printf("%-14s %12.3f %12.2f\n", "flashkm", pr->tf, pr->nsf ? 1e3 * pr->tf / (double)pr->nsf : 0.0);
  printf("%-14s %12.3f %12.2f\n", name, pr->tF, pr->nsF ? 1e3 * pr->tF / (double)pr->nsF : 0.0);
  printf("speedup        %.2fx\n", pr->tF / pr->tf);
  printf("centroids      %s\n", bad ? "not identical (flashkm parity tells whether they are "
                                          "EQUIVALENT or DIFFERENT)"
                                    : "identical bit for bit");
  rc = FKM_EXIT_OK;
out:
  session_close(&se);
  return rc;
}
