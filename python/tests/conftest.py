"""Shared fixtures. The C library comes from FLASHKM_LIBRARY (the README's
test command points it at BUILD/plugin/libflashkm.so)."""
import os
import sys

# Passive OpenMP waits (read when FAISS and flashkm load, after this): FAISS's
# short parallel loops otherwise spin on a loaded CI machine. Results do not
# depend on it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def blobs(n, d, centers, seed=0, spread=1.0):
    """Gaussian blobs in float32: continuous values, so no exact ties."""
    rs = np.random.RandomState(seed)
    c = rs.randn(centers, d) * 5
    return (c[rs.randint(0, centers, n)] + spread * rs.randn(n, d)).astype(np.float32)


FASHION_MNIST = os.environ.get("FLASHKM_FASHION_MNIST",
                               "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def fashion_mnist(n):
    """The first n Fashion-MNIST training images as (n, 784) float32 pixels
    (Debian's dataset-fashion-mnist), or None when it is not installed."""
    import gzip
    if not os.path.exists(FASHION_MNIST):
        return None
    with gzip.open(FASHION_MNIST, "rb") as f:
        head = np.frombuffer(f.read(16), dtype=">u4")
        assert head[0] == 0x803, "not an idx3 file"
        rows, cols = int(head[2]), int(head[3])
        n = min(n, int(head[1]))
        pix = np.frombuffer(f.read(n * rows * cols), dtype=np.uint8)
    return pix.reshape(n, rows * cols).astype(np.float32)


def cuda_or_skip():
    """GPU tests skip cleanly where no CUDA device (or no CUDA build) is."""
    import flashkm
    try:
        flashkm.Context("cuda").close()
    except flashkm.Error as e:
        pytest.skip("no CUDA device: %s" % e)


# FLASHKM_DIGITS names the same file elsewhere (a GPU machine without sklearn)
DIGITS = os.environ.get("FLASHKM_DIGITS",
                        "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz")


def digits():
    """scikit-learn's 8x8 digits as (1797, 64) float32 pixels 0-16 (Debian's
    python3-sklearn ships the file; read here without importing sklearn),
    or None when it is not installed."""
    if not os.path.exists(DIGITS):
        return None
    a = np.loadtxt(DIGITS, delimiter=",", dtype=np.float32)
    return np.ascontiguousarray(a[:, :64])  # the last column is the label


@pytest.fixture(scope="session")
def x():
    return blobs(5000, 16, 20)


@pytest.fixture(scope="session")
def faiss():
    return pytest.importorskip("faiss")
