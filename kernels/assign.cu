/* FlashAssign, parity mode: the reference label and distance of
 * docs/contract.md section 3 computed on the GPU with plain fp32 FMA, the N x K matrix never written.
 *
 * Why plain fp32 is exact here: the reference inner product is the chain
 * t = fmaf(x_j, c_j, t) for j = 0..d-1, and CUDA's fmaf is the IEEE fused
 * multiply-add. A SIMT GEMM whose threads each own (point, centroid)
 * accumulators and step through j in increasing order computes that chain
 * bit for bit. The file is compiled with -fmad=false; every fused operation
 * is written as fmaf, every other one is an explicitly rounded intrinsic.
 */
#include "assign.cuh"
#include "blas_code.h" /* after assign.cuh: the view helper */
#include "faiss_scan.h"
#include "cp_async.cuh"
#include "packed.cuh"
#include "sm90.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <float.h>

#include <type_traits>

#include "flashkm.h"

/* The families, one file each, in this one translation unit (they share
 * templates and constants): */
#include "assign_simt.cuh"
#include "tc_states.cuh"
#include "tc_pack.cuh"
#include "tc_pass_mma.cuh"
#include "tc_pass_wgmma.cuh"
#include "certify.cuh"
#include "narrow.cuh"
#include "dispatch.cuh"

namespace {

template <bool L2>
cudaError_t launch_simt(const fkm_assign_args *a, const fkm_assign_plan *plan, cudaStream_t s) {
  const bool split = plan->ksplit > 1;
  float *pv = split ? static_cast<float *>(a->work) : nullptr;
  int32_t *pi = split ? reinterpret_cast<int32_t *>(pv + plan->ksplit * a->n) : nullptr;
  const dim3 grid((unsigned)plan->row_blocks, (unsigned)plan->ksplit);
  assign_simt<L2><<<grid, THREADS, 0, s>>>(a->x, a->xn, a->c, a->cn, a->n, a->d, a->k,
                                           plan->k_per_split, a->labels, a->dist, pv, pi,
                                           nullptr, nullptr);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess || !split) return e;
  assign_combine<L2><<<(unsigned)((a->n + 255) / 256), 256, 0, s>>>(
      pv, pi, a->n, plan->ksplit, a->labels, a->dist, nullptr, nullptr, 0);
  return cudaGetLastError();
}

/* A batch's problems in one launch (FAST, or the parity cascade): problem
 * b's inputs and outputs where fkm_launch_assign_fast_batched and
 * fkm_launch_assign_tc_batched put them, its scratch work_stride bytes (a
 * multiple of 256) after problem b - 1's; problems = 1 is one problem. */
struct Batch {
  int64_t problems = 1, xp_stride = 0;
  size_t work_stride = 0;
};

/* The centroids packed into the scratch with their constants (PARITY:
 * fp16, each row scaled; poison raised for a centroid the bound cannot
 * cover). A FAST batch packs every problem's in one launch (grid.y), each
 * into its own scratch bt.work_stride bytes further. */
template <typename T, bool PARITY>
cudaError_t launch_pack_centroids(const fkm_assign_args *a, const fkm_mma_work &lay,
                                  const float *cb, int *poison, cudaStream_t s,
                                  const Batch &bt = Batch()) {
  char *w = static_cast<char *>(a->work);
  const int64_t dp = fkm_pack_dims(a->d), kp = fkm_round_up(a->k, MBN);
  const int64_t ws = (int64_t)bt.work_stride;
  pack_centroids<T, PARITY><<<dim3((unsigned)((kp * 32 + 255) / 256), (unsigned)bt.problems),
                              256, 0, s>>>(
      a->c, a->cn, cb, a->k, a->d, dp, a->metric == FKM_METRIC_L2, a->xmax,
      reinterpret_cast<uint16_t *>(w + lay.cpack), reinterpret_cast<float4 *>(w + lay.cconst),
      poison, ws / 2, ws / 16);
  return cudaGetLastError();
}

/* One tensor-core pass (state S) over the n packed rows xp, or over the
 * *count gathered rows (rows != NULL, at most n), centroids in ksplit ranges
 * of k_per_split: wgmma where the plan has it (x rows streamed beside the
 * centroid chunks where d > 128), else mma.sync
 * (x resident in shared memory when d <= 256). */
