#!/usr/bin/env python3
"""Side-by-side timing in one process on one GPU: flashkm against the peers.

For each BENCH.md shape it times one Lloyd iteration (assignment + update)
of
  - flashkm, parity mode (FKM_ASSIGN_FAISS, the default) on float32 data,
  - flashkm, FKM_ASSIGN_FAST on float16 data,
  - flash-kmeans (the paper's Triton library) on the same tensors, float32
    (its tf32 path) and float16, when `import flash_kmeans` works,
  - FAISS k-means (GPU when the installed FAISS has it), when `import faiss`
    works and --no-faiss is not given,
and prints one table: ms per iteration, TFLOP/s, the fp16 floor, and each
ratio. Data is random normal, generated on the GPU with a fixed seed; every
input set is larger than L2.

flashkm's time per iteration is the median over iterations 2..niter-1 of the
wall time between the ends of consecutive iterations, from fkm_train_batched's
own statistics (each iteration ends at its one host synchronisation, so whole
iterations are timed; for a batch, every problem's iteration ends there) on
device-resident data;
flash-kmeans' is the median of CUDA-event-timed calls of its single-iteration
function (assignment + sorted centroid update), after warm-up.

--shapes online is the set of issue 17 (k-means as an online primitive:
batches of small problems, fp16 keys, the video-diffusion call): whole calls
as a PyTorch user makes them, flashkm.torch.kmeans against flash-kmeans'
batch_kmeans_Euclid on the same tensors (median wall time of synchronised
calls after one warm-up: at least 5, as many as fill 0.3 s, at most 51), with flashkm's per-iteration time from its
statistics and flash-kmeans' from CUDA events around its iteration.

Usage:
  FLASHKM_LIBRARY=build/plugin/libflashkm.so PYTHONPATH=python[:path/to/flash-kmeans] \
    python3 bench/compare.py [--shapes quick|core|batched|large|full|online] [--niter 12] [--out FILE.md]
      [--graphs off|on|both] [--match B=16,B=64]
Needs torch with CUDA. Peers that do not import are reported as absent.
"""
import argparse
import ctypes
import os
import statistics
import sys
import time

import torch

from flashkm import _lib

FP16_TFLOPS = 763.0   # BENCH.md, measured on an H200 (dense fp16 8192^3)
HBM_TBPS = 4.2        # BENCH.md, device-to-device copy, read + written

# name: (batch, n, k, d)
SHAPE = {
    "1M x 1024": (1, 1 << 20, 1024, 128),
    "1M x 8192": (1, 1 << 20, 8192, 128),
    "8M x 1024": (1, 8 << 20, 1024, 128),
    "32 x 64k x 1024": (32, 65_536, 1024, 128),
    "200k x 4096": (1, 200_000, 4096, 128),
    "1M x 256": (1, 1 << 20, 256, 128),
    "16M x 4096": (1, 16 << 20, 4096, 128),
    "4.19M x 65536": (1, 1 << 22, 65_536, 128),
    "1M x 1024 d768": (1, 1 << 20, 1024, 768),
}
# the sets, in the order they run: (name, batch, n, k, d)
SHAPES = {
    key: [(name,) + SHAPE[name] for name in names]
    for key, names in {
        "core": ["1M x 1024", "1M x 8192", "200k x 4096", "32 x 64k x 1024"],
        "quick": ["1M x 1024", "1M x 8192", "200k x 4096", "1M x 256", "32 x 64k x 1024",
                  "1M x 1024 d768"],
        "batched": ["32 x 64k x 1024"],
        "large": ["8M x 1024", "16M x 4096", "4.19M x 65536"],
        "full": list(SHAPE),
    }.items()
}


# issue 17's online set: (name, batch, n, k, d, niter)
ONLINE = [
    ("B=1, N=8192, K=64", 1, 8192, 64, 128, 10),
    ("B=16, N=8192, K=64", 16, 8192, 64, 128, 10),
    ("B=64, N=8192, K=64", 64, 8192, 64, 128, 10),
    ("B=256, N=1024, K=16, d=64", 256, 1024, 16, 64, 10),
    ("B=1024, N=256, K=8, d=64", 1024, 256, 8, 64, 10),
    ("B=4, N=100k, K=4096, d=256", 4, 100_000, 4096, 256, 10),
    ("(32, 75600, 128), K=1000", 32, 75_600, 1000, 128, 20),
]


