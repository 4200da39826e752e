/* A distributed run's data (dist.h, docs/distributed.md). Rank r holds the
 * rows first[r] .. first[r + 1] of x; the training set T (the subsample in
 * rand_perm order, or x) is cut into P contiguous runs, rank r's being
 * T[train_first[r] .. train_first[r + 1]), and every row travels once to
 * the rank whose run holds it. From then on only k-sized data crosses. */
#include "dist.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_kernels.h"
#include "source.h"

static void *alloc_n(int64_t count, size_t size) {
  return malloc(size * (size_t)(count > 0 ? count : 1));
}

/* The rank whose interval of bounds (size + 1, nondecreasing) holds v. */
static int owner(const int64_t *bounds, int size, int64_t v) {
  int lo = 0, hi = size; /* bounds[lo] <= v < bounds[hi] */
  while (hi - lo > 1) {
    const int mid = lo + (hi - lo) / 2;
    if (bounds[mid] <= v)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

/* What every rank must pass alike, by name, for the message that names the
 * first difference. */
typedef struct key_entry {
  const char *name;
  int64_t value;
} key_entry;

enum { KEY_FIXED = 27, KEY_N = KEY_FIXED + 18 };

static void key_of(const fkm_train_args *a, key_entry *key) {
  const fkm_params *p = a->params;
  int64_t early;
  memcpy(&early, &p->early_stop_threshold, sizeof early);
  const key_entry fixed[KEY_FIXED] = {
      {"batch", a->batch},
      {"d", a->d},
      {"k", a->k},
      {"dtype", (int64_t)a->dtype},
      {"n_init", a->n_init},
      {"weights (given)", a->weights != NULL},
      {"params->niter", p->niter},
      {"params->nredo", p->nredo},
      {"params->spherical", p->spherical},
      {"params->int_centroids", p->int_centroids},
      {"params->frozen_centroids", p->frozen_centroids},
      {"params->min_points_per_centroid", p->min_points_per_centroid},
      {"params->max_points_per_centroid", p->max_points_per_centroid},
      {"params->seed", p->seed},
      {"params->metric", (int64_t)p->metric},
      {"params->assign_mode", (int64_t)p->assign_mode},
      {"params->check_finite", p->check_finite},
      {"params->profile.faiss_version", p->profile.faiss_version},
      {"params->profile.simd", (int64_t)p->profile.simd},
      {"params->profile.blas_threshold", p->profile.blas_threshold},
      {"params->init_method", (int64_t)p->init_method},
      {"params->afkmc2_chain_length", p->afkmc2_chain_length},
      {"params->early_stop_threshold (bits)", early},
      {"params->use_faster_subsampling", p->use_faster_subsampling},
      {"params->blas_sgemm (set)", p->blas_sgemm != NULL},
      {"params->blas_query_bs", p->blas_query_bs},
      {"params->blas_database_bs", p->blas_database_bs}};
  memcpy(key, fixed, sizeof fixed);
  const fkm_loop_order *orders[3] = {&p->profile.norm, &p->profile.l2, &p->profile.ip};
  for (int o = 0; o < 3; o++) {
    const int32_t *f = &orders[o]->width;
    for (int i = 0; i < 6; i++)
      key[KEY_FIXED + 6 * o + i] = (key_entry){"params->profile's loop orders", f[i]};
  }
}

/* A distributed run reads and writes host memory (its rows cross between
 * ranks through the host). */
static fkm_status host_memory(fkm_engine *e, const fkm_train_args *a, fkm_errbuf *err) {
  const struct {
    const void *p;
    const char *name;
  } args[] = {{a->source ? NULL : a->x, "x"},
              {a->weights, "weights"},
              {a->centroids, "centroids"},
              {a->labels, "labels"},
              {a->distances, "distances"}};
  for (size_t i = 0; i < sizeof args / sizeof args[0]; i++)
    FKM_RETURN_IF(args[i].p && e->ops->is_device(e, args[i].p), err, FKM_ERR_INVALID_ARG,
                  "%s is device memory: a distributed run takes host memory "
                  "(docs/distributed.md)",
                  args[i].name);
  return FKM_OK;
}

static fkm_status check_rank(fkm_dist *ds, const fkm_train_args *a, fkm_errbuf *err) {
  const int me = ds->comm->rank;
  const int64_t n = a->n, d = a->d, row0 = ds->first[me];
  if (!a->source && a->params->check_finite && n > 0) {
    const int64_t bad = fkm_first_nonfinite_all(a->dtype, a->x, n * d);
    if (bad >= 0) return fkm_fail_not_finite(err, "x", row0 * d + bad, 1, 0, d);
  }
  return a->weights ? fkm_check_weights(err, a->weights, n, row0) : FKM_OK;
}

fkm_status fkm_dist_begin(fkm_dist *ds, fkm_engine *e, fkm_comm *comm, const fkm_train_args *a,
                          uint64_t *seed, fkm_errbuf *err) {
  const int P = comm->size, me = comm->rank;
  const fkm_comm_ops *ops = comm->ops;
  memset(ds, 0, sizeof *ds);
  ds->comm = comm;
  fkm_status s = FKM_OK;
  ds->first = alloc_n(P + 1, sizeof(int64_t));
  ds->train_first = alloc_n(P + 1, sizeof(int64_t));
  int64_t *counts = alloc_n(P, sizeof(int64_t));
  ds->init = alloc_n(a->n_init * a->d, sizeof(float));
  if (!ds->first || !ds->train_first || !counts || !ds->init)
    s = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY, "cannot allocate the row counts of %d ranks", P);
  key_entry mine[KEY_N];
  int64_t ref[KEY_N];
  key_of(a, mine);
  for (int i = 0; i < KEY_N; i++) ref[i] = mine[i].value;
  fkm_status t = ops->bcast(comm, ref, sizeof ref, 0, err);
  for (int i = 0; i < KEY_N && s == FKM_OK && t == FKM_OK; i++)
    if (ref[i] != mine[i].value)
      s = fkm_fail(err, FKM_ERR_INVALID_ARG,
                   "rank %d's %s is %lld and rank 0's is %lld: every rank of a distributed "
                   "run passes the same parameters, d, k, dtype and initial rows",
                   me, mine[i].name, (long long)mine[i].value, (long long)ref[i]);
  if (s == FKM_OK) s = t;
  if (s == FKM_OK) s = host_memory(e, a, err);
  s = ops->agree(comm, s, err);
  if (s != FKM_OK) {
    free(counts);
    return s;
  }
  memset(counts, 0, sizeof(int64_t) * (size_t)P);
  counts[me] = a->n;
  s = ops->sum_i64(comm, counts, P, err);
  if (s == FKM_OK) {
    ds->first[0] = 0;
    for (int r = 0; r < P; r++) ds->first[r + 1] = ds->first[r] + counts[r];
    ds->n = ds->first[P];
  }
  free(counts);
  FKM_FORWARD(s);
  FKM_RETURN_IF(ds->n < a->k, err, FKM_ERR_INVALID_ARG,
                "n = %lld rows over %d ranks must be >= k = %lld (number of training points "
                "at least the number of clusters)",
                (long long)ds->n, P, (long long)a->k);
  FKM_FORWARD(ops->bcast(comm, seed, sizeof *seed, 0, err));
  if (me == 0 && a->n_init > 0)
    memcpy(ds->init, a->centroids, sizeof(float) * (size_t)(a->n_init * a->d));
  FKM_FORWARD(ops->bcast(comm, ds->init, sizeof(float) * (size_t)(a->n_init * a->d), 0, err));
  /* rank 0's rows, the same on every rank: no agreement needed */
  const int64_t bad_init = a->params->check_finite
                               ? fkm_first_nonfinite_all(FKM_DTYPE_F32, ds->init, a->n_init * a->d)
                               : -1;
  if (bad_init >= 0)
    return fkm_fail_not_finite(err, "initial centroids", bad_init, 1, a->n_init, a->d);
  ds->src = a->source ? *a->source : fkm_source_of_matrix(a->x, a->n, a->d, a->dtype);
  return ops->agree(comm, check_rank(ds, a, err), err);
}

/* Rank r's run of T: whole blocks of q rows, as many blocks to each rank as
 * the others (the last block may be short). */
static void cut_training_order(fkm_dist *ds, int64_t n_train, int64_t q) {
  const int P = ds->comm->size;
  const int64_t blocks = (n_train + q - 1) / q;
  ds->n_train = n_train;
  for (int r = 0; r <= P; r++) {
    const int64_t b = blocks * r / P, at = b * q;
    ds->train_first[r] = at < n_train ? at : n_train;
  }
}

/* The exchange itself: this rank's rows of x that others' runs hold go out
 * (read from its source, checked when a source's rows are), its run comes
 * in, in training order. */
static fkm_status exchange(fkm_dist *ds, const fkm_train_args *a, const int64_t *rows,
                           int64_t *send_rows, int64_t *recv_rows, int64_t *local, char *out,
                           char *in, float *wout, float *win, fkm_errbuf *err) {
  const fkm_comm_ops *ops = ds->comm->ops;
  const int P = ds->comm->size, me = ds->comm->rank;
  const int64_t nt = ds->n_train, d = a->d, t0 = ds->train_first[me];
  const int64_t mine = ds->train_first[me + 1] - t0;
  const size_t row = fkm_dtype_size(a->dtype) * (size_t)d;
  int64_t nsend = 0;
  for (int64_t i = 0; i < nt; i++) {
    const int64_t g = rows ? rows[i] : i;
    if (g >= ds->first[me] && g < ds->first[me + 1]) local[nsend++] = g - ds->first[me];
  }
  fkm_status s = FKM_OK;
  if (a->source && a->params->check_finite) {
    int64_t bad = -1;
    s = fkm_source_read_checked(&ds->src, local, 0, nsend, out, &bad, err);
    if (s == FKM_OK && bad >= 0)
      s = fkm_fail_not_finite(err, "x", ds->first[me] * d + bad, 1, 0, d);
  } else {
    s = fkm_source_read(&ds->src, local, 0, nsend, out, err);
  }
  if (a->weights)
    for (int64_t j = 0; j < nsend; j++) wout[j] = a->weights[local[j]];
  FKM_FORWARD(ops->agree(ds->comm, s, err));
  FKM_FORWARD(ops->alltoallv(ds->comm, out, send_rows, in, recv_rows, row, err));
  if (a->weights)
    FKM_FORWARD(ops->alltoallv(ds->comm, wout, send_rows, win, recv_rows, sizeof(float), err));
  /* in holds each sender's rows in training order, senders in rank order */
  int64_t *pos = local; /* reused: P read positions */
  int64_t at = 0;
  for (int r = 0; r < P; r++) {
    pos[r] = at;
    at += recv_rows[r];
  }
  char *xt = ds->xt;
  for (int64_t i = 0; i < mine; i++) {
    const int64_t g = rows ? rows[t0 + i] : t0 + i;
    const int64_t from = pos[owner(ds->first, P, g)]++;
    memcpy(xt + row * (size_t)i, in + row * (size_t)from, row);
    if (a->weights) ds->wt[i] = win[from];
  }
  return FKM_OK;
}

fkm_status fkm_dist_training_set(fkm_dist *ds, const fkm_train_args *a, const int64_t *rows,
                                 int64_t n_train, fkm_errbuf *err) {
  const int P = ds->comm->size, me = ds->comm->rank;
  const int64_t d = a->d;
  const size_t row = fkm_dtype_size(a->dtype) * (size_t)d;
  cut_training_order(ds, n_train, a->params->blas_sgemm ? a->params->blas_query_bs : 1);
  int64_t *send_rows = calloc((size_t)P, sizeof(int64_t));
  int64_t *recv_rows = calloc((size_t)P, sizeof(int64_t));
  int64_t nsend = 0, nrecv = 0;
  for (int64_t i = 0, dst = 0; i < n_train && send_rows && recv_rows; i++) {
    while (i >= ds->train_first[dst + 1]) dst++;
    const int from = owner(ds->first, P, rows ? rows[i] : i);
    if (from == me) send_rows[dst]++, nsend++;
    if (dst == me) recv_rows[from]++, nrecv++;
  }
  const int w = a->weights != NULL;
  free(ds->xt);
  free(ds->wt);
  ds->xt = alloc_n(nrecv * d, fkm_dtype_size(a->dtype));
  ds->wt = w ? alloc_n(nrecv, sizeof(float)) : NULL;
  int64_t *local = alloc_n(nsend > P ? nsend : P, sizeof(int64_t));
  char *out = alloc_n(nsend, row), *in = alloc_n(nrecv, row);
  float *wout = w ? alloc_n(nsend, sizeof(float)) : NULL;
  float *win = w ? alloc_n(nrecv, sizeof(float)) : NULL;
  fkm_status s = FKM_OK;
  if (!send_rows || !recv_rows || !ds->xt || (w && !ds->wt) || !local || !out || !in ||
      (w && (!wout || !win)))
    s = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                 "cannot allocate the exchange of the training set: %lld rows out and %lld "
                 "in of %zu bytes",
                 (long long)nsend, (long long)nrecv, row);
  s = ds->comm->ops->agree(ds->comm, s, err);
  if (s == FKM_OK)
    s = exchange(ds, a, rows, send_rows, recv_rows, local, out, in, wout, win, err);
  free(send_rows);
  free(recv_rows);
  free(local);
  free(out);
  free(in);
  free(wout);
  free(win);
  return s;
}

