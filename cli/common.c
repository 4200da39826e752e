/* What the subcommands share: option parsing, the FAISS-named training
 * options, loading and checking inputs, the context, progress and Ctrl-C. */
#include "cli.h"
#ifdef FLASHKM_HAVE_FAISS
#include "flashkm_faiss.h"
#endif

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void fkm_cli_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("flashkm: error: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

double fkm_cli_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------- option parsing */

/* Optimal string alignment distance (Levenshtein with transpositions) of
 * a[0..la) and b[0..lb), capped at 9: enough to rank suggestions. */
static int edit_distance(const char *a, size_t la, const char *b, size_t lb) {
  enum { MAX = 48 };
  if (la >= MAX || lb >= MAX) return 9;
  int d[MAX][MAX];
  for (size_t i = 0; i <= la; i++) d[i][0] = (int)i;
  for (size_t j = 0; j <= lb; j++) d[0][j] = (int)j;
  for (size_t i = 1; i <= la; i++)
    for (size_t j = 1; j <= lb; j++) {
      int cost = a[i - 1] != b[j - 1];
      int v = d[i - 1][j] + 1;
      if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
      if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
          d[i - 2][j - 2] + 1 < v)
        v = d[i - 2][j - 2] + 1;
      d[i][j] = v;
    }
  return d[la][lb] < 9 ? d[la][lb] : 9;
}

const char *fkm_cli_closest(const char *word, size_t len, const char *const *names, size_t n) {
  const char *best = NULL;
  int best_d = 9;
  for (size_t i = 0; i < n; i++) {
    size_t ln = strlen(names[i]);
    int dist = edit_distance(word, len, names[i], ln);
    /* a prefix of a longer name counts as close (--max-points) */
    if (len >= 3 && len < ln && !strncmp(word, names[i], len)) dist = 1;
    if (dist < best_d) best_d = dist, best = names[i];
  }
  /* at most a third of the word wrong, and never more than 3 edits */
  return best && best_d <= 3 && (size_t)best_d * 3 <= (len > 3 ? len : 3) ? best : NULL;
}

static void unknown_option(const char *a, const fkm_cli_opt *opts) {
  const char *names[64];
  size_t n = 0;
  for (const fkm_cli_opt *o = opts; o->name && n < 64; o++) names[n++] = o->name;
  const char *word = a[1] == '-' ? a + 2 : a + 1;
  const char *eq = strchr(word, '=');
  const char *near = fkm_cli_closest(word, eq ? (size_t)(eq - word) : strlen(word), names, n);
  if (near)
    fkm_cli_error("unknown option '%s' (did you mean --%s?)", a, near);
  else
    fkm_cli_error("unknown option '%s' (see --help)", a);
}

int fkm_cli_next(int argc, char **argv, int *i, const fkm_cli_opt *opts,
                 int *id, const char **val) {
  if (*i >= argc) return 0;
  const char *a = argv[(*i)++];
  if (a[0] != '-' || a[1] == '\0') {
    *val = a;
    return 2;
  }
  const fkm_cli_opt *hit = NULL;
  const char *inline_val = NULL;
  if (a[1] == '-') {
    const char *name = a + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    for (const fkm_cli_opt *o = opts; o->name; o++)
      if (strlen(o->name) == len && !strncmp(o->name, name, len)) hit = o;
    if (eq) inline_val = eq + 1;
  } else {
    for (const fkm_cli_opt *o = opts; o->name; o++)
      if (o->short_name && o->short_name == a[1]) hit = o;
    if (hit && a[2] != '\0') {
      if (hit->has_arg) {
        inline_val = a + 2; /* -k64, as getopt reads it */
      } else {               /* grouped flags: -qv */
        for (const char *c = a + 2; *c; c++) {
          const fkm_cli_opt *f = NULL;
          for (const fkm_cli_opt *o = opts; o->name; o++)
            if (o->short_name == *c && !o->has_arg) f = o;
          if (!f) {
            fkm_cli_error("unknown option '-%c' in '%s' (see --help)", *c, a);
            return -1;
          }
        }
        *id = hit->id;
        *val = NULL;
        /* the next call reads the rest of the group: "-qv" becomes "-v"
         * (argv's strings are the program's to modify) */
        char *rest = argv[--*i];
        memmove(rest + 1, rest + 2, strlen(rest + 2) + 1);
        return 1;
      }
      *id = hit->id;
      *val = inline_val;
      return 1;
    }
  }
  if (!hit) {
    unknown_option(a, opts);
    return -1;
  }
  *id = hit->id;
  *val = NULL;
  if (hit->has_arg) {
    if (inline_val) {
      *val = inline_val;
    } else if (*i < argc) {
      *val = argv[(*i)++];
    } else {
      fkm_cli_error("option '%s' needs a value", a);
      return -1;
    }
  } else if (inline_val) {
    fkm_cli_error("option '--%s' takes no value", hit->name);
    return -1;
  }
  return 1;
}

