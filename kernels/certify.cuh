/* After the tensor-core passes (included by kernels/assign.cu): FAST's
 * final combine, and certify, which applies the cascade's tests to each
 * point's merged state and computes its one or two candidates exactly. */
#ifndef FKM_KERNELS_CERTIFY_CUH
#define FKM_KERNELS_CERTIFY_CUH

namespace {

/* FAST: the ranges' argmins combined in increasing range order (a later
 * range wins only when strictly better), then the reported distance. */
template <bool L2>
__global__ void fast_finish(const Arg *__restrict__ part, int64_t n, int64_t ksplit, const float *__restrict__ xn,
                            int32_t *__restrict__ labels, float *__restrict__ dist,
                            int64_t part_stride) {
  /* problem blockIdx.y (a FAST batch in one launch): its rows' partials
   * part_stride further, its rows n further */
  part += blockIdx.y * part_stride;
  xn += blockIdx.y * n;
  labels += blockIdx.y * n;
  dist += blockIdx.y * n;
  const int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (p >= n) return;
  Arg b;
  state_init(b);
  for (int64_t s = 0; s < ksplit; s++) state_merge(b, part[s * n + p]);
  labels[p] = b.i;
  dist[p] = L2 ? fmaxf(__fadd_rn(xn[p], b.v), 0.0f) : -b.v;
}

constexpr int CERT_THREADS = 128;
/* Grids over a row list whose length is known only on the device: the
 * plan's list_blocks (two blocks per multiprocessor); the certify of the
 * Cert states takes twice that (four per multiprocessor), its loads of
 * gathered rows are latency-bound (measured at 1M x 1024 with 54k such rows,
 * with the refine grid below: the assignment 0.02 ms faster). */
/* Row blocks of the refine pass's grid (times its centroid ranges). */
constexpr int64_t REFINE_ROW_BLOCKS = 64;
constexpr int CERT_BK = 32;
static_assert(CERT_BK / 4 == 8, "a stage of a candidate: eight 16-byte segments, swizzled by row % 8");

/* Certify: one thread per point (blocks of 128 points stride over them).
 * Merges the splits' states, applies the proof's tests, and computes the
 * reference value of
 * (point, candidate) exactly for its one or two candidates: the fmaf chain
 * over j in order, x staged through shared memory (VEC: 16-byte loads, all
 * of a stage in flight at once; the block's row indices read once); with
 * 16-byte rows (VEC) the first candidates' CERT_BK values staged beside x
 * (eight threads a candidate's 128 bytes), else and for the second
 * candidate read by the thread CERT_BK values ahead from L1/L2. Uncertain
 * points are appended to rows[] (order irrelevant: each is recomputed on
 * its own). */
template <bool VEC>
__device__ __forceinline__ float cert_chunk(float ip, const float (&xr)[CERT_BK + 1],
                                            const float *crow, int kmax) {
  if (VEC && kmax == CERT_BK) {
    float cv[CERT_BK];
#pragma unroll
    for (int j = 0; j < CERT_BK; j += 4) {
      const float4 w = __ldg(reinterpret_cast<const float4 *>(crow + j));
      cv[j] = w.x, cv[j + 1] = w.y, cv[j + 2] = w.z, cv[j + 3] = w.w;
    }
#pragma unroll
    for (int j = 0; j < CERT_BK; j++) ip = fmaf(xr[j], cv[j], ip);
  } else {
    for (int j = 0; j < kmax; j++) ip = fmaf(xr[j], __ldg(crow + j), ip);
  }
  return ip;
}

/* The fmaf chain over a stage's CERT_BK dimensions of a point (xr) and of
 * its candidate staged in cr: 16-byte segment q of the candidate's stage at
 * q ^ (row % 8) (the block's 128-byte rows stored and read without bank
 * conflicts beyond the minimum). */
__device__ __forceinline__ float cert_staged(float ip, const float (&xr)[CERT_BK + 1],
                                             const float4 (&cr)[CERT_BK / 4], int row) {
#pragma unroll
  for (int q = 0; q < CERT_BK / 4; q++) {
    const float4 w = cr[q ^ (row & 7)];
    ip = fmaf(xr[4 * q], w.x, ip);
    ip = fmaf(xr[4 * q + 1], w.y, ip);
    ip = fmaf(xr[4 * q + 2], w.z, ip);
    ip = fmaf(xr[4 * q + 3], w.w, ip);
  }
  return ip;
}

/* A dot product accumulated term by term (t = 0, 1, ...) in the order of a
 * BLAS element whose code has one or two chains (blas_code.h): the same
 * operations as profile.cu's code_dot, fed by certify's staged x. */
struct BlasChain {
  const int32_t *seg;
  int64_t e, m; /* the current segment's end and its main part's end */
  float a0, a1, sum;
  int q, l;
  uint8_t code;
  __device__ __forceinline__ void open(int64_t b, int64_t end) {
    e = end;
    m = fkm_blas_code_main_end(code, b, end);
    a0 = a1 = 0.0f;
    l = 0;
  }
  __device__ __forceinline__ void begin(uint8_t c, const int32_t *sg) {
    code = c;
    seg = sg;
    q = 0;
    sum = 0.0f;
    open(sg[1], sg[2]);
  }
  __device__ __forceinline__ void close() {
    const float v = fkm_blas_code_lanes(code) == 2 ? __fadd_rn(a0, a1) : a0;
    sum = q == 0 ? v : __fadd_rn(sum, v);
    q++;
  }
  __device__ __forceinline__ void add(int64_t t, float x, float c) {
    if (t == e) {
      close();
      open(e, seg[2 + q]);
    }
    const bool chained = fkm_blas_code_lanes(code) == 2 && t < m, second = chained && l;
    const float acc = second ? a1 : a0;
    const float r = fkm_blas_code_rounded(code) ? __fadd_rn(acc, __fmul_rn(c, x)) : fmaf(c, x, acc);
    if (second) a1 = r;
    else a0 = r;
    if (chained) l ^= 1;
  }
  __device__ __forceinline__ float finish() {
    close();
    return sum;
  }
};

/* The proof's tests on a point's merged state: 0 (uncertain), 1 (b1 is the
 * reference's label) or 2 (it is b1 or b2). pax = A(x), bx = B(x). */
__device__ __forceinline__ int candidates(const Cert &t, float pax, float bx,
                                          const float *__restrict__ cb, int &b1, int &b2) {
  b1 = t.b1;
  b2 = -1;
  if (t.b1 < 0) return 0;
  /* U = g1 + A(x) |b|' + B(x), rounded up */
  const float u = __fadd_ru(__fadd_ru(t.g1, __fmul_ru(pax, __ldg(cb + t.b1))), bx);
  const bool in = t.hb1 == t.b1 || t.hb2 == t.b1;
  const float hm = t.hb1 == t.b1 ? t.h2 : t.h1; /* least h over c != b */
  const int c2 = t.hb1 == t.b1 ? t.hb2 : t.hb1;
  const float hm2 = in ? t.h3 : t.h2; /* least h outside {b, c2} */
  if (__fsub_rd(hm, bx) > u) return 1;
  if (c2 < 0 || !(__fsub_rd(hm2, bx) > u)) return 0;
  b2 = c2;
  return 2;
}
/* The screen keeps b = the centroid of the least key, and a key k is
 * within e(k) = 2^-18 |k| + 2^-144 of its h (docs/certification.md
 * section 1): h(b) <= h1 + e(h1) and g(b) <= h(b) + A(x) |b|' + (the
 * rounding of h, within B(x)), so U = h1 + e(h1) + 2 (A(x) |b|' + B(x))
 * bounds ref(b) - X; every other centroid's h is at least h2 - e(h2) (k -
 * e(k) increases with k), and test (1) applies with hm = h2 - e(h2). */
__device__ __forceinline__ float key_slack(float k) {
  return __fmaf_ru(fabsf(k), 0x1p-18f, 0x1p-144f);
}
__device__ __forceinline__ int candidates(const Top2 &t, float pax, float bx,
                                          const float *__restrict__ cb, int &b1, int &b2) {
  b1 = t.b;
  b2 = -1;
  if (t.b < 0) return 0;
  const float ab = __fadd_ru(__fmul_ru(pax, __ldg(cb + t.b)), bx);
  const float u = __fadd_ru(__fadd_ru(__fadd_ru(t.h1, key_slack(t.h1)), ab), ab);
  const float hm = t.h2 == INFINITY ? INFINITY : __fsub_rd(t.h2, key_slack(t.h2));
  return __fsub_rd(hm, bx) > u ? 1 : 0;
}

/* S = Top2 after the screen, Cert after the pass over the rows the screen
 * left; in_rows != NULL: the states are those of rows in_rows[0 ..
 * *in_count) (stride *in_count), which are the rows labels are written to
 * and appended to rows[]. cmax_lanes (L2): a certified label's value is
 * exhaustive_L2sqr_blas_cmax's (fkm_cmax_certified); defer_pairs: a row
 * narrowed to two candidates is listed in pairs[] (row, b1, b2) instead of
 * decided (a profile's laned scan decides it, profile.cu); defer_all: every
 * row with candidates is listed, to be decided in a BLAS's order. */
template <class S> struct CertifyArgs {
  const float *x, *xn;  /* the rows of x and their |x|^2 */
  const float *c, *cn;  /* the centroids and their |c|^2 */
  int64_t n, d, k;      /* rows (in_rows: at most), dimensions, centroids */
  int64_t ksplit;       /* the pass's centroid ranges */
  const S *st;          /* the pass's states, st[split n + p] */
  BoundConsts bc;
  const float *cb, *bc_max; /* per-centroid bound terms, their maximum */
  const int *xmax, *poison; /* the packing's scale of x; nonzero: no bound */
  const int32_t *in_rows;   /* NULL, or the rows whose states these are */
  const int *in_count;      /* with in_rows: their number, on the device */
  int32_t *labels;
  float *dist;
  int32_t *rows;            /* the rows left uncertain, appended */
  int *count;               /* their number */
  int cmax_lanes, defer_pairs;
  int defer_all;            /* every row with candidates is listed, b2 -1 for one,
                               and none of their dot products computed; but with
                               order on, a row with one candidate whose code has
                               one or two chains is decided here in that order */
  fkm_blas_view order;
  int32_t *pairs;           /* defer_pairs, defer_all: (row, b1, b2) triples */
  int *pair_count;
  int64_t ws;               /* a batch (grid.y a problem): its scratch's stride, bytes */
  const uint16_t *xp;       /* non-NULL: x packed (fp16 of x 2^sx), exact where sx >= 0: */
  int64_t dp, xp_stride;    /* its columns; a batch's problem b at xp + b xp_stride */
};

/* Rows srow[0 .. CERT_THREADS) of x, dimensions k0 .. k0 + CERT_BK, from
 * the packed copy xp (dp columns, fp16 of x 2^sx; a row -1: zeros) into xh
 * as they are: a row's CERT_BK / 8 16-byte pieces, piece u at u ^ ((r / 2)
 * % 4) (a warp's reads of its 32 rows' piece u, and its stores, take the
 * fewest wavefronts). Half the shared bytes of float rows; each value is
 * widened where it is used (xh_value). */
constexpr int CERT_XH = CERT_BK / 8; /* 16-byte pieces of fp16 a row and stage */
static_assert(CERT_XH == 4, "four pieces a row: the swizzle (r / 2) % 4");
__device__ __forceinline__ int xh_slot(int r, int u) { return u ^ ((r >> 1) & 3); }
__device__ __forceinline__ void stage_from_packed(uint4 (&xh)[CERT_THREADS][CERT_XH],
                                                  const int64_t (&srow)[CERT_THREADS],
                                                  const uint16_t *xp, int64_t dp, int64_t k0) {
  uint4 w[CERT_XH]; /* every load in flight before the stores */
#pragma unroll
  for (int i = 0; i < CERT_XH; i++) {
    const int e = (int)threadIdx.x + i * CERT_THREADS, r = e / CERT_XH;
    w[i] = srow[r] >= 0 ? __ldg(reinterpret_cast<const uint4 *>(
                              xp + packed_at(srow[r], k0 + e % CERT_XH * 8, dp)))
                        : make_uint4(0u, 0u, 0u, 0u);
  }
#pragma unroll
  for (int i = 0; i < CERT_XH; i++) {
    const int e = (int)threadIdx.x + i * CERT_THREADS, r = e / CERT_XH;
    xh[r][xh_slot(r, e % CERT_XH)] = w[i];
  }
}
/* Value h (0..7) of a piece: fp16 of x 2^sx times 2^-sx, x's own value
 * where the packing was exact (fp16 source rows, sx >= 0). */
__device__ __forceinline__ float xh_value(const uint4 &w, int h, int sx) {
  const uint32_t q = h < 2 ? w.x : h < 4 ? w.y : h < 6 ? w.z : w.w;
  return ldexpf(__half2float(__ushort_as_half((uint16_t)(q >> (16 * (h % 2))))), -sx);
}
/* cert_staged's chain over a point staged in xh (row `row`'s pieces). */
__device__ __forceinline__ float cert_staged_h(float ip, const uint4 (&xr)[CERT_XH],
                                               const float4 (&cr)[CERT_BK / 4], int row, int sx) {
#pragma unroll
  for (int u = 0; u < CERT_XH; u++) {
    const uint4 w = xr[xh_slot(row, u)];
#pragma unroll
    for (int v = 0; v < 2; v++) {
      const float4 c = cr[(2 * u + v) ^ (row & 7)];
      ip = fmaf(xh_value(w, 4 * v, sx), c.x, ip);
      ip = fmaf(xh_value(w, 4 * v + 1, sx), c.y, ip);
      ip = fmaf(xh_value(w, 4 * v + 2, sx), c.z, ip);
      ip = fmaf(xh_value(w, 4 * v + 3, sx), c.w, ip);
    }
  }
  return ip;
}

template <bool L2, bool VEC, class S>
__global__ void __launch_bounds__(CERT_THREADS, 4) certify(const CertifyArgs<S> a) {
  /* A pointer loaded from a struct is not a restrict kernel parameter to
   * the compiler: read-only values are read through __ldg. Problem b =
   * blockIdx.y of a batch: its n rows of x, xn, labels and distances, its k
   * centroids, its scale, and its states, bound terms, lists and counts in
   * its scratch, b a.ws bytes further (pointers, not a copy of a: a local
   * struct would live in local memory). */
  const int64_t b = blockIdx.y;
  const float *const x = a.x + b * a.n * a.d, *const c = a.c + b * a.k * a.d;
  const float *const xn = a.xn + b * a.n, *const cn = a.cn + b * a.k;
  int32_t *const labels = a.labels + b * a.n;
  float *const dist = a.dist + b * a.n;
  const int *const xmax = a.xmax + b;
  const S *const st = fkm_bytes_on(a.st, b, a.ws);
  const float *const cb = fkm_bytes_on(a.cb, b, a.ws);
  const float *const bc_max = fkm_bytes_on(a.bc_max, b, a.ws);
  const int *const poison = fkm_bytes_on(a.poison, b, a.ws);
  const int32_t *const in_rows = fkm_bytes_on(a.in_rows, b, a.ws);
  const int *const in_count = fkm_bytes_on(a.in_count, b, a.ws);
  int32_t *const rows = fkm_bytes_on(a.rows, b, a.ws);
  int32_t *const pairs = fkm_bytes_on(a.pairs, b, a.ws);
  int *const count = fkm_bytes_on(a.count, b, a.ws);
  int *const pair_count = fkm_bytes_on(a.pair_count, b, a.ws);
  const int64_t d = a.d, ksplit = a.ksplit, n = in_count ? __ldg(in_count) : a.n;
  /* x's rows from the packed copy where it holds them exactly (half the
   * bytes of the float rows) */
  const int sxm = scale_exp(__ldg(xmax)); /* the packing's power of two */
  const int sx = a.xp ? sxm : -1;
  const uint16_t *const xp = sx >= 0 ? a.xp + b * a.xp_stride : nullptr;
  __shared__ float xs[CERT_THREADS][CERT_BK + 1];
  __shared__ uint4 xh[CERT_THREADS][CERT_XH]; /* a stage from the packed copy */
  /* the first candidates' stages (16-byte rows: coalesced loads, a
   * candidate's 128 bytes by eight threads, instead of a thread's sixteen
   * bytes from each of 32 lines a warp's load) */
  __shared__ float4 cs[CERT_THREADS][CERT_BK / 4];
  __shared__ int64_t srow[CERT_THREADS]; /* the block's rows of x, -1 past n */
  __shared__ int32_t scand[CERT_THREADS]; /* their staged candidates, -1: none */
  /* blocks stride over the points (the pass over the rows the screen left
   * launches a few blocks for a count known only on the device) */
  for (int64_t m0 = (int64_t)blockIdx.x * CERT_THREADS; m0 < n;
       m0 += (int64_t)gridDim.x * CERT_THREADS) {
    const int64_t p = m0 + threadIdx.x;
    const int64_t row = p < n ? (in_rows ? __ldg(in_rows + p) : p) : -1;
    srow[threadIdx.x] = row;
    int ncand = 0, b1 = -1, b2 = -1; /* 0: uncertain, 1: b1, 2: b1 and b2 */
    if (p < n) {
      S t;
      state_init(t);
      for (int64_t s = 0; s < ksplit; s++) state_merge(t, state_ldg(st + s * n + p));
      if (__ldg(poison) == 0) {
        /* B(x) = beta X + BC + eta, rounded up */
        const float v = __ldg(xn + row), up = 1.0f + 0x1p-20f;
        const float bx = __fadd_ru(__fadd_ru(__fmul_ru(__fmul_ru(a.bc.beta, v), up), a.bc.eta),
                                  __ldg(bc_max));
        ncand = candidates(t, point_a(a.bc, v, sxm), bx, cb, b1, b2);
      }
    }
    BlasChain chain; /* a row decided here in a BLAS's order (defer_all, order on) */
    bool inplace = false;
    if (a.defer_all) { /* the caller computes the candidates (uniform branch) */
      if (p < n && ncand == 1 && a.order.on) {
        const int32_t *sg;
        const uint8_t code = fkm_blas_view_code(a.order, row, b1, a.k, &sg);
        if (code && fkm_blas_code_lanes(code) <= 2) {
          inplace = true;
          chain.begin(code, sg);
        }
      }
      if (p < n && !inplace) {
        if (ncand) {
          const int slot = atomicAdd(pair_count, 1);
          pairs[3 * slot] = (int32_t)row;
          pairs[3 * slot + 1] = b1;
          pairs[3 * slot + 2] = ncand == 2 ? b2 : -1;
          if (ncand == 2) atomicAdd(pair_count + 1, 1); /* the near-ties */
        } else {
          rows[atomicAdd(count, 1)] = (int32_t)row;
        }
      }
      if (!a.order.on) continue;
    }
    float ip1 = 0.0f, ip2 = 0.0f;
    const bool own = !a.defer_all; /* the candidates in flashkm's order */
    scand[threadIdx.x] = ncand && own ? b1 : -1;
    const float *c1 = (ncand && own) || inplace ? c + (int64_t)b1 * d : c;
    const float *c2 = ncand == 2 && own ? c + (int64_t)b2 * d : c;
    for (int64_t k0 = 0; k0 < d; k0 += CERT_BK) {
      const int kmax = (int)(d - k0 < CERT_BK ? d - k0 : CERT_BK);
      const bool staged = VEC && kmax == CERT_BK; /* the first candidates through cs */
      __syncthreads();
      float4 cv[CERT_BK / 4]; /* loaded, then stored before x's stage is loaded */
      if (staged) {
#pragma unroll
        for (int i = 0; i < CERT_BK / 4; i++) {
          const int e = (int)threadIdx.x + i * CERT_THREADS, r = e / (CERT_BK / 4);
          const int32_t cb1 = scand[r];
          cv[i] = cb1 >= 0 ? __ldg(reinterpret_cast<const float4 *>(c + (int64_t)cb1 * d + k0) +
                                   e % (CERT_BK / 4))
                           : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
#pragma unroll
        for (int i = 0; i < CERT_BK / 4; i++) {
          const int e = (int)threadIdx.x + i * CERT_THREADS, r = e / (CERT_BK / 4);
          cs[r][(e % (CERT_BK / 4)) ^ (r & 7)] = cv[i];
        }
      }
      const bool in_xh = xp && kmax == CERT_BK; /* the stage in xh */
      if (in_xh) {
        stage_from_packed(xh, srow, xp, a.dp, k0);
      } else if (staged) {
        constexpr int Q = CERT_BK / 4; /* float4 per row and stage */
        float4 v[Q]; /* CERT_THREADS rows x Q float4 = Q per thread */
#pragma unroll
        for (int i = 0; i < CERT_BK / 4; i++) {
          const int e = (int)threadIdx.x + i * CERT_THREADS, r = e / Q;
          const float4 *xr = reinterpret_cast<const float4 *>(x + srow[r] * d + k0);
          v[i] = srow[r] >= 0 ? __ldg(xr + e % Q) : make_float4(0.0f, 0.0f, 0.0f, 0.0f);
        }
#pragma unroll
        for (int i = 0; i < CERT_BK / 4; i++) {
          const int e = (int)threadIdx.x + i * CERT_THREADS, r = e / Q, col = e % Q * 4;
          xs[r][col] = v[i].x, xs[r][col + 1] = v[i].y, xs[r][col + 2] = v[i].z,
          xs[r][col + 3] = v[i].w;
        }
      } else {
        for (int e = threadIdx.x; e < CERT_THREADS * CERT_BK; e += CERT_THREADS) {
          const int r = e / CERT_BK, col = e % CERT_BK;
          xs[r][col] = srow[r] >= 0 && col < kmax ? __ldg(x + srow[r] * d + k0 + col) : 0.0f;
        }
      }
      __syncthreads();
      /* a point whose chains read xs (a BLAS's order, a second candidate,
       * a candidate read from L1/L2) widens its own row of xh into its own
       * row of xs */
      if (in_xh && (inplace || (own && ncand && (ncand == 2 || !staged)))) {
#pragma unroll
        for (int u = 0; u < CERT_XH; u++) {
          const uint4 w = xh[threadIdx.x][xh_slot((int)threadIdx.x, u)];
#pragma unroll
          for (int h = 0; h < 8; h++) xs[threadIdx.x][8 * u + h] = xh_value(w, h, sx);
        }
      }
      if (inplace)
        for (int j = 0; j < kmax; j++) chain.add(k0 + j, xs[threadIdx.x][j], __ldg(c1 + k0 + j));
      if (ncand && own)
        ip1 = staged && in_xh
                  ? cert_staged_h(ip1, xh[threadIdx.x], cs[threadIdx.x], (int)threadIdx.x, sx)
              : staged ? cert_staged(ip1, xs[threadIdx.x], cs[threadIdx.x], (int)threadIdx.x)
                       : cert_chunk<VEC>(ip1, xs[threadIdx.x], c1 + k0, kmax);
      if (ncand == 2 && own) ip2 = cert_chunk<VEC>(ip2, xs[threadIdx.x], c2 + k0, kmax);
    }
    if (p >= n) continue;
    if (a.defer_all) { /* listed above, or one candidate decided here */
      if (!inplace) continue;
      ip1 = chain.finish();
    }
    if (ncand == 2 && a.defer_pairs) {
      const int slot = atomicAdd(pair_count, 1);
      pairs[3 * slot] = (int32_t)row;
      pairs[3 * slot + 1] = b1;
      pairs[3 * slot + 2] = b2;
      continue;
    }
    if (L2 && ncand == 1 && a.cmax_lanes) {
      const fkm_top1 r = fkm_cmax_certified(b1, ip1, __ldg(cn + b1), __ldg(xn + row),
                                                 a.k, a.cmax_lanes);
      labels[row] = (int32_t)r.idx;
      dist[row] = r.dis;
      continue;
    }
    float v1 = ip1, v2 = ip2;
    if (L2 && ncand) {
      v1 = __fsub_rn(__fadd_rn(__ldg(xn + row), __ldg(cn + b1)), __fadd_rn(ip1, ip1));
      if (v1 < 0.0f) v1 = 0.0f;
      if (ncand == 2) {
        v2 = __fsub_rn(__fadd_rn(__ldg(xn + row), __ldg(cn + b2)), __fadd_rn(ip2, ip2));
        if (v2 < 0.0f) v2 = 0.0f;
      }
    }
    int label = b1;
    float dis = v1;
    if (ncand == 2) {
      if (v1 != v1 || v2 != v2) {
        ncand = 0; /* cannot happen within the proof's assumptions: recompute */
      } else if (better<L2>(v2, v1) || (v2 == v1 && b2 < b1)) {
        label = b2;
        dis = v2;
      }
    }
    if (ncand) {
      labels[row] = label;
      dist[row] = dis;
    } else {
      rows[atomicAdd(count, 1)] = (int32_t)row;
    }
  }
}

}  // namespace

#endif
