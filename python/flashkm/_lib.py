"""ctypes binding of the flashkm C library (include/flashkm.h).

The library is found, in this order:
  1. the path in the environment variable FLASHKM_LIBRARY;
  2. libflashkm.so next to this package (a wheel or a copied build);
  3. the install prefix this package sits in (PREFIX/lib/...), sys.prefix/lib,
     /usr/local/lib, then the system's search path.
"""
import ctypes
import ctypes.util
import os
import sys
import threading

FKM_OK = 0
FKM_ERR_UNSUPPORTED = 4
FKM_ERR_INTERRUPTED = 7

BACKEND_AUTO, BACKEND_CPU, BACKEND_CUDA = 0, 1, 2
DTYPE_F32, DTYPE_F16, DTYPE_BF16 = 0, 1, 2
METRIC_INNER_PRODUCT, METRIC_L2 = 0, 1
ASSIGN_FAISS, ASSIGN_FAST = 0, 1
LOG_DEBUG, LOG_INFO, LOG_WARNING = 0, 1, 2
SIMD_NONE, SIMD_AVX2, SIMD_AVX512 = 0, 1, 2
INIT_RANDOM, INIT_KMEANS_PLUS_PLUS, INIT_AFK_MC2 = 0, 1, 2
PROBE_NORM, PROBE_L2, PROBE_IP = 0, 1, 2
PROBE_CASES, PROBE_MAX_D = 160, 80

_STATUS_NAMES = {
    1: "FKM_ERR_INVALID_ARG", 2: "FKM_ERR_NOT_FINITE", 3: "FKM_ERR_OUT_OF_MEMORY",
    4: "FKM_ERR_UNSUPPORTED", 5: "FKM_ERR_NO_DEVICE", 6: "FKM_ERR_CUDA",
    7: "FKM_ERR_INTERRUPTED", 8: "FKM_ERR_NUMERIC", 9: "FKM_ERR_FAISS",
    10: "FKM_ERR_INTERNAL", 11: "FKM_ERR_SOURCE",
}


class Error(RuntimeError):
    """A flashkm call failed. `status` is the fkm_status code, `name` its name."""

    def __init__(self, status, message):
        self.status = status
        self.name = _STATUS_NAMES.get(status, "FKM_ERR_%d" % status)
        super().__init__(message)


class LibraryNotFound(ImportError):
    """The shared library libflashkm.so could not be located."""


PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
                               ctypes.c_void_p)
LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p)


class IterationStats(ctypes.Structure):
    _fields_ = [
        ("obj", ctypes.c_float),
        ("time", ctypes.c_double),
        ("time_search", ctypes.c_double),
        ("imbalance_factor", ctypes.c_double),
        ("nsplit", ctypes.c_int),
        ("obj_double", ctypes.c_double),
    ]


class LoopOrder(ctypes.Structure):
    """fkm_loop_order: the summation order of one of FAISS's loops."""
    _fields_ = [(name, ctypes.c_int32) for name in (
        "width", "main_fma", "tail_width", "tail_separate", "tail_fma", "scalar_fma")]

    def as_tuple(self):
        return tuple(getattr(self, f) for f, _ in self._fields_)


class Profile(ctypes.Structure):
    """fkm_profile: whose arithmetic a run reproduces."""
    _fields_ = [
        ("faiss_version", ctypes.c_int32),
        ("simd", ctypes.c_int),
        ("blas_threshold", ctypes.c_int64),
        ("norm", LoopOrder),
        ("l2", LoopOrder),
        ("ip", LoopOrder),
    ]


