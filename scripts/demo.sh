#!/usr/bin/env bash
# README command one: on a fresh Debian 12 machine, install what is needed
# (apt-get as root, sudo otherwise), configure, build the flashkm command and
# run `flashkm demo`: Fashion-MNIST, an IVF1024,Flat index trained by flashkm
# and by stock FAISS, their times, the speedup, the parity verdict and recall.
# Extra arguments go to `flashkm demo` (e.g. --nprobe 32, --backend cpu).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-deps.sh
BUILD=${BUILD:-build}
# nvcc is looked for on PATH and in CUDA's default prefix: the CUDA engine is
# built when it is there, and the demo runs on the GPU when one is present.
if [ -x /usr/local/cuda/bin/nvcc ]; then export PATH="$PATH:/usr/local/cuda/bin"; fi
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release ${CMAKE_ARGS:-}
cmake --build "$BUILD" -j"$(nproc)" --target flashkm_cli
exec "$BUILD/cli/flashkm" demo "$@"
