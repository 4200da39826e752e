#!/usr/bin/env python3
"""The whole IVF build, phase by phase: flashkm against stock FAISS in one
process, on the same data (issue 22's table).

For each factory string: build the index twice from the same float32 data
(clustered, seeded) and the same database:
  - stock FAISS, its phases run one by one exactly as index.train does
    them (each untrained transform of a pre-transform chain trained and
    applied; the coarse k-means as Level1Quantizer::train_q1 runs it, a
    faiss.Clustering with the IVF's cp on its quantizer; then the IVF's own
    train(), which skips the trained quantizer: codebooks, polysemous
    training, tables), then index.add(database);
  - flashkm: flashkm.train_index (pre-transform with OPQ's PQ trainings,
    coarse k-means, PQ codebooks on flashkm; FAISS's own rest) and
    flashkm.add_index (the coarse assignment on flashkm, an IVF-PQ's encoding
    too where dsub < 16; FAISS stores the codes).
Prints a markdown table: seconds per phase for each side (FAISS / flashkm),
the whole build and its ratio, whether the serialised indexes are identical,
and recall@10 of both (nprobe 16, exact ground truth from an IndexFlat);
then flashkm's split of its phases (its codebooks, FAISS's rest of train
such as polysemous training, and add's assignment, encoding and FAISS's
list appends). With --split-add, stock FAISS's add is also timed phase by
phase, apart from the build (its add() does not say where its time goes):
the pre-transform chain applied to the database, the coarse quantizer's
k=1 search (quantizer.assign's), and for an IndexIVFPQ the residuals
(compute_residual_n) and ProductQuantizer::compute_codes of them, the calls
IndexIVFPQ::add_core makes; then the k=1 phases' ratios against flashkm's
assignment and encoding. A warm-up call first starts the engine (a CUDA
context).
faiss.omp_get_max_threads() threads for FAISS; flashkm's engine from
--backend (auto: the GPU when there is one).

Usage:
  FLASHKM_LIBRARY=build/plugin/libflashkm.so PYTHONPATH=python \\
    python3 bench/ivf_build.py [--n 1M] [--d 128] [--nb SAME] [--nq 1000] \\
      [--factory "IVF4096,PQ32" ...] [--backend auto] [--skip-stock] [--split-add] [--verbose]
"""
import argparse
import time

import numpy as np

import flashkm
from flashkm.faiss_compat import _trains_alone  # FAISS's char field as a number


def rows(text):
    t = str(text).strip().upper()
    mult = {"K": 10**3, "M": 10**6, "G": 10**9}.get(t[-1:], 1)
    return int(float(t[:-1] if t[-1:] in "KMG" else t) * mult)


def clustered(n, d, seed, centers=4096):
    """n points around `centers` Gaussian centres in d dimensions, float32."""
    rs = np.random.RandomState(seed)
    c = rs.randn(centers, d).astype(np.float32) * 4
    out = np.empty((n, d), dtype=np.float32)
    step = 1 << 20
    for i in range(0, n, step):
        m = min(step, n - i)
        out[i:i + m] = c[rs.randint(0, centers, m)] + rs.randn(m, d).astype(np.float32)
    return out


def stock_build(faiss, factory, x, xb):
    """index.train(x) then add(xb), each phase timed as FAISS runs it."""
    index = faiss.index_factory(x.shape[1], factory)
    t = {"pretransform": 0.0, "coarse": 0.0, "rest": 0.0}
    t0 = time.perf_counter()
    top = faiss.downcast_index(index)
    xt, ivf = x, top
    if isinstance(top, faiss.IndexPreTransform):
        for i in range(top.chain.size()):
            vt = faiss.downcast_VectorTransform(top.chain.at(i))
            if not vt.is_trained:
                vt.train(xt)
            xt = vt.apply(xt)
        ivf = faiss.downcast_index(top.index)
    t1 = time.perf_counter()
    t["pretransform"] = t1 - t0
    q = faiss.downcast_index(ivf.quantizer)
    trained = q.is_trained and q.ntotal == ivf.nlist
    if not trained and _trains_alone(ivf) == 0 and ivf.clustering_index is None:
        # train_q1 for a flat quantizer (other kinds: their k-means is in "rest")
        clus = faiss.Clustering(ivf.d, ivf.nlist, ivf.cp)
        q.reset()
        clus.train(xt, q)
        q.is_trained = True
    t2 = time.perf_counter()
    t["coarse"] = t2 - t1
    ivf.train(xt)  # the rest: the quantizer is trained, FAISS skips its k-means
    index.is_trained = True
    t3 = time.perf_counter()
    t["rest"] = t3 - t2
    index.add(xb)
    t["add"] = time.perf_counter() - t3
    t["total"] = time.perf_counter() - t0
    return index, t


