/* The update's float chains on the host (chains.h). */
#include "chains.h"

#include <math.h>
#include <string.h>

void fkm_chains_group(fkm_chains *ch, const int64_t *labels, int64_t m, int64_t *hist) {
  const int64_t k = ch->k;
  int64_t *off = ch->offsets;
  memset(off, 0, sizeof(int64_t) * (size_t)(k + 1));
  for (int64_t i = 0; i < m; i++) off[labels[i] + 1]++;
  if (hist) memcpy(hist, off + 1, sizeof(int64_t) * (size_t)k);
  for (int64_t i = 0; i < k; i++) off[i + 1] += off[i];
  memcpy(ch->cursor, off, sizeof(int64_t) * (size_t)k);
  for (int64_t i = 0; i < m; i++) ch->order[ch->cursor[labels[i]]++] = i;
}

void fkm_chains_objective(const float *dist, int64_t n, float *f, double *dd) {
  float of = *f;
  double od = *dd;
  for (int64_t i = 0; i < n; i++) {
    of += dist[i];
    od += (double)dist[i];
  }
  *f = of;
  *dd = od;
}

float fkm_chains_add(const fkm_chains *ch, int64_t ci, float *sum, float count, const float *x,
                     const float *w) {
  const int64_t d = ch->d;
  for (int64_t t = ch->offsets[ci]; t < ch->offsets[ci + 1]; t++) {
    const int64_t i = ch->order[t];
    const float *xi = x + i * d;
    if (w) {
      const float wi = w[i];
      count = count + wi;
      if (ch->weighted_fma)
        for (int64_t j = 0; j < d; j++) sum[j] = fmaf(xi[j], wi, sum[j]);
      else
        for (int64_t j = 0; j < d; j++) sum[j] = sum[j] + xi[j] * wi;
    } else {
      count = count + 1.0f;
      for (int64_t j = 0; j < d; j++) sum[j] = sum[j] + xi[j];
    }
  }
  return count;
}

void fkm_chains_scale(const fkm_chains *ch, const float *sums, int64_t stride,
                      const float *counts, int64_t cstride, float *cent, float *out_counts) {
  const int64_t d = ch->d, k = ch->k, kf = ch->k_frozen;
  for (int64_t i = 0; i < k - kf; i++) {
    float *cen = cent + (kf + i) * d;
    const float *sum = sums + i * stride, count = counts[i * cstride];
    out_counts[kf + i] = count;
    if (count != 0.0f) {
      const float norm = 1.0f / count;
      for (int64_t j = 0; j < d; j++) cen[j] = sum[j] * norm;
    } else if (cen != sum) {
      memcpy(cen, sum, sizeof(float) * (size_t)d);
    }
  }
  for (int64_t ci = 0; ci < kf; ci++) out_counts[ci] = 0.0f;
}

static fkm_status host_objective(void *self, float *f, double *dd, fkm_errbuf *err) {
  const fkm_chains_host *h = self;
  (void)err;
  fkm_chains_objective(h->dist, h->n, f, dd);
  return FKM_OK;
}

static fkm_status host_slice(void *self, int64_t c0, int64_t c1, float *part, fkm_errbuf *err) {
  const fkm_chains_host *h = self;
  const int64_t row = h->ch->d + 1, kf = h->ch->k_frozen;
  (void)err;
#pragma omp parallel for schedule(dynamic, 4)
  for (int64_t i = c0; i < c1; i++) {
    float *sum = part + (i - c0) * row;
    sum[row - 1] = fkm_chains_add(h->ch, kf + i, sum, sum[row - 1], h->x, h->w);
  }
  return FKM_OK;
}

fkm_rank_steps fkm_chains_host_steps(fkm_chains_host *h) {
  return (fkm_rank_steps){h, host_objective, host_slice};
}

/* The messages of a distributed iteration (docs/distributed.md): msg holds,
 * for the non-frozen centroids kf .. k, per centroid its d float sums and
 * its float count, then the objective's float and double. Rank r receives
 * rank r - 1's partial chains slice by slice, continues them over its own
 * rows and passes them on; the last rank's are the whole chains. */
enum { TAG_OBJ = 1, TAG_SLICE = 2, SLICES_PER_RANK = 8, MAX_SLICES = 256 };

int64_t fkm_chains_slices(int P, int64_t kk) {
  int64_t slices = P == 1 ? 1 : (int64_t)SLICES_PER_RANK * P;
  if (slices > MAX_SLICES) slices = MAX_SLICES;
  if (slices > kk) slices = kk > 0 ? kk : 1;
  return slices;
}

fkm_status fkm_chains_ranked(const fkm_chains *ch, const fkm_rank_steps *steps, fkm_comm *comm,
                             float *msg, float *cent, fkm_iter_result *out, fkm_errbuf *err) {
  const fkm_comm_ops *ops = comm->ops;
  const int64_t k = ch->k, d = ch->d, kf = ch->k_frozen, kk = k - kf, row = d + 1;
  const int first = comm->rank == 0, last = comm->rank == comm->size - 1;
  FKM_FORWARD(ops->sum_i64(comm, out->hist, k, err));

  struct {
    float f;
    double d;
  } obj = {0.0f, 0.0};
  if (!first) FKM_FORWARD(ops->recv_prev(comm, &obj, sizeof obj, TAG_OBJ, err));
  /* a rank whose own step fails still passes values on (no rank waits for
   * a message that never comes), and every rank agrees at the end */
  fkm_status s = steps->objective(steps->self, &obj.f, &obj.d, err);
  if (!last) FKM_FORWARD(ops->send_next(comm, &obj, sizeof obj, TAG_OBJ, err));
  const int64_t slices = fkm_chains_slices(comm->size, kk);
  for (int64_t g = 0; g < slices; g++) {
    const int64_t c0 = kk * g / slices, c1 = kk * (g + 1) / slices;
    float *part = msg + c0 * row;
    const size_t bytes = sizeof(float) * (size_t)((c1 - c0) * row);
    if (first)
      memset(part, 0, bytes);
    else
      FKM_FORWARD(ops->recv_prev(comm, part, bytes, TAG_SLICE + (int)g, err));
    if (c1 > c0 && s == FKM_OK) s = steps->slice(steps->self, c0, c1, part, err);
    if (!last) FKM_FORWARD(ops->send_next(comm, part, bytes, TAG_SLICE + (int)g, err));
  }
  if (s == FKM_OK) s = ops->wait_sends(comm, err);
  FKM_FORWARD(ops->agree(comm, s, err));
  memcpy(msg + kk * row, &obj.f, sizeof obj.f);
  memcpy(msg + kk * row + 1, &obj.d, sizeof obj.d);
  FKM_FORWARD(ops->bcast(comm, msg, sizeof(float) * (size_t)(kk * row + 3), comm->size - 1,
                         err));
  memcpy(&out->obj[0], msg + kk * row, sizeof(float));
  memcpy(&out->obj_double[0], msg + kk * row + 1, sizeof(double));
  fkm_chains_scale(ch, msg, row, msg + d, row, cent, out->counts);
  return FKM_OK;
}
