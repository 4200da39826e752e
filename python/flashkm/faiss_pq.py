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
  - OPQMatrix::train (the same code from 1.7 to 1.15): FAISS's subsample,
    centring and random rotation (float_randn, matrix_qr), the projections
    and SVD through the BLAS and LAPACK the faiss module calls (found as
    flashkm.profile finds its sgemm), the PQ encoded by flashkm (decoded by FAISS);
    its PQ trainings (hot-started after the first round) on flashkm.
Anything else (another training type, an assign_index, a subclass, fewer
points than ksub) is left to FAISS, with the reason."""
import ctypes

import time

import numpy as np

from . import _lib, kmeans
from . import profile as _profile
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


def pq_refusal(faiss, pq, n, prof, hot_start=False):
    """Why FAISS's own pq.train must run on n rows, or None. hot_start: the
    caller's PQ may start from its current centroids (OPQ's later rounds)."""
    kinds = (faiss.ProductQuantizer.Train_default,) + (
        (faiss.ProductQuantizer.Train_hot_start,) if hot_start else ())
    if pq.train_type not in kinds:
        return "the PQ's train_type is %d, not Train_default: left to FAISS" % pq.train_type
    if pq.assign_index is not None:
        return "the PQ has an assign_index: left to FAISS"
    if n < pq.ksub:
        return "%d training points for ksub = %d: FAISS's own error" % (n, pq.ksub)
    return cp_dict(faiss, pq.cp, prof)[1]


def train_pq_slices(faiss, ctx, pq, x, prof, slices=None):
    """ProductQuantizer::train(n, x) for the default and hot-start training
    types: the M slices as one batched run (hot start: each slice's current
    centroids are its input centroids); the centroids go into pq.centroids
    as set_params puts them. Returns the per-slice iteration statistics.
    slices: an (M, n, dsub) float32 array to cut x into (kept by a caller
    that trains every round, as OPQ does), or None."""
    n, d = x.shape
    if d != pq.d:
        raise ValueError("x has d = %d, the PQ has d = %d" % (d, pq.d))
    x = np.ascontiguousarray(x, dtype=np.float32)
    if slices is None or slices.shape != (pq.M, n, pq.dsub):
        slices = np.empty((pq.M, n, pq.dsub), dtype=np.float32)
    _lib.check(_lib.lib().fkm_pq_slices(n, d, pq.M, x.ctypes.data, slices.ctypes.data))
    cp = cp_dict(faiss, pq.cp, prof)[0]
    cp["verbose"] = bool(pq.verbose)
    init = None
    if pq.train_type == faiss.ProductQuantizer.Train_hot_start:
        init = faiss.vector_to_array(pq.centroids).reshape(pq.M, pq.ksub, pq.dsub)
    centroids, stats = kmeans.train_batched(ctx, slices, pq.ksub, cp, _lib.METRIC_L2, prof,
                                            init_centroids=init)
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
        return kmeans.assign(ctx, x, flat[0], flat[1], profile=prof,
                             distances=False)[1], True
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
        nmax = pq.cp.max_points_per_centroid * pq.ksub
        why = pq_refusal(faiss, pq, min(x.shape[0], nmax), prof)
    if why is not None:
        info["codebooks_reason"] = why
        return False
    # 1.7's train_residual subsamples with pq.cp.seed, 1.8+'s IndexIVF::train with 1234
    seed = pq.cp.seed if version_number(faiss.__version__) < 10800 else 1234
    xs = subsample(x, nmax, seed)
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
    t0 = time.time()
    info["codebook_stats"] = train_pq_slices(faiss, ctx, pq, trainset, prof)
    t1 = time.time()
    if polysemous:
        pt = ivf.polysemous_training
        if pt is None:
            pt = faiss.PolysemousTraining()
        pt.optimize_pq_for_hamming(pq, trainset.shape[0], faiss.swig_ptr(trainset))
    if table:
        ivf.precompute_table()
    # the PQ's k-means on flashkm; FAISS's polysemous training and tables
    info.update(t_pq=t1 - t0, t_polysemous_and_tables=time.time() - t1)
    ivf.is_trained = True
    return True


class _Lapack:
    """sgemm_ and sgesvd_ of the BLAS / LAPACK the faiss module calls
    (FINTEGER int, as FAISS declares them)."""

    def __init__(self, handle):
        i, f, c = ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_float), ctypes.c_char_p
        self.sgemm = handle.sgemm_
        self.sgemm.argtypes = [c, c, i, i, i, f, f, i, f, i, f, f, i]
        self.sgesvd = handle.sgesvd_
        self.sgesvd.argtypes = [c, c, i, i, f, i, f, f, i, f, i, f, i, i]

    @staticmethod
    def _i(v):
        return ctypes.byref(ctypes.c_int(int(v)))

    @staticmethod
    def _f(a):
        return a.ctypes.data_as(ctypes.POINTER(ctypes.c_float))

    def gemm(self, ta, tb, m, n, k, a, lda, b, ldb, c, ldc):
        one, zero = ctypes.c_float(1), ctypes.c_float(0)
        self.sgemm(ta, tb, self._i(m), self._i(n), self._i(k), ctypes.byref(one), self._f(a),
                   self._i(lda), self._f(b), self._i(ldb), ctypes.byref(zero), self._f(c),
                   self._i(ldc))

    def gesvd_all(self, m, n, a, s, u, ldu, vt, ldvt):
        """sgesvd_("All", "All", ...) with FAISS's workspace query first."""
        info, lwork = ctypes.c_int(-1), ctypes.c_int(-1)
        worksz = np.zeros(1, dtype=np.float32)
        args = (b"All", b"All", self._i(m), self._i(n), self._f(a), self._i(m), self._f(s),
                self._f(u), self._i(ldu), self._f(vt), self._i(ldvt))
        self.sgesvd(*args, self._f(worksz), ctypes.byref(lwork), ctypes.byref(info))
        lwork = ctypes.c_int(int(worksz[0]))
        work = np.zeros(max(1, lwork.value), dtype=np.float32)
        self.sgesvd(*args, self._f(work), ctypes.byref(lwork), ctypes.byref(info))


