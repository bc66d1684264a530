"""Similar-case search: embedded ANN candidates against exact search, measured in one run.

On N x D clustered synthetic unit vectors (``--clusters`` Gaussian centres, queries drawn fresh from
the same mixture, never indexed) or on the rows of a real ``radzoo extract`` output (``--extract``;
queries are held-out rows), for each candidate in ``--candidates`` (faiss = FAISS HNSW32 as the
product builds it, hnswlib, usearch):

* build time and resident memory (RSS growth while building, plus the serialised size);
* recall@10 against exact inner-product search (``faiss.knn``) and single-query p50 latency, and
  the ratio to exact search's single-query p50 (FAISS ``IndexFlatIP``);
* FAISS only: in-search filters through ``radzoo.search.faiss_backend.FaissStore`` (an allowed-rows
  mask applied inside the graph walk; 50 % and 1 % of rows allowed, and the query patient's
  exclusion) with their p50 next to the unfiltered one; adding ``--add`` rows (graph add + write +
  reload) as a share of the full build; tombstones (a mask over removed rows) at query time;
* the product's index (``radzoo index build`` on the vectors written as an extraction output), HNSW
  and ``--low-memory`` (IVF codes, ``--codes``, exact re-rank read from the Parquet shards) side by side: full
  build, growing by ``--add`` rows as a share of it, memory per million vectors once opened, stored
  and held-out recall@10, single-query p50. ``--candidates ''`` runs only this section.

``--http``: the NIH images embedded by a random-weight ``mococxr_resnet50`` (``radzoo extract``),
indexed (``radzoo index build``) and served (``radzoo serve --index``); ``POST /v1/search`` p50 at
``--clients`` concurrent clients for image queries (plain and filtered), with the
server-reported split of an image query's time between embedding and search. The extraction is
kept in ``--work`` and also feeds ``--extract``.

Usage::

    python benchmarks/bench_search.py --n 1000000 --dim 768 [--threads 2] [--candidates faiss,hnswlib,usearch]
    python benchmarks/bench_search.py --extract EXTRACT_DIR     # real embeddings (e.g. of the NIH images)
    python benchmarks/bench_search.py --http [--clients 8] [--requests 80] [--work DIR]

Smoke run: ``--n 20000 --dim 64 --queries 50``. The machine may be shared: compare the numbers
printed in one run.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # a shared machine: idle OpenMP threads must not spin
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

K = 10
TUNED: dict[str, int] = {}  # FAISS efSearch chosen by the build-time recall tuning


def rss_mb(field: str = "VmRSS") -> float:
    """Resident MB; ``RssAnon``: private memory only (not clean pages of memory-mapped files)."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def clustered(n: int, dim: int, clusters: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` indexed and 1000 query unit vectors from one Gaussian mixture (centres ~ N(0, 1), spread 0.6)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    out = np.empty((n + 1000, dim), np.float32)
    for lo in range(0, n + 1000, 100_000):
        hi = min(lo + 100_000, n + 1000)
        pick = rng.integers(0, clusters, hi - lo)
        out[lo:hi] = centres[pick] + 0.6 * rng.standard_normal((hi - lo, dim), dtype=np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out[:n], out[n:]


def real(extract: Path, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from radzoo.search.extract_source import read_new_rows

    rows = read_new_rows(extract, set())
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows.vectors))
    held = max(1, len(order) // 10)
    return rows.vectors[order[held:]], rows.vectors[order[:held]]


def p50_ms(fn: Any, queries: np.ndarray) -> float:
    fn(queries[:1])
    times = []
    for q in queries:
        start = time.perf_counter()
        fn(q[None])
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """recall@10: share of each query's true neighbours found (fewer than 10 when few rows qualify)."""
    out = []
    for a, b in zip(found, truth, strict=True):
        t = {int(x) for x in b[:K] if x >= 0}
        if t:
            out.append(len(t & {int(x) for x in a[:K]}) / len(t))
    return float(np.mean(out))


def build_candidate(name: str, xb: np.ndarray, threads: int, ef_construction: int | None = None,
                    ) -> tuple[Any, Any, float, float]:
    """(searcher(q) -> ids, object, build seconds, RSS growth MB)."""
    before, start = rss_mb(), time.perf_counter()
    if name == "faiss":
        from radzoo.search.faiss_backend import EF_CONSTRUCTION, faiss_module, new_hnsw

        faiss = faiss_module()
        index = new_hnsw(xb.shape[1], ef_construction=ef_construction or EF_CONSTRUCTION)
        for lo in range(0, len(xb), 100_000):
            index.add(xb[lo:lo + 100_000])
        from radzoo.search.faiss_backend import measure_recall

        tuned = measure_recall(index, xb)  # what `radzoo index build` does: efSearch raised to recall 0.95
        print(f"faiss: build-time tuning chose efSearch {tuned['ef_search']} "
              f"(sample recall@10 {tuned['recall_at_10']:.4f})", flush=True)
        TUNED["ef"] = tuned["ef_search"]
        params = faiss.SearchParametersHNSW(efSearch=tuned["ef_search"])
        search = lambda q: index.search(q, K, params=params)[1]  # noqa: E731
        obj = index
    elif name == "hnswlib":
        import hnswlib

        obj = hnswlib.Index(space="ip", dim=xb.shape[1])
        obj.init_index(max_elements=len(xb), M=16, ef_construction=100)
        obj.add_items(xb, num_threads=threads)
        obj.set_ef(64)
        search = lambda q: obj.knn_query(q, k=K, num_threads=1)[0]  # noqa: E731
    elif name == "usearch":
        from usearch.index import Index

        obj = Index(ndim=xb.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=128, expansion_search=64)
        obj.add(np.arange(len(xb)), xb, threads=threads)
        search = lambda q: obj.search(q, K, threads=1).keys[None] if q.shape[0] == 1 else obj.search(q, K).keys  # noqa: E731
    else:
        raise SystemExit(f"unknown candidate {name!r}")
    return search, obj, time.perf_counter() - start, rss_mb() - before


def serialised_mb(name: str, obj: Any) -> float:
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "index")
        if name == "faiss":
            from radzoo.search.faiss_backend import faiss_module

            faiss_module().write_index(obj, path)
        elif name == "hnswlib":
            obj.save_index(path)
        else:
            obj.save(path)
        return os.path.getsize(path) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=768)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--extract", type=Path, default=None, help="real embeddings: a radzoo extract output")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--candidates", default="faiss,hnswlib,usearch")
    ap.add_argument("--add", type=int, default=10_000, help="rows added to the built FAISS graph")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ef-construction", type=int, default=None, help="FAISS HNSW efConstruction (default: the product's)")
    ap.add_argument("--no-low-memory", action="store_true",
                    help="skip the product-index section (HNSW vs --low-memory through `radzoo index build`)")
    ap.add_argument("--index-modes", default="hnsw,low-memory", help="product-index modes measured")
    ap.add_argument("--codes", default="sq4", help="low-memory codes (sq4, sq8, pq)")
    ap.add_argument("--http", action="store_true", help="POST /v1/search latency on a real server (NIH images)")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=80)
    ap.add_argument("--work", type=Path, default=None, help="--http: folder for the model, extraction and index")
    args = ap.parse_args()
    if args.http:
        http(args)
        return

    from radzoo.search.faiss_backend import FaissStore, exact_knn, faiss_module, read_ann, write_ann

    faiss = faiss_module()
    faiss.omp_set_num_threads(args.threads)
    start = time.perf_counter()
    if args.extract is not None:
        xb, xq = real(args.extract, args.seed)
        what = f"real embeddings of {args.extract} ({len(xb)} indexed, {len(xq)} held-out queries)"
    else:
        xb, xq = clustered(args.n + args.add, args.dim, args.clusters, args.seed)
        extra, xb = xb[args.n:], xb[: args.n]
        what = f"{len(xb)} x {xb.shape[1]} clustered synthetic unit vectors ({args.clusters} clusters)"
    xq = xq[: args.queries]
    print(f"# bench_search: {what}, {len(xq)} queries, {args.threads} threads, data {time.perf_counter() - start:.0f} s",
          flush=True)
    _, truth = exact_knn(xq, xb, K)
    flat = faiss.IndexFlatIP(xb.shape[1])
    flat.add(xb)
    exact_ms = p50_ms(lambda q: flat.search(q, K), xq[:50])
    faiss.omp_set_num_threads(1)  # single-query latency: one thread per query, as a server does
    exact1_ms = p50_ms(lambda q: flat.search(q, K), xq[:50])
    flat = None  # free its copy of the vectors
    print(f"exact (IndexFlatIP) single-query p50: {exact_ms:.2f} ms on {args.threads} threads, "
          f"{exact1_ms:.2f} ms on 1 (ratios below use the faster)", flush=True)
    exact_ms = min(exact_ms, exact1_ms)
    keep: dict[str, Any] = {}
    for name in filter(None, args.candidates.split(",")):
        faiss.omp_set_num_threads(args.threads)
        search, obj, secs, grew = build_candidate(name, xb, args.threads, args.ef_construction)
        faiss.omp_set_num_threads(1)
        found = np.concatenate([search(q[None]) for q in xq])
        ms = p50_ms(search, xq)
        size = serialised_mb(name, obj)
        print(f"{name:8s} build {secs:7.1f} s  RSS +{grew:7.0f} MB ({grew / len(xb) * 1e6:7.0f} MB per 1M)  "
              f"file {size:7.0f} MB  recall@10 {recall(found, truth):.4f}  p50 {ms:.3f} ms  "
              f"{exact_ms / ms:6.0f}x exact", flush=True)
        if name == "faiss":
            keep["faiss"] = (obj, secs, TUNED["ef"])
        else:
            del obj
    if "faiss" in keep:
        index, secs, ef = keep["faiss"]
        store = FaissStore(xb, index, ef)
        base = p50_ms(lambda q: store.search(q, K, None), xq)
        rng = np.random.default_rng(args.seed)
        for share in (0.5, 0.01):
            allowed = rng.random(len(xb)) < share
            ms = p50_ms(lambda q, a=allowed: store.search(q, K, a), xq)
            _, ids = store.search(xq, K, allowed)
            ok = bool(np.all(allowed[ids[ids >= 0]]))
            _, t = exact_knn(xq, xb[allowed], K)
            rec = recall(np.where(ids >= 0, ids, -1), np.flatnonzero(allowed)[t])
            print(f"filter {share:4.0%} of rows allowed: p50 {ms:.3f} ms vs {base:.3f} unfiltered "
                  f"({ms / base:.2f}x), all hits allowed: {ok}, recall@10 {rec:.4f}", flush=True)
        patient = np.ones(len(xb), bool)
        patient[rng.choice(len(xb), 5, replace=False)] = False
        ms = p50_ms(lambda q: store.search(q, K, patient), xq)
        print(f"patient exclusion (5 rows) / tombstones mask: p50 {ms:.3f} ms ({ms / base:.2f}x unfiltered)", flush=True)
        if args.extract is None and args.add:
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "ann.faiss")
                faiss.omp_set_num_threads(args.threads)
                t0 = time.perf_counter()
                write_ann(index, Path(path))  # as the product stores it: links only, vectors in segments
                index2 = read_ann(Path(path), xb, links_only=True)
                io_s = time.perf_counter() - t0
                t0 = time.perf_counter()
                index2.add(extra)
                write_ann(index2, Path(path))
                add_s = time.perf_counter() - t0 + io_s
                del index2
            print(f"add {args.add} rows (read graph + add + write): {add_s:.1f} s = {add_s / secs:.1%} of the "
                  f"{secs:.0f} s full build", flush=True)
        del keep, store, index
    if args.extract is None and not args.no_low_memory:
        faiss.omp_set_num_threads(args.threads)
        index_modes(xb, xq, extra, truth, exact_ms, args)