template <typename T, class S>
cudaError_t launch_pass(const fkm_assign_args *a, const fkm_assign_plan *plan,
                        const fkm_mma_work &lay, const uint16_t *xp, int64_t n,
                        const int32_t *rows, const int *count, int64_t ksplit,
                        int64_t k_per_split, const BoundConsts &bc, S *st, cudaStream_t s,
                        const Batch &bt = Batch()) {
  /* problem blockIdx.z's operands (TcPassArgs' strides: elements; its
   * states and lists in its scratch: ws bytes) */
  const int64_t ws = (int64_t)bt.work_stride;
  const int64_t xps = bt.xp_stride, cps = ws / 2, ccs = ws / 16, xns = bt.problems > 1 ? n : 0;
  char *w = static_cast<char *>(a->work);
  const uint16_t *cpack = reinterpret_cast<const uint16_t *>(w + lay.cpack);
  const float4 *cc = reinterpret_cast<const float4 *>(w + lay.cconst);
  const int64_t dp = fkm_pack_dims(a->d), row_blocks = (n + MBM - 1) / MBM;
  const int nkc = (int)(dp / MBK);
  cudaError_t e;
  if (plan->wgmma > 0) {
    /* x rows resident per item up to WG_MAX_CHUNKS chunks, else streamed
     * with the centroid chunks */
    const int64_t items = (n + WG_ROWS - 1) / WG_ROWS * ksplit;
    /* Parity: persistent, one block per multiprocessor (measured 3% faster
     * at 1M x 1024 than a block per item). FAST: a block per item, so that
     * the objective's kernels on the side stream find free multiprocessors
     * between blocks (persistent, FAST's objective tail grew from 0.2 to
     * 0.6 ms at 1M x 1024 and the iteration got 7% slower). */
    /* A batch (grid.z) whose blocks would fill several waves gives
     * each problem plan->wgmma / problems persistent blocks (at least one):
     * a block per item holds its multiprocessor alone (shared memory and
     * registers allow one) and loads its rows before computing, while a
     * block that takes further items loads the next one's rows into its
     * second buffer meanwhile (ncu, B = 64 x 8192 rows, K = 64, a block per
     * item: 2048 blocks, DRAM 36 % busy). */
    int64_t cap = items;
    if (bt.problems > 1 && items * bt.problems > plan->wgmma)
      cap = plan->wgmma / bt.problems > 1 ? plan->wgmma / bt.problems : 1;
    else if (bt.problems == 1 && uses_bound<S>())
      cap = plan->wgmma;
    const unsigned blocks = (unsigned)(items < cap ? items : cap);
    const bool stream = nkc > WG_MAX_CHUNKS;
    const int xbufs = wg_xbufs(blocks, items);
    const int nslots = stream ? WG_STREAM_SLOTS : wg_slots(nkc, xbufs);
    const size_t smem =
        1024 + (stream ? sizeof(uint16_t) * TILE * (size_t)((1 + WG_RB) * nslots)
                       : sizeof(uint16_t) * TILE * (size_t)(xbufs * WG_RB * nkc + nslots) +
                             (size_t)(nslots / nkc) * MBN * 16);
    static_assert(WG_MAX_CHUNKS == 2, "resident rows: one or two chunks");
    auto kern = stream ? assign_wgmma<T, S, 0> : nkc == 1 ? assign_wgmma<T, S, 1>
                                                          : assign_wgmma<T, S, 2>;
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (e != cudaSuccess) return e;
    kern<<<dim3(blocks, 1, (unsigned)bt.problems), WG_THREADS, smem, s>>>(TcPassArgs<S>{
        .xp = xp, .cp = cpack, .cc = cc, .xn = a->xn, .bc = bc, .xmax = a->xmax, .n = n,
        .dp = dp, .k = a->k, .k_per_split = k_per_split, .ksplit = ksplit, .nslots = nslots,
        .xbufs = xbufs, .rows = rows, .count = count, .st = st, .xp_stride = xps,
        .cp_stride = cps, .cc_stride = ccs, .xn_stride = xns, .ws = ws});
    return cudaGetLastError();
  }
  const bool res = nkc <= RES_MAX_CHUNKS;
  const size_t smem = sizeof(uint16_t) * TILE * (size_t)(res ? nkc + MSTAGES : 2 * MSTAGES);
  auto kern = res ? assign_mma<T, S, true> : assign_mma<T, S, false>;
  e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
  if (e == cudaSuccess) /* room for two blocks per multiprocessor where registers allow */
    e = cudaFuncSetAttribute(kern, cudaFuncAttributePreferredSharedMemoryCarveout,
                             cudaSharedmemCarveoutMaxShared);
  if (e != cudaSuccess) return e;
  const dim3 grid((unsigned)row_blocks, (unsigned)ksplit, (unsigned)bt.problems);
  kern<<<grid, MMA_THREADS, smem, s>>>(TcPassArgs<S>{
      .xp = xp, .cp = cpack, .cc = cc, .xn = a->xn, .bc = bc, .xmax = a->xmax, .n = n,
      .dp = dp, .k = a->k, .k_per_split = k_per_split, .ksplit = ksplit, .nslots = 0,
      .xbufs = 0, .rows = rows, .count = count, .st = st, .xp_stride = xps, .cp_stride = cps,
      .cc_stride = ccs, .xn_stride = xns, .ws = ws});
  return cudaGetLastError();
}