class Params(ctypes.Structure):
    """fkm_params; fields are FAISS's ClusteringParameters names."""
    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("niter", ctypes.c_int),
        ("nredo", ctypes.c_int),
        ("verbose", ctypes.c_int),
        ("spherical", ctypes.c_int),
        ("int_centroids", ctypes.c_int),
        ("frozen_centroids", ctypes.c_int),
        ("min_points_per_centroid", ctypes.c_int),
        ("max_points_per_centroid", ctypes.c_int),
        ("seed", ctypes.c_int64),
        ("metric", ctypes.c_int),
        ("assign_mode", ctypes.c_int),
        ("check_finite", ctypes.c_int),
        ("progress", PROGRESS_FN),
        ("progress_user", ctypes.c_void_p),
        ("log", LOG_FN),
        ("log_user", ctypes.c_void_p),
        ("profile", Profile),
        ("init_method", ctypes.c_int),
        ("afkmc2_chain_length", ctypes.c_int),
        ("early_stop_threshold", ctypes.c_double),
        ("use_faster_subsampling", ctypes.c_int),
        ("blas_sgemm", ctypes.c_void_p),
        ("blas_query_bs", ctypes.c_int),
        ("blas_database_bs", ctypes.c_int),
        ("memory_budget", ctypes.c_size_t),
    ]


READ_ROWS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_int64),
                                ctypes.c_int64, ctypes.c_void_p)


class Source(ctypes.Structure):
    """fkm_source: rows the library reads on demand (docs/data-path.md)."""
    _fields_ = [
        ("n", ctypes.c_int64),
        ("d", ctypes.c_int64),
        ("dtype", ctypes.c_int),
        ("base", ctypes.c_void_p),
        ("row_stride", ctypes.c_int64),
        ("read", READ_ROWS_FN),
        ("user", ctypes.c_void_p),
    ]


class MemoryPlan(ctypes.Structure):
    """fkm_memory_plan: what a run holds in the engine's memory."""
    _fields_ = [
        ("in_core_bytes", ctypes.c_size_t),
        ("streamed_bytes", ctypes.c_size_t),
        ("bytes", ctypes.c_size_t),
        ("available", ctypes.c_size_t),
        ("streamed", ctypes.c_int),
        ("chunk_rows", ctypes.c_int64),
    ]


def _candidates():
    here = os.path.dirname(os.path.abspath(__file__))
    names = ("libflashkm.so", "libflashkm.so.0")
    dirs = [here, os.path.join(here, "lib")]
    # PREFIX/lib/pythonX.Y/site-packages/flashkm -> PREFIX/lib (and PREFIX/lib64).
    prefix = os.path.abspath(os.path.join(here, "..", "..", "..", ".."))
    for base in (prefix, sys.prefix, "/usr/local"):
        dirs += [os.path.join(base, "lib"), os.path.join(base, "lib64"),
                 os.path.join(base, "lib", "x86_64-linux-gnu")]
    for d in dirs:
        for n in names:
            yield os.path.join(d, n)


def find_library():
    """Path of the flashkm shared library, or raise LibraryNotFound."""
    env = os.environ.get("FLASHKM_LIBRARY")
    if env:
        if not os.path.isfile(env):
            raise LibraryNotFound("FLASHKM_LIBRARY=%s: no such file" % env)
        return env
    for path in _candidates():
        if os.path.isfile(path):
            return path
    found = ctypes.util.find_library("flashkm")
    if found:
        return found
    raise LibraryNotFound(
        "cannot find libflashkm.so: set FLASHKM_LIBRARY to its path "
        "(in a build tree: BUILD/plugin/libflashkm.so) or install flashkm "
        "(cmake --install BUILD)")


