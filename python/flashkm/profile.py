"""Whose arithmetic flashkm reproduces: the profile of the FAISS in use.

A profile (docs/profiles.md) is a FAISS release, the SIMD level its build
runs at, the value of faiss.cvar.distance_compute_blas_threshold, and the
summation orders of FAISS's own loops in that build. `detect(faiss)` reads
the first three from the imported module and measures the loops by calling
faiss.fvec_norm_L2sqr, fvec_L2sqr and fvec_inner_product on the library's
probe inputs (a few milliseconds, once per module).

A FAISS release flashkm has no profile for is never used silently: by
default the nearest known release is taken with a warning (recorded in
`warnings` and `last_train_info`); `strict=True` raises instead.
"""
import ctypes
import re
import sys
import warnings as _warnings

import numpy as np

from . import _lib

_SIMD_NAMES = {_lib.SIMD_NONE: "none", _lib.SIMD_AVX2: "avx2", _lib.SIMD_AVX512: "avx512"}


class ProfileWarning(UserWarning):
    """flashkm reproduces a FAISS build it has no exact profile for."""


class ProfileInfo:
    """A resolved profile: `profile` (the C struct), `name`, the FAISS it came
    from (`faiss_version` string or None), `simd`, how the loops were
    obtained (`loops`: 'probed', 'table'), and `warnings`."""

    def __init__(self, profile, faiss_version=None, loops="table", warnings=(), module=None,
                 blas=None):
        self.profile = profile
        self.faiss_version = faiss_version
        self.loops = loops
        self.warnings = list(warnings)
        self._module = module
        self.blas = blas  # FaissBlas of the imported faiss, or None

    @property
    def name(self):
        return _lib.profile_name(self.profile)

    @property
    def simd(self):
        return _SIMD_NAMES.get(self.profile.simd, "?")

    def for_call(self):
        """The C struct for one call: the BLAS threshold is read from the
        module now (FAISS users may change it between calls)."""
        p = _lib.Profile()
        ctypes.memmove(ctypes.byref(p), ctypes.byref(self.profile), ctypes.sizeof(p))
        if self._module is not None and self.profile.faiss_version:
            thr = _threshold(self._module)
            if thr is not None:
                p.blas_threshold = thr
        return p

    def set_blas(self, params):
        """Point an fkm_params at the imported faiss's BLAS with its current
        block sizes (FAISS users may change them between calls); flashkm's
        own order when there is none."""
        if self.blas is None:
            return
        params.blas_sgemm = self.blas.sgemm
        qbs, dbs = _block_sizes(self._module)
        params.blas_query_bs, params.blas_database_bs = qbs, dbs

    def describe(self):
        """A dict for last_train_info."""
        return {"name": _lib.profile_name(self.for_call()), "faiss_version": self.faiss_version,
                "simd": self.simd, "loops": self.loops, "warnings": list(self.warnings),
                "blas": self.blas.name if self.blas is not None else None}

    def __repr__(self):
        return "<flashkm profile %s>" % self.name


def version_number(text):
    """'1.15.1' -> 11501 (MAJOR*10000 + MINOR*100 + PATCH); None if unparsable."""
    m = re.match(r"^(\d+)\.(\d+)(?:\.(\d+))?", str(text))
    if not m:
        return None
    major, minor, patch = (int(g or 0) for g in m.groups())
    if minor > 99 or patch > 99:
        return None
    return major * 10000 + minor * 100 + patch


def _threshold(faiss):
    try:
        return int(faiss.cvar.distance_compute_blas_threshold)
    except Exception:
        return None


def _block_sizes(faiss):
    try:
        return (int(faiss.cvar.distance_compute_blas_query_bs),
                int(faiss.cvar.distance_compute_blas_database_bs))
    except Exception:
        return 4096, 1024


class FaissBlas:
    """The BLAS a faiss module calls on its BLAS path: `sgemm` (the address
    of its sgemm_), `name` (OpenBLAS's configuration string when it is
    OpenBLAS, else the library file)."""

    def __init__(self, sgemm, name):
        self.sgemm = sgemm
        self.name = name

    def __repr__(self):
        return "<FaissBlas %s>" % self.name


