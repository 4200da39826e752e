"""flashkm against the FAISS this interpreter imports, in that FAISS's own
arithmetic (its profile, docs/profiles.md). CI runs this file under Debian's
FAISS 1.7.3 and under pip faiss-cpu wheels (1.15.1, 1.11.0, 1.8.0) at every
SIMD level the machine can load (scripts/test-faiss-wheels.sh).

What must hold, per level of docs/contract.md:
- the loop orders flashkm measures in this build are the ones its table has
  for the release, and they reproduce FAISS's fvec_* bit for bit;
- k=1 search (P2): labels and distances equal FAISS's bit for bit, near-ties
  included: the CPU engine sums the BLAS path's dot products with the BLAS
  this faiss calls (found from its module, profile.faiss_blas);
- training in lockstep (P1): from FAISS's own centroids, each iteration gives
  FAISS's next centroids bit for bit;
- end to end (P3): the trained centroids and iteration statistics equal
  faiss.Kmeans's, on random and on real integer data (Fashion-MNIST, image
  colours), new parameters (early stop, k-means++, AFK-MC^2, faster
  subsampling) included.
"""
import warnings

import numpy as np
import pytest

import flashkm
from conftest import blobs, cuda_or_skip, digits, fashion_mnist
from flashkm import _lib, parity
from flashkm import profile as P

CPU = "cpu"


@pytest.fixture(scope="module")
def info(faiss):
    return P.detect(faiss)


@pytest.fixture(scope="module")
def version(faiss):
    return P.version_number(faiss.__version__)


@pytest.fixture(scope="module")
def ctx():
    c = _lib.Context(CPU)
    yield c
    c.close()


def bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.int32)


# ------------------------------------------------------------------ profile


def test_profile_is_this_faiss_at_its_level(faiss, info, version):
    assert info.profile.faiss_version == version
    assert info.name.startswith("faiss-%d.%d.%d-%s" % (version // 10000, version // 100 % 100,
                                                       version % 100, info.simd))
    assert info.loops == "probed"
    # the measured loops are the table's for this release and level
    assert "+loops" not in info.name, info.name
    assert info.describe()["faiss_version"] == faiss.__version__


def test_blas_is_the_one_this_faiss_calls(faiss, info, ctx):
    """The BLAS found from the faiss module is handed to every call, with
    FAISS's block sizes read at each call, and named in last_train_info."""
    assert info.blas is not None and info.blas.sgemm
    p = flashkm.kmeans._make_params(flashkm.kmeans.clustering_fields(info), _lib.METRIC_L2,
                                    prof=info)
    assert p.blas_sgemm == info.blas.sgemm
    assert (p.blas_query_bs, p.blas_database_bs) == (4096, 1024)
    old = faiss.cvar.distance_compute_blas_database_bs
    try:
        faiss.cvar.distance_compute_blas_database_bs = 333
        p = flashkm.kmeans._make_params({"niter": 1, "nredo": 1, "verbose": 0, "spherical": 0,
                                         "int_centroids": 0, "frozen_centroids": 0,
                                         "min_points_per_centroid": 1,
                                         "max_points_per_centroid": 256, "seed": 1},
                                        _lib.METRIC_L2, prof=info)
        assert p.blas_database_bs == 333
        # FAISS and flashkm with another block shape: still the same labels
        rs = np.random.RandomState(5)
        x = np.round(rs.rand(3000, 200) * 255).astype(np.float32)
        c = x[:700] + 1
        index = faiss.IndexFlatL2(200)
        index.add(c)
        D, I = index.search(x, 1)
        fd, fl = flashkm.assign(ctx, x, c, _lib.METRIC_L2, profile=info)
        assert np.array_equal(fl, I[:, 0]) and np.array_equal(bits(fd), bits(D[:, 0]))
    finally:
        faiss.cvar.distance_compute_blas_database_bs = old
    km = flashkm.Kmeans(8, 4, niter=2, backend=CPU)
    km.train(blobs(500, 8, 4))
    assert flashkm.last_train_info["profile"]["blas"] == info.blas.name
    named = flashkm.Kmeans(8, 4, niter=2, backend=CPU, profile="flashkm")
    named.train(blobs(500, 8, 4))
    assert flashkm.last_train_info["profile"]["blas"] is None  # flashkm's own order


