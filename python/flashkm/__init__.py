"""flashkm: exact k-means for vector search, bit-identical to FAISS, faster.

    import flashkm
    km = flashkm.Kmeans(d, k, niter=20)      # same arguments as faiss.Kmeans
    km.train(x)                              # numpy float32/float16, or GPU arrays
    km.centroids, km.obj, km.iteration_stats, km.index, km.assign(x)

    flashkm.train_index(index, x)            # any FAISS IVF index (or OPQ/PCA chain)
    flashkm.train_pq(pq_or_index_pq, x)      # a ProductQuantizer / IndexPQ's codebooks
    flashkm.add_index(index, x, ids=None)    # index.add: coarse assignment and PQ codes on flashkm
    flashkm.pq_encode(ctx, x, pq.centroids, nbits, M)  # ProductQuantizer::compute_codes
    km.order_coverage(n)                     # n * k: assign()'s labels are FAISS's, near-ties too
    flashkm.torch.kmeans(x, k)               # (B, N, d) tensor: (labels, centroids) tensors
    flashkm.patch_faiss()                    # faiss.Kmeans and IVF training use flashkm
    flashkm.unpatch()

The C library is found through FLASHKM_LIBRARY (path to libflashkm.so), else
next to this package or in the install prefix.
"""
from ._lib import Context, Error, LibraryNotFound, find_library, library_path, version
from .faiss_compat import add_index, is_patched, patch_faiss, train_index, unpatch
from .faiss_pq import train_pq
from .kmeans import Kmeans, assign, order_coverage, pq_encode, train

__version__ = "0.3.0"

unpatch_faiss = unpatch


def __getattr__(name):
    # last_train_info / last_add_info live in faiss_compat and change after import.
    if name in ("last_train_info", "last_add_info"):
        from . import faiss_compat
        return getattr(faiss_compat, name)
    raise AttributeError("module 'flashkm' has no attribute %r" % name)


__all__ = ["Kmeans", "train_index", "train_pq", "add_index", "patch_faiss", "unpatch", "unpatch_faiss", "is_patched",
           "train", "assign", "order_coverage", "pq_encode", "Context", "Error", "LibraryNotFound", "find_library",
           "library_path", "version"]
