"""BM25 hard-negative mining at scale: synthetic passages of one language (Zipf-distributed
words, 8-40 words each, 50k-word vocabulary), every passage asking for a negative, each
size in its own process.

    .venv/bin/python benchmarks/hard_negatives_scale.py [--sizes 10000 100000 1000000] [--postings 100000]

Prints seconds, peak RSS, the share of passages given a negative, and the memory of the
passage x passage float64 matrix the miner no longer builds (what `config/paper.yaml`'s
mMARCO, 8.8M passages a language, would have needed)."""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))

from hybridbatch.pairs.build import HARD_NEGATIVE_POSTINGS  # noqa: E402


def synthetic_passages(size: int):
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    vocabulary = np.array([f"w{i}" for i in range(50_000)])
    lengths = rng.integers(8, 41, size)
    words = vocabulary[np.minimum(rng.zipf(1.2, lengths.sum()) - 1, len(vocabulary) - 1)]
    texts = [" ".join(chunk) for chunk in np.split(words, lengths.cumsum()[:-1])]
    pids = [f"p{i}" for i in range(size)]
    return pd.DataFrame({"pid": pids, "lang": "en", "text": texts}), pd.Series({pid: [pid] for pid in pids})


def measure(size: int, postings: int) -> dict:
    from hybridbatch.pairs.build import bm25_hard_negatives

    passages, items = synthetic_passages(size)
    start = time.perf_counter()
    negatives = bm25_hard_negatives(passages, items, depth=20, postings=postings)
    return {
        "seconds": time.perf_counter() - start,
        "found": float(negatives.notna().mean()),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--postings", type=int, default=HARD_NEGATIVE_POSTINGS, help="the query's postings budget")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.postings)))
        return
    print(f"postings budget per query: {args.postings:,}")
    print(f"{'passages':>10} {'seconds':>8} {'peak RSS MB':>12} {'with negative':>14} {'dense N x N would need':>23}")
    for size in args.sizes:
        result = json.loads(
            subprocess.run(
                [sys.executable, __file__, "--one", str(size), "--postings", str(args.postings)],
                capture_output=True,
                text=True,
                check=True,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        print(
            f"{size:>10,} {result['seconds']:8.1f} {result['peak_rss_mb']:12.0f} {result['found']:14.3f} "
            f"{size * size * 8 / 2**30:20.1f} GB"
        )


if __name__ == "__main__":
    main()