def test_threshold_follows_faiss_cvar(faiss, info):
    old = faiss.cvar.distance_compute_blas_threshold
    try:
        faiss.cvar.distance_compute_blas_threshold = old + 7
        assert info.for_call().blas_threshold == old + 7
        assert "+blas=%d" % (old + 7) in _lib.profile_name(info.for_call())
    finally:
        faiss.cvar.distance_compute_blas_threshold = old


@pytest.mark.parametrize("d", [1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 33, 64, 100, 127, 300, 784])
def test_faiss_loops_reproduced_on_fresh_vectors(faiss, info, ctx, d):
    """fvec_L2sqr / fvec_inner_product through the direct path of fkm_assign
    (a lone centroid, few rows), fvec_norm_L2sqr through the BLAS path
    against the zero vector, each bit for bit against FAISS's call."""
    rs = np.random.RandomState(d)
    x = (rs.randn(12, d) * rs.choice([0.01, 1.0, 30.0], (12, 1))).astype(np.float32)
    y = (rs.randn(1, d) * 3).astype(np.float32)
    thr = faiss.cvar.distance_compute_blas_threshold
    faiss.cvar.distance_compute_blas_threshold = 1 << 30  # every call direct
    try:
        dl2, _ = flashkm.assign(ctx, x, y, _lib.METRIC_L2, profile=info)
        dip, _ = flashkm.assign(ctx, x, y, _lib.METRIC_INNER_PRODUCT, profile=info)
    finally:
        faiss.cvar.distance_compute_blas_threshold = thr
    for i in range(len(x)):
        assert bits(dl2[i]) == bits(faiss.fvec_L2sqr(faiss.swig_ptr(x[i]), faiss.swig_ptr(y[0]), d))
        assert bits(dip[i]) == bits(
            faiss.fvec_inner_product(faiss.swig_ptr(x[i]), faiss.swig_ptr(y[0]), d))
    # norms: FAISS's search against a zero centroid on the BLAS path (plain or
    # cmax scan: the distance is |x|^2 exactly); the fused kernels keep their
    # own norms, so d <= 32 is checked by the search tests below
    if d > 32:
        faiss.cvar.distance_compute_blas_threshold = 0
        try:
            dn, _ = flashkm.assign(ctx, x, np.zeros((1, d), np.float32), _lib.METRIC_L2,
                                   profile=info)
        finally:
            faiss.cvar.distance_compute_blas_threshold = thr
        for i in range(len(x)):
            assert bits(dn[i]) == bits(faiss.fvec_norm_L2sqr(faiss.swig_ptr(x[i]), d))


# ------------------------------------------------------------------ search


def check_labels(x, c, metric, fl, I, exact=True):
    """No label differs (the CPU engine with FAISS's own BLAS); where flashkm
    does not reproduce FAISS's norms (exact False), every difference is a
    near-tie within FAISS's rounding bound."""
    diffs = parity.label_differences(x, c, metric == "l2", fl, I)
    if exact:
        assert not diffs, "rows (flashkm, FAISS, gap, bound): %s" % diffs[:10]
    for row, a, b, gap, bound in diffs:
        assert gap <= bound, "row %d: flashkm %d, FAISS %d, gap %g is no near-tie" % (
            row, a, b, gap)


