"""Batches stage: X-X-mono, X-Y and hybrid batches built up front as Parquet shards.

A hybrid batch is X-X-mono with probability alpha, else X-Y (alpha=1 is X-X-mono,
alpha=0 is X-Y). Within a batch every item appears at most once, so translations
of a positive never act as negatives. One shard per epoch; each epoch is shuffled
from (seed, epoch), and the number of batches per epoch is fixed in advance.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import schema

MONO, CROSS = "X-X-mono", "X-Y"
ROW_GROUP_ROWS = 8192


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
        self.order: list = list(rng.permutation(items))
        self.position = 0

    def take(self, n: int) -> list:
        if n > len(self.items):
            raise ValueError(f"a batch of {n} needs {n} distinct items, only {len(self.items)} exist")
        stop = self.position + n
        if stop <= len(self.order):
            self.position = stop
            return self.order[stop - n : stop]
        batch = self.order[self.position :]
        taken = set(batch)
        fresh = list(self.rng.permutation(self.items))
        self.order = [item for item in fresh if item not in taken] + [item for item in fresh if item in taken]
        self.position = n - len(batch)
        return batch + self.order[: self.position]


class PairIndex:
    """Row numbers of the pairs table by item and language combination."""

    def __init__(self, table: pa.Table):
        items = table.column("item_id").to_pylist()
        query_langs = table.column("query_lang").to_pylist()
        passage_langs = table.column("passage_lang").to_pylist()
        self.mono: dict[str, dict[str, int]] = {}
        self.cross: dict[str, list[int]] = {}
        for row, (item, lq, lp) in enumerate(zip(items, query_langs, passage_langs)):
            if lq == lp:
                self.mono.setdefault(lq, {})[item] = row
            else:
                self.cross.setdefault(item, []).append(row)
        self.items = sorted(set(items))
        self.languages = sorted(self.mono)
        self.single_language_items = [item for item in self.items if item not in self.cross]


def plan_epoch(index: PairIndex, plan: BatchPlan, epoch: int) -> list[tuple[str, list[int]]]:
    """The batches of one epoch as (batch type, pair rows), reproducible from (seed, epoch)."""
    type_rng, mono_rng, cross_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([plan.seed, epoch]).spawn(3)
    )
    mono_queues = {lang: ItemQueue(np.array(sorted(rows)), mono_rng) for lang, rows in index.mono.items()}
    sizes = np.array([len(index.mono[lang]) for lang in index.languages], dtype=float)
    weights = sizes / sizes.sum() if plan.mono_language_sampling == "proportional" else None
    cross_queue = ItemQueue(np.array(sorted(index.cross)), cross_rng) if index.cross else None
    full, rest = divmod(len(index.items), plan.batch_size)
    sizes_per_batch = [plan.batch_size] * full + ([] if plan.drop_last or rest == 0 else [rest])
    batches = []
    for size in sizes_per_batch:
        if type_rng.random() < plan.alpha:
            lang = index.languages[mono_rng.choice(len(index.languages), p=weights)]
            rows = [index.mono[lang][item] for item in mono_queues[lang].take(size)]
            batches.append((MONO, rows))
        else:
            if cross_queue is None:
                raise ValueError("X-Y batches need items in at least two languages; none has")
            options = [index.cross[item] for item in cross_queue.take(size)]
            batches.append((CROSS, [choice[cross_rng.integers(len(choice))] for choice in options]))
    return batches


def batch_statistics(table: pa.Table, plan: BatchPlan, index: PairIndex, types: Counter, rows: list[int]) -> dict:
    chosen = table.take(pa.array(rows, type=pa.int64()))
    lq = chosen.column("query_lang").to_pylist()
    lp = chosen.column("passage_lang").to_pylist()
    n_batches = sum(types.values())
    return {
        "alpha": plan.alpha,
        "seed": plan.seed,
        "epochs": plan.epochs,
        "batch_size": plan.batch_size,
        "batches": n_batches,
        "batches_per_epoch": n_batches // plan.epochs,
        "examples": len(rows),
        "batch_types": dict(types),
        "realised_alpha": types[MONO] / n_batches if n_batches else float("nan"),
        "query_languages": dict(sorted(Counter(lq).items())),
        "passage_languages": dict(sorted(Counter(lp).items())),
        "language_pairs": {f"{a}>{b}": n for (a, b), n in sorted(Counter(zip(lq, lp)).items())},
        "items": len(index.items),
        "items_unusable": {"X-Y: item exists in one language only": len(index.single_language_items)},
    }


def build_batches(params: dict, pairs_path: str | Path, out_dir: str | Path) -> dict:
    """Write shard-<epoch>.parquet files and stats.json into `out_dir`; return the statistics."""
    plan = BatchPlan.from_params(params)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = schema.read_table(pairs_path, schema.PAIRS)
    if table.num_rows == 0:
        raise schema.SchemaError(f"{pairs_path}: no pairs")
    index = PairIndex(table)
    types: Counter = Counter()
    all_rows: list[int] = []
    batch_id = 0
    for epoch in range(plan.epochs):
        batches = plan_epoch(index, plan, epoch)
        shard = out_dir / f"shard-{epoch:04d}.parquet"
        tmp = shard.with_name(f".{shard.name}.tmp")
        with pq.ParquetWriter(tmp, schema.BATCHES) as writer:
            for start in range(0, len(batches), max(1, ROW_GROUP_ROWS // plan.batch_size)):
                group = batches[start : start + max(1, ROW_GROUP_ROWS // plan.batch_size)]
                rows = [row for _, batch in group for row in batch]
                ids = [batch_id + start + i for i, (_, batch) in enumerate(group) for _ in batch]
                kinds = [kind for kind, batch in group for _ in batch]
                chunk = table.take(pa.array(rows, type=pa.int64()))
                head = [pa.array(ids, pa.int64()), pa.array([epoch] * len(rows), pa.int32()), pa.array(kinds)]
                writer.write_table(pa.Table.from_arrays(head + chunk.columns, schema=schema.BATCHES))
        tmp.replace(shard)
        batch_id += len(batches)
        types.update(kind for kind, _ in batches)
        all_rows.extend(row for _, batch in batches for row in batch)
    stats = batch_statistics(table, plan, index, types, all_rows)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    return stats


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
