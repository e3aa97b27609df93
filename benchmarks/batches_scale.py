"""Batch building at scale: pairs/s and peak memory for a synthetic pairs file.

    .venv/bin/python benchmarks/batches_scale.py --pairs 10000000

Goal (issue "Hybrid batches as auditable data"): over 200k pairs/s and under 2 GB.
The pairs file is written first (9 languages, 81 pairs per item, as in the paper's
training languages); the build then runs in a fresh process so its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))
from hybridbatch.artifacts import schema

LANGS = ["ar", "de", "en", "es", "hi", "ru", "th", "tr", "zh"]


def write_pairs(directory: Path, n_pairs: int) -> None:
    """pairs.parquet and qrels.parquet: a query is relevant to its item's passage in every
    language; each item's hard negative is another item's passage."""
    per_item = len(LANGS) ** 2
    lq = np.repeat(LANGS, len(LANGS))
    lp = np.tile(LANGS, len(LANGS))
    items_per_chunk = 10_000
    with (
        pq.ParquetWriter(directory / "pairs.parquet", schema.PAIRS) as writer,
        pq.ParquetWriter(directory / "qrels.parquet", schema.QRELS) as judgments,
    ):
        for start in range(0, n_pairs // per_item, items_per_chunk):
            items = np.arange(start, min(start + items_per_chunk, n_pairs // per_item))
            item_ids = np.repeat([f"item{i}" for i in items], per_item)
            q, p = np.tile(lq, len(items)), np.tile(lp, len(items))
            query = np.char.add(np.char.add("question about ", item_ids), np.char.add(" in ", q))
            positive = np.char.add(np.char.add("answer for ", item_ids), np.char.add(" in ", p))
            qid, pid = np.char.add(np.char.add(item_ids, ":q:"), q), np.char.add(np.char.add(item_ids, ":p:"), p)
            columns = {
                "pair_id": np.char.add(np.char.add(item_ids, ":"), np.char.add(np.char.add(q, ">"), p)),
                "item_id": item_ids,
                "qid": qid,
                "pid": pid,
                "negative_pid": pid[::-1],
                "query_lang": q,
                "passage_lang": p,
                "query": query,
                "positive": positive,
                "negative": positive[::-1],
            }
            writer.write_table(
                pa.table({k: pa.array(v.tolist(), pa.string()) for k, v in columns.items()}, schema=schema.PAIRS)
            )
            judgments.write_table(
                pa.table(
                    {
                        "qid": pa.array(qid.tolist()),
                        "pid": pa.array(pid.tolist()),
                        "relevance": pa.array(np.ones(len(qid), dtype=np.int32)),
                    },
                    schema=schema.QRELS,
                )
            )


def build(pairs: str, out: str, epochs: int) -> None:
    from hybridbatch.batches.text import build_batches

    params = {
        "alpha": 0.5,
        "batch_size": 100,
        "epochs": epochs,
        "seed": 0,
        "mono_language_sampling": "uniform",
        "drop_last": True,
    }
    started = time.perf_counter()
    stats = build_batches(params, pairs, out)
    seconds = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": round(seconds, 2), "peak_rss_mb": round(peak_mb), "batches": stats["batches"]}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pairs", type=int, default=10_000_000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--build", nargs=2, metavar=("PAIRS_DIR", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build(*args.build, epochs=args.epochs)
        return
    with tempfile.TemporaryDirectory() as tmp:
        pairs = Path(tmp)
        started = time.perf_counter()
        write_pairs(pairs, args.pairs)
        rows = pq.read_metadata(pairs / "pairs.parquet").num_rows
        size = (pairs / "pairs.parquet").stat().st_size
        print(f"wrote {rows:,} pairs ({size / 1e6:.0f} MB) and their qrels in {time.perf_counter() - started:.1f} s")
        result = subprocess.run(
            [sys.executable, __file__, "--epochs", str(args.epochs), "--build", str(pairs), str(Path(tmp) / "out")],
            capture_output=True,
            text=True,
            check=True,
        )
        measured = json.loads(result.stdout.strip().splitlines()[-1])
        rate = rows / measured["seconds"]
        print(
            f"built {measured['batches']:,} batches ({args.epochs} epoch) from {rows:,} pairs "
            f"in {measured['seconds']:.1f} s: "
            f"{rate:,.0f} pairs/s ({rate / 200_000:.2f}x the 200k pairs/s goal); "
            f"peak RSS {measured['peak_rss_mb']:,} MB ({measured['peak_rss_mb'] / 2048:.2f}x the 2 GB limit)"
        )


if __name__ == "__main__":
    main()
