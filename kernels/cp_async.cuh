/* cp.async (sm_80+): asynchronous copies from global into shared memory,
 * counted in commit groups. Device code only; every helper is a compiler
 * memory barrier, so that shared-memory reads stay after the wait that
 * covers them. Used by the mma.sync pass and the batch's reference kernel
 * (kernels/assign.cu) and the staged centroid sums (kernels/update.cu). */
#ifndef FKM_KERNELS_CP_ASYNC_CUH
#define FKM_KERNELS_CP_ASYNC_CUH

/* 4 bytes, cached in L1 (.ca) */
__device__ __forceinline__ void cp_async4(void *smem, const void *gmem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(s), "l"(gmem) : "memory");
}
/* 16 bytes, L2 only (.cg); both addresses 16-byte aligned */
__device__ __forceinline__ void cp_async16(void *smem, const void *gmem) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(s), "l"(gmem) : "memory");
}
/* The same two, the destination zero-filled instead where !valid (nothing
 * read from gmem then; it must still be a global address) */
__device__ __forceinline__ void cp_async4_zfill(void *smem, const void *gmem, bool valid) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem),
               "r"(valid ? 4 : 0) : "memory");
}
__device__ __forceinline__ void cp_async16_zfill(void *smem, const void *gmem, bool valid) {
  const unsigned s = (unsigned)__cvta_generic_to_shared(smem);
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem),
               "r"(valid ? 16 : 0) : "memory");
}
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}
/* this thread's copies done but for its N most recent groups */
template <int N> __device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

#endif
