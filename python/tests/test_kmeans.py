"""flashkm.Kmeans against faiss.Kmeans (Debian's FAISS 1.7.3): the same
arguments give the same centroids, bit for bit."""
import ctypes

import numpy as np
import pytest

import flashkm
from flashkm import _arrays
from conftest import blobs, cuda_or_skip

CONFIGS = {
    "defaults": {},
    "niter_seed": {"niter": 7, "seed": 99},
    "nredo": {"niter": 5, "nredo": 3},
    "subsampling": {"niter": 6, "max_points_per_centroid": 100},
    "spherical": {"niter": 8, "spherical": True},
    "int_centroids": {"niter": 8, "int_centroids": True},
}


def faiss_and_flashkm(faiss, x, k, **kw):
    ref = faiss.Kmeans(x.shape[1], k, **kw)
    ref.train(x)
    km = flashkm.Kmeans(x.shape[1], k, backend="cpu", **kw)
    obj = km.train(x)
    return ref, km, obj


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_centroids_equal_faiss_kmeans_bit_for_bit(faiss, x, name):
    ref, km, obj = faiss_and_flashkm(faiss, x, 20, **CONFIGS[name])
    assert km.centroids.dtype == np.float32 and km.centroids.shape == (20, 16)
    assert np.array_equal(km.centroids, ref.centroids)
    assert len(km.iteration_stats) == len(ref.iteration_stats)
    for ours, theirs in zip(km.iteration_stats, ref.iteration_stats):
        assert ours["nsplit"] == theirs["nsplit"]
        assert ours["imbalance_factor"] == theirs["imbalance_factor"]
    # The objective sums FAISS's BLAS distances: equal up to float rounding.
    np.testing.assert_allclose(km.obj, ref.obj, rtol=1e-5)
    assert obj == km.obj[-1]


def test_weights_and_initial_centroids_as_faiss(faiss, x):
    w = np.random.RandomState(3).uniform(0.5, 2.0, len(x)).astype(np.float32)
    init = x[:5].copy()
    ref = faiss.Kmeans(16, 20, niter=6)
    ref.train(x, weights=w, init_centroids=init)
    km = flashkm.Kmeans(16, 20, niter=6, backend="cpu")
    km.train(x, weights=w, init_centroids=init)
    assert np.array_equal(km.centroids, ref.centroids)


def test_frozen_initial_centroids_do_not_move(faiss, x):
    init = x[:4] + 0.25
    km = flashkm.Kmeans(16, 20, niter=5, frozen_centroids=True, backend="cpu")
    km.train(x, init_centroids=init)
    assert np.array_equal(km.centroids[:4], init)
    ref = faiss.Kmeans(16, 20, niter=5, frozen_centroids=True)
    ref.train(x, init_centroids=init)
    assert np.array_equal(km.centroids, ref.centroids)


def test_iteration_stats_have_faiss_field_names(faiss, x):
    ref, km, _ = faiss_and_flashkm(faiss, x, 20, niter=4)
    assert [sorted(s) for s in km.iteration_stats] == [sorted(s) for s in ref.iteration_stats]
    assert km.obj.shape == ref.obj.shape == (4,)
    times = [s["time"] for s in km.iteration_stats]
    assert times == sorted(times) and times[0] >= 0


def test_index_holds_the_centroids_in_the_right_metric(faiss, x):
    km = flashkm.Kmeans(16, 20, niter=3, backend="cpu")
    km.train(x)
    assert isinstance(km.index, faiss.IndexFlatL2) and km.index.ntotal == 20
    assert np.array_equal(km.index.reconstruct_n(0, 20), km.centroids)
    sp = flashkm.Kmeans(16, 20, niter=3, spherical=True, backend="cpu")
    sp.train(x)
    assert isinstance(sp.index, faiss.IndexFlatIP)
    np.testing.assert_allclose(np.linalg.norm(sp.centroids, axis=1), 1, rtol=1e-6)


