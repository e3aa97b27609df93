import hashlib
import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridbatch import schema
from hybridbatch.batching import CROSS, MONO, build_batches, iter_batches

LANGS = ["ar", "de", "en", "zh", "hi"]


def synthetic_pairs(n_items: int, seed: int, single_language: int = 0) -> pd.DataFrame:
    """Items in 2-5 languages (the first `single_language` items in one only), every language pair."""
    rng = np.random.default_rng(seed)
    rows = []
    for item in range(n_items):
        k = 1 if item < single_language else rng.integers(2, len(LANGS) + 1)
        langs = sorted(rng.choice(LANGS, size=k, replace=False))
        for lq in langs:
            for lp in langs:
                rows.append((f"i{item}:{lq}>{lp}", f"i{item}", lq, lp, f"q {item} {lq}", f"p {item} {lp}", None, None))
    return pd.DataFrame(rows, columns=schema.PAIRS.names)


def plan(**overrides):
    return {"alpha": 0.5, "batch_size": 8, "epochs": 2, "seed": 0, "mono_language_sampling": "uniform", "drop_last": True} | overrides


def shards(out_dir) -> pd.DataFrame:
    return pd.concat([pq.read_table(p).to_pandas() for p in sorted(out_dir.glob("shard-*.parquet"))], ignore_index=True)


def digest(out_dir) -> str:
    return hashlib.sha256(b"".join(p.read_bytes() for p in sorted(out_dir.glob("*")))).hexdigest()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    n_items=st.integers(20, 60),
    batch_size=st.integers(2, 10),
    alpha=st.sampled_from([0.0, 0.3, 0.5, 1.0]),
    seed=st.integers(0, 1000),
    sampling=st.sampled_from(["uniform", "proportional"]),
    drop_last=st.booleans(),
)
def test_batches_obey_composition_rules(tmp_path_factory, n_items, batch_size, alpha, seed, sampling, drop_last):
    tmp = tmp_path_factory.mktemp("b")
    synthetic_pairs(n_items, seed).to_parquet(tmp / "pairs.parquet")
    params = plan(alpha=alpha, batch_size=batch_size, seed=seed, mono_language_sampling=sampling, drop_last=drop_last)
    stats = build_batches(params, tmp / "pairs.parquet", tmp / "out")
    frame = shards(tmp / "out")
    full, rest = divmod(n_items, batch_size)
    per_epoch = full + (0 if drop_last or rest == 0 else 1)
    assert frame.batch_id.nunique() == stats["batches"] == per_epoch * params["epochs"]
    for _, batch in frame.groupby("batch_id"):
        assert batch.item_id.is_unique  # translations never act as negatives
        assert batch.batch_type.nunique() == 1
        if batch.batch_type.iloc[0] == MONO:
            assert batch.query_lang.nunique() == 1 and (batch.query_lang == batch.passage_lang).all()
        else:
            assert (batch.query_lang != batch.passage_lang).all()
    types = frame.groupby("batch_id").batch_type.first()
    if alpha == 1.0:
        assert (types == MONO).all()
    if alpha == 0.0:
        assert (types == CROSS).all()
    assert stats["realised_alpha"] == pytest.approx((types == MONO).mean())


def test_realised_alpha_tracks_alpha(tmp_path):
    synthetic_pairs(2000, 0).to_parquet(tmp_path / "pairs.parquet")
    stats = build_batches(plan(alpha=0.3, batch_size=4, epochs=2), tmp_path / "pairs.parquet", tmp_path / "out")
    assert stats["batches"] == 1000
    assert abs(stats["realised_alpha"] - 0.3) < 0.05


def test_shards_are_byte_identical_for_a_seed_and_differ_across_seeds(tmp_path):
    synthetic_pairs(50, 1).to_parquet(tmp_path / "pairs.parquet")
    hashes = [digest(build_batches(plan(seed=s), tmp_path / "pairs.parquet", tmp_path / f"{i}") and tmp_path / f"{i}")
              for i, s in enumerate([7, 7, 8])]
    assert hashes[0] == hashes[1] != hashes[2]


def test_epochs_are_reshuffled(tmp_path):
    synthetic_pairs(40, 2).to_parquet(tmp_path / "pairs.parquet")
    build_batches(plan(alpha=1.0, epochs=2), tmp_path / "pairs.parquet", tmp_path / "out")
    frame = shards(tmp_path / "out")
    first, second = (frame[frame.epoch == e].pair_id.tolist() for e in (0, 1))
    assert len(first) == len(second) and first != second


def test_single_language_items_are_counted_not_hidden(tmp_path):
    synthetic_pairs(30, 3, single_language=4).to_parquet(tmp_path / "pairs.parquet")
    stats = build_batches(plan(alpha=0.0), tmp_path / "pairs.parquet", tmp_path / "out")
    assert stats["items_unusable"] == {"X-Y: item exists in one language only": 4}
    frame = shards(tmp_path / "out")
    assert not set(frame.item_id) & {f"i{i}" for i in range(4)}
    saved = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert saved["items_unusable"] == stats["items_unusable"]


def test_reader_yields_the_shards_batches_in_order(tmp_path, monkeypatch):
    import hybridbatch.batching as batching

    monkeypatch.setattr(batching, "ROW_GROUP_ROWS", 7)  # batches straddle row groups
    synthetic_pairs(60, 4).to_parquet(tmp_path / "pairs.parquet")
    build_batches(plan(batch_size=5, epochs=3), tmp_path / "pairs.parquet", tmp_path / "out")
    frame = shards(tmp_path / "out")
    seen = [(batch_id, table.column("pair_id").to_pylist()) for batch_id, _, table in
            iter_batches(list((tmp_path / "out").glob("shard-*.parquet")))]
    expected = [(batch_id, group.pair_id.tolist()) for batch_id, group in frame.groupby("batch_id", sort=False)]
    assert seen == expected
    assert [b for b, _ in seen] == list(range(len(seen)))


def test_proportional_sampling_follows_language_sizes(tmp_path):
    # 400 items in en and de, 100 of them also in zh: zh mono batches should be ~1/9 of mono batches
    rows = []
    for item in range(400):
        langs = ["de", "en", "zh"] if item < 100 else ["de", "en"]
        rows += [(f"i{item}:{l}>{l}", f"i{item}", l, l, "q", "p", None, None) for l in langs]
    pd.DataFrame(rows, columns=schema.PAIRS.names).to_parquet(tmp_path / "pairs.parquet")
    shares = {}
    for sampling in ("uniform", "proportional"):
        build_batches(plan(alpha=1.0, batch_size=4, epochs=10, mono_language_sampling=sampling),
                      tmp_path / "pairs.parquet", tmp_path / sampling)
        frame = shards(tmp_path / sampling)
        shares[sampling] = (frame.groupby("batch_id").query_lang.first() == "zh").mean()
    assert abs(shares["uniform"] - 1 / 3) < 0.03
    assert abs(shares["proportional"] - 1 / 9) < 0.03