def reproduced(info, metric, n, d):
    """False on the one path whose arithmetic flashkm does not reproduce
    (docs/profiles.md): the AVX-512 fused kernel's norms for 18 <= d <= 32,
    whose order depends on how GCC vectorised that build."""
    a = info.for_call()
    v, thr = a.faiss_version, a.blas_threshold
    direct = v != 0 and ((n * d < thr) if v >= 11402 else (n < thr))
    fused512 = a.simd == _lib.SIMD_AVX512 and v >= 10800 and 18 <= d <= 32
    return direct or metric != "l2" or not fused512


SEARCH = [(50, 8, 7), (1000, 16, 40), (900, 100, 50), (20000, 3, 64), (20000, 16, 300),
          (10000, 24, 100), (10000, 17, 19), (6000, 33, 1500), (5000, 64, 2100),
          (3000, 128, 1030), (19, 200, 5), (21, 5, 3), (5000, 1, 8), (30000, 2, 2000),
          (20000, 16, 11), (20000, 1, 13), (130000, 1, 16)]


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("n,d,k", SEARCH)
def test_search_equals_faiss(faiss, info, ctx, n, d, k, metric):
    rs = np.random.RandomState(n + d + k)
    x = (rs.randn(n, d) * 3).astype(np.float32)
    c = (rs.randn(k, d) * 3).astype(np.float32)
    index = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
    index.add(c)
    D, I = index.search(x, 1)
    fd, fl = flashkm.assign(ctx, x, c, _lib.METRIC_L2 if metric == "l2" else
                            _lib.METRIC_INNER_PRODUCT, profile=info)
    exact = reproduced(info, metric, n, d)
    check_labels(x, c, metric, fl, I[:, 0], exact)
    if exact:
        assert np.array_equal(bits(fd), bits(D[:, 0]))


def pq_tie_case(rs, dsub, M, nbits, n):
    """Centroids decided by rounding alone: a third are the sub-vector's base
    plus a signed permutation of one set of offsets (the same exact
    distance: the order of FAISS's distance formula decides), a third exact
    copies of earlier ones (ties: the scan's lane rules decide), the rest
    random; rows are the bases, exactly or with tiny noise."""
    d, ksub = dsub * M, 1 << nbits
    base = np.floor(rs.uniform(-1, 1, d) * 64) / 8
    off = 0.25 + rs.uniform(-1, 1, dsub) * 3 / 4096
    cent = np.empty((M, ksub, dsub), np.float32)
    for m in range(M):
        b = base[m * dsub:(m + 1) * dsub]
        for i in range(ksub):
            if i % 3 == 0 or i < 3:
                cent[m, i] = b + rs.permutation(off) * rs.choice([-1, 1], dsub)
            elif i % 3 == 1:
                cent[m, i] = cent[m, rs.randint(i)]
            else:
                cent[m, i] = b + rs.uniform(-1, 1, dsub)
    noise = (np.arange(n)[:, None] % 4 != 0) * rs.uniform(-1, 1, (n, d)) * 2.0**-20
    return (base[None, :] + noise).astype(np.float32), cent


@pytest.mark.parametrize("nbits", [1, 2, 3, 4, 5, 8])
def test_pq_codes_equal_faiss_compute_codes(faiss, info, ctx, nbits):
    """fkm_pq_encode against this FAISS's ProductQuantizer::compute_codes at
    its SIMD level, for every sub-vector width of its fvec_L2sqr_ny_nearest
    path (its D2 / D4 / D8 kernels, the D12 kernel of 1.7.4 - 1.13, the
    reference in the build's fvec_L2sqr order), codebooks small enough to
    leave lane leftovers (nbits 1 - 3) and whole lanes; with residuals
    against coarse centroids, as IndexIVFPQ encodes."""
    rs = np.random.RandomState(nbits)
    for dsub in range(1, 16):
        M = 3
        x, cent = pq_tie_case(rs, dsub, M, nbits, 300)
        pq = faiss.ProductQuantizer(dsub * M, M, nbits)
        faiss.copy_array_to_vector(cent.ravel(), pq.centroids)
        got = flashkm.pq_encode(ctx, x, cent, nbits, profile=info)
        assert np.array_equal(got, pq.compute_codes(x)), "dsub %d" % dsub
        coarse = np.floor(rs.uniform(-64, 64, (5, dsub * M))).astype(np.float32) / 16
        lists = rs.randint(0, 5, x.shape[0]).astype(np.int64)
        xr = (x + coarse[lists]).astype(np.float32)
        got = flashkm.pq_encode(ctx, xr, cent, nbits, M, coarse=coarse, lists=lists,
                                profile=info)
        assert np.array_equal(got, pq.compute_codes((xr - coarse[lists]).astype(np.float32)))