def stock_add_phases(faiss, index, xb):
    """Stock FAISS's add of xb into the trained index, timed call by call
    (the index is not changed): seconds of the pre-transform, the coarse
    assignment, and for an IndexIVFPQ the residuals and the encoding."""
    t = {}
    top = faiss.downcast_index(index)
    xt, ivf = xb, top
    t0 = time.perf_counter()
    if isinstance(top, faiss.IndexPreTransform):
        for i in range(top.chain.size()):
            xt = faiss.downcast_VectorTransform(top.chain.at(i)).apply(xt)
        ivf = faiss.downcast_index(top.index)
    xt = np.ascontiguousarray(xt, dtype=np.float32)
    t1 = time.perf_counter()
    t["pretransform"] = t1 - t0
    lists = np.ascontiguousarray(ivf.quantizer.assign(xt, 1).reshape(-1), dtype=np.int64)
    t2 = time.perf_counter()
    t["assign"] = t2 - t1
    if isinstance(ivf, faiss.IndexIVFPQ):
        res = xt
        if ivf.by_residual:
            res = np.empty_like(xt)
            ivf.quantizer.compute_residual_n(xt.shape[0], faiss.swig_ptr(xt),
                                             faiss.swig_ptr(res), faiss.swig_ptr(lists))
        t3 = time.perf_counter()
        t["residuals"] = t3 - t2
        ivf.pq.compute_codes(res)
        t["encode"] = time.perf_counter() - t3
    return t


def flashkm_build(faiss, factory, x, xb, backend, verbose=False):
    index = faiss.index_factory(x.shape[1], factory)
    t0 = time.perf_counter()
    info = flashkm.train_index(index, x, backend=backend, verbose=True if verbose else None)
    t1 = time.perf_counter()
    add = flashkm.add_index(index, xb, backend=backend)
    t2 = time.perf_counter()
    t = {"pretransform": info["t_pretransform"], "coarse": info["t_kmeans"],
         "rest": (t1 - t0) - info["t_pretransform"] - info["t_kmeans"],
         "add": t2 - t1, "total": t2 - t0}
    where = "codebooks %.3f (PQ k-means %.3f, FAISS's polysemous and tables %.3f), FAISS's " \
        "rest of train %.3f; add: assign %.3f, encode %.3f, FAISS's lists %.3f" % (
            info.get("t_codebooks", 0.0), info.get("t_pq", 0.0),
            info.get("t_polysemous_and_tables", 0.0), info.get("t_rest", 0.0),
                                add.get("t_assign", 0.0), add.get("t_encode", 0.0),
                                (t2 - t1) - add.get("t_assign", 0.0) - add.get("t_encode", 0.0))
    if "opq_pq_kmeans_s" in info:
        where = "OPQ rounds: PQ k-means %.3f, encodings %.3f, FAISS's decode, products and " \
            "SVD %.3f; " % (info["opq_pq_kmeans_s"], info["opq_encode_s"], info["opq_rest_s"]) \
            + where
    who = [w for w, on in (("OPQ's PQs", info.get("pretransform_by_flashkm")),
                           ("coarse", info.get("used_flashkm")),
                           ("codebooks", info.get("codebooks_by_flashkm")),
                           ("add's assignment", add.get("assign_by_flashkm")),
                           ("add's encoding", add.get("encode_by_flashkm"))) if on]
    return index, t, who, info.get("backend", "?"), where, add


