"""FAISS integration through FAISS's own Python API only (works with any
FAISS version: Debian's 1.7.3, pip's newest): train_index() and the opt-in
patch_faiss() / unpatch()."""
import threading
import time

import numpy as np

from . import _lib, faiss_pq, kmeans
from . import profile as _profile

# Set while flashkm itself calls FAISS's original train(): the patched
# methods then step aside.
_local = threading.local()

#: What the last train_index() / train_pq() did (a dict), for inspection and tests.
last_train_info = None
#: What the last add_index() did (a dict).
last_add_info = None


def _faiss():
    try:
        import faiss
    except ImportError as e:  # pragma: no cover - exercised only without faiss
        raise ImportError("flashkm.train_index needs the faiss Python package") from e
    return faiss


def original_faiss_kmeans(faiss):
    """faiss.Kmeans as FAISS ships it, also while patch_faiss() is active."""
    return _saved["Kmeans"] if _saved is not None else faiss.Kmeans


class _bypass:
    """While active, the patched methods step aside (FAISS's own run)."""

    def __enter__(self):
        self.prev = getattr(_local, "bypass", False)
        _local.bypass = True

    def __exit__(self, *exc):
        _local.bypass = self.prev


def _original_train(index, x):
    """index.train(x) with stock FAISS, even while patched."""
    with _bypass():
        index.train(x)


def _ivf_and_input(faiss, index, x, train_transform=None):
    """The IVF level of index and the vectors it trains on: an IndexIVF itself,
    or an IndexPreTransform chain ending in one, whose untrained transforms are
    trained and applied in order exactly as IndexPreTransform::train does.
    train_transform(vt, x): trains vt itself and returns True, or returns
    False to let vt.train(x) run."""
    idx = faiss.downcast_index(index)
    if isinstance(idx, faiss.IndexPreTransform):
        xt = x
        for i in range(idx.chain.size()):
            vt = faiss.downcast_VectorTransform(idx.chain.at(i))
            if not vt.is_trained and not (train_transform and train_transform(vt, xt)):
                vt.train(xt)
            xt = vt.apply(xt)
        inner = faiss.downcast_index(idx.index)
        if not isinstance(inner, faiss.IndexIVF):
            raise ValueError("the IndexPreTransform chain ends in %s, not an IVF index"
                             % type(inner).__name__)
        return inner, np.ascontiguousarray(xt, dtype=np.float32)
    if isinstance(idx, faiss.IndexIVF):
        return idx, x
    raise ValueError("%s has no IVF coarse level (IndexIVF*, or IndexPreTransform over one)"
                     % type(idx).__name__)


def _clustering_params(faiss, ivf, prof):
    """index.cp as a dict of the fields flashkm implements, in the profile's
    release. A field flashkm does not implement that is not at FAISS's
    default, or a clustering_index other than a flat (exact) index, is
    returned as the reason to leave the training to FAISS (as the C++ bridge
    does)."""
    cp, why = faiss_pq.cp_dict(faiss, ivf.cp, prof)
    if why is not None:
        return cp, "index." + why
    ci = getattr(ivf, "clustering_index", None)
    if ci is not None and not isinstance(faiss.downcast_index(ci), faiss.IndexFlat):
        return cp, ("the IVF's clustering_index is a %s, whose search is not the exact one "
                    "flashkm computes: left to FAISS" % type(faiss.downcast_index(ci)).__name__)
    return cp, None


def _trains_alone(ivf):
    """ivf.quantizer_trains_alone as an int (SWIG gives FAISS's char field as
    a one-character str)."""
    v = ivf.quantizer_trains_alone
    return ord(v) if isinstance(v, str) else int(v)


def _train_q1_metric(faiss, ivf, quantizer):
    """The metric of Level1Quantizer::train_q1's k-means, as FAISS (and the C++
    bridge, faiss_shim/train_index.cpp) decides it. The clustering parameters
    are ivf.cp as they are: FAISS's IVF constructor sets cp.spherical for an
    inner-product index, and a caller may clear it again.
      quantizer_trains_alone 0: the metric of clustering_index when one is
        set, else the quantizer's;
      quantizer_trains_alone 2: L2, which FAISS accepts for an L2 index, or an
        inner-product one with spherical clustering (on the unit sphere both
        rank alike); anything else is FAISS's error."""
    if _trains_alone(ivf) == 2:
        if not (ivf.metric_type == faiss.METRIC_L2 or
                (ivf.metric_type == faiss.METRIC_INNER_PRODUCT and ivf.cp.spherical)):
            raise RuntimeError("quantizer_trains_alone = 2 needs METRIC_L2, or inner product "
                               "with spherical clustering (as FAISS checks)")
        return _lib.METRIC_L2
    assigner = (faiss.downcast_index(ivf.clustering_index)
                if ivf.clustering_index is not None else quantizer)
    return (_lib.METRIC_INNER_PRODUCT if assigner.metric_type == faiss.METRIC_INNER_PRODUCT
            else _lib.METRIC_L2)