def test_assign_gives_faiss_labels(faiss, x):
    ref, km, _ = faiss_and_flashkm(faiss, x, 20, niter=5)
    D, I = km.assign(x)
    Dr, Ir = ref.assign(x)
    assert I.dtype == np.int64 and D.dtype == np.float32 and I.shape == (len(x),)
    assert np.array_equal(I, Ir)
    np.testing.assert_allclose(D, Dr, rtol=1e-5, atol=1e-3)
    ctx = flashkm.Context("cpu")  # labels alone: the same labels, no distances
    try:
        none, labels = flashkm.assign(ctx, x, km.centroids, distances=False)
    finally:
        ctx.close()
    assert none is None and np.array_equal(labels, I)


def test_float16_input_equals_float32_of_the_same_values():
    x16 = blobs(3000, 8, 10, seed=5).astype(np.float16)
    a = flashkm.Kmeans(8, 10, niter=6, backend="cpu")
    a.train(x16)
    b = flashkm.Kmeans(8, 10, niter=6, backend="cpu")
    b.train(x16.astype(np.float32))
    assert np.array_equal(a.centroids, b.centroids)


def test_other_dtypes_become_float32_like_faiss(x):
    a = flashkm.Kmeans(16, 20, niter=4, backend="cpu")
    a.train(x.astype(np.float64))
    b = flashkm.Kmeans(16, 20, niter=4, backend="cpu")
    b.train(x)
    assert np.array_equal(a.centroids, b.centroids)


def test_rows_spaced_apart_are_read_in_place_and_equal_a_copy(x):
    wide = np.zeros((x.shape[0], 24), dtype=np.float32)
    wide[:, 3:19] = x
    view = wide[:, 3:19]  # rows 96 bytes apart, 64 bytes each
    arr = _arrays.as_array(view, allow_row_stride=True)
    assert arr.ptr == view.ctypes.data and arr.row_stride == 96
    arr.release()
    a = flashkm.Kmeans(16, 20, niter=5, max_points_per_centroid=50, backend="cpu")
    a.train(view)
    b = flashkm.Kmeans(16, 20, niter=5, max_points_per_centroid=50, backend="cpu")
    b.train(np.ascontiguousarray(view))
    assert np.array_equal(a.centroids, b.centroids)
    assert [s["obj"] for s in a.iteration_stats] == [s["obj"] for s in b.iteration_stats]


def test_a_memory_budget_streams_with_the_same_results(tmp_path):
    x = blobs(40000, 16, 20, seed=3)  # subsampled to 5120 rows: two chunks of 4096
    path = tmp_path / "x.npy"
    np.save(path, x)
    mm = np.load(path, mmap_mode="r")  # a memory-mapped file, read in place
    ctx = flashkm._lib.Context("cpu", 0, 0)
    plan = flashkm._lib.MemoryPlan()
    p = flashkm._lib.default_params()
    flashkm._lib.check(flashkm._lib.lib().fkm_train_memory(
        ctx.handle, ctypes.byref(p), 1, x.shape[0], 16, 20, 0, ctypes.byref(plan)), ctx.handle)
    assert plan.streamed_bytes < plan.in_core_bytes
    a = flashkm.Kmeans(16, 20, niter=6, backend="cpu", memory_budget=plan.streamed_bytes)
    a.train(mm)
    b = flashkm.Kmeans(16, 20, niter=6, backend="cpu")
    b.train(x)
    assert np.array_equal(a.centroids, b.centroids)
    with pytest.raises(flashkm.Error) as e:
        flashkm.Kmeans(16, 20, backend="cpu", memory_budget=64).train(x)
    assert e.value.name == "FKM_ERR_OUT_OF_MEMORY" and "memory_budget is 64" in str(e.value)


