"""The tests of `hybridbatch/batch_types.py`."""

from image_text_helpers import LANGS, plan, read_batches, write_image_corpus

from hybridbatch.artifacts import schema
from hybridbatch.batch_types import BATCH_TYPES, IMAGE_MIXED
from hybridbatch.batches.image_text import build_image_text_batches


def test_a_batch_type_is_one_registry_entry(tmp_path, monkeypatch):
    """A planted type, translation pairs with every source caption in one language: one
    entry in batch_types.BATCH_TYPES, and the config check, the batches stage and the
    report's pair counts take it as they take the shipped ones."""
    from hybridbatch.batch_types import CAPTIONS, BatchType, image_share
    from hybridbatch.config import check_image_text_strategies

    monkeypatch.setitem(BATCH_TYPES, "caption-caption-mono", BatchType(one_language=True, targets=CAPTIONS))
    weights = {IMAGE_MIXED: 0.5, "caption-caption-mono": 0.5}
    section = {"strategies": {"planted": {"weights": weights}}, "train_languages": LANGS[:3], "curve": None}
    check_image_text_strategies(section)
    write_image_corpus(tmp_path / "corpus", 20)
    stats = build_image_text_batches(
        plan({"weights": weights}, 20, type_draws="stratified"), tmp_path / "corpus/train", tmp_path / "out"
    )
    assert stats["caption-caption-mono"] == 10 and image_share(weights) == 0.5
    captions = schema.read_parquet(tmp_path / "corpus/train/queries.parquet", schema.CAPTIONS).set_index("qid")
    for _, batch in read_batches(tmp_path / "out").groupby("batch_id"):
        if batch.batch_type.iloc[0] == "caption-caption-mono":
            targets = captions.loc[batch.pid]
            assert batch.query_lang.nunique() == 1 and (targets.lang.to_numpy() != batch.query_lang.to_numpy()).all()
            assert (targets.item_id.to_numpy() == batch.item_id.to_numpy()).all()
