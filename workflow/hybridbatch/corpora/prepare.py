"""Prepare stage: raw files -> canonical queries/passages/qrels Parquet, split by item."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from hybridbatch.artifacts import schema
from hybridbatch.corpora.formats import SOURCES, CorpusParams, candidate_table, write_split
from hybridbatch.fetch.download import verify_checksums
from hybridbatch.names import SPLITS


def split_items(item_ids: list[str], test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each item (or group of items) to train or test, reproducibly from `seed`."""
    items = sorted(set(item_ids))
    order = np.random.default_rng(seed).permutation(len(items))
    n_test = int(round(test_fraction * len(items)))
    test = {items[i] for i in order[:n_test]}
    return {item: ("test" if item in test else "train") for item in items}


def prepare(params: CorpusParams, raw_dir: str | Path, out_dir: str | Path) -> dict[str, dict[str, int]]:
    """Build the canonical Parquet files of one corpus under out_dir/<split>/.

    Splits are by group (an item, or an article for LAReQA), so no group is in both.
    A split may be empty (test_fraction 0 or 1); both splits empty is an error."""
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    verify_checksums(raw_dir)
    source = SOURCES.lookup(params["source"], f"corpora.{params.get('name', '<name>')}.source")
    if source.write_splits is not None:
        return source.write_splits(params, raw_dir, out_dir)
    queries, candidates, qrels = source.frames(params, raw_dir)
    schema.require_nonempty(queries, raw_dir, "queries")
    image_corpus = source.images
    _, candidate_schema = candidate_table(image_corpus)
    split_of = split_items(
        queries.group.tolist() + candidates.group.tolist(), params["test_fraction"], params["split_seed"]
    )
    counts = {}
    for split in SPLITS:
        q = queries[queries.group.map(split_of) == split].reset_index(drop=True)
        c = candidates[candidates.group.map(split_of) == split][candidate_schema.names]
        r = qrels[qrels.qid.isin(q.qid) & qrels.pid.isin(c.pid)].sort_values(["qid", "pid"], ignore_index=True)
        table = pa.Table.from_pandas(c, schema=candidate_schema, preserve_index=False)
        counts[split] = write_split(out_dir / split, q, [table], r, image_corpus)
    return counts
