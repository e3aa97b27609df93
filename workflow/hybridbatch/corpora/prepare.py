"""Prepare stage: raw files -> canonical queries/passages/qrels Parquet, split by item."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
import pyarrow as pa

from .. import schema
from ..download import verify_checksums
from . import cldr, lareqa, miracl, mmarco, xm3600

SPLITS = ("train", "test")


def split_items(item_ids: list[str], test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each item (or group of items) to train or test, reproducibly from `seed`."""
    items = sorted(set(item_ids))
    order = np.random.default_rng(seed).permutation(len(items))
    n_test = int(round(test_fraction * len(items)))
    test = {items[i] for i in order[:n_test]}
    return {item: ("test" if item in test else "train") for item in items}


def cldr_frames(raw_dir: Path, languages: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
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
    queries = pd.DataFrame(queries, columns=schema.QUERIES.names)
    passages = pd.DataFrame(passages, columns=schema.PASSAGES.names)
    same_lang = queries.merge(passages, on=["item_id", "lang"])
    identical = same_lang.text_x == same_lang.text_y
    if identical.any():
        raise schema.SchemaError(f"{path}: query equals its passage for {same_lang.qid[identical].tolist()[:5]}")
    return queries.assign(group=queries.item_id), passages.assign(group=passages.item_id), parallel_qrels(queries, passages)


def parallel_qrels(queries: pd.DataFrame, passages: pd.DataFrame) -> pd.DataFrame:
    """Every query is relevant to its item's passage in every language."""
    qrels = queries[["qid", "item_id"]].merge(passages[["pid", "item_id"]], on="item_id")[["qid", "pid"]]
    return qrels.assign(relevance=1).sort_values(["qid", "pid"], ignore_index=True)


def load_source(params: dict, raw_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """queries and passages with a `group` column (the unit of the train/test split), and qrels."""
    if params["source"] == "cldr":
        return cldr_frames(raw_dir, params["languages"])
    if params["source"] == "lareqa":
        queries, passages, qrels = lareqa.load(raw_dir, params["languages"])
        article = passages.item_id.str.split("-").str[0].astype(int)
        return queries.rename(columns={"article": "group"}), passages.assign(group=article), qrels
    if params["source"] == "mmarco":
        queries, passages, qrels = mmarco.load(raw_dir, params["languages"], params["max_queries"])
    elif params["source"] == "xm3600":
        queries, passages, qrels = xm3600.load(raw_dir, params["languages"])
    else:
        raise ValueError(f"corpora: unknown source {params['source']!r}")
    return queries.assign(group=queries.item_id), passages.assign(group=passages.item_id), qrels


def prepare(params: dict, raw_dir: str | Path, out_dir: str | Path) -> dict[str, dict[str, int]]:
    """Build the canonical Parquet files of one corpus under out_dir/<split>/.

    Splits are by group (an item, or an article for LAReQA), so no group is in both.
    A split may be empty (test_fraction 0 or 1); both splits empty is an error."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    verify_checksums(raw_dir)
    if params["source"] == "miracl":  # evaluation only; passages streamed shard by shard
        queries, qrels = miracl.queries_and_qrels(raw_dir, params["languages"])
        schema.require_nonempty(queries, raw_dir, "queries")
        splits = {
            "train": (queries.iloc[:0], [], qrels.iloc[:0]),
            "test": (queries, miracl.passage_batches(raw_dir, params["languages"]), qrels),
        }
        return {split: write_split(out_dir / split, *splits[split]) for split in SPLITS}
    queries, passages, qrels = load_source(params, raw_dir)
    schema.require_nonempty(queries, raw_dir, "queries")
    split_of = split_items(queries.group.tolist() + passages.group.tolist(), params["test_fraction"], params["split_seed"])
    counts = {}
    for split in SPLITS:
        q = queries[queries.group.map(split_of) == split].reset_index(drop=True)
        p = passages[passages.group.map(split_of) == split][schema.PASSAGES.names]
        r = qrels[qrels.qid.isin(q.qid) & qrels.pid.isin(p.pid)].sort_values(["qid", "pid"], ignore_index=True)
        table = pa.Table.from_pandas(p, schema=schema.PASSAGES, preserve_index=False)
        counts[split] = write_split(out_dir / split, q, [table], r)
    return counts


def write_split(
    split_dir: Path, queries: pd.DataFrame, passages: Iterable[pa.Table], qrels: pd.DataFrame
) -> dict[str, int]:
    """queries, passages (written as they come) and qrels of one split; their row counts."""
    schema.write_parquet(queries, split_dir / "queries.parquet", schema.QUERIES)
    n_passages = schema.write_batches(passages, split_dir / "passages.parquet", schema.PASSAGES)
    schema.write_parquet(qrels, split_dir / "qrels.parquet", schema.QRELS)
    return {"queries": len(queries), "passages": n_passages, "qrels": len(qrels)}
