"""The tests of `hybridbatch/subset.py`."""

import pandas as pd
import pytest

from hybridbatch.artifacts import schema


def test_the_test_subset_keeps_images_with_a_caption_in_every_language():
    """Image 3 has no zh caption and item 5 no image: neither is evaluated; `images` draws a
    sorted subset (all of them when None or more than there are); a language without
    captions is an error naming it."""
    from hybridbatch.subset import test_subset

    captions = pd.DataFrame(
        [
            (f"{lang}:{item}:{c}", lang, str(item), f"{lang} {item}", c)
            for item in range(6)
            for lang in ("en", "zh")
            for c in (0, 1)
            if (item, lang) != (3, "zh")
        ],
        columns=schema.CAPTIONS.names,
    )
    images = pd.DataFrame(
        [(f"image:{item}", str(item), f"{item}.png", "0" * 64) for item in (4, 2, 1, 0, 3)], columns=schema.IMAGES.names
    )
    kept_captions, kept_images = test_subset(captions, images, ["en", "zh"], None, 0)
    assert kept_images.pid.tolist() == ["image:0", "image:1", "image:2", "image:4"] and kept_images.index.tolist() == [
        0,
        1,
        2,
        3,
    ]
    assert kept_captions.qid.tolist() == [
        f"{lang}:{item}:{c}" for lang in ("en", "zh") for item in (0, 1, 2, 4) for c in (0, 1)
    ]
    assert test_subset(captions, images, ["en", "zh"], 4, 0)[1].pid.tolist() == kept_images.pid.tolist()
    with pytest.raises(
        schema.SchemaError,
        match=r"config key image_text\.evaluation\.images: 5 requested, but the test split has 4 images",
    ):
        test_subset(captions, images, ["en", "zh"], 5, 0)  # not silently fewer than the config says
    drawn = [test_subset(captions, images, ["en"], 3, seed)[1].item_id.tolist() for seed in range(6)]
    assert (
        all(len(d) == 3 and d == sorted(d) and set(d) <= {"0", "1", "2", "3", "4"} for d in drawn)
        and len(set(map(tuple, drawn))) > 1
    )
    with pytest.raises(schema.SchemaError, match=r"test captions: no captions in \['fr'\]"):
        test_subset(captions, images, ["en", "fr"], None, 0)


def test_the_batches_and_the_train_caption_states_read_the_same_training_captions(tmp_path):
    """One function chooses the training captions for both stages: every caption a batch
    holds (queries and caption-caption targets, all batch types, both protocols) is one the
    train split's caption states are computed for, and both are `training_captions`."""
    from image_text_helpers import LANGS, plan, write_image_corpus

    from hybridbatch.batches.image_text import build_image_text_batches
    from hybridbatch.models.frozen_layers import selected_captions
    from hybridbatch.subset import training_captions
    from hybridbatch.train.image_text import batch_captions

    corpus = tmp_path / "corpus"
    write_image_corpus(corpus, n_images=40)
    queries = schema.read_parquet(corpus / "train/queries.parquet", schema.CAPTIONS)
    for protocol in ("first", "all"):
        weights = {"image-caption-mono": 0.4, "image-caption-mixed": 0.3, "caption-caption": 0.3}
        params = plan({"weights": weights}, steps=6, captions=protocol, development_fraction=0.25)
        out = tmp_path / f"batches-{protocol}"
        build_image_text_batches(params, corpus / "train", out)
        states = selected_captions({"split": "train", "languages": LANGS[:3], "captions": protocol}, corpus / "train")
        chosen = training_captions(queries, LANGS[:3], protocol)
        assert states == sorted(set(chosen.text))
        assert batch_captions(out) <= set(states)
        assert (protocol == "first") == (set(chosen.caption) == {0})