int fkm_cli_take_input(const char *cmd, const char *val, const char **input) {
  if (*input) {
    fkm_cli_error("%s takes one INPUT; '%s' is a second one", cmd, val);
    return -1;
  }
  *input = val;
  return 0;
}

int fkm_cli_int(const char *opt, const char *val, long long lo, long long hi,
                long long *out) {
  char *end;
  errno = 0;
  long long v = strtoll(val, &end, 10);
  if (errno || end == val || *end != '\0') {
    fkm_cli_error("%s: '%s' is not an integer", opt, val);
    return -1;
  }
  if (v < lo || v > hi) {
    fkm_cli_error("%s: %lld is outside [%lld, %lld]", opt, v, lo, hi);
    return -1;
  }
  *out = v;
  return 0;
}

/* ---------------------------------------------- the training options */

enum {
  OPT_K = FKM_CLI_TRAIN_OPT_BASE,
  OPT_NITER,
  OPT_NREDO,
  OPT_SEED,
  OPT_MAXPTS,
  OPT_MINPTS,
  OPT_METRIC,
  OPT_SPHERICAL,
  OPT_INTC,
  OPT_INIT,
  OPT_FROZEN,
  OPT_WEIGHTS,
  OPT_BACKEND,
  OPT_DEVICE,
  OPT_FAST,
  OPT_THREADS,
  OPT_VERBOSE,
  OPT_QUIET,
  OPT_NO_CHECK,
  OPT_PROFILE,
  OPT_EARLY_STOP,
  OPT_INIT_METHOD,
  OPT_AFKMC2_CHAIN,
  OPT_FASTER_SUBSAMPLING,
  OPT_MEMORY_BUDGET
};

const fkm_cli_opt fkm_cli_train_opts_table[] = {
    {"k", 'k', 1, OPT_K},
    {"niter", 0, 1, OPT_NITER},
    {"nredo", 0, 1, OPT_NREDO},
    {"seed", 0, 1, OPT_SEED},
    {"max-points-per-centroid", 0, 1, OPT_MAXPTS},
    {"min-points-per-centroid", 0, 1, OPT_MINPTS},
    {"metric", 0, 1, OPT_METRIC},
    {"spherical", 0, 0, OPT_SPHERICAL},
    {"int-centroids", 0, 0, OPT_INTC},
    {"init", 0, 1, OPT_INIT},
    {"frozen", 0, 0, OPT_FROZEN},
    {"weights", 0, 1, OPT_WEIGHTS},
    {"backend", 0, 1, OPT_BACKEND},
    {"device", 0, 1, OPT_DEVICE},
    {"fast", 0, 0, OPT_FAST},
    {"threads", 0, 1, OPT_THREADS},
    {"verbose", 'v', 0, OPT_VERBOSE},
    {"quiet", 'q', 0, OPT_QUIET},
    {"no-check-finite", 0, 0, OPT_NO_CHECK},
    {"faiss-profile", 0, 1, OPT_PROFILE},
    {"early-stop-threshold", 0, 1, OPT_EARLY_STOP},
    {"init-method", 0, 1, OPT_INIT_METHOD},
    {"afkmc2-chain-length", 0, 1, OPT_AFKMC2_CHAIN},
    {"faster-subsampling", 0, 0, OPT_FASTER_SUBSAMPLING},
    {"memory-budget", 0, 1, OPT_MEMORY_BUDGET},
    {NULL, 0, 0, 0}};