def faiss_blas_handle():
    """A ctypes handle on the imported faiss's extension module, through
    which dlsym finds the BLAS (and LAPACK) that module calls: Debian's
    libblas.so.3 / liblapack.so.3, a wheel's bundled OpenBLAS. (handle,
    path), or (None, None) when no loaded faiss module has sgemm_."""
    for name, mod in sorted(sys.modules.items()):
        if not name.startswith("faiss._swigfaiss") or mod is None:
            continue
        path = getattr(mod, "__file__", None)
        if not path:
            continue
        try:
            handle = ctypes.CDLL(path)
            handle.sgemm_
        except (OSError, AttributeError):
            continue
        return handle, path
    return None, None


def faiss_blas(faiss):
    """The BLAS the imported faiss links (faiss_blas_handle), or None."""
    handle, path = faiss_blas_handle()
    if handle is None:
        return None
    sgemm = ctypes.cast(handle.sgemm_, ctypes.c_void_p).value
    label = path
    try:
        cfg = handle.openblas_get_config
        cfg.restype = ctypes.c_char_p
        label = cfg().decode(errors="replace")
    except AttributeError:
        pass
    return FaissBlas(sgemm, label)


def simd_level(faiss):
    """The SIMD level the imported faiss runs at: FAISS 1.14.2+ says it
    (SIMDConfig); older wheels load one library per level."""
    cfg = getattr(faiss, "SIMDConfig", None)
    if cfg is not None:
        name = str(cfg.get_level_name()).upper()
        if name.startswith("AVX512"):
            return _lib.SIMD_AVX512
        if name.startswith("AVX2"):
            return _lib.SIMD_AVX2
        return _lib.SIMD_NONE
    loaded = [m for m in sys.modules if m.startswith("faiss.swigfaiss")]
    if any("avx512" in m for m in loaded):
        return _lib.SIMD_AVX512
    if any("avx2" in m for m in loaded):
        return _lib.SIMD_AVX2
    return _lib.SIMD_NONE


def probe_loops(faiss):
    """The summation orders of faiss.fvec_norm_L2sqr, fvec_L2sqr and
    fvec_inner_product in this build, as (norm, l2, ip) LoopOrder structs;
    an entry is None where no order flashkm models reproduces FAISS."""
    lib = _lib.lib()
    fns = {_lib.PROBE_NORM: lambda x, y, d: faiss.fvec_norm_L2sqr(faiss.swig_ptr(x), d),
           _lib.PROBE_L2: lambda x, y, d: faiss.fvec_L2sqr(faiss.swig_ptr(x), faiss.swig_ptr(y), d),
           _lib.PROBE_IP: lambda x, y, d: faiss.fvec_inner_product(
               faiss.swig_ptr(x), faiss.swig_ptr(y), d)}
    x = np.zeros(_lib.PROBE_MAX_D, dtype=np.float32)
    y = np.zeros(_lib.PROBE_MAX_D, dtype=np.float32)
    d = ctypes.c_int64()
    obs = {fn: np.empty(_lib.PROBE_CASES, dtype=np.float32) for fn in fns}
    for i in range(_lib.PROBE_CASES):
        _lib.check(lib.fkm_probe_case(i, ctypes.byref(d), x.ctypes.data, y.ctypes.data))
        for fn, call in fns.items():
            obs[fn][i] = np.float32(call(x, y, d.value))
    out = []
    for fn in (_lib.PROBE_NORM, _lib.PROBE_L2, _lib.PROBE_IP):
        order = _lib.LoopOrder()
        st = lib.fkm_probe_identify(fn, obs[fn].ctypes.data, ctypes.byref(order))
        out.append(order if st == _lib.FKM_OK else None)
    return tuple(out)


_cache = {}


