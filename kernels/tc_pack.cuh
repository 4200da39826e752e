/* Packing the tensor-core passes' operands (included by kernels/assign.cu):
 * the bound's constants per centroid and per matrix, fp16 / bf16 packing of
 * x and of the centroids into the tile layout of kernels/packed.cuh. */
#ifndef FKM_KERNELS_TC_PACK_CUH
#define FKM_KERNELS_TC_PACK_CUH

namespace {

/* The bound's constants (see above), inflated by 1%. */
struct BoundConsts {
  float alpha, beta, gamma, eta;
};

/* float_norms: the norms are a FAISS build's float loops (a profile's,
 * kernels/profile.cu) instead of float squares summed in double: each errs
 * by up to 1.01 d u of the norm instead of 3u, in E_ref (both norms, and
 * one more rounding of the cmax formula) and in E_fast (|c|^2), which the
 * extra 3.07 d u (X + C) covers (docs/profiles.md, "Certification"). */
__host__ __device__ inline BoundConsts bound_consts(bool l2, int64_t d, bool float_norms) {
  const double u = 0x1p-24, dd = (double)d, dp = (double)((d + MBK - 1) / MBK * MBK);
  const double rt = sqrt(dp);
  const double eip = 1.01 * (0x1p-10 + dp * 0x1p-22 + rt * 0x1p-38);
  const double f = l2 ? 2.01 : 1.01;
  BoundConsts b;
  b.alpha = (float)(1.01 * (l2 ? f * eip : f * eip + 1.01 * dd * u));
  b.beta = (float)(1.01 * (l2 ? 16.0 + 1.01 * dd + 2.03 + (float_norms ? 3.07 * dd : 0.0) : 0.53) *
                    u);
  b.gamma = (float)(1.01 * f * 1.01 * rt * 0x1p-25);
  b.eta = (float)(4.0 * (8.0 * dd + 64.0) * 0x1p-149) + 0x1p-149f;
  return b;
}

/* A(x) = alpha |x| + gamma 2^-sx, rounded up (xn: the float |x|^2). Pass 1
 * and certify evaluate it with this one function: the same bits. */
__device__ __forceinline__ float point_a(const BoundConsts &bc, float xn, int sx) {
  const float up = 1.0f + 0x1p-20f;
  const float gam = __fadd_ru(ldexpf(bc.gamma, -sx), 0x1p-149f);
  return __fadd_ru(__fmul_ru(__fmul_ru(bc.alpha, __fsqrt_ru(xn)), up), gam);
}

/* Per centroid: cb[c] = |c| and cb[k + c] = beta C, rounded up a little.
 * Problem blockIdx.y of a batch: its k norms, its cb ws bytes further (its
 * scratch's stride). */
__global__ void centroid_bounds(const float *__restrict__ cn, int64_t k, float beta,
                                float *__restrict__ cb, int64_t ws) {
  cn += blockIdx.y * k;
  cb = fkm_bytes_on(cb, blockIdx.y, ws);
  const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= k) return;
  const float up = 1.0f + 0x1p-20f;
  cb[i] = __fmul_ru(__fsqrt_ru(cn[i]), up);
  cb[k + i] = __fmul_ru(__fmul_ru(beta, cn[i]), up);
}

/* Bits of the maximum of non-negative floats (or +inf, NaN: then nothing
 * certifies), reduced per block then with an integer atomicMax (the bit
 * patterns of such values order like the values): exact and
 * order-independent. */
__device__ __forceinline__ void block_max_to(int m, int *dst) {
  __shared__ int red[32];
  for (int off = 16; off > 0; off /= 2) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = m;
  __syncthreads();
  if (threadIdx.x < 32) {
    m = (int)threadIdx.x < (int)(blockDim.x >> 5) ? red[threadIdx.x] : 0;
    for (int off = 16; off > 0; off /= 2) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
    if (threadIdx.x == 0) atomicMax(dst, m);
  }
}

/* *bc_max = max_c beta C, i.e. of cb[k + c] (zeroed first); problem
 * blockIdx.y: both ws bytes further. */
__global__ void bound_max(const float *__restrict__ cb, int64_t k, float *bc_max, int64_t ws) {
  cb = fkm_bytes_on(cb, blockIdx.y, ws);
  bc_max = fkm_bytes_on(bc_max, blockIdx.y, ws);
  int m = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < k;
       i += (int64_t)gridDim.x * blockDim.x)
    m = max(m, __float_as_int(cb[k + i]));
  block_max_to(m, reinterpret_cast<int *>(bc_max));
}