/* The parity cascade's scratch inside args->work (fkm_mma_work_layout). */
struct TcWork {
  int *count, *count1, *pair_count, *narrowed, *poison;
  float *bc_max, *cb;
  int32_t *rows, *rows1, *pairs;
  Top2 *st1;
  uint16_t *xg;
  Cert *st2; /* then the refine partials, or the narrowing's states */
};

TcWork tc_work(const fkm_assign_args *a, const fkm_mma_work &lay) {
  char *w = static_cast<char *>(a->work);
  TcWork t;
  t.count = reinterpret_cast<int *>(w);
  t.count1 = t.count + 1;
  t.pair_count = t.count + 2;
  t.narrowed = t.count + 4;
  t.poison = reinterpret_cast<int *>(w + 64);
  t.bc_max = reinterpret_cast<float *>(w + 128);
  t.cb = reinterpret_cast<float *>(w + lay.cb);
  t.rows = reinterpret_cast<int32_t *>(w + lay.rows);
  t.rows1 = reinterpret_cast<int32_t *>(w + lay.rows1);
  t.pairs = reinterpret_cast<int32_t *>(w + lay.pairs);
  t.st1 = reinterpret_cast<Top2 *>(w + lay.states);
  t.xg = reinterpret_cast<uint16_t *>(w + lay.gath);
  t.st2 = reinterpret_cast<Cert *>(w + lay.partials);
  return t;
}

/* What every certify launch of the cascade shares: the tests' inputs and
 * outputs; states st (ksplit ranges) of the rows in_rows (NULL: all n),
 * the rows left appended to left. */
template <class S>
CertifyArgs<S> cert_args(const fkm_assign_args *a, const TcWork &t, const BoundConsts &bc,
                         const S *st, int64_t ksplit, const int32_t *in_rows,
                         const int *in_count, int32_t *left, int *left_count,
                         const Batch *bt = nullptr) {
  /* the cascade's certifies (bt given) read x from its packed copy where
   * that copy is exact (a->xp_exact) */
  const bool packed = bt && a->xp_exact && a->xp;
  return CertifyArgs<S>{
      .x = a->x, .xn = a->xn, .c = a->c, .cn = a->cn, .n = a->n, .d = a->d, .k = a->k,
      .ksplit = ksplit, .st = st, .bc = bc, .cb = t.cb, .bc_max = t.bc_max, .xmax = a->xmax,
      .poison = t.poison, .in_rows = in_rows, .in_count = in_count, .labels = a->labels,
      .dist = a->dist, .rows = left, .count = left_count, .cmax_lanes = a->cmax_lanes,
      .defer_pairs = a->defer_pairs, .defer_all = a->defer_all, .order = a->blas,
      .pairs = t.pairs, .pair_count = t.pair_count,
      .ws = bt ? (int64_t)bt->work_stride : 0, .xp = packed ? a->xp : nullptr,
      .dp = fkm_pack_dims(a->d), .xp_stride = bt ? bt->xp_stride : 0};
}

/* Rows of x and of the centroids start 16-byte aligned (certify's and the
 * staged passes' 16-byte loads). */
inline bool rows_16b(const fkm_assign_args *a) {
  return a->d % 4 == 0 && reinterpret_cast<uintptr_t>(a->c) % 16 == 0 &&
         reinterpret_cast<uintptr_t>(a->x) % 16 == 0;
}

