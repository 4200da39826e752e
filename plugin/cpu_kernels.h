/* CPU kernels of the reference engine. Every function reproduces the
 * arithmetic of docs/contract.md sections 3-8 exactly; OpenMP parallelism never changes
 * an output bit (each output is computed by one thread, in a fixed order). */
#ifndef FKM_CPU_KERNELS_H
#define FKM_CPU_KERNELS_H

#include <stdint.h>

#include "arith.h"
#include "flashkm.h"

/** Exact conversion of rows [0, n) of a (n, d) matrix of dtype to float. */
void fkm_cpu_to_float(fkm_dtype dtype, const void *src, int64_t n, int64_t d,
                      float *out);
/** Row gather with conversion: out row i := src row rows[i]. */
void fkm_cpu_gather_float(fkm_dtype dtype, const void *src, int64_t d,
                          const int64_t *rows, int64_t n, float *out);

/** out[i] = float(sum_j double(float(x_ij * x_ij))), FAISS's generic norm. */
void fkm_cpu_norms(const float *x, int64_t n, int64_t d, float *out);

/** The norms a profile's search path uses (fkm_arith_norm), rows [0, n). */
void fkm_cpu_norms_arith(const fkm_arith *a, fkm_path path, const float *x, int64_t n,
                         int64_t d, float *out);

/** Index of the first non-finite value of x (n * d floats), or -1. */
int64_t fkm_cpu_first_nonfinite(const float *x, int64_t count);

/** Whether this CPU runs the AVX2+FMA kernels (always 0 in a build without
 *  them). */
int fkm_cpu_has_avx2_fma(void);

typedef struct fkm_cpu_assign_args {
  const float *x;  /* (n, d) */
  const float *xn; /* (n) norms of x (L2 only) */
  int64_t n, d;
  const float *c;  /* (k, d) */
  const float *cn; /* (k) norms of c (L2 only) */
  int64_t k;       /* 1 <= k <= INT32_MAX */
  fkm_metric metric;
  int64_t *labels; /* (n) out: -1 when no finite distance beats the start */
  float *dist;     /* (n) out */
  const fkm_arith *arith; /* the profile's traits; NULL: flashkm's reference */
  fkm_path path;          /* the path FAISS takes for these rows (fkm_arith_path);
                             xn and cn are that path's norms (unused: DIRECT) */
  fkm_sgemm_fn sgemm;     /* BLAS path: the dot products from this BLAS in FAISS's
                             blocks (fkm_params.blas_sgemm), or NULL */
  int64_t query_bs, database_bs; /* those blocks (with sgemm) */
  const struct fkm_blas_omp *blas_omp; /* non-NULL: sgemm runs on another OpenMP
                                           runtime, whose threads run the scans */
} fkm_cpu_assign_args;

/** The OpenMP runtime of a BLAS that is not this library's (a pip faiss-cpu
 *  wheel bundles its own libgomp): its entry points (the libgomp ABI) and
 *  the threads the scans take there (`team`, set by the engine). */
typedef struct fkm_blas_omp {
  void (*parallel)(void (*fn)(void *), void *data, unsigned num_threads, unsigned flags);
  int (*thread_num)(void);
  int (*num_threads)(void);
  unsigned team;
} fkm_blas_omp;

/** 1 with *o filled when sgemm's library runs on another OpenMP runtime than
 *  this library's, else 0. Resolve once per run: it looks the library up. */
int fkm_cpu_blas_omp(fkm_sgemm_fn sgemm, fkm_blas_omp *o);

/** FAISS's k=1 search in a profile's arithmetic (docs/profiles.md). With
 *  a->sgemm on the BLAS path the dot products are that BLAS's, called as
 *  FAISS calls it, and the profile's scan reads them. Otherwise the
 *  reference (arith NULL, and every profile whose path needs neither lanes
 *  nor its own loops): for L2 dis = max0(fl(fl(xn + cn) - 2 ip)), for IP
 *  dis = ip, ip = the fmaf chain over j = 0..d-1; strict argmin (argmax
 *  for IP) in increasing centroid order. Other paths follow
 *  kernels/faiss_scan.h. Returns 0, or -1 when the working memory cannot
 *  be allocated. */
int fkm_cpu_assign(const fkm_cpu_assign_args *a);

/* Internal: the packed-panel kernel and its portable twin (same bits). A
 * panel holds 16 centroids transposed, panel[j * 16 + lane]; padding lanes
 * hold NaN so that they never win. */
#define FKM_CPU_PANEL 16
void fkm_cpu_assign_rows_avx2(const fkm_cpu_assign_args *a, const float *panels,
                              int64_t i0, int64_t i1, float *best_v,
                              int32_t *best_i);
void fkm_cpu_assign_rows_portable(const fkm_cpu_assign_args *a,
                                  const float *panels, int64_t i0, int64_t i1,
                                  float *best_v, int32_t *best_i);
/* The direct path for rows [i0, i1) (cpu_loops.h), compiled with FMA. */
void fkm_cpu_direct_rows_avx2(const fkm_cpu_assign_args *a, const float *panels, int64_t i0,
                              int64_t i1);
/* The dot products alone: out[(i - i0) * ldo + (c - c0)] = the fmaf chain
 * of row i of x (n rows, d) with centroid c, for rows [i0, i1) and the
 * panels [p0, p1) (c0 = p0 * FKM_CPU_PANEL; padding lanes are written too,
 * ldo >= (p1 - p0) * FKM_CPU_PANEL). */
void fkm_cpu_ip_block_avx2(const float *x, int64_t d, const float *panels, int64_t i0,
                           int64_t i1, int64_t p0, int64_t p1, float *out, int64_t ldo);
void fkm_cpu_ip_block_portable(const float *x, int64_t d, const float *panels, int64_t i0,
                               int64_t i1, int64_t p0, int64_t p1, float *out, int64_t ldo);

#endif
