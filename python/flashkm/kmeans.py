"""flashkm.Kmeans: a drop-in for faiss.Kmeans, and the functions under it."""
import ctypes
import signal
import sys
import threading

import numpy as np

from . import _arrays, _lib
from . import profile as _profile

# faiss.ClusteringParameters' fields and their defaults (FAISS 1.7.3).
CLUSTERING_FIELDS = {
    "niter": 25, "nredo": 1, "verbose": False, "spherical": False, "int_centroids": False,
    "update_index": False, "frozen_centroids": False, "min_points_per_centroid": 39,
    "max_points_per_centroid": 256, "seed": 1234, "decode_block_size": 32768,
}
# Fields later releases added: (first release, defaults).
LATER_FIELDS = (
    (10900, {"check_input_data_for_NaNs": True, "use_faster_subsampling": False}),
    (11400, {"init_method": 0, "afkmc2_chain_length": 50}),
    (11402, {"early_stop_threshold": 0.0}),
)
STAT_FIELDS = ("obj", "time", "time_search", "imbalance_factor", "nsplit")
STATS_BUFFER = 4096  # statistics copied by the library; beyond, the callback's
INIT_METHODS = {"random": _lib.INIT_RANDOM, "kmeans++": _lib.INIT_KMEANS_PLUS_PLUS,
                "k-means++": _lib.INIT_KMEANS_PLUS_PLUS, "afkmc2": _lib.INIT_AFK_MC2,
                "afk-mc2": _lib.INIT_AFK_MC2}


def clustering_fields(prof):
    """The ClusteringParameters fields (with FAISS's defaults) of the FAISS a
    profile reproduces. flashkm's own profile has them all, with FAISS
    1.7.3's behaviour by default: early_stop_threshold -1 (never)."""
    v = prof.profile.faiss_version
    fields = dict(CLUSTERING_FIELDS)
    for first, extra in LATER_FIELDS:
        if v == 0 or v >= first:
            fields.update(extra)
    if v == 0:
        fields["early_stop_threshold"] = -1.0
    return fields


def _init_method(v):
    if isinstance(v, str):
        try:
            return INIT_METHODS[v.lower()]
        except KeyError:
            raise ValueError("init_method %r: expected one of %s or FAISS's "
                             "ClusteringInitMethod values" % (v, sorted(INIT_METHODS))) from None
    v = int(v)
    if v not in (0, 1, 2):
        raise ValueError("init_method = %d is not a ClusteringInitMethod" % v)
    return v


def _make_params(cp, metric, fast=False, prof=None):
    prof = prof if prof is not None else _profile.named("flashkm")
    p = _lib.default_params()
    p.profile = prof.for_call()
    prof.set_blas(p)
    p.niter = _lib.c_int("niter", cp["niter"])
    p.nredo = _lib.c_int("nredo", cp["nredo"])
    p.verbose = int(bool(cp["verbose"]))
    p.spherical = int(bool(cp["spherical"]))
    p.int_centroids = int(bool(cp["int_centroids"]))
    p.frozen_centroids = int(bool(cp["frozen_centroids"]))
    p.min_points_per_centroid = _lib.c_int("min_points_per_centroid",
                                           cp["min_points_per_centroid"])
    p.max_points_per_centroid = _lib.c_int("max_points_per_centroid",
                                           cp["max_points_per_centroid"])
    p.seed = _lib.c_int("seed", cp["seed"], -2**63, 2**63 - 1)
    p.metric = metric
    p.assign_mode = _lib.ASSIGN_FAST if fast else _lib.ASSIGN_FAISS
    p.check_finite = int(bool(cp.get("check_input_data_for_NaNs", True)))
    p.use_faster_subsampling = int(bool(cp.get("use_faster_subsampling", False)))
    p.init_method = _init_method(cp.get("init_method", 0))
    p.afkmc2_chain_length = _lib.c_int("afkmc2_chain_length", cp.get("afkmc2_chain_length", 50))
    if "early_stop_threshold" in cp:
        p.early_stop_threshold = float(cp["early_stop_threshold"])
    return p