/* The grid of a pass over a row list whose length is only on the device:
 * blocks for every row at most, two of the plan's list grids at most (the
 * blocks stride over the rows). */
inline unsigned list_grid(int64_t blocks, const fkm_assign_plan *plan) {
  return (unsigned)(blocks < 2 * plan->list_blocks ? blocks : 2 * plan->list_blocks);
}

/* The parity cascade (see "certified tensor-core path"): the screen over
 * every row, certify its states (test (1)), gather and pack the rows it
 * left, the Cert pass over them, certify (tests (1) and (2)), and the
 * reference kernel over the rest. Every count stays on the device. A batch
 * (bt.problems > 1, fkm_launch_assign_tc_batched) runs each step once for
 * every problem, a grid layer a problem, each in its own scratch. */
template <bool L2>
cudaError_t launch_tc(const fkm_assign_args *a, const fkm_assign_plan *plan, cudaStream_t s,
                      const Batch &bt = Batch()) {
  const int64_t n = a->n, k = a->k, d = a->d;
  const unsigned P = (unsigned)bt.problems;
  const int64_t ws = (int64_t)bt.work_stride, xs = P > 1 ? n * d : 0;
  const fkm_mma_work lay = fkm_mma_work_layout(n, k, d, plan);
  const TcWork t = tc_work(a, lay);
  const BoundConsts bc = bound_consts(L2, d, a->float_norms != 0);
  /* a launch over lists whose lengths are on the device: grid g spread over
   * the problems (g / P a problem, at least 8; the blocks stride) */
  auto spread = [P](int64_t g) {
    const int64_t per = (g + P - 1) / P, least = g < 8 ? g : 8;
    return dim3((unsigned)(per > least ? per : least), P);
  };
  cudaError_t e = P > 1 ? cudaMemset2DAsync(a->work, (size_t)ws, 0, 256, P, s)
                        : cudaMemsetAsync(a->work, 0, 256, s);
  if (e != cudaSuccess) return e;
  centroid_bounds<<<dim3((unsigned)((k + 255) / 256), P), 256, 0, s>>>(a->cn, k, bc.beta, t.cb,
                                                                      ws);
  bound_max<<<dim3((unsigned)((k + 255) / 256 < 128 ? (k + 255) / 256 : 128), P), 256, 0, s>>>(
      t.cb, k, t.bc_max, ws);
  e = launch_pack_centroids<__half, true>(a, lay, t.cb, t.poison, s, bt);
  if (e == cudaSuccess)
    e = launch_pass<__half, Top2>(a, plan, lay, a->xp, n, nullptr, nullptr, plan->ksplit,
                                  plan->k_per_split, bc, t.st1, s, bt);
  if (e != cudaSuccess) return e;
  const bool vec = rows_16b(a);
  const unsigned cblocks = (unsigned)((n + CERT_THREADS - 1) / CERT_THREADS);
  auto cert1 = vec ? certify<L2, true, Top2> : certify<L2, false, Top2>;
  cert1<<<dim3(cblocks, P), CERT_THREADS, 0, s>>>(
      cert_args(a, t, bc, t.st1, plan->ksplit, nullptr, nullptr, t.rows1, t.count1, &bt));
  /* the rows the screen left, gathered and packed like x (into each
   * problem's scratch) */
  const int64_t dp = fkm_pack_dims(d), groups = fkm_round_up(n, MBM) * (dp / 8);
  const int64_t gblocks = (groups + 255) / 256 < 4096 ? (groups + 255) / 256 : 4096;
  pack_rows<__half, true><<<spread(gblocks), 256, 0, s>>>(a->x, n, d, 0, dp, a->xmax, t.rows1,
                                                          t.count1, t.xg, xs, ws / 2, ws);
  Batch gathered = bt;
  gathered.xp_stride = ws / 2;
  e = launch_pass<__half, Cert>(a, plan, lay, t.xg, n, t.rows1, t.count1, plan->cert_split,
                                plan->cert_k_per_split, bc, t.st2, s, gathered);
  if (e != cudaSuccess) return e;
  auto cert2 = vec ? certify<L2, true, Cert> : certify<L2, false, Cert>;
  /* the rows the screen left: a few blocks stride over them (their count
   * is on the device) */
  cert2<<<spread(list_grid(cblocks, plan)), CERT_THREADS, 0, s>>>(
      cert_args(a, t, bc, t.st2, plan->cert_split, t.rows1, t.count1, t.rows, t.count, &bt));
  /* a caller that decides rows itself (a profile's scan, a BLAS's order)
   * replays the rows left too: the reference kernel's values would be
   * overwritten */
  if (a->defer_pairs || a->defer_all) return cudaGetLastError();
  /* The reference kernel on the rows left, centroids split in refine_split
   * ranges combined in order (the number of rows is on the device; blocks
   * past it exit at once). */
  float *pv = reinterpret_cast<float *>(t.st2);
  int32_t *pi = reinterpret_cast<int32_t *>(pv + plan->refine_split * n);
  /* few rows are left: a small grid (blocks stride over the rows), so that
   * the blocks that find nothing to do cost little */
  /* 16-byte rows: refine_staged (its 4-byte instance would spill, as the
   * batch kernel's does at this tile); else assign_simt (one problem: the
   * batched launcher asks for 16-byte rows) */
  if (vec) {
    constexpr int64_t SBM = 128; /* refine_staged's rows a block */
    const int64_t rblocks =
        (n + SBM - 1) / SBM < REFINE_ROW_BLOCKS ? (n + SBM - 1) / SBM : REFINE_ROW_BLOCKS;
    const dim3 rg = spread(rblocks);
    refine_staged<L2, true><<<dim3(rg.x, (unsigned)plan->refine_split, P), 256, 0, s>>>(
        a->x, a->xn, a->c, a->cn, d, a->k, plan->refine_k_per_split, t.rows, t.count, pv, pi, n,
        ws);
  } else {
    const int64_t rblocks =
        (n + BM - 1) / BM < REFINE_ROW_BLOCKS ? (n + BM - 1) / BM : REFINE_ROW_BLOCKS;
    const dim3 rgrid((unsigned)rblocks, (unsigned)plan->refine_split);
    assign_simt<L2><<<rgrid, THREADS, 0, s>>>(a->x, a->xn, a->c, a->cn, n, d, a->k,
                                              plan->refine_k_per_split, a->labels, a->dist, pv,
                                              pi, t.rows, t.count);
  }
  const int64_t cmblocks =
      (n + 255) / 256 < plan->list_blocks ? (n + 255) / 256 : plan->list_blocks;
  assign_combine<L2><<<spread(cmblocks), 256, 0, s>>>(pv, pi, n, plan->refine_split, a->labels,
                                                      a->dist, t.rows, t.count, ws);
  return cudaGetLastError();
}

