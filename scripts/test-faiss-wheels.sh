#!/usr/bin/env bash
# Parity against the FAISS most users install: pip's faiss-cpu wheels, each
# in its own virtual environment under $BUILD/venvs, at every SIMD level
# this CPU can run (docs/profiles.md). Called by scripts/test.sh after the
# build; needs Debian's python3-venv and PyPI.
#
#   FAISS_WHEELS="1.15.1 1.11.0" scripts/test-faiss-wheels.sh   # a subset
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
VENVS="$BUILD/venvs"
LIB="$PWD/$BUILD/plugin/libflashkm.so"
# release: the numpy its wheel was built for
declare -A NUMPY=([1.15.1]="numpy==2.4.6" [1.11.0]="numpy==2.2.6" [1.8.0]="numpy==1.26.4")
WHEELS=${FAISS_WHEELS:-"1.15.1 1.11.0 1.8.0"}

# The levels this CPU runs: FAISS's loader needs AVX2+FMA for its avx2 build
# and avx512f/cd/vl/dq/bw for its avx512 one.
flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
has() { for f in "$@"; do [[ " $flags " == *" $f "* ]] || return 1; done; }
LEVELS=(none)
has avx2 fma && LEVELS+=(avx2)
has avx512f avx512cd avx512vl avx512dq avx512bw && LEVELS+=(avx512)

status=0
for ver in $WHEELS; do
  venv="$VENVS/faiss-$ver"
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import faiss, pytest" 2>/dev/null; then
    echo "test-faiss-wheels: creating $venv (faiss-cpu==$ver, ${NUMPY[$ver]})"
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "faiss-cpu==$ver" "${NUMPY[$ver]}" \
      packaging pytest
  fi
  for level in "${LEVELS[@]}"; do
    # 1.14.2+ picks its level at run time (FAISS_SIMD_LEVEL); older wheels
    # load one library per level (FAISS_OPT_LEVEL)
    case $level in
      none) env_level=(FAISS_SIMD_LEVEL=NONE FAISS_OPT_LEVEL=generic) ;;
      avx2) env_level=(FAISS_SIMD_LEVEL=AVX2 FAISS_OPT_LEVEL=AVX2) ;;
      avx512) env_level=(FAISS_SIMD_LEVEL=AVX512 FAISS_OPT_LEVEL=AVX512) ;;
    esac
    # the whole suite at the level FAISS picks itself, the parity file at each;
    # the README's examples with the first (newest) wheel only: they show a
    # user's script, FAISS's arithmetic is the other files' (CI's 20 minutes)
    tests=(python/tests/test_profiles.py)
    if [ "$level" = "${LEVELS[-1]}" ]; then
      tests=(python/tests)
      [ "$ver" = "${WHEELS%% *}" ] || tests+=(--ignore=python/tests/test_examples.py)
    fi
    echo "test-faiss-wheels: faiss-cpu $ver at $level: ${tests[*]}"
    if ! env "${env_level[@]}" FLASHKM_LIBRARY="$LIB" PYTHONPATH="$PWD/python" \
        "$venv/bin/python" -m pytest -q -p no:cacheprovider "${tests[@]}"; then
      echo "test-faiss-wheels: FAILED for faiss-cpu $ver at $level"
      status=1
    fi
  done
done
exit $status