class _Callbacks:
    """Progress and log callbacks of one call. Ctrl-C during the run stops it
    after the current iteration; KeyboardInterrupt is raised afterwards. In
    the main thread a SIGINT handler that only sets a flag is installed for
    the duration of the call (so the interrupt cannot land inside ctypes'
    callback machinery); elsewhere Python's own handler raises inside the
    callback, which is caught there."""

    def __init__(self, verbose):
        self.verbose = verbose
        self.interrupted = False
        self.stats = []  # every iteration's statistics, as they come
        self.progress = _lib.PROGRESS_FN(self._progress)
        self.log = _lib.LOG_FN(self._log)
        self._old_handler = None

    def _on_sigint(self, signum, frame):
        self.interrupted = True

    def __enter__(self):
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._old_handler = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc):
        if self._old_handler is not None:
            signal.signal(signal.SIGINT, self._old_handler)
            self._old_handler = None

    def _progress(self, user, redo, it, stats_ptr):
        try:
            st = ctypes.cast(stats_ptr, ctypes.POINTER(_lib.IterationStats)).contents
            self.stats.append({f: getattr(st, f) for f in STAT_FIELDS})
            return 1 if self.interrupted else 0
        except KeyboardInterrupt:
            self.interrupted = True
            return 1

    def _log(self, user, level, msg):
        # As FAISS: verbose lines to stdout, warnings to stderr.
        try:
            text = msg.decode(errors="replace")
            if level == _lib.LOG_WARNING:
                sys.stderr.write("WARNING flashkm: %s\n" % text)
            elif self.verbose:
                sys.stdout.write(text + "\n")
                sys.stdout.flush()
        except KeyboardInterrupt:
            self.interrupted = True

    def install(self, params):
        params.progress = self.progress
        params.log = self.log


def _check_backend(arrays, ctx):
    if ctx.backend != "cuda" and any(a is not None and a.on_device for a in arrays):
        raise ValueError("GPU arrays need the CUDA backend, and this context runs on the %s"
                         % ctx.backend)


def train(ctx, x, k, cp=None, metric=_lib.METRIC_L2, weights=None, init_centroids=None,
          fast=False, return_labels=False, expect_d=None, profile="flashkm", memory_budget=0):
    """k-means on x (n, d) with FAISS's semantics. cp: dict of
    ClusteringParameters fields; profile: whose arithmetic (a name, 'auto' for
    the imported faiss's, or a flashkm.profile.ProfileInfo); memory_budget:
    bytes of engine memory the run may hold (0: no limit of its own; a
    training set that does not fit is streamed, docs/data-path.md). A host
    float32 / float16 matrix whose rows are spaced apart (a column slice, a
    np.memmap of records) is read in place, not copied. Returns (centroids
    (k, d) float32, list of iteration stats dicts[, labels int64 (n,),
    distances float32 (n,)])."""
    prof = _profile.resolve(profile)
    params = clustering_fields(prof)
    params.update(cp or {})
    p = _make_params(params, metric, fast, prof)
    p.memory_budget = _lib.c_int("memory_budget", memory_budget, 0, 2**64 - 1)
    cb = _Callbacks(bool(params["verbose"]))
    cb.install(p)
    with _arrays.as_array(x, 2, "x", allow_row_stride=True) as X:
        n, d = X.shape
        if expect_d is not None and d != expect_d:
            raise AssertionError("x has d = %d, expected d = %d" % (d, expect_d))
        W = (_arrays.as_array(weights, 1, "weights", float_only=True)
             if weights is not None else None)
        I = (_arrays.as_array(init_centroids, 2, "init_centroids", float_only=True)
             if init_centroids is not None else None)
        try:
            _check_backend((X, W, I), ctx)
            if W is not None and W.shape[0] != n:
                raise ValueError("weights has %d entries for %d points" % (W.shape[0], n))
            centroids = np.zeros((k, d), dtype=np.float32)
            n_init = 0
            if I is not None:
                if I.shape[1] != d:
                    raise ValueError("init_centroids has d = %d, x has d = %d" % (I.shape[1], d))
                n_init = I.shape[0]
                if n_init > k:
                    raise ValueError("%d init_centroids for k = %d" % (n_init, k))
                if I.on_device:
                    raise ValueError("init_centroids must be a host array")
                centroids[:n_init] = np.ctypeslib.as_array(
                    ctypes.cast(I.ptr, ctypes.POINTER(ctypes.c_float)), shape=(n_init, d))
            # the library copies up to STATS_BUFFER statistics; a longer run
            # (a huge niter with early stopping) has them from the callback
            cap = max(1, min(p.niter * p.nredo + 1, STATS_BUFFER))
            stats = (_lib.IterationStats * cap)()
            n_stats = ctypes.c_int64(0)
            labels = np.empty(n, dtype=np.int64) if return_labels else None
            dist = np.empty(n, dtype=np.float32) if return_labels else None
            outs = (labels.ctypes.data if return_labels else None,
                    dist.ctypes.data if return_labels else None, stats, cap,
                    ctypes.byref(n_stats))
            W_ptr = W.ptr if W is not None else None
            with cb, ctx.lock:
                if X.row_stride is not None:
                    src = _lib.Source()
                    _lib.check(_lib.lib().fkm_source_host(ctypes.byref(src), X.ptr, n, d,
                                                          X.dtype, X.row_stride))
                    st = _lib.lib().fkm_train_source(
                        ctx.handle, ctypes.byref(p), ctypes.byref(src), k, W_ptr,
                        centroids.ctypes.data, n_init, *outs)
                else:
                    st = _lib.lib().fkm_train(
                        ctx.handle, ctypes.byref(p), n, d, k, X.dtype, X.ptr, W_ptr,
                        centroids.ctypes.data, n_init, *outs)
                if not (st == _lib.FKM_ERR_INTERRUPTED and cb.interrupted):
                    _lib.check(st, ctx.handle)
        finally:
            for a in (W, I):
                if a is not None:
                    a.release()
    if st == _lib.FKM_ERR_INTERRUPTED and cb.interrupted:
        raise KeyboardInterrupt
    if n_stats.value <= cap:
        out = [{f: getattr(stats[i], f) for f in STAT_FIELDS} for i in range(n_stats.value)]
    else:
        out = cb.stats[:n_stats.value]
    if return_labels:
        return centroids, out, labels, dist
    return centroids, out