def write_extraction(folder: Path, xb: np.ndarray, first: int = 0, shard_rows: int = 1024) -> None:
    """``xb`` as a ``radzoo extract`` output (manifest + shards of ``shard_rows``, the extraction's
    default, laid out by the extraction's own ``write_parquet``), so the index is built and searched
    through the product's own code. Metadata: 8 rows per patient, a CR/DX modality split, 4 views."""
    import json

    import pyarrow as pa

    from radzoo.extract.sink import write_parquet

    dim = xb.shape[1]
    ident = {"model": "bench-synthetic", "revision": "0", "preprocess": "0", "output": "pooled", "precision": "fp32",
             "dim": dim}
    (folder / "embeddings").mkdir(parents=True, exist_ok=True)
    (folder / "manifest.json").write_text(json.dumps({"model": ident}))
    for lo in range(0, len(xb), shard_rows):
        part = xb[lo:lo + shard_rows]
        n, ids = len(part), np.arange(first + lo, first + lo + len(part))
        emb = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(part).ravel()), dim)
        table = pa.table({"path": [f"/bench/{i}.dcm" for i in ids], "sop_instance_uid": [f"1.2.{i}" for i in ids],
                          "patient_key": [f"P{i // 8}" for i in ids], "embedding": emb,
                          "modality": np.where(ids % 2 == 0, "CR", "DX").tolist(),
                          "view_position": np.array(["PA", "AP", "LL", "LATERAL"])[ids % 4].tolist(),
                          **{c: [ident[c]] * n for c in ("model", "revision", "preprocess", "output", "precision")}})
        write_parquet(table, folder / "embeddings" / f"part-{first + lo:09d}.parquet")


