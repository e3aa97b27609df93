"""Batches stage: X-X-mono, X-Y and hybrid batches built up front as Parquet shards.

A strategy is a set of weights over batch types, one type per batch, drawn per batch
(`draw_batch_types`, shared with the image-text batches). The text track spells its
strategies with alpha: a hybrid batch is X-X-mono with probability alpha, else X-Y
(alpha=1 is X-X-mono, alpha=0 is X-Y). Relevance decides what may share a batch: two items conflict when a
query of one is relevant (qrels, in any language) to a positive or hard negative of
the other's pairs, and no batch holds two conflicting items or one item twice, so no
candidate in a batch is relevant to another example's query. An item that would
conflict is deferred to a later batch (counted in stats.json); a batch that cannot be
filled without a conflict is an error, never a smaller batch. One shard per epoch;
each epoch is shuffled from (seed, epoch), and the number of batches per epoch is
fixed in advance.

Memory stays bounded for large pair files: batches are planned from three
dictionary-encoded columns, and an epoch's rows are then gathered in one streaming
pass over the pairs file's row groups.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hybridbatch.artifacts import schema
from hybridbatch.batches.sampling import (
    RELEVANCE,
    ROW_GROUP_ROWS,
    VALIDATION,
    VALIDATION_EPOCH,
    BatchUnfillable,
    ConflictGraph,
    ItemQueue,
    batch_type_weights,
    draw_batch_types,
    validation_items,
)

MONO, CROSS = "X-X-mono", "X-Y"
UNUSABLE_FOR_XY = "X-Y: item exists in one language only"
CONFLICT_RULE = "a query of one item is relevant (qrels, any language) to a positive or hard negative of the other"
VALIDATION_ALPHA = 0.5  # validation batches: half X-X-mono, half X-Y, whatever the strategy


@dataclass(frozen=True)
class BatchPlan:
    alpha: float
    batch_size: int
    epochs: int
    seed: int
    mono_language_sampling: str = "uniform"
    drop_last: bool = True
    development_fraction: float = 0.0
    development_seed: int = 0

    @classmethod
    def from_params(cls, params: dict) -> BatchPlan:
        return cls(**{key: params[key] for key in cls.__dataclass_fields__ if key in params})


def _encode(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A string column dictionary-encoded chunk by chunk."""
    column = column.cast(pa.string())
    return pa.chunked_array(
        [chunk.dictionary_encode() for chunk in column.chunks], pa.dictionary(pa.int32(), pa.string())
    )


def _read_encoded(path: str | Path, name: str) -> pa.ChunkedArray:
    """One column of a Parquet file, encoded (ids never sit in memory as one string per
    row of a large pairs file)."""
    return _encode(pq.read_table(path, columns=[name]).column(0))


def _distinct(*columns: pa.ChunkedArray) -> pa.Array:
    return pc.unique(pa.concat_arrays([chunk.dictionary for column in columns for chunk in column.chunks]))


def _chunk_codes(chunk: pa.DictionaryArray, lookup: np.ndarray) -> np.ndarray:
    """Codes of a chunk's rows from the codes of its dictionary entries; -1 for nulls."""
    return np.append(lookup, -1).astype(np.int64)[chunk.indices.fill_null(-1).to_numpy()]


def _codes(column: pa.ChunkedArray, names: np.ndarray) -> np.ndarray:
    """Position of each value of a dictionary-encoded column in the sorted array `names`."""
    parts = [np.zeros(0, dtype=np.int64)]
    for chunk in column.chunks:
        parts.append(
            _chunk_codes(chunk, np.searchsorted(names, np.asarray(chunk.dictionary.to_pylist(), dtype=object)))
        )
    return np.concatenate(parts)


def _joint_codes(*columns: pa.ChunkedArray) -> list[np.ndarray]:
    """Codes of several dictionary-encoded columns in one shared id space (one hash pass
    over their dictionaries); -1 for nulls."""
    dictionaries = [chunk.dictionary for column in columns for chunk in column.chunks]
    shared = (
        pa.concat_arrays(dictionaries).dictionary_encode().indices.to_numpy() if dictionaries else np.zeros(0, np.int64)
    )
    out, offset = [], 0
    for column in columns:
        parts = [np.zeros(0, dtype=np.int64)]
        for chunk in column.chunks:
            parts.append(_chunk_codes(chunk, shared[offset : offset + len(chunk.dictionary)]))
            offset += len(chunk.dictionary)
        out.append(np.concatenate(parts))
    return out


