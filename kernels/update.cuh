/* The sort-inverse update (docs/contract.md section 5), the objective (section 4), the
 * split row operations (section 6) and post-processing (section 8): host
 * launchers. Included from C and CUDA; nothing here synchronises. The
 * grouping by label the update reads: group.cuh.
 */
#ifndef FKM_KERNELS_UPDATE_CUH
#define FKM_KERNELS_UPDATE_CUH

#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "flashkm.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The centroid update. For every centroid c of each block of k_problem
 *  rows (one problem's centroids) but the block's first k_frozen:
 *  count = in-order float sum of 1 (or of w) over its segment, sum[j] =
 *  in-order float sum of x[j] (or of fl(x[j] * w)), then c[j] = sum[j] *
 *  fl(1 / count) when count != 0, else sum[j]. counts (k) float, rows <
 *  k_frozen set to 0; hist64 (k) int64 = hist for all rows. */
typedef struct fkm_update_args {
  const float *x;        /* (n, d) training set */
  const float *weights;  /* (n) or NULL */
  const int32_t *rows;   /* (n) rows grouped by label */
  const int32_t *hist;   /* (k) */
  const int32_t *offsets;/* (k) */
  int64_t n, d, k, k_frozen;
  int64_t k_problem;     /* centroids per problem: k, or k / batch */
  /* Optional: long segments (over 1024 rows where segments average 2048 or
   * more; over 256 where they average 512 or more and the 16-byte staged
   * kernel applies) are summed by a second kernel on aux (forked with
   * ev_fork, joined back with ev_join), beside the others; NULL: one after
   * the other on the launch's stream. */
  cudaStream_t aux;
  cudaEvent_t ev_fork, ev_join;
  float *centroids;      /* (k, d) out (non-frozen rows) */
  float *counts;         /* (k) out */
  int64_t *hist64;       /* (k) out */
  /* Optional: x's packed 16-bit copy (fkm_launch_pack_x's layout), read
   * instead of x by the long-segment kernel (unweighted): one packed
   * matrix of xp_rows rows per problem, xp_stride elements apart. Either
   * FKM_ASSIGN_FAST's with fp16 / bf16 data (the data's own type,
   * unscaled: exact), or, with xp_xmax, the parity cascade's of fp16 data
   * (fp16 of x 2^sx, sx = scale_exp(xp_xmax[problem]): read as x where
   * sx >= 0, where it is exact; a problem with sx < 0 reads x). NULL: x
   * only. */
  const uint16_t *xp;
  int xp_dtype;          /* FKM_DTYPE_F16 or FKM_DTYPE_BF16 */
  int64_t xp_rows, xp_stride;
  const int *xp_xmax;    /* non-NULL: the parity packing's words (B) */
  int weighted_fma;      /* weighted: sum = fma(x, w, sum) (a profile's, see
                            docs/profiles.md), else sum + fl(x w) */
} fkm_update_args;
cudaError_t fkm_launch_update(const fkm_update_args *a, cudaStream_t s);

/** Streamed runs (docs/data-path.md): a's rows are one chunk of the
 *  training set (rows, hist, offsets of the chunk's grouping); every
 *  non-frozen centroid's float chains continue from acc (k, d) and, with
 *  weights, cnt (k), in place; seen (k) += hist. acc, cnt and seen start
 *  at zero for the first chunk. a->centroids, counts and hist64 are not
 *  written. */
cudaError_t fkm_launch_update_chunk(const fkm_update_args *a, float *acc, float *cnt,
                                    int64_t *seen, cudaStream_t s);
/** After the last chunk: a->centroids (non-frozen rows), counts and hist64
 *  as fkm_launch_update would have written them over the whole training
 *  set. */
cudaError_t fkm_launch_update_finish(const fkm_update_args *a, const float *acc,
                                     const float *cnt, const int64_t *seen, cudaStream_t s);

/** A rank of a distributed run (docs/distributed.md): the chains of moving
 *  centroids c0 .. c1 (rows a->k_frozen + c0 ..; one problem) continued
 *  over a's rows (this rank's, grouped), in place in part: c1 - c0 rows of
 *  d + 1 floats, each centroid's d sums then its count (+ 1 or + w per
 *  row), the host's fkm_chains_add additions in the same order. */
cudaError_t fkm_launch_rank_chains(const fkm_update_args *a, int64_t c0, int64_t c1,
                                   float *part, cudaStream_t s);

/** A distributed run's ending on the device plane (docs/distributed.md):
 *  msg holds the whole chains of the moving centroids (k - k_frozen rows of
 *  d sums then the count, chains.h's layout); centroid k_frozen + i's row
 *  of centroids = its sums times fl(1 / count), an empty cluster's its
 *  sums (fkm_chains_scale's bits); counts (k) = the counts, 0 for the
 *  frozen rows. */
cudaError_t fkm_launch_chains_scale(const float *msg, int64_t k, int64_t d, int64_t k_frozen,
                                    float *centroids, float *counts, cudaStream_t s);
/** out (k) := hist (k) widened to int64. */
cudaError_t fkm_launch_widen_hist(const int32_t *hist, int64_t k, int64_t *out, cudaStream_t s);

/** The objective of one iteration, written by fkm_launch_objective. */
typedef struct fkm_objective {
  float obj;           /* float sum of dist in point order */
  double obj_double;   /* double sum of dist in point order */
  long long bad_label; /* first i with labels[i] < 0, or -1 */
} fkm_objective;

/** Rows [r0, r1) of the objective: the float and double chains over dist in
 *  order, continued from out's state (reset first when r0 == 0), and the
 *  first negative label. The chains are sequential by definition; calling
 *  this per chunk of rows on a side stream overlaps them with the
 *  assignment of the next chunk. problems independent objectives are
 *  computed at once: problem p's rows start p * stride elements into dist
 *  and labels, its result is out[p] (labels rows relative to the problem).
 *  scratch: fkm_objective_scratch_bytes(r1 - r0, problems) bytes of device
 *  memory, not shared with a concurrent call. aux != NULL: the double chain
 *  runs on aux beside the float chain (forked after ev_fork is recorded on
 *  s, joined back through ev_join before the call's work on s ends); aux
 *  NULL: everything on s. */
cudaError_t fkm_launch_objective(const float *dist, const int32_t *labels,
                                 int64_t r0, int64_t r1, int64_t problems,
                                 int64_t stride, fkm_objective *out,
                                 void *scratch, cudaStream_t s, cudaStream_t aux,
                                 cudaEvent_t ev_fork, cudaEvent_t ev_join);
size_t fkm_objective_scratch_bytes(int64_t n, int64_t problems);
/** fkm_launch_objective without the chains: rows [r0, r1)'s first negative
 *  label into out (reset first when r0 == 0; obj and obj_double stay 0 then),
 *  on s. A run's final labels need no objective, only that check. */
cudaError_t fkm_launch_objective_labels(const int32_t *labels, int64_t r0, int64_t r1,
                                        int64_t problems, int64_t stride, fkm_objective *out,
                                        cudaStream_t s);

/** Split row operations, pairs (dst, src) applied in order:
 *  dst := src; even j: dst *= 1 + 1/1024, src *= 1 - 1/1024; odd j the
 *  reverse. pairs: device, 2 * count int64. */
cudaError_t fkm_launch_splits(float *centroids, int64_t d,
                              const int64_t *pairs, int64_t count,
                              cudaStream_t s);

/** What the device keeps of one problem's iteration when the Lloyd loop runs
 *  without the host (docs/cuda-engine.md, "The loop on the device"). */
typedef struct fkm_iteration_record {
  fkm_objective obj; /* the assignment's objective and first negative label */
  long long nsplit;  /* empty clusters split after the update */
} fkm_iteration_record;

/** The end of an iteration on the device, every problem at once (a block
 *  each): records[it * problems + p] and hist_records[(it * problems + p) *
 *  k ..] take problem p's objective, splits and label counts, where it =
 *  *iteration; then problem p's empty clusters among its k - k_frozen
 *  movable ones are split as the host loop splits them (kernels/split_plan.h:
 *  counts updated, pairs (problems, 2 k) scratch, centroids split in order;
 *  n_train > k - k_frozen is the caller's to ensure); the last block to
 *  finish stamps stamps[2 it + 2] with the device clock (ns) and advances
 *  *iteration (done: a zeroed counter it leaves zeroed). */
typedef struct fkm_tail_args {
  int64_t problems, k, k_frozen, d, n_train;
  const fkm_objective *obj;
  const int64_t *hist64;
  float *counts, *centroids;
  int64_t *pairs;
  fkm_iteration_record *records;
  int64_t *hist_records;
  unsigned long long *stamps;
  int *iteration;
  unsigned *done;
} fkm_tail_args;
cudaError_t fkm_launch_iteration_tail(const fkm_tail_args *a, cudaStream_t s);
/** The iteration tail's plan alone (tests): each problem p's movable counts
 *  counts[p k + k_frozen .. (p + 1) k) planned and updated as
 *  fkm_split_pairs would, its pairs (indices among the movable ones) at
 *  pairs + 2 p k, their number nsplit[p]. n_train > k - k_frozen. */
cudaError_t fkm_launch_split_plan(float *counts, int64_t problems, int64_t k, int64_t k_frozen,
                                  int64_t n_train, int64_t *pairs, long long *nsplit,
                                  cudaStream_t s);
/** stamps[iteration ? 2 * *iteration + 1 : 0] := the device clock (ns). */
cudaError_t fkm_launch_clock_stamp(unsigned long long *stamps, const int *iteration,
                                   cudaStream_t s);

/** spherical: rows with norm nr > 0 (the profile's fvec_norm_L2sqr loop,
 *  *norm) scaled by float(1 / double(sqrtf(nr))); then int_centroids:
 *  roundf. */
cudaError_t fkm_launch_post_process(float *centroids, int64_t k, int64_t d,
                                    int spherical, int int_centroids,
                                    const fkm_loop_order *norm, cudaStream_t s);

#ifdef __cplusplus
}
#endif

#endif
