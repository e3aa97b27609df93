"""Prepare stage: raw files -> canonical queries/passages/qrels Parquet, split by item."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from .. import schema
from ..download import verify_checksums
from . import cldr

SPLITS = ("train", "test")


def split_items(item_ids: list[str], test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each item to train or test (no item in both), reproducibly from `seed`."""
    items = sorted(set(item_ids))
    order = np.random.default_rng(seed).permutation(len(items))
    n_test = int(round(test_fraction * len(items)))
    test = {items[i] for i in order[:n_test]}
    return {item: ("test" if item in test else "train") for item in items}


def cldr_frames(raw_dir: Path, languages: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    path = raw_dir / "records.jsonl"
    queries, passages = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise schema.SchemaError(f"{path}:{number}: not JSON ({error})") from error
            for lang in languages:
                names = record["names"].get(lang)
                if names is None:
                    raise schema.SchemaError(f"{path}:{number}: item {record['item_id']} has no language {lang!r}")
                item = record["item_id"]
                queries.append((f"q:{lang}:{item}", lang, item, cldr.query_text(names)))
                passages.append((f"p:{lang}:{item}", lang, item, cldr.passage_text(names)))
    return (
        pd.DataFrame(queries, columns=schema.QUERIES.names),
        pd.DataFrame(passages, columns=schema.PASSAGES.names),
    )


def parallel_qrels(queries: pd.DataFrame, passages: pd.DataFrame) -> pd.DataFrame:
    """Every query is relevant to its item's passage in every language."""
    qrels = queries[["qid", "item_id"]].merge(passages[["pid", "item_id"]], on="item_id")[["qid", "pid"]]
    return qrels.assign(relevance=1).sort_values(["qid", "pid"], ignore_index=True)


def prepare(params: dict, raw_dir: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Build the canonical Parquet files of one corpus under out_dir/<split>/."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    verify_checksums(raw_dir)
    if params["source"] != "cldr":
        raise ValueError(f"corpora: unknown source {params['source']!r}")
    queries, passages = cldr_frames(raw_dir, params["languages"])
    identical = queries.text.values == passages.text.values
    if identical.any():
        raise schema.SchemaError(f"{raw_dir}: query equals its passage for {queries.qid[identical].tolist()[:5]}")
    split_of = split_items(queries.item_id.tolist(), params["test_fraction"], params["split_seed"])
    counts = {}
    for split in SPLITS:
        q = queries[queries.item_id.map(split_of) == split].reset_index(drop=True)
        p = passages[passages.item_id.map(split_of) == split].reset_index(drop=True)
        schema.require_nonempty(q, out_dir / split, f"{split} items (test_fraction={params['test_fraction']})")
        schema.write_parquet(q, out_dir / split / "queries.parquet", schema.QUERIES)
        schema.write_parquet(p, out_dir / split / "passages.parquet", schema.PASSAGES)
        schema.write_parquet(parallel_qrels(q, p), out_dir / split / "qrels.parquet", schema.QRELS)
        counts[split] = q.item_id.nunique()
    return counts