class PairIndex:
    """Row numbers of the pairs file by item and language, as integer arrays, and the
    items' conflict graph from the relevance judgments."""

    def __init__(self, pairs_path: str | Path, qrels_path: str | Path):
        items = _read_encoded(pairs_path, "item_id")
        query_langs, passage_langs = _read_encoded(pairs_path, "query_lang"), _read_encoded(pairs_path, "passage_lang")
        self.item_names = np.unique(np.asarray(_distinct(items).to_pylist(), dtype=object))
        self.lang_names = np.unique(np.asarray(_distinct(query_langs, passage_langs).to_pylist(), dtype=object))
        self.item = _codes(items, self.item_names)
        if (self.item < 0).any():
            raise schema.SchemaError(f"{pairs_path}: {int((self.item < 0).sum())} pairs have no item_id")
        self.query_lang = _codes(query_langs, self.lang_names)
        self.passage_lang = _codes(passage_langs, self.lang_names)
        rows = np.arange(len(self.item))
        mono = self.query_lang == self.passage_lang
        self.mono_row = np.full((len(self.lang_names), len(self.item_names)), -1, dtype=np.int64)
        self.mono_row[self.query_lang[mono], self.item[mono]] = rows[mono]
        self.mono_items = {lang: np.flatnonzero(self.mono_row[lang] >= 0) for lang in range(len(self.lang_names))}
        self.mono_items = {lang: items for lang, items in self.mono_items.items() if len(items)}
        cross_rows = rows[~mono][np.argsort(self.item[~mono], kind="stable")]
        self.cross_count = np.bincount(self.item[cross_rows], minlength=len(self.item_names))
        self.cross_start = np.concatenate([[0], np.cumsum(self.cross_count)[:-1]])
        self.cross_rows = cross_rows
        self.graph = ConflictGraph(len(self.item_names), conflict_edges(pairs_path, self.item, qrels_path))

    @property
    def n_items(self) -> int:
        return len(self.item_names)

    def single_language_items(self) -> int:
        return int((self.cross_count == 0).sum())


