# The CUDA engine: kernels/*.cu (device code behind C launchers) and
# plugin/engine_cuda.c (C host code), added to the flashkm target.
# Included from plugin/CMakeLists.txt when CUDA is enabled.
set(FKM_KERNEL_SOURCES
  ${PROJECT_SOURCE_DIR}/kernels/assign.cu
  ${PROJECT_SOURCE_DIR}/kernels/update.cu
  ${PROJECT_SOURCE_DIR}/kernels/group.cu
  ${PROJECT_SOURCE_DIR}/kernels/profile.cu
  ${PROJECT_SOURCE_DIR}/kernels/convert.cu
  ${PROJECT_SOURCE_DIR}/kernels/pq.cu)
target_sources(flashkm PRIVATE ${FKM_KERNEL_SOURCES}
  ${PROJECT_SOURCE_DIR}/plugin/engine_cuda.c ${PROJECT_SOURCE_DIR}/plugin/blas_cache.c)
target_include_directories(flashkm PRIVATE ${PROJECT_SOURCE_DIR}/kernels)

# Exactness: -fmad=false so that nvcc never contracts a*b+c; the kernels
# write fmaf where the reference fuses. No fast-math (keeps IEEE division,
# square root and denormals).
set(FKM_CUDA_OPTIONS -fmad=false --expt-relaxed-constexpr)
if(FLASHKM_WERROR)
  list(APPEND FKM_CUDA_OPTIONS --Werror all-warnings -Xcompiler=-Wall,-Wextra,-Werror)
endif()
set_source_files_properties(${FKM_KERNEL_SOURCES} PROPERTIES
  COMPILE_OPTIONS "${FKM_CUDA_OPTIONS}")
set_target_properties(flashkm PROPERTIES CUDA_ARCHITECTURES "${FLASHKM_CUDA_ARCHITECTURES}")
target_link_libraries(flashkm PRIVATE CUDA::cudart_static)

# ptxas reports where it injects warpgroup.arrive around the wgmma pass's
# accumulators (C7519, about twenty lines a build): expected, and left out
# of the build's output unless FLASHKM_PTXAS_ADVISORIES is ON.
option(FLASHKM_PTXAS_ADVISORIES "Show ptxas's C7519 advisories of the wgmma pass" OFF)
if(NOT FLASHKM_PTXAS_ADVISORIES)
  set_target_properties(flashkm PROPERTIES
    CUDA_COMPILER_LAUNCHER ${PROJECT_SOURCE_DIR}/cmake/ptxas-advisories.sh)
endif()