def test_pq_codes_are_sensitive_to_the_profile(faiss, info, ctx):
    """The tie fixtures separate the builds: another level's rule gives
    other codes (so the equality above tests this build's rule)."""
    rs = np.random.RandomState(7)
    other = "faiss-1.15.1-none" if info.simd != "none" else "faiss-1.15.1-avx2"
    differ = 0
    for dsub in (2, 4, 8):
        x, cent = pq_tie_case(rs, dsub, 3, 8, 300)
        ours = flashkm.pq_encode(ctx, x, cent, 8, profile=info)
        differ += not np.array_equal(ours, flashkm.pq_encode(ctx, x, cent, 8, profile=other))
    assert differ > 0


@pytest.mark.parametrize("n,d,k", [(20000, 8, 40), (5000, 40, 2100)])
def test_search_exact_ties_follow_faiss_scan(faiss, info, ctx, n, d, k):
    """Small integers: every dot product and norm is exact in any order, so
    each of FAISS's paths (BLAS with its plain or laned scans, the fused
    kernels) gives exact values, and duplicate centroids (exact ties) are
    decided by FAISS's scan alone: lowest index, or the lane rules of the
    AVX kernels. flashkm must decide every one of them the same way."""
    rs = np.random.RandomState(d)
    c = np.round(rs.rand(k, d) * 12 - 6).astype(np.float32)
    c[17] = c[3]
    c[33] = c[3]
    c[20] = c[12]
    c[k - 1] = c[k - 1030 if k > 1030 else 5]  # a duplicate in a later database block
    x = np.round(rs.rand(n, d) * 12 - 6).astype(np.float32)
    x[:50] = c[3]
    x[50:100] = c[12]
    x[100:150] = c[k - 1]
    x[150:200] = c[3] + 1
    for metric in ("l2", "ip"):
        index = faiss.IndexFlatL2(d) if metric == "l2" else faiss.IndexFlatIP(d)
        index.add(c)
        D, I = index.search(x, 1)
        fd, fl = flashkm.assign(ctx, x, c, _lib.METRIC_L2 if metric == "l2" else
                                _lib.METRIC_INNER_PRODUCT, profile=info)
        assert np.array_equal(fl, I[:, 0]), (metric, np.nonzero(fl != I[:, 0])[0][:10])
        assert np.array_equal(bits(fd), bits(D[:, 0])), metric


# ------------------------------------------------------------------ training


def lockstep(faiss, info, ctx, d, k, cp, x, weights, niter):
    """P1 (flashkm.parity.lockstep): every iteration FAISS's, bit for bit."""
    res = parity.lockstep(faiss, info, ctx, x, k, cp, weights, niter=niter)
    assert res["unexplained"] == 0 and res["near_tie_steps"] == 0, res


TRAIN = [
    ("blobs", 3000, 8, 12, {}),
    ("d3", 20000, 3, 64, {}),
    ("d16", 12000, 16, 40, {}),
    ("d100", 4000, 100, 30, {}),
    ("subsample", 50000, 24, 20, {"max_points_per_centroid": 100}),
    ("faster_subsample", 50000, 24, 20, {"max_points_per_centroid": 100,
                                         "use_faster_subsampling": True}),
    ("weights", 3000, 10, 20, {"weights": True}),
    ("spherical", 3000, 32, 25, {"spherical": True}),
    ("int_centroids", 3000, 6, 10, {"int_centroids": True}),
    ("small_n", 200, 50, 5, {"min_points_per_centroid": 1}),
    ("empty", 500, 4, 100, {"min_points_per_centroid": 1}),
    ("k1100", 30000, 20, 1100, {"min_points_per_centroid": 1}),
]


