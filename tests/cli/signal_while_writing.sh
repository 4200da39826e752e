#!/usr/bin/env bash
# A fatal signal while `flashkm train` writes its outputs (issue 19): the
# centroids are already in place and the labels half written when it lands;
# the run must leave neither, nor a temporary file, and die of the signal.
# usage: signal_while_writing.sh FLASHKM WORKDIR
set -u
cli=$(realpath "$1") work=$2
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAILED: $*"; exit 1; }
# 2^24 points of d = 1 (zeros: finite, and quick to train): the labels file
# (.ivecs, 128 MiB, written row by row) takes long enough to be caught.
{ printf '\x00\x00\x00\x01\x01\x00\x00\x00'; head -c $((4 << 24)) /dev/zero; } > big.fbin
for sig in TERM INT HUP; do
  caught=0
  for attempt in 1 2 3; do
    rm -f c.fbin l.ivecs ./*.tmp-*
    "$cli" train big.fbin -q -k 2 --niter 1 -o c.fbin --labels l.ivecs 2> err.txt &
    pid=$!
    # the labels' temporary file exists once the centroids are in place
    for _ in $(seq 3000); do
      compgen -G 'l.ivecs.tmp-*' >/dev/null && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.01
    done
    kill -"$sig" "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    [ "$rc" -eq 0 ] && continue  # finished before the signal: try again
    caught=1
    want=$((128 + $(kill -l "$sig")))
    [ "$rc" -eq "$want" ] || { cat err.txt; fail "SIG$sig: exit code $rc, expected $want"; }
    [ ! -e c.fbin ] || fail "SIG$sig: the centroids written before the signal remain"
    [ ! -e l.ivecs ] || fail "SIG$sig: l.ivecs exists"
    compgen -G '*.tmp-*' >/dev/null && fail "SIG$sig: temporary files left: $(ls ./*.tmp-*)"
    echo "ok: SIG$sig while writing the labels: exit $rc, nothing left"
    break
  done
  [ "$caught" -eq 1 ] || fail "SIG$sig: the run ended three times before the signal landed"
done
