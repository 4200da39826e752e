"""flashkm.train_index against stock index.train, through FAISS's Python API:
the trained indexes serialise to the same bytes."""
import numpy as np
import pytest

import flashkm
from conftest import blobs
from flashkm.profile import version_number

FACTORIES = [
    ("IVF32,Flat", "L2"),
    ("IVF16,PQ2x4", "L2"),
    ("IVF16,SQ8", "L2"),
    ("IVF16,Flat", "IP"),
    ("PCA8,IVF16,Flat", "L2"),
    ("OPQ4,IVF16,PQ4x4", "L2"),
    ("RR16,IVF16,SQ8", "L2"),
]


@pytest.fixture(scope="module")
def data():
    return blobs(4000, 16, 24, seed=11)


def make(faiss, factory, metric, d):
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT if metric == "IP" else
                                faiss.METRIC_L2)
    if factory.startswith("OPQ"):  # FAISS's own OPQ training: fewer rounds keep the test short
        opq = faiss.downcast_VectorTransform(faiss.downcast_index(index).chain.at(0))
        opq.niter, opq.niter_pq = 4, 2
    return index


def trained_pair(faiss, factory, metric, x):
    ours = make(faiss, factory, metric, x.shape[1])
    info = flashkm.train_index(ours, x, backend="cpu")
    stock = make(faiss, factory, metric, x.shape[1])
    stock.train(x)
    return ours, stock, info


@pytest.mark.parametrize("factory,metric", FACTORIES)
def test_trained_index_equals_stock_faiss_bytes(faiss, data, factory, metric):
    ours, stock, info = trained_pair(faiss, factory, metric, data)
    # IVF's cp.niter = 10; FAISS 1.14.2+ stops early when the objective repeats
    stats = info["iteration_stats"]
    assert info["used_flashkm"] and 1 <= len(stats) <= 10
    if len(stats) < 10:
        assert stats[-1]["obj"] == stats[-2]["obj"]
        assert version_number(faiss.__version__) >= 11402  # early stop exists
    assert ours.is_trained
    ivf_ours, ivf_stock = faiss.extract_index_ivf(ours), faiss.extract_index_ivf(stock)
    q_ours = ivf_ours.quantizer.reconstruct_n(0, ivf_ours.nlist)
    q_stock = ivf_stock.quantizer.reconstruct_n(0, ivf_stock.nlist)
    assert np.array_equal(q_ours, q_stock)
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))
    if info.get("pretransform_by_flashkm"):  # OPQ's rounds: where their time went
        split = info["opq_pq_kmeans_s"] + info["opq_encode_s"] + info["opq_rest_s"]
        assert info["opq_pq_kmeans_s"] > 0 and info["opq_encode_s"] > 0
        assert info["opq_rest_s"] >= 0 and split <= info["t_pretransform"]


@pytest.mark.parametrize("factory,ours", [("IMI2x4,Flat", False), ("IVF16_HNSW8,Flat", True)])
def test_quantizers_that_train_alone_or_after_the_kmeans(faiss, data, factory, ours):
    # quantizer_trains_alone (a char in FAISS, a str through SWIG): 1, a multi-index, trains
    # itself (FAISS's way); 2, an HNSW quantizer, is trained on the k-means' centroids
    index = faiss.index_factory(16, factory)
    info = flashkm.train_index(index, data, backend="cpu")
    stock = faiss.index_factory(16, factory)
    stock.train(data)
    assert info["used_flashkm"] == ours, info.get("reason")
    if not ours:
        assert "quantizer_trains_alone == 1" in info["reason"]
    assert np.array_equal(faiss.serialize_index(index), faiss.serialize_index(stock))


def test_search_results_match_after_adding(faiss, data):
    ours, stock, _ = trained_pair(faiss, "IVF16,Flat", "L2", data)
    for index in (ours, stock):
        index.add(data)
        faiss.extract_index_ivf(index).nprobe = 4
    Do, Io = ours.search(data[:200], 5)
    Ds, Is = stock.search(data[:200], 5)
    assert np.array_equal(Io, Is) and np.array_equal(Do, Ds)


def test_index_without_ivf_is_refused(faiss, data):
    with pytest.raises(ValueError, match="no IVF"):
        flashkm.train_index(faiss.IndexFlatL2(16), data)
    with pytest.raises(ValueError, match="not an IVF"):
        flashkm.train_index(faiss.index_factory(16, "PCA8,Flat"), data)


def test_wrong_dimension_is_refused(faiss, data):
    with pytest.raises(ValueError, match=r"\(n, 8\)"):
        flashkm.train_index(faiss.index_factory(8, "IVF4,Flat"), data)


def test_already_trained_quantizer_is_left_to_faiss(faiss, data):
    index = faiss.index_factory(16, "IVF8,Flat")
    index.train(data)
    before = index.quantizer.reconstruct_n(0, 8)
    info = flashkm.train_index(index, data)
    assert not info["used_flashkm"] and "already trained" in info["reason"]
    assert np.array_equal(index.quantizer.reconstruct_n(0, 8), before)


# train_q1's rules (docs/contract.md section 8; the C++ bridge's twin tests are
# in tests/parity/test_ivf.cpp): ivf.cp as it is, the clustering_index's metric,
# an approximate clustering_index left to FAISS.
def adjusted_pair(faiss, data, factory, metric, adjust):
    ours, stock = (make(faiss, factory, metric, data.shape[1]) for _ in range(2))
    keep = [adjust(faiss, faiss.extract_index_ivf(index)) for index in (ours, stock)]
    info = flashkm.train_index(ours, data, backend="cpu")
    stock.train(data)
    q = [faiss.extract_index_ivf(i).quantizer for i in (ours, stock)]
    assert np.array_equal(q[0].reconstruct_n(0, q[0].ntotal), q[1].reconstruct_n(0, q[1].ntotal))
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))
    del keep
    return info


def test_inner_product_ivf_with_spherical_cleared_is_not_spherical(faiss, data):
    def clear(faiss, ivf):
        assert ivf.cp.spherical  # FAISS's IVF constructor set it
        ivf.cp.spherical = False
    info = adjusted_pair(faiss, data, "IVF16,Flat", "IP", clear)
    assert info["used_flashkm"]
    spherical = flashkm.train_index(make(faiss, "IVF16,Flat", "IP", data.shape[1]), data,
                                    backend="cpu")
    assert spherical["iteration_stats"] != info["iteration_stats"]


def test_flat_clustering_index_sets_the_metric(faiss, data):
    def inner(faiss, ivf):
        ci = faiss.IndexFlatIP(ivf.d)
        ivf.clustering_index = ci
        return ci
    info = adjusted_pair(faiss, data, "IVF16,Flat", "L2", inner)
    assert info["used_flashkm"]


def test_approximate_clustering_index_is_left_to_faiss(faiss, data):
    def hnsw(faiss, ivf):
        ci = faiss.IndexHNSWFlat(ivf.d, 8)
        ivf.clustering_index = ci
        return ci
    info = adjusted_pair(faiss, data, "IVF16,Flat", "L2", hnsw)
    assert not info["used_flashkm"]
    assert "IndexHNSWFlat" in info["reason"] and "left to FAISS" in info["reason"]
