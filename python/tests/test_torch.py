"""flashkm.torch.kmeans, the PyTorch door for k-means inside a training step:
its results are fkm_train_batched's (the bits of B separate runs), as tensors
on the input's device, for CPU tensors (CPU engine) and, where a GPU is, CUDA
tensors on PyTorch's current stream. Needs torch (the GPU machines have it;
Debian's CI machine does not, and skips this module saying so)."""
import numpy as np
import pytest

import flashkm
from conftest import blobs, cuda_or_skip

torch = pytest.importorskip("torch")
import flashkm.torch as fkt  # noqa: E402  (after the torch check)


DEVICES = ["cpu", "cuda"]


def batch(B, n, d, seed):
    return np.stack([blobs(n, d, 12, seed=seed + b) for b in range(B)]).astype(np.float32)


def separate(x, k, niter, cp=None, backend="cpu", fast=False):
    """Each problem through flashkm.Kmeans (labels from its assign)."""
    labels, cents = [], []
    for xb in x:
        km = flashkm.Kmeans(x.shape[2], k, niter=niter, backend=backend, profile="flashkm",
                            max_points_per_centroid=max(256, -(-x.shape[1] // k)), **(cp or {}))
        km.train(xb)
        cents.append(km.centroids)
        labels.append(km.assign(xb)[1])
    return np.stack(labels), np.stack(cents)


@pytest.mark.parametrize("device", DEVICES)
def test_kmeans_equals_separate_runs(device):
    if device == "cuda":
        cuda_or_skip()
    x = batch(3, 3000, 16, seed=5)
    labels, cents = fkt.kmeans(torch.from_numpy(x).to(device), 20, niter=8)
    assert labels.device.type == device and cents.device.type == device
    assert labels.dtype == torch.int64 and cents.dtype == torch.float32
    assert tuple(labels.shape) == (3, 3000) and tuple(cents.shape) == (3, 20, 16)
    want_l, want_c = separate(x, 20, 8, backend=device)
    np.testing.assert_array_equal(cents.cpu().numpy().view(np.uint32), want_c.view(np.uint32))
    np.testing.assert_array_equal(labels.cpu().numpy(), want_l)


@pytest.mark.parametrize("device", DEVICES)
def test_two_dimensional_input_and_initial_centroids(device):
    if device == "cuda":
        cuda_or_skip()
    x = batch(1, 2000, 8, seed=9)
    init = x[0, :5].copy()
    lab, cen = fkt.kmeans(torch.from_numpy(x[0]).to(device), 10, niter=5,
                          init=torch.from_numpy(init).to(device))
    assert tuple(lab.shape) == (2000,) and tuple(cen.shape) == (10, 8)
    km = flashkm.Kmeans(8, 10, niter=5, backend=device, profile="flashkm")
    km.train(x[0], init_centroids=init)
    np.testing.assert_array_equal(cen.cpu().numpy().view(np.uint32),
                                  km.centroids.view(np.uint32))


def test_the_current_stream_orders_the_work():
    """On a side stream: the results are there once that stream is
    synchronised, and equal the default stream's."""
    cuda_or_skip()
    x = torch.from_numpy(batch(4, 5000, 32, seed=1)).cuda().half()
    ref_l, ref_c = fkt.kmeans(x, 32, niter=6)
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        y = x * 1  # made on s: the call must run after it on s
        lab, cen = fkt.kmeans(y, 32, niter=6)
    s.synchronize()
    assert torch.equal(lab, ref_l) and torch.equal(cen, ref_c)


def test_fast_mode_on_half_precision():
    cuda_or_skip()
    x = torch.from_numpy(batch(2, 8192, 64, seed=3)).cuda().half()
    # k = 64: the tensor-core pass (below 64 centroids FAST gives the exact labels)
    lab, cen = fkt.kmeans(x, 64, niter=5, fast=True)
    assert tuple(cen.shape) == (2, 64, 64) and bool((lab >= 0).all()) and bool((lab < 64).all())
    lab2, cen2 = fkt.kmeans(x, 64, niter=5, fast=True)
    assert torch.equal(lab, lab2) and torch.equal(cen, cen2)  # deterministic


def test_bad_input_is_refused():
    x = torch.zeros(2, 100, 4)
    with pytest.raises(ValueError, match="k = 101"):
        fkt.kmeans(x, 101)
    with pytest.raises(TypeError, match="float32"):
        fkt.kmeans(x.double(), 4)
    with pytest.raises(ValueError, match="contiguous"):
        fkt.kmeans(x.transpose(1, 2), 2)
    with pytest.raises(ValueError, match="init must be"):
        fkt.kmeans(x, 4, init=torch.zeros(2, 5, 4))
    with pytest.raises(TypeError, match="torch.Tensor"):
        fkt.kmeans(x.numpy(), 4)
    with pytest.raises(flashkm.Error, match="FAST"):
        fkt.kmeans(x, 4, fast=True)  # fp32 data on the CPU: FAST needs fp16 on CUDA
