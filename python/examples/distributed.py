# mpiexec -np 4 python3 -m mpi4py python/examples/distributed.py
# Each rank trains on its quarter of the rows; every rank gets the centroids
# one process gets on all of them, bit for bit.
import numpy as np
from mpi4py import MPI

import flashkm

comm = MPI.COMM_WORLD
x = np.random.default_rng(0).standard_normal((100_000, 32), dtype=np.float32)
lo, hi = len(x) * comm.rank // comm.size, len(x) * (comm.rank + 1) // comm.size
km = flashkm.Kmeans(32, 256, niter=10, comm=comm)
km.train(x[lo:hi])
if comm.rank == 0:
    one = flashkm.Kmeans(32, 256, niter=10)
    one.train(x)
    same = km.centroids.tobytes() == one.centroids.tobytes()
    print("%d ranks: %s" % (comm.size, "the one-process centroids, bit for bit" if same
                            else "centroids differ"))