/* *xmax = bits of max |x_ij| (zeroed first); problem blockIdx.y: the count
 * values from x + blockIdx.y * stride into xmax[blockIdx.y]. */
__global__ void abs_max(const float *__restrict__ x, int64_t count, int64_t stride, int *xmax) {
  x += blockIdx.y * stride;
  xmax += blockIdx.y;
  int m = 0;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < count;
       i += (int64_t)gridDim.x * blockDim.x)
    m = max(m, __float_as_int(fabsf(x[i])));
  block_max_to(m, xmax);
}

/* The packed layout: kernels/packed.cuh. */
template <typename T> __device__ __forceinline__ uint16_t to_bits(float v);
template <> __device__ __forceinline__ uint16_t to_bits<__half>(float v) {
  return __half_as_ushort(__float2half_rn(v));
}
template <> __device__ __forceinline__ uint16_t to_bits<__nv_bfloat16>(float v) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(v));
}
template <typename T> __device__ __forceinline__ float from_bits(uint16_t b);
template <> __device__ __forceinline__ float from_bits<__half>(uint16_t b) {
  return __half2float(__ushort_as_half(b));
}
template <> __device__ __forceinline__ float from_bits<__nv_bfloat16>(uint16_t b) {
  return __bfloat162float(__ushort_as_bfloat16(b));
}

/* Eight 16-bit elements (16 bytes) per thread: rows padded to rows_pad, dims
 * to dp, zeros in the padding. SCALED: fp16 of v 2^s, s from *xmax.
 * count != NULL: packs the rows rows[0 .. *count) of x (a gather; n and
 * rows_pad follow from the count on the device). Problem blockIdx.y: x +
 * blockIdx.y * x_stride into out + blockIdx.y * out_stride, its scale from
 * xmax[blockIdx.y], its rows and count list_bytes further. */
template <typename T, bool SCALED>
__global__ void pack_rows(const float *__restrict__ x, int64_t n, int64_t d, int64_t rows_pad,
                          int64_t dp, const int *__restrict__ xmax,
                          const int32_t *__restrict__ rows, const int *__restrict__ count,
                          uint16_t *__restrict__ out, int64_t x_stride, int64_t out_stride,
                          int64_t list_bytes) {
  x += blockIdx.y * x_stride;
  out += blockIdx.y * out_stride;
  rows = fkm_bytes_on(rows, blockIdx.y, list_bytes);
  count = fkm_bytes_on(count, blockIdx.y, list_bytes);
  const int s = SCALED ? scale_exp(xmax[blockIdx.y]) : 0;
  if (count) n = *count, rows_pad = (n + MBM - 1) / MBM * MBM;
  const int64_t groups = rows_pad * (dp / 8);
  for (int64_t gi = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; gi < groups;
       gi += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = gi / (dp / 8), j0 = (gi % (dp / 8)) * 8;
    uint16_t h[8];
#pragma unroll
    for (int e = 0; e < 8; e++) {
      const float v = row < n && j0 + e < d ? x[(rows ? rows[row] : row) * d + j0 + e] : 0.0f;
      h[e] = to_bits<T>(SCALED ? ldexpf(v, s) : v);
    }
    uint4 w;
    w.x = (uint32_t)h[0] | ((uint32_t)h[1] << 16);
    w.y = (uint32_t)h[2] | ((uint32_t)h[3] << 16);
    w.z = (uint32_t)h[4] | ((uint32_t)h[5] << 16);
    w.w = (uint32_t)h[6] | ((uint32_t)h[7] << 16);
    *reinterpret_cast<uint4 *>(out + packed_at(row, j0, dp)) = w;
  }
}

