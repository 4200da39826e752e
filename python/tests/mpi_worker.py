"""One rank of test_distributed.py's runs (started by `mpiexec python3 -m
mpi4py`, so that an exception on one rank aborts every rank): trains on
this rank's rows through comm= and checks, bit for bit, that it gets what
one process gets on the whole x. Exits non-zero on any difference."""
import os
import sys

import numpy as np
from mpi4py import MPI

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import flashkm  # noqa: E402
from conftest import blobs, fashion_mnist  # noqa: E402

comm = MPI.COMM_WORLD
rank, size = comm.rank, comm.size


def rows_of_rank(n, uneven):
    """This rank's [lo, hi): even, or 1 : 0 : 3 : 2 ... (rank 1 empty)."""
    w = [1, 0, 3, 2] * size if uneven else [1] * size
    tot = sum(w[:size])
    lo = n * sum(w[:rank]) // tot
    hi = n * sum(w[:rank + 1]) // tot
    return lo, hi


def check(name, x, k, uneven=False, weights=None, **kw):
    lo, hi = rows_of_rank(len(x), uneven)
    one = flashkm.Kmeans(x.shape[1], k, backend="cpu", **kw)
    one.train(x, weights=weights)
    dist = flashkm.Kmeans(x.shape[1], k, backend="cpu", comm=comm, **kw)
    dist.train(x[lo:hi], weights=None if weights is None else weights[lo:hi])
    assert dist._context().rank == (rank, size)
    assert dist.centroids.tobytes() == one.centroids.tobytes(), "%s: centroids differ" % name
    assert dist.obj.tobytes() == one.obj.tobytes(), "%s: objectives differ" % name
    for a, b in zip(dist.iteration_stats, one.iteration_stats):
        assert (a["obj"], a["imbalance_factor"], a["nsplit"]) == \
            (b["obj"], b["imbalance_factor"], b["nsplit"]), name
    # labels of the training call: this rank's rows of one process's
    fields = dict(one.cp)
    metric = one.metric
    w = None if weights is None else weights[lo:hi]
    _, _, l1, d1 = flashkm.kmeans.train(one._context(), x, k, fields, metric, weights,
                                        profile=one.profile, return_labels=True)
    _, _, lp, dp = flashkm.kmeans.train(dist._context(), x[lo:hi], k, fields, metric, w,
                                        profile=one.profile, return_labels=True)
    assert lp.tobytes() == l1[lo:hi].tobytes(), "%s: labels differ" % name
    assert dp.tobytes() == d1[lo:hi].tobytes(), "%s: distances differ" % name
    print("rank %d/%d: %s: rows %d..%d: the one-process bits" % (rank, size, name, lo, hi))


x = blobs(4000, 12, 9, seed=rank * 0 + 3)
check("blobs", x, 16, niter=6)
check("blobs_uneven_subsampled_weighted", x, 10, uneven=True, niter=5,
      max_points_per_centroid=100,
      weights=np.linspace(0.5, 2.0, len(x)).astype(np.float32))
check("float16_spherical", x.astype(np.float16), 8, niter=4, spherical=True)
fm = fashion_mnist(6000)
if fm is None:
    raise SystemExit("Fashion-MNIST (dataset-fashion-mnist) is not installed")
check("fashion_mnist", fm, 32, niter=4, uneven=True)
