#!/usr/bin/env python3
"""The cost of following FAISS's BLAS order on the GPU (docs/profiles.md,
"The BLAS's order on the GPU"): flashkm.Kmeans on the CUDA engine with the
imported faiss's BLAS (its learned order decides near-ties, the default of
the Python door) against the same call in flashkm's own order (the profile's
BLAS removed), on Fashion-MNIST and on clustered random data at BENCH.md's
shape; and, where faiss is importable, whether the centroids equal
faiss.Kmeans's bit for bit.

For each case: a warm-up call of each mode (the first pays the CUDA start
and the learning of the BLAS's order), then REPS timed calls each; printed:
the median whole call, the median per-iteration time (the iteration
statistics' time differences), the assignment time per iteration, and from
the engine's verbose lines the rows per iteration the cascade left to a full
replay and the rows decided over two candidates in the BLAS's order.

Usage (the machine's faiss, e.g. pip's faiss-cpu, importable):
  FLASHKM_LIBRARY=build/plugin/libflashkm.so PYTHONPATH=python \\
    python3 bench/blas_order_cost.py [--fashion PATH] [--reps 3] [--compare-faiss] \\
      [--cases fashion256,fashion1024,random] [--modes blas,staged,own]
"""
import argparse
import collections
import contextlib
import copy
import gzip
import io
import os
import re
import statistics
import time

import numpy as np

import faiss
import flashkm


def fashion(path, n=60000):
    with gzip.open(path, "rb") as f:
        head = np.frombuffer(f.read(16), dtype=">u4")
        rows, cols = int(head[2]), int(head[3])
        n = min(n, int(head[1]))
        pix = np.frombuffer(f.read(n * rows * cols), dtype=np.uint8)
    return pix.reshape(n, rows * cols).astype(np.float32)


def blobs(n, d, centers, seed=0):
    rs = np.random.RandomState(seed)
    c = rs.randn(centers, d).astype(np.float32) * 4
    return c[rs.randint(0, centers, n)] + rs.randn(n, d).astype(np.float32)


# one timed call: wall, median iteration and assignment seconds; per-iteration row
# counts from the verbose phase lines (refined: left by the fp16 passes; full:
# replayed in full after the float32 narrowing; two: decided over two candidates)
Call = collections.namedtuple("Call", "wall per_iter search refined full two learned")


def one_call(km, x):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        t0 = time.perf_counter()
        km.train(x)
        wall = time.perf_counter() - t0
    st = km.iteration_stats
    per_iter = statistics.median(st[i]["time"] - st[i - 1]["time"] for i in range(1, len(st)))
    search = (st[-1]["time_search"] - st[0]["time_search"]) / max(1, len(st) - 1)
    text = out.getvalue()
    refined = [int(v) for v in re.findall(r"refined (\d+)", text)]
    full = [int(v) for v in re.findall(r"replayed in full after the float32 narrowing (\d+)", text)]
    two = [int(v) for v in re.findall(r"two candidates in the BLAS's order (\d+)", text)]
    learned = re.findall(r"the BLAS's order of sgemm.*", text)
    return Call(wall, per_iter, search, refined, full, two, learned)


def case(name, x, k, niter, reps, compare, modes):
    print("== %s: %d x %d, k = %d, niter %d" % (name, x.shape[0], x.shape[1], k, niter))
    for m in modes:
        own = m == "own"
        # one context per mode: its first call uploads the BLAS's order (the
        # process learns it once), the timed calls reuse it; "staged": the
        # laned replays from rows staged in shared memory (the default),
        # "blas" and "own" from global memory (FLASHKM_CUDA_REPLAY=global;
        # read when the Kmeans' context is created, in its first call)
        km = flashkm.Kmeans(x.shape[1], k, niter=niter, backend="cuda", verbose=True)
        if own:  # a copy: the detected profile is shared by every Kmeans
            km.profile = copy.copy(km.profile)
            km.profile.blas = None
        os.environ["FLASHKM_CUDA_REPLAY"] = "staged" if m == "staged" else "global"
        first = one_call(km, x)
        os.environ.pop("FLASHKM_CUDA_REPLAY", None)
        runs = [one_call(km, x) for _ in range(reps)]
        mode = {"own": "flashkm's order", "blas": "the BLAS's order",
                "staged": "BLAS order, staged"}[m]
        print("  %-17s whole call %8.2f ms   per iteration %7.3f ms   assign/iter %7.3f ms "
              "(first call %.2f ms)" % (
                  mode, 1e3 * statistics.median(r.wall for r in runs),
                  1e3 * statistics.median(r.per_iter for r in runs),
                  1e3 * statistics.median(r.search for r in runs), 1e3 * first.wall))
        last = runs[-1]
        if last.refined:
            # with the float32 narrowing (a laned scan or a BLAS's order) only
            # some of the rows the fp16 passes left are replayed in full
            print("  %-17s rows per iteration: left by the fp16 passes %s, replayed in full %s, "
                  "decided over two candidates %s" % (
                      "", statistics.median(last.refined),
                      statistics.median(last.full or last.refined),
                      statistics.median(last.two) if last.two else "-"))
        for line in first.learned:
            print("  %-17s %s" % ("", line))
        if compare and not own:  # the BLAS's order, staged or not
            fk = faiss.Kmeans(x.shape[1], k, niter=niter)
            fk.train(x)
            same = np.array_equal(fk.centroids.view(np.uint32), km.centroids.view(np.uint32))
            objs = np.array_equal(np.asarray(km.obj, dtype=np.float32),
                                  np.asarray(fk.obj, dtype=np.float32))
            print("  %-17s centroids equal faiss.Kmeans bit for bit: %s; objective: %s" % (
                "", same, objs))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--fashion", default=os.environ.get(
        "FLASHKM_FASHION_MNIST", "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--compare-faiss", action="store_true")
    ap.add_argument("--cases", default="fashion256,fashion1024,random",
                    help="comma-separated subset of fashion256, fashion1024, random")
    ap.add_argument("--modes", default="blas,own",
                    help="comma-separated subset of blas (the BLAS's order, replays from "
                         "global memory: FLASHKM_CUDA_REPLAY=global), staged (the same, rows "
                         "staged in shared memory: the default), own (flashkm's)")
    a = ap.parse_args()
    modes = a.modes.split(",")
    if set(modes) - {"blas", "staged", "own"}:
        ap.error("--modes takes blas, staged and/or own")
    cases = a.cases.split(",")
    unknown = set(cases) - {"fashion256", "fashion1024", "random"}
    if unknown:
        ap.error("unknown case(s): %s" % ", ".join(sorted(unknown)))
    print("faiss", faiss.__version__, "BLAS threads", faiss.omp_get_max_threads())
    for k in (256, 1024):
        if "fashion%d" % k in cases:
            case("Fashion-MNIST", fashion(a.fashion), k, 10, a.reps, a.compare_faiss, modes)
    if "random" in cases:
        case("clustered random", blobs(1 << 20, 128, 1000), 1024, 10, a.reps, False, modes)


if __name__ == "__main__":
    main()