fkm_status fkm_dist_rows(fkm_dist *ds, const fkm_train_args *a, const int64_t *idx,
                         int64_t count, float *dst, fkm_errbuf *err) {
  const int me = ds->comm->rank;
  const int64_t d = a->d, t0 = ds->train_first[me], t1 = ds->train_first[me + 1];
  const size_t row = fkm_dtype_size(a->dtype) * (size_t)d;
  memset(dst, 0, sizeof(float) * (size_t)(count * d));
  for (int64_t j = 0; j < count; j++)
    if (idx[j] >= t0 && idx[j] < t1) /* this rank's */
      fkm_cpu_to_float(a->dtype, (const char *)ds->xt + row * (size_t)(idx[j] - t0), 1, d,
                       dst + j * d);
  /* each row is one rank's and zero on the others: or-ing crosses it bit for bit */
  return ds->comm->ops->or_u32(ds->comm, (uint32_t *)dst, count * d, err);
}

fkm_status fkm_dist_all_rows(fkm_dist *ds, const fkm_train_args *a, float *dst,
                             fkm_errbuf *err) {
  const int P = ds->comm->size, me = ds->comm->rank;
  const int64_t d = a->d, nt = ds->n_train;
  const size_t row = fkm_dtype_size(a->dtype) * (size_t)d;
  void *raw = a->dtype == FKM_DTYPE_F32 ? (void *)dst : alloc_n(nt, row);
  FKM_FORWARD(ds->comm->ops->agree(
      ds->comm,
      raw ? FKM_OK
          : fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                     "cannot allocate the training set (%lld rows) for seeding", (long long)nt),
      err));
  const int64_t t0 = ds->train_first[me];
  memcpy((char *)raw + row * (size_t)t0, ds->xt, row * (size_t)(ds->train_first[me + 1] - t0));
  fkm_status s = FKM_OK;
  for (int r = 0; r < P && s == FKM_OK; r++)
    s = ds->comm->ops->bcast(ds->comm, (char *)raw + row * (size_t)ds->train_first[r],
                             row * (size_t)(ds->train_first[r + 1] - ds->train_first[r]), r,
                             err);
  if (raw != dst) {
    if (s == FKM_OK) fkm_cpu_to_float(a->dtype, raw, nt, d, dst);
    free(raw);
  }
  return s;
}

