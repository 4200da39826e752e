#!/usr/bin/env bash
# README command two: install what is needed, build (warnings are errors),
# run every test: ctest (cpu, errors, parity, cli; gpu tests skip without a
# GPU), the Python package's pytest suite against Debian's FAISS 1.7.3, and
# the parity suite against pip's faiss-cpu wheels at every SIMD level this
# CPU runs (scripts/test-faiss-wheels.sh; FAISS_WHEELS=none skips it), and
# the sanitizer builds: ASan + UBSan, TSan, the fuzzers for a minute
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
ctest --test-dir "$BUILD" --output-on-failure -j"$JOBS"
if [ "${SANITIZERS:-}" != none ]; then
  JOBS="$JOBS" scripts/test-sanitizers.sh
fi
if [ -d python/tests ]; then
  FLASHKM_LIBRARY="$PWD/$BUILD/plugin/libflashkm.so" PYTHONPATH="$PWD/python" \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider python/tests
  if [ "${FAISS_WHEELS:-}" != none ]; then
    BUILD="$BUILD" scripts/test-faiss-wheels.sh
  fi
fi
