"""What both batch stages share: a strategy's weights over batch types and one type drawn
per batch, held-out validation items, the conflict graph and the item queue that keep
relevant pairs out of one batch, and reading the batch shards back one batch at a time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hybridbatch.config import normalised_weights

ROW_GROUP_ROWS = 8192
RELEVANCE = "qrels.parquet"  # the judgments shards are checked against, copied beside them
VALIDATION = "validation"  # subfolder of fixed validation batches, from items held out of training
VALIDATION_EPOCH = 1 << 20  # seeds the validation batches apart from every training epoch


def validation_items(groups: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Mask of the items held out for validation (the development split): whole groups of
    near-duplicates (`groups[i]`: item i's), in an order drawn from `seed` alone, until
    round(fraction x items) are held out (one group per item: exactly that many). The
    validation batches are then built from that seed and a fixed mixture too, so every
    strategy and run seed is validated on the very same batches."""
    names, group_of = np.unique(np.asarray(groups), return_inverse=True)
    order = np.random.default_rng(seed).permutation(len(names))
    wanted = round(fraction * len(group_of))
    taken = order[: np.searchsorted(np.cumsum(np.bincount(group_of)[order]), wanted) + 1] if wanted else order[:0]
    return np.isin(group_of, taken)


def batch_type_weights(strategy: dict, types: tuple[str, ...]) -> dict[str, float]:
    """A strategy's weights over `types`, in their order: `{alpha: a}` is the first type a,
    the second 1 - a; `{weights: {type: w}}` names them (normalised to sum 1)."""
    weights = strategy.get("weights") or {types[0]: strategy["alpha"], types[1]: 1 - strategy["alpha"]}
    unknown = sorted(set(weights) - set(types))
    if unknown:
        raise ValueError(f"batch types {unknown} are not among {list(types)}")
    normalised = normalised_weights(weights)
    return {kind: normalised.get(kind, 0.0) for kind in types}


def draw_batch_types(
    weights: dict[str, float], n: int, rng: np.random.Generator, stratified: bool = False
) -> list[str]:
    """One batch type per batch: a uniform draw against the cumulative weights, in the
    order of `weights` (for two types, draw < w0 is the first type); or, `stratified`,
    each type's count fixed at n x weight (largest remainders round) in shuffled order."""
    kinds = list(weights)
    if stratified:
        exact = np.array([weights[kind] * n for kind in kinds])
        counts = np.floor(exact).astype(int)
        counts[np.argsort(-(exact - counts), kind="stable")[: n - counts.sum()]] += 1
        return [kinds[i] for i in rng.permutation(np.repeat(np.arange(len(kinds)), counts))]
    edges = np.cumsum([weights[kind] for kind in kinds])
    return [kinds[min(int(np.searchsorted(edges, rng.random(), side="right")), len(kinds) - 1)] for _ in range(n)]


class ConflictGraph:
    """Items that must not share a batch, as adjacency lists over item codes, and the
    items blocked for the batch being filled (stamped with the batch number)."""

    def __init__(self, n_items: int, edges: np.ndarray):
        both = np.concatenate([edges, edges[:, ::-1]]).reshape(-1, 2)
        key = np.unique(both[:, 0] * n_items + both[:, 1])
        edges = np.stack([key // n_items, key % n_items], axis=1)
        self.n_edges = len(edges) // 2
        self.indptr = np.concatenate([[0], np.cumsum(np.bincount(edges[:, 0], minlength=n_items))]).tolist()
        self.neighbours = edges[:, 1].tolist()
        self.stamp = [0] * n_items
        self.batch = 0
        self.deferrals = 0

    def degree(self) -> np.ndarray:
        return np.diff(self.indptr)

    def new_batch(self) -> None:
        self.batch += 1

    def blocked(self, item: int) -> bool:
        return self.stamp[item] == self.batch

    def place(self, item: int) -> None:
        batch, stamp = self.batch, self.stamp
        stamp[item] = batch
        for other in self.neighbours[self.indptr[item] : self.indptr[item + 1]]:
            stamp[other] = batch


class BatchUnfillable(ValueError):
    """A batch type cannot be filled to size without two conflicting items."""


class ItemQueue:
    """Endless reshuffled stream of items. A batch takes the next items that are neither
    in it nor in conflict with it; those passed over for a conflict lead the next batch.
    A batch that a whole fresh permutation cannot fill is tried again from new
    permutations (greedy picks can block each other) before it is declared unfillable."""

    ATTEMPTS = 20

    def __init__(self, items: np.ndarray, rng: np.random.Generator, graph: ConflictGraph, name: str):
        self.items, self.rng, self.graph, self.name = items, rng, graph, name
        self.order = rng.permutation(items).tolist()
        self.position = 0

    def take(self, n: int) -> np.ndarray:
        if n > len(self.items):
            raise BatchUnfillable(f"{self.name}: a batch of {n} needs {n} distinct items, only {len(self.items)} exist")
        for _ in range(self.ATTEMPTS):
            chosen = self._fill(n)
            if chosen is not None:
                return np.array(chosen, dtype=np.int64)
            self.order, self.position = self.rng.permutation(self.items).tolist(), 0
        raise BatchUnfillable(
            f"{self.name}: no {n} of {len(self.items)} items could share a batch without a relevance conflict "
            f"in {self.ATTEMPTS} tries ({self.graph.n_edges} conflicting item pairs); lower batching.batch_size"
        )

    def _fill(self, n: int) -> list[int] | None:
        graph = self.graph
        graph.new_batch()
        chosen: list[int] = []
        deferred: list[int] = []
        reshuffled, taken = False, set()
        while len(chosen) < n:
            if self.position == len(self.order):
                if reshuffled:
                    return None  # a whole fresh permutation was scanned
                self.order, self.position, reshuffled = self.rng.permutation(self.items).tolist(), 0, True
            item = self.order[self.position]
            self.position += 1
            if not graph.blocked(item):
                graph.place(item)
                chosen.append(item)
                taken.add(item)
            elif item not in taken:  # seen again after the reshuffle: not a conflict
                deferred.append(item)
        graph.deferrals += len(set(deferred))
        if deferred:  # they lead the next batch; no item twice in the queue
            self.order, self.position = list(dict.fromkeys(deferred + self.order[self.position :])), 0
        return chosen


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
