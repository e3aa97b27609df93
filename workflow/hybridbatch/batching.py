"""Batches stage: X-X-mono, X-Y and hybrid batches built up front as Parquet shards.

A hybrid batch is X-X-mono with probability alpha, else X-Y (alpha=1 is X-X-mono,
alpha=0 is X-Y). Within a batch every item appears at most once, so translations
of a positive never act as negatives. One shard per epoch; each epoch is shuffled
from (seed, epoch), and the number of batches per epoch is fixed in advance.

Memory stays bounded for large pair files: batches are planned from three
dictionary-encoded columns, and an epoch's rows are then gathered in one streaming
pass over the pairs file's row groups.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import schema

MONO, CROSS = "X-X-mono", "X-Y"
ROW_GROUP_ROWS = 8192
UNUSABLE_FOR_XY = "X-Y: item exists in one language only"


@dataclass(frozen=True)
class BatchPlan:
    alpha: float
    batch_size: int
    epochs: int
    seed: int
    mono_language_sampling: str = "uniform"
    drop_last: bool = True

    @classmethod
    def from_params(cls, params: dict) -> "BatchPlan":
        return cls(**{key: params[key] for key in cls.__dataclass_fields__})


class ItemQueue:
    """Endless reshuffled stream of items: a batch never holds an item twice."""

    def __init__(self, items: np.ndarray, rng: np.random.Generator):
        self.items, self.rng = items, rng
        self.order = rng.permutation(items)
        self.position = 0

    def take(self, n: int) -> np.ndarray:
        if n > len(self.items):
            raise ValueError(f"a batch of {n} needs {n} distinct items, only {len(self.items)} exist")
        stop = self.position + n
        if stop <= len(self.order):
            self.position = stop
            return self.order[stop - n : stop]
        head = self.order[self.position :]
        fresh = self.rng.permutation(self.items)
        taken = np.isin(fresh, head)
        self.order = np.concatenate([fresh[~taken], fresh[taken]])
        self.position = n - len(head)
        return np.concatenate([head, self.order[: self.position]])


def _codes(column: pa.ChunkedArray, names: np.ndarray) -> np.ndarray:
    """Positions of a string column's values in the sorted array `names`."""
    encoded = column.combine_chunks().dictionary_encode()
    dictionary = np.asarray(encoded.dictionary.to_pylist(), dtype=object)
    return np.searchsorted(names, dictionary)[encoded.indices.to_numpy(zero_copy_only=False)]


class PairIndex:
    """Row numbers of the pairs file by item and language, as integer arrays."""

    def __init__(self, pairs_path: str | Path):
        table = pq.read_table(pairs_path, columns=["item_id", "query_lang", "passage_lang"])
        self.item_names = np.unique(np.asarray(table.column("item_id").combine_chunks().unique().to_pylist(), dtype=object))
        lang_values = table.column("query_lang").unique().to_pylist() + table.column("passage_lang").unique().to_pylist()
        self.lang_names = np.unique(np.asarray(lang_values, dtype=object))
        self.item = _codes(table.column("item_id"), self.item_names)
        self.query_lang = _codes(table.column("query_lang"), self.lang_names)
        self.passage_lang = _codes(table.column("passage_lang"), self.lang_names)
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

    @property
    def n_items(self) -> int:
        return len(self.item_names)

    def single_language_items(self) -> int:
        return int((self.cross_count == 0).sum())


def plan_epoch(index: PairIndex, plan: BatchPlan, epoch: int) -> list[tuple[str, np.ndarray]]:
    """The batches of one epoch as (batch type, pair rows), reproducible from (seed, epoch)."""
    type_rng, mono_rng, cross_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([plan.seed, epoch]).spawn(3)
    )
    languages = sorted(index.mono_items)
    mono_queues = {lang: ItemQueue(index.mono_items[lang], mono_rng) for lang in languages}
    sizes = np.array([len(index.mono_items[lang]) for lang in languages], dtype=float)
    weights = sizes / sizes.sum() if plan.mono_language_sampling == "proportional" else None
    cross_items = np.flatnonzero(index.cross_count > 0)
    cross_queue = ItemQueue(cross_items, cross_rng) if len(cross_items) else None
    full, rest = divmod(index.n_items, plan.batch_size)
    sizes_per_batch = [plan.batch_size] * full + ([] if plan.drop_last or rest == 0 else [rest])
    batches = []
    for size in sizes_per_batch:
        if type_rng.random() < plan.alpha:
            lang = languages[mono_rng.choice(len(languages), p=weights)]
            batches.append((MONO, index.mono_row[lang, mono_queues[lang].take(size)]))
        else:
            if cross_queue is None:
                raise ValueError("X-Y batches need items in at least two languages; none has")
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
        }


def build_batches(params: dict, pairs_path: str | Path, out_dir: str | Path) -> dict:
    """Write shard-<epoch>.parquet files, stats.json and language_pairs.png into `out_dir`."""
    plan = BatchPlan.from_params(params)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    schema.check_schema(pq.read_schema(pairs_path), schema.PAIRS, pairs_path)
    index = PairIndex(pairs_path)
    if index.n_items == 0:
        raise schema.SchemaError(f"{pairs_path}: no pairs")
    statistics = Statistics(index)
    first_id = 0
    for epoch in range(plan.epochs):
        batches = plan_epoch(index, plan, epoch)
        rows = np.concatenate([batch for _, batch in batches])
        lengths = [len(batch) for _, batch in batches]
        head = {
            "batch_id": pa.array(np.repeat(np.arange(first_id, first_id + len(batches)), lengths)),
            "epoch": pa.array(np.full(len(rows), epoch, dtype=np.int32)),
            "batch_type": pa.array(np.repeat([kind for kind, _ in batches], lengths).tolist(), pa.string()),
        }
        body = gather_rows(pairs_path, rows)
        shard = pa.Table.from_arrays(list(head.values()) + body.columns, schema=schema.BATCHES)
        group_rows = max(1, ROW_GROUP_ROWS // plan.batch_size) * plan.batch_size
        tmp = out_dir / f".shard-{epoch:04d}.parquet.tmp"
        pq.write_table(shard, tmp, row_group_size=group_rows)
        tmp.replace(out_dir / f"shard-{epoch:04d}.parquet")
        statistics.add(batches)
        first_id += len(batches)
    stats = statistics.as_dict(plan)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    plot_language_pairs(stats, out_dir / "language_pairs.png")
    return stats


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


def iter_batches(shard_paths: list[str | Path]):
    """Yield (batch_id, batch_type, pyarrow.Table) in shard order, one batch at a time."""
    for path in sorted(shard_paths):
        pending: pa.Table | None = None
        for record_batch in pq.ParquetFile(path).iter_batches(batch_size=ROW_GROUP_ROWS):
            part = pa.Table.from_batches([record_batch])
            pending = part if pending is None else pa.concat_tables([pending, part])
            ids = pending.column("batch_id").to_numpy()
            boundaries = np.flatnonzero(np.diff(ids)) + 1
            starts = np.concatenate([[0], boundaries])
            for start, stop in zip(starts[:-1], boundaries):
                yield _one_batch(pending.slice(start, stop - start))
            pending = pending.slice(starts[-1])
        if pending is not None and pending.num_rows:
            yield _one_batch(pending)


def _one_batch(table: pa.Table) -> tuple[int, str, pa.Table]:
    return int(table.column("batch_id")[0].as_py()), table.column("batch_type")[0].as_py(), table
