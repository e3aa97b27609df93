"""The tests of `hybridbatch/batches/image_text.py`."""

import json

import pytest
from image_text_helpers import LANGS, plan, read_batches, write_image_corpus

from hybridbatch.artifacts import schema
from hybridbatch.batch_types import BATCH_TYPES, CAPTION_CAPTION, IMAGE_MIXED, IMAGE_MONO
from hybridbatch.batches.image_text import build_image_text_batches
from hybridbatch.batches.sampling import batch_type_weights


@pytest.mark.parametrize("weights", [{IMAGE_MIXED: 1}, {IMAGE_MONO: 1}, {IMAGE_MONO: 0.5, CAPTION_CAPTION: 0.5},
                                     {IMAGE_MONO: 0.25, IMAGE_MIXED: 0.25, CAPTION_CAPTION: 0.5}])  # fmt: skip
def test_image_text_batches_obey_their_type(tmp_path, weights):
    write_image_corpus(tmp_path / "corpus", 30, conflict=("00003", "00007"))
    stats = build_image_text_batches(plan({"weights": weights}), tmp_path / "corpus/train", tmp_path / "out")
    batches = read_batches(tmp_path / "out")
    captions = schema.read_parquet(tmp_path / "corpus/train/queries.parquet", schema.CAPTIONS).set_index("qid")
    assert batches.batch_id.nunique() == 200 and (batches.groupby("batch_id").size() == 8).all()
    for _, batch in batches.groupby("batch_id"):
        kind = batch.batch_type.iloc[0]
        assert batch.item_id.is_unique  # an image at most once per batch
        assert not {"00003", "00007"} <= set(batch.item_id)  # a caption of one is relevant to the other
        assert set(batch.query_lang) <= set(LANGS[:3])
        assert (captions.loc[batch.qid, "item_id"].to_numpy() == batch.item_id.to_numpy()).all()
        if kind == CAPTION_CAPTION:
            targets = captions.loc[batch.pid]
            assert (targets.item_id.to_numpy() == batch.item_id.to_numpy()).all()  # the same image's caption
            assert (targets.lang.to_numpy() != batch.query_lang.to_numpy()).all()  # in another language
            assert (targets.text.to_numpy() == batch.positive.to_numpy()).all()
        else:
            assert (batch.passage_lang == "image").all() and (batch.pid == "image:" + batch.item_id).all()
        if kind == IMAGE_MONO:
            assert batch.query_lang.nunique() == 1
    assert set(batches.query_lang) == set(LANGS[:3])  # every training language is drawn
    realised = json.loads((tmp_path / "out/stats.json").read_text())["realised_weights"]
    for kind in BATCH_TYPES:
        assert realised[kind] == pytest.approx(
            batch_type_weights({"weights": weights}, tuple(BATCH_TYPES))[kind], abs=0.1
        )
    assert sum(stats.values()) == 200
    if weights == {IMAGE_MIXED: 1}:  # mixed batches do mix languages
        assert (batches.groupby("batch_id").query_lang.nunique() > 1).mean() > 0.9


def test_stratified_draws_fix_each_type_count(tmp_path):
    write_image_corpus(tmp_path / "corpus", 20)
    weights = {IMAGE_MONO: 0.25, IMAGE_MIXED: 0.35, CAPTION_CAPTION: 0.4}
    types = build_image_text_batches(
        plan({"weights": weights}, 41, type_draws="stratified"), tmp_path / "corpus/train", tmp_path / "out"
    )
    assert types == {IMAGE_MONO: 10, IMAGE_MIXED: 14, CAPTION_CAPTION: 17}  # 10.25, 14.35, 16.4: the largest remainder
    kinds = read_batches(tmp_path / "out").groupby("batch_id").batch_type.first().tolist()
    assert kinds != sorted(kinds)  # shuffled, not in blocks


def test_strategies_of_one_seed_see_the_same_images_in_the_same_order(tmp_path):
    write_image_corpus(tmp_path / "corpus", 20)
    for name, weights in (("mixed", {IMAGE_MIXED: 1}), ("hybrid", {IMAGE_MONO: 0.5, CAPTION_CAPTION: 0.5})):
        build_image_text_batches(plan({"weights": weights}, 30), tmp_path / "corpus/train", tmp_path / name)
    assert read_batches(tmp_path / "mixed").item_id.tolist() == read_batches(tmp_path / "hybrid").item_id.tolist()


def test_image_text_batches_are_deterministic_and_first_protocol_uses_caption_zero(tmp_path):
    write_image_corpus(tmp_path / "corpus", 20)
    strategy = {"weights": {IMAGE_MONO: 0.5, CAPTION_CAPTION: 0.5}}
    for out in ("a", "b"):
        build_image_text_batches(plan(strategy, 40, "first"), tmp_path / "corpus/train", tmp_path / out)
    assert read_batches(tmp_path / "a").equals(read_batches(tmp_path / "b"))
    batches = read_batches(tmp_path / "a")
    assert batches.qid.str.endswith(":0").all()
    other = plan(strategy, 40, "first", seed=1)
    build_image_text_batches(other, tmp_path / "corpus/train", tmp_path / "c")
    assert not read_batches(tmp_path / "c").equals(batches)


def test_development_images_are_whole_near_duplicate_groups(tmp_path):
    """Images in groups of three siblings: the held-out (development) images are whole
    groups, so no training image has a sibling among them."""
    write_image_corpus(tmp_path / "corpus", 60, group_size=3)
    stats = build_image_text_batches(
        plan({"weights": {IMAGE_MIXED: 1.0}}, 8, development_fraction=0.2), tmp_path / "corpus/train", tmp_path / "out"
    )
    assert stats[IMAGE_MIXED] == 8
    group = lambda item: int(item) // 3  # noqa: E731  # the corpus's groups, from the item number
    held_out = {group(item) for item in read_batches(tmp_path / "out/validation").item_id}
    trained = {group(item) for item in read_batches(tmp_path / "out").item_id}
    assert held_out and trained and not held_out & trained
    recorded = json.loads((tmp_path / "out/stats.json").read_text())["validation"]
    assert recorded["items"] == 3 * recorded["groups"] == 12  # 20% of 60 images: 4 whole groups
