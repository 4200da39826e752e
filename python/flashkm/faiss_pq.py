"""Product-quantizer codebooks through flashkm, the way FAISS trains them.

FAISS's ProductQuantizer::train (every release from 1.7 to 1.15) runs M
independent Clustering(dsub, ksub, pq.cp) on the M column slices of its
input, each on an IndexFlatL2: that is one batched flashkm run (M problems of
one shape, the bits of M separate runs). Around it, the trainings that call
it are followed step by step:
  - IndexPQ::train: the PQ, then polysemous training on the last
    ntrain_permutation rows when asked (FAISS's own);
  - the encoder of IndexIVFPQ and IndexIVFPQFastScan (1.7:
    train_residual; 1.8+: IndexIVF::train then train_encoder): the
    training set subsampled to pq.cp.max_points_per_centroid * ksub rows
    (rand_perm with pq.cp.seed in 1.7, 1234 from 1.8 on), residuals against
    the coarse quantizer, the PQ, polysemous training (FAISS's), the
    precomputed tables (FAISS's).
Anything else (another training type, an assign_index, a subclass, fewer
points than ksub) is left to FAISS, with the reason."""
import numpy as np

from . import _lib, kmeans
from .profile import version_number


def cp_dict(faiss, cp, prof):
    """A ClusteringParameters as the dict of the fields flashkm implements in
    the profile's release, and the reason to leave the run to FAISS (a field
    flashkm does not implement that is not at FAISS's default), or None."""
    fields = kmeans.clustering_fields(prof)
    out = {f: getattr(cp, f) for f in fields if hasattr(cp, f)}
    default = faiss.ClusteringParameters()
    for name in dir(cp):
        if name.startswith("_") or name in fields or name in ("this", "thisown"):
            continue
        value = getattr(cp, name)
        if callable(value):
            continue
        if value != getattr(default, name, value):
            return out, "cp.%s = %r is not implemented by flashkm: left to FAISS" % (name, value)
    return out, None


def pq_refusal(faiss, pq, n, prof):
    """Why FAISS's own pq.train must run on n rows, or None."""
    if pq.train_type != faiss.ProductQuantizer.Train_default:
        return "the PQ's train_type is %d, not Train_default: left to FAISS" % pq.train_type
    if pq.assign_index is not None:
        return "the PQ has an assign_index: left to FAISS"
    if n < pq.ksub:
        return "%d training points for ksub = %d: FAISS's own error" % (n, pq.ksub)
    return cp_dict(faiss, pq.cp, prof)[1]


def train_pq_slices(faiss, ctx, pq, x, prof):
    """ProductQuantizer::train(n, x) for the default training type: the M
    slices as one batched run; the centroids go into pq.centroids as
    set_params puts them. Returns the per-slice iteration statistics."""
    n, d = x.shape
    if d != pq.d:
        raise ValueError("x has d = %d, the PQ has d = %d" % (d, pq.d))
    slices = np.ascontiguousarray(x.reshape(n, pq.M, pq.dsub).transpose(1, 0, 2))
    cp = cp_dict(faiss, pq.cp, prof)[0]
    cp["verbose"] = bool(pq.verbose)
    centroids, stats = kmeans.train_batched(ctx, slices, pq.ksub, cp, _lib.METRIC_L2, prof)
    faiss.copy_array_to_vector(centroids.ravel(), pq.centroids)
    return stats


def subsample(x, nmax, seed):
    """fvecs_maybe_subsample: the rows rand_perm(n, seed)[:nmax] in that
    order, or x itself when n <= nmax."""
    n = x.shape[0]
    if n <= nmax:
        return x
    rows = np.empty(nmax, dtype=np.int64)
    st = _lib.lib().fkm_rand_perm(n, seed, nmax, rows.ctypes.data)
    _lib.check(st)
    return x[rows]


def flat_quantizer(faiss, quantizer):
    """(centroids, flashkm metric) of an exact flat quantizer (IndexFlat,
    IndexFlatL2, IndexFlatIP: FAISS's k=1 search is the one flashkm
    computes), or None."""
    q = faiss.downcast_index(quantizer)
    if type(q) not in (faiss.IndexFlat, faiss.IndexFlatL2, faiss.IndexFlatIP) or q.ntotal == 0:
        return None
    if q.metric_type not in (faiss.METRIC_L2, faiss.METRIC_INNER_PRODUCT):
        return None
    metric = (_lib.METRIC_INNER_PRODUCT if q.metric_type == faiss.METRIC_INNER_PRODUCT
              else _lib.METRIC_L2)
    return q.reconstruct_n(0, q.ntotal), metric


def _coarse_assign(faiss, ctx, quantizer, x, prof):
    """quantizer->assign(n, x): flashkm's search for an exact flat quantizer
    (FAISS's k=1 search in the profile's arithmetic), else FAISS's."""
    flat = flat_quantizer(faiss, quantizer)
    if flat is not None:
        return kmeans.assign(ctx, x, flat[0], flat[1], profile=prof)[1], True
    return quantizer.assign(x, 1).ravel().astype(np.int64), False


