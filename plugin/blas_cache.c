/* The CUDA engine's learned BLAS orders (blas_cache.h). */
#include "blas_cache.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <cuda_runtime_api.h>

#include "blas_order.h"
#include "engine.h"
#include "profile.cuh"

enum { SEG_INTS = FKM_BLAS_ORDER_MAX_SEGS + 2, SEG_BYTES = 512 };

/* The segments as the kernels read them: the count, then count + 1 bounds. */
static void pack_segments(const fkm_blas_order *o, int32_t seg[SEG_INTS]) {
  seg[0] = o->nseg;
  for (int q = 0; q <= o->nseg; q++) seg[1 + q] = (int32_t)o->seg[q];
}

static void say(const fkm_params *p, fkm_log_level level, const char *msg) {
  if (p->log) p->log(p->log_user, level, msg);
}

/* The orders learned in this process, shared by every context (learning
 * costs probe calls of the BLAS; the device copies are per context): at
 * most HOST_ENTRIES, the least recently used replaced, at most 4 MiB of
 * codes each at FAISS's default blocks. A shape without a model is kept
 * too (code NULL), so that it is not probed again. */
enum { HOST_ENTRIES = 8 };
typedef struct host_entry {
  fkm_sgemm_fn sgemm;
  int threads;
  int64_t ny, nx, d;
  fkm_blas_order o;
  double seconds;        /* what learning it took */
  double choose_seconds; /* of which the final choice, on the device */
  uint64_t used;
} host_entry;
static host_entry host_orders[HOST_ENTRIES];
static uint64_t host_clock;
static pthread_mutex_t host_lock = PTHREAD_MUTEX_INITIALIZER;

/* The learner's final choice on the current device (fkm_blas_choose_fn):
 * about 100 MB of draws at FAISS's whole block cross once, and a thread per
 * element replays its variants (seconds on the host's cores at d = 784).
 * Where the device cannot hold them, the host's threads choose. */
static fkm_status choose_on_device(void *user, fkm_blas_order *o, const fkm_blas_draws *dr,
                                   fkm_errbuf *err) {
  const size_t cells = (size_t)(o->nx * o->ny), k = (size_t)dr->draws, d = (size_t)o->d;
  const size_t by = sizeof(float) * k * (size_t)o->ny * d, bx = sizeof(float) * k * (size_t)o->nx * d;
  const size_t bip = sizeof(float) * k * cells, bal = sizeof(uint16_t) * cells;
  int32_t seg[SEG_INTS];
  pack_segments(o, seg);
  char *dev = NULL;
  const size_t total = by + bx + bip + bal + cells + sizeof seg;
  cudaError_t e = cudaMalloc((void **)&dev, total);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return fkm_blas_order_choose_host(user, o, dr, err);
  }
  float *y = (float *)dev, *x = (float *)(dev + by), *ip = (float *)(dev + by + bx);
  uint16_t *alive = (uint16_t *)(dev + by + bx + bip);
  uint8_t *code = (uint8_t *)(dev + by + bx + bip + bal);
  int32_t *dseg = (int32_t *)(dev + by + bx + bip + bal + cells);
  e = cudaMemcpy(y, dr->y, by, cudaMemcpyHostToDevice);
  if (e == cudaSuccess) e = cudaMemcpy(x, dr->x, bx, cudaMemcpyHostToDevice);
  if (e == cudaSuccess) e = cudaMemcpy(ip, dr->ip, bip, cudaMemcpyHostToDevice);
  if (e == cudaSuccess) e = cudaMemcpy(alive, dr->alive, bal, cudaMemcpyHostToDevice);
  if (e == cudaSuccess) e = cudaMemcpy(code, o->code, cells, cudaMemcpyHostToDevice);
  if (e == cudaSuccess) e = cudaMemcpy(dseg, seg, sizeof seg, cudaMemcpyHostToDevice);
  if (e == cudaSuccess)
    e = fkm_launch_blas_choose(o->nx, o->ny, o->d, dseg, dr->draws, y, x, ip, alive, code, 0);
  if (e == cudaSuccess) e = cudaMemcpy(o->code, code, cells, cudaMemcpyDeviceToHost);
  (void)cudaFree(dev);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return fkm_fail(err, FKM_ERR_CUDA, "cuda engine: learning the BLAS's order (%s)",
                    cudaGetErrorName(e));
  }
  return FKM_OK;
}