/* The float32 narrowing (kernels/narrow.cuh) of the rows launch_tc left
 * with defer_pairs or defer_all: their Cert states from float32 products,
 * certify with the float32 bound; the rows it leaves go to rows1 (free
 * once the second certify has run), counted in t.narrowed. The states use
 * the second pass's region and its centroid ranges. */
template <bool L2>
cudaError_t launch_narrow(const fkm_assign_args *a, const fkm_assign_plan *plan, cudaStream_t s) {
  const int64_t n = a->n, d = a->d;
  const fkm_mma_work lay = fkm_mma_work_layout(n, a->k, d, plan);
  const TcWork t = tc_work(a, lay);
  const BoundConsts bc = bound_consts_f32(L2, d, a->float_norms != 0);
  const bool vec = rows_16b(a);
  const int64_t split = plan->cert_split, kps = plan->cert_k_per_split;
  const int64_t row_blocks = (n + 256 / NW_TXN * NW_TM - 1) / (256 / NW_TXN * NW_TM);
  auto kern = vec ? narrow_f32<L2, true> : narrow_f32<L2, false>;
  kern<<<dim3(list_grid(row_blocks, plan), (unsigned)split), 256, 0, s>>>(
      a->x, a->xn, a->c, a->cn, d, a->k, kps, t.rows, t.count, bc, a->xmax, t.cb, t.st2);
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess) return e;
  auto cert = vec ? certify<L2, true, Cert> : certify<L2, false, Cert>;
  cert<<<list_grid((n + CERT_THREADS - 1) / CERT_THREADS, plan), CERT_THREADS, 0, s>>>(
      cert_args(a, t, bc, t.st2, split, t.rows, t.count, t.rows1, t.narrowed));
  return cudaGetLastError();
}