/* 16-bit rows in one pass (problem blockIdx.y's n rows of d columns,
 * d % 8 == 0, from src + blockIdx.y n d; a thread takes 8 columns of a row,
 * one 16-byte load), by MODE:
 *  - X16_FAST (fkm_launch_pack_x16_batched): their float values into xf
 *    (2 x 16 bytes) and FAST's packed copy into out + blockIdx.y
 *    out_stride, to_bits<T> of those values (pack_rows<T, false>'s bits),
 *    the padding rows and columns zero;
 *  - X16_MAX (the parity cascade's first pass): the float values into xf
 *    and the bits of their largest magnitude max'ed into xmax[blockIdx.y]
 *    (abs_max's word over xf; zeroed first);
 *  - X16_SCALED (its second pass): the packed copy of fp16 of v 2^s, s from
 *    xmax[blockIdx.y] (pack_rows<__half, true>'s bits over xf), padding
 *    zero; neither xf nor first is touched.
 * first != NULL (X16_FAST, X16_MAX): the index of a row's first
 * non-finite element (all exponent bits set) among the 8, counted over all
 * problems back to back (first0: the launch's first problem's offset),
 * min'ed into *first. */
enum X16Mode { X16_FAST, X16_MAX, X16_SCALED };

template <typename T, X16Mode MODE>
__global__ void pack_rows16(const uint16_t *__restrict__ src, int64_t n, int64_t d,
                            int64_t rows_pad, int64_t dp, uint16_t *__restrict__ out,
                            int64_t out_stride, float *__restrict__ xf, int *xmax,
                            unsigned long long *first, int64_t first0) {
  constexpr uint16_t EXP = std::is_same<T, __half>::value ? 0x7c00u : 0x7f80u;
  const int64_t base = (int64_t)blockIdx.y * n * d;
  src += base;
  if (MODE != X16_SCALED) xf += base;
  if (MODE != X16_MAX) out += blockIdx.y * out_stride;
  const int s = MODE == X16_SCALED ? scale_exp(xmax[blockIdx.y]) : 0;
  /* X16_MAX walks the rows alone, the others the padded tile too */
  const int64_t groups = (MODE == X16_MAX ? n : rows_pad) * (dp / 8);
  int m = 0; /* X16_MAX: the bits of the largest |v| seen */
  for (int64_t gi = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; gi < groups;
       gi += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = gi / (dp / 8), j0 = (gi % (dp / 8)) * 8;
    uint4 w = make_uint4(0u, 0u, 0u, 0u);
    if (row < n && j0 < d) {
      const uint4 v = *reinterpret_cast<const uint4 *>(src + row * d + j0);
      const uint32_t pair[4] = {v.x, v.y, v.z, v.w};
      float f[8];
      uint16_t h[8];
      int bad = -1; /* the first of the 8 with every exponent bit set */
#pragma unroll
      for (int e = 0; e < 8; e++) {
        const uint16_t b = (uint16_t)(pair[e / 2] >> (16 * (e % 2)));
        f[e] = from_bits<T>(b);
        if (MODE == X16_FAST) h[e] = to_bits<T>(f[e]);
        if (MODE == X16_SCALED) h[e] = to_bits<__half>(ldexpf(f[e], s));
        if (MODE == X16_MAX) m = max(m, __float_as_int(fabsf(f[e])));
        if (MODE != X16_SCALED && bad < 0 && (b & EXP) == EXP) bad = e;
      }
      if (MODE != X16_SCALED && first && bad >= 0)
        atomicMin(first, (unsigned long long)(first0 + base + row * d + j0 + bad));
      if (MODE != X16_SCALED) {
        float4 *to = reinterpret_cast<float4 *>(xf + row * d + j0);
        to[0] = make_float4(f[0], f[1], f[2], f[3]);
        to[1] = make_float4(f[4], f[5], f[6], f[7]);
      }
      if (MODE != X16_MAX) {
        w.x = (uint32_t)h[0] | ((uint32_t)h[1] << 16);
        w.y = (uint32_t)h[2] | ((uint32_t)h[3] << 16);
        w.z = (uint32_t)h[4] | ((uint32_t)h[5] << 16);
        w.w = (uint32_t)h[6] | ((uint32_t)h[7] << 16);
      }
    }
    if (MODE != X16_MAX) *reinterpret_cast<uint4 *>(out + packed_at(row, j0, dp)) = w;
  }
  if (MODE == X16_MAX) block_max_to(m, xmax + blockIdx.y);
}

