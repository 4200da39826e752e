"""Product-quantizer codebooks through flashkm (flashkm.faiss_pq) against
FAISS's own training, through FAISS's Python API, for the FAISS in use:
the same centroids and serialised index bytes."""
import numpy as np
import pytest

import flashkm
from conftest import blobs


@pytest.fixture(scope="module")
def data():
    return blobs(5000, 16, 24, seed=5)


def fresh(faiss, factory, metric="L2", d=16):
    return faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT if metric == "IP"
                               else faiss.METRIC_L2)


@pytest.mark.parametrize("factory,metric", [
    ("IVF16,PQ4np", "L2"), ("IVF16,PQ4np", "IP"), ("IVF16,PQ2x4", "L2"),
    ("IVF16,PQ4x4fs", "L2"), ("IVF16,PQ4x4fs", "IP"), ("OPQ4,IVF16,PQ4x4", "L2"),
    ("OPQ4_20,IVF16,PQ4x5np", "L2"), ("IVF16,PQ8x4", "L2")])
def test_ivf_pq_codebooks_equal_stock_bytes(faiss, data, factory, metric):
    ours, stock = fresh(faiss, factory, metric), fresh(faiss, factory, metric)
    if factory.startswith("OPQ"):  # FAISS's own OPQ training: fewer rounds keep it short
        for idx in (ours, stock):
            opq = faiss.downcast_VectorTransform(faiss.downcast_index(idx).chain.at(0))
            opq.niter, opq.niter_pq = 4, 2
    info = flashkm.train_index(ours, data, backend="cpu")
    stock.train(data)
    assert info["used_flashkm"] and info["codebooks_by_flashkm"], info.get("codebooks_reason")
    # OPQ: FAISS's rotation updates, its PQ trainings (hot-started after the first) on flashkm
    assert info["pretransform_by_flashkm"] == factory.startswith("OPQ")
    pq = faiss.downcast_index(faiss.extract_index_ivf(ours)).pq
    assert len(info["codebook_stats"]) == pq.M
    assert ours.is_trained
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))


def test_ivf_pq_with_polysemous_training_equals_stock(faiss, data):
    # index_factory turns polysemous training on for 8-bit IVF-PQ: FAISS's own, after ours
    ours, stock = fresh(faiss, "IVF8,PQ2"), fresh(faiss, "IVF8,PQ2")
    assert faiss.downcast_index(ours).do_polysemous_training
    # the caller's annealing parameters are FAISS's to use: 20,000 steps instead of the
    # default 500,000 (seconds on two cores), the same object for both
    pt = faiss.PolysemousTraining()
    pt.n_iter = 20000
    for idx in (ours, stock):
        faiss.downcast_index(idx).polysemous_training = pt
    info = flashkm.train_index(ours, data[:3000], backend="cpu")
    stock.train(data[:3000])
    assert info["codebooks_by_flashkm"]
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))


def test_subsampled_pq_training_set_equals_stock(faiss, data):
    # pq.cp.max_points_per_centroid * ksub < n: the encoder's own subsample (rand_perm with
    # pq.cp.seed in 1.7, 1234 from 1.8 on) before the residuals
    ours, stock = fresh(faiss, "IVF16,PQ4x4np"), fresh(faiss, "IVF16,PQ4x4np")
    for idx in (ours, stock):
        ivf = faiss.downcast_index(idx)
        ivf.pq.cp.max_points_per_centroid = 100  # 1600 of 5000 rows
        ivf.pq.cp.seed = 77
    info = flashkm.train_index(ours, data, backend="cpu")
    stock.train(data)
    assert info["codebooks_by_flashkm"]
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))


def test_opq_with_its_own_pq_and_default_rounds_equals_stock(faiss, data):
    # OPQMatrix.pq set by the caller (FAISS trains that PQ and leaves it hot-started), FAISS's
    # default rounds on a subsample (max_train_points)
    ours, stock = fresh(faiss, "OPQ4,IVF8,PQ4x4np"), fresh(faiss, "OPQ4,IVF8,PQ4x4np")
    pqs = []
    for idx in (ours, stock):
        opq = faiss.downcast_VectorTransform(faiss.downcast_index(idx).chain.at(0))
        opq.niter, opq.max_train_points = 3, 2000
        pq = faiss.ProductQuantizer(16, 4, 4)
        opq.pq = pq
        pqs.append(pq)
    info = flashkm.train_index(ours, data, backend="cpu")
    stock.train(data)
    assert info["pretransform_by_flashkm"]
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))
    assert np.array_equal(faiss.vector_to_array(pqs[0].centroids),
                          faiss.vector_to_array(pqs[1].centroids))
    assert pqs[0].train_type == pqs[1].train_type == faiss.ProductQuantizer.Train_hot_start


def test_other_encoders_and_training_types_are_left_to_faiss(faiss, data):
    sq = fresh(faiss, "IVF16,SQ8")
    info = flashkm.train_index(sq, data, backend="cpu")
    assert info["used_flashkm"] and not info["codebooks_by_flashkm"]
    assert "ScalarQuantizer" in info["codebooks_reason"]
    ours, stock = fresh(faiss, "IVF16,PQ4x4np"), fresh(faiss, "IVF16,PQ4x4np")
    for idx in (ours, stock):
        faiss.downcast_index(idx).pq.train_type = faiss.ProductQuantizer.Train_hot_start
    info = flashkm.train_index(ours, data, backend="cpu")
    stock.train(data)
    assert not info["codebooks_by_flashkm"] and "train_type" in info["codebooks_reason"]
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))
    off = fresh(faiss, "IVF16,PQ4x4np")
    info = flashkm.train_index(off, data, backend="cpu", codebooks=False)
    assert info["codebooks_reason"] == "codebooks=False"


def test_product_quantizer_equals_pq_train(faiss, data):
    for M, nbits in ((4, 4), (2, 8), (16, 4)):
        ours, stock = faiss.ProductQuantizer(16, M, nbits), faiss.ProductQuantizer(16, M, nbits)
        info = flashkm.train_pq(ours, data, backend="cpu")
        stock.train(data)
        assert info["used_flashkm"]
        assert np.array_equal(faiss.vector_to_array(ours.centroids),
                              faiss.vector_to_array(stock.centroids)), (M, nbits)


@pytest.mark.parametrize("factory", ["PQ4x4np", "PQ4x4", "PQ4x4fs"])
def test_index_pq_equals_stock(faiss, data, factory):
    ours, stock = fresh(faiss, factory), fresh(faiss, factory)
    info = flashkm.train_pq(ours, data, backend="cpu")
    stock.train(data)
    assert info["used_flashkm"] and ours.is_trained
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))


def test_train_pq_refusals(faiss, data):
    with pytest.raises(ValueError, match="ProductQuantizer"):
        flashkm.train_pq(fresh(faiss, "IVF16,Flat"), data)
    pq = faiss.ProductQuantizer(16, 4, 8)
    with pytest.raises(ValueError, match=r"\(n, 16\)"):
        flashkm.train_pq(pq, data[:, :8])
    # fewer points than ksub: FAISS's own error, as stock pq.train raises it
    with pytest.raises(RuntimeError):
        flashkm.train_pq(pq, data[:100])
