#!/usr/bin/env bash
# mpiexec -np P flashkm train (docs/distributed.md): with 1 to 4 ranks the
# outputs rank 0 writes are byte for byte those of one process (.npy and a
# .fvecs read in place, with --weights and --init; .bvecs, .u8bin, int8 and
# float16 .npy; one shard file per rank), one progress line per
# iteration is printed, and a NaN in the last rank's rows fails every rank
# with the library's message, naming its row in the whole file.
# usage: mpi_train.sh MPIEXEC FLASHKM FIXTURES WORKDIR
set -u
mpiexec=$1 cli=$(realpath "$2") fix=$(realpath "$3") work=$4
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAILED: $*"; exit 1; }
run() { "$mpiexec" -np "$1" --oversubscribe "$cli" "${@:2}"; }
for input in blobs.npy blobs.fvecs; do
  opts=(-k 12 --niter 6 --weights "$fix/weights.npy" --init "$fix/init.fbin")
  "$cli" train "$fix/$input" "${opts[@]}" -o one.fbin --labels one.npy -q ||
    fail "$input: one process exited $?"
  for np in 1 2 3 4; do
    rm -f c.fbin l.npy
    run "$np" train "$fix/$input" "${opts[@]}" -o c.fbin --labels l.npy 2>err.txt ||
      { cat err.txt; fail "$input: $np ranks exited $?"; }
    cmp -s one.fbin c.fbin || fail "$input: $np ranks: the centroids differ"
    cmp -s one.npy l.npy || fail "$input: $np ranks: the labels differ"
    lines=$(grep -c '^iter 6/6 ' err.txt)
    [ "$lines" = 1 ] || fail "$input: $np ranks: $lines progress lines for the last iteration"
    grep -q "x $np MPI ranks" err.txt || fail "$input: $np ranks: the header does not say so"
    echo "ok: $input: $np ranks: the one-process centroids and labels"
  done
done
# 8-bit and float16 files: each rank gathers and widens its rows only
for input in blobs.bvecs blobs.u8bin blobs_i8.npy blobs_f16.npy; do
  "$cli" train "$fix/$input" -k 12 --niter 4 -o one.fbin --labels one.npy -q ||
    fail "$input: one process exited $?"
  for np in 2 3; do
    run "$np" train "$fix/$input" -k 12 --niter 4 -o c.fbin --labels l.npy -q ||
      fail "$input: $np ranks exited $?"
    cmp -s one.fbin c.fbin && cmp -s one.npy l.npy || fail "$input: $np ranks: outputs differ"
    echo "ok: $input: $np ranks: the one-process centroids and labels"
  done
done
# one shard file per rank (INPUT and --weights with {rank}), uneven shards
"$cli" train "$fix/blobs.npy" -k 12 --niter 5 --weights "$fix/weights.npy" -o one.fbin \
  --labels one.npy -q || fail "one process exited $?"
run 4 train "$fix/shard_{rank}.npy" -k 12 --niter 5 --weights "$fix/wshard_{rank}.npy" -o c.fbin \
  --labels l.npy --json r.json -q || fail "shards: 4 ranks exited $?"
cmp -s one.fbin c.fbin && cmp -s one.npy l.npy || fail "shards: outputs differ"
grep -q '"n": 3000' r.json || fail "shards: the report's n is not every rank's rows"
echo "ok: 4 shard files: the one-process centroids and labels"
for np in 2 4; do
  run "$np" train "$fix/nan.fbin" -k 12 -o c.fbin 2>err.txt && fail "nan.fbin: $np ranks succeeded"
  n=$(grep -c 'x contains NaN or Inf at row 123, column 5' err.txt)
  [ "$n" = 1 ] || { cat err.txt; fail "nan.fbin: $np ranks: $n messages naming row 123"; }
  echo "ok: nan.fbin: $np ranks: every rank fails, rank 0 names row 123"
done