def train_batched(ctx, x, k, cp=None, metric=_lib.METRIC_L2, profile="flashkm",
                  init_centroids=None):
    """B independent k-means problems of one shape in one call
    (fkm_train_batched): x (B, n, d), float32 or float16, host or device;
    each problem trained with FAISS's semantics and cp, the bits of B
    separate train() calls. init_centroids: (B, n_init, d) host float32,
    each problem's first n_init centroids (FAISS's input centroids), or
    None. Returns (centroids (B, k, d) float32, a list per problem of its
    iteration stats dicts)."""
    prof = _profile.resolve(profile)
    params = clustering_fields(prof)
    params.update(cp or {})
    p = _make_params(params, metric, False, prof)
    cb = _Callbacks(bool(params["verbose"]))
    cb.install(p)
    with _arrays.as_array(x, 3, "x") as X:
        _check_backend((X,), ctx)
        B, n, d = X.shape
        centroids = np.zeros((B, k, d), dtype=np.float32)
        n_init = 0
        if init_centroids is not None:
            init = np.asarray(init_centroids, dtype=np.float32)
            if init.ndim != 3 or init.shape[0] != B or init.shape[2] != d or init.shape[1] > k:
                raise ValueError("init_centroids must be (%d, <= %d, %d), got %s"
                                 % (B, k, d, init.shape))
            n_init = init.shape[1]
            centroids[:, :n_init] = init
        cap = max(1, min(p.niter * p.nredo + 1, STATS_BUFFER))
        stats = (_lib.IterationStats * (cap * B))()
        n_stats = (ctypes.c_int64 * B)()
        with cb, ctx.lock:
            st = _lib.lib().fkm_train_batched(
                ctx.handle, ctypes.byref(p), B, n, d, k, X.dtype, X.ptr, None,
                centroids.ctypes.data, n_init, None, None, stats, cap,
                ctypes.cast(n_stats, ctypes.POINTER(ctypes.c_int64)))
            if not (st == _lib.FKM_ERR_INTERRUPTED and cb.interrupted):
                _lib.check(st, ctx.handle)
    if st == _lib.FKM_ERR_INTERRUPTED and cb.interrupted:
        raise KeyboardInterrupt
    out = [[{f: getattr(stats[b * cap + i], f) for f in STAT_FIELDS}
            for i in range(min(n_stats[b], cap))] for b in range(B)]
    return centroids, out