def train_index(index, x, backend="auto", device=0, num_threads=0, verbose=None,
                profile="auto", codebooks=True):
    """Train a FAISS index whose coarse level is IVF with flashkm's k-means.

    index: a faiss IndexIVF* (IVF-Flat, IVF-PQ, IVF-SQ, ...), or an
    IndexPreTransform chain (OPQ, PCA, ...) ending in one. x: (n, d) vectors
    (converted to float32). The IVF's clustering parameters (index.cp: niter 10,
    seed, max_points_per_centroid, ...; spherical for inner product) are used
    as FAISS would; the centroids go into the coarse quantizer. The product
    quantizer of an IndexIVFPQ or IndexIVFPQFastScan is trained by flashkm
    too (codebooks=True; flashkm.faiss_pq follows FAISS's encoder training
    step by step); any other encoder (SQ, ...) is trained by FAISS itself,
    which sees a trained quantizer and skips its own k-means. On tie-free
    data the result equals stock index.train(x) bit for bit. Returns a dict
    describing the run (also kept in flashkm.last_train_info): used_flashkm
    (the coarse k-means), codebooks_by_flashkm, their reasons when not, and
    the phases' seconds (t_pretransform, t_kmeans, t_codebooks, t_rest,
    t_total).
    """
    global last_train_info
    faiss = _faiss()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != index.d:
        raise ValueError("x must be (n, %d), got shape %s" % (index.d, x.shape))
    t0 = time.time()
    prof = _profile.resolve(profile)
    info = {"used_flashkm": False, "codebooks_by_flashkm": False, "pretransform_by_flashkm": False,
            "profile": prof.describe(), "t_kmeans": 0.0, "t_codebooks": 0.0}
    ctx = None

    def context():
        nonlocal ctx
        if ctx is None:
            ctx = _lib.Context(backend, device, num_threads)
            info.update(backend=ctx.backend, device=ctx.device_name)
        return ctx

    def train_transform(vt, xt):
        if not codebooks or not isinstance(vt, faiss.OPQMatrix):
            return False
        why = faiss_pq.train_opq(faiss, context(), vt, np.ascontiguousarray(xt), prof, info)
        if why is None:
            info["pretransform_by_flashkm"] = True
        else:
            info["pretransform_reason"] = why
        return why is None

    try:
        ivf, xt = _ivf_and_input(faiss, index, x, train_transform)
        t1 = time.time()
        quantizer = faiss.downcast_index(ivf.quantizer)
        nlist = ivf.nlist
        info.update(nlist=nlist, d=xt.shape[1], n=xt.shape[0], t_pretransform=t1 - t0)
        cp, refuse = _clustering_params(faiss, ivf, prof)
        coarse_ready = quantizer.is_trained and quantizer.ntotal == nlist
        if coarse_ready:
            info["reason"] = "the quantizer was already trained"
        elif _trains_alone(ivf) == 1:
            # The quantizer trains itself (e.g. a multi-index quantizer): FAISS's way.
            info["reason"] = "quantizer_trains_alone == 1: left to FAISS"
        elif refuse:
            info["reason"] = refuse
        else:
            if verbose is not None:
                cp["verbose"] = verbose
            metric = _train_q1_metric(faiss, ivf, quantizer)
            centroids, stats = kmeans.train(context(), xt, nlist, cp, metric, profile=prof)
            # train_q1's ending: Clustering::train leaves its index (the
            # clustering_index, or the quantizer itself) holding the centroids;
            # mode 2 trains an untrained quantizer on them first.
            if ivf.clustering_index is not None:
                ci = faiss.downcast_index(ivf.clustering_index)
                ci.reset()
                ci.add(centroids)
            quantizer.reset()
            if not quantizer.is_trained:
                quantizer.train(centroids)
            quantizer.add(centroids)
            coarse_ready = True
            info.update(used_flashkm=True, iteration_stats=stats, t_kmeans=time.time() - t1)
        t2 = time.time()
        if not codebooks:
            info["codebooks_reason"] = "codebooks=False"
        elif not coarse_ready:
            info["codebooks_reason"] = "the coarse quantizer is trained by FAISS"
        else:
            info["codebooks_by_flashkm"] = faiss_pq.train_ivf_encoder(faiss, context(), ivf,
                                                                      xt, prof, info)
            info["t_codebooks"] = time.time() - t2
    finally:
        if ctx is not None:
            ctx.close()
    t3 = time.time()
    if info["codebooks_by_flashkm"]:
        index.is_trained = True  # IndexPreTransform::train's ending; its chain is trained
    else:
        _original_train(index, x)
    info["t_rest"] = time.time() - t3
    info["t_total"] = time.time() - t0
    last_train_info = info
    return info


