"""flashkm.add_index (the coarse assignment of added vectors on flashkm, an
IndexIVFPQ's codes too, then FAISS's add_sa_codes / add_core) against stock
index.add / add_with_ids: the same serialised index."""
import numpy as np
import pytest

import flashkm
from conftest import blobs


@pytest.fixture(scope="module")
def train_and_db():
    return blobs(5000, 16, 24, seed=21), blobs(15000, 16, 24, seed=22)


def trained(faiss, factory, metric, x):
    index = faiss.index_factory(16, factory, faiss.METRIC_INNER_PRODUCT if metric == "IP"
                                else faiss.METRIC_L2)
    index.train(x)
    return index, faiss.deserialize_index(faiss.serialize_index(index))


@pytest.mark.parametrize("factory,metric", [
    ("IVF16,Flat", "L2"), ("IVF16,Flat", "IP"), ("IVF16,PQ4x4np", "L2"), ("IVF16,SQ8", "IP"),
    ("PCA8,IVF16,Flat", "L2"), ("OPQ4,IVF16,PQ4x4np", "L2")])
def test_added_index_equals_stock_add(faiss, train_and_db, factory, metric):
    x, db = train_and_db
    ours, stock = trained(faiss, factory, metric, x)
    info = flashkm.add_index(ours, db, backend="cpu")
    stock.add(db)
    assert info["assign_by_flashkm"], info.get("reason")
    # an IndexIVFPQ's codes are flashkm's too (dsub 4); Flat / SQ8 encode in FAISS
    assert info["encode_by_flashkm"] == (",PQ" in factory), info.get("encode_reason")
    ids = np.arange(700, dtype=np.int64) * 5 + 11
    flashkm.add_index(ours, db[:700], ids=ids, backend="cpu")
    stock.add_with_ids(db[:700], ids)
    assert ours.ntotal == stock.ntotal == db.shape[0] + 700
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))


def test_patched_add_runs_flashkm(faiss, train_and_db):
    x, db = train_and_db
    ours, stock = trained(faiss, "IVF16,PQ4x4np", "L2", x)
    flashkm.patch_faiss()
    try:
        from flashkm import faiss_compat
        faiss_compat.last_add_info = None
        ours.add(db[:3000])
        assert flashkm.last_add_info["assign_by_flashkm"]
        assert flashkm.last_add_info["encode_by_flashkm"]
        ours.add_with_ids(db[3000:4000], np.arange(1000, dtype=np.int64) + 10**9)
    finally:
        flashkm.unpatch()
    stock.add(db[:3000])
    stock.add_with_ids(db[3000:4000], np.arange(1000, dtype=np.int64) + 10**9)
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))


def test_other_indexes_are_added_by_faiss(faiss, train_and_db):
    x, db = train_and_db
    ours, stock = trained(faiss, "IVF16,PQ4x4fs", "L2", x)
    info = flashkm.add_index(ours, db, backend="cpu")
    stock.add(db)
    assert not info["assign_by_flashkm"] and "IndexIVFPQFastScan" in info["reason"]
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))
    untrained = faiss.index_factory(16, "IVF16,Flat")
    with pytest.raises(RuntimeError):  # FAISS's own error
        flashkm.add_index(untrained, db)
    with pytest.raises(ValueError, match="ids must be"):
        flashkm.add_index(ours, db[:10], ids=np.arange(9))
    with pytest.raises(ValueError, match=r"\(n, 16\)"):
        flashkm.add_index(ours, db[:, :8])


def test_a_nan_row_is_refused_once(faiss, train_and_db):
    """add_index checks the rows once, in the coarse assignment (the PQ
    encoding that follows skips its own scan): a NaN is still FAISS's
    refusal of the rows, and nothing is added."""
    x, db = train_and_db
    ours, _ = trained(faiss, "IVF16,PQ4x4np", "L2", x)
    bad = db[:500].copy()
    bad[321, 5] = np.nan
    with pytest.raises(flashkm.Error) as e:
        flashkm.add_index(ours, bad, backend="cpu")
    assert e.value.name == "FKM_ERR_NOT_FINITE" and "321" in str(e.value)
    assert ours.ntotal == 0


def test_pq_encode_check_finite(faiss, train_and_db):
    """pq_encode scans x for NaN unless check_finite=False; on finite rows
    both give the same codes."""
    x, db = train_and_db
    ours, _ = trained(faiss, "IVF16,PQ4x4np", "L2", x)
    cent = faiss.vector_to_array(ours.pq.centroids)
    ctx = flashkm.Context("cpu")
    try:
        rows = db[:400].copy()
        codes = flashkm.pq_encode(ctx, rows, cent, 4, 4)
        assert np.array_equal(codes, flashkm.pq_encode(ctx, rows, cent, 4, 4, check_finite=False))
        rows[77, 3] = np.inf
        with pytest.raises(flashkm.Error) as e:
            flashkm.pq_encode(ctx, rows, cent, 4, 4)
        assert e.value.name == "FKM_ERR_NOT_FINITE" and "77" in str(e.value)
        unchecked = flashkm.pq_encode(ctx, rows, cent, 4, 4, check_finite=False)
        assert unchecked.shape == codes.shape
        keep = np.arange(400) != 77
        assert np.array_equal(unchecked[keep], codes[keep])
    finally:
        ctx.close()