@pytest.mark.parametrize("name,n,d,k,cp", TRAIN, ids=[t[0] for t in TRAIN])
def test_lockstep_iterations_equal_faiss(faiss, info, ctx, name, n, d, k, cp, version):
    cp = dict(cp)
    if cp.get("use_faster_subsampling") and version < 10900:
        pytest.skip("FAISS %s has no use_faster_subsampling (1.9+)" % faiss.__version__)
    w = np.random.RandomState(1).rand(n).astype(np.float32) * 3 if cp.pop("weights", 0) else None
    x = blobs(n, d, max(k // 2, 2), seed=n + d)
    lockstep(faiss, info, ctx, d, k, cp, x, w, niter=4)


def run_both(faiss, d, k, kw, x, w=None, init=None, backend=CPU):
    fk = faiss.Kmeans(d, k, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fk.train(x, weights=w, init_centroids=init)
    mk = flashkm.Kmeans(d, k, backend=backend, **kw)
    mk.train(x, weights=w, init_centroids=init)
    return fk, mk


def test_parity_module_reports_every_level(faiss, tmp_path, capsys):
    """python -m flashkm.parity on a tie-free file: P1, P2 and P3 pass."""
    x = blobs(3000, 8, 6, seed=2)
    path = tmp_path / "blobs.npy"
    np.save(path, x)
    rc = parity.main([str(path), "-k", "12", "--niter", "6"])
    out = capsys.readouterr().out
    assert "profile        %s" % P.detect(faiss).name in out
    assert "P1 lockstep    PASS" in out and "P2 assignment  PASS" in out, out
    assert "P3 end to end  PASS" in out and "verdict        PASS" in out, out
    # the CPU engine calls this FAISS's BLAS: every dot product in its order, none may differ
    assert "36000 of 36000 dot products summed in FAISS's order: none may differ" in out, out
    assert rc == 0


def test_parity_exact_order_follows_the_coverage(faiss, info, ctx):
    """flashkm.parity.exact_order: with this FAISS's BLAS the CPU engine sums
    every dot product in FAISS's order (P2 then allows no differing label);
    in flashkm's own profile, without a BLAS, none."""
    assert parity.exact_order(ctx, info, 3000, 8, 12, True) == (True, 36000)
    assert parity.exact_order(ctx, P.named("flashkm"), 3000, 8, 12, True) == (False, 0)


def assert_same_run(fk, mk, exact_distances=True):
    """Centroids, imbalance and splits bit for bit; the objective too unless
    FAISS computed the distances on a path flashkm does not reproduce
    (reproduced() False: same labels, distances within FAISS's rounding)."""
    assert np.array_equal(bits(fk.centroids), bits(mk.centroids))
    fs, ms = fk.iteration_stats, mk.iteration_stats
    assert len(fs) == len(ms)
    for a, b in zip(fs, ms):
        for f in ("imbalance_factor", "nsplit"):
            assert a[f] == b[f], (f, a, b)
        if exact_distances:
            assert a["obj"] == b["obj"], ("obj", a, b)
        else:  # float distances, each within a few units of the last place
            assert abs(a["obj"] - b["obj"]) <= 1e-5 * abs(a["obj"]), ("obj", a, b)


# Tie-free blobs on paths whose distances FAISS computes itself (fused
# kernels: small d at AVX levels; the direct path: few rows), so the whole
# run, objective included, is FAISS's bit for bit; "direct" (the direct path
# of 1.15) meets the AVX-512 fused kernel at d = 20 on 1.8 .. 1.14, the one
# path whose distances flashkm does not reproduce (docs/profiles.md).
E2E = [
    ("fused_d3", 20000, 3, 64, {"niter": 10}),
    ("fused_d8", 9000, 8, 24, {}),
    ("fused_d16_weights", 12000, 16, 30, {"weights": True}),
    ("direct", 600, 20, 6, {"min_points_per_centroid": 1}),
    ("nredo", 9000, 6, 10, {"nredo": 3, "niter": 8}),
    ("init_frozen", 9000, 6, 10, {"init": 4, "frozen_centroids": True}),
    ("subsample", 60000, 4, 30, {"max_points_per_centroid": 100}),
    ("pixel_colours", 60000, 3, 64, {"niter": 10, "pixels": True}),
]


@pytest.mark.parametrize("name,n,d,k,kw", E2E, ids=[t[0] for t in E2E])
def test_end_to_end_equals_faiss_kmeans(faiss, info, ctx, name, n, d, k, kw):
    """Whole runs equal faiss.Kmeans's, whichever of FAISS's paths (its own
    code, its BLAS) computes the distances."""
    kw = dict(kw)
    w = np.random.RandomState(1).rand(n).astype(np.float32) * 3 if kw.pop("weights", 0) else None
    ni = kw.pop("init", 0)
    if kw.pop("pixels", False):  # image colours: integers 0..255, many duplicate points
        rs = np.random.RandomState(7)
        palette = rs.randint(0, 256, (40, d))
        x = np.clip(palette[rs.randint(0, 40, n)] + rs.randint(-6, 7, (n, d)), 0, 255)
        x = x.astype(np.float32)
    else:
        x = blobs(n, d, max(k // 2, 2), seed=n + d + k)
    init = x[:ni] + 0.5 if ni else None
    kw.setdefault("niter", 12)
    fk, mk = run_both(faiss, d, k, kw, x, w, init)
    assert_same_run(fk, mk, reproduced(info, "l2", n, d))


def test_new_parameters_follow_this_faiss(faiss, info, version):
    """Early stop, k-means++, AFK-MC^2 and faster subsampling exist where this
    FAISS has them, with its random streams; elsewhere they are refused like
    FAISS refuses an unknown field."""
    d, k = 3, 20
    x = blobs(30000, d, 12, seed=4)
    cases = []
    if version >= 10900:
        cases.append({"use_faster_subsampling": True, "max_points_per_centroid": 60})
    if version >= 11400:
        cases += [{"init_method": 1}, {"init_method": 2, "afkmc2_chain_length": 20},
                  {"init_method": 1, "init": 3}]
    if version >= 11402:
        cases += [{"niter": 80, "early_stop_threshold": 1e-4}, {"niter": 80}]
    for kw in cases:
        kw = dict(kw)
        ni = kw.pop("init", 0)
        kw.setdefault("niter", 10)
        fk, mk = run_both(faiss, d, k, kw, x, init=x[:ni] + 0.25 if ni else None)
        assert_same_run(fk, mk)
    if version < 11402:
        with pytest.raises(AttributeError):
            flashkm.Kmeans(d, k, early_stop_threshold=0.0)
    if version < 11400:
        with pytest.raises(AttributeError):
            flashkm.Kmeans(d, k, init_method=1)


def fashion_or_fail(n):
    """Fashion-MNIST is a declared test dependency (scripts/setup-deps.sh):
    missing, the test fails instead of passing unchecked."""
    x = fashion_mnist(n)
    if x is None:
        pytest.fail("Fashion-MNIST not found: install Debian's dataset-fashion-mnist")
    return x


def test_fashion_mnist_lockstep(faiss, info, ctx):
    """Real integer data (pixels), where sums round and near-ties abound:
    FAISS's labels every iteration, and on FAISS's final centroids."""
    x = fashion_or_fail(3000)
    lockstep(faiss, info, ctx, x.shape[1], 24, {}, x, None, niter=3)
    fk = faiss.Kmeans(x.shape[1], 24, niter=5)
    fk.train(x)
    diffs, beyond = parity.assignment(faiss, info, ctx, x, fk.centroids, True)
    assert not diffs, diffs


def test_fashion_mnist_kmeans_equals_faiss(faiss):
    """The issue's case: Kmeans(784, 256) on the 60,000 training images
    (159 of 256 rows differed before flashkm used FAISS's BLAS); ten
    iterations keep the test short."""
    x = fashion_or_fail(60000)
    fk, mk = run_both(faiss, 784, 256, {"niter": 10}, x)
    assert_same_run(fk, mk)


@pytest.mark.parametrize("k", [64, 256, 1024])
def test_fashion_mnist_kmeans_equals_faiss_on_the_gpu(faiss, k):
    """The CUDA engine in the BLAS's learned order (docs/profiles.md, "The
    BLAS's order on the GPU"): the whole Fashion-MNIST run equals this
    FAISS's, near-ties included, and says which BLAS it followed."""
    cuda_or_skip()
    x = fashion_or_fail(60000)
    fk, mk = run_both(faiss, 784, k, {"niter": 10}, x, backend="cuda")
    assert flashkm.last_train_info["profile"]["blas"], flashkm.last_train_info
    assert_same_run(fk, mk)


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
def test_order_coverage_is_whole_with_this_faiss(faiss, info, backend):
    """Kmeans.order_coverage: with this FAISS's BLAS every dot product of
    an assignment is summed in FAISS's order (the CPU engine calls that
    BLAS; the CUDA engine follows the order it learned of it, every element
    modelled for the BLASes tested, docs/profiles.md), also on FAISS's
    direct path for a few rows; with the flashkm profile, none is."""
    if backend == "cuda":
        cuda_or_skip()
    km = flashkm.Kmeans(784, 256, backend=backend)
    assert km.profile.describe()["blas"], km.profile.describe()
    assert km.order_coverage(60000) == 60000 * 256
    assert km.order_coverage(5) == 5 * 256
    own = flashkm.Kmeans(784, 256, backend=backend, profile="flashkm")
    assert own.order_coverage(60000) == 0


@pytest.mark.parametrize("backend", ["cpu", "cuda"])
@pytest.mark.parametrize("k", [8, 16, 32, 64])
def test_digits_kmeans_equals_faiss(faiss, k, backend):
    """A second real integer data set: scikit-learn's 8x8 digits (1,797
    images, pixels 0-16: many duplicate rows and distances that tie exactly
    or within an ulp): faiss.Kmeans's run bit for bit, on the CPU engine
    and, where a GPU is, on the CUDA engine."""
    if backend == "cuda":
        cuda_or_skip()
    x = digits()
    if x is None:
        pytest.fail("scikit-learn's digits not found: install Debian's python3-sklearn")
    fk, mk = run_both(faiss, 64, k, {"niter": 25}, x, backend=backend)
    assert_same_run(fk, mk)


def test_fashion_mnist_ivf_pq_index_bytes_equal_faiss(faiss):
    """train_index on IVF256,PQ16 (its PQ training is FAISS's own): the
    trained index serialises to the bytes stock FAISS writes."""
    x = fashion_or_fail(20000)
    ours, stock = (faiss.index_factory(784, "IVF256,PQ16") for _ in range(2))
    for index in (ours, stock):
        faiss.extract_index_ivf(index).cp.niter = 6
        ivfpq = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivfpq.pq.cp.niter = 4
        ivfpq.do_polysemous_training = False  # FAISS's own 50 s on a generic build
    info = flashkm.train_index(ours, x, backend="cpu")
    assert info["used_flashkm"]
    stock.train(x)
    assert np.array_equal(faiss.serialize_index(ours), faiss.serialize_index(stock))