def _add_classes(faiss):
    """The IVF classes whose add_with_ids is IndexIVF's own: the coarse
    assignment of every vector (quantizer->assign), then add_core with it."""
    return (faiss.IndexIVFFlat, faiss.IndexIVFPQ, faiss.IndexIVFScalarQuantizer)


def _pq_encode_refusal(faiss, ivf, assign):
    """Why an IVF's add_core must encode its vectors itself, or None when
    flashkm computes its codes (IndexIVFPQ::add_core_o: residuals against
    the coarse centroids, then ProductQuantizer::compute_codes)."""
    if type(ivf) is not faiss.IndexIVFPQ:
        return "a %s encodes with FAISS's own code" % type(ivf).__name__
    pq = ivf.pq
    if not faiss_pq.pq_encodable(pq):
        return ("dsub = %d, nbits = %d: FAISS's own encoding (fkm_pq_encode reaches dsub < 16, "
                "nbits <= 16, no transposed centroids)" % (pq.dsub, pq.nbits))
    if assign.size and assign.min() < 0:
        return "a vector has no coarse list (FAISS's add skips it)"
    return None


def add_index(index, x, ids=None, backend="auto", device=0, num_threads=0, profile="auto"):
    """index.add(x) (or index.add_with_ids(x, ids)) with the coarse assignment
    of every vector on flashkm: the same labels as FAISS's quantizer->assign
    (the k=1 search of its flat quantizer, in the arithmetic of the FAISS in
    use); an IndexIVFPQ's codes too (ProductQuantizer::compute_codes of the
    residuals, sub-vectors of fewer than 16 dimensions: fkm_pq_encode, the
    same bytes), stored by FAISS's add_sa_codes; otherwise FAISS's own
    add_core encodes and stores them. index: an IndexIVFFlat, IndexIVFPQ or
    IndexIVFScalarQuantizer with a flat quantizer, alone or behind an
    IndexPreTransform chain (applied first, as IndexPreTransform::add does);
    anything else is added by FAISS. Returns a dict (also kept in
    flashkm.last_add_info): assign_by_flashkm (and the reason when not),
    encode_by_flashkm (and encode_reason when not), t_assign, t_encode and
    t_total seconds."""
    global last_add_info
    faiss = _faiss()
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] != index.d:
        raise ValueError("x must be (n, %d), got shape %s" % (index.d, x.shape))
    n = x.shape[0]
    if ids is not None:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if ids.shape != (n,):
            raise ValueError("ids must be (%d,), got shape %s" % (n, ids.shape))
    t0 = time.time()
    info = {"n": n, "assign_by_flashkm": False, "encode_by_flashkm": False, "t_assign": 0.0,
            "t_encode": 0.0}
    last_add_info = info
    outer = faiss.downcast_index(index)
    ivf, xt = outer, x
    if isinstance(outer, faiss.IndexPreTransform):
        ivf = faiss.downcast_index(outer.index)
    flat = None
    if type(ivf) not in _add_classes(faiss):
        info["reason"] = "a %s adds its own way: left to FAISS" % type(ivf).__name__
    elif not index.is_trained:
        info["reason"] = "the index is not trained: FAISS's error"
    else:
        flat = faiss_pq.flat_quantizer(faiss, ivf.quantizer)
        if flat is None or flat[0].shape[0] != ivf.nlist:
            info["reason"] = "the quantizer is not a flat index holding nlist centroids"
    if "reason" in info or n == 0:
        with _bypass():
            if ids is None:
                index.add(x)
            else:
                index.add_with_ids(x, ids)
        info["t_total"] = time.time() - t0
        return info
    if outer is not ivf:  # IndexPreTransform::add_with_ids: apply_chain, then the sub-index
        for i in range(outer.chain.size()):
            xt = faiss.downcast_VectorTransform(outer.chain.at(i)).apply(xt)
        xt = np.ascontiguousarray(xt, dtype=np.float32)
    prof = _profile.resolve(profile)
    t1 = time.time()
    ctx = _lib.Context(backend, device, num_threads)
    try:
        assign = kmeans.assign(ctx, xt, flat[0], flat[1], profile=prof, distances=False)[1]
        info.update(backend=ctx.backend, device=ctx.device_name)
        info["t_assign"] = time.time() - t1
        why = _pq_encode_refusal(faiss, ivf, assign)
        if why is None:
            t2 = time.time()
            pq = ivf.pq
            codes = kmeans.pq_encode(
                ctx, xt, faiss.vector_to_array(pq.centroids), pq.nbits, pq.M,
                coarse=flat[0] if ivf.by_residual else None,
                lists=assign if ivf.by_residual else None, profile=prof,
                check_finite=False)  # the assignment checked xt; the centroids are FAISS's
            info["t_encode"] = time.time() - t2
        else:
            info["encode_reason"] = why
    finally:
        ctx.close()
    if why is None:  # IndexIVF::add_sa_codes: the list number's bytes, then the code
        cs = ivf.coarse_code_size()
        full = np.empty((n, cs + codes.shape[1]), dtype=np.uint8)
        full[:, :cs] = assign.astype("<i8").view(np.uint8).reshape(n, 8)[:, :cs]
        full[:, cs:] = codes
        ivf.add_sa_codes(full, ids)
        info["encode_by_flashkm"] = True
    else:
        ivf.add_core(n, faiss.swig_ptr(xt), faiss.swig_ptr(ids) if ids is not None else None,
                     faiss.swig_ptr(assign))
    if outer is not ivf:
        outer.ntotal = ivf.ntotal
    info.update(assign_by_flashkm=True, profile=prof.describe(), t_total=time.time() - t0)
    return info