/* One warp per (padded) centroid row: the packed row and its constants
 * cc[q] = (shift, factor, |c|', screen shift): g = fl(shift - acc factor)
 * is the fast value, |c|' (PARITY: cb[q], |c| rounded up) enters h; the
 * screen (Top2) reads the same shift from .w, except on padding.
 * PARITY (fp16): the row scaled by its own power of two; L2: shift = cn,
 * factor = 2^(1 - sx - sc); IP: shift 0, factor 2^(-sx - sc); NaN shift
 * when the factor's exponent leaves [-126, 60] or cn is not finite and below
 * 2^120 (then |g| cannot overflow: |acc| < 2^42 for D <= 4096... and the
 * fast pass never claims anything about that centroid).
 * FAST: the row rounded to T unscaled; L2: shift = the norm of the rounded
 * row (float squares summed in double, a fixed order), factor 2; IP: 0, 1.
 * Padding rows (q >= k) are zero with constants (+inf, 0, 0, 2^127): their
 * value is fl(-0 0 + inf) = +inf in every row, which changes no state, so
 * the passes need no column mask (a split's range ends on a tile boundary
 * or at k); the screen's is 2^127, above every real value (h <= g <
 * 2^121 where no centroid is poisoned) and finite, so that its key (h with
 * its low bits replaced) is a number: a key of +inf would be a NaN.
 * PARITY: *poison := 1 when some centroid is poisoned (zeroed by the
 * launcher). */
template <typename T, bool PARITY>
__global__ void pack_centroids(const float *__restrict__ c, const float *__restrict__ cn,
                               const float *__restrict__ cb, int64_t k, int64_t d, int64_t dp,
                               bool l2, const int *__restrict__ xmax, uint16_t *__restrict__ out,
                               float4 *__restrict__ cc, int *__restrict__ poison,
                               int64_t out_stride, int64_t cc_stride) {
  /* problem blockIdx.y of a batch in one launch: its k rows of c, its packed
   * rows and constants out_stride / cc_stride further; parity: its norms,
   * its scale, its bound terms and poison flag in its scratch (2 out_stride
   * bytes further: out_stride counts 16-bit elements) */
  c += blockIdx.y * k * d;
  out += blockIdx.y * out_stride;
  cc += blockIdx.y * cc_stride;
  if (PARITY) {
    cn += blockIdx.y * k;
    xmax += blockIdx.y;
    cb = fkm_bytes_on(cb, blockIdx.y, 2 * out_stride);
    poison = fkm_bytes_on(poison, blockIdx.y, 2 * out_stride);
  }
  const int lane = threadIdx.x & 31;
  const int64_t q = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) >> 5;
  if (q >= (k + MBN - 1) / MBN * MBN) return;
  const float *row = c + q * d;
  int m = 0;
  if (q < k)
    for (int64_t j = lane; j < d; j += 32) m = max(m, __float_as_int(fabsf(row[j])));
  for (int off = 16; off > 0; off /= 2) m = max(m, __shfl_xor_sync(0xffffffffu, m, off));
  const int sc = PARITY ? scale_exp(m) : 0;
  double s2 = 0.0;
  for (int64_t j = lane; j < dp; j += 32) {
    const float v = q < k && j < d ? row[j] : 0.0f;
    const uint16_t h = to_bits<T>(PARITY ? ldexpf(v, sc) : v);
    out[packed_at(q, j, dp)] = h;
    if (!PARITY) {
      const float r = from_bits<T>(h);
      s2 = __dadd_rn(s2, (double)__fmul_rn(r, r));
    }
  }
  if (!PARITY)
    for (int off = 16; off > 0; off /= 2) s2 = __dadd_rn(s2, __shfl_xor_sync(0xffffffffu, s2, off));
  if (lane != 0) return;
  float4 v = make_float4(INFINITY, 0.0f, 0.0f, 0x1p127f);
  if (q < k) {
    if (PARITY) {
      const int e = (l2 ? 1 : 0) - scale_exp(*xmax) - sc;
      const float norm = cn[q];
      const bool ok = e >= -126 && e <= 60 && norm >= 0.0f && norm < 0x1p120f;
      v = make_float4(ok ? (l2 ? norm : 0.0f) : NAN, ldexpf(1.0f, e), cb[q], 0.0f);
      if (!ok) atomicOr(poison, 1);
    } else {
      v = make_float4(l2 ? __double2float_rn(s2) : 0.0f, l2 ? 2.0f : 1.0f, 0.0f, 0.0f);
    }
    v.w = v.x;
  }
  cc[q] = v;
}

}  // namespace

#endif