void fkm_cli_make_table(const fkm_cli_opt *own, const char *const *keep, fkm_cli_opt *table) {
  int nt = 0;
  for (const fkm_cli_opt *p = own; p->name; p++) table[nt++] = *p;
  for (const fkm_cli_opt *p = fkm_cli_train_opts_table; p->name; p++) {
    int kept = keep == NULL;
    for (const char *const *k = keep; k && *k && !kept; k++) kept = !strcmp(p->name, *k);
    if (kept) table[nt++] = *p;
  }
  table[nt] = (fkm_cli_opt){NULL, 0, 0, 0};
}

/* The defaults of the profile's FAISS for the fields it has: from 1.14.2
 * on, ClusteringParameters.early_stop_threshold = 0 (stop when the
 * objective repeats); flashkm's own profile and older releases never stop
 * early. An --early-stop-threshold given on the command line wins. */
static void profile_defaults(fkm_cli_train_opts *o) {
  /* the linked FAISS's BLAS sums its dot products: its near-ties */
  o->params.blas_sgemm = NULL;
#ifdef FLASHKM_HAVE_FAISS
  if (!strcmp(o->profile_arg, "linked")) fkm_faiss_blas(&o->params);
#endif
  if (o->early_stop_given) return;
  o->params.early_stop_threshold = o->params.profile.faiss_version >= 11402 ? 0.0 : -1.0;
}

/* "linked": the FAISS this command is built with; flashkm's own without. */
static int set_profile(fkm_cli_train_opts *o, const char *name) {
  fkm_status s;
  if (!strcmp(name, "linked")) {
#ifdef FLASHKM_HAVE_FAISS
    s = fkm_faiss_profile(&o->params.profile);
    if (s != FKM_OK) {
      char near[64];
      fkm_profile_name(&o->params.profile, near, sizeof near);
      fkm_cli_error("--faiss-profile linked: flashkm has no profile for the linked FAISS "
                    "(nearest: %s; name it to use it)", near);
      return -1;
    }
#else
    fkm_profile_init(&o->params.profile, 0, FKM_SIMD_NONE);
#endif
  } else if ((s = fkm_profile_parse(name, &o->params.profile)) != FKM_OK) {
    if (s == FKM_ERR_UNSUPPORTED)
      fkm_cli_error("--faiss-profile: flashkm %s has no profile for %s", fkm_version_string(),
                    name);
    else
      fkm_cli_error("--faiss-profile: '%s' is not 'linked', 'flashkm' or "
                    "'faiss-MAJOR.MINOR[.PATCH][-none|-avx2|-avx512]'",
                    name);
    return -1;
  }
  snprintf(o->profile_arg, sizeof o->profile_arg, "%s", name);
  profile_defaults(o);
  return 0;
}

void fkm_cli_train_opts_init(fkm_cli_train_opts *o) {
  memset(o, 0, sizeof *o);
  fkm_params_init(&o->params);
  o->k = -1;
  o->backend = FKM_BACKEND_AUTO;
#ifdef FLASHKM_HAVE_FAISS
  /* the FAISS this command links, when flashkm has its profile */
  if (fkm_faiss_profile(&o->params.profile) != FKM_OK)
    fkm_profile_init(&o->params.profile, 0, FKM_SIMD_NONE);
  snprintf(o->profile_arg, sizeof o->profile_arg, "linked");
  profile_defaults(o);
#else
  snprintf(o->profile_arg, sizeof o->profile_arg, "flashkm");
#endif
}

void fkm_cli_profile_describe(const fkm_cli_train_opts *o, char *buf, size_t size) {
  char name[80];
  fkm_profile_name(&o->params.profile, name, sizeof name);
  if (!strcmp(o->profile_arg, "linked"))
    snprintf(buf, size, "%s (the linked FAISS%s)", name,
             o->params.blas_sgemm ? " and its BLAS" : "");
  else
    snprintf(buf, size, "%s", name);
}