def floor_ms(b, n, k, d):
    """BENCH.md's floor: max(fp16 tensor time, one read of x) + one more read."""
    flop = 2.0 * b * n * k * d
    xbytes = 2.0 * b * n * d
    return max(flop / (FP16_TFLOPS * 1e9), xbytes / (HBM_TBPS * 1e9)) + xbytes / (HBM_TBPS * 1e9)


class Flashkm:
    name = "flashkm"

    def __init__(self):
        self.lib = _lib.lib()
        f = self.lib.fkm_train_batched
        i64, vp = ctypes.c_int64, ctypes.c_void_p
        f.restype = ctypes.c_int
        f.argtypes = [vp, ctypes.POINTER(_lib.Params), i64, i64, i64, i64, ctypes.c_int, vp,
                      vp, vp, i64, vp, vp, ctypes.POINTER(_lib.IterationStats), i64,
                      ctypes.POINTER(i64)]
        self.ctx = _lib.Context("cuda")
        self.device = self.ctx.device_name

    @staticmethod
    def params(n, k, niter, fast):
        """fkm_params of a timed call: every one of the n rows trained on."""
        p = _lib.default_params()
        p.niter = niter
        p.max_points_per_centroid = n // k + 1   # time the whole N, no subsampling
        p.min_points_per_centroid = 0
        p.assign_mode = _lib.ASSIGN_FAST if fast else _lib.ASSIGN_FAISS
        return p

    def run(self, x, b, n, k, d, niter, fast):
        """Per-iteration wall seconds (iterations 1..niter-1) of one
        fkm_train_batched call, from its statistics (problem 0's)."""
        p = self.params(n, k, niter, fast)
        dtype = _lib.DTYPE_F16 if x.dtype == torch.float16 else _lib.DTYPE_F32
        cent = torch.empty((b, k, d), device="cuda", dtype=torch.float32)
        stats = (_lib.IterationStats * (b * niter))()
        nstats = (ctypes.c_int64 * b)()
        torch.cuda.synchronize()
        st = self.lib.fkm_train_batched(self.ctx.handle, ctypes.byref(p), b, n, d, k, dtype,
                                        x.data_ptr(), None, cent.data_ptr(), 0, None, None,
                                        stats, niter, nstats)
        torch.cuda.synchronize()
        _lib.check(st, self.ctx.handle)
        return [stats[i].time - stats[i - 1].time for i in range(1, nstats[0])]

    def ms_per_iter(self, x, b, n, k, d, niter, fast):
        """Median of iterations 2..niter-1 (0 and 1 are warm-up)."""
        self.run(x, b, n, k, d, 2, fast)  # warm-up: module load, allocations
        return 1e3 * statistics.median(self.run(x, b, n, k, d, niter, fast)[1:])


class FlashKmeans:
    name = "flash-kmeans"

    def __init__(self):
        from flash_kmeans.kmeans_triton_impl import _euclid_iter, batch_kmeans_Euclid
        self.iter = _euclid_iter
        self.batch = batch_kmeans_Euclid

    def ms_per_iter(self, x, b, n, k, d, niter, fast):
        del fast
        x3 = x.view(b, n, d)
        x_sq = (x3.float() ** 2).sum(-1).to(x3.dtype)
        g = torch.Generator(device="cuda").manual_seed(7)
        idx = torch.randint(0, n, (b, k), device="cuda", generator=g)
        cent = torch.gather(x3, 1, idx[..., None].expand(-1, -1, d)).contiguous()
        times = []
        for it in range(niter):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            cent, _, _ = self.iter(x3, x_sq, cent)
            e1.record()
            torch.cuda.synchronize()
            if it >= 2:
                times.append(e0.elapsed_time(e1))
        return statistics.median(times)


