#!/usr/bin/env bash
# CUDA compiler launcher of the flashkm target (kernels/kernels.cmake): runs
# the compile and drops ptxas's C7519 advisories ("warpgroup.arrive is
# injected ... to allow use of registers in GMMA"), about twenty a build for
# the wgmma pass, expected there (docs/cuda-engine.md). Every other line,
# warnings and errors included, and the compiler's exit status pass through.
# Configure with -DFLASHKM_PTXAS_ADVISORIES=ON to see them.
"$@" 2>&1 | { grep -v '^ptxas info    : (C7519) warpgroup.arrive is injected' || true; }
exit "${PIPESTATUS[0]}"
