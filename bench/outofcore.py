#!/usr/bin/env python3
"""Out of core, one process, one GPU: flashkm streaming a training set from
pinned host memory every iteration against flash-kmeans' own out-of-core
path (flash_kmeans.kmeans_large.kmeans_largeN), on the same tensor.

For each dtype (float32, float16): N x D random normal rows in pinned host
memory (torch pin_memory), K centroids, every row trained on.
  - flashkm: fkm_train through the Python package with memory_budget set so
    that the training set cannot be resident (it streams in chunks, two
    device buffers, copies beside the work); parity mode, and FAST mode on
    float16. ms/iter: the median over iterations 1.. of the wall time between
    iteration ends (its statistics). The same call in core (no budget) where
    the training set fits the device: issue 16's bar is the streamed
    iteration within 1.2x of max(bus floor, in core).
  - flash-kmeans: kmeans_largeN (chunks of 2^20 rows, two streams) with
    max_iters 1 and 1 + ITERS (tol -1), after a warm-up call; ms/iter =
    (T(1 + ITERS) - T(1)) / ITERS of wall time.
The bus floor is the training set's bytes over the pinned host-to-device
rate measured in this run.

Usage:
  FLASHKM_LIBRARY=build/plugin/libflashkm.so PYTHONPATH=python[:path/to/flash-kmeans] \\
    python3 bench/outofcore.py [--n 64M] [--k 16384] [--d 128] [--iters 3] [--budget-gb 16] \
      [--no-peer] [--no-in-core] [--dtypes float16]
FLASHKM_CUDA_STREAM=copy-widen / no-prefetch (README) time the streamed path as it was.
"""
import argparse
import statistics
import time

import torch

import flashkm


def rows(text):
    t = text.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(t[-1:], 1)
    return int(float(t[:-1] if t[-1:] in "KMG" else t) * mult)


def pinned_rate(nbytes=1 << 30):
    h = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
    g = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    best = 1e9
    for _ in range(3):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        g.copy_(h, non_blocking=True)
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return nbytes / best / 1e9


def flashkm_ms(x, k, iters, budget, fast):
    km = flashkm.Kmeans(x.shape[1], k, niter=1 + iters, backend="cuda", fast=fast,
                        max_points_per_centroid=x.shape[0] // k + 1, min_points_per_centroid=0,
                        memory_budget=budget, profile="flashkm")
    km.train(x)
    t = [s["time"] for s in km.iteration_stats]
    return 1e3 * statistics.median([b - a for a, b in zip(t, t[1:])])


def flash_kmeans_ms(x, k, iters):
    from flash_kmeans.kmeans_large import kmeans_largeN

    def run(n_iter):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        kmeans_largeN(x, n_clusters=k, max_iters=n_iter, tol=-1)
        torch.cuda.synchronize()
        return time.perf_counter() - t0

    run(1)  # warm-up: Triton compiles
    return 1e3 * (run(1 + iters) - run(1)) / iters


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="64M")
    ap.add_argument("--k", type=int, default=16384)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--budget-gb", type=float, default=16.0)
    ap.add_argument("--no-peer", action="store_true", help="skip flash-kmeans (its column: nan)")
    ap.add_argument("--no-in-core", action="store_true",
                    help="skip flashkm's in-core call (its column: nan)")
    ap.add_argument("--dtypes", default="float32,float16",
                    help="the data types to time, in order (float16 alone halves the host "
                         "memory a run of a given n needs)")
    args = ap.parse_args()
    known = {"float32": torch.float32, "float16": torch.float16}
    names = [t.strip() for t in args.dtypes.split(",")]
    if not names or any(t not in known for t in names):
        ap.error("--dtypes: a list of float32 and float16")
    dtypes = [known[t] for t in names]
    n, k, d = rows(args.n), args.k, args.d
    budget = int(args.budget_gb * (1 << 30))
    rate = pinned_rate()
    print("device: %s; pinned host-to-device %.1f GB/s; %d x %d, k = %d, budget %.1f GiB"
          % (torch.cuda.get_device_name(), rate, n, d, k, args.budget_gb))
    print("| data | flashkm mode | flashkm ms/iter | bus floor ms/iter | flashkm in core ms/iter | "
          "streamed / max(floor, in core) | flash-kmeans ms/iter | flash-kmeans / flashkm |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype in dtypes:
        g = torch.Generator(device="cuda").manual_seed(11)
        x = torch.empty((n, d), dtype=dtype, pin_memory=True)
        step = 1 << 22
        for i in range(0, n, step):
            x[i:i + step].copy_(torch.randn((min(step, n - i), d), device="cuda", generator=g)
                                .to(dtype))
        floor = x.numel() * x.element_size() / (rate * 1e9) * 1e3
        peer = float("nan")
        try:
            if not args.no_peer:
                peer = flash_kmeans_ms(x, k, args.iters)
        except Exception as e:  # reported, not hidden
            print("flash-kmeans failed: %r" % (e,))
        modes = [("parity", False)] + ([("FAST", True)] if dtype == torch.float16 else [])
        for name, fast in modes:
            ours = flashkm_ms(x, k, args.iters, budget, fast)
            core = float("nan")
            try:
                if not args.no_in_core:
                    core = flashkm_ms(x, k, args.iters, 0, fast)
            except flashkm.Error as e:  # does not fit the device: said, not hidden
                if e.name != "FKM_ERR_OUT_OF_MEMORY":
                    raise
                print("in core: %s" % (e,))
            print("| %s | %s | %.1f | %.1f | %.1f | %.2fx | %.1f | %.2fx |"
                  % (str(dtype).split(".")[1], name, ours, floor, core,
                     ours / max(floor, core), peer, peer / ours), flush=True)
        del x


if __name__ == "__main__":
    main()
