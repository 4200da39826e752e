#!/usr/bin/env bash
# Installs what flashkm builds and tests with, from Debian 12's packages.
# Idempotent; uses sudo when not root. FAISS 1.7.3 (libfaiss-dev,
# python3-faiss) is the pinned parity reference. Clang 14 with its runtime
# libraries and LLVM's OpenMP: the fuzzers and ThreadSanitizer. Real integer
# data for the parity tests: Fashion-MNIST, and scikit-learn's 8x8 digits
# (python3-sklearn ships them). PyTorch (CPU) for flashkm.torch's tests.
set -euo pipefail
pkgs=(cmake g++ make pkg-config zlib1g-dev libopenblas-dev libfaiss-dev
      python3-faiss python3-numpy python3-pytest python3-venv libgtest-dev
      dataset-fashion-mnist clang-14 libclang-rt-14-dev libomp-14-dev
      libopenmpi-dev openmpi-bin python3-mpi4py python3-sklearn
      python3-torch)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
