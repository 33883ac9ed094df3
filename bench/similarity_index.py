"""Vector index benchmark: exact vs IVF search at catalogue sizes, on the service's own VectorIndex
(and FAISS's HNSW for comparison).

    nice -n 15 .venv/bin/python bench/similarity_index.py [--n 100000] [--dim 1280] [--queries 1000]

The vectors are SYNTHETIC: unit vectors drawn around `--clusters` random centres (like product
embeddings that gather by article type), of the classifier embedding's real dimension (1280), stored
and searched as the service does (float16 in the database, float32 in the index). Queries are held-out
draws from the same clusters. Recall@10 is against exact search over the same vectors. Query times are
single queries, one thread (a gunicorn worker serves one request at a time), p50/p99 over `--queries`.
Each index is also timed as the service searches by default, with query expansion (app.similarity:
the query's nearest items, their vectors, the expanded query's search). Also times exact search alone at growing sizes: where it passes half the 10 ms budget is where the
service switches to the inverted file (SIMILARITY_EXACT_MAX). Writes bench/results/similarity-index-<time>.json.
"""
from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from app.config import Settings  # noqa: E402
from app.similarity import expand_from_index  # noqa: E402
from app.vector_index import VectorIndex  # noqa: E402
from bench.results import write_report  # noqa: E402


def clustered(n: int, dim: int, clusters: int, spread: float, rng) -> np.ndarray:
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 10_000):  # in chunks: bounded temporary memory
        count = min(10_000, n - start)
        noise = rng.normal(size=(count, dim)).astype(np.float32) * (spread / np.sqrt(dim))
        out[start:start + count] = centres[rng.integers(0, clusters, count)] + noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float16).astype(np.float32)  # what comes back from the database


def stored_vectors(url: str) -> tuple[np.ndarray, np.ndarray]:
    """The serving classifier's embeddings stored in a service database, and their item ids."""
    from sqlalchemy import create_engine, select

    from app.config import Settings
    from app.embeddings import matrix_from_bytes
    from app.models import ItemEmbedding
    from classification.bundle import read_manifest

    manifest = read_manifest(Settings.from_env().classifier_bundle)
    model = f"{manifest['name']}:{manifest['version']}"
    with create_engine(url).connect() as connection:
        rows = connection.execute(select(ItemEmbedding.item_id, ItemEmbedding.vector).where(ItemEmbedding.model == model)).all()
    if not rows:
        raise SystemExit(f"no embeddings of {model} in that database")
    return matrix_from_bytes([r.vector for r in rows]), np.array([r.item_id for r in rows], np.int64)


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