int fkm_cli_train_opts_apply(fkm_cli_train_opts *o, int id, const char *val) {
  long long v = 0;
  fkm_params *p = &o->params;
  switch (id) {
    case OPT_K:
      if (fkm_cli_int("-k", val, 1, INT64_MAX, &v)) return -1;
      o->k = v;
      return 0;
    case OPT_NITER:
      if (fkm_cli_int("--niter", val, 0, INT32_MAX, &v)) return -1;
      p->niter = (int)v;
      return 0;
    case OPT_NREDO:
      if (fkm_cli_int("--nredo", val, 1, INT32_MAX, &v)) return -1;
      p->nredo = (int)v;
      return 0;
    case OPT_SEED:
      if (fkm_cli_int("--seed", val, INT64_MIN, INT64_MAX, &v)) return -1;
      p->seed = v;
      return 0;
    case OPT_MAXPTS:
      if (fkm_cli_int("--max-points-per-centroid", val, 1, INT32_MAX, &v)) return -1;
      p->max_points_per_centroid = (int)v;
      return 0;
    case OPT_MINPTS:
      if (fkm_cli_int("--min-points-per-centroid", val, 0, INT32_MAX, &v)) return -1;
      p->min_points_per_centroid = (int)v;
      return 0;
    case OPT_METRIC:
      if (!strcmp(val, "l2")) p->metric = FKM_METRIC_L2;
      else if (!strcmp(val, "ip")) p->metric = FKM_METRIC_INNER_PRODUCT;
      else {
        fkm_cli_error("--metric: '%s' is neither l2 nor ip", val);
        return -1;
      }
      return 0;
    case OPT_SPHERICAL: p->spherical = 1; return 0;
    case OPT_INTC: p->int_centroids = 1; return 0;
    case OPT_INIT: o->init_path = val; return 0;
    case OPT_FROZEN: p->frozen_centroids = 1; return 0;
    case OPT_WEIGHTS: o->weights_path = val; return 0;
    case OPT_BACKEND:
      if (!strcmp(val, "auto")) o->backend = FKM_BACKEND_AUTO;
      else if (!strcmp(val, "cpu")) o->backend = FKM_BACKEND_CPU;
      else if (!strcmp(val, "cuda")) o->backend = FKM_BACKEND_CUDA;
      else {
        fkm_cli_error("--backend: '%s' is not one of cpu, cuda, auto", val);
        return -1;
      }
      return 0;
    case OPT_DEVICE:
      if (fkm_cli_int("--device", val, 0, 1 << 20, &v)) return -1;
      o->device = (int)v;
      return 0;
    case OPT_FAST: /* flashkm's approximate labels: its own profile unless one is named */
      p->assign_mode = FKM_ASSIGN_FAST;
      if (!o->profile_given) fkm_profile_init(&p->profile, 0, FKM_SIMD_NONE);
      if (!o->profile_given) snprintf(o->profile_arg, sizeof o->profile_arg, "flashkm");
      profile_defaults(o);
      return 0;
    case OPT_PROFILE:
      o->profile_given = 1;
      return set_profile(o, val);
    case OPT_EARLY_STOP: {
      char *end;
      errno = 0;
      double t = strtod(val, &end);
      if (errno || end == val || *end != '\0' || t != t) {
        fkm_cli_error("--early-stop-threshold: '%s' is not a number", val);
        return -1;
      }
      p->early_stop_threshold = t;
      o->early_stop_given = 1;
      return 0;
    }
    case OPT_INIT_METHOD:
      if (!strcmp(val, "random")) p->init_method = FKM_INIT_RANDOM;
      else if (!strcmp(val, "kmeans++") || !strcmp(val, "k-means++"))
        p->init_method = FKM_INIT_KMEANS_PLUS_PLUS;
      else if (!strcmp(val, "afkmc2") || !strcmp(val, "afk-mc2")) p->init_method = FKM_INIT_AFK_MC2;
      else {
        fkm_cli_error("--init-method: '%s' is not one of random, kmeans++, afkmc2", val);
        return -1;
      }
      return 0;
    case OPT_AFKMC2_CHAIN:
      if (fkm_cli_int("--afkmc2-chain-length", val, 0, 65535, &v)) return -1;
      p->afkmc2_chain_length = (int)v;
      return 0;
    case OPT_FASTER_SUBSAMPLING: p->use_faster_subsampling = 1; return 0;
    case OPT_THREADS:
      if (fkm_cli_int("--threads", val, 0, 1 << 20, &v)) return -1;
      o->threads = (int)v;
      return 0;
    case OPT_MEMORY_BUDGET: {
      char *end;
      errno = 0;
      const unsigned long long b = strtoull(val, &end, 10);
      unsigned long long mult = 1;
      if (*end && !end[1]) {
        const char u = (char)(*end | 0x20);
        mult = u == 'k' ? 1ull << 10 : u == 'm' ? 1ull << 20 : u == 'g' ? 1ull << 30 : 0;
        if (mult) end++;
      }
      if (errno || end == val || *end || val[0] == '-' || !mult || b > SIZE_MAX / mult) {
        fkm_cli_error("--memory-budget: '%s' is not a byte count (a number, optionally "
                      "with K, M or G)", val);
        return -1;
      }
      p->memory_budget = (size_t)(b * mult);
      return 0;
    }
    case OPT_VERBOSE: p->verbose = 1; return 0;
    case OPT_QUIET: o->quiet = 1; return 0;
    case OPT_NO_CHECK: p->check_finite = 0; return 0;
    default:
      fkm_cli_error("internal: unhandled option id %d", id);
      return -1;
  }
}