def opq_refusal(faiss, opq):
    """Why FAISS's own OPQMatrix::train must run, or None."""
    if type(opq) is not faiss.OPQMatrix:
        return "a %s trains its own way" % type(opq).__name__
    handle = _profile.faiss_blas_handle()[0]
    if handle is None or not hasattr(handle, "sgesvd_"):
        return "the faiss module's LAPACK (sgesvd_) was not found"
    pq = opq.pq
    if pq is not None and (pq.train_type != faiss.ProductQuantizer.Train_default or
                           pq.assign_index is not None):
        return "the OPQ's PQ trains its own way"
    return None


def pq_encodable(pq):
    """Whether fkm_pq_encode gives pq.compute_codes's bytes: sub-vectors of
    fewer than 16 dimensions (FAISS's BLAS distances otherwise), at most 16
    bits, no transposed centroids (another FAISS kernel)."""
    return pq.dsub < 16 and pq.nbits <= 16 and pq.transposed_centroids.size() == 0


def compute_codes(faiss, ctx, pq, x, prof):
    """pq.compute_codes(x): flashkm's where pq_encodable, else FAISS's."""
    if not pq_encodable(pq):
        return pq.compute_codes(x)
    return kmeans.pq_encode(ctx, x, faiss.vector_to_array(pq.centroids), pq.nbits, pq.M,
                            profile=prof)


def decode_into(faiss, pq, codes, n, out):
    """pq.decode(codes) (copies of the centroids: no arithmetic) into out
    (n * d floats), kept from round to round, where the module has the
    low-level decode_c; else FAISS's decode's own new array."""
    codes = np.ascontiguousarray(codes, dtype=np.uint8)
    if hasattr(pq, "decode_c"):
        pq.decode_c(faiss.swig_ptr(codes), faiss.swig_ptr(out), n)
        return out
    return np.ascontiguousarray(pq.decode(codes), dtype=np.float32).ravel()