_i64, _int, _vp = ctypes.c_int64, ctypes.c_int, ctypes.c_void_p
# Every function this binding calls, (restype, argtypes), as include/flashkm.h
# declares it (python/tests/test_abi.py checks them against the header).
_SIGNATURES = {
    "fkm_version": (ctypes.c_uint, []),
    "fkm_version_string": (ctypes.c_char_p, []),
    "fkm_status_string": (ctypes.c_char_p, [_int]),
    "fkm_params_init_size": (_int, [ctypes.POINTER(Params), ctypes.c_size_t]),
    "fkm_profile_init": (_int, [ctypes.POINTER(Profile), _int, _int]),
    "fkm_profile_nearest": (_int, [_int]),
    "fkm_profile_name": (_int, [ctypes.POINTER(Profile), ctypes.c_char_p, ctypes.c_size_t]),
    "fkm_profile_parse": (_int, [ctypes.c_char_p, ctypes.POINTER(Profile)]),
    "fkm_probe_case": (_int, [_int, ctypes.POINTER(_i64), _vp, _vp]),
    "fkm_probe_identify": (_int, [_int, _vp, ctypes.POINTER(LoopOrder)]),
    "fkm_ctx_create": (_int, [_int, _int, ctypes.POINTER(_vp)]),
    "fkm_ctx_destroy": (None, [_vp]),
    "fkm_ctx_backend": (_int, [_vp]),
    "fkm_ctx_last_error": (ctypes.c_char_p, [_vp]),
    "fkm_ctx_set_num_threads": (_int, [_vp, _int]),
    "fkm_ctx_set_stream": (_int, [_vp, _vp]),
    "fkm_ctx_release_memory": (_int, [_vp]),
    "fkm_ctx_set_mpi_comm": (_int, [_vp, _i64]),
    "fkm_ctx_comm_rank": (_int, [_vp, ctypes.POINTER(_int), ctypes.POINTER(_int)]),
    "fkm_ctx_device_name": (ctypes.c_char_p, [_vp]),
    "fkm_train": (_int, [_vp, ctypes.POINTER(Params), _i64, _i64, _i64, _int, _vp, _vp, _vp, _i64,
                         _vp, _vp, ctypes.POINTER(IterationStats), _i64, ctypes.POINTER(_i64)]),
    "fkm_train_batched": (_int, [_vp, ctypes.POINTER(Params), _i64, _i64, _i64, _i64, _int, _vp,
                                 _vp, _vp, _i64, _vp, _vp, ctypes.POINTER(IterationStats), _i64,
                                 ctypes.POINTER(_i64)]),
    "fkm_assign": (_int, [_vp, ctypes.POINTER(Params), _i64, _i64, _i64, _int, _vp, _vp, _vp,
                          _vp]),
    "fkm_order_coverage": (_int, [_vp, ctypes.POINTER(Params), _i64, _i64, _i64, _int,
                                  ctypes.POINTER(_i64)]),
    "fkm_pq_encode": (_int, [_vp, ctypes.POINTER(Params), _i64, _i64, _i64, _int, _vp, _vp,
                             _i64, _vp, _vp, _vp]),
    "fkm_rand_perm": (_int, [_i64, _i64, _i64, _vp]),
    "fkm_pq_slices": (_int, [_i64, _i64, _i64, _vp, _vp]),
    "fkm_source_host": (_int, [ctypes.POINTER(Source), _vp, _i64, _i64, _int, _i64]),
    "fkm_train_source": (_int, [_vp, ctypes.POINTER(Params), ctypes.POINTER(Source), _i64, _vp,
                                _vp, _i64, _vp, _vp, ctypes.POINTER(IterationStats), _i64,
                                ctypes.POINTER(_i64)]),
    "fkm_train_memory": (_int, [_vp, ctypes.POINTER(Params), _i64, _i64, _i64, _i64, _int,
                                ctypes.POINTER(MemoryPlan)]),
    "fkm_train_rows": (_int, [_vp, ctypes.POINTER(Params), _i64, _i64, _vp,
                              ctypes.POINTER(_i64)]),
}


def _declare(lib):
    for name, (res, args) in _SIGNATURES.items():
        f = getattr(lib, name)
        f.restype = res
        f.argtypes = args


_lib = None
_lib_lock = threading.Lock()


def lib():
    """The loaded library (loaded on first use)."""
    global _lib
    with _lib_lock:
        if _lib is None:
            path = find_library()
            try:
                handle = ctypes.CDLL(path)
            except OSError as e:
                raise LibraryNotFound("cannot load %s: %s" % (path, e)) from e
            _declare(handle)
            _lib = handle
        return _lib