def recall10(faiss, index, xq, gt):
    faiss.extract_index_ivf(index).nprobe = 16
    _, ids = index.search(xq, 10)
    return float(np.mean([gt[i] in ids[i] for i in range(len(gt))]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", default="1M", help="training rows (and database rows unless --nb)")
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--nb", default=None, help="database rows (default: the training rows)")
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--factory", action="append",
                    help="repeatable; default: IVF4096,PQ32 OPQ32,IVF4096,PQ32 "
                         "IVF16384,Flat IVF4096,SQ8")
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--skip-stock", action="store_true", help="flashkm's side only")
    ap.add_argument("--split-add", action="store_true",
                    help="also time stock FAISS's add call by call (assignment, encoding)")
    ap.add_argument("--verbose", action="store_true",
                    help="flashkm's k-means lines (per iteration; on the CUDA engine its phases)")
    args = ap.parse_args()
    import faiss
    factories = args.factory or ["IVF4096,PQ32", "OPQ32,IVF4096,PQ32", "IVF16384,Flat",
                                 "IVF4096,SQ8"]
    n, d = rows(args.n), args.d
    x = clustered(n, d, 1)
    xb = x if args.nb is None else clustered(rows(args.nb), d, 2)
    xq = clustered(args.nq, d, 3)
    flat = faiss.IndexFlatL2(d)
    flat.add(xb)
    gt = flat.search(xq, 1)[1][:, 0]
    print("faiss %s, %d threads; flashkm %s; train %d x %d, database %d, %d queries"
          % (faiss.__version__, faiss.omp_get_max_threads(), flashkm.__version__, n, d,
             xb.shape[0], args.nq))
    print("| factory | side | pre-transform s | coarse k-means s | rest of train s | add s | "
          "whole build s | FAISS / flashkm | identical bytes | recall@10 | on flashkm |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    # a warm-up: the engine's one-time start (a CUDA context) is not any factory's
    flashkm.Kmeans(d, 16, niter=2, backend=args.backend).train(x[:4096])
    splits = []
    for f in factories:
        ours, tf, who, engine, where, added = flashkm_build(faiss, f, x, xb, args.backend,
                                                            args.verbose)
        splits.append("- %s, flashkm's seconds: %s" % (f, where))
        ours_bytes = faiss.serialize_index(ours)  # before the search sets nprobe
        r_ours = recall10(faiss, ours, xq, gt)
        if not args.skip_stock:
            stock, ts = stock_build(faiss, f, x, xb)
            same = np.array_equal(ours_bytes, faiss.serialize_index(stock))
            if args.split_add:
                sa = stock_add_phases(faiss, stock, xb)
                line = "- %s, FAISS's add timed call by call: pre-transform %.3f, " \
                    "assignment %.3f" % (f, sa["pretransform"], sa["assign"])
                if added.get("assign_by_flashkm") and added.get("t_assign", 0) > 0:
                    line += " (%.1fx flashkm's)" % (sa["assign"] / added["t_assign"])
                if "encode" in sa:
                    line += ", residuals %.3f, encoding %.3f" % (sa["residuals"], sa["encode"])
                    if added.get("encode_by_flashkm") and added.get("t_encode", 0) > 0:
                        line += " (with the residuals %.1fx flashkm's encoding)" % (
                            (sa["residuals"] + sa["encode"]) / added["t_encode"])
                splits.append(line)
            print("| %s | FAISS | %.3f | %.3f | %.3f | %.3f | %.3f | | | %.4f | |"
                  % (f, ts["pretransform"], ts["coarse"], ts["rest"], ts["add"], ts["total"],
                     recall10(faiss, stock, xq, gt)), flush=True)
            ratio = "%.1fx" % (ts["total"] / tf["total"])
        else:
            same, ratio = "-", "-"
        print("| %s | flashkm (%s) | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %s | %.4f | %s |"
              % (f, engine, tf["pretransform"], tf["coarse"], tf["rest"], tf["add"], tf["total"],
                 ratio, same, r_ours, ", ".join(who)), flush=True)
    print()
    print("\n".join(splits))


if __name__ == "__main__":
    main()
