"""The tests of `hybridbatch/batches/text.py`."""

import hashlib
import json

import pandas as pd
import pytest
from batching_helpers import LANGS, pair_row, plan, shards, synthetic_pairs, write_pairs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hybridbatch.artifacts import schema
from hybridbatch.batches.text import CROSS, MONO, build_batches


def conflicts(frame: pd.DataFrame, qrels: pd.DataFrame) -> int:
    """Relevant candidates in a batch that are not the query's own positive, from shards and
    qrels alone: another row's positive, or any row's hard negative."""
    relevant = set(zip(qrels.qid, qrels.pid))
    found = 0
    for _, batch in frame.groupby("batch_id"):
        candidates = list(batch.pid) + [p for p in batch.negative_pid if p is not None]
        for qid, own in zip(batch.qid, batch.pid):
            found += sum((qid, pid) in relevant for pid in candidates if pid != own)
    return found


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
    write_pairs(synthetic_pairs(n_items, seed), tmp)
    params = plan(alpha=alpha, batch_size=batch_size, seed=seed, mono_language_sampling=sampling, drop_last=drop_last)
    stats = build_batches(params, tmp, tmp / "out")
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
    assert conflicts(frame, pd.read_parquet(tmp / "out" / "qrels.parquet")) == 0


def test_realised_alpha_tracks_alpha(tmp_path):
    write_pairs(synthetic_pairs(2000, 0), tmp_path)
    stats = build_batches(plan(alpha=0.3, batch_size=4, epochs=2), tmp_path, tmp_path / "out")
    assert stats["batches"] == 1000
    assert abs(stats["realised_alpha"] - 0.3) < 0.05


def test_shards_are_byte_identical_for_a_seed_and_differ_across_seeds(tmp_path):
    write_pairs(synthetic_pairs(50, 1), tmp_path)
    hashes = [
        digest(build_batches(plan(seed=s), tmp_path, tmp_path / f"{i}") and tmp_path / f"{i}")
        for i, s in enumerate([7, 7, 8])
    ]
    assert hashes[0] == hashes[1] != hashes[2]


def test_validation_items_are_held_out_of_training_and_the_same_for_every_strategy(tmp_path):
    write_pairs(synthetic_pairs(120, 4), tmp_path)
    held_out, trained = [], []
    for alpha in (0.0, 1.0):
        out = tmp_path / f"a{alpha}"
        stats = build_batches(plan(alpha=alpha, development_fraction=0.2, development_seed=3), tmp_path, out)
        validation, training = shards(out / "validation"), shards(out)
        assert stats["validation"] == {"items": 24, "batches": 3, "seed": 3, "alpha": 0.5}
        assert stats["items"] == 96 and stats["batches_per_epoch"] == 96 // 8
        assert not set(validation.item_id) & set(training.item_id)
        held_out.append(validation)
        trained.append(set(training.item_id))
    pd.testing.assert_frame_equal(held_out[0], held_out[1])  # the same validation batches for every strategy
    assert not set(held_out[0].item_id) & (trained[0] | trained[1])


def test_epochs_are_reshuffled(tmp_path):
    write_pairs(synthetic_pairs(40, 2), tmp_path)
    build_batches(plan(alpha=1.0, epochs=2), tmp_path, tmp_path / "out")
    frame = shards(tmp_path / "out")
    first, second = (frame[frame.epoch == e].pair_id.tolist() for e in (0, 1))
    assert len(first) == len(second) and first != second


def test_single_language_items_are_counted_not_hidden(tmp_path):
    write_pairs(synthetic_pairs(30, 3, single_language=4), tmp_path)
    stats = build_batches(plan(alpha=0.0), tmp_path, tmp_path / "out")
    assert stats["items_unusable"] == {"X-Y: item exists in one language only": 4}
    frame = shards(tmp_path / "out")
    assert not set(frame.item_id) & {f"i{i}" for i in range(4)}
    saved = json.loads((tmp_path / "out" / "stats.json").read_text())
    assert saved["items_unusable"] == stats["items_unusable"]


