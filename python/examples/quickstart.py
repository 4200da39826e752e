"""flashkm in place of faiss.Kmeans: the same centroids, bit for bit.

Run from a build tree:
  PYTHONPATH=python FLASHKM_LIBRARY=build/plugin/libflashkm.so \
      /usr/bin/python3 python/examples/quickstart.py
"""
import time

import faiss
import numpy as np

import flashkm

d, k = 64, 256
x = np.random.RandomState(0).rand(100000, d).astype(np.float32)  # your (n, d) vectors

t0 = time.perf_counter()
km = flashkm.Kmeans(d, k, niter=20)  # faiss.Kmeans's arguments and defaults
km.train(x)
t1 = time.perf_counter()
ref = faiss.Kmeans(d, k, niter=20)  # stock FAISS, for comparison
ref.train(x)
t2 = time.perf_counter()

same = np.array_equal(km.centroids.view(np.uint32), ref.centroids.view(np.uint32))
print("FAISS     %s, profile %s" % (faiss.__version__, km.profile.name))
print("engine    %s (%s)" % (flashkm.last_train_info["backend"], flashkm.last_train_info["device"]))
print("train     flashkm %.2f s, FAISS %.2f s" % (t1 - t0, t2 - t1))
print("centroids %s" % ("identical, bit for bit" if same else "DIFFERENT"))

D, I = km.assign(x[:5])  # FAISS's k=1 search: nearest centroid and its distance
print("labels    %s" % I.tolist())
raise SystemExit(0 if same else 1)
