"""flashkm against the FAISS this interpreter imports: the parity levels of
docs/contract.md, in that FAISS's own arithmetic (its profile).

    python -m flashkm.parity INPUT -k K [--niter N] [--seed S] ...

INPUT: .npy (float32/float16/uint8/int8, 2-D), .fvecs, .bvecs or .fbin.
Prints one line per level and exits 0 when every level passes, 1 when one
fails, 2 on a bad command line:

- P1 lockstep: each iteration started from FAISS's own centroids gives FAISS's
  next centroids, nsplit and imbalance bit for bit, except where FAISS's BLAS
  rounds a near-tie the other way (each such point listed with its gap and
  the rounding bound);
- P2 assignment: on FAISS's final centroids, every label flashkm gives that
  differs from FAISS's is a near-tie within the bound;
- P3 end to end: faiss.Kmeans and flashkm.Kmeans give the same centroids and
  iteration statistics (n/a when a near-tie let the runs part ways).
"""
import argparse
import ctypes
import os
import sys
import time
import warnings

import numpy as np

from . import _lib
from . import profile as _profile

U = 2.0 ** -24


def near_tie_bound(x, c, a, b):
    """How far apart two centroids' distances from x can be and still be
    ordered differently by FAISS's BLAS and flashkm's dot product: each dot
    product is within gamma_d sum|x_j c_j| of the exact one, and the formula
    adds u (|x|^2 + |c|^2) roundings."""
    d = x.shape[0]
    x64 = np.abs(x.astype(np.float64))
    s = sum(x64 @ np.abs(c[j].astype(np.float64)) for j in (a, b))
    nrm = (x64 ** 2).sum() + sum((c[j].astype(np.float64) ** 2).sum() for j in (a, b))
    return 4.2 * d * U * s + 8 * U * nrm


def label_differences(x, c, l2, ours, theirs):
    """[(row, flashkm's label, FAISS's, gap, bound)] for every differing label."""
    out = []
    for i in np.nonzero(ours != theirs)[0]:
        a, b = int(ours[i]), int(theirs[i])
        x64, ca, cb = (v.astype(np.float64) for v in (x[i], c[a], c[b]))
        gap = (abs(((x64 - ca) ** 2).sum() - ((x64 - cb) ** 2).sum()) if l2
               else abs(x64 @ ca - x64 @ cb))
        out.append((int(i), a, b, gap, near_tie_bound(x[i], c, a, b)))
    return out


def training_rows(ctx, prof, x, k, cp):
    """The rows FAISS trains on, in its order (kmeans.train_rows: the
    library's own subsampling rule, faster subsampling included)."""
    from . import kmeans
    rows = kmeans.train_rows(ctx, len(x), k, cp, profile=prof)
    return x if rows is None else x[rows]


def faiss_step(faiss, d, k, cp, x, cent, weights=None):
    """One FAISS iteration from the k given centroids (no initialisation
    draws), with the same subsampling: (centroids, (obj, imbalance, nsplit))."""
    clus = faiss.Clustering(d, k)
    for f, v in cp.items():
        setattr(clus, f, v)
    clus.niter = 1
    faiss.copy_array_to_vector(np.ascontiguousarray(cent, dtype=np.float32).ravel(),
                               clus.centroids)
    index = faiss.IndexFlatIP(d) if cp.get("spherical") else faiss.IndexFlatL2(d)
    clus.train(x, index, weights)
    st = clus.iteration_stats.at(0)
    return (faiss.vector_to_array(clus.centroids).reshape(k, d),
            (st.obj, st.imbalance_factor, st.nsplit))


def _bits(a):
    return np.ascontiguousarray(a, dtype=np.float32).view(np.int32)


def exact_order(ctx, prof, n, d, k, l2):
    """(whether ctx sums every dot product of a search of n rows in FAISS's
    order, how many it does: flashkm.order_coverage). Where it does, no
    label may differ from FAISS's, near-ties included."""
    from . import kmeans
    covered = kmeans.order_coverage(
        ctx, n, d, k, _lib.METRIC_L2 if l2 else _lib.METRIC_INNER_PRODUCT, profile=prof)
    return covered == n * k, covered


