#!/usr/bin/env bash
# A distributed run whose last rank is killed (SIGKILL) after its second
# iteration, while the others would iterate a million times: the job must
# end, with a non-zero status, well before the others could finish. Every
# process count from 2 to 4. Usage: killed_rank.sh MPIEXEC TEST_MPI
set -u
mpiexec=$1 test=$2
for np in 2 3 4; do
  start=$(date +%s)
  timeout 120 "$mpiexec" -np "$np" --oversubscribe "$test" --gtest_also_run_disabled_tests \
    --gtest_filter='*ARankKilledInTheMiddleOfARun' >/dev/null 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  if [ "$rc" -eq 0 ] || [ "$rc" -eq 124 ]; then
    echo "killed_rank: np $np: exit $rc after ${took} s (want a non-zero exit, not the timeout's 124)"
    exit 1
  fi
  echo "killed_rank: np $np: the job ended with exit $rc after ${took} s"
done
