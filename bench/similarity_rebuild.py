"""Search while the index retrains: what a worker's queries cost during a background rebuild.

    nice -n 15 .venv/bin/python bench/similarity_rebuild.py [--n 100000] [--dim 1280]

The service's VectorIndex retrains its inverted file whenever the catalogue has doubled since the last
training, in a thread of its own, while the old index keeps answering. Here: an index of `--n` synthetic
vectors (bench/similarity_index.py's clusters) trained as served, then `--n` more added, which starts
the background rebuild; single queries are timed one after another until the new index is swapped in,
and again after. Recall@10 against exact search over everything stored at that moment. Writes
bench/results/similarity-rebuild-<time>.json.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faiss  # noqa: E402
import numpy as np  # noqa: E402

from app.vector_index import VectorIndex  # noqa: E402
from bench.results import write_report  # noqa: E402
from bench.similarity_index import clustered, exact_truth, recall, time_queries  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="vectors before the rebuild (as many again start it)")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--clusters", type=int, default=2_000)
    parser.add_argument("--spread", type=float, default=1.0)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--build-threads", type=int, default=2, help="FAISS threads (the rebuild's k-means)")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    data = clustered(2 * args.n + args.queries, args.dim, args.clusters, args.spread, rng)
    vectors, queries = data[:2 * args.n], data[2 * args.n:]
    ids = np.arange(1, 2 * args.n + 1, dtype=np.int64) * 3
    faiss.omp_set_num_threads(args.build_threads)

    index = VectorIndex(args.dim, exact_max=0)
    started = time.perf_counter()
    index.add(ids[:args.n], vectors[:args.n], switch=False)
    index.rebuild_if_needed()
    first_build_s = time.perf_counter() - started
    found, before = time_queries(index, queries, args.k)
    before["recall@10"] = round(recall(found, exact_truth(vectors[:args.n], ids[:args.n], queries, args.k), args.k), 4)
    print(f"IVF over {args.n}: built in {first_build_s:.1f} s; p50 {before['p50_ms']} ms, recall {before['recall@10']}")

    index.add(ids[args.n:], vectors[args.n:], switch=False)
    started = time.perf_counter()
    index.rebuild_if_needed(background=True)
    times = []
    while index.rebuilding:
        for query in queries:
            begin = time.perf_counter()
            index.search(query, args.k)
            times.append((time.perf_counter() - begin) * 1000)
            if not index.rebuilding:
                break
    rebuild_s = time.perf_counter() - started
    during = {"queries": len(times), "p50_ms": round(float(np.percentile(times, 50)), 3),
              "p99_ms": round(float(np.percentile(times, 99)), 3), "max_ms": round(float(np.max(times)), 3)}
    print(f"rebuild over {2 * args.n}: {rebuild_s:.1f} s; {during['queries']} queries meanwhile, "
          f"p50 {during['p50_ms']} ms, p99 {during['p99_ms']} ms, max {during['max_ms']} ms")

    found, after = time_queries(index, queries, args.k)
    after["recall@10"] = round(recall(found, exact_truth(vectors, ids, queries, args.k), args.k), 4)
    print(f"IVF over {2 * args.n} ({index.kind}, trained on {index.trained_size}): p50 {after['p50_ms']} ms, "
          f"recall {after['recall@10']}")
    write_report("similarity-rebuild", {
        "data": {"synthetic": True, "n_before": args.n, "n_after": 2 * args.n, "dim": args.dim,
                 "clusters": args.clusters, "spread": args.spread, "queries": len(queries)},
        "faiss_threads": args.build_threads, "first_build_s": round(first_build_s, 1),
        "before": before, "rebuild_s": round(rebuild_s, 1), "during_rebuild": during, "after": after})


if __name__ == "__main__":
    main()
