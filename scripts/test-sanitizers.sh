#!/usr/bin/env bash
# Part of README command two (scripts/test.sh runs it; SANITIZERS=none skips
# it). Three builds of their own, every sanitizer report an error:
#   1. GCC, AddressSanitizer + UndefinedBehaviorSanitizer: the cpu, errors and
#      cli ctest suites (with the FAISS bridge when it is installed), and the
#      mpi suite (1 to 4 ranks under mpiexec);
#   2. Clang, ThreadSanitizer with LLVM's OpenMP runtime and its Archer tool
#      (OpenMP's synchronisation made visible to TSan): the multi-threaded
#      CPU training tests (tests/cpu/test_threads.cpp and the thread-count
#      test);
#   3. the libFuzzer targets (tests/fuzz, scripts/fuzz.sh), FUZZ_SECONDS in
#      all (30 by default, to keep CI under its 20 minutes; docs/fuzzing.md
#      has the longer run).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
ASAN_BUILD=${ASAN_BUILD:-build-asan}
TSAN_BUILD=${TSAN_BUILD:-build-tsan}

echo "test-sanitizers: ASan + UBSan (GCC): cpu, errors, cli suites in $ASAN_BUILD"
cmake -S . -B "$ASAN_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLASHKM_WITH_CUDA=OFF \
  -DFLASHKM_SANITIZE=address,undefined >/dev/null
cmake --build "$ASAN_BUILD" -j"$JOBS" >/dev/null
# Leaks are errors too. OMP passive waits: tests/cli/CMakeLists.txt. The
# timing test (ReferenceSpeed) is left out: its bound is for an optimised build.
export UBSAN_OPTIONS=print_stacktrace=1 OMP_WAIT_POLICY=PASSIVE
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir "$ASAN_BUILD" -L 'cpu|errors|cli' \
  -E 'ReferenceSpeed|install_tree_builds_a_consumer' --output-on-failure -j"$JOBS"
# The distributed runs under mpiexec: leaks are errors except OpenMPI's own
# (tests/mpi/lsan-openmpi.supp; full stacks, so that a leak of ours is named
# whatever OpenMPI frames it passes).
if [ -f "$ASAN_BUILD/tests/mpi/test_mpi" ]; then
  ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0 \
    LSAN_OPTIONS=suppressions="$PWD/tests/mpi/lsan-openmpi.supp" \
    ctest --test-dir "$ASAN_BUILD" -L mpi --output-on-failure
fi
# The installed tree's consumers (a C program and Python, neither built with
# the sanitizers) load the sanitized library: the runtimes are preloaded, and
# leak checks are off for the interpreter's own allocations.
LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)" \
  ASAN_OPTIONS=detect_leaks=0 ctest --test-dir "$ASAN_BUILD" -R install_tree_builds_a_consumer \
  --output-on-failure

echo "test-sanitizers: ThreadSanitizer (Clang, libomp + Archer) in $TSAN_BUILD"
archer=$(ls /usr/lib/llvm-14/lib/libarcher.so)
CC=clang-14 CXX=clang++-14 cmake -S . -B "$TSAN_BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DFLASHKM_WITH_CUDA=OFF -DFLASHKM_WITH_FAISS=OFF -DFLASHKM_BUILD_CLI=OFF \
  -DFLASHKM_SANITIZE=thread >/dev/null
cmake --build "$TSAN_BUILD" -j"$JOBS" --target test_cpu >/dev/null
# ignore_noninstrumented_modules: libomp's own internals are not instrumented
# (Archer supplies its synchronisation); flashkm's code is.
OMP_TOOL_LIBRARIES=$archer TSAN_OPTIONS="halt_on_error=1 ignore_noninstrumented_modules=1" \
  "$TSAN_BUILD/tests/cpu/test_cpu" --gtest_brief=1 \
  --gtest_filter='Threads.*:Reference.ThreadCountDoesNotChangeBits:BadInput.ThreadCount*'

echo "test-sanitizers: libFuzzer targets, ${FUZZ_SECONDS:-30} s in all"
scripts/fuzz.sh "${FUZZ_SECONDS:-30}"