class DLPackOnly:
    """Exposes only the DLPack protocol of the array it wraps (as a torch or
    jax CPU tensor would)."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, stream=None):
        return self._a.__dlpack__()

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def test_dlpack_array_is_used_in_place_without_a_copy(x):
    arr = _arrays.as_array(DLPackOnly(x))
    assert arr.ptr == x.ctypes.data and arr.shape == x.shape and not arr.on_device
    arr.release()
    a = flashkm.Kmeans(16, 20, niter=4, backend="cpu")
    a.train(DLPackOnly(x))
    b = flashkm.Kmeans(16, 20, niter=4, backend="cpu")
    b.train(x)
    assert np.array_equal(a.centroids, b.centroids)


def test_dlpack_float16_keeps_its_dtype():
    x16 = blobs(100, 4, 3).astype(np.float16)
    with _arrays.as_array(DLPackOnly(x16)) as arr:
        assert arr.dtype == flashkm._lib.DTYPE_F16 and arr.ptr == x16.ctypes.data


class DeviceArray:
    """A GPU array as cupy/torch describe one (__cuda_array_interface__); the
    pointer is never dereferenced by this test."""

    def __init__(self, shape, typestr="<f4"):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr,
                                         "data": (0x7f0000000000, False), "version": 3,
                                         "strides": None}


def test_cuda_array_interface_is_read_as_a_device_pointer():
    with _arrays.as_array(DeviceArray((10, 4))) as arr:
        assert arr.on_device and arr.ptr == 0x7f0000000000 and arr.shape == (10, 4)
    with pytest.raises(TypeError, match="float32 or float16"):
        _arrays.as_array(DeviceArray((10, 4), "<f8"))


def test_gpu_array_on_the_cpu_backend_is_refused_before_any_access():
    km = flashkm.Kmeans(4, 2, backend="cpu")
    with pytest.raises(ValueError, match="CUDA backend"):
        km.train(DeviceArray((10, 4)))


def test_real_gpu_arrays_train_without_host_copy(x):
    cupy = pytest.importorskip("cupy")
    cuda_or_skip()
    km = flashkm.Kmeans(16, 20, niter=5, backend="cuda")
    km.train(cupy.asarray(x))
    ref = flashkm.Kmeans(16, 20, niter=5, backend="cpu")
    ref.train(x)
    assert np.array_equal(km.centroids, ref.centroids)


def test_unknown_keyword_raises_attribute_error_like_faiss():
    with pytest.raises(AttributeError):
        flashkm.Kmeans(4, 2, nitre=3)


def test_bad_input_raises_flashkm_error_with_the_status():
    x = blobs(10, 4, 2)
    with pytest.raises(flashkm.Error) as e:
        flashkm.Kmeans(4, 11, backend="cpu").train(x)
    assert e.value.name == "FKM_ERR_INVALID_ARG"
    x[3, 1] = np.nan
    with pytest.raises(flashkm.Error) as e:
        flashkm.Kmeans(4, 2, backend="cpu").train(x)
    assert e.value.name == "FKM_ERR_NOT_FINITE"


def test_dimension_mismatch_is_an_assertion_like_faiss():
    with pytest.raises(AssertionError):
        flashkm.Kmeans(5, 2, backend="cpu").train(blobs(10, 4, 2))


def test_ctrl_c_stops_training_and_raises_keyboard_interrupt(tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time
    # SIGINT may be ignored in a background job (CI): restore Python's handler.
    code = (
        "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "import numpy as np, flashkm\n"
        "x = np.random.RandomState(0).randn(2000, 8).astype(np.float32)\n"
        "km = flashkm.Kmeans(8, 10, niter=10**6, verbose=True, backend='cpu')\n"
        "try:\n"
        "    km.train(x)\n"
        "except KeyboardInterrupt:\n"
        "    print('\\nINTERRUPTED', km.centroids is None, flush=True)\n")
    env = dict(os.environ, PYTHONPATH=os.path.join(os.path.dirname(__file__), ".."))
    p = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    seen = ""
    deadline = time.time() + 60
    while "Iteration" not in seen and time.time() < deadline:
        seen += p.stdout.read(1)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    assert "INTERRUPTED True" in out  # stopped, and no partial centroids kept