# ------------------------------------------------------------- patching

_saved = None


def _patched_train(original):
    def train(self, x):
        if getattr(_local, "bypass", False):
            return original(self, x)
        faiss = _faiss()
        try:
            probe = faiss.downcast_index(self)
            if isinstance(probe, faiss.IndexPreTransform):
                inner = faiss.downcast_index(probe.index)
                applicable = "ivf" if isinstance(inner, faiss.IndexIVF) else None
            elif isinstance(probe, faiss.IndexIVF):
                applicable = "ivf"
            else:
                applicable = "pq" if type(probe) in _pq_index_classes(faiss) else None
        except Exception:
            applicable = None
        if applicable == "ivf":
            train_index(self, x)
        elif applicable == "pq":
            faiss_pq.train_pq(self, x)
        else:
            return original(self, x)

    train.__doc__ = original.__doc__
    train._flashkm_original = original
    return train


def _patched_add(original, with_ids):
    def add(self, x, *ids):
        if getattr(_local, "bypass", False):
            return original(self, x, *ids)
        faiss = _faiss()
        try:
            probe = faiss.downcast_index(self)
            if isinstance(probe, faiss.IndexPreTransform):
                probe = faiss.downcast_index(probe.index)
            applicable = type(probe) in _add_classes(faiss)
        except Exception:
            applicable = False
        if not applicable:
            return original(self, x, *ids)
        add_index(self, x, ids[0] if with_ids else None)

    add.__doc__ = original.__doc__
    add._flashkm_original = original
    return add


def _pq_index_classes(faiss):
    return tuple(c for c in (faiss.IndexPQ, getattr(faiss, "IndexPQFastScan", None)) if c)


def patch_faiss():
    """Opt-in: from now on, in this process, faiss.Kmeans is flashkm.Kmeans,
    training any IVF index (or IndexPreTransform over one) runs flashkm's
    k-means (through train_index: the coarse quantizer, and an IVF-PQ's
    codebooks), and so does training an IndexPQ or IndexPQFastScan (through
    train_pq); add / add_with_ids of an IVF-Flat, IVF-PQ or IVF-SQ (or a
    chain over one) assign on flashkm (through add_index). Undo with
    unpatch(). Idempotent."""
    global _saved
    faiss = _faiss()
    if _saved is not None:
        return
    saved = {"Kmeans": faiss.Kmeans, "classes": []}
    for name in dir(faiss):
        cls = getattr(faiss, name)
        if not isinstance(cls, type) or "train" not in cls.__dict__:
            continue
        if (issubclass(cls, faiss.IndexIVF) or cls is faiss.IndexPreTransform or
                cls in _pq_index_classes(faiss)):
            original = cls.__dict__["train"]
            saved["classes"].append((cls, "train", original))
            cls.train = _patched_train(original)
    for cls in (faiss.IndexIVF, faiss.IndexPreTransform) + _add_classes(faiss):
        for name, with_ids in (("add", False), ("add_with_ids", True)):
            if name in cls.__dict__:
                original = cls.__dict__[name]
                saved["classes"].append((cls, name, original))
                setattr(cls, name, _patched_add(original, with_ids))
    faiss.Kmeans = kmeans.Kmeans
    _saved = saved


def unpatch():
    """Restore stock faiss.Kmeans and IVF training."""
    global _saved
    if _saved is None:
        return
    faiss = _faiss()
    faiss.Kmeans = _saved["Kmeans"]
    for cls, name, original in _saved["classes"]:
        setattr(cls, name, original)
    _saved = None


def is_patched():
    return _saved is not None