void fkm_cli_train_opts_help(FILE *fp) {
  fputs(
      "Clustering options (FAISS's ClusteringParameters, same defaults):\n"
      "  -k, --k K                       number of centroids (required)\n"
      "      --niter N                   Lloyd iterations per run (25)\n"
      "      --nredo N                   runs, the best objective is kept (1)\n"
      "      --seed S                    random seed (1234)\n"
      "      --max-points-per-centroid N subsample above k*N points (256)\n"
      "      --min-points-per-centroid N warn below k*N points (39)\n"
      "      --metric l2|ip              distance (l2)\n"
      "      --spherical                 L2-normalise centroids after each update\n"
      "      --int-centroids             round centroids to integers\n"
      "      --init FILE                 initial centroids (n_init <= k rows)\n"
      "      --frozen                    the --init centroids never move\n"
      "      --weights FILE              one float weight per input point\n"
      "      --no-check-finite           skip the NaN/Inf scan of the input\n"
      "      --faiss-profile NAME        whose arithmetic to reproduce (docs/profiles.md):\n"
      "                                  linked (the FAISS built in, the default),\n"
      "                                  flashkm, or faiss-1.15.1[-none|-avx2|-avx512]...\n"      "  The fields of later FAISS releases (the profile's FAISS must have them):\n"
      "      --early-stop-threshold T    stop when |obj change| / |obj| <= T (1.14.2+;\n"
      "                                  its default 0 there, off before)\n"
      "      --init-method M             random, kmeans++ or afkmc2 (1.14+; random)\n"
      "      --afkmc2-chain-length N     AFK-MC^2's Markov chain length (50)\n"
      "      --faster-subsampling        SplitMix64 subsample (1.9+; off)\n"
      "Engine options:\n"
      "      --backend cpu|cuda|auto     engine (auto: CUDA when present)\n"
      "      --device N                  CUDA device ordinal (0)\n"
      "      --threads N                 CPU engine threads (0: all)\n"
      "      --fast                      fp16 data only: approximate tensor-core\n"
      "                                  assignment, not FAISS's labels\n"
      "      --memory-budget SIZE        engine memory a run may hold (bytes, or with\n"
      "                                  K, M or G); a larger training set is\n"
      "                                  streamed, same results (0: no limit)\n"
      "  -v, --verbose                   informational log lines\n"
      "  -q, --quiet                     no progress lines\n",
      fp);
}

