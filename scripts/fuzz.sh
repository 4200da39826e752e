#!/usr/bin/env bash
# Fuzz every reader of the CLI and the C API's argument validation with
# libFuzzer (ASan + UBSan, no recovery) for SECONDS in all (docs/fuzzing.md).
#
#   scripts/fuzz.sh [SECONDS]     60 by default (CI runs 30); 3600 for the long run
#
# Builds tests/fuzz into $BUILD_FUZZ (build-fuzz), writes the seed corpus,
# then runs the targets, as many at a time as there are processors, so that
# the whole run takes SECONDS. Inputs that find new coverage go to
# $BUILD_FUZZ/corpus/<target>, so later runs start from them. Prints each
# target's executions and a total; exits 1 if any target crashed, leaving the
# input in $BUILD_FUZZ/artifacts/ and printing the command that reproduces it.
set -euo pipefail

TOTAL=${1:-60}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD_FUZZ:-$ROOT/build-fuzz}
CC_FUZZ=${CC_FUZZ:-clang-14}
TARGETS=(fvecs bvecs fbin u8bin i8bin npy idx3 ivecs ibin api)

if ! [[ $TOTAL =~ ^[0-9]+$ ]] || ((TOTAL < 1)); then
  echo "usage: scripts/fuzz.sh [SECONDS]" >&2
  exit 2
fi

cmake -S "$ROOT/tests/fuzz" -B "$BUILD" -DCMAKE_C_COMPILER="$CC_FUZZ" >/dev/null
cmake --build "$BUILD" -j "$(nproc)" >/dev/null
"$BUILD/fkm_fuzz_corpus" "$BUILD/corpus"
mkdir -p "$BUILD/artifacts" "$BUILD/logs"

# Targets in waves of JOBS at a time (one per processor), each wave SECONDS / waves long.
NT=${#TARGETS[@]}
JOBS=$(nproc)
((JOBS > NT)) && JOBS=$NT
WAVES=$(((NT + JOBS - 1) / JOBS))
PER=$((TOTAL / WAVES))
((PER < 1)) && PER=1

run_target() { # target
  local t=$1 dict=()
  [[ $t == npy ]] && dict=(-dict="$ROOT/tests/fuzz/npy.dict")
  # OpenMP in the API target: one thread each, the waves fill the processors.
  OMP_NUM_THREADS=1 "$BUILD/fuzz_$t" "${dict[@]}" -max_total_time="$PER" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t-" \
    "$BUILD/corpus/$t" >"$BUILD/logs/$t.log" 2>&1
}

echo "fuzzing ${NT} targets for ${TOTAL} s: ${JOBS} at a time, ${PER} s each"
declare -A RC
for ((w = 0; w < WAVES; w++)); do
  pids=()
  for ((j = w * JOBS; j < NT && j < (w + 1) * JOBS; j++)); do
    run_target "${TARGETS[j]}" &
    pids+=("$!:${TARGETS[j]}")
  done
  for p in "${pids[@]}"; do
    if wait "${p%%:*}"; then RC[${p#*:}]=0; else RC[${p#*:}]=$?; fi
  done
done

total=0 failed=0
for t in "${TARGETS[@]}"; do
  log="$BUILD/logs/$t.log"
  runs=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$log" | tail -n 1)
  if [[ -z $runs ]]; then # a crash: the last progress line's count
    runs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -n 1)
  fi
  runs=${runs:-0}
  total=$((total + runs))
  if ((RC[$t] == 0)); then
    printf '%-6s %12d runs  ok\n' "$t" "$runs"
    continue
  fi
  failed=1
  artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
  printf '%-6s %12d runs  CRASH (exit %d), log %s\n' "$t" "$runs" "${RC[$t]}" "$log"
  grep -m 3 -E '^(==[0-9]+==ERROR|SUMMARY|fuzz check failed)|runtime error' "$log" |
    sed 's/^/         /' || true
  if [[ -n $artifact ]]; then
    echo "         reproducer: $artifact"
    echo "         reproduce:  $BUILD/fuzz_$t $artifact"
  fi
done
printf '%-6s %12d runs\n' total "$total"
exit "$failed"