/* The final assignment with the caller's BLAS: FAISS's search cuts x into
 * query blocks of q rows from row 0, and the BLAS may sum a row's dot
 * products differently in another block, so each block is searched whole,
 * by the rank that holds its first row: the rows of a block that starts on
 * an earlier rank travel there (fewer than q per rank), and their labels
 * and distances come back. lab and dis: this rank's n rows. */
static fkm_status assign_blocks(fkm_dist *ds, fkm_engine *e, const fkm_train_args *a,
                                const float *centroids, int64_t q, int64_t *lab, float *dis) {
  fkm_errbuf *err = e->err;
  const fkm_comm_ops *ops = ds->comm->ops;
  const int P = ds->comm->size, me = ds->comm->rank;
  const int64_t lo = ds->first[me], hi = ds->first[me + 1], n = ds->n, d = a->d;
  const size_t row = fkm_dtype_size(a->dtype) * (size_t)d;
  /* the blocks that start here: rows [c_lo, c_hi) */
  int64_t c_lo = (lo + q - 1) / q * q, c_hi = c_lo;
  if (c_lo >= hi) {
    c_lo = c_hi = hi;
  } else {
    c_hi = (hi - 1) / q * q + q;
    if (c_hi > n) c_hi = n;
  }
  int64_t *send = calloc((size_t)P, sizeof(int64_t)), *recv = calloc((size_t)P, sizeof(int64_t));
  char *mine = alloc_n(hi - lo, row), *rows = alloc_n(c_hi - c_lo, row);
  int64_t *clab = alloc_n(c_hi - c_lo, sizeof(int64_t));
  float *cdis = alloc_n(c_hi - c_lo, sizeof(float));
  fkm_status s = FKM_OK;
  if (!send || !recv || !mine || !rows || !clab || !cdis)
    s = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY,
                 "cannot allocate the assignment of %lld rows in whole query blocks",
                 (long long)(hi - lo));
  if (s == FKM_OK) {
    if (c_lo > lo) send[owner(ds->first, P, lo / q * q)] += c_lo - lo;
    send[me] += hi - c_lo;
    for (int64_t g = hi; g < c_hi;) { /* the later ranks' rows of the last block */
      const int r = owner(ds->first, P, g);
      const int64_t to = ds->first[r + 1] < c_hi ? ds->first[r + 1] : c_hi;
      recv[r] += to - g;
      g = to;
    }
    recv[me] += hi - c_lo;
    int64_t bad = -1;
    if (a->source && a->params->check_finite) {
      s = fkm_source_read_checked(&ds->src, NULL, 0, hi - lo, mine, &bad, err);
      if (s == FKM_OK && bad >= 0) s = fkm_fail_not_finite(err, "x", lo * d + bad, 1, 0, d);
    } else {
      s = fkm_source_read(&ds->src, NULL, 0, hi - lo, mine, err);
    }
  }
  s = ops->agree(ds->comm, s, err);
  if (s == FKM_OK) s = ops->alltoallv(ds->comm, mine, send, rows, recv, row, err);
  if (s == FKM_OK && c_hi > c_lo) {
    fkm_params p = *a->params;
    p.check_finite = 0; /* checked where they were read */
    s = e->ops->assign(e, &p, c_hi - c_lo, d, a->k, a->dtype, rows, centroids, clab, cdis, n);
  }
  s = ops->agree(ds->comm, s, err);
  /* the labels and distances back to the rows' ranks */
  if (s == FKM_OK) s = ops->alltoallv(ds->comm, clab, recv, lab, send, sizeof *lab, err);
  if (s == FKM_OK) s = ops->alltoallv(ds->comm, cdis, recv, dis, send, sizeof *dis, err);
  free(send);
  free(recv);
  free(mine);
  free(rows);
  free(clab);
  free(cdis);
  return s;
}

