#!/usr/bin/env bash
# `flashkm build-ivf` writes a real FAISS index: stock FAISS (Debian's
# python3-faiss) reads it, finds every vector in it and searches it.
# usage: faiss_reads_index.sh FLASHKM FIXTURES WORKDIR; exit 77 (skip) without python3-faiss.
set -eu
cli=$1 fix=$2 work=$3
/usr/bin/python3 -c "import faiss, numpy" 2>/dev/null || { echo "python3-faiss missing: skip"; exit 77; }
rm -rf "$work" && mkdir -p "$work" && cd "$work"
"$cli" build-ivf -q "$fix/blobs.fbin" --factory "IVF16,Flat" -o index.faiss
/usr/bin/python3 - "$fix/blobs.fbin" <<'PY'
import sys
import faiss, numpy as np
raw = np.fromfile(sys.argv[1], dtype=np.int32, count=2)
x = np.fromfile(sys.argv[1], dtype=np.float32, offset=8).reshape(int(raw[0]), int(raw[1]))
index = faiss.read_index("index.faiss")
ivf = faiss.extract_index_ivf(index)
assert index.ntotal == x.shape[0], index.ntotal
assert ivf.nlist == 16 and index.is_trained
ivf.nprobe = 16
D, I = index.search(x[:50], 5)   # all lists probed: exact search
assert (I[:, 0] == np.arange(50)).all(), I[:, 0]
assert (D[:, 0] == 0).all(), D[:, 0]
print("ok: read_index, ntotal %d, every query finds itself" % index.ntotal)
PY