def train_rows(ctx, n, k, cp=None, profile="flashkm"):
    """The indices of the rows train() trains on for n points (fkm_train_rows:
    FAISS's subsample in its order, rand_perm's or the faster subsampling's),
    or None when every row is trained on, in order."""
    prof = _profile.resolve(profile)
    params = clustering_fields(prof)
    params.update(cp or {})
    p = _make_params(params, _lib.METRIC_L2, False, prof)
    # room for the library's count, min(n, k * max_points_per_centroid)
    rows = np.empty(min(n, k * params["max_points_per_centroid"]), dtype=np.int64)
    count = ctypes.c_int64()
    with ctx.lock:
        _lib.check(_lib.lib().fkm_train_rows(ctx.handle, ctypes.byref(p), n, k, rows.ctypes.data,
                                             ctypes.byref(count)), ctx.handle)
    return None if count.value == n else rows[:count.value]


def assign(ctx, x, centroids, metric=_lib.METRIC_L2, profile="flashkm", distances=True):
    """FAISS's k=1 flat search of x against centroids in a profile's
    arithmetic: (distances float32 (n,), labels int64 (n,)); distances=False:
    (None, labels), the distances neither computed into nor copied back."""
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    prof = _profile.resolve(profile)
    p = _make_params(clustering_fields(prof), metric, False, prof)
    with _arrays.as_array(x, 2, "x") as X:
        _check_backend((X,), ctx)
        n, d = X.shape
        if c.ndim != 2 or c.shape[1] != d:
            raise ValueError("centroids must be (k, %d), got %s" % (d, c.shape))
        labels = np.empty(n, dtype=np.int64)
        dist = np.empty(n, dtype=np.float32) if distances else None
        with ctx.lock:
            st = _lib.lib().fkm_assign(ctx.handle, ctypes.byref(p), n, d, c.shape[0], X.dtype,
                                       X.ptr, c.ctypes.data, labels.ctypes.data,
                                       dist.ctypes.data if distances else None)
            _lib.check(st, ctx.handle)
    return dist, labels


_DTYPE_CODES = {"float32": _lib.DTYPE_F32, "float16": _lib.DTYPE_F16,
                "bfloat16": _lib.DTYPE_BF16}


def order_coverage(ctx, n, d, k, metric=_lib.METRIC_L2, profile="flashkm", dtype="float32",
                   fast=False):
    """How many of the n * k dot products of assign() on n rows of d
    dimensions (dtype: 'float32', 'float16' or 'bfloat16') against k
    centroids ctx sums in FAISS's own order (fkm_order_coverage,
    docs/profiles.md): n * k means the labels are that FAISS's, near-ties
    included. Learns the BLAS's order on a CUDA context where no call has
    yet."""
    if str(dtype) not in _DTYPE_CODES:
        raise TypeError("dtype must be float32, float16 or bfloat16, got %s" % dtype)
    prof = _profile.resolve(profile)
    p = _make_params(clustering_fields(prof), metric, fast, prof)
    code = _DTYPE_CODES[str(dtype)]
    covered = _lib._i64(0)
    with ctx.lock:
        _lib.check(_lib.lib().fkm_order_coverage(ctx.handle, ctypes.byref(p), n, d, k, code,
                                                 ctypes.byref(covered)), ctx.handle)
    return covered.value