/* choose_on_device, timed: user is a double that receives its seconds. */
static fkm_status choose_timed(void *user, fkm_blas_order *o, const fkm_blas_draws *dr,
                               fkm_errbuf *err) {
  const double t0 = fkm_now_seconds();
  const fkm_status st = choose_on_device(NULL, o, dr, err);
  *(double *)user = fkm_now_seconds() - t0;
  return st;
}

/* The process's order of the call (learned now if it is not known), with
 * host_lock held; *learned: whether this call learned it. */
static fkm_status host_order(fkm_sgemm_fn sgemm, int threads, int64_t ny, int64_t nx, int64_t d,
                             host_entry **out, int *learned, char *why, size_t why_size,
                             fkm_errbuf *err) {
  *learned = 0;
  host_entry *slot = &host_orders[0];
  for (int i = 0; i < HOST_ENTRIES; i++) {
    host_entry *h = &host_orders[i];
    if (h->sgemm == sgemm && h->threads == threads && h->ny == ny && h->nx == nx && h->d == d) {
      h->used = ++host_clock;
      *out = h;
      return FKM_OK;
    }
    if (!h->sgemm || (slot->sgemm && h->used < slot->used)) slot = h;
  }
  fkm_blas_order_free(&slot->o);
  memset(slot, 0, sizeof *slot);
  const double t0 = fkm_now_seconds();
  fkm_errbuf lerr = {0};
  fkm_blas_order o;
  double choose_seconds = 0.0;
  const fkm_status s = fkm_blas_order_learn_with(sgemm, ny, nx, d, choose_timed,
                                                 &choose_seconds, &o, &lerr);
  if (s != FKM_OK && s != FKM_ERR_UNSUPPORTED) return fkm_fail(err, s, "%s", lerr.msg);
  if (s == FKM_ERR_UNSUPPORTED) {
    memset(&o, 0, sizeof o);
    snprintf(why, why_size, "%s", lerr.msg);
  }
  *slot = (host_entry){.sgemm = sgemm, .threads = threads, .ny = ny, .nx = nx, .d = d, .o = o,
                       .seconds = fkm_now_seconds() - t0, .choose_seconds = choose_seconds,
                       .used = ++host_clock};
  *out = slot;
  *learned = 1;
  return FKM_OK;
}

/* Puts the call (ny, nx, d)'s order on the device, in a free or the least
 * recently used slot of this context; *out NULL when there is no model. */
static fkm_status learn_into(fkm_blas_cache *bc, const fkm_params *p, int threads, int64_t ny,
                             int64_t nx, int64_t d, fkm_blas_cache_entry **out,
                             fkm_errbuf *err) {
  *out = NULL;
  char msg[768], why[512] = "";
  host_entry *h = NULL;
  int learned = 0;
  pthread_mutex_lock(&host_lock);
  fkm_status st = host_order(p->blas_sgemm, threads, ny, nx, d, &h, &learned, why, sizeof why, err);
  if (st != FKM_OK || !h->o.code) {
    pthread_mutex_unlock(&host_lock);
    if (st == FKM_OK && learned) { /* no model: flashkm's order, said once */
      snprintf(msg, sizeof msg,
               "%s: the dot products of those blocks keep flashkm's order, and their near-ties "
               "may get other labels than this FAISS gives",
               why);
      say(p, FKM_LOG_WARNING, msg);
    }
    return st;
  }
  /* a model to hold: the free or least recently used slot gives way */
  fkm_blas_cache_entry *slot = &bc->e[0];
  for (int i = 0; i < FKM_BLAS_CACHE_ENTRIES; i++) {
    if (!bc->e[i].sgemm) {
      slot = &bc->e[i];
      break;
    }
    if (bc->e[i].used < slot->used) slot = &bc->e[i];
  }
  if (slot->dev) (void)cudaFree(slot->dev);
  memset(slot, 0, sizeof *slot);
  int32_t seg[SEG_INTS];
  pack_segments(&h->o, seg);
  const size_t cells = (size_t)(nx * ny);
  void *dev = NULL;
  cudaError_t e = cudaMalloc(&dev, SEG_BYTES + cells);
  if (e == cudaSuccess) e = cudaMemcpy(dev, seg, sizeof seg, cudaMemcpyHostToDevice);
  if (e == cudaSuccess)
    e = cudaMemcpy((char *)dev + SEG_BYTES, h->o.code, cells, cudaMemcpyHostToDevice);
  const int64_t modelled = h->o.modelled;
  const double seconds = h->seconds, choose_seconds = h->choose_seconds;
  pthread_mutex_unlock(&host_lock);
  if (e != cudaSuccess) {
    if (dev) (void)cudaFree(dev);
    (void)cudaGetLastError();
    return fkm_fail(err, e == cudaErrorMemoryAllocation ? FKM_ERR_OUT_OF_MEMORY : FKM_ERR_CUDA,
                    "cuda engine: cannot hold the BLAS's order of a %lld x %lld call on the "
                    "device (%s)",
                    (long long)ny, (long long)nx, cudaGetErrorName(e));
  }
  *slot = (fkm_blas_cache_entry){.sgemm = p->blas_sgemm, .threads = threads, .ny = ny,
                                 .nx = nx, .d = d, .dev = dev, .modelled = modelled};
  *out = slot;
  if (!learned) return FKM_OK;
  snprintf(msg, sizeof msg,
           "the BLAS's order of sgemm(%lld x %lld, d = %lld) on %d threads learned in %.3f s "
           "(%.3f s the final choice, the rest the BLAS's probe calls): %lld of %lld dot "
           "products modelled",
           (long long)ny, (long long)nx, (long long)d, threads, seconds, choose_seconds,
           (long long)modelled, (long long)cells);
  say(p, modelled == (int64_t)cells ? FKM_LOG_INFO : FKM_LOG_WARNING, msg);
  if (modelled < (int64_t)cells)
    say(p, FKM_LOG_WARNING,
        "the dot products the model does not hold keep flashkm's order: their near-ties may "
        "get other labels than this FAISS gives");
  return FKM_OK;
}