class FaissGpu:
    name = "FAISS"

    def __init__(self):
        import faiss
        self.faiss = faiss
        self.gpu = faiss.get_num_gpus() > 0

    def ms_per_iter(self, x, b, n, k, d, niter, fast):
        if fast or b > 1:
            return None
        xs = x.float().cpu().numpy()
        km = self.faiss.Kmeans(d, k, niter=niter, gpu=self.gpu,
                               max_points_per_centroid=n // k + 1)
        t0 = time.perf_counter()
        km.train(xs)
        return 1e3 * (time.perf_counter() - t0) / niter


WHOLE_MIN_REPS, WHOLE_MIN_S, WHOLE_MAX_REPS = 5, 0.3, 51


def whole_ms(fn, label=""):
    """Median wall milliseconds of synchronised calls after a warm-up: at
    least WHOLE_MIN_REPS, then more until WHOLE_MIN_S seconds were spent,
    at most WHOLE_MAX_REPS (a small call's median over five varied by 1.5x
    between two runs of one tree: results v42). When the slowest call takes
    over 1.5 times the fastest, the count, the median and the extremes go to
    stderr with the label (some runs' whole calls took twice their usual
    time with per-iteration times unchanged: the spread tells one slow call
    from a slow run)."""
    fn()
    times = []
    while len(times) < WHOLE_MIN_REPS or (sum(times) < 1e3 * WHOLE_MIN_S and
                                          len(times) < WHOLE_MAX_REPS):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(1e3 * (time.perf_counter() - t0))
    med = statistics.median(times)
    if max(times) > 1.5 * min(times):
        print("# whole-call times %s (ms): %d calls, median %.2f, fastest %.2f, slowest %.2f"
              % (label, len(times), med, min(times), max(times)), file=sys.stderr, flush=True)
    return med


def graph_contexts(mode):
    """flashkm's contexts with the in-core iteration as a CUDA graph or not
    (FLASHKM_CUDA_GRAPH, read when a context is created): flashkm.torch's
    cached contexts are dropped so that the next call makes new ones."""
    import flashkm.torch as fkt
    os.environ["FLASHKM_CUDA_GRAPH"] = mode
    fkt.release_memory()
    with fkt._contexts_lock:
        for ctx in fkt._contexts.values():
            ctx.close()
        fkt._contexts.clear()
    return Flashkm()


def matching(match, calls=ONLINE):
    """The calls (name first) whose names start with one of match's
    comma-separated prefixes (all of them when match is empty)."""
    prefixes = match.split(",") if match else None
    return [c for c in calls if not prefixes or any(c[0].startswith(m) for m in prefixes)]


def online(args, ours, flash):
    """Issue 17's table: whole calls and iterations, flashkm.torch against
    flash-kmeans, the same tensors; with --graphs both, flashkm's columns
    twice, its iterations eager and as a CUDA graph (one row each)."""
    import flashkm.torch as fkt
    modes = {"off": ["0"], "on": ["1"], "both": ["0", "1"]}[args.graphs]
    head = ("| call | niter | flashkm FAST fp16: whole / per iter ms | flashkm parity fp16 data | "
            "flashkm parity fp32 | flash-kmeans fp16 | flash-kmeans fp32 (tf32) | "
            "fp16 / FAST (target 2x) | fp16 / parity fp16 (1x) | fp32 / parity fp32 (1.5x) |")
    lines = ["device: %s; torch %s; whole call: median wall time of synchronised calls "
             "after a warm-up (at least %d, as many as fill %.1f s, at most %d); per iteration: flashkm's statistics (median of iterations "
             "2..), flash-kmeans' CUDA events around its iteration" %
             (ours.device, torch.__version__, WHOLE_MIN_REPS, WHOLE_MIN_S, WHOLE_MAX_REPS), "", head, "|" + "---|" * (head.count("|") - 1)]
    print("\n".join(lines), flush=True)
    g = torch.Generator(device="cuda").manual_seed(1234)
    current = None  # the graph mode flashkm's contexts were made with
    for name, b, n, k, d, niter in matching(args.match):
        x32 = torch.randn((b, n, d), device="cuda", dtype=torch.float32, generator=g)
        x16 = x32.half()
        peer_cells, peer = [], {}
        for key, x in (("f16", x16), ("f32", x32)):
            if flash is None:
                peer_cells.append("-")
                continue
            w = whole_ms(lambda: flash.batch(x, k, max_iters=niter, tol=-1.0),
                         label="%s flash-kmeans %s" % (name, key))
            it = flash.ms_per_iter(x.view(b * n, d), b, n, k, d, max(niter, 4), False)
            peer[key] = w
            peer_cells.append("%.2f / %.3f" % (w, it))
        for mode in modes:
            if mode != current:
                ours, current = graph_contexts(mode), mode
            cells, whole = [], dict(peer)
            for key, x, fast in (("fast", x16, True), ("p16", x16, False), ("p32", x32, False)):
                try:
                    w = whole_ms(lambda: fkt.kmeans(x, k, niter=niter, fast=fast),
                                 label="%s flashkm %s" % (name, key))
                    it = ours.ms_per_iter(x.view(b * n, d), b, n, k, d, max(niter, 4), fast)
                    whole[key] = w
                    cells.append("%.2f / %.3f" % (w, it))
                except _lib.Error as e:
                    print("# flashkm %s %s: %s" % (name, key, e), file=sys.stderr)
                    cells.append("-")
            r = [ratio(whole.get(a), whole.get(o)) for a, o in
                 (("f16", "fast"), ("f16", "p16"), ("f32", "p32"))]
            label = name + (" [eager]" if mode == "0" else "")
            row = "| %s | %d | %s | %s | %s |" % (label, niter, " | ".join(cells),
                                                " | ".join(peer_cells), " | ".join(r))
            print(row, flush=True)
            lines.append(row)
        del x32, x16
        torch.cuda.empty_cache()
    return lines


def try_peer(cls):
    try:
        return cls()
    except Exception as e:  # a peer that is not installed is reported, not fatal
        print("# %s: not available here (%s)" % (cls.name, e.__class__.__name__), file=sys.stderr)
        return None


def fmt(v):
    return "-" if v is None else "%.3f" % v


def ratio(peer, ours):
    return "-" if peer is None or ours is None else "%.2fx" % (peer / ours)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", choices=sorted(SHAPES) + ["online"], default="quick")
    ap.add_argument("--niter", type=int, default=12)
    ap.add_argument("--out", help="also write the table to this markdown file")
    ap.add_argument("--graphs", choices=("off", "on", "both"), default="on",
                    help="online set: flashkm's iterations eager (FLASHKM_CUDA_GRAPH=0), "
                         "as one CUDA graph (the default), or both, a row each")
    ap.add_argument("--match", help="only the calls (shapes) whose names start with one of "
                                     "these comma-separated prefixes (e.g. B=16,B=64 or 8M)")
    ap.add_argument("--no-faiss", action="store_true",
                    help="leave FAISS's k-means out (a CPU-only FAISS takes seconds an "
                         "iteration at the large shapes)")
    args = ap.parse_args()
    if args.niter < 4:
        ap.error("--niter must be at least 4 (two warm-up iterations are dropped)")

    ours = Flashkm()
    flash = try_peer(FlashKmeans)
    if args.shapes == "online":
        lines = online(args, ours, flash)
        if args.out:
            with open(args.out, "w") as f:
                f.write("\n".join(lines) + "\n")
        return
    faiss = None if args.no_faiss else try_peer(FaissGpu)
    head = ("| shape (B x N, K, d) | data | flashkm mode | flashkm ms/iter | TFLOP/s | "
            "fp16 floor ms | flashkm / floor | flash-kmeans ms/iter | flash-kmeans / flashkm | "
            "FAISS ms/iter | FAISS / flashkm |")
    sep = "|" + "---|" * (head.count("|") - 1)
    lines = ["device: %s; torch %s; niter %d (all: median of iterations 2..%d; flashkm: "
             "wall time between iteration ends, from its statistics; flash-kmeans: CUDA "
             "events around each call)" %
             (ours.device, torch.__version__, args.niter, args.niter - 1), "", head, sep]
    print("\n".join(lines), flush=True)
    g = torch.Generator(device="cuda").manual_seed(1234)
    for name, b, n, k, d in matching(args.match, SHAPES[args.shapes]):
        x32 = torch.randn((b * n, d), device="cuda", dtype=torch.float32, generator=g)
        for dtype, fast in ((torch.float32, False), (torch.float16, True)):
            x = x32 if dtype == torch.float32 else x32.half()
            try:
                ms = ours.ms_per_iter(x, b, n, k, d, args.niter, fast)
            except _lib.Error as e:
                print("# flashkm %s %s: %s" % (name, dtype, e), file=sys.stderr)
                ms = None
            peer = flash.ms_per_iter(x, b, n, k, d, args.niter, fast) if flash else None
            fms = faiss.ms_per_iter(x, b, n, k, d, args.niter, fast) if faiss else None
            fl = floor_ms(b, n, k, d)
            tf = None if ms is None else 2.0 * b * n * k * d / (ms * 1e9)
            row = "| %s | %s | %s | %s | %s | %.3f | %s | %s | %s | %s | %s |" % (
                name, "fp32" if dtype == torch.float32 else "fp16",
                "fast" if fast else "parity", fmt(ms), "-" if tf is None else "%.1f" % tf,
                fl, "-" if ms is None else "%.2fx" % (ms / fl), fmt(peer), ratio(peer, ms),
                fmt(fms), ratio(fms, ms))
            print(row, flush=True)
            lines.append(row)
            del x
        del x32
        torch.cuda.empty_cache()
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