template <bool L2, typename T>
cudaError_t launch_fast(const fkm_assign_args *a, const fkm_assign_plan *plan, cudaStream_t s,
                        const Batch &bt = Batch()) {
  const int64_t n = a->n, B = bt.problems;
  const fkm_mma_work lay = fkm_mma_work_layout(n, a->k, a->d, plan);
  char *w = static_cast<char *>(a->work);
  Arg *part = reinterpret_cast<Arg *>(w + lay.partials);
  const BoundConsts bc = bound_consts(L2, a->d, false); /* unused by the FAST pass */
  const int64_t ws = (int64_t)bt.work_stride;
  cudaError_t e = launch_pack_centroids<T, false>(a, lay, nullptr, nullptr, s, bt);
  if (e == cudaSuccess)
    e = launch_pass<T, Arg>(a, plan, lay, a->xp, n, nullptr, nullptr, plan->ksplit,
                            plan->k_per_split, bc, part, s, bt);
  if (e != cudaSuccess) return e;
  fast_finish<L2><<<dim3((unsigned)((n + 255) / 256), (unsigned)B), 256, 0, s>>>(
      part, n, plan->ksplit, a->xn, a->labels, a->dist, ws / (int64_t)sizeof(Arg));
  return cudaGetLastError();
}

/* *bt := the layout of a batched launch (batch problems, problem b's packed
 * rows b xp_stride 16-bit elements and its scratch b work_stride bytes
 * further); false where it cannot be: more problems than a grid dimension,
 * a stride not a multiple of 256 bytes or below the plan's scratch. */
bool batch_layout(int64_t batch, int64_t xp_stride, size_t work_stride,
                  const fkm_assign_plan *plan, Batch *bt) {
  if (batch > 65535 || work_stride % 256 != 0 || work_stride < plan->work_bytes) return false;
  bt->problems = batch;
  bt->xp_stride = xp_stride;
  bt->work_stride = work_stride;
  return true;
}

}  // namespace

extern "C" cudaError_t fkm_launch_assign_simt_batched(const fkm_assign_args *a,
                                                      int64_t batch, cudaStream_t s) {
  if (a->n == 0 || batch == 0) return cudaSuccess;
  if (batch > 65535) return cudaErrorInvalidValue;
  /* 16-byte copies where every row starts 16-byte aligned */
  const bool vec = a->d % 4 == 0 && ((uintptr_t)a->x | (uintptr_t)a->c) % 16 == 0;
  return by_metric(a->metric == FKM_METRIC_L2, [&](auto metric) {
    constexpr bool L2 = decltype(metric)::value;
    /* the tile by k: TXN threads along centroids, TM points and TN centroids a thread */
    auto staged = [&](auto txn, auto tm, auto tn) {
      constexpr int TXN = decltype(txn)::value, TM = decltype(tm)::value;
      constexpr int TN = decltype(tn)::value, SBM = 256 / TXN * TM;
      const int64_t row_blocks = (a->n + SBM - 1) / SBM;
      const dim3 grid((unsigned)(row_blocks < 65535 ? row_blocks : 65535), 1, (unsigned)batch);
      auto kern = vec ? assign_simt_staged<L2, TXN, TM, TN, true>
                      : assign_simt_staged<L2, TXN, TM, TN, false>;
      kern<<<grid, 256, 0, s>>>(a->x, a->xn, a->c, a->cn, a->n, a->d, a->k, a->labels,
                                a->dist);
      return cudaGetLastError();
    };
    using std::integral_constant;
    if (a->k <= 8)
      return staged(integral_constant<int, 8>{}, integral_constant<int, 4>{},
                    integral_constant<int, 1>{});
    if (a->k <= 16)
      return staged(integral_constant<int, 8>{}, integral_constant<int, 4>{},
                    integral_constant<int, 2>{});
    return staged(integral_constant<int, 16>{}, integral_constant<int, 8>{},
                  integral_constant<int, 4>{});
  });
}

extern "C" cudaError_t fkm_launch_assign_fast_batched(const fkm_assign_args *a,
                                                      const fkm_assign_plan *plan,
                                                      int64_t batch, int64_t xp_stride,
                                                      size_t work_stride, cudaStream_t s) {
  if (a->n == 0 || batch == 0) return cudaSuccess;
  Batch bt;
  if (plan->fast_dtype < 0 || !batch_layout(batch, xp_stride, work_stride, plan, &bt))
    return cudaErrorInvalidValue;
  return by_metric(a->metric == FKM_METRIC_L2, [&](auto metric) {
    constexpr bool L2 = decltype(metric)::value;
    return by_half_dtype(plan->fast_dtype, [&](auto type) {
      return launch_fast<L2, decltype(type)>(a, plan, s, bt);
    });
  });
}

