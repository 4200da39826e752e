"""What a careless user or a hostile input does to the Python door (issue 19):
objects shared between threads, thread counts and iteration counts beyond
what the machine runs, every one an exception with a message, never a
crash."""
import threading

import numpy as np
import pytest

import flashkm
from conftest import blobs
from flashkm import _lib


def _run_in_threads(fn, count):
    results, errors = [None] * count, []
    start = threading.Barrier(count)

    def work(i):
        try:
            start.wait()
            results[i] = fn(i)
        except BaseException as e:  # reported below, not swallowed
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_one_kmeans_trained_from_several_threads():
    # One object, four threads at once: before, the threads shared the
    # context's buffers (ctypes releases the GIL) and the interpreter
    # crashed; now the calls run one after the other, each FAISS's result.
    x = blobs(20000, 32, 40, seed=3)
    serial = flashkm.Kmeans(32, 64, niter=8, backend="cpu", num_threads=2, profile="flashkm")
    serial.train(x)
    km = flashkm.Kmeans(32, 64, niter=8, backend="cpu", num_threads=2, profile="flashkm")

    def train(i):
        obj = km.train(x)
        _, labels = km.assign(x[:500])
        return obj, labels

    for obj, labels in _run_in_threads(train, 4):
        assert obj == serial.obj[-1]
        np.testing.assert_array_equal(labels, serial.assign(x[:500])[1])
    np.testing.assert_array_equal(km.centroids, serial.centroids)


def test_one_context_shared_by_threads():
    x = blobs(6000, 16, 20, seed=4)
    ctx = _lib.Context("cpu", num_threads=1)
    want = flashkm.kmeans.train(ctx, x, 24, {"niter": 6})[0]

    def train(i):
        return flashkm.kmeans.train(ctx, x, 24, {"niter": 6})[0]

    for got in _run_in_threads(train, 4):
        np.testing.assert_array_equal(got, want)
    ctx.close()


def test_thread_count_beyond_the_machine_is_an_error():
    # libgomp used to end the process at the first train
    x = blobs(500, 8, 5)
    with pytest.raises(_lib.Error, match="more threads than this machine runs"):
        flashkm.Kmeans(8, 4, num_threads=10**6, backend="cpu").train(x)
    with pytest.raises(ValueError, match="num_threads"):
        flashkm.Kmeans(8, 4, num_threads=2**40, backend="cpu").train(x)
    with pytest.raises(ValueError, match="num_threads"):
        _lib.Context("cpu", num_threads=-3)


def test_huge_niter_with_early_stopping_runs_until_converged():
    # niter = 10**9 asked for 10**9 statistics up front: a bare MemoryError
    x = blobs(3000, 8, 6, seed=5)
    km = flashkm.Kmeans(8, 6, niter=10**9, early_stop_threshold=0.0,
                        profile="faiss-1.15.1-avx2", backend="cpu")
    km.train(x)
    stats = km.iteration_stats
    assert 2 <= len(stats) < 1000
    assert stats[-1]["obj"] == stats[-2]["obj"]


def test_statistics_beyond_the_library_buffer_come_whole():
    x = blobs(400, 4, 5, seed=6)
    n = flashkm.kmeans.STATS_BUFFER + 300
    km = flashkm.Kmeans(4, 5, niter=n, backend="cpu", profile="flashkm")
    km.train(x)
    assert len(km.iteration_stats) == n
    assert len(km.obj) == n
    short = flashkm.Kmeans(4, 5, niter=40, backend="cpu", profile="flashkm")
    short.train(x)
    assert [s["obj"] for s in km.iteration_stats[:40]] == list(short.obj)


@pytest.mark.parametrize("field,value", [("niter", 2**31), ("nredo", -2**31 - 1),
                                         ("max_points_per_centroid", 2**40),
                                         ("seed", 2**63)])
def test_out_of_range_fields_are_errors_not_wrapped(field, value):
    # ctypes would store the low bits: 2**32 + 5 iterations would run 5
    x = blobs(500, 8, 5)
    with pytest.raises(ValueError, match=field):
        flashkm.Kmeans(8, 4, backend="cpu", profile="flashkm", **{field: value}).train(x)
