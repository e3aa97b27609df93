"""Search at MIRACL scale: the search stage's streamed exact search (evaluation.search_block)
over synthetic 384-d corpora of 1M, 3M and 10M passages with 1,000 queries, on this
machine's cores; optionally an approximate FAISS index against it.

    .venv/bin/python benchmarks/search_scale.py [--sizes 1000000 3000000 10000000] [--queries 1000]
        [--block-mb 64] [--approximate IVF1024,PQ48 --approximate-sizes 1000000]

Passages are clustered unit vectors (1,000 centres plus noise) generated block by block
from a seed, so the corpus never exists in memory: the search takes it one block of
candidates at a time, as the stage takes an embeddings file (the stage also decodes
Parquet; here the time to generate the vectors, twice, is in the exact search's time). Every query has one relevant
passage drawn at random (almost always beyond the top 100, so every query also takes the
second pass that ranks it exactly). Each size runs in its own process; printed: seconds,
peak RSS (ru_maxrss of that process, read before any approximate index is built), and for
an approximate index its build time and recall@100 against the exact top 100 (the index's
own search time; the stage still ranks gold passages beyond an approximate list exactly,
with the streamed passes).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))

DIM, CENTRES, GENERATED_BLOCK = 384, 1000, 65536


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def centres(seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((CENTRES, DIM), dtype=np.float32))


def generated_block(seed: int, number: int, rows: int, centre_vectors: np.ndarray) -> np.ndarray:
    rng = np.random.default_rng([seed, number])
    noise = rng.standard_normal((rows, DIM), dtype=np.float32) * np.float32(0.08)
    return unit(centre_vectors[rng.integers(0, CENTRES, rows)] + noise)


def synthetic_blocks(size: int, seed: int):
    """The corpus as candidate blocks (first column, vectors), regenerated on every pass."""
    centre_vectors = centres(seed)

    def blocks():
        for number, lo in enumerate(range(0, size, GENERATED_BLOCK)):
            yield lo, generated_block(seed, number, min(GENERATED_BLOCK, size - lo), centre_vectors)

    return blocks


def run_size(size: int, queries: int, block_mb: float, approximate: str | None, seed: int = 0) -> dict:
    import faiss

    from hybridbatch.evaluate.ranks import block_width, search_block

    faiss.omp_set_num_threads(2)
    rng = np.random.default_rng(seed + 1)
    query_vectors = unit(
        centres(seed)[rng.integers(0, CENTRES, queries)]
        + rng.standard_normal((queries, DIM), dtype=np.float32) * np.float32(0.08)
    )
    gold = (np.arange(queries), rng.integers(0, size, queries))
    blocks = synthetic_blocks(size, seed)
    rebatched = rebatch(blocks, block_width(block_mb))
    started = time.perf_counter()
    q, c, rank, _ = search_block(None, query_vectors, rebatched, size, gold, 100)
    is_gold = c == gold[1][q]
    result = {
        "size": size,
        "queries": queries,
        "exact_seconds": time.perf_counter() - started,
        "median_gold_rank": float(np.median(rank[is_gold])),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if approximate:
        exact_top = {(int(a), int(b)) for a, b, r in zip(q, c, rank) if r <= 100}
        started = time.perf_counter()
        index = faiss.index_factory(DIM, approximate, faiss.METRIC_INNER_PRODUCT)
        sample = np.vstack([block for _, (_, block) in zip(range(4), blocks())])  # 262,144 vectors to train on
        index.train(sample[: min(len(sample), size)])
        for _, block in blocks():
            index.add(block)
        result["approximate_build_seconds"] = time.perf_counter() - started
        if hasattr(index, "nprobe"):
            index.nprobe = 16
        started = time.perf_counter()
        _, listed = index.search(query_vectors, 100)
        result["approximate_seconds"] = time.perf_counter() - started
        found = {(row, int(column)) for row, columns in enumerate(listed) for column in columns if column >= 0}
        result["approximate"] = approximate
        result["recall_at_100_vs_exact"] = len(found & exact_top) / len(exact_top)
    return result


def rebatch(blocks, width: int):
    """The generated blocks re-cut to the search's block width (as the stage reads a file:
    `width` rows at a time, whatever the row groups)."""

    def cut():
        buffer, first = np.empty((0, DIM), np.float32), 0
        for _, block in blocks():
            buffer, start = (np.vstack([buffer, block]) if len(buffer) else block), 0
            while len(buffer) - start >= width:
                yield first, buffer[start : start + width]
                first, start = first + width, start + width
            buffer = buffer[start:]
        if len(buffer):
            yield first, buffer

    return cut


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--block-mb", type=float, default=64)
    parser.add_argument("--approximate", default=None, help="a FAISS factory string, e.g. IVF1024,PQ48")
    parser.add_argument("--approximate-sizes", type=int, nargs="*", default=[1_000_000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # one size, in this process
    args = parser.parse_args()
    if args.one:
        approximate = args.approximate if args.one in args.approximate_sizes else None
        print(json.dumps(run_size(args.one, args.queries, args.block_mb, approximate)))
        return
    print(
        f"{'passages':>10} {'exact s':>8} {'peak RSS MB':>12} {'approximate':>14} "
        f"{'build s':>8} {'search s':>9} {'recall@100':>10}"
    )
    for size in args.sizes:
        command = [sys.executable, __file__, *sys.argv[1:], "--one", str(size)]
        run = subprocess.run(command, capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(f"{size} passages failed:\n{run.stderr[-3000:]}")
        row = json.loads(run.stdout.splitlines()[-1])
        approximate = (
            (
                f"{row['approximate']:>14} {row['approximate_build_seconds']:8.1f} {row['approximate_seconds']:9.1f} "
                f"{row['recall_at_100_vs_exact']:10.3f}"
            )
            if "approximate" in row
            else ""
        )
        print(f"{size:>10,} {row['exact_seconds']:8.1f} {row['peak_rss_mb']:12.0f} {approximate}", flush=True)


if __name__ == "__main__":
    main()
