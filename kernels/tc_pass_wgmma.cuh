/* The tensor-core pass on Hopper's asynchronous wgmma (sm_90a; included by
 * kernels/assign.cu). */
#ifndef FKM_KERNELS_TC_PASS_WGMMA_CUH
#define FKM_KERNELS_TC_PASS_WGMMA_CUH

namespace {

/* ------------------------------------------------ Hopper: the passes on wgmma
 *
 * assign_wgmma computes what assign_mma computes (the same per-pair values g
 * and h up to the order in which the tensor cores add the exact fp16
 * products, which the proof's model of the fp32 accumulation covers; the
 * same states, pushed in the same order) with sm_90a's asynchronous
 * warpgroup MMA.
 *
 * Work items are (WG_ROWS = 256 points, centroid range) pairs, item = row
 * group * ksplit + range; block b takes items b, b + gridDim.x, ... (a
 * persistent grid of one block per multiprocessor, or one block per item).
 * Block: WG_CWG = 4 consumer warpgroups (warps 0-15) and a producer
 * warpgroup (warps 16-19, one thread of which works); 96 registers per
 * thread at launch, then 24 for the producer and 112 for the consumers
 * (setmaxnreg; at 96 the consumers' loop spilled: 1M x 1024 parity went
 * from 2.04 to 1.84 ms per iteration on an H100).
 * Consumer warpgroup w owns points m0 + 64 w .. +64 of the item; each of its
 * warps owns 16 of them (lane = 4 g + t: rows g and g + 8) and, per tile,
 * all 128 centroids: wgmma m64n128k16 leaves (row g or g + 8, column
 * 8 i + 2 t + j) in d[4 i + 2 h + j], the m16n8 fragment of mma.sync per 8
 * columns, so the same pushes apply; a thread pushes its 32 columns per
 * tile in increasing order and the quads merge at the end of the item (no
 * cross-warp merge: a warp sees every centroid of its rows).
 * Each warpgroup has one set of accumulators: it issues a tile's MMAs,
 * waits for them, and pushes; the four warpgroups drift apart, so that the
 * tensor cores serve one while the others push (measured against two
 * warpgroups with double-buffered accumulators: 2-3% faster, and simpler).
 * Operands come from shared memory through matrix descriptors (K-major,
 * 128-byte swizzle: exactly the packed tile layout, see packed_at). An
 * item's x rows (two packed row blocks of dp / 64 tiles; the last item may
 * have one) are resident in one of two buffers (the next item's rows load
 * while this one computes, issued as soon as the ring shows the item
 * before done with their buffer; one buffer, and a deeper ring, where the
 * grid has a block per item); centroid chunks stream through a ring of nslots
 * 16 KB slots (two tiles), each filled by one bulk copy (cp.async.bulk)
 * with, on a tile's first chunk, the tile's 128 centroid constants (2 KB,
 * into the tile's constant slot); the tile's copies complete on one "full"
 * mbarrier, and its slots go back through one "empty" mbarrier, one
 * arrival a consumer warp once the tile's pushes are done.
 * STREAM (dp > 128: an item's rows no longer fit): each of WG_STREAM_SLOTS
 * slots holds a centroid chunk and the item's x chunk of the same 64
 * dimensions (48 KB); a warpgroup issues a chunk's MMAs once its slot is
 * full (a fence and a commit group per chunk, at most two in flight) and
 * hands the slot back once they completed; the constants come from global
 * memory (they stay in L1). The item's x chunks are then read once per
 * centroid tile: the plan cuts the centroids into ranges
 * (fkm_assign_plan_wgmma) so that the blocks running at once share a few
 * row groups whose x stays in L2 (measured at 1M x 1024, d = 768: one range
 * read x from DRAM once per tile, and the assignment took 3.97 ms instead
 * of 2.56). */
constexpr int WG_CWG = 4;                 /* consumer warpgroups */
constexpr int WG_ROWS = 64 * WG_CWG;      /* rows per item */
constexpr int WG_RB = WG_ROWS / MBM;      /* packed 128-row blocks per item */
constexpr int WG_THREADS = 128 * (WG_CWG + 1); /* + the producer warpgroup */
constexpr int WG_SLOTS_MAX = 8;
constexpr int WG_MAX_CHUNKS = 2;          /* dp <= 128: x rows resident */
constexpr int WG_STREAM_SLOTS = 4;        /* beyond: slots of a centroid and an x chunk */
/* ring slots: two tiles (a tile is dp / 64 slots), eight where d <= 64;
 * a block of one item (xbufs 1: no second x buffer) takes eight slots at
 * d <= 128 too (four tiles: the warpgroups, which all wait for the same
 * tile's slots, may drift further apart) */
__host__ __device__ constexpr int wg_slots(int nkc, int xbufs = 2) {
  return nkc == 1 || xbufs == 1 ? 8 : 4;
}
/* x buffers of a block: two where it takes further items (the next one's
 * rows load while one computes), one where the grid has a block per item */
__host__ __device__ constexpr int wg_xbufs(int64_t blocks, int64_t items) {
  return blocks >= items ? 1 : 2;
}
/* Registers per thread: 96 at launch (five warps per SM sub-partition),
 * then the producer warpgroup gives 72 of its own back and the consumer
 * warps take 16 more (4 x 16 <= 72 per sub-partition: setmaxnreg.inc waits
 * for registers the block released, 120 would wait forever); at 96 the
 * screen's loop spilled. */
constexpr int WG_PRODUCER_REGS = 24, WG_CONSUMER_REGS = 112;
static_assert(4 * (WG_CONSUMER_REGS - 96) <= 96 - WG_PRODUCER_REGS, "the registers released");
static_assert(WG_ROWS % MBM == 0, "an item is whole packed row blocks");
static_assert(wg_slots(1) <= WG_SLOTS_MAX && wg_slots(2) <= WG_SLOTS_MAX &&
                  wg_slots(2, 1) <= WG_SLOTS_MAX,
              "barrier arrays");

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
/* Matrix descriptor of a K-major operand in the 128-byte swizzle: rows of
 * 128 bytes, groups of 8 rows 1024 bytes apart (the stride byte offset), the
 * leading byte offset unused for this layout (1 by convention); bits 62-63
 * = 1: 128-byte swizzle. The address must sit on a 1024-byte boundary plus
 * a multiple of 32 bytes inside the first row (one k16 step per 32 bytes). */
__device__ __forceinline__ uint64_t sw128_desc(const void *p) {
  return (uint64_t)((smem_addr(p) & 0x3FFFFu) >> 4) | ((uint64_t)1 << 16) |
         ((uint64_t)(1024 >> 4) << 32) | ((uint64_t)1 << 62);
}

/* Registers move from the producer warpgroup to the consumers. */
template <int R> __device__ __forceinline__ void setmaxnreg_dec() {
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R> __device__ __forceinline__ void setmaxnreg_inc() {
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
__device__ __forceinline__ void wg_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wg_commit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
template <int N> __device__ __forceinline__ void wg_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
/* Keeps the compiler from moving accesses of the accumulators across the
 * wgmma fences and waits. */
__device__ __forceinline__ void acc_fence(float (&d)[64]) {
#pragma unroll
  for (int i = 0; i < 64; i++) asm volatile("" : "+f"(d[i])::"memory");
}

/* d (+)= A B^T for a 64 x 16 slice of x and a 128 x 16 slice of centroids;
 * scale_d 0 overwrites d. TYPE: the operand type of the instruction. */
#define FKM_WGMMA_128(TYPE)                                                        \
  asm volatile("{\n .reg .pred p;\n setp.ne.b32 p, %66, 0;\n"                    \
               "wgmma.mma_async.sync.aligned.m64n128k16.f32." TYPE "." TYPE " {"    \
               "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, " \
               "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, " \
               "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, " \
               "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, " \
               "%64, %65, p, 1, 1, 0, 0;\n}\n"                                     \
               : FKM_WGMMA_D(d)                                                    \
               : "l"(da), "l"(db), "r"(scale_d))
#define FKM_WGMMA_D(d) \
  "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
  "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
  "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
  "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
  "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
  "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
  "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
  "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
template <typename T>
__device__ __forceinline__ void wgmma_128(float (&d)[64], uint64_t da, uint64_t db, int scale_d) {
  if constexpr (std::is_same<T, __half>::value)
    FKM_WGMMA_128("f16");
  else
    FKM_WGMMA_128("bf16");
}
#undef FKM_WGMMA_128
#undef FKM_WGMMA_D
#endif

/* Where a warpgroup stands in its block's sequence of (item, tile). */
struct WgTile {
  int64_t m0, kb, n0; /* item rows, range start, tile's first centroid */
  int item_i;             /* ordinal of the item in this block's sequence */
  int j, nt;              /* tile within the item, tiles of the item */
};

/* NKC: the packed row's 64-dimension chunks where the item's rows are
 * resident (1 or 2: the tile loops unroll, slot / nkc is a shift, and the
 * last wgmma of a tile carries its commit; with a chunk count known only at
 * run time ptxas added a wgmma of its own before each wait, ncu results
 * v50); 0: STREAM, the chunk count dp / MBK. */
template <typename T, class S, int NKC>
__global__ void __launch_bounds__(WG_THREADS, 1)
assign_wgmma(const TcPassArgs<S> a) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  constexpr bool STREAM = NKC == 0;
  extern __shared__ uint8_t wg_raw[];
  FKM_TC_PASS_BIND(a); /* n: the gathered rows' count where rows (see assign_mma) */
  __shared__ uint64_t full[WG_SLOTS_MAX], empty[WG_SLOTS_MAX], xfull[2], xempty[2];
  const int nkc = STREAM ? (int)(dp / MBK) : NKC;
  uint16_t *xs = reinterpret_cast<uint16_t *>(
      wg_raw + ((1024u - (smem_addr(wg_raw) & 1023u)) & 1023u)); /* xbufs x WG_RB x nkc tiles */
  uint16_t *ring = xs + (STREAM ? 0 : xbufs * WG_RB * nkc * TILE); /* nslots slots */
  float4 *ccs = reinterpret_cast<float4 *>(ring + nslots * TILE); /* nslots / nkc x MBN */
  constexpr int SLOT = STREAM ? (1 + WG_RB) * TILE : TILE;       /* a slot's elements */
  /* the warp index through a shuffle: provably warp-uniform for ptxas, which
   * otherwise serialises the wgmma of a possibly divergent path */
  const int tid = threadIdx.x, lane = tid & 31;
  const int warp = __shfl_sync(0xffffffffu, tid >> 5, 0);
  const int64_t items = (n + WG_ROWS - 1) / WG_ROWS * ksplit;
  /* (item, tile) cursor: false past the block's last item */
  auto start_item = [&](WgTile &c, int64_t item, int item_i) {
    if (item >= items) return false;
    c.m0 = item / ksplit * WG_ROWS;
    c.kb = item % ksplit * k_per_split;
    const int64_t ke = c.kb + k_per_split < k ? c.kb + k_per_split : k;
    c.nt = (int)((ke - c.kb + MBN - 1) / MBN);
    c.item_i = item_i;
    c.j = 0;
    c.n0 = c.kb;
    return true;
  };
  auto advance = [&](WgTile &c) {
    if (++c.j < c.nt) {
      c.n0 += MBN;
      return true;
    }
    return start_item(c, (int64_t)blockIdx.x + (int64_t)(c.item_i + 1) * gridDim.x,
                      c.item_i + 1);
  };

  /* consumers hand slots and x buffers back with one arrival a warp, once
   * its lanes have converged (__syncwarp orders their reads before it, and
   * the arrival orders them before the refill the producer issues) */
  constexpr unsigned consumer_warps = 4 * WG_CWG;
  auto warp_arrive = [&](uint64_t *b) {
    __syncwarp();
    if (lane == 0) mbar_arrive(b);
  };
  if (tid == 0) {
    for (int i = 0; i < nslots; i++) mbar_init(&full[i], 1), mbar_init(&empty[i], consumer_warps);
    for (int i = 0; i < 2 && !STREAM; i++)
      mbar_init(&xfull[i], 1), mbar_init(&xempty[i], consumer_warps);
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (warp >= (int)consumer_warps) { /* the producer */
    setmaxnreg_dec<WG_PRODUCER_REGS>();
    if (warp != (int)consumer_warps || lane != 0) return;
    /* the item's packed row blocks that exist (the last may be short) */
    auto row_blocks = [&](int64_t m0) {
      return (int)((n - m0 + MBM - 1) / MBM < WG_RB ? (n - m0 + MBM - 1) / MBM : WG_RB);
    };
    /* an item's x rows into their buffer, once the item two before is done
     * with it */
    auto load_rows = [&](int64_t m0, int item_i) {
      const int buf = item_i & 1, rbs = row_blocks(m0);
      if (item_i >= 2) mbar_wait(&xempty[buf], (unsigned)((item_i >> 1) - 1) & 1u);
      mbar_expect_tx(&xfull[buf], (unsigned)(rbs * nkc * TILE * 2));
      for (int rb = 0; rb < rbs; rb++)
        for (int kc = 0; kc < nkc; kc++)
          bulk_load(xs + ((buf * WG_RB + rb) * nkc + kc) * TILE,
                    xp + (m0 + rb * MBM) * dp + kc * TILE, TILE * 2, &xfull[buf]);
    };
    WgTile c;
    int slot = 0, round = 0;
    bool more = start_item(c, blockIdx.x, 0);
    if (!STREAM && more) load_rows(c.m0, 0);
    while (more) {
      const int rbs = STREAM ? row_blocks(c.m0) : 0;
      const int64_t item_i = c.item_i;
      do { /* the item's tiles, chunk by chunk */
        const uint16_t *src = cp + c.n0 * dp;
        for (int kc = 0; kc < nkc; kc++) {
          uint16_t *sl = ring + slot * SLOT;
          if (STREAM) { /* the centroid chunk and the item's x chunk */
            if (round > 0) mbar_wait(&empty[slot], (unsigned)(round - 1) & 1u);
            mbar_expect_tx(&full[slot], (unsigned)((1 + rbs) * TILE * 2));
            bulk_load(sl, src + kc * TILE, TILE * 2, &full[slot]);
            for (int rb = 0; rb < rbs; rb++)
              bulk_load(sl + (1 + rb) * TILE, xp + (c.m0 + rb * MBM) * dp + kc * TILE,
                        TILE * 2, &full[slot]);
          } else { /* one full and one empty barrier a tile (slot / nkc) */
            const int ts = slot / nkc;
            if (kc == 0) {
              if (round > 0) mbar_wait(&empty[ts], (unsigned)(round - 1) & 1u);
              mbar_expect_tx(&full[ts], (unsigned)(nkc * TILE * 2 + MBN * 16));
              bulk_load(ccs + ts * MBN, cc + c.n0, MBN * 16, &full[ts]);
            }
            bulk_load(sl, src + kc * TILE, TILE * 2, &full[ts]);
          }
          if (++slot == nslots) slot = 0, round++;
        }
        /* the next item's rows, as soon as their buffer's wait is free:
         * tile j = nslots / nkc - 1 of this item waited for the slots of
         * the item before's last tile, handed back after its last MMA and
         * so after its x buffer (or, in a shorter item, after its last
         * tile, the order of old) */
        if (!STREAM && c.j == (c.nt < nslots / nkc ? c.nt : nslots / nkc) - 1) {
          const int64_t next = (int64_t)blockIdx.x + (int64_t)(c.item_i + 1) * gridDim.x;
          if (next < items) load_rows(next / ksplit * WG_ROWS, c.item_i + 1);
        }
        more = advance(c);
      } while (more && c.item_i == item_i);
    }
    return;
  }

  setmaxnreg_inc<WG_CONSUMER_REGS>();
  const int wg = warp >> 2, g = lane >> 2, t = lane & 3;
  const int rbase = wg * 64 + (warp & 3) * 16 + g; /* rows rbase, rbase + 8 of an item */
  const int sx = uses_bound<S>() ? scale_exp(__ldg(xmax)) : 0;
  S st2[2];
  float pa[2];
  float acc[64];
  int slot = 0, round = 0; /* this warpgroup's position in the ring */
  WgTile c;
  for (bool more = start_item(c, blockIdx.x, 0); more; more = advance(c)) {
    const int buf = c.item_i & 1;
    if (c.j == 0) {
      if (!STREAM) mbar_wait(&xfull[buf], (unsigned)(c.item_i >> 1) & 1u);
#pragma unroll
      for (int h = 0; h < 2; h++) {
        state_init(st2[h]);
        const int64_t p = c.m0 + rbase + 8 * h;
        pa[h] = row_a<S>(bc, xn, rows, p, n, sx);
      }
    }
    /* Every warpgroup computes every tile, also one whose rows lie past n
     * in the last item (its results are not stored; where its packed row
     * block was not loaded it reads the buffer's older rows). */
    const int slot0 = slot;
    if (STREAM) {
      /* chunk by chunk: a chunk's MMAs are issued once its slot is full and
       * its slot is handed back once they completed, while the next
       * chunk's run (a fence and a commit group per chunk, at most two
       * groups in flight) */
      int prev = 0;
      for (int kc = 0; kc < nkc; kc++) {
        mbar_wait(&full[slot], (unsigned)round & 1u);
        wg_fence();
        acc_fence(acc);
        const uint16_t *sl = ring + slot * SLOT;
        const uint64_t da = sw128_desc(sl + (1 + wg / 2) * TILE + (wg % 2) * 64 * MBK);
        const uint64_t db = sw128_desc(sl);
#pragma unroll
        for (int ks = 0; ks < MBK / 16; ks++) wgmma_128<T>(acc, da + 2 * ks, db + 2 * ks, kc | ks);
        wg_commit();
        if (kc > 0) {
          wg_wait<1>();
          acc_fence(acc);
          warp_arrive(&empty[prev]);
        }
        prev = slot;
        if (++slot == nslots) slot = 0, round++;
      }
      wg_wait<0>();
      acc_fence(acc);
      warp_arrive(&empty[prev]);
    } else {
      /* all of the tile's chunks arrive before the first wgmma (one
       * barrier): a wait (a retry loop) between the fence and the MMAs
       * makes ptxas serialise them (C7520) */
      mbar_wait(&full[slot / nkc], (unsigned)round & 1u);
      if ((slot += nkc) == nslots) slot = 0, round++;
      wg_fence();
      const uint64_t da0 =
          sw128_desc(xs + (buf * WG_RB + wg / 2) * nkc * TILE + (wg % 2) * 64 * MBK);
      for (int kc = 0, sl = slot0; kc < nkc; kc++) {
        const uint64_t da = da0 + (uint64_t)((kc * TILE * 2) >> 4);
        const uint64_t db = sw128_desc(ring + sl * TILE);
#pragma unroll
        for (int ks = 0; ks < MBK / 16; ks++) wgmma_128<T>(acc, da + 2 * ks, db + 2 * ks, kc | ks);
        if (++sl == nslots) sl = 0;
      }
      wg_commit();
      wg_wait<0>();
      acc_fence(acc);
    }
    /* the item's last wgmma completed: its x buffer may be refilled */
    if (!STREAM && c.j == c.nt - 1) warp_arrive(&xempty[buf]);
    {
      /* the tile's constants (STREAM: from global memory, where they stay
       * in L1); columns past ke are padding (value +inf) */
      const float4 *ccp = (STREAM ? cc + c.n0 : ccs + slot0 / nkc * MBN) + 2 * t;
      const int qb = (int)c.n0 + 2 * t;
      /* Arg and Top2 are pushed the column within the tile (an immediate
       * operand), the tile's base added once where the tile moved their
       * index (tile_end) */
      constexpr bool local = local_columns<S>();
      int kept[2];
#pragma unroll
      for (int h = 0; h < 2; h++) kept[h] = tile_begin(st2[h]);
#pragma unroll
      for (int i = 0; i < 16; i++)
#pragma unroll
        for (int jj = 0; jj < 2; jj++) {
          const float4 cq = STREAM ? __ldg(ccp + 8 * i + jj) : ccp[8 * i + jj];
#pragma unroll
          for (int h = 0; h < 2; h++)
            state_push(st2[h], acc[4 * i + 2 * h + jj], cq, pa[h], (local ? 0 : qb) + 8 * i + jj);
        }
#pragma unroll
      for (int h = 0; h < 2; h++) tile_end(st2[h], kept[h], qb);
    }
    /* the tile's slots (and constants) are free */
    if (!STREAM) warp_arrive(&empty[slot0 / nkc]);
    if (c.j != c.nt - 1) continue;
#pragma unroll
    for (int h = 0; h < 2; h++) {
      merge_quad(st2[h]);
      const int64_t p = c.m0 + rbase + 8 * h;
      if (t == 0 && p < n) st[c.kb / k_per_split * n + p] = st2[h];
    }
  }
#else
  (void)a;
#endif
}

/* 1 in a build whose code for this device has the wgmma kernels (sm_90a). */
__global__ void wgmma_probe(int *out) {
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
  *out = 1;
#else
  *out = 0;
#endif
}

}  // namespace

#endif
