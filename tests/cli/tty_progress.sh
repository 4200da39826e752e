#!/usr/bin/env bash
# On a terminal, `flashkm train` shows one live progress line, rewritten in
# place each iteration (carriage return + erase line), ending in a summary.
# usage: tty_progress.sh FLASHKM INPUT WORKDIR; exit 77 (skip) without script(1).
set -eu
cli=$1 input=$2 work=$3
command -v script >/dev/null || { echo "script(1) missing: skip"; exit 77; }
rm -rf "$work" && mkdir -p "$work" && cd "$work"
script -qec "'$cli' train '$input' -k 12 --niter 5 -o c.fbin" /dev/null > tty.txt < /dev/null
fail() { echo "FAILED: $*"; cat -v tty.txt; exit 1; }
# Five rewrites of the line, none of them ending in a newline, then the summary.
[ "$(grep -o $'\r\033\\[Kiter [1-5]/5  obj' tty.txt | wc -l)" -eq 5 ] || fail "not 5 live updates"
grep -qzP 'iter 5/5[^\n]*ETA 0\.0 s\r*\ndone: 5 iterations' tty.txt || fail "no summary after the live line"
[ -s c.fbin ] || fail "no output"
echo "ok: live line on a terminal"
