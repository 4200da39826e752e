#!/usr/bin/env bash
# Every output gets the mode a plain create gives (0666 less the umask), the
# FAISS index too: the temporary files they are written to start at 0600.
# usage: output_modes.sh FLASHKM INPUT WORKDIR [with-faiss]
set -u
cli=$(realpath "$1") input=$(realpath "$2") work=$3 faiss=${4:-}
rm -rf "$work" && mkdir -p "$work" && cd "$work" || exit 1
fail() { echo "FAILED: $*"; exit 1; }
for mask in 022 077 002; do
  rm -f c.fbin l.npy r.json i.faiss
  (umask "$mask" && "$cli" train "$input" -q -k 12 --niter 2 -o c.fbin --labels l.npy \
     --json r.json) || fail "train exited $?"
  files="c.fbin l.npy r.json"
  if [ -n "$faiss" ]; then
    (umask "$mask" && "$cli" build-ivf "$input" -q --factory IVF4,Flat -o i.faiss) ||
      fail "build-ivf exited $?"
    files="$files i.faiss"
  fi
  want=$(printf '%o' $((0666 & ~0$mask)))
  for f in $files; do
    got=$(stat -c %a "$f")
    [ "$got" = "$want" ] || fail "umask $mask: $f has mode $got, expected $want"
  done
  echo "ok: umask $mask: $files are $want"
done
