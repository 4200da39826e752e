/* The tensor-core pass on mma.sync m16n8k16 (sm_80 and the mma path of
 * Hopper; included by kernels/assign.cu), with the per-point states of the
 * FAST and screen passes (Arg, Top2) that both passes share. */
#ifndef FKM_KERNELS_TC_PASS_MMA_CUH
#define FKM_KERNELS_TC_PASS_MMA_CUH

namespace {

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const uint16_t *smem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(s)
               : "memory");
}

template <typename T>
__device__ __forceinline__ void mma_16(float (&acc)[4], const uint32_t (&a)[4],
                                       const uint32_t (&b)[2]) {
  if constexpr (std::is_same<T, __half>::value)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, "
        "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, "
        "{%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(acc[0]), "+f"(acc[1]), "+f"(acc[2]), "+f"(acc[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

/* cp.async of one packed 128 x 64 tile (16 KB, contiguous, already in its
 * shared-memory order) to dst. */
__device__ __forceinline__ void load_tile(uint16_t *dst, const uint16_t *src, int tid) {
#pragma unroll
  for (int i = 0; i < TILE / 8 / MMA_THREADS; i++) {
    const int e = (tid + i * MMA_THREADS) * 8;
    cp_async16(dst + e, src + e);
  }
}

/* The per-point states of the tensor-core passes, one type per pass; each
 * has init, push (one (point, centroid) value, in increasing centroid order
 * within a thread), merge (disjoint centroid sets) and a lane shuffle.
 *  - Arg, the FAST pass: the strict argmin of g.
 *  - Top2, the parity screen: the two least keyed values of h and the index
 *    of the least. A key is h with its five low bits replaced by the
 *    column's slot among the thread's columns of the tile (at most 32), so
 *    that three min/max keep the two least keys and the least one names its
 *    column (docs/certification.md section 1: a key is within 2^-18 |key| +
 *    2^-144 of h); the index is decoded once a tile, where the least key
 *    changed. Per pair two fused operations on the FMA pipe and four ALU
 *    operations (the key's bits, three min/max; Cert needs thirteen).
 *  - Cert, the parity pass on the rows the screen left (see above).
 * Arg and Top2 are pushed the column within the tile (local, 8 i + j with
 * j < 2: at most 32 a thread) between tile_begin and tile_end, which turns
 * it into the centroid's index; Cert is pushed the index itself. */
struct Arg {
  float v;
  int i;
};
struct Top2 {
  float h1, h2; /* keys (h1 the least, h2 the least of the others) */
  int b;        /* the least key's centroid; -1 when empty */
};
static_assert(sizeof(Top2) == 12, "fkm_mma_work_layout reserves 12 bytes per screen state");
static_assert(sizeof(Arg) == 8, "fkm_mma_work_layout reserves 8 bytes per FAST partial");

__device__ __forceinline__ void state_init(Arg &t) { t.v = INFINITY, t.i = -1; }
__device__ __forceinline__ void state_init(Top2 &t) { t.h1 = t.h2 = INFINITY, t.b = -1; }
__device__ __forceinline__ void state_init(Cert &t) { cert_init(t); }

/* Top2's key slot of local column q = 8 i + j (j < 2), and back. */
__host__ __device__ constexpr int top2_slot(int q) { return (q >> 2) | (q & 1); }
__device__ __forceinline__ int top2_column(int slot) { return (slot >> 1) * 8 + (slot & 1); }

/* g = fl(shift - acc factor), h = fl(g - A(x) |c|') (see the proof); the
 * screen reads its shift from cq.w (padding: finite, see pack_centroids). */
__device__ __forceinline__ void state_push(Arg &t, float acc, const float4 &cq, float, int q) {
  const float gv = fmaf(-acc, cq.y, cq.x);
  if (gv < t.v) t.v = gv, t.i = q;
}
/* The key's bits in one operation: lop3 selects the slot's bits where the
 * mask (31, held in a register: with two constants ptxas would split the
 * select into an AND and an OR) is set, h's bits elsewhere. */
__device__ __forceinline__ int top2_mask() {
  int m;
  asm volatile("mov.b32 %0, 31;" : "=r"(m));
  return m;
}
__device__ __forceinline__ float top2_key(float h, int slot, int mask) {
  int k;
  asm("lop3.b32 %0, %1, %2, %3, 0xD8;" : "=r"(k) : "r"(__float_as_int(h)), "r"(slot), "r"(mask));
  return __int_as_float(k);
}
__device__ __forceinline__ void state_push(Top2 &t, float acc, const float4 &cq, float pa, int q) {
  const float h = fmaf(-pa, cq.z, fmaf(-acc, cq.y, cq.w));
  const float key = top2_key(h, top2_slot(q), top2_mask());
  t.h2 = fminf(t.h2, fmaxf(key, t.h1));
  t.h1 = fminf(t.h1, key);
}
__device__ __forceinline__ void state_push(Cert &t, float acc, const float4 &cq, float pa, int q) {
  const float gv = fmaf(-acc, cq.y, cq.x);
  cert_push(t, gv, fmaf(-pa, cq.z, gv), q);
}

/* Arg and Top2 are pushed local columns: tile_begin returns what tile_end
 * needs to give the state its centroid index again (qb: the thread's first
 * column of the tile). */
template <class S> constexpr bool local_columns() { return !std::is_same<S, Cert>::value; }
__device__ __forceinline__ int tile_begin(Arg &t) {
  const int kept = t.i;
  t.i = -2;
  return kept;
}
__device__ __forceinline__ void tile_end(Arg &t, int kept, int qb) {
  t.i = t.i == -2 ? kept : t.i + qb;
}
__device__ __forceinline__ int tile_begin(Top2 &t) { return __float_as_int(t.h1); }
__device__ __forceinline__ void tile_end(Top2 &t, int kept, int qb) {
  const int key = __float_as_int(t.h1);
  if (key != kept) t.b = qb + top2_column(key & 31);
}
__device__ __forceinline__ int tile_begin(Cert &) { return 0; }
__device__ __forceinline__ void tile_end(Cert &, int, int) {}

__device__ __forceinline__ void state_merge(Arg &t, const Arg &o) { combine<true>(t.v, t.i, o.v, o.i); }
__device__ __forceinline__ void state_merge(Top2 &t, const Top2 &o) {
  t.h2 = fminf(fminf(t.h2, o.h2), fmaxf(t.h1, o.h1));
  if (lex_less(o.h1, o.b, t.h1, t.b)) t.h1 = o.h1, t.b = o.b;
}
__device__ __forceinline__ void state_merge(Cert &t, const Cert &o) { cert_merge(t, o); }

__device__ __forceinline__ Arg state_shfl(const Arg &t, int off) {
  return Arg{__shfl_xor_sync(0xffffffffu, t.v, off), __shfl_xor_sync(0xffffffffu, t.i, off)};
}
__device__ __forceinline__ Top2 state_shfl(const Top2 &t, int off) {
  return Top2{__shfl_xor_sync(0xffffffffu, t.h1, off), __shfl_xor_sync(0xffffffffu, t.h2, off),
              __shfl_xor_sync(0xffffffffu, t.b, off)};
}
__device__ __forceinline__ Cert state_shfl(const Cert &t, int off) { return cert_shfl(t, off); }

/* Lanes t = 0..3 of a quad hold disjoint columns of the same row. */
template <class S> __device__ __forceinline__ void merge_quad(S &s) {
#pragma unroll
  for (int off = 1; off <= 2; off *= 2) state_merge(s, state_shfl(s, off));
}

/* The FAST pass needs no bound term per point. */
template <class S> constexpr bool uses_bound() { return !std::is_same<S, Arg>::value; }

/* A(x) of the pass's row p (rows != NULL: row rows[p] of x), 0 past n or
 * where the pass keeps no bound. */
template <class S>
__device__ __forceinline__ float row_a(const BoundConsts &bc, const float *__restrict__ xn,
                                       const int32_t *__restrict__ rows, int64_t p, int64_t n,
                                       int sx) {
  return uses_bound<S>() && p < n ? point_a(bc, __ldg(xn + (rows ? __ldg(rows + p) : p)), sx)
                                   : 0.0f;
}

/* What a tensor-core pass reads and writes (assign_mma and assign_wgmma
 * take the same struct; the launch names every field). */
template <class S> struct TcPassArgs {
  const uint16_t *xp;   /* packed rows (fkm_pack_dims(d) columns) */
  const uint16_t *cp;   /* packed centroids */
  const float4 *cc;     /* per-centroid constants (pack_centroids) */
  const float *xn;      /* |x|^2 of each row of x */
  BoundConsts bc;
  const int *xmax;      /* the packing's scale of x (parity) */
  int64_t n, dp, k;     /* rows (rows != NULL: at most), packed dims, centroids */
  int64_t k_per_split, ksplit; /* centroid ranges: ksplit of k_per_split */
  int nslots, xbufs;    /* wgmma: centroid ring slots; x buffers (wg_xbufs) */
  const int32_t *rows;  /* NULL, or the gathered rows' indices into x */
  const int *count;     /* with rows: their number, on the device */
  S *st;                /* states, st[split n + p] */
  /* a batch in one launch: problem blockIdx.z's xp, cp, cc and xn are these
   * many elements further, its st, rows and count ws bytes (its scratch's
   * stride), its xmax the next word (one problem: blockIdx.z is 0) */
  int64_t xp_stride, cp_stride, cc_stride, xn_stride, ws;
};

/* The pass's values as locals named as the kernels' bodies read them (n:
 * the row count read on the device when rows are gathered). A pointer
 * loaded from a struct is not a restrict kernel parameter to the compiler:
 * the bodies read through __ldg where the values are read-only. */
#define FKM_TC_PASS_BIND(a)                                                             \
  const int64_t fkm_problem_ = (int64_t)blockIdx.z;                                    \
  const uint16_t *__restrict__ xp = (a).xp + fkm_problem_ * (a).xp_stride;              \
  const uint16_t *__restrict__ cp = (a).cp + fkm_problem_ * (a).cp_stride;              \
  const float4 *__restrict__ cc = (a).cc + fkm_problem_ * (a).cc_stride;                \
  const float *__restrict__ xn = (a).xn + fkm_problem_ * (a).xn_stride;                 \
  const int *__restrict__ xmax = fkm_bytes_on((a).xmax, fkm_problem_, sizeof(int));      \
  const int *__restrict__ count = fkm_bytes_on((a).count, fkm_problem_, (a).ws);         \
  const int32_t *__restrict__ rows = fkm_bytes_on((a).rows, fkm_problem_, (a).ws);       \
  S *__restrict__ st = fkm_bytes_on((a).st, fkm_problem_, (a).ws);                       \
  const BoundConsts bc = (a).bc;                                                        \
  const int64_t n = count ? __ldg(count) : (a).n, dp = (a).dp, k = (a).k,                     \
                k_per_split = (a).k_per_split, ksplit = (a).ksplit;                     \
  const int nslots = (a).nslots, xbufs = (a).xbufs;                                    \
  (void)ksplit, (void)nslots, (void)xbufs

/* The tensor-core passes: S = Top2 (the parity screen) or Cert (the parity
 * pass over the rows the screen left), T = __half; S = Arg (FAST), T =
 * __half or __nv_bfloat16. One state per point and split: st[split n + p].
 * rows != NULL (the parity pass after the screen): the packed rows xp are
 * the gathered rows rows[0 .. *count) and n is *count, read on the device;
 * blocks past it exit.
 * Block (blockIdx.x, blockIdx.y): MBM = 128 points, the centroid range of
 * split blockIdx.y in tiles of MBN = 128; warp w computes rows 32 (w / 2)
 * .. +32 and columns 64 (w % 2) .. +64 of each tile with m16n8k16 MMAs
 * (2 x 8 per 16 dimensions, 64 fp32 accumulators per thread), fragments
 * through ldmatrix. Dimensions stream in chunks of MBK = 64 through an
 * MSTAGES-deep cp.async pipeline; RES: the block's x rows stay in shared
 * memory for the whole launch (d <= 256), else they stream with the
 * centroids. Fragment layout (PTX ISA, m16n8k16): lane = 4 g + t; C: (g,
 * 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1). After each centroid tile
 * every thread pushes its 4 rows x 16 columns in increasing column order;
 * quads, then the two column warps, merge at the end. */
template <typename T, class S, bool RES>
__global__ void __launch_bounds__(MMA_THREADS, 2)
assign_mma(const TcPassArgs<S> a) {
  extern __shared__ __align__(128) uint16_t smem[];
  __shared__ S red[MBM];
  FKM_TC_PASS_BIND(a);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int g = lane >> 2, t = lane & 3, wm = warp >> 1, wn = warp & 1;
  const int64_t m0 = (int64_t)blockIdx.x * MBM;
  if (m0 >= n) return;
  const int64_t kb = (int64_t)blockIdx.y * k_per_split;
  const int64_t ke = kb + k_per_split < k ? kb + k_per_split : k;
  const int nkc = (int)(dp / MBK);
  const int64_t steps = (ke - kb + MBN - 1) / MBN * nkc;
  const uint16_t *xa = xp + m0 * dp;
  uint16_t *Bs = RES ? smem + nkc * TILE : smem; /* stage s: Bs + s TILE (RES) */

  /* Steps are (centroid tile, dimension chunk) pairs in order; the loader
   * and the compute loop each keep their position as counters (no 64-bit
   * division per step). */
  int ld_stg = 0, ld_kc = 0;
  const uint16_t *ld_b = cp + kb * dp; /* the loader's centroid tile */
  auto issue = [&]() {
    const uint16_t *bsrc = ld_b + ld_kc * TILE;
    if (RES) {
      load_tile(Bs + ld_stg * TILE, bsrc, tid);
    } else {
      load_tile(smem + 2 * ld_stg * TILE, xa + ld_kc * TILE, tid);
      load_tile(smem + (2 * ld_stg + 1) * TILE, bsrc, tid);
    }
    ld_stg = ld_stg + 1 == MSTAGES ? 0 : ld_stg + 1;
    if (++ld_kc == nkc) ld_kc = 0, ld_b += MBN * dp;
  };

  S st4[4]; /* rows wm*32 + (q/2)*16 + (q%2)*8 + g */
  float pa[4];
  const int sx = uses_bound<S>() ? scale_exp(__ldg(xmax)) : 0;
#pragma unroll
  for (int q = 0; q < 4; q++) {
    state_init(st4[q]);
    const int64_t p = m0 + wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g;
    pa[q] = row_a<S>(bc, xn, rows, p, n, sx);
  }
  float acc[2][8][4];
  auto zero_acc = [&]() {
#pragma unroll
    for (int mt = 0; mt < 2; mt++)
#pragma unroll
      for (int nt = 0; nt < 8; nt++)
#pragma unroll
        for (int r = 0; r < 4; r++) acc[mt][nt][r] = 0.0f;
  };
  zero_acc();

  if (RES)
    for (int kc = 0; kc < nkc; kc++) load_tile(smem + kc * TILE, xa + kc * TILE, tid);
#pragma unroll
  for (int s = 0; s < MSTAGES - 1; s++) {
    if (s < steps) issue();
    cp_async_commit();
  }
  int stg = MSTAGES - 1, kc = nkc - 1; /* advanced at the top of each step */
  int64_t n0 = kb - MBN;
  for (int64_t step = 0; step < steps; step++) {
    stg = stg + 1 == MSTAGES ? 0 : stg + 1;
    if (++kc == nkc) kc = 0, n0 += MBN;
    cp_async_wait<MSTAGES - 2>();
    __syncthreads(); /* stage stg landed; the stage refilled below is free */
    if (step + MSTAGES - 1 < steps) issue();
    cp_async_commit();
    const uint16_t *At = RES ? smem + kc * TILE : smem + 2 * stg * TILE;
    const uint16_t *Bt = RES ? Bs + stg * TILE : smem + (2 * stg + 1) * TILE;
#pragma unroll
    for (int ks = 0; ks < MBK / 16; ks++) {
      uint32_t a[2][4], b[8][2];
#pragma unroll
      for (int mt = 0; mt < 2; mt++)
        ldsm_x4(a[mt], At + swz(wm * 32 + mt * 16 + (lane & 15), ks * 2 + (lane >> 4)));
#pragma unroll
      for (int np = 0; np < 4; np++) {
        uint32_t r[4];
        ldsm_x4(r, Bt + swz(wn * 64 + np * 16 + (lane & 7) + ((lane >> 4) << 3),
                            ks * 2 + ((lane >> 3) & 1)));
        b[2 * np][0] = r[0], b[2 * np][1] = r[1], b[2 * np + 1][0] = r[2], b[2 * np + 1][1] = r[3];
      }
#pragma unroll
      for (int mt = 0; mt < 2; mt++)
#pragma unroll
        for (int nt = 0; nt < 8; nt++) mma_16<T>(acc[mt][nt], a[mt], b[nt]);
    }
    if (kc != nkc - 1) continue;

    /* columns past ke are padding (value +inf); cc is readable up to k
     * rounded up to MBN */
    const float4 *ccp = cc + n0 + wn * 64 + 2 * t;
    const int qb = (int)n0 + wn * 64 + 2 * t;
    constexpr bool local = local_columns<S>();
    int kept[4];
#pragma unroll
    for (int r = 0; r < 4; r++) kept[r] = tile_begin(st4[r]);
#pragma unroll
    for (int nt = 0; nt < 8; nt++)
#pragma unroll
      for (int j = 0; j < 2; j++) {
        const float4 cq = __ldg(ccp + nt * 8 + j);
#pragma unroll
        for (int r = 0; r < 4; r++)
          state_push(st4[r], acc[r >> 1][nt][(r & 1) * 2 + j], cq, pa[r],
                     (local ? 0 : qb) + nt * 8 + j);
      }
#pragma unroll
    for (int r = 0; r < 4; r++) tile_end(st4[r], kept[r], qb);
    zero_acc();
  }
  cp_async_wait<0>();

  /* quads (lanes t = 0..3 hold disjoint columns of the same rows), then the
   * two column warps through shared memory */
#pragma unroll
  for (int q = 0; q < 4; q++) merge_quad(st4[q]);
  if (wn == 1 && t == 0)
#pragma unroll
    for (int q = 0; q < 4; q++) red[wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g] = st4[q];
  __syncthreads();
  if (wn == 0 && t == 0)
#pragma unroll
    for (int q = 0; q < 4; q++) {
      const int row = wm * 32 + (q >> 1) * 16 + (q & 1) * 8 + g;
      const int64_t p = m0 + row;
      if (p >= n) continue;
      state_merge(st4[q], red[row]);
      st[(int64_t)blockIdx.y * n + p] = st4[q];
    }
}

}  // namespace

#endif