def lockstep(faiss, prof, ctx, x, k, cp, weights=None, niter=None, start=None):
    """P1: returns a dict: steps, equal (steps bit-equal), near_tie_steps,
    near_ties (every differing label: row, ours, FAISS's, gap, bound),
    unexplained (steps that differ with no near-tie or beyond the bound, or
    at all where ctx sums the training rows' search in FAISS's order)."""
    from . import kmeans
    d = x.shape[1]
    l2 = not cp.get("spherical")
    niter = niter or cp.get("niter", 25)
    cent = (x[np.random.RandomState(0).choice(len(x), k, replace=False)].copy()
            if start is None else start.copy())
    res = {"steps": 0, "equal": 0, "near_tie_steps": 0, "near_ties": [], "unexplained": 0}
    xs = training_rows(ctx, prof, x, k, cp)
    exact, _ = exact_order(ctx, prof, len(xs), d, k, l2)
    for _ in range(niter):
        want, (obj, imb, nsplit) = faiss_step(faiss, d, k, cp, x, cent, weights)
        got, stats = kmeans.train(ctx, x, k, dict(cp, niter=1),
                                  _lib.METRIC_L2 if l2 else _lib.METRIC_INNER_PRODUCT,
                                  weights, cent, profile=prof)
        res["steps"] += 1
        same = (np.array_equal(_bits(got), _bits(want)) and stats[0]["nsplit"] == nsplit
                and stats[0]["imbalance_factor"] == imb)
        if same:
            res["equal"] += 1
        else:
            start_c = cent.copy()
            if cp.get("spherical"):
                start_c /= np.linalg.norm(start_c, axis=1, keepdims=True)
            index = faiss.IndexFlatL2(d) if l2 else faiss.IndexFlatIP(d)
            index.add(np.ascontiguousarray(start_c, dtype=np.float32))
            _, I = index.search(xs, 1)
            _, ours = kmeans.assign(ctx, xs, start_c,
                                    _lib.METRIC_L2 if l2 else _lib.METRIC_INNER_PRODUCT,
                                    profile=prof)
            diffs = label_differences(xs, start_c, l2, ours, I[:, 0])
            if diffs and not exact and all(g <= b for *_, g, b in diffs):
                res["near_tie_steps"] += 1
                res["near_ties"] += diffs
            else:
                res["unexplained"] += 1
        cent = want
    return res


def assignment(faiss, prof, ctx, x, centroids, l2):
    """P2 on the given centroids: (differing labels, count beyond the bound)."""
    from . import kmeans
    d = x.shape[1]
    index = faiss.IndexFlatL2(d) if l2 else faiss.IndexFlatIP(d)
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    _, I = index.search(x, 1)
    _, ours = kmeans.assign(ctx, x, centroids,
                            _lib.METRIC_L2 if l2 else _lib.METRIC_INNER_PRODUCT, profile=prof)
    diffs = label_differences(x, centroids, l2, ours, I[:, 0])
    return diffs, sum(1 for *_, g, b in diffs if g > b)


def end_to_end(faiss, d, k, kw, x, backend="cpu", weights=None):
    """P3: (same centroids, same statistics, faiss.Kmeans, flashkm.Kmeans, times)."""
    from . import faiss_compat, kmeans
    fk = faiss_compat.original_faiss_kmeans(faiss)(d, k, **kw)
    t0 = time.time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fk.train(x, weights=weights)
    t1 = time.time()
    mk = kmeans.Kmeans(d, k, backend=backend, **kw)
    mk.train(x, weights=weights)
    t2 = time.time()
    same_c = np.array_equal(_bits(fk.centroids), _bits(mk.centroids))
    fs, ms = fk.iteration_stats, mk.iteration_stats
    same_s = len(fs) == len(ms) and all(
        a[f] == b[f] for a, b in zip(fs, ms) for f in ("obj", "imbalance_factor", "nsplit"))
    return same_c, same_s, fk, mk, (t1 - t0, t2 - t1)


# ------------------------------------------------------------------ files


