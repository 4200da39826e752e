/* The BLAS orders the CUDA engine holds on its device (docs/profiles.md,
 * "The BLAS's order on the GPU"): learned on the host from the sgemm FAISS
 * calls (blas_order.h), one per call shape of a search (full and last
 * blocks of rows and of centroids), kept per (BLAS, its threads, shape):
 * on the device for the context's life (every run and fkm_assign reuse
 * it), and on the host for the process's (a new context uploads it again
 * without probing). */
#ifndef FKM_BLAS_CACHE_H
#define FKM_BLAS_CACHE_H

#include <stdint.h>

#include "assign.cuh"
#include "flashkm.h"
#include "status.h"

enum { FKM_BLAS_CACHE_ENTRIES = 8 };

typedef struct fkm_blas_cache_entry {
  fkm_sgemm_fn sgemm; /* NULL: a free slot */
  int threads;        /* the BLAS's threads when it was learned */
  int64_t ny, nx, d;
  void *dev;          /* device: the segments (count, bounds) then nx * ny codes */
  int64_t modelled;   /* elements the model holds */
  uint64_t used;      /* last use, for replacement */
} fkm_blas_cache_entry;

typedef struct fkm_blas_cache {
  fkm_blas_cache_entry e[FKM_BLAS_CACHE_ENTRIES];
  uint64_t clock;
} fkm_blas_cache;

/* The view of FAISS's search of `rows` rows against k centroids of d
 * dimensions through params->blas_sgemm, with params->blas_query_bs and
 * blas_database_bs blocks: v->on 0 when no BLAS is given. Learns (and logs,
 * through params->log) each shape not cached yet; a shape the learner finds
 * no model for is left NULL (its dot products keep flashkm's order, with a
 * warning). v->row0 is 0: the caller sets it per launch. The device memory
 * is allocated synchronously (call between runs, not inside a captured
 * stream). covered (or NULL): how many of the rows x k products the
 * learned models hold (fkm_order_coverage). */
fkm_status fkm_blas_cache_view(fkm_blas_cache *bc, const fkm_params *params, int64_t rows,
                               int64_t k, int64_t d, fkm_blas_view *v, int64_t *covered,
                               fkm_errbuf *err);

/* Frees every entry's device memory (the device must be current). */
void fkm_blas_cache_clear(fkm_blas_cache *bc);

#endif
