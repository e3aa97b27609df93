"""The tests of `hybridbatch/batches/sampling.py`."""

import numpy as np
import pandas as pd
import pytest
from batching_helpers import pair_row, plan, shards, synthetic_pairs, write_pairs

from hybridbatch.artifacts import schema
from hybridbatch.batches.sampling import BatchUnfillable, batch_type_weights, draw_batch_types, iter_batches
from hybridbatch.batches.text import CROSS, MONO, build_batches


def test_reader_yields_the_shards_batches_in_order(tmp_path, monkeypatch):
    import hybridbatch.batches.sampling as sampling
    import hybridbatch.batches.text as batching

    monkeypatch.setattr(batching, "ROW_GROUP_ROWS", 7)  # batches straddle row groups, as written
    monkeypatch.setattr(sampling, "ROW_GROUP_ROWS", 7)  # and as read
    write_pairs(synthetic_pairs(60, 4), tmp_path)
    build_batches(plan(batch_size=5, epochs=3), tmp_path, tmp_path / "out")
    frame = shards(tmp_path / "out")
    seen = [
        (batch_id, table.column("pair_id").to_pylist())
        for batch_id, _, table in iter_batches(list((tmp_path / "out").glob("shard-*.parquet")))
    ]
    expected = [(batch_id, group.pair_id.tolist()) for batch_id, group in frame.groupby("batch_id", sort=False)]
    assert seen == expected
    assert [b for b, _ in seen] == list(range(len(seen)))


def test_a_batch_that_cannot_be_filled_without_conflicts_is_an_error_not_a_smaller_batch(tmp_path):
    rows = [pair_row(item, "en", "en", pid="p-shared") for item in range(6)]  # every question has one gold sentence
    write_pairs(pd.DataFrame(rows, columns=schema.PAIRS.names), tmp_path)
    with pytest.raises(
        BatchUnfillable, match=r"no 3 of 6 items could share a batch without a relevance conflict in 20 tries"
    ):
        build_batches(plan(alpha=1.0, batch_size=3), tmp_path, tmp_path / "out")


def test_a_fillable_batch_is_always_filled_even_when_a_greedy_pick_blocks_the_rest():
    """a-b-c in a path: picking b first blocks both others, yet {a, c} is a batch of 2.
    Also 13 groups whose members all conflict: one item per group always fills 13."""
    from hybridbatch.batches.sampling import ConflictGraph, ItemQueue

    for seed in range(300):
        queue = ItemQueue(
            np.arange(3), np.random.default_rng(seed), ConflictGraph(3, np.array([[0, 1], [1, 2]])), "path"
        )
        for _ in range(5):
            assert sorted(queue.take(2).tolist()) == [0, 2]
    groups = np.repeat(np.arange(13), 3)
    edges = np.array([[i, j] for i in range(39) for j in range(39) if i != j and groups[i] == groups[j]])
    for seed in range(50):
        queue = ItemQueue(np.arange(39), np.random.default_rng(seed), ConflictGraph(39, edges), "groups")
        for _ in range(8):
            batch = queue.take(13)
            assert sorted(groups[batch].tolist()) == list(range(13))


def test_text_strategies_are_two_batch_types_drawn_as_before():
    assert batch_type_weights({"alpha": 0.3}, (MONO, CROSS)) == {MONO: 0.3, CROSS: pytest.approx(0.7)}
    for alpha in (0.0, 0.3, 1.0):
        drawn = draw_batch_types(batch_type_weights({"alpha": alpha}, (MONO, CROSS)), 500, np.random.default_rng(4))
        old = [MONO if u < alpha else CROSS for u in np.random.default_rng(4).random(500)]  # the former rule
        assert drawn == old
    with pytest.raises(ValueError, match="not among"):
        batch_type_weights({"weights": {"caption-caption": 1}}, (MONO, CROSS))
