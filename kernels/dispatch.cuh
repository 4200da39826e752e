/* The run-time choices the kernels are templated on, turned into types in
 * one place (host code of the launchers):
 *  - by_metric(l2, f): f(std::true_type) for L2, f(std::false_type) for the
 *    inner product (the kernels' template <bool L2>);
 *  - by_dtype(dtype, f): f(T{}) with T = float, __half or __nv_bfloat16 for
 *    FKM_DTYPE_F32 / F16 / BF16 (fkm_dtype; -1 or another value: `other`);
 *  - by_half_dtype(dtype, f): the two 16-bit types only (FKM_ASSIGN_FAST's
 *    operands, their packed copies).
 * The host side's byte size of a dtype is fkm_dtype_size (plugin/engine.h). */
#ifndef FKM_KERNELS_DISPATCH_CUH
#define FKM_KERNELS_DISPATCH_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "flashkm.h"

template <class F> inline auto by_metric(bool l2, F &&f) {
  return l2 ? f(std::true_type{}) : f(std::false_type{});
}

template <class F> inline auto by_half_dtype(int dtype, F &&f) {
  return dtype == FKM_DTYPE_BF16 ? f(__nv_bfloat16{}) : f(__half{});
}

template <class F, class R> inline R by_dtype(int dtype, F &&f, R other) {
  switch (dtype) {
    case FKM_DTYPE_F32: return f(float{});
    case FKM_DTYPE_F16: return f(__half{});
    case FKM_DTYPE_BF16: return f(__nv_bfloat16{});
    default: return other;
  }
}

#endif