def library_path():
    """Path of the library in use."""
    return lib()._name


def version():
    """Version string of the loaded library ("0.3.0")."""
    return lib().fkm_version_string().decode()


def check(status, ctx=None):
    """Raise Error for a non-zero status, with the context's detail."""
    if status == FKM_OK:
        return
    text = lib().fkm_status_string(status).decode()
    detail = lib().fkm_ctx_last_error(ctx).decode() if ctx else ""
    raise Error(status, "%s: %s" % (text, detail) if detail else text)


def default_params():
    p = Params()
    check(lib().fkm_params_init_size(ctypes.byref(p), ctypes.sizeof(Params)))
    return p


def profile_name(profile):
    """The name of an fkm_profile ("faiss-1.15.1-avx512", "flashkm")."""
    buf = ctypes.create_string_buffer(96)
    check(lib().fkm_profile_name(ctypes.byref(profile), buf, len(buf)))
    return buf.value.decode()


_BACKENDS = {"auto": BACKEND_AUTO, "cpu": BACKEND_CPU, "cuda": BACKEND_CUDA, "gpu": BACKEND_CUDA}


def c_int(name, value, lo=-2**31, hi=2**31 - 1):
    """value as a C int argument: a ValueError naming it when out of range
    (ctypes would wrap it silently)."""
    v = int(value)
    if not lo <= v <= hi:
        raise ValueError("%s = %d is outside [%d, %d]" % (name, v, lo, hi))
    return v


class Context:
    """An fkm_ctx: backend ('auto', 'cpu', 'cuda'), device ordinal.

    Safe to share between threads: calls on one context are serialised by
    its lock (the library allows one thread at a time per context, and
    ctypes releases the GIL during a call). Use `with ctx.lock:` around a
    library call and the reading of its error."""

    def __init__(self, backend="auto", device=0, num_threads=0):
        if backend not in _BACKENDS:
            raise ValueError("backend must be one of auto, cpu, cuda, not %r" % (backend,))
        self._lib = lib()
        self.lock = threading.RLock()
        device = c_int("device", device)
        num_threads = c_int("num_threads", num_threads, 0)
        handle = ctypes.c_void_p()
        check(self._lib.fkm_ctx_create(_BACKENDS[backend], device, ctypes.byref(handle)))
        self.handle = handle
        if num_threads:
            try:
                check(self._lib.fkm_ctx_set_num_threads(handle, num_threads), handle)
            except Error:
                self.close()
                raise

    def set_comm(self, comm):
        """Makes the context's runs distributed over an mpi4py communicator
        (docs/distributed.md): collective over it; every rank then trains
        on its own rows of x and gets the one-process centroids. None
        returns to one process. The library duplicates the communicator;
        the context must be closed before MPI is finalised."""
        if comm is None:
            handle = -1
        elif hasattr(comm, "py2f"):
            handle = comm.py2f()
        else:
            raise TypeError("comm must be an mpi4py communicator (or None), not %r"
                            % type(comm).__name__)
        with self.lock:
            check(self._lib.fkm_ctx_set_mpi_comm(self.handle, handle), self.handle)
        self.comm = comm

    @property
    def rank(self):
        """(rank, size) of the context's communicator ((0, 1) without one)."""
        r, s = _int(0), _int(1)
        with self.lock:
            check(self._lib.fkm_ctx_comm_rank(self.handle, ctypes.byref(r), ctypes.byref(s)),
                  self.handle)
        return r.value, s.value

    @property
    def backend(self):
        with self.lock:
            b = self._lib.fkm_ctx_backend(self.handle)
        return "cuda" if b == BACKEND_CUDA else "cpu"

    @property
    def device_name(self):
        with self.lock:
            return self._lib.fkm_ctx_device_name(self.handle).decode()

    def close(self):
        with self.lock:
            if self.handle:
                self._lib.fkm_ctx_destroy(self.handle)
                self.handle = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