def test_proportional_sampling_follows_language_sizes(tmp_path):
    # 400 items in en and de, 100 of them also in zh: zh mono batches should be ~1/9 of mono batches
    rows = []
    for item in range(400):
        langs = ["de", "en", "zh"] if item < 100 else ["de", "en"]
        rows += [pair_row(item, l, l) for l in langs]
    write_pairs(pd.DataFrame(rows, columns=schema.PAIRS.names), tmp_path)
    shares = {}
    for sampling in ("uniform", "proportional"):
        build_batches(
            plan(alpha=1.0, batch_size=4, epochs=10, mono_language_sampling=sampling), tmp_path, tmp_path / sampling
        )
        frame = shards(tmp_path / sampling)
        shares[sampling] = (frame.groupby("batch_id").query_lang.first() == "zh").mean()
    assert abs(shares["uniform"] - 1 / 3) < 0.03
    assert abs(shares["proportional"] - 1 / 9) < 0.03


def shared_gold_pairs(n_items: int) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Items 0 and 1 are two questions whose gold sentence is the same in en and de (as
    660 of XQuAD-R's questions share theirs); item 2's hard negative in en is relevant to
    item 3's queries. Every other item stands alone."""
    rows = []
    for item in range(n_items):
        for lq in ("en", "de"):
            for lp in ("en", "de"):
                pid = f"p0:{lp}" if item in (0, 1) else None
                negative = "p3:en" if item == 2 and lp == "en" else None
                rows.append(pair_row(item, lq, lp, negative_pid=negative, pid=pid))
    return pd.DataFrame(rows, columns=schema.PAIRS.names), []


def test_questions_sharing_a_gold_sentence_never_share_a_batch(tmp_path):
    pairs, _ = shared_gold_pairs(12)
    write_pairs(pairs, tmp_path)
    for alpha in (0.0, 0.5, 1.0):
        out = tmp_path / f"a{alpha}"
        stats = build_batches(plan(alpha=alpha, batch_size=6, epochs=40), tmp_path, out)
        frame = shards(out)
        together = frame.groupby("batch_id").item_id.agg(set)
        assert not any({"i0", "i1"} <= items or {"i2", "i3"} <= items for items in together)
        assert conflicts(frame, pd.read_parquet(out / "qrels.parquet")) == 0
        assert stats["conflicts"]["item_pairs"] == 2 and stats["conflicts"]["items_with_conflicts"] == 4
        assert stats["conflicts"]["deferred_for_a_conflict"] > 0  # 6 of 12 items a batch: they met and were kept apart


@pytest.mark.parametrize("corpus_files", ["generated", "real"])
def test_xquad_r_batches_hold_no_relevant_candidate_as_a_negative(tmp_path, corpus_files):
    """An XQuAD-R-format corpus (generated, tests/xquad_like.py; and the real files of
    ../shared, skipped when absent), where questions share gold sentences: every
    strategy's shards are checked against the corpus qrels alone."""
    from xquad_like import xquad_r_raw

    from hybridbatch.corpora import prepare
    from hybridbatch.pairs import build as pairs_stage

    languages = xquad_r_raw(tmp_path / "raw", corpus_files, ["ar", "de", "en", "es", "hi", "ru", "th", "tr", "zh"])
    raw = tmp_path / "raw"
    corpus = {"source": "lareqa", "languages": languages, "test_fraction": 0.5, "split_seed": 0}
    prepare.prepare(corpus, raw, tmp_path / "corpus")
    pairs_stage.build_pairs(
        {"languages": languages, "hard_negatives": True, "seed": 0}, tmp_path / "corpus/train", tmp_path / "pairs"
    )
    corpus_qrels = pd.read_parquet(tmp_path / "corpus/train/qrels.parquet")
    for alpha in (1.0, 0.0, 0.5):
        out = tmp_path / f"batches-{alpha}"
        stats = build_batches(plan(alpha=alpha, batch_size=32, epochs=1), tmp_path / "pairs", out)
        assert conflicts(shards(out), corpus_qrels) == 0
        assert stats["conflicts"]["item_pairs"] > 0


def test_a_language_with_fewer_items_than_a_batch_gets_no_mono_batches(tmp_path, caplog):
    pairs = synthetic_pairs(40, 0)
    few = sorted(pairs[pairs.query_lang == "zh"].item_id.unique())[3:]  # zh keeps 3 items
    pairs = pairs[~(pairs.item_id.isin(few) & ((pairs.query_lang == "zh") | (pairs.passage_lang == "zh")))]
    write_pairs(pairs, tmp_path)
    build_batches(plan(alpha=1.0, batch_size=4, epochs=3), tmp_path, tmp_path / "out")
    frame = shards(tmp_path / "out")
    assert "zh" not in set(frame.query_lang) and frame.query_lang.nunique() == len(LANGS) - 1
    assert "zh have fewer items than a batch (4)" in caplog.text