const char *fkm_cli_backend_name(fkm_backend b) {
  return b == FKM_BACKEND_CUDA ? "cuda" : b == FKM_BACKEND_CPU ? "cpu" : "auto";
}

const char *fkm_cli_dtype_name(fkm_cli_elem e) {
  switch (e) {
    case FKM_CLI_F32: return "float32";
    case FKM_CLI_F16: return "float16";
    case FKM_CLI_U8: return "uint8";
    default: return "int8";
  }
}

/* ---------------------------------------------------------- inputs */

static int report_nonfinite(const char *path, const fkm_cli_matrix *m) {
  int64_t col = 0, row = fkm_cli_matrix_first_nonfinite(m, &col);
  if (row < 0) return 0;
  fkm_cli_error("%s: NaN or Inf at row %lld, column %lld", path, (long long)row,
                (long long)col);
  return -1;
}

int fkm_cli_inputs_load(const char *input, const fkm_cli_train_opts *o, int rows_in_place,
                        fkm_cli_inputs *in) {
  return fkm_cli_inputs_load_part(input, o, rows_in_place, 0, 1, 0, in);
}

int fkm_cli_inputs_load_part(const char *input, const fkm_cli_train_opts *o, int rows_in_place,
                             int rank, int size, int shard, fkm_cli_inputs *in) {
  /* size > 1: a .fvecs file is read in place (rank's rows at their stride) */
  char msg[FKM_CLI_MSG_LEN];
  memset(in, 0, sizeof *in);
  if ((size > 1 ? fkm_cli_matrix_read_part(input, rank, size, &in->x, msg)
       : rows_in_place ? fkm_cli_matrix_read_rows(input, &in->x, msg)
                       : fkm_cli_matrix_read(input, &in->x, msg)) != 0) {
    fkm_cli_error("%s", msg);
    return -1;
  }
  in->n_all = in->x.n_all;
  in->first = in->x.first;
  const int64_t lo = in->first, hi = lo + in->x.n;
  /* a shard's rows are counted with the other ranks' (the library checks k) */
  if (!shard && o->k > in->n_all) {
    fkm_cli_error("%s: k = %lld is larger than the number of points, n = %lld", input,
                  (long long)o->k, (long long)in->n_all);
    goto fail;
  }
  /* a distributed run's values are checked by the library, which names a
   * bad one by its row in the whole input on every rank */
  if (o->params.check_finite && size == 1 && !shard && report_nonfinite(input, &in->x))
    goto fail;

  if (o->init_path) {
    if (fkm_cli_matrix_read(o->init_path, &in->init, msg) != 0 ||
        fkm_cli_matrix_to_f32(&in->init, msg) != 0) {
      fkm_cli_error("%s", msg);
      goto fail;
    }
    if (in->init.d != in->x.d) {
      fkm_cli_error("%s: dimension mismatch: d = %lld, the input %s has d = %lld", o->init_path,
                    (long long)in->init.d, input, (long long)in->x.d);
      goto fail;
    }
    if (in->init.n > o->k) {
      fkm_cli_error("%s: %lld initial centroids, more than k = %lld", o->init_path,
                    (long long)in->init.n, (long long)o->k);
      goto fail;
    }
    if (report_nonfinite(o->init_path, &in->init)) goto fail;
    in->n_init = in->init.n;
  } else if (o->params.frozen_centroids) {
    fkm_cli_error("--frozen needs --init FILE (the centroids to keep fixed)");
    goto fail;
  }

  if (o->weights_path) {
    if (fkm_cli_matrix_read(o->weights_path, &in->weights, msg) != 0 ||
        fkm_cli_matrix_to_f32(&in->weights, msg) != 0) {
      fkm_cli_error("%s", msg);
      goto fail;
    }
    if (in->weights.n * in->weights.d != in->n_all ||
        (in->weights.d != 1 && in->weights.n != 1)) {
      fkm_cli_error("%s: %lld x %lld weights, the input %s has %lld points (want one weight each)",
                    o->weights_path, (long long)in->weights.n, (long long)in->weights.d, input,
                    (long long)in->n_all);
      goto fail;
    }
    if (report_nonfinite(o->weights_path, &in->weights)) goto fail;
    const float *w = in->weights.data;
    for (int64_t i = 0; i < in->n_all; i++)
      if (w[i] < 0.0f) {
        fkm_cli_error("%s: negative weight %g at row %lld", o->weights_path, (double)w[i],
                      (long long)i);
        goto fail;
      }
    if (size > 1) { /* one column: this rank's weights */
      in->weights.data = (const float *)in->weights.data + lo;
      in->weights.n = hi - lo;
      in->weights.d = 1;
    }
  }
  return 0;
fail:
  fkm_cli_inputs_free(in);
  return -1;
}