def conflict_edges(pairs_path: str | Path, item: np.ndarray, qrels_path: str | Path) -> np.ndarray:
    """(item, other item) codes where a query of `other` is relevant to a positive or a
    hard negative of one of `item`'s pairs: such items must not share a batch."""
    schema.check_schema(pq.read_schema(qrels_path), schema.QRELS, qrels_path)
    relevant = pa.array(pq.read_table(qrels_path, columns=["relevance"]).column(0).to_numpy() > 0)
    judged = {name: _read_encoded(qrels_path, name).filter(relevant) for name in ("qid", "pid")}
    pair_qids, judged_qids = _joint_codes(_read_encoded(pairs_path, "qid"), judged["qid"])
    query_item = np.full(int(max(pair_qids.max(initial=-1), judged_qids.max(initial=-1))) + 2, -1, dtype=np.int64)
    known = pair_qids >= 0  # the last entry stays -1: it answers code -1 (null)
    query_item[pair_qids[known]] = item[known]
    judged_item = query_item[judged_qids]  # item of the query of each judgment (-1: not a pair's)
    positives, negatives, judged_pids = _joint_codes(
        _read_encoded(pairs_path, "pid"), _read_encoded(pairs_path, "negative_pid"), judged["pid"]
    )
    n_items = len(item) and int(item.max()) + 1

    def distinct(pids: np.ndarray, items: np.ndarray, name: str) -> pd.DataFrame:  # unique (pid, item) rows
        keep = (pids >= 0) & (items >= 0)
        key = np.unique(pids[keep] * n_items + items[keep])
        return pd.DataFrame({"pid": key // n_items, name: key % n_items})

    frame = distinct(np.concatenate([positives, negatives]), np.concatenate([item, item]), "item").merge(
        distinct(judged_pids, judged_item, "other"), on="pid"
    )
    frame = frame[frame["item"] != frame["other"]]
    key = np.unique(frame["item"].to_numpy(np.int64) * n_items + frame["other"].to_numpy(np.int64))
    return np.stack([key // n_items, key % n_items], axis=1)


def draw_language(rng: np.random.Generator, sizes: np.ndarray, size: int, proportional: bool) -> int:
    """A language (index into `sizes`, its item counts) for a mono batch of `size`:
    uniformly or in proportion to its items, among the languages that can fill one."""
    eligible = np.flatnonzero(sizes >= size)
    if not len(eligible):
        raise BatchUnfillable(f"{MONO} batches of {size}: no language has {size} items (the most: {int(sizes.max())})")
    share = sizes[eligible] / sizes[eligible].sum() if proportional else None
    if len(eligible) == len(sizes):  # the draw every language can take, as before any was too small
        return int(rng.choice(len(sizes), p=share))
    return int(eligible[rng.choice(len(eligible), p=share)])


def plan_epoch(
    index: PairIndex, plan: BatchPlan, epoch: int, allowed: np.ndarray | None = None
) -> list[tuple[str, np.ndarray]]:
    """The batches of one epoch as (batch type, pair rows), reproducible from (seed, epoch),
    over the items where `allowed` (default: all)."""
    allowed = np.ones(index.n_items, dtype=bool) if allowed is None else allowed
    type_rng, mono_rng, cross_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([plan.seed, epoch]).spawn(3)
    )
    languages = sorted(index.mono_items)
    mono_queues = {
        lang: ItemQueue(
            index.mono_items[lang][allowed[index.mono_items[lang]]],
            mono_rng,
            index.graph,
            f"{MONO} batches in {index.lang_names[lang]}",
        )
        for lang in languages
    }
    sizes = np.array([allowed[index.mono_items[lang]].sum() for lang in languages], dtype=float)
    weights = sizes / sizes.sum() if plan.mono_language_sampling == "proportional" else None
    cross_items = np.flatnonzero((index.cross_count > 0) & allowed)
    cross_queue = ItemQueue(cross_items, cross_rng, index.graph, f"{CROSS} batches") if len(cross_items) else None
    full, rest = divmod(int(allowed.sum()), plan.batch_size)
    sizes_per_batch = [plan.batch_size] * full + ([] if plan.drop_last or rest == 0 else [rest])
    batches = []
    type_weights = batch_type_weights({"alpha": plan.alpha}, (MONO, CROSS))
    small = [index.lang_names[lang] for lang, n in zip(languages, sizes) if n < plan.batch_size]
    if small:
        logging.warning(
            "epoch %d: %s have fewer items than a batch (%d): no %s batches in them",
            epoch,
            ", ".join(small),
            plan.batch_size,
            MONO,
        )
    for size in sizes_per_batch:
        if draw_batch_types(type_weights, 1, type_rng)[0] == MONO:
            lang = languages[draw_language(mono_rng, sizes, size, weights is not None)]
            batches.append((MONO, index.mono_row[lang, mono_queues[lang].take(size)]))
        else:
            if cross_queue is None:
                raise BatchUnfillable("X-Y batches need items in at least two languages; none has")
            items = cross_queue.take(size)
            pick = (cross_rng.random(size) * index.cross_count[items]).astype(np.int64)
            batches.append((CROSS, index.cross_rows[index.cross_start[items] + pick]))
    return batches


def gather_rows(pairs_path: str | Path, rows: np.ndarray) -> pa.Table:
    """The pairs at `rows` (in that order), read one row group at a time."""
    order = np.argsort(rows, kind="stable")
    wanted = rows[order]
    parquet = pq.ParquetFile(pairs_path)
    pieces, offset = [], 0
    for group in range(parquet.num_row_groups):
        n = parquet.metadata.row_group(group).num_rows
        lo, hi = np.searchsorted(wanted, [offset, offset + n])
        if hi > lo:
            part = parquet.read_row_group(group, columns=schema.PAIRS.names)
            pieces.append(part.cast(schema.PAIRS).take(pa.array(wanted[lo:hi] - offset)))
        offset += n
    return pa.concat_tables(pieces).take(pa.array(np.argsort(order, kind="stable")))


class Statistics:
    """Running counts over the written batches."""

    def __init__(self, index: PairIndex):
        n_langs = len(index.lang_names)
        self.index = index
        self.types = {MONO: 0, CROSS: 0}
        self.pairs = np.zeros((n_langs, n_langs), dtype=np.int64)

    def add(self, batches: list[tuple[str, np.ndarray]]) -> None:
        for kind, rows in batches:
            self.types[kind] += 1
            np.add.at(self.pairs, (self.index.query_lang[rows], self.index.passage_lang[rows]), 1)

    def as_dict(self, plan: BatchPlan) -> dict:
        langs = [str(lang) for lang in self.index.lang_names]
        n_batches = sum(self.types.values())
        return {
            "alpha": plan.alpha,
            "seed": plan.seed,
            "epochs": plan.epochs,
            "batch_size": plan.batch_size,
            "mono_language_sampling": plan.mono_language_sampling,
            "batches": n_batches,
            "batches_per_epoch": n_batches // plan.epochs,
            "examples": int(self.pairs.sum()),
            "batch_types": self.types,
            "realised_alpha": self.types[MONO] / n_batches if n_batches else None,
            "query_languages": dict(zip(langs, self.pairs.sum(axis=1).tolist())),
            "passage_languages": dict(zip(langs, self.pairs.sum(axis=0).tolist())),
            "language_pairs": {"languages": langs, "counts": self.pairs.tolist()},
            "items": self.index.n_items,
            "items_unusable": {UNUSABLE_FOR_XY: self.index.single_language_items()},
            "conflicts": {
                "rule": CONFLICT_RULE,
                "item_pairs": self.index.graph.n_edges,
                "items_with_conflicts": int((self.index.graph.degree() > 0).sum()),
                "deferred_for_a_conflict": self.index.graph.deferrals,
            },
        }


class BatchParams(TypedDict):
    """The config's `batching` section, the strategy's alpha and the run's seed (BatchPlan)."""

    alpha: float
    seed: int
    batch_size: int
    epochs: int
    mono_language_sampling: str
    drop_last: bool
    development_fraction: float
    development_seed: int


def build_batches(params: BatchParams, pairs: str | Path, out: str | Path) -> dict:
    """Write shard-<epoch>.parquet files, stats.json, language_pairs.png and the training
    qrels into `out`, from pairs.parquet and qrels.parquet in `pairs`."""
    plan = BatchPlan.from_params(params)
    pairs_dir, out_dir = Path(pairs), Path(out)
    pairs_path = pairs_dir / "pairs.parquet"
    out_dir.mkdir(parents=True, exist_ok=True)
    schema.check_schema(pq.read_schema(pairs_path), schema.PAIRS, pairs_path)
    index = PairIndex(pairs_path, pairs_dir / RELEVANCE)
    if index.n_items == 0:
        raise schema.SchemaError(f"{pairs_path}: no pairs")
    logging.info("%d items, %d conflicting item pairs (%s)", index.n_items, index.graph.n_edges, CONFLICT_RULE)
    statistics = Statistics(index)
    held_out = validation_items(np.arange(index.n_items), plan.development_fraction, plan.development_seed)
    first_id = 0
    for epoch in range(plan.epochs):
        batches = plan_epoch(index, plan, epoch, ~held_out)
        write_shard(pairs_path, batches, first_id, epoch, plan.batch_size, out_dir / f"shard-{epoch:04d}.parquet")
        statistics.add(batches)
        first_id += len(batches)
    stats = statistics.as_dict(plan)
    if held_out.any():
        neutral = replace(plan, alpha=VALIDATION_ALPHA, seed=plan.development_seed)
        batches = plan_epoch(index, neutral, VALIDATION_EPOCH, held_out)
        if not batches:
            raise ValueError(
                f"config key batching.development_fraction: {plan.development_fraction} holds out "
                f"{int(held_out.sum())} items, fewer than one batch of {plan.batch_size}"
            )
        write_shard(pairs_path, batches, 0, 0, plan.batch_size, out_dir / VALIDATION / "shard-0000.parquet")
    stats["items"] = int((~held_out).sum())
    stats["validation"] = {
        "items": int(held_out.sum()),
        "batches": len(batches) if held_out.any() else 0,
        "seed": plan.development_seed,
        "alpha": VALIDATION_ALPHA,
    }
    logging.info(
        "%d items deferred to a later batch to avoid a conflict", stats["conflicts"]["deferred_for_a_conflict"]
    )
    shutil.copyfile(pairs_dir / RELEVANCE, out_dir / RELEVANCE)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    plot_language_pairs(stats, out_dir / "language_pairs.png")
    return stats


def write_shard(
    pairs_path: Path, batches: list[tuple[str, np.ndarray]], first_id: int, epoch: int, batch_size: int, path: Path
) -> None:
    """One shard of consecutive batches (ids from `first_id`), written atomically."""
    rows = np.concatenate([batch for _, batch in batches])
    lengths = [len(batch) for _, batch in batches]
    head = {
        "batch_id": pa.array(np.repeat(np.arange(first_id, first_id + len(batches)), lengths)),
        "epoch": pa.array(np.full(len(rows), epoch, dtype=np.int32)),
        "batch_type": pa.array(np.repeat([kind for kind, _ in batches], lengths).tolist(), pa.string()),
    }
    body = gather_rows(pairs_path, rows)
    shard = pa.Table.from_arrays(list(head.values()) + body.columns, schema=schema.BATCHES)
    schema.write_table(shard, path, row_group_size=max(1, ROW_GROUP_ROWS // batch_size) * batch_size)


def plot_language_pairs(stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    langs, counts = stats["language_pairs"]["languages"], np.array(stats["language_pairs"]["counts"])
    figure, axis = plt.subplots(figsize=(1 + 0.5 * len(langs), 0.5 + 0.5 * len(langs)))
    image = axis.imshow(counts, cmap="viridis")
    axis.set(xticks=range(len(langs)), yticks=range(len(langs)), xticklabels=langs, yticklabels=langs)
    axis.set(xlabel="passage language", ylabel="query language")
    axis.set_title(f"training examples, alpha={stats['alpha']:g} (realised {stats['realised_alpha']:.2f})", fontsize=9)
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
