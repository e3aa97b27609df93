"""Helpers the tests of several modules share: LANGS, pair_row, plan, shards, synthetic_pairs, write_pairs."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from hybridbatch.artifacts import schema

LANGS = ["ar", "de", "en", "zh", "hi"]


def pair_row(item, lq, lp, negative_pid=None, pid=None):
    pid = pid or f"p{item}:{lp}"
    return (
        f"i{item}:{lq}>{lp}",
        f"i{item}",
        f"q{item}:{lq}",
        pid,
        negative_pid,
        lq,
        lp,
        f"q {item} {lq}",
        f"text of {pid}",
        None if negative_pid is None else f"text of {negative_pid}",
    )


def synthetic_pairs(n_items: int, seed: int, single_language: int = 0) -> pd.DataFrame:
    """Items in 2-5 languages (the first `single_language` items in one only), every language pair."""
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(n_items):
        k = 1 if item < single_language else rng.integers(2, len(LANGS) + 1)
        langs = sorted(rng.choice(LANGS, size=k, replace=False))
        rows += [pair_row(item, lq, lp) for lq in langs for lp in langs]
    return pd.DataFrame(rows, columns=schema.PAIRS.names)


def write_pairs(pairs: pd.DataFrame, directory, extra_qrels: list[tuple[str, str]] = ()):
    """pairs.parquet and qrels.parquet: every pair's (qid, pid), plus `extra_qrels`."""
    directory.mkdir(parents=True, exist_ok=True)
    pairs.to_parquet(directory / "pairs.parquet")
    judged = sorted(set(zip(pairs.qid, pairs.pid)) | set(extra_qrels))
    qrels = pd.DataFrame(judged, columns=["qid", "pid"]).assign(relevance=1)
    schema.write_parquet(qrels, directory / "qrels.parquet", schema.QRELS)
    return directory


def plan(**overrides):
    return {
        "alpha": 0.5,
        "batch_size": 8,
        "epochs": 2,
        "seed": 0,
        "mono_language_sampling": "uniform",
        "drop_last": True,
    } | overrides


def shards(out_dir) -> pd.DataFrame:
    return pd.concat([pq.read_table(p).to_pandas() for p in sorted(out_dir.glob("shard-*.parquet"))], ignore_index=True)