fkm_status fkm_dist_assign(fkm_dist *ds, fkm_engine *e, const fkm_train_args *a,
                           const float *centroids, int64_t *labels, float *distances) {
  fkm_errbuf *err = e->err;
  const int64_t n = a->n, q = a->params->blas_sgemm ? a->params->blas_query_bs : 1;
  int64_t wanted = labels || distances; /* by any rank: then every rank searches */
  FKM_FORWARD(ds->comm->ops->sum_i64(ds->comm, &wanted, 1, err));
  if (wanted == 0) return FKM_OK;
  int64_t *lab = alloc_n(n, sizeof(int64_t));
  float *dis = alloc_n(n, sizeof(float));
  fkm_status s = FKM_OK;
  if (!lab || !dis)
    s = fkm_fail(err, FKM_ERR_OUT_OF_MEMORY, "cannot allocate the assignment of %lld rows",
                 (long long)n);
  if (q > 1) {
    s = ds->comm->ops->agree(ds->comm, s, err);
    if (s == FKM_OK) s = assign_blocks(ds, e, a, centroids, q, lab, dis);
  } else {
    fkm_params p = *a->params;
    if (s == FKM_OK && n > 0) {
      if (a->source) {
        s = e->ops->assign_source(e, &p, &ds->src, a->k, centroids, lab, dis, ds->n);
      } else {
        p.check_finite = 0; /* fkm_dist_begin checked every row */
        s = e->ops->assign(e, &p, n, a->d, a->k, a->dtype, a->x, centroids, lab, dis, ds->n);
      }
    }
    s = ds->comm->ops->agree(ds->comm, s, err);
  }
  if (s == FKM_OK) {
    if (labels) memcpy(labels, lab, sizeof(int64_t) * (size_t)n);
    if (distances) memcpy(distances, dis, sizeof(float) * (size_t)n);
  }
  free(lab);
  free(dis);
  return s;
}

void fkm_dist_end(fkm_dist *ds) {
  free(ds->first);
  free(ds->train_first);
  free(ds->xt);
  free(ds->wt);
  free(ds->init);
  memset(ds, 0, sizeof *ds);
}