def pq_encode(ctx, x, pq_centroids, nbits=8, M=None, coarse=None, lists=None,
              profile="flashkm", check_finite=True):
    """FAISS's ProductQuantizer::compute_codes (sub-vectors of fewer than 16
    dimensions) in a profile's arithmetic: codes uint8 (n, (M nbits + 7) // 8).
    pq_centroids: (M, 2^nbits, dsub), or ProductQuantizer.centroids' flat
    M * 2^nbits * dsub values with M given; coarse (nlist, d) and lists (n)
    int64: encode x - coarse[lists] (IndexIVFPQ's residuals). check_finite=False
    skips the scan of x, pq_centroids and coarse for NaN and infinity (for
    rows a caller has checked already, as add_index's assignment does); a
    value that is not finite then gives unspecified codes, never an error."""
    X = np.ascontiguousarray(x, dtype=np.float32)
    if X.ndim != 2:
        raise ValueError("x must be (n, d), got shape %s" % (X.shape,))
    n, d = X.shape
    ksub = 1 << int(nbits)
    C = np.ascontiguousarray(pq_centroids, dtype=np.float32)
    if M is None:
        if C.ndim != 3:
            raise ValueError("pq_centroids must be (M, 2^nbits, dsub) when M is not given")
        M = C.shape[0]
    M = int(M)
    if M < 1 or d % M != 0 or C.size != d * ksub:
        raise ValueError("pq_centroids (%d values) is not (M = %d, %d, d / M) for d = %d"
                         % (C.size, M, ksub, d))
    if (coarse is None) != (lists is None):
        raise ValueError("coarse and lists go together")
    nlist, cptr, lptr = 0, None, None
    if coarse is not None:
        coarse = np.ascontiguousarray(coarse, dtype=np.float32)
        lists = np.ascontiguousarray(lists, dtype=np.int64)
        if coarse.ndim != 2 or coarse.shape[1] != d or lists.shape != (n,):
            raise ValueError("coarse must be (nlist, %d) and lists (%d,), got %s and %s"
                             % (d, n, coarse.shape, lists.shape))
        nlist, cptr, lptr = coarse.shape[0], coarse.ctypes.data, lists.ctypes.data
    prof = _profile.resolve(profile)
    p = _make_params(clustering_fields(prof), _lib.METRIC_L2, False, prof)
    p.check_finite = int(bool(check_finite))
    codes = np.empty((n, (M * int(nbits) + 7) // 8), dtype=np.uint8)
    with ctx.lock:
        st = _lib.lib().fkm_pq_encode(ctx.handle, ctypes.byref(p), n, d, M, int(nbits),
                                      X.ctypes.data, C.ctypes.data, nlist, cptr, lptr,
                                      codes.ctypes.data)
        _lib.check(st, ctx.handle)
    return codes


class Kmeans:
    """Drop-in for faiss.Kmeans(d, k, **kwargs).

    Keyword arguments are faiss.ClusteringParameters' fields of the FAISS
    whose arithmetic is reproduced (niter=25, nredo=1, verbose, spherical,
    int_centroids, frozen_centroids, seed=1234, min_points_per_centroid=39,
    max_points_per_centroid=256, and from FAISS 1.9 / 1.14 / 1.14.2 on
    check_input_data_for_NaNs, use_faster_subsampling, init_method,
    afkmc2_chain_length, early_stop_threshold), plus `gpu` (as faiss:
    False, True/-1 or a GPU count; any GPU request selects the CUDA engine).
    flashkm's own: profile='auto' (the imported faiss's arithmetic, see
    flashkm.profile; flashkm's own without faiss; or a profile name),
    backend='auto'|'cpu'|'cuda', device=0, num_threads=0, fast=False (fp16
    data only, approximate), memory_budget=0 (bytes of engine memory a run
    may hold; a training set that does not fit is streamed with the same
    results, docs/data-path.md), comm=None (an mpi4py communicator: a
    distributed run, docs/distributed.md; every rank calls train() with its
    own rows of x, in rank order, and every rank gets the centroids of one
    process on the whole x, bit for bit). A ClusteringParameters field flashkm does not
    implement (e.g. a newer FAISS's use_super_kmeans) is handed to
    faiss.Kmeans when it is not at its default, with a ProfileWarning: the
    centroids are then FAISS's own, never other ones.

    As in faiss, spherical k-means uses the inner product (IndexFlatIP).
    After train(): centroids (k, d) float32, obj (per-iteration objective),
    iteration_stats (dicts with FAISS's field names), index (a faiss flat
    index holding the centroids, when faiss is importable, else None),
    profile (the flashkm.profile.ProfileInfo used).
    """

    def __init__(self, d, k, **kwargs):
        self.d = d
        self.k = k
        self.gpu = False
        self.backend = "auto"
        self.device = 0
        self.num_threads = 0
        self.fast = False
        self.memory_budget = 0
        self.comm = None
        self.profile = _profile.resolve(kwargs.pop("profile", "auto"))
        self.cp = clustering_fields(self.profile)
        self._faiss_only = {}
        for key, v in kwargs.items():
            if key == "gpu":
                self.gpu = v
                if v:
                    self.backend = "cuda"
            elif key in ("backend", "device", "num_threads", "fast", "memory_budget", "comm"):
                setattr(self, key, v)
            elif key == "progressive_dim_steps":
                raise NotImplementedError("flashkm.Kmeans does not do progressive-dimension "
                                          "clustering; use faiss.Kmeans for it")
            elif key in self.cp:
                self.cp[key] = v
            elif _faiss_default(key) is not _MISSING:
                self._faiss_only[key] = v
            else:
                raise AttributeError("'ClusteringParameters' has no field %r" % key)
        self._kwargs = dict(kwargs)
        self.centroids = None
        self.obj = None
        self.iteration_stats = None
        self.index = None
        self._ctx = None
        self._lock = threading.RLock()  # one train / assign at a time

    @property
    def metric(self):
        return _lib.METRIC_INNER_PRODUCT if self.cp["spherical"] else _lib.METRIC_L2

    def _context(self):
        with self._lock:
            if self._ctx is None:
                ctx = _lib.Context(self.backend, self.device, self.num_threads)
                if self.comm is not None:
                    try:
                        ctx.set_comm(self.comm)
                    except Exception:
                        ctx.close()
                        raise
                self._ctx = ctx
            return self._ctx

    def _delegated(self):
        """The fields only FAISS implements that are not at FAISS's default."""
        return {k: v for k, v in self._faiss_only.items() if v != _faiss_default(k)}

    def train(self, x, weights=None, init_centroids=None):
        """k-means on x (n, d); returns the final objective (as faiss).

        Thread-safe: calls from several threads on one Kmeans run one after
        the other (the last one's result stays), as with faiss.Kmeans."""
        with self._lock:
            return self._train(x, weights, init_centroids)

    def _train(self, x, weights, init_centroids):
        from . import faiss_compat
        other = self._delegated()
        if other and self.comm is not None:
            raise NotImplementedError(
                "flashkm does not implement %s, and faiss.Kmeans has no distributed run: "
                "drop it or comm" % ", ".join("%s=%r" % kv for kv in sorted(other.items())))
        if other:
            return self._train_with_faiss(x, weights, init_centroids, other)
        centroids, stats = train(self._context(), x, self.k, self.cp, self.metric, weights,
                                 init_centroids, self.fast, expect_d=self.d,
                                 profile=self.profile, memory_budget=self.memory_budget)
        self.centroids = centroids
        self.iteration_stats = stats
        self.obj = np.array([s["obj"] for s in stats])
        self.index = self._faiss_index()
        faiss_compat.last_train_info = {
            "used_flashkm": True, "profile": self.profile.describe(),
            "backend": self._context().backend, "device": self._context().device_name,
            "iteration_stats": stats}
        return self.obj[-1] if self.obj.size > 0 else 0.0

    def _train_with_faiss(self, x, weights, init_centroids, fields):
        import warnings

        import faiss

        from . import faiss_compat
        note = ("flashkm does not implement %s: faiss.Kmeans trains this run"
                % ", ".join("%s=%r" % kv for kv in sorted(fields.items())))
        warnings.warn(note, _profile.ProfileWarning, stacklevel=3)
        cls = faiss_compat.original_faiss_kmeans(faiss)
        kw = {k: v for k, v in self._kwargs.items()
              if k not in ("backend", "device", "num_threads", "fast", "memory_budget", "comm")}
        km = cls(self.d, self.k, **kw)
        obj = km.train(x, weights=weights, init_centroids=init_centroids)
        self.centroids, self.obj, self.iteration_stats = km.centroids, km.obj, km.iteration_stats
        self.index = km.index
        faiss_compat.last_train_info = {"used_flashkm": False, "reason": note,
                                        "profile": self.profile.describe()}
        return obj

    def _faiss_index(self):
        try:
            import faiss
        except ImportError:
            return None
        index = faiss.IndexFlatIP(self.d) if self.cp["spherical"] else faiss.IndexFlatL2(self.d)
        index.add(self.centroids)
        return index

    def order_coverage(self, n):
        """How many of the n * k dot products of assign() on n float32 rows
        are summed in this FAISS's own order (flashkm.order_coverage): n * k
        means assign()'s labels are this FAISS's, near-ties included."""
        with self._lock:
            return order_coverage(self._context(), n, self.d, self.k, self.metric,
                                  profile=self.profile)

    def assign(self, x):
        """(distances (n,), labels (n,)) of x against the centroids."""
        with self._lock:
            assert self.centroids is not None, "should train before assigning"
            return assign(self._context(), x, self.centroids, self.metric,
                          profile=self.profile)


_MISSING = object()


def _faiss_default(field):
    """The default of a ClusteringParameters field of the imported faiss
    that flashkm does not know, or _MISSING."""
    try:
        import faiss
    except ImportError:
        return _MISSING
    cp = faiss.ClusteringParameters()
    return getattr(cp, field, _MISSING) if not field.startswith("_") else _MISSING
