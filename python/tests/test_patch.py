"""patch_faiss(): faiss.Kmeans and IVF training run flashkm in this process,
with the results stock FAISS gives; unpatch() restores FAISS."""
import numpy as np
import pytest

import flashkm
from flashkm import faiss_compat


@pytest.fixture
def patched(faiss):
    flashkm.patch_faiss()
    yield faiss
    flashkm.unpatch()


def test_patch_swaps_kmeans_and_unpatch_restores(faiss, x):
    stock_cls = faiss.Kmeans
    flashkm.patch_faiss()
    try:
        assert faiss.Kmeans is flashkm.Kmeans and flashkm.is_patched()
        km = faiss.Kmeans(16, 20, niter=5)
        km.train(x)
    finally:
        flashkm.unpatch()
    assert faiss.Kmeans is stock_cls and not flashkm.is_patched()
    ref = faiss.Kmeans(16, 20, niter=5)
    ref.train(x)
    assert np.array_equal(km.centroids, ref.centroids)


@pytest.mark.parametrize("factory", ["IVF16,Flat", "PCA8,IVF16,PQ2x4"])
def test_patched_ivf_training_runs_flashkm_with_stock_results(patched, x, factory):
    faiss = patched
    faiss_compat.last_train_info = None
    index = faiss.index_factory(16, factory)
    index.train(x)
    info = flashkm.last_train_info
    assert info is not None and info["used_flashkm"] and info["nlist"] == 16
    flashkm.unpatch()
    stock = faiss.index_factory(16, factory)
    faiss_compat.last_train_info = None
    stock.train(x)
    assert flashkm.last_train_info is None  # unpatched: stock FAISS only
    assert np.array_equal(faiss.serialize_index(index), faiss.serialize_index(stock))


def test_patch_leaves_other_indexes_alone(patched, x):
    faiss = patched
    faiss_compat.last_train_info = None
    sq = faiss.IndexScalarQuantizer(16, faiss.ScalarQuantizer.QT_8bit)
    sq.train(x)
    assert sq.is_trained and flashkm.last_train_info is None


@pytest.mark.parametrize("factory", ["PQ2x4np", "PQ4x4fs"])
def test_patched_pq_training_runs_flashkm_with_stock_results(patched, x, factory):
    faiss = patched
    faiss_compat.last_train_info = None
    index = faiss.index_factory(16, factory)
    index.train(x)
    assert flashkm.last_train_info is not None and flashkm.last_train_info["used_flashkm"]
    flashkm.unpatch()
    stock = faiss.index_factory(16, factory)
    stock.train(x)
    assert np.array_equal(faiss.serialize_index(index), faiss.serialize_index(stock))


def test_patch_is_idempotent(faiss):
    stock_cls = faiss.Kmeans
    flashkm.patch_faiss()
    flashkm.patch_faiss()
    flashkm.unpatch()
    assert faiss.Kmeans is stock_cls
    assert "_flashkm_original" not in dir(faiss.IndexIVFFlat.train)