extern "C" cudaError_t fkm_launch_assign_tc_batched(const fkm_assign_args *a,
                                                    const fkm_assign_plan *plan, int64_t batch,
                                                    int64_t xp_stride, size_t work_stride,
                                                    cudaStream_t s) {
  if (a->n == 0 || batch == 0) return cudaSuccess;
  Batch bt;
  if (!plan->tc || plan->fast_dtype >= 0 || !rows_16b(a) || a->defer_pairs || a->defer_all ||
      !batch_layout(batch, xp_stride, work_stride, plan, &bt))
    return cudaErrorInvalidValue;
  return by_metric(a->metric == FKM_METRIC_L2, [&](auto metric) {
    return launch_tc<decltype(metric)::value>(a, plan, s, bt);
  });
}

extern "C" cudaError_t fkm_launch_assign(const fkm_assign_args *a,
                                         const fkm_assign_plan *plan,
                                         cudaStream_t s) {
  if (a->n == 0) return cudaSuccess;
  return by_metric(a->metric == FKM_METRIC_L2, [&](auto metric) {
    constexpr bool L2 = decltype(metric)::value;
    if (plan->fast_dtype >= 0)
      return by_half_dtype(plan->fast_dtype, [&](auto type) {
        return launch_fast<L2, decltype(type)>(a, plan, s);
      });
    return plan->tc ? launch_tc<L2>(a, plan, s) : launch_simt<L2>(a, plan, s);
  });
}

extern "C" cudaError_t fkm_launch_assign_narrow(const fkm_assign_args *a,
                                                const fkm_assign_plan *plan, cudaStream_t s) {
  if (a->n == 0 || !plan->tc || plan->fast_dtype >= 0 || !(a->defer_pairs || a->defer_all))
    return cudaSuccess;
  return by_metric(a->metric == FKM_METRIC_L2, [&](auto metric) {
    return launch_narrow<decltype(metric)::value>(a, plan, s);
  });
}

namespace {
/* The packing's launches: for each slice of at most 65535 problems (grid.y),
 * launch(b0, problems in the slice, grid, padded rows, packed dims) with
 * about 4096 blocks of 256 threads in all, each thread a group of 8 columns;
 * the first error stops it. */
template <class F>
cudaError_t pack_slices(int64_t n, int64_t d, int64_t problems, F launch) {
  const int64_t dp = fkm_pack_dims(d), rp = fkm_round_up(n, MBM);
  if (rp == 0 || problems == 0) return cudaSuccess;
  const int64_t want = (rp * (dp / 8) + 255) / 256;
  for (int64_t b0 = 0; b0 < problems; b0 += 65535) {
    const int64_t pb = problems - b0 < 65535 ? problems - b0 : 65535;
    const int64_t most = 4096 / pb > 0 ? 4096 / pb : 1;
    const dim3 grid((unsigned)(want < most ? want : most), (unsigned)pb);
    const cudaError_t e = launch(b0, pb, grid, rp, dp);
    if (e != cudaSuccess) return e;
  }
  return cudaSuccess;
}
}  // namespace

extern "C" cudaError_t fkm_launch_pack_x_batched(const float *x, int64_t n, int64_t d,
                                                 int fast_dtype, int64_t problems, uint16_t *xp,
                                                 int64_t xp_stride, int *xmax, cudaStream_t s) {
  return pack_slices(n, d, problems, [&](int64_t b0, int64_t pb, dim3 grid, int64_t rp,
                                         int64_t dp) {
    const float *xb = x + b0 * n * d;
    uint16_t *ob = xp + b0 * xp_stride;
    if (fast_dtype == FKM_DTYPE_F16 || fast_dtype == FKM_DTYPE_BF16) {
      by_half_dtype(fast_dtype, [&](auto type) {
        pack_rows<decltype(type), false><<<grid, 256, 0, s>>>(xb, n, d, rp, dp, nullptr, nullptr,
                                                              nullptr, ob, n * d, xp_stride,
                                                              0);
        return 0;
      });
    } else {
      int *mb = xmax + b0;
      cudaError_t e = cudaMemsetAsync(mb, 0, sizeof(int) * (size_t)pb, s);
      if (e != cudaSuccess) return e;
      const unsigned ab = grid.x < 1024 ? grid.x : 1024;
      if (n * d > 0) abs_max<<<dim3(ab, (unsigned)pb), 256, 0, s>>>(xb, n * d, n * d, mb);
      pack_rows<__half, true><<<grid, 256, 0, s>>>(xb, n, d, rp, dp, mb, nullptr, nullptr, ob,
                                                   n * d, xp_stride, 0);
    }
    return cudaGetLastError();
  });
}

