#!/usr/bin/env bash
# GPU check: from a clean tree on a machine with an NVIDIA GPU and CUDA 13,
# build flashkm with the CUDA engine, run the gpu tests (bit parity with the
# CPU reference, the objective kernels against the host chains),
# compute-sanitizer memcheck, racecheck and synccheck on small cases, and a
# short bench. Prints a summary; exits non-zero on any failure.
#
#   scripts/gpu-check.sh            # everything
#   BENCH=full scripts/gpu-check.sh # the larger bench set
#
# Environment: BUILD (build dir, default build-gpu), ARCH (CUDA
# architectures, default 90a), LOGS (log dir, default $OUT or $BUILD/logs),
# GTEST_SRC (GoogleTest sources to build when GTest is not installed,
# default .carry/googletest or /usr/src/googletest), BENCH (quick, full,
# none), SANITIZE (1/0), TESTS (1/0).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=$(realpath -m "${BUILD:-build-gpu}")
ARCH=${ARCH:-90a}
LOGS=${LOGS:-${OUT:-$BUILD/logs}}
BENCH=${BENCH:-quick}
SANITIZE=${SANITIZE:-1}
TESTS=${TESTS:-1}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$BUILD" "$LOGS"
[ -x /usr/local/cuda/bin/nvcc ] && export PATH="$PATH:/usr/local/cuda/bin"
declare -A result
fail=0
step() { # name, command...
  local name=$1; shift
  local t0=$SECONDS
  if "$@" >"$LOGS/$name.log" 2>&1; then result[$name]="ok ($((SECONDS - t0)) s)"
  else result[$name]="FAILED ($((SECONDS - t0)) s, see $LOGS/$name.log)"; fail=1; fi
  echo "== $name: ${result[$name]}"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$LOGS/gpu.txt"

# GoogleTest: use the installed one, else build it from sources.
CMAKE_EXTRA=()
have_gtest=0
for f in /usr/lib/x86_64-linux-gnu/cmake/GTest /usr/lib/cmake/GTest /usr/local/lib/cmake/GTest; do
  [ -f "$f/GTestConfig.cmake" ] && have_gtest=1
done
if [ $have_gtest = 0 ]; then
  GTEST_SRC=${GTEST_SRC:-$([ -d .carry/googletest ] && echo .carry/googletest || echo /usr/src/googletest)}
  build_gtest() {
    cmake -S "$GTEST_SRC" -B "$BUILD/gtest-build" -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$BUILD/gtest" -DBUILD_GMOCK=OFF &&
      cmake --build "$BUILD/gtest-build" -j"$JOBS" && cmake --install "$BUILD/gtest-build"
  }
  step gtest build_gtest
  CMAKE_EXTRA+=("-DCMAKE_PREFIX_PATH=$BUILD/gtest")
fi

# The GPU machine has no FAISS and may lack zlib: only the library, its
# tests and the bench are built (the command needs zlib for idx3 files).
step configure cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DFLASHKM_WITH_FAISS=OFF \
  -DFLASHKM_BUILD_CLI=OFF \
  -DFLASHKM_WITH_CUDA=ON -DFLASHKM_CUDA_ARCHITECTURES="$ARCH" "${CMAKE_EXTRA[@]}"
targets=(test_gpu test_gpu_objective flashkm_bench)
# the distributed tests' CUDA ranks (ctest -L compute-sanitizer runs them too) where MPI is built
cmake --build "$BUILD" --target help 2>/dev/null | grep -q test_mpi && targets+=(test_mpi)
step build cmake --build "$BUILD" -j"$JOBS" --target "${targets[@]}"
TEST=$BUILD/tests/gpu/test_gpu
OBJ_TEST=$BUILD/tests/gpu/test_gpu_objective
# One process for the whole suite (ctest -L gpu runs one process per test,
# the same tests).
if [ "$TESTS" = 1 ]; then
  step gpu_tests "$TEST" --gtest_brief=1
  grep -E "^\[  (PASSED|FAILED|SKIPPED) |tests ran" "$LOGS/gpu_tests.log" | tail -5
  # the same suite on the mma.sync pass (the path of sm_80 and of d > 128;
  # on a Hopper GPU the default is the wgmma pass)
  gpu_tests_mma() { FLASHKM_CUDA_ASSIGN=mma "$TEST" --gtest_brief=1; }
  step gpu_tests_mma gpu_tests_mma
  step objective_tests "$OBJ_TEST" --gtest_brief=1
fi

if [ "$SANITIZE" = 1 ]; then
  # the cases and tools are tests/gpu/CMakeLists.txt's (label compute-sanitizer)
  step sanitizers ctest --test-dir "$BUILD" -L compute-sanitizer --output-on-failure
  grep -E "tests passed|Failed|Not Run" "$LOGS/sanitizers.log" | tail -6
  grep -q "compute_sanitizer.memcheck" "$LOGS/sanitizers.log" ||
    { echo "== sanitizers: no compute-sanitizer test ran (compute-sanitizer not found?)"; fail=1; }
fi

if [ "$BENCH" != none ]; then
  step bench "$BUILD/bench/flashkm_bench" "$BENCH" 8
  cat "$LOGS/bench.log"
fi

echo
echo "summary ($(date -u +%FT%TZ)):"
for k in gtest configure build gpu_tests gpu_tests_mma objective_tests sanitizers bench; do
  [ -n "${result[$k]:-}" ] && printf '  %-10s %s\n' "$k" "${result[$k]}"
done
exit $fail
