"""k-means as a PyTorch op: flashkm.torch.kmeans(x, k) on a (B, N, d) tensor.

For k-means inside a training or inference step (sparse-attention routing,
KV-cache clustering, token permutation): the tensor stays where it is, the
results come back as tensors on its device, and the work runs on PyTorch's
current stream of that device, so it orders with the step's other kernels.

    import torch, flashkm.torch
    keys = torch.randn(32, 8192, 128, device="cuda", dtype=torch.float16)
    labels, centroids = flashkm.torch.kmeans(keys, 64, niter=10, fast=True)
    # labels (32, 8192) int64 and centroids (32, 64, 128) float32, on the GPU

Each of the B problems is trained as a separate faiss.Kmeans would train it
(fkm_train_batched: the bits of B separate calls), in flashkm's own
arithmetic by default; fast=True takes the approximate FKM_ASSIGN_FAST path
(float16 / bfloat16 data, CUDA only). Unlike faiss.Kmeans, every point is
trained on unless max_points_per_centroid is given (FAISS subsamples above
256 points per centroid). The call returns when the results are computed:
its iterations run with no host synchronisation between them (the loop on
the device: nothing here needs the host between iterations), one after the
last for their statistics, where every iteration's records fit in 32 MiB
(niter B (8 k + 32) bytes); above that, one synchronisation per iteration.
There is no copy through host memory. CPU tensors run on the CPU engine.

A context (its device workspace, grown to the largest call and kept) is
held per device for the process; release_memory() frees them.
"""
import ctypes
import threading

from . import _arrays, _lib
from . import kmeans as _kmeans
from . import profile as _profile

_CUDA_STREAM_LEGACY = 1  # cudaStreamLegacy, driver_types.h
_contexts = {}
_contexts_lock = threading.Lock()


def _context(device):
    key = (device.type, device.index or 0)
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = _lib.Context("cuda" if device.type == "cuda" else "cpu", key[1])
            _contexts[key] = ctx
        return ctx


def release_memory():
    """Frees the device memory the contexts of flashkm.torch keep between
    calls (fkm_ctx_release_memory); the next call allocates it again."""
    with _contexts_lock:
        for ctx in _contexts.values():
            with ctx.lock:
                _lib.check(_lib.lib().fkm_ctx_release_memory(ctx.handle), ctx.handle)


def kmeans(x, k, niter=25, *, fast=False, spherical=False, seed=1234,
           max_points_per_centroid=None, min_points_per_centroid=39, init=None,
           profile="flashkm"):
    """Trains k centroids on each problem of x and assigns its points.

    x: (B, N, d) or (N, d) torch tensor, float32, float16 or bfloat16,
    C-contiguous, on a CUDA device or the CPU. init: optional (B, m, d)
    (or (m, d)) tensor of each problem's first m <= k centroids (the rest
    are seeded from the points, as FAISS does). spherical: inner-product
    k-means with normalised centroids. profile: a FAISS release whose
    arithmetic to reproduce (flashkm.profile), "flashkm" by default.

    Returns (labels, centroids): int64 (B, N) and float32 (B, k, d) tensors
    on x's device ((N,) and (k, d) for a 2-D x)."""
    import torch

    if not isinstance(x, torch.Tensor):
        raise TypeError("x must be a torch.Tensor, not %r" % type(x).__name__)
    squeeze = x.dim() == 2
    if squeeze:
        x = x.unsqueeze(0)
    if x.dim() != 3:
        raise ValueError("x must be (B, N, d) or (N, d), got shape %s" % (tuple(x.shape),))
    if x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise TypeError("x must be float32, float16 or bfloat16, not %s" % x.dtype)
    if not x.is_contiguous():
        raise ValueError("x must be C-contiguous (call .contiguous())")
    B, n, d = x.shape
    k = int(k)
    if k < 1 or n < k:
        raise ValueError("k = %d: need 1 <= k <= N = %d" % (k, n))
    dev = x.device
    if dev.type not in ("cuda", "cpu"):
        raise ValueError("x must be on a CUDA device or the CPU, not %s" % dev)
    prof = _profile.resolve(profile)
    cp = _kmeans.clustering_fields(prof)
    cp.update(niter=niter, spherical=spherical, seed=seed,
              min_points_per_centroid=min_points_per_centroid,
              max_points_per_centroid=(max(256, -(-n // k)) if max_points_per_centroid is None
                                       else max_points_per_centroid))
    metric = _lib.METRIC_INNER_PRODUCT if spherical else _lib.METRIC_L2
    p = _kmeans._make_params(cp, metric, fast, prof)

    # outputs: every row is written by the call (the first m from init)
    centroids = torch.empty((B, k, d), dtype=torch.float32, device=dev)
    labels = torch.empty((B, n), dtype=torch.int64, device=dev)
    n_init = 0
    if init is not None:
        init = init.unsqueeze(0) if init.dim() == 2 else init
        if init.dim() != 3 or init.shape[0] != B or init.shape[2] != d or init.shape[1] > k:
            raise ValueError("init must be (%d, <= %d, %d), got %s"
                             % (B, k, d, tuple(init.shape)))
        n_init = init.shape[1]
        centroids[:, :n_init].copy_(init)
    ctx = _context(dev)
    lib = _lib.lib()
    with _arrays.as_array(x, 3, "x") as X, ctx.lock:
        stream = None
        if dev.type == "cuda":
            # the default stream is handle 0 to PyTorch: cudaStreamLegacy
            # (0x1) names it to the library (NULL would be its own stream,
            # which does not wait for the default one)
            stream = torch.cuda.current_stream(dev).cuda_stream or _CUDA_STREAM_LEGACY
        _lib.check(lib.fkm_ctx_set_stream(ctx.handle, stream), ctx.handle)
        try:
            st = lib.fkm_train_batched(ctx.handle, ctypes.byref(p), B, n, d, k, X.dtype, X.ptr, None,
                                       centroids.data_ptr(), n_init, labels.data_ptr(), None,
                                       None, 0, None)
            _lib.check(st, ctx.handle)
        finally:
            lib.fkm_ctx_set_stream(ctx.handle, None)
    if squeeze:
        return labels[0], centroids[0]
    return labels, centroids