extern "C" cudaError_t fkm_launch_pack_x(const float *x, int64_t n, int64_t d, int fast_dtype,
                                         uint16_t *xp, int *xmax, cudaStream_t s) {
  return fkm_launch_pack_x_batched(x, n, d, fast_dtype, 1, xp, 0, xmax, s);
}


extern "C" cudaError_t fkm_launch_pack_x16_batched(const void *x16, int dtype, int64_t n,
                                                   int64_t d, int64_t problems, float *xf,
                                                   uint16_t *xp, int64_t xp_stride,
                                                   unsigned long long *first, cudaStream_t s) {
  if ((dtype != FKM_DTYPE_F16 && dtype != FKM_DTYPE_BF16) || d % 8 != 0 ||
      ((uintptr_t)x16 | (uintptr_t)xf) % 16 != 0)
    return cudaErrorInvalidValue;
  return pack_slices(n, d, problems, [&](int64_t b0, int64_t, dim3 grid, int64_t rp,
                                         int64_t dp) {
    const uint16_t *src = static_cast<const uint16_t *>(x16) + b0 * n * d;
    return by_half_dtype(dtype, [&](auto type) {
      pack_rows16<decltype(type), X16_FAST><<<grid, 256, 0, s>>>(
          src, n, d, rp, dp, xp + b0 * xp_stride, xp_stride, xf + b0 * n * d, nullptr, first,
          b0 * n * d);
      return cudaGetLastError();
    });
  });
}

extern "C" cudaError_t fkm_launch_pack_x16_parity_batched(const void *x16, int dtype, int64_t n,
                                                          int64_t d, int64_t problems, float *xf,
                                                          uint16_t *xp, int64_t xp_stride,
                                                          int *xmax, unsigned long long *first,
                                                          cudaStream_t s) {
  if ((dtype != FKM_DTYPE_F16 && dtype != FKM_DTYPE_BF16) || d % 8 != 0 ||
      ((uintptr_t)x16 | (uintptr_t)xf) % 16 != 0)
    return cudaErrorInvalidValue;
  return pack_slices(n, d, problems, [&](int64_t b0, int64_t pb, dim3 grid, int64_t rp,
                                         int64_t dp) {
    const uint16_t *src = static_cast<const uint16_t *>(x16) + b0 * n * d;
    int *mb = xmax + b0;
    cudaError_t e = cudaMemsetAsync(mb, 0, sizeof(int) * (size_t)pb, s);
    if (e != cudaSuccess) return e;
    return by_half_dtype(dtype, [&](auto type) {
      using T = decltype(type);
      pack_rows16<T, X16_MAX><<<grid, 256, 0, s>>>(src, n, d, rp, dp, nullptr, 0,
                                                   xf + b0 * n * d, mb, first, b0 * n * d);
      pack_rows16<T, X16_SCALED><<<grid, 256, 0, s>>>(src, n, d, rp, dp, xp + b0 * xp_stride,
                                                      xp_stride, nullptr, mb, nullptr, 0);
      return cudaGetLastError();
    });
  });
}

extern "C" cudaError_t fkm_assign_probe_wgmma(int *ok) {
  *ok = 0;
  int *d = nullptr;
  cudaError_t e = cudaMalloc(&d, sizeof(int));
  if (e != cudaSuccess) return e;
  wgmma_probe<<<1, 1>>>(d);
  e = cudaGetLastError();
  if (e == cudaSuccess) e = cudaMemcpy(ok, d, sizeof(int), cudaMemcpyDeviceToHost);
  const cudaError_t f = cudaFree(d);
  return e != cudaSuccess ? e : f;
}