void fkm_cli_inputs_free(fkm_cli_inputs *in) {
  fkm_cli_matrix_free(&in->x);
  fkm_cli_matrix_free(&in->init);
  fkm_cli_matrix_free(&in->weights);
}

fkm_ctx *fkm_cli_context(const fkm_cli_train_opts *o) {
  fkm_ctx *ctx = NULL;
  fkm_status s = fkm_ctx_create(o->backend, o->device, &ctx);
  if (s != FKM_OK) {
    fkm_cli_error("cannot use backend '%s' (device %d): %s", fkm_cli_backend_name(o->backend),
                  o->device, fkm_status_string(s));
    return NULL;
  }
  if (o->threads > 0 && fkm_ctx_set_num_threads(ctx, o->threads) != FKM_OK) {
    fkm_cli_error("--threads %d: %s", o->threads, fkm_ctx_last_error(ctx));
    fkm_ctx_destroy(ctx);
    return NULL;
  }
  return ctx;
}

/* ------------------------------------------------------ progress, Ctrl-C */

static volatile sig_atomic_t g_interrupted, g_sigint_polled;

/* A fatal signal removes the run's files in flight (matrix_write.c) and
 * then takes its default action (the exit status says which signal). The
 * first Ctrl-C of a command that polls fkm_cli_interrupted() only asks it
 * to stop, unless outputs are being written. */
static void on_signal(int sig) {
  if (sig == SIGINT && g_sigint_polled && !g_interrupted && !fkm_cli_outputs_pending()) {
    g_interrupted = 1;
    return;
  }
  fkm_cli_outputs_remove();
  signal(sig, SIG_DFL);
  raise(sig);
}

void fkm_cli_signals_install(void) {
  static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGPIPE};
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaddset(&sa.sa_mask, sigs[i]);
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
    struct sigaction old;
    /* hang-ups and broken pipes ignored by the parent (nohup) stay ignored;
     * Ctrl-C is handled even in a background job, as the run's own stop */
    const int keep_ignored = sigs[i] == SIGHUP || sigs[i] == SIGPIPE;
    if (keep_ignored && sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
      continue;
    sigaction(sigs[i], &sa, NULL);
  }
}

void fkm_cli_sigint_install(void) { g_sigint_polled = 1; }

int fkm_cli_interrupted(void) { return g_interrupted != 0; }

void fkm_cli_progress_init(fkm_cli_progress *p, const fkm_params *params, int quiet) {
  memset(p, 0, sizeof *p);
  p->niter_total = (int64_t)params->niter * params->nredo;
  p->tty = isatty(STDERR_FILENO);
  p->quiet = quiet;
  p->t_start = p->t_last = fkm_cli_now();
}

static int record(fkm_cli_progress *p, const fkm_iteration_stats *s) {
  if (p->n_all == p->cap_all) {
    int64_t cap = p->cap_all ? 2 * p->cap_all : 64;
    fkm_iteration_stats *grown = realloc(p->all, (size_t)cap * sizeof *grown);
    if (!grown) return -1;
    p->all = grown;
    p->cap_all = cap;
  }
  p->all[p->n_all++] = *s;
  return 0;
}