def index_modes(xb: np.ndarray, xq: np.ndarray, extra: np.ndarray, truth: np.ndarray, exact_ms: float,
                args: argparse.Namespace) -> None:
    """``radzoo index build`` as the product runs it, HNSW and ``--low-memory`` side by side: full
    build, growing by ``--add`` rows (share of the full build), memory per million vectors once
    opened (growth of private resident memory, ``RssAnon``: the HNSW mode holds the graph with its
    float32 vectors, the low-memory mode the IVF codes, and both the keys), open time, recall@10
    of held-out queries and single-query p50 of the backend, then of ``SearchIndex.search_vectors``
    (what a query pays besides embedding: the allowed-rows mask and the hit keys) plain, filtered
    (modality=CR: 50 % of rows; view=PA & modality=CR: 25 %), with the query patient excluded, and
    with 1 % of rows tombstoned."""

    from radzoo.search import build_index, remove_uids
    from radzoo.search.faiss_backend import faiss_module
    from radzoo.search.similar import SearchIndex

    faiss = faiss_module()
    with tempfile.TemporaryDirectory() as d:
        ext = Path(d) / "ext"
        t0 = time.perf_counter()
        write_extraction(ext, xb)
        print(f"extraction written: {len(xb)} rows in {time.perf_counter() - t0:.0f} s", flush=True)
        for mode in args.index_modes.split(","):
            out = Path(d) / mode
            faiss.omp_set_num_threads(args.threads)
            t0 = time.perf_counter()
            low = mode == "low-memory"
            m = build_index([ext], out, threads=args.threads, low_memory=low, codes=args.codes if low else None)
            full = time.perf_counter() - t0
            ann = m["ann"]
            print(f"index {mode}: full build {full:.1f} s ({ann['kind']}, stored leave-one-out recall@10 "
                  f"{ann['recall_at_10']:.4f})", flush=True)
            faiss.omp_set_num_threads(1)
            before = rss_mb("RssAnon")
            t0 = time.perf_counter()
            index = SearchIndex(out)
            opened = time.perf_counter() - t0
            store = index.store
            found = np.concatenate([store.search(q[None], K, None)[1] for q in xq])
            grew = rss_mb("RssAnon") - before
            ms = p50_ms(lambda q, s=store: s.search(q, K, None), xq)
            disk = sum(f.stat().st_size for f in out.iterdir() if f.suffix in (".faiss", ".npy", ".parquet")) / 1e6
            tuned = (f"{ann['codes']} {ann['code_bytes']} B/vector, nprobe {ann['nprobe']}, re-rank {ann['rerank']}x"
                     if low else f"efSearch {ann.get('ef_search')}")
            print(f"index {mode:10s} ({ann['kind']}, {tuned}): opened in {opened:.1f} s, private RSS +{grew:.0f} MB "
                  f"({grew / len(xb) * 1e6:.0f} MB per 1M), index files {disk:.0f} MB ({disk / len(xb) * 1e6:.0f} MB per 1M); "
                  f"held-out recall@10 {recall(found, truth):.4f}, backend p50 {ms:.3f} ms, {exact_ms / ms:.0f}x exact",
                  flush=True)
            full_query = p50_ms(lambda q, ix=index: ix.search_vectors(["q"], [q[0]], k=K, filters={}), xq)
            cases = {"modality=CR (50 %)": ({"modality": ["CR"]}, None),
                     "view=PA & modality=CR (25 %)": ({"modality": ["CR"], "view_position": ["PA"]}, None),
                     "query patient excluded": ({}, "P123")}
            line = [f"search_vectors p50 {full_query:.3f} ms"]
            for name, (filt, patient) in cases.items():
                got = p50_ms(lambda q, f=filt, p=patient, ix=index: ix.search_vectors(["q"], [q[0]], k=K, filters=f,
                                                                                      patients=[p] if p else None), xq)
                line.append(f"{name} {got:.3f} ms ({got / full_query:.2f}x)")
            res = index.search_vectors(["q"] * 20, list(xq[:20]), k=K, filters={"modality": ["CR"]})
            ok = all(h["modality"] == "CR" for r in res for h in r.hits) and all(len(r.hits) == K for r in res)
            print(f"index {mode}: " + ", ".join(line) + f"; filtered hits all CR and k each: {ok}", flush=True)
            del index, store
            if mode == "low-memory":
                low_memory_cache(out, xq)
            t0 = time.perf_counter()
            gone = [f"1.2.{i}" for i in np.random.default_rng(1).choice(len(xb), len(xb) // 100, replace=False)]
            remove_uids(out, gone)
            removed_s = time.perf_counter() - t0
            index = SearchIndex(out)
            got = p50_ms(lambda q, ix=index: ix.search_vectors(["q"], [q[0]], k=K, filters={}), xq)
            hits = index.search_vectors(["q"] * 20, list(xq[:20]), k=K, filters={})
            dead = set(gone)
            clean = not any(h["sop_instance_uid"] in dead for r in hits for h in r.hits)
            print(f"index {mode}: tombstoned 1 % ({len(gone)} UIDs) in {removed_s:.1f} s, effective at once "
                  f"(no removed hit: {clean}); search_vectors p50 {got:.3f} ms ({got / full_query:.2f}x)", flush=True)
            del index
            if args.add and len(extra):
                faiss.omp_set_num_threads(args.threads)
                write_extraction(ext, extra, first=10**9)
                t0 = time.perf_counter()
                grown = build_index([ext], out, threads=args.threads)
                add_s = time.perf_counter() - t0
                kept = grown["ann"].get("recall_rows") != grown["rows"]
                print(f"index {mode}: add {len(extra)} rows {add_s:.1f} s = {add_s / full:.1%} of the full build "
                      f"({'recall kept from the last measurement' if kept else 'recall re-measured'})", flush=True)
                for f in (ext / "embeddings").glob("part-1*.parquet"):
                    f.unlink()


def low_memory_cache(out: Path, xq: np.ndarray) -> None:
    """The low-memory index's p50 with a cold row-group cache (first time each query is seen)."""
    from radzoo.search.similar import SearchIndex

    index = SearchIndex(out)
    times = []
    for q in xq[:100]:
        index.store.vectors._cache.clear()
        t = time.perf_counter()
        index.store.search(q[None], K, None)
        times.append((time.perf_counter() - t) * 1000)
    print(f"index low-memory: cold row-group cache p50 {statistics.median(times):.3f} ms", flush=True)


def http(args: argparse.Namespace) -> None:
    """POST /v1/search at ``--clients`` concurrent clients: uid queries and image queries."""
    import base64
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import requests
    from bench_serving import MODEL, find_images, prepare_home, start_server, stop

    import radzoo
    from radzoo.extract.api import extract_features
    from radzoo.search import build_index

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-search-http-"))
    images = sorted(find_images(None)[0].parent.glob("*.png"))
    runtime = prepare_home(work, "torch") if not (work / "models" / MODEL).is_dir() else "torch"
    t0 = time.perf_counter()
    model = radzoo.load(work / "models" / MODEL, runtime=runtime)
    labels = images[0].parent.parent / "labels.csv"
    extract_features(model, images, work / "extract", quiet=True, workers=0,
                     metadata_csv=labels if labels.is_file() else None)
    build_index([work / "extract"], work / "index")
    print(f"# --http: {len(images)} NIH images embedded by random-weight {MODEL} and indexed in "
          f"{time.perf_counter() - t0:.0f} s ({work})", flush=True)
    os.environ["RADZOO_INDEX"] = str(work / "index")
    proc, url = start_server(work, runtime)
    local = threading.local()

    def post(body: dict) -> tuple[float, dict]:
        if not hasattr(local, "s"):
            local.s = requests.Session()
        t = time.perf_counter()
        r = local.s.post(url + "/v1/search", json=body, timeout=300)
        if r.status_code != 200:
            raise RuntimeError(f"HTTP {r.status_code}: {r.text[:300]}")
        return time.perf_counter() - t, r.json()

    try:
        payloads = [base64.b64encode(p.read_bytes()).decode() for p in images[:16]]
        for name, make in (("image", lambda i: {"image": payloads[i % len(payloads)], "k": 10}),):
            with ThreadPoolExecutor(args.clients) as pool:
                list(pool.map(lambda i, m=make: post(m(i)), range(args.clients)))  # warm-up
                out = list(pool.map(lambda i, m=make: post(m(i)), range(args.requests)))
            lat = np.array([o[0] for o in out]) * 1000
            embed = np.array([o[1]["timing_ms"]["embed"] for o in out])
            search = np.array([o[1]["timing_ms"]["search"] for o in out])
            share = float(np.median(search / (embed + search)))
            print(f"POST /v1/search {name} queries, {args.clients} clients: p50 {np.percentile(lat, 50):.1f} ms, "
                  f"p99 {np.percentile(lat, 99):.1f} ms; server-side embed p50 {np.median(embed):.1f} ms, search p50 "
                  f"{np.median(search):.2f} ms (search = {share:.1%} of the query's server time)", flush=True)
        with ThreadPoolExecutor(args.clients) as pool:
            out = list(pool.map(lambda i: post({"image": payloads[0], "k": 10, "filters": {"view": "PA"}}),
                                range(args.clients)))
        print(f"POST /v1/search image + filter view=PA, {args.clients} clients: p50 "
              f"{np.percentile([o[0] * 1000 for o in out], 50):.1f} ms", flush=True)
    finally:
        stop(proc)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
