#!/usr/bin/env bash
# README command two: install what is needed, build (warnings are errors),
# run every test: ctest (cpu, errors, parity, cli, mpi: 1 to 4 ranks under
# mpiexec; the gpu tests, which skip
# without a GPU, summarised in one line each there), the Python package's
# pytest suite against Debian's FAISS 1.7.3, the parity suite against pip's faiss-cpu wheels at every SIMD level this
# CPU runs (scripts/test-faiss-wheels.sh; FAISS_WHEELS=none skips it), and
# the sanitizer builds: ASan + UBSan, TSan, the fuzzers for 30 s
# (scripts/test-sanitizers.sh; SANITIZERS=none skips it).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-deps.sh
BUILD=${BUILD:-build}
JOBS=${JOBS:-$(nproc)}
# nvcc is looked for on PATH and in CUDA's default prefix.
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="$PATH:/usr/local/cuda/bin"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}
cmake --build "$BUILD" -j"$JOBS"
# Without a GPU the gpu label's tests would each be listed as skipped: they
# run here as their binaries instead, summarised in one line per binary (the
# host-only ones among them still run and must pass).
if nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then
  ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS"
else
  ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS" -LE gpu
  for t in "$BUILD"/tests/gpu/test_gpu "$BUILD"/tests/gpu/test_gpu_objective; do
    [ -x "$t" ] || continue
    log=$(mktemp)
    if ! "$t" --gtest_brief=1 >"$log" 2>&1; then
      cat "$log"; rm -f "$log"; exit 1
    fi
    echo "test.sh: no GPU: $(basename "$t"): $(grep -E '^\[  (PASSED|SKIPPED) ' "$log" | tr -s ' ' | tr '\n' ' ')"
    rm -f "$log"
  done
fi
if [ "${SANITIZERS:-}" != none ]; then
  JOBS="$JOBS" scripts/test-sanitizers.sh
fi
if [ -d python/tests ]; then
  FLASHKM_LIBRARY="$PWD/$BUILD/plugin/libflashkm.so" PYTHONPATH="$PWD/python" FLASHKM_REQUIRE_MPI=1 \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider python/tests
  if [ "${FAISS_WHEELS:-}" != none ]; then
    BUILD="$BUILD" scripts/test-faiss-wheels.sh
  fi
fi
