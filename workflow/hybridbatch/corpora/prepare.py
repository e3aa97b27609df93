"""Prepare stage: raw files -> canonical queries/passages/qrels Parquet, split by group
(an item with its near-duplicates); `groups.parquet` records each item's group and split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from hybridbatch.artifacts import schema
from hybridbatch.corpora.formats import SOURCES, CorpusParams, candidate_table, write_split
from hybridbatch.fetch.download import verify_checksums
from hybridbatch.names import GROUPS, SPLITS


def split_items(item_ids: list[str], test_fraction: float, seed: int) -> dict[str, str]:
    """Assign each item (or group of items) to train or test, reproducibly from `seed`."""
    items = sorted(set(item_ids))
    order = np.random.default_rng(seed).permutation(len(items))
    n_test = int(round(test_fraction * len(items)))
    test = {items[i] for i in order[:n_test]}
    return {item: ("test" if item in test else "train") for item in items}


def prepare(params: CorpusParams, raw: str | Path, out: str | Path) -> dict[str, dict[str, int]]:
    """Build the canonical Parquet files of one corpus under out_dir/<split>/ and its groups.

    Splits are by group (an item, an emoji with its skin-tone variants, an article for
    LAReQA), so no group is in both. A split may be empty (test_fraction 0 or 1); both
    splits empty is an error."""
    raw_dir, out_dir = Path(raw), Path(out)
    verify_checksums(raw_dir)
    name = params.get("name", "<name>")
    source = SOURCES.lookup(params["source"], f"corpora.{name}.source")
    if source.write_splits is not None:
        counts = source.write_splits(params, raw_dir, out_dir)
        items = [schema.read_parquet(out_dir / split / "queries.parquet", schema.QUERIES) for split in SPLITS]
        assigned = pd.concat(
            frame[["item_id"]].assign(group=frame.item_id, split=split) for split, frame in zip(SPLITS, items)
        )
        return merged_counts(counts, write_groups(name, assigned, out_dir / GROUPS))
    queries, candidates, qrels = source.frames(params, raw_dir)
    schema.require_nonempty(queries, raw_dir, "queries")
    image_corpus = source.images
    _, candidate_schema = candidate_table(image_corpus)
    split_of = split_items(
        queries.group.tolist() + candidates.group.tolist(), params["test_fraction"], params["split_seed"]
    )
    counts, assigned = {}, []
    for split in SPLITS:
        q = queries[queries.group.map(split_of) == split].reset_index(drop=True)
        c = candidates[candidates.group.map(split_of) == split]
        r = qrels[qrels.qid.isin(q.qid) & qrels.pid.isin(c.pid)].sort_values(["qid", "pid"], ignore_index=True)
        table = pa.Table.from_pandas(c[candidate_schema.names], schema=candidate_schema, preserve_index=False)
        counts[split] = write_split(out_dir / split, q, [table], r, image_corpus)
        assigned += [frame[["item_id", "group"]].assign(split=split) for frame in (q, c)]
    return merged_counts(counts, write_groups(name, pd.concat(assigned), out_dir / GROUPS))


def write_groups(corpus: str, assigned: pd.DataFrame, path: Path) -> dict[str, dict[str, int]]:
    """Write each item's group and split (`assigned`: item_id, group, split rows, repeats
    allowed); refuse a group found in two splits, naming it. Items and groups per split."""
    assigned = assigned.astype(str).drop_duplicates().sort_values(["split", "group", "item_id"], ignore_index=True)
    splits = assigned.groupby("group").split.unique()
    straddling = splits[splits.map(len) > 1]
    if len(straddling):
        raise ValueError(
            f"corpus {corpus}: group {straddling.index[0]!r} has items in splits {sorted(straddling.iloc[0])} "
            f"({len(straddling)} groups straddle a split); every split must hold whole groups"
        )
    schema.write_parquet(assigned, path, schema.GROUPS)
    by_split = assigned.groupby("split")
    return {
        split: {
            "items": int(by_split.item_id.nunique().get(split, 0)),
            "groups": int(by_split.group.nunique().get(split, 0)),
        }
        for split in SPLITS
    }


def merged_counts(counts: dict[str, dict[str, int]], groups: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {split: counts[split] | groups[split] for split in SPLITS}