def read_vectors(path):
    """(n, d) float32 from .npy, .fvecs, .bvecs or .fbin."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        a = np.load(path, mmap_mode="r")
        if a.ndim == 1:
            a = a.reshape(-1, 1)
        if a.ndim != 2:
            raise ValueError("%s: a 2-D array is needed, not %d-D" % (path, a.ndim))
        return np.ascontiguousarray(a, dtype=np.float32)
    raw = np.fromfile(path, dtype=np.uint8)
    if ext in (".fvecs", ".bvecs"):
        if raw.size < 4:
            raise ValueError("%s: empty" % path)
        d = int(raw[:4].view(np.int32)[0])
        es = 4 if ext == ".fvecs" else 1
        row = 4 + d * es
        if d <= 0 or raw.size % row:
            raise ValueError("%s: not a %s file of dimension %d" % (path, ext, d))
        rows = raw.reshape(-1, row)[:, 4:]
        return (rows.copy().view(np.float32) if es == 4 else rows.astype(np.float32))
    if ext == ".fbin":
        n, d = (int(v) for v in raw[:8].view(np.int32))
        if n < 0 or d <= 0 or raw.size != 8 + 4 * n * d:
            raise ValueError("%s: header says %d x %d, the file holds %d bytes"
                             % (path, n, d, raw.size))
        return raw[8:].view(np.float32).reshape(n, d).copy()
    raise ValueError("%s: unknown extension (expected .npy, .fvecs, .bvecs, .fbin)" % path)


def main(argv=None):
    ap = argparse.ArgumentParser(
        prog="python -m flashkm.parity",
        description="flashkm against the imported faiss, in its arithmetic (docs/profiles.md)")
    ap.add_argument("input")
    ap.add_argument("-k", type=int, required=True)
    ap.add_argument("--niter", type=int, default=25)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--max-points-per-centroid", type=int, default=256)
    ap.add_argument("--min-points-per-centroid", type=int, default=39)
    ap.add_argument("--spherical", action="store_true")
    ap.add_argument("--backend", default="cpu", choices=("cpu", "cuda", "auto"))
    ap.add_argument("--max-listed", type=int, default=10)
    args = ap.parse_args(argv)
    try:
        import faiss
    except ImportError:
        print("python -m flashkm.parity: this interpreter has no faiss", file=sys.stderr)
        return 2
    try:
        x = read_vectors(args.input)
    except (OSError, ValueError) as e:
        print("python -m flashkm.parity: error: %s" % e, file=sys.stderr)
        return 1
    n, d = x.shape
    if not 1 <= args.k <= n:
        print("python -m flashkm.parity: error: -k %d must be in [1, n = %d]" % (args.k, n),
              file=sys.stderr)
        return 2
    prof = _profile.detect(faiss)
    cp = {"niter": args.niter, "seed": args.seed,
          "max_points_per_centroid": args.max_points_per_centroid,
          "min_points_per_centroid": args.min_points_per_centroid,
          "spherical": args.spherical}
    print("profile        %s (faiss %s, loops %s)" % (prof.name, faiss.__version__, prof.loops))
    for w in prof.warnings:
        print("profile        warning: %s" % w)
    ctx = _lib.Context(args.backend)
    ok = True
    res = lockstep(faiss, prof, ctx, x, args.k, cp, niter=args.niter)
    p1 = res["unexplained"] == 0
    ok &= p1
    print("P1 lockstep    %s  %d iterations from FAISS's centroids: %d bit-equal, %d differ at "
          "%d near-ties within the bound, %d unexplained"
          % ("PASS" if p1 else "FAIL", res["steps"], res["equal"], res["near_tie_steps"],
             len(res["near_ties"]), res["unexplained"]))
    for i, a, b, g, bd in res["near_ties"][:args.max_listed]:
        print("P1 near-tie    row %d: flashkm %d, FAISS %d, gap %.3g <= bound %.3g"
              % (i, a, b, g, bd))
    same_c, same_s, fk, mk, (tf, tm) = end_to_end(
        faiss, d, args.k, cp, x, backend=args.backend)
    diffs, beyond = assignment(faiss, prof, ctx, x, fk.centroids, not args.spherical)
    exact, covered = exact_order(ctx, prof, n, d, args.k, not args.spherical)
    p2 = not diffs if exact else beyond == 0
    ok &= p2
    print("P2 assignment  %s  on FAISS's final centroids, %d points: %d labels differ, %d beyond "
          "the bound; %d of %d dot products summed in FAISS's order%s"
          % ("PASS" if p2 else "FAIL", n, len(diffs), beyond, covered, n * args.k,
             ": none may differ" if exact else ""))
    for i, a, b, g, bd in diffs[:args.max_listed]:
        print("P2 near-tie    row %d: flashkm %d, FAISS %d, gap %.3g, bound %.3g"
              % (i, a, b, g, bd))
    if same_c and same_s:
        print("P3 end to end  PASS  %d centroids and %d iterations' statistics equal bit for bit"
              % (args.k, len(fk.iteration_stats)))
    elif res["near_ties"] and not exact:
        rows = int((fk.centroids != mk.centroids).any(1).sum())
        print("P3 end to end  n/a   %d of %d centroids differ: the runs parted at the near-ties "
              "above" % (rows, args.k))
    else:
        ok = False
        print("P3 end to end  FAIL  the runs differ %s"
              % ("though every dot product is summed in FAISS's order" if exact
                 else "with no near-tie to explain it"))
    print("times          flashkm %.3f s, FAISS %.3f s" % (tm, tf))
    print("verdict        %s" % ("PASS" if ok else "FAIL"))
    ctx.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