/* Shape (ny, nx): the cached entry, or a new one; NULL pointers (and no
 * product modelled) when no model was found. */
static fkm_status shape(fkm_blas_cache *bc, const fkm_params *p, int threads, int64_t ny,
                        int64_t nx, int64_t d, const uint8_t **code, const int32_t **seg,
                        int64_t *modelled, fkm_errbuf *err) {
  fkm_blas_cache_entry *hit = NULL;
  for (int i = 0; i < FKM_BLAS_CACHE_ENTRIES && !hit; i++) {
    const fkm_blas_cache_entry *x = &bc->e[i];
    if (x->sgemm == p->blas_sgemm && x->threads == threads && x->ny == ny && x->nx == nx &&
        x->d == d)
      hit = &bc->e[i];
  }
  if (!hit) FKM_FORWARD(learn_into(bc, p, threads, ny, nx, d, &hit, err));
  *code = NULL;
  *seg = NULL;
  *modelled = 0;
  if (!hit) return FKM_OK;
  hit->used = ++bc->clock;
  *modelled = hit->modelled;
  *seg = (const int32_t *)hit->dev;
  *code = (const uint8_t *)hit->dev + SEG_BYTES;
  return FKM_OK;
}

fkm_status fkm_blas_cache_view(fkm_blas_cache *bc, const fkm_params *p, int64_t rows,
                               int64_t k, int64_t d, fkm_blas_view *v, int64_t *covered,
                               fkm_errbuf *err) {
  memset(v, 0, sizeof *v);
  if (covered) *covered = 0;
  if (!p->blas_sgemm || rows < 1 || k < 1) return FKM_OK;
  const int64_t qbs = p->blas_query_bs, dbs = p->blas_database_bs;
  const int threads = fkm_blas_threads(p->blas_sgemm);
  /* the calls' shapes: full blocks (when there are any) and the last,
   * partial one; slot 2 (rows) + (centroids) partial */
  const int64_t nx[2] = {rows >= qbs ? qbs : 0, rows % qbs};
  const int64_t ny[2] = {k >= dbs ? dbs : 0, k % dbs};
  const int64_t calls_x[2] = {rows / qbs, rows % qbs != 0}, calls_y[2] = {k / dbs, k % dbs != 0};
  int64_t held = 0;
  for (int a = 0; a < 2; a++)
    for (int b = 0; b < 2; b++)
      if (nx[a] > 0 && ny[b] > 0) {
        int64_t modelled = 0;
        FKM_FORWARD(shape(bc, p, threads, ny[b], nx[a], d, &v->code[2 * a + b],
                          &v->seg[2 * a + b], &modelled, err));
        held += calls_x[a] * calls_y[b] * modelled;
      }
  if (covered) *covered = held;
  v->qbs = qbs;
  v->dbs = dbs;
  v->rows = rows;
  v->on = 1;
  return FKM_OK;
}

void fkm_blas_cache_clear(fkm_blas_cache *bc) {
  for (int i = 0; i < FKM_BLAS_CACHE_ENTRIES; i++)
    if (bc->e[i].dev) (void)cudaFree(bc->e[i].dev);
  memset(bc, 0, sizeof *bc);
}
