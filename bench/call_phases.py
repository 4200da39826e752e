#!/usr/bin/env python3
"""Where a whole call's time goes, from the library's own verbose lines.

For each call of issue 17's online set (bench/compare.py's ONLINE, or the
ones --match names): fkm_train_batched on fp16 device data (FAST and parity
mode), labels to a device buffer as flashkm.torch asks them, verbose on; four
calls, the first a warm-up. Printed per call: the wall time of the last three
calls, the "Call phases" line's begin / iterations / outputs, the CUDA
engine's begin breakdown, the iteration graph's line (nodes, capture cost)
and the medians over iterations 2.. of the engine's per-iteration phases
(assign, group, update, the objective's tail); then one quiet call (verbose
off) whose progress callback stamps the host clock after each iteration:
the time to the first iteration's end (begin included), each later
iteration, and the outputs after the last. These run the host's loop
(FLASHKM_CUDA_LOOP=0: each iteration's phases need it); last, three quiet
calls without a callback on a second context, where the iterations run as
the loop on the device (docs/cuda-engine.md), their median wall.

--large times bench/compare.py's shapes instead (SHAPE: 1M x 1024, 8M x 1024,
..., --niter iterations), on --dtype float32 or float16 data: where the
iteration of a large N goes, chunk count included (FLASHKM_CUDA_CHUNK_LOG2).

Usage (a CUDA GPU; torch with CUDA):
  FLASHKM_LIBRARY=build/plugin/libflashkm.so PYTHONPATH=python \\
    python3 bench/call_phases.py [--match B=16,B=64] [--modes fast,parity]
    python3 bench/call_phases.py --large [--match "1M x 1024,8M"] [--modes parity] [--dtype float32]
"""
import argparse
import ctypes
import os
import re
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import compare  # noqa: E402  (the online set and the ctypes signature)
from flashkm import _lib  # noqa: E402

PHASES = re.compile(r"cuda engine phases \(ms\): assign ([0-9.]+) group ([0-9.]+) "
                    r"update ([0-9.]+) objective-tail ([0-9.]+)")
KEEP = ("Call phases", "cuda engine: begin", "CUDA graph", "final labels", "in one launch")


def one_mode(ours, looped, x, b, n, k, d, niter, fast):
    dtype = _lib.DTYPE_F16 if x.dtype == torch.float16 else _lib.DTYPE_F32
    lines = []

    @_lib.LOG_FN
    def log(user, level, msg):
        del user, level
        lines.append(msg.decode())

    p = ours.params(n, k, niter, fast)
    p.verbose = 1
    p.log = log
    cent = torch.empty((b, k, d), device="cuda")
    lab = torch.empty((b, n), device="cuda", dtype=torch.int64)

    def timed_call(ctx=ours.ctx):
        """One synchronised call: its start and end on the host clock."""
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        st = ours.lib.fkm_train_batched(ctx.handle, ctypes.byref(p), b, n, d, k,
                                        dtype, x.data_ptr(), None, cent.data_ptr(), 0,
                                        lab.data_ptr(), None, None, 0, None)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        _lib.check(st, ctx.handle)
        return t0, t1

    walls = []
    for _ in range(4):
        lines.clear()
        t0, t1 = timed_call()
        walls.append(1e3 * (t1 - t0))
    phases = [tuple(float(v) for v in m.groups()) for m in map(PHASES.search, lines) if m]
    keep = [l for l in lines if any(key in l for key in KEEP)]
    # one more call, quiet, with host timestamps at each iteration's end (the
    # progress callback, called for problems 0..b-1 after each iteration)
    stamps = []

    @_lib.PROGRESS_FN
    def progress(user, redo, it, stats):
        del user, redo, it, stats
        stamps.append(time.perf_counter())
        return 0

    p.verbose = 0
    p.log = _lib.LOG_FN()
    p.progress = progress
    t0, t1 = timed_call()
    ends = [t0] + stamps[::b]  # problem 0's call opens each iteration's b calls
    steps = [1e3 * (v - u) for u, v in zip(ends, ends[1:])]
    timeline = (1e3 * (t1 - t0), steps, 1e3 * (t1 - stamps[-1]) if stamps else 0.0)
    p.progress = _lib.PROGRESS_FN()
    timed_call(looped.ctx)  # its warm-up
    on_device = statistics.median(1e3 * (u - t) for t, u in (timed_call(looped.ctx)
                                                             for _ in range(3)))
    return walls[1:], keep, phases[2:], timeline, on_device


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--match", help="only the calls whose names start with one of these "
                                    "comma-separated prefixes")
    ap.add_argument("--modes", default="fast,parity", help="fast and/or parity")
    ap.add_argument("--large", action="store_true",
                    help="bench/compare.py's shapes (1M x 1024, 8M x 1024, ...)")
    ap.add_argument("--niter", type=int, default=12, help="iterations of a --large call")
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    args = ap.parse_args()
    calls = compare.ONLINE
    if args.large:
        calls = [(name,) + shape + (args.niter,) for name, shape in compare.SHAPE.items()]
    os.environ["FLASHKM_CUDA_LOOP"] = "0"  # read when a context is created
    ours = compare.Flashkm()
    del os.environ["FLASHKM_CUDA_LOOP"]
    looped = compare.Flashkm()
    print("device: %s; torch %s" % (ours.device, torch.__version__))
    for name, b, n, k, d, niter in compare.matching(args.match, calls):
        g = torch.Generator(device="cuda").manual_seed(1234)
        x = torch.randn((b, n, d), device="cuda", generator=g).to(getattr(torch, args.dtype))
        for mode in args.modes.split(","):
            walls, lines, phases, (wall, steps, tail), on_device = one_mode(
                ours, looped, x, b, n, k, d, niter, mode == "fast")
            print("%s, %s: wall %s ms" % (name, mode, " ".join("%.2f" % w for w in walls)))
            if steps:
                print("    quiet call with a progress callback: wall %.2f ms; call start to "
                      "iteration 1's callback %.3f ms, then per iteration %s ms; last callback "
                      "to return %.3f ms" % (wall, steps[0],
                                             " ".join("%.3f" % v for v in steps[1:]), tail))
            print("    quiet call, the loop on the device: wall %.2f ms (median of 3)"
                  % on_device)
            for line in lines:
                print("    " + line)
            if phases:
                med = [statistics.median(p[i] for p in phases) for i in range(4)]
                print("    per iteration (median of iterations 2..): assign %.3f, group %.3f, "
                      "update %.3f, objective tail %.3f ms" % tuple(med))
            sys.stdout.flush()
        del x
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