def time_queries(index: VectorIndex, queries: np.ndarray, k: int) -> tuple[list[np.ndarray], dict]:
    found, times = [], []
    for query in queries:
        start = time.perf_counter()
        ids, _ = index.search(query, k)
        times.append((time.perf_counter() - start) * 1000)
        found.append(ids)
    times = np.array(times)
    return found, {"p50_ms": round(float(np.percentile(times, 50)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3),
                   "mean_ms": round(float(times.mean()), 3)}


def time_expanded_queries(index: VectorIndex, queries: np.ndarray, k: int, count: int) -> dict:
    """The service's search with query expansion (app.similarity): the query's `count` nearest, their
    stored vectors, the expanded query, and its search."""
    times = []
    for query in queries:
        start = time.perf_counter()
        index.search(expand_from_index(index, query, count)[0], k)
        times.append((time.perf_counter() - start) * 1000)
    times = np.array(times)
    return {"query_expansion": count, "p50_ms": round(float(np.percentile(times, 50)), 3),
            "p99_ms": round(float(np.percentile(times, 99)), 3)}


def exact_truth(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    """The ids of each query's k nearest vectors by exact inner product (all queries in one call)."""
    flat = faiss.IndexFlatIP(vectors.shape[1])
    flat.add(vectors)
    return ids[flat.search(queries, k)[1]]


def recall(found: list[np.ndarray], truth: np.ndarray, k: int) -> float:
    return float(np.mean([len(set(f[:k].tolist()) & set(t[:k].tolist())) / k for f, t in zip(found, truth)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--clusters", type=int, default=2_000)
    parser.add_argument("--spread", type=float, default=1.0, help="noise norm around a centre (1.0: cosine ~0.5 to it)")
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--hnsw-m", type=int, default=16, help="FAISS HNSW for comparison (0: skip)")
    parser.add_argument("--ef-search", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--exact-sizes", type=int, nargs="+", default=[1_000, 5_000, 10_000, 20_000, 50_000, 100_000])
    parser.add_argument("--build-threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--query-expansion", type=int, default=Settings().similarity_query_expansion,
                        help="also time the served search with query expansion by this many items (0: skip)")
    parser.add_argument("--from-database", metavar="URL", help="use the embeddings stored in this database")
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    if args.from_database:
        vectors, ids = stored_vectors(args.from_database)
        args.n, args.dim = vectors.shape
        queries = vectors[rng.choice(len(vectors), min(args.queries, len(vectors)), replace=False)]
        data_info = {"synthetic": False, "source": "stored embeddings", "n": args.n, "dim": args.dim}
    else:
        data = clustered(args.n + args.queries, args.dim, args.clusters, args.spread, rng)
        vectors, queries = data[:args.n], data[args.n:]
        ids = np.arange(1, args.n + 1, dtype=np.int64) * 3  # item ids are not positions
        data_info = {"synthetic": True, "n": args.n, "dim": args.dim, "clusters": args.clusters, "spread": args.spread}
    report = {"machine": {"cpu_count": os.cpu_count(), "faiss": faiss.__version__},
              "data": {**data_info, "queries": len(queries), "k": args.k, "stored_as": "float16, searched as float32"}}

    # Ground truth: exact search, all queries at once.
    faiss.omp_set_num_threads(args.build_threads)
    truth = exact_truth(vectors, ids, queries, args.k)

    faiss.omp_set_num_threads(1)
    exact_by_size = []
    for size in [s for s in args.exact_sizes if s <= args.n]:
        index = VectorIndex(args.dim, exact_max=size)
        index.add(ids[:size], vectors[:size])
        _, timing = time_queries(index, queries[:200], args.k)
        exact_by_size.append({"size": size, **timing})
        print(f"exact  {size:>7} vectors: p50 {timing['p50_ms']:.2f} ms  p99 {timing['p99_ms']:.2f} ms")
    report["exact_by_size"] = exact_by_size

    configs = []
    for kind in ("exact", "ivf"):
        rss_before = rss_mb()
        faiss.omp_set_num_threads(args.build_threads)
        start = time.perf_counter()
        index = VectorIndex(args.dim, exact_max=(args.n if kind == "exact" else 0))
        for chunk in range(0, args.n, 10_000):  # the service's bulk load: chunks, then one switch
            index.add(ids[chunk:chunk + 10_000], vectors[chunk:chunk + 10_000], switch=False)
        index.rebuild_if_needed()
        build_s = time.perf_counter() - start
        faiss.omp_set_num_threads(1)
        memory = {"index_mb": round(index.memory_bytes() / 2**20, 1), "rss_delta_mb": round(rss_mb() - rss_before, 1)}
        for nprobe in (args.nprobe if kind == "ivf" else [None]):
            if nprobe:
                index.nprobe = nprobe
            found, timing = time_queries(index, queries, args.k)
            row = {"index": kind, "nprobe": nprobe, "build_s": round(build_s, 2),
                   f"recall@{args.k}": round(recall(found, truth, args.k), 4), **timing, **memory}
            if args.query_expansion:
                row["with_query_expansion"] = time_expanded_queries(index, queries, args.k, args.query_expansion)
                print(f"       with query expansion by {args.query_expansion}: "
                      f"p50 {row['with_query_expansion']['p50_ms']:.2f} ms  p99 {row['with_query_expansion']['p99_ms']:.2f} ms")
            configs.append(row)
            print(f"{kind:<6} nprobe={nprobe or '-':<4} build {build_s:6.1f} s  recall@{args.k} {row[f'recall@{args.k}']:.4f}  "
                  f"p50 {timing['p50_ms']:.2f} ms  p99 {timing['p99_ms']:.2f} ms  index {memory['index_mb']} MB")
        del index
    if args.hnsw_m:  # FAISS HNSW (float32), the other usual choice, for comparison
        faiss.omp_set_num_threads(args.build_threads)
        start = time.perf_counter()
        hnsw = faiss.IndexHNSWFlat(args.dim, args.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        hnsw.add(vectors)
        build_s = time.perf_counter() - start
        faiss.omp_set_num_threads(1)
        for ef in args.ef_search:
            hnsw.hnsw.efSearch = ef
            found, times = [], []
            for query in queries:
                begin = time.perf_counter()
                _, positions = hnsw.search(query.reshape(1, -1), args.k)
                times.append((time.perf_counter() - begin) * 1000)
                found.append(ids[positions[0]])
            row = {"index": "faiss-hnsw", "m": args.hnsw_m, "ef_search": ef, "build_s": round(build_s, 2),
                   f"recall@{args.k}": round(recall(found, truth, args.k), 4),
                   "p50_ms": round(float(np.percentile(times, 50)), 3), "p99_ms": round(float(np.percentile(times, 99)), 3),
                   "index_mb": round(faiss.serialize_index(hnsw).nbytes / 2**20, 1)}
            configs.append(row)
            print(f"hnsw   ef={ef:<4} build {build_s:6.1f} s  recall@{args.k} {row[f'recall@{args.k}']:.4f}  "
                  f"p50 {row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  index {row['index_mb']} MB")
        del hnsw
    report["configs"] = configs
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    write_report("similarity-index", report)


if __name__ == "__main__":
    main()