def detect(faiss=None, strict=False):
    """The ProfileInfo of the faiss module (imported if not given)."""
    if faiss is None:
        import faiss  # noqa: F811
    key = (id(faiss), strict)
    if key in _cache:
        return _cache[key]
    lib = _lib.lib()
    notes = []
    text = getattr(faiss, "__version__", "?")
    version = version_number(text)
    simd = simd_level(faiss)
    prof = _lib.Profile()
    st = lib.fkm_profile_init(ctypes.byref(prof), version or 0, simd) if version else _lib.FKM_ERR_UNSUPPORTED
    if st != _lib.FKM_OK and simd == _lib.SIMD_AVX512:
        st2 = lib.fkm_profile_init(ctypes.byref(prof), version or 0, _lib.SIMD_AVX2)
        if st2 == _lib.FKM_OK:
            notes.append("FAISS %s has no AVX-512 build: its AVX2 profile" % text)
            st = st2
    if st != _lib.FKM_OK:
        near = lib.fkm_profile_nearest(version or 0)
        msg = ("flashkm %s has no profile for FAISS %s at SIMD level %s"
               % (_lib.version(), text, _SIMD_NAMES[simd]))
        if strict:
            raise _lib.Error(_lib.FKM_ERR_UNSUPPORTED, msg)
        for level in (simd, _lib.SIMD_AVX2, _lib.SIMD_NONE):
            if lib.fkm_profile_init(ctypes.byref(prof), near, level) == _lib.FKM_OK:
                break
        notes.append("%s; using the nearest one, %s: bits may differ from this FAISS"
                     % (msg, _lib.profile_name(prof)))
    loops = "table"
    try:
        probed = probe_loops(faiss)
    except Exception as e:  # a FAISS without the fvec_* wrappers
        probed = (None, None, None)
        notes.append("cannot call this FAISS's fvec_* functions (%s): loop orders from "
                     "the table" % e)
    if all(o is not None for o in probed):
        prof.norm, prof.l2, prof.ip = probed
        loops = "probed"
    else:
        missing = [n for n, o in zip(("fvec_norm_L2sqr", "fvec_L2sqr", "fvec_inner_product"),
                                     probed) if o is None]
        if missing and not any("cannot call" in n for n in notes):
            notes.append("no loop order flashkm models reproduces this FAISS's %s: the "
                         "table's are used and bits may differ" % ", ".join(missing))
    if notes and strict:
        raise _lib.Error(_lib.FKM_ERR_UNSUPPORTED, "; ".join(notes))
    for n in notes:
        _warnings.warn(n, ProfileWarning, stacklevel=3)
    blas = faiss_blas(faiss)
    if blas is None:
        notes_blas = ("cannot find the BLAS this FAISS calls: near-ties (points whose two "
                      "nearest centroids are within a few ulps) may get other labels")
        if strict:
            raise _lib.Error(_lib.FKM_ERR_UNSUPPORTED, notes_blas)
        notes.append(notes_blas)
        _warnings.warn(notes_blas, ProfileWarning, stacklevel=3)
    info = ProfileInfo(prof, text, loops, notes, faiss, blas)
    _cache[key] = info
    return info


def named(name):
    """The ProfileInfo of a profile name ('flashkm', 'faiss-1.15.1-avx512', ...)."""
    prof = _lib.Profile()
    st = _lib.lib().fkm_profile_parse(str(name).encode(), ctypes.byref(prof))
    if st != _lib.FKM_OK:
        raise ValueError("unknown flashkm profile %r (expected 'flashkm' or "
                         "'faiss-MAJOR.MINOR.PATCH[-none|-avx2|-avx512]')" % (name,))
    return ProfileInfo(prof)


def resolve(spec):
    """spec: 'auto' (the imported faiss's profile; flashkm's when faiss is not
    importable), 'faiss' (the imported faiss's, required), a profile name, or a
    ProfileInfo."""
    if isinstance(spec, ProfileInfo):
        return spec
    if spec in (None, "auto", "faiss"):
        try:
            import faiss
        except ImportError:
            if spec == "faiss":
                raise
            return named("flashkm")
        return detect(faiss)
    return named(spec)
