"""Turning user arrays into (pointer, shape, dtype) for the C library.

numpy arrays: float32 and float16 are passed as they are (C-contiguous,
copied only if they are not); other dtypes become float32, as faiss does.
GPU arrays (torch, cupy, ...) exposing __cuda_array_interface__ or __dlpack__
are passed as device pointers, without a host copy; they must be
C-contiguous float32, float16 (or bfloat16 through DLPack).
"""
import ctypes

import numpy as np

from . import _lib

_KDL_CPU, _KDL_CUDA, _KDL_CUDA_HOST, _KDL_CUDA_MANAGED = 1, 2, 3, 13
_KDL_FLOAT, _KDL_BFLOAT = 2, 4


class _DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32)]


class _DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class _DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", _DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", _DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


_DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class _DLManagedTensor(ctypes.Structure):
    _fields_ = [("dl_tensor", _DLTensor), ("manager_ctx", ctypes.c_void_p),
                ("deleter", _DELETER)]


_capsule_get = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_get.restype = ctypes.c_void_p
_capsule_get.argtypes = [ctypes.py_object, ctypes.c_char_p]
_capsule_set_name = ctypes.pythonapi.PyCapsule_SetName
_capsule_set_name.restype = ctypes.c_int
_capsule_set_name.argtypes = [ctypes.py_object, ctypes.c_char_p]
# The capsule keeps a pointer to its name: this bytes object must live forever.
_USED_NAME = b"used_dltensor"


class Array:
    """A pointer the C library can read, with what keeps it valid."""

    def __init__(self, ptr, shape, dtype, on_device, keep, release=None, row_stride=None):
        self.ptr = ptr
        self.shape = shape
        self.dtype = dtype  # _lib.DTYPE_*
        self.on_device = on_device
        # bytes from one row to the next when they are not packed (a host
        # matrix read through fkm_source_host), else None
        self.row_stride = row_stride
        self._keep = keep
        self._release = release

    def release(self):
        if self._release is not None:
            self._release()
            self._release = None
        self._keep = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        try:
            self.release()
        except Exception:
            pass


def _check_shape(shape, ndim, name):
    if ndim == 3 and len(shape) != 3:
        raise ValueError("%s must be 3-D (batch, n, d), got shape %s" % (name, tuple(shape)))
    if ndim == 2 and len(shape) != 2:
        raise ValueError("%s must be 2-D (n, d), got shape %s" % (name, tuple(shape)))
    if ndim == 1 and not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise ValueError("%s must be 1-D (n,), got shape %s" % (name, tuple(shape)))


def _c_contiguous(shape, strides_elems):
    expect = 1
    for dim, st in zip(reversed(shape), reversed(strides_elems)):
        if dim != 1 and st != expect:
            return False
        expect *= dim
    return True


def _row_strided(x):
    """The row stride in bytes of a 2-D float32 / float16 array whose rows are
    packed but not adjacent (a column slice, rows inside larger records), or
    None."""
    if x.ndim != 2 or x.dtype not in (np.float32, np.float16) or x.size == 0:
        return None
    item = x.dtype.itemsize
    if x.strides[1] != item or x.strides[0] == x.shape[1] * item:
        return None
    if x.strides[0] < x.shape[1] * item or x.strides[0] % item:
        return None
    return x.strides[0]


def _from_numpy(x, ndim, name, float_only, allow_row_stride=False):
    x = np.asarray(x)
    stride = _row_strided(x) if allow_row_stride and not float_only else None
    if stride is not None:  # read in place, row by row (no copy)
        dtype = _lib.DTYPE_F16 if x.dtype == np.float16 else _lib.DTYPE_F32
        return Array(x.ctypes.data, x.shape, dtype, False, x, row_stride=stride)
    if x.dtype == np.float16 and not float_only:
        x = np.ascontiguousarray(x)
        dtype = _lib.DTYPE_F16
    else:
        x = np.ascontiguousarray(x, dtype=np.float32)
        dtype = _lib.DTYPE_F32
    _check_shape(x.shape, ndim, name)
    return Array(x.ctypes.data, x.shape, dtype, False, x)


def _from_cai(x, ndim, name, float_only):
    ci = x.__cuda_array_interface__
    shape = tuple(int(s) for s in ci["shape"])
    typestr = ci["typestr"]
    if typestr == "<f4":
        dtype, size = _lib.DTYPE_F32, 4
    elif typestr == "<f2" and not float_only:
        dtype, size = _lib.DTYPE_F16, 2
    else:
        raise TypeError("%s: GPU arrays must be float32%s, not %s" %
                        (name, "" if float_only else " or float16", typestr))
    strides = ci.get("strides")
    if strides is not None and not _c_contiguous(shape, [s // size for s in strides]):
        raise ValueError("%s: the GPU array must be C-contiguous" % name)
    _check_shape(shape, ndim, name)
    return Array(ci["data"][0], shape, dtype, True, x)


def _from_dlpack(x, ndim, name, float_only):
    capsule = x.__dlpack__()
    ptr = _capsule_get(capsule, b"dltensor")
    managed = _DLManagedTensor.from_address(ptr)
    _capsule_set_name(capsule, _USED_NAME)  # we own it now: we call its deleter
    deleter = managed.deleter

    def release():
        if deleter:
            deleter(ptr)

    try:
        t = managed.dl_tensor
        shape = tuple(t.shape[i] for i in range(t.ndim))
        code, bits, lanes = t.dtype.code, t.dtype.bits, t.dtype.lanes
        if lanes != 1:
            raise TypeError("%s: vector dtypes (lanes = %d) are not supported" % (name, lanes))
        if code == _KDL_FLOAT and bits == 32:
            dtype = _lib.DTYPE_F32
        elif code == _KDL_FLOAT and bits == 16 and not float_only:
            dtype = _lib.DTYPE_F16
        elif code == _KDL_BFLOAT and bits == 16 and not float_only:
            dtype = _lib.DTYPE_BF16
        else:
            raise TypeError("%s: DLPack dtype (code %d, %d bits) is not float32%s" %
                            (name, code, bits, "" if float_only else ", float16 or bfloat16"))
        if t.strides and not _c_contiguous(shape, [t.strides[i] for i in range(t.ndim)]):
            raise ValueError("%s: the array must be C-contiguous" % name)
        dev = t.device.device_type
        if dev not in (_KDL_CPU, _KDL_CUDA, _KDL_CUDA_HOST, _KDL_CUDA_MANAGED):
            raise TypeError("%s: DLPack device type %d is neither CPU nor CUDA" % (name, dev))
        _check_shape(shape, ndim, name)
    except Exception:
        release()
        raise
    return Array((t.data or 0) + t.byte_offset, shape, dtype, dev in (_KDL_CUDA, _KDL_CUDA_MANAGED),
                 (x, capsule), release)


def as_array(x, ndim=2, name="x", float_only=False, allow_row_stride=False):
    """An Array for x: numpy (or anything np.asarray takes), or a GPU/DLPack
    array used in place. float_only: float16 input becomes float32.
    allow_row_stride: a host matrix whose rows are packed but spaced apart is
    kept in place (Array.row_stride) instead of copied."""
    if isinstance(x, np.ndarray):
        return _from_numpy(x, ndim, name, float_only, allow_row_stride)
    if hasattr(x, "__cuda_array_interface__"):
        try:
            return _from_cai(x, ndim, name, float_only)
        except TypeError:
            if not hasattr(x, "__dlpack__"):
                raise
    if hasattr(x, "__dlpack__"):
        return _from_dlpack(x, ndim, name, float_only)
    return _from_numpy(x, ndim, name, float_only)
