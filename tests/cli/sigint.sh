#!/usr/bin/env bash
# Ctrl-C during `flashkm train`: the run stops after the current iteration,
# says so in one line, exits with 130 and leaves no output file behind.
# usage: sigint.sh FLASHKM INPUT WORKDIR
set -u
cli=$1 input=$2 work=$3
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
"$cli" train "$input" -k 12 --niter 100000 -o c.fbin --labels l.npy 2> err.txt &
pid=$!
# Interrupt once training is under way (its first progress line is out).
for _ in $(seq 600); do
  grep -q "^iter " err.txt 2>/dev/null && break
  sleep 0.05
done
kill -INT "$pid"
wait "$pid"
rc=$?
cat err.txt | tail -n 3
fail() { echo "FAILED: $*"; exit 1; }
[ "$rc" -eq 130 ] || fail "exit code $rc, expected 130"
grep -q "flashkm: error: interrupted after iteration [0-9]*/100000; no output written" err.txt ||
  fail "no 'interrupted' line"
[ ! -e c.fbin ] || fail "c.fbin was written"
[ ! -e l.npy ] || fail "l.npy was written"
ls ./*.tmp-* >/dev/null 2>&1 && fail "temporary files left behind"
echo "ok: exit 130, nothing written"