def encoder_plan(faiss, ivf):
    """How FAISS trains the encoder of this IVF when flashkm can do its PQ:
    (polysemous, precompute_table) or the reason to leave it to FAISS."""
    fast_scan = getattr(faiss, "IndexIVFPQFastScan", None)
    if type(ivf) is faiss.IndexIVFPQ:
        return (bool(ivf.do_polysemous_training), bool(ivf.by_residual)), None
    if fast_scan is not None and type(ivf) is fast_scan:
        return (False, bool(ivf.by_residual) and ivf.metric_type == faiss.METRIC_L2), None
    return None, "a %s encodes without a product quantizer flashkm trains" % type(ivf).__name__


def train_ivf_encoder(faiss, ctx, ivf, x, prof, info):
    """The rest of IndexIVF::train after the coarse quantizer (train_residual
    in 1.7, the subsample + train_encoder of 1.8+) with the PQ through
    flashkm. False (info["codebooks_reason"] says why) when FAISS must."""
    plan, why = encoder_plan(faiss, ivf)
    q = ivf.quantizer
    if why is None and not (q.is_trained and q.ntotal == ivf.nlist):
        why = "the coarse quantizer is not trained"
    if why is None:
        pq = ivf.pq
        # 1.7's train_residual subsamples with pq.cp.seed, 1.8+'s IndexIVF::train with 1234
        seed = pq.cp.seed if version_number(faiss.__version__) < 10800 else 1234
        xs = subsample(x, pq.cp.max_points_per_centroid * pq.ksub, seed)
        why = pq_refusal(faiss, pq, xs.shape[0], prof)
    if why is not None:
        info["codebooks_reason"] = why
        return False
    polysemous, table = plan
    trainset = np.ascontiguousarray(xs, dtype=np.float32)
    if ivf.by_residual:
        assign, ours = _coarse_assign(faiss, ctx, q, trainset, prof)
        info["residual_assign_by_flashkm"] = ours
        residuals = np.empty_like(trainset)
        q.compute_residual_n(trainset.shape[0], faiss.swig_ptr(trainset),
                             faiss.swig_ptr(residuals), faiss.swig_ptr(assign))
        trainset = residuals
    pq.verbose = ivf.verbose
    info["codebook_stats"] = train_pq_slices(faiss, ctx, pq, trainset, prof)
    if polysemous:
        pt = ivf.polysemous_training
        if pt is None:
            pt = faiss.PolysemousTraining()
        pt.optimize_pq_for_hamming(pq, trainset.shape[0], faiss.swig_ptr(trainset))
    if table:
        ivf.precompute_table()
    ivf.is_trained = True
    return True


def train_pq(target, x, backend="auto", device=0, num_threads=0, profile="auto"):
    """Train a faiss.ProductQuantizer, IndexPQ or IndexPQFastScan on x (n, d)
    exactly as target.train(x) does, with the codebooks' k-means on flashkm.
    Returns a dict (also kept in flashkm.last_train_info): used_flashkm, and
    the reason when FAISS's own training ran (another training type, an
    assign_index, fewer rows than ksub)."""
    from . import faiss_compat
    from . import profile as _profile
    import faiss
    x = np.ascontiguousarray(x, dtype=np.float32)
    prof = _profile.resolve(profile)
    index, pq = None, target
    if not isinstance(target, faiss.ProductQuantizer):
        index = faiss.downcast_index(target)
        fast_scan = getattr(faiss, "IndexPQFastScan", None)
        if type(index) is not faiss.IndexPQ and not (fast_scan and type(index) is fast_scan):
            raise ValueError("train_pq takes a ProductQuantizer, IndexPQ or IndexPQFastScan, "
                             "not %s" % type(index).__name__)
        pq = index.pq
    if x.ndim != 2 or x.shape[1] != pq.d:
        raise ValueError("x must be (n, %d), got shape %s" % (pq.d, x.shape))
    info = {"used_flashkm": False}
    faiss_compat.last_train_info = info
    if index is not None and index.is_trained and type(index) is not faiss.IndexPQ:
        info["reason"] = "IndexPQFastScan.train does nothing once trained"
        return info
    polysemous = index is not None and type(index) is faiss.IndexPQ and \
        index.do_polysemous_training
    n_pq = x.shape[0]
    if polysemous:
        n_pq -= min(index.polysemous_training.ntrain_permutation, x.shape[0] // 4)
    why = pq_refusal(faiss, pq, n_pq, prof)
    if why is not None:
        info["reason"] = why
        if index is None:
            pq.train(x)
        else:
            faiss_compat._original_train(index, x)
        return info
    ctx = _lib.Context(backend, device, num_threads)
    try:
        info["codebook_stats"] = train_pq_slices(faiss, ctx, pq, x[:n_pq], prof)
        info.update(backend=ctx.backend, device=ctx.device_name, used_flashkm=True)
    finally:
        ctx.close()
    if polysemous:
        rest = np.ascontiguousarray(x[n_pq:])
        index.polysemous_training.optimize_pq_for_hamming(pq, rest.shape[0],
                                                          faiss.swig_ptr(rest))
    if index is not None:
        index.is_trained = True
    return info