int fkm_cli_progress_cb(void *user, int redo, int iter, const fkm_iteration_stats *s) {
  fkm_cli_progress *p = user;
  double now = fkm_cli_now();
  if (record(p, s) != 0) {
    p->out_of_memory = 1;
    return 1;
  }
  p->done++;
  p->last = *s;
  double ms = 1e3 * (now - p->t_last);
  double per = (now - p->t_start) / (double)p->done;
  double eta = per * (double)(p->niter_total - p->done);
  p->t_last = now;
  if (!p->quiet) {
    char redo_s[48] = "";
    if (redo > 0) snprintf(redo_s, sizeof redo_s, " (redo %d, iter %d)", redo + 1, iter + 1);
    fprintf(stderr,
            "%siter %lld/%lld%s  obj %.7g  imbalance %.4f  splits %d  %.1f ms/iter  ETA %.1f s%s",
            p->tty ? "\r\033[K" : "", (long long)p->done, (long long)p->niter_total, redo_s,
            (double)s->obj, s->imbalance_factor, s->nsplit, ms, eta, p->tty ? "" : "\n");
    fflush(stderr);
  }
  return g_interrupted ? 1 : 0;
}

void fkm_cli_progress_free(fkm_cli_progress *p) {
  free(p->all);
  p->all = NULL;
  p->n_all = p->cap_all = 0;
}

void fkm_cli_progress_end(fkm_cli_progress *p) {
  if (!p->quiet && p->tty && p->done > 0) fputc('\n', stderr);
}

/* ------------------------------------------------- phases without a hook */

/* One phase at a time (the commands run their phases one after another). */
static struct {
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t wake;
  int running, stop, tty;
  double t0;
  char label[160];
} phase = {.lock = PTHREAD_MUTEX_INITIALIZER, .wake = PTHREAD_COND_INITIALIZER};

static void *phase_ticker(void *unused) {
  (void)unused;
  pthread_mutex_lock(&phase.lock);
  while (!phase.stop) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 250000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    pthread_cond_timedwait(&phase.wake, &phase.lock, &until);
    if (phase.stop) break;
    fprintf(stderr, "\r%s... %.1f s\033[K", phase.label, fkm_cli_now() - phase.t0);
    fflush(stderr);
  }
  pthread_mutex_unlock(&phase.lock);
  return NULL;
}

void fkm_cli_phase_begin(int quiet, const char *fmt, ...) {
  if (quiet || phase.running) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(phase.label, sizeof phase.label, fmt, ap);
  va_end(ap);
  phase.t0 = fkm_cli_now();
  phase.tty = isatty(STDERR_FILENO);
  phase.stop = 0;
  fprintf(stderr, phase.tty ? "%s..." : "%s...\n", phase.label);
  fflush(stderr);
  phase.running = 1;
  /* on a terminal the line counts the seconds; without a thread it stays */
  if (phase.tty && pthread_create(&phase.thread, NULL, phase_ticker, NULL) != 0) phase.tty = -1;
}

void fkm_cli_phase_end(void) {
  if (!phase.running) return;
  if (phase.tty == 1) {
    pthread_mutex_lock(&phase.lock);
    phase.stop = 1;
    pthread_cond_signal(&phase.wake);
    pthread_mutex_unlock(&phase.lock);
    pthread_join(phase.thread, NULL);
  }
  fprintf(stderr, phase.tty ? "\r%s: %.2f s\033[K\n" : "%s: %.2f s\n", phase.label,
          fkm_cli_now() - phase.t0);
  phase.running = 0;
}

void fkm_cli_log_cb(void *user, fkm_log_level level, const char *msg) {
  (void)user;
  fprintf(stderr, "flashkm: %s%s\n", level == FKM_LOG_WARNING ? "warning: " : "", msg);
}

/* ------------------------------------------------------------ JSON */

void fkm_cli_json_num(FILE *fp, double v) {
  if (isfinite(v)) fprintf(fp, "%.17g", v);
  else fputs("null", fp);
}

void fkm_cli_json_str(FILE *fp, const char *s) {
  fputc('"', fp);
  for (; *s; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') fprintf(fp, "\\%c", c);
    else if (c < 0x20) fprintf(fp, "\\u%04x", c);
    else fputc(c, fp);
  }
  fputc('"', fp);
}
