#!/usr/bin/env python3
"""fkm_pq_encode on the CUDA engine, one process: the rows in pageable host
memory, pinned host memory and device memory, under each engine mode named
(FLASHKM_CUDA_* values, read when a context is made),
with the same codes checked across every case.

Random normal rows (n, d), M sub-quantizers of 2^nbits centroids, IndexIVFPQ's
residuals against nlist coarse centroids (random lists), codes to host memory
for host rows and to device memory for device rows. check_finite off (as
add_index calls it). Prints the median of 3 timed calls after one warm-up.

Usage:
  FLASHKM_LIBRARY=build/plugin/libflashkm.so PYTHONPATH=python \\
    python3 bench/pq_encode.py [--n 10M] [--d 96] [--M 32] [--nlist 4096] \\
      [--profile faiss-1.15.1-avx512] [--modes STREAM=copy-widen,default,PQ=generic]
A mode is `default` or VAR=value pairs joined by '+', each setting FLASHKM_CUDA_VAR
(STREAM=copy-widen: the serial copy of host rows; PQ=generic: the run-time scan).
"""
import argparse
import ctypes
import os
import statistics
import time

import numpy as np
import torch

from flashkm import _lib
from flashkm import profile as _profile
from flashkm.kmeans import _make_params, clustering_fields
from ivf_build import rows  # bench/ is the script's folder: 10M = 10,000,000 rows


def settings(mode):
    """A mode's {FLASHKM_CUDA_VAR: value}."""
    if mode == "default":
        return {}
    return {"FLASHKM_CUDA_" + name: value
            for name, value in (part.split("=", 1) for part in mode.split("+"))}


def set_mode(mode, modes):
    """The environment of mode: every variable another mode sets is unset."""
    for other in modes:
        for var in settings(other):
            os.environ.pop(var, None)
    os.environ.update(settings(mode))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="10M")
    ap.add_argument("--d", type=int, default=96)
    ap.add_argument("--M", type=int, default=32)
    ap.add_argument("--nbits", type=int, default=8)
    ap.add_argument("--nlist", type=int, default=4096)
    ap.add_argument("--profile", default="faiss-1.15.1-avx512")
    ap.add_argument("--modes", default="STREAM=copy-widen,default,PQ=generic")
    args = ap.parse_args()
    n, d, M, nbits, nlist = rows(args.n), args.d, args.M, args.nbits, args.nlist
    rs = np.random.RandomState(0)
    x = rs.randn(n, d).astype(np.float32)
    pq = rs.randn(M, 1 << nbits, d // M).astype(np.float32)
    coarse = rs.randn(nlist, d).astype(np.float32)
    lists = rs.randint(0, nlist, n).astype(np.int64)
    prof = _profile.resolve(args.profile)
    p = _make_params(clustering_fields(prof), _lib.METRIC_L2, False, prof)
    p.check_finite = 0
    lib = _lib.lib()
    code_size = (M * nbits + 7) // 8
    xd, pqd, cd, ld = (torch.from_numpy(a).cuda() for a in (x, pq, coarse, lists))
    xpin = torch.from_numpy(x).pin_memory()
    codes_h = np.empty((n, code_size), np.uint8)
    codes_d = torch.empty((n, code_size), dtype=torch.uint8, device="cuda")
    cases = (("host pageable", x.ctypes.data, codes_h.ctypes.data),
             ("host pinned", xpin.data_ptr(), codes_h.ctypes.data),
             ("device", xd.data_ptr(), codes_d.data_ptr()))
    print("fkm_pq_encode %d x %d, M %d, nbits %d, residuals of %d lists, profile %s, %s"
          % (n, d, M, nbits, nlist, args.profile, torch.cuda.get_device_name()))
    print("| mode | rows | median s | calls s |")
    print("|---|---|---|---|")
    first = None
    modes = args.modes.split(",")
    for mode in modes:
        set_mode(mode, modes)
        ctx = _lib.Context("cuda")
        try:
            for name, xp, out in cases:
                dev = name == "device"
                ptrs = (pqd.data_ptr(), cd.data_ptr(), ld.data_ptr()) if dev else \
                    (pq.ctypes.data, coarse.ctypes.data, lists.ctypes.data)
                ts = []
                for _ in range(4):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    st = lib.fkm_pq_encode(ctx.handle, ctypes.byref(p), n, d, M, nbits, xp,
                                           ptrs[0], nlist, ptrs[1], ptrs[2], out)
                    torch.cuda.synchronize()
                    ts.append(time.perf_counter() - t0)
                    _lib.check(st, ctx.handle)
                codes = codes_d.cpu().numpy() if dev else codes_h.copy()
                if first is None:
                    first = codes
                elif not np.array_equal(first, codes):
                    raise SystemExit("codes differ: mode %s, %s" % (mode, name))
                print("| %s | %s | %.3f | %s |" % (mode, name, statistics.median(ts[1:]),
                                                   ", ".join("%.3f" % t for t in ts[1:])),
                      flush=True)
        finally:
            ctx.close()
    print("\nthe same codes in every case")


if __name__ == "__main__":
    main()
