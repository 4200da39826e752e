/* The certified tensor-core cascade's constants and its Cert state
 * (included by kernels/assign.cu): the tile, the operands' scale exponents,
 * the per-point state of the full certified pass. The proof:
 * docs/certification.md section 1. */
#ifndef FKM_KERNELS_TC_STATES_CUH
#define FKM_KERNELS_TC_STATES_CUH

namespace {

/* ------------------------------------------------ certified tensor-core path
 *
 * A cascade of three stages, each on the rows the one before left: the
 * screen (a tensor-core pass keeping per point the two least keys of the
 * bounded values h and the index of the least: state Top2; certify proves
 * test (1) and computes that pair's reference distance), the same pass
 * over the rows it left keeping the full state (Cert: tests (1) and (2),
 * two candidates computed exactly), and the SIMT reference kernel over the
 * rest. Labels and distances are the reference's bits either way.
 *
 * Operands: x packed once as fp16 of x 2^sx (fkm_launch_pack_x), each
 * centroid as fp16 of c 2^sc(c) (pack_centroids); the fast value of a pair is
 * g = fl(cn - acc 2^(1 - sx - sc)) (L2) or fl(-acc 2^(-sx - sc)) (IP), and
 * h = fl(g - A(x) |c|'). The bound E(x, c) <= A(x) |c| + beta (X + C) + eta3
 * with A(x) = alpha |x| + gamma 2^-sx, the tests (1) and (2), and why a
 * certified label is the reference's: docs/certification.md section 1.
 * Per pair two fused operations, five min/max or compares and eight
 * selects, no branch. */
constexpr int MBM = FKM_MMA_BM, MBN = FKM_MMA_BN, MBK = FKM_MMA_BK;
constexpr int MMA_THREADS = 256; /* 8 warps: 4 along points x 2 along centroids */
constexpr int MSTAGES = 3;       /* cp.async pipeline depth */
constexpr int TILE = FKM_TILE;   /* 16-bit elements of one 128 x 64 tile (16 KB) */
constexpr int RES_MAX_CHUNKS = 4; /* x tile resident in shared memory up to d = 256 */
static_assert(MBM == MBN, "one tile loader serves both operands");

struct Cert {
  float g1, h1, h2, h3; /* h1 <= h2 <= h3 */
  int b1, hb1, hb2;     /* -1 when empty */
};
static_assert(sizeof(Cert) == 28, "fkm_mma_work_layout reserves 28 bytes per state");

/* A state read through the read-only data path, a 4-byte word at a time
 * (every state is 4-byte fields; kernels that take their states in an args
 * struct read them with this: the compiler does not know them read-only). */
template <class S> __device__ __forceinline__ S state_ldg(const S *p) {
  static_assert(sizeof(S) % 4 == 0, "states are 4-byte fields");
  uint32_t w[sizeof(S) / 4];
#pragma unroll
  for (int i = 0; i < (int)(sizeof(S) / 4); i++)
    w[i] = __ldg(reinterpret_cast<const unsigned int *>(p) + i);
  S s;
  memcpy(&s, w, sizeof(S));
  return s;
}

__device__ __forceinline__ void cert_init(Cert &t) {
  t.g1 = t.h1 = t.h2 = t.h3 = INFINITY;
  t.b1 = t.hb1 = t.hb2 = -1;
}

/* Pushes come in increasing index order within a thread (strict compares
 * keep the lowest index on ties). */
__device__ __forceinline__ void cert_push(Cert &t, float g, float h, int idx) {
  const bool pg = g < t.g1, p1 = h < t.h1, p2 = h < t.h2;
  t.g1 = pg ? g : t.g1;
  t.b1 = pg ? idx : t.b1;
  t.h3 = fminf(t.h3, fmaxf(h, t.h2));
  t.h2 = p1 ? t.h1 : p2 ? h : t.h2;
  t.hb2 = p1 ? t.hb1 : p2 ? idx : t.hb2;
  t.h1 = p1 ? h : t.h1;
  t.hb1 = p1 ? idx : t.hb1;
}

/* (value, index) order; empty entries (index -1) last. */
__device__ __forceinline__ bool lex_less(float a, int ia, float b, int ib) {
  if (ia < 0) return false;
  if (ib < 0) return true;
  return a < b || (a == b && ia < ib);
}

/* Merge of two disjoint candidate sets: the argmin of g, the two least h of
 * the four entries, the other two join h3. */
__device__ __forceinline__ void cert_merge(Cert &t, const Cert &o) {
  if (lex_less(o.g1, o.b1, t.g1, t.b1)) t.g1 = o.g1, t.b1 = o.b1;
  float l1, l2; /* h of the two entries that drop out */
  if (lex_less(o.h1, o.hb1, t.h1, t.hb1)) {
    if (lex_less(o.h2, o.hb2, t.h1, t.hb1)) {
      l1 = t.h1, l2 = t.h2;
      t.h2 = o.h2, t.hb2 = o.hb2;
    } else {
      l1 = o.h2, l2 = t.h2;
      t.h2 = t.h1, t.hb2 = t.hb1;
    }
    t.h1 = o.h1, t.hb1 = o.hb1;
  } else if (lex_less(o.h1, o.hb1, t.h2, t.hb2)) {
    l1 = t.h2, l2 = o.h2;
    t.h2 = o.h1, t.hb2 = o.hb1;
  } else {
    l1 = o.h1, l2 = o.h2;
  }
  t.h3 = fminf(fminf(t.h3, o.h3), fminf(l1, l2));
}

__device__ __forceinline__ Cert cert_shfl(const Cert &t, int off) {
  Cert o;
  o.g1 = __shfl_xor_sync(0xffffffffu, t.g1, off);
  o.h1 = __shfl_xor_sync(0xffffffffu, t.h1, off);
  o.h2 = __shfl_xor_sync(0xffffffffu, t.h2, off);
  o.h3 = __shfl_xor_sync(0xffffffffu, t.h3, off);
  o.b1 = __shfl_xor_sync(0xffffffffu, t.b1, off);
  o.hb1 = __shfl_xor_sync(0xffffffffu, t.hb1, off);
  o.hb2 = __shfl_xor_sync(0xffffffffu, t.hb2, off);
  return o;
}

}  // namespace

#endif