def train_opq(faiss, ctx, opq, x, prof, times=None):
    """OPQMatrix::train(n, x) with its PQ trainings on flashkm. Returns the
    reason when FAISS's own train() must run instead (nothing changed).
    times: a dict that receives the seconds of the rounds' PQ k-means and
    encodings (flashkm's) and of the rest (decode, products, SVD: FAISS's
    and its BLAS's): opq_pq_kmeans_s, opq_encode_s, opq_rest_s."""
    why = opq_refusal(faiss, opq)
    if why is not None:
        return why
    lapack = _Lapack(_profile.faiss_blas_handle()[0])
    xs = np.ascontiguousarray(subsample(x, opq.max_train_points, 1234), dtype=np.float32)
    n, d_in, d_out = xs.shape[0], opq.d_in, opq.d_out
    d, d2 = max(d_in, d_out), d_out
    pq = opq.pq if opq.pq is not None else faiss.ProductQuantizer(d2, opq.M, 8)
    if opq.niter > 0:
        why = pq_refusal(faiss, pq, n, prof)
        if why is not None:
            return why
    # centre x: FAISS's float sums, row after row, then / n
    total = np.zeros(d, dtype=np.float32)
    if n > 0:
        total[:d_in] = np.add.accumulate(xs, axis=0, dtype=np.float32)[-1]
    mean = total / np.float32(n)
    xtrain = np.zeros((n, d), dtype=np.float32)
    xtrain[:, :d_in] = xs - mean[:d_in]
    if opq.A.size() == 0:
        rot = np.empty(d * d, dtype=np.float32)
        faiss.float_randn(faiss.swig_ptr(rot), d * d, 1234)
        faiss.matrix_qr(d, d, faiss.swig_ptr(rot))
        rotation = np.ascontiguousarray(rot[:d * d2])  # the d * d2 upper part
    else:
        if opq.A.size() != d * d2:
            raise RuntimeError("rotation matrix A has incorrect size")
        rotation = faiss.vector_to_array(opq.A).astype(np.float32)
    xproj = np.empty(d2 * n, dtype=np.float32)
    recons = np.empty(d2 * n, dtype=np.float32)
    slices = np.empty((pq.M, n, pq.dsub), dtype=np.float32)  # each round cut into it
    xxr = np.empty(d * n, dtype=np.float32)
    tmp = np.zeros(d * d * 4, dtype=np.float32)
    u, vt, sv = tmp[:d * d], tmp[d * d:2 * d * d], tmp[2 * d * d:]
    stats = []
    t_pq = t_enc = 0.0
    t_all = time.time()
    for it in range(opq.niter):
        lapack.gemm(b"Transposed", b"Not transposed", d2, n, d, rotation, d, xtrain, d, xproj,
                    d2)
        pq.cp.max_points_per_centroid = 1000
        pq.cp.niter = opq.niter_pq_0 if it == 0 else opq.niter_pq
        pq.verbose = opq.verbose
        t0 = time.time()
        stats.append(train_pq_slices(faiss, ctx, pq, xproj.reshape(n, d2), prof, slices))
        t1 = time.time()
        codes = compute_codes(faiss, ctx, pq, xproj.reshape(n, d2), prof)
        t_pq, t_enc = t_pq + (t1 - t0), t_enc + (time.time() - t1)
        recons = decode_into(faiss, pq, codes, n, recons)
        lapack.gemm(b"Not", b"Transposed", d2, d, n, recons, d2, xtrain, d, xxr, d2)
        lapack.gesvd_all(d2, d, xxr, sv, vt, d2, u, d)  # u and vt swapped, as in FAISS
        lapack.gemm(b"Transposed", b"Transposed", d, d2, d2, u, d, vt, d2, rotation, d)
        pq.train_type = faiss.ProductQuantizer.Train_hot_start
    if times is not None:
        times.update(opq_pq_kmeans_s=t_pq, opq_encode_s=t_enc,
                     opq_rest_s=(time.time() - t_all) - t_pq - t_enc)
    if d > d_in:  # revert A to d_in columns
        rotation = np.ascontiguousarray(rotation.reshape(d2, d)[:, :d_in]).ravel()
    faiss.copy_array_to_vector(rotation, opq.A)
    opq.is_trained = True
    opq.is_orthonormal = True
    return None


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

