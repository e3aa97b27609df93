"""The tests of `hybridbatch/corpora/emoji.py`."""

import json

import pandas as pd
import pytest
from image_corpora_helpers import ANNOTATIONS, EMOJI, emoji_mirror, read

from hybridbatch import corpora
from hybridbatch.artifacts import schema
from hybridbatch.corpora import prepare
from hybridbatch.fetch.download import sha256_file
from hybridbatch.names import GROUPS


def test_an_emoji_and_its_skin_tone_variants_share_a_split(tmp_path):
    """The waving hand (1F44B) and its medium-skin-tone variant (1F44B-1F3FD) are one group: over ten
    split seeds they always land in the same split, while the emoji as a whole are divided."""
    from hybridbatch.corpora.emoji import toneless

    assert (
        toneless("1F44B-1F3FD") == toneless("1F44B") == "1F44B" and toneless("1F469-200D-1F52C") == "1F469-200D-1F52C"
    )
    params = {**emoji_mirror(tmp_path / "mirror"), "test_fraction": 0.5}
    raw = corpora.download(params, tmp_path / "raw")
    divided = set()
    for seed in range(10):
        out = tmp_path / f"out{seed}"
        prepare.prepare({**params, "split_seed": seed}, raw, out)
        split_of = {
            item: split for split in ("train", "test") for item in read(out, split, "images", schema.IMAGES).item_id
        }
        assert split_of["1F44B"] == split_of["1F44B-1F3FD"], seed
        divided.add(len(set(split_of.values())))
        groups = schema.read_parquet(out / GROUPS, schema.GROUPS).set_index("item_id")
        assert groups.loc["1F44B-1F3FD", "group"] == "1F44B" and groups.split.to_dict() == split_of
    assert divided == {2}  # every seed puts some emoji in each split


def test_emoji_corpus_names_each_image_in_every_language_from_cldr(tmp_path):
    params = emoji_mirror(tmp_path / "mirror")
    raw = corpora.download(params, tmp_path / "raw")
    assert not (raw / "README.md").exists()  # only what the corpus uses is extracted
    prepare.prepare(params, raw, tmp_path / "out")
    images = read(tmp_path / "out", "train", "images", schema.IMAGES).set_index("item_id")
    assert sorted(images.index) == ["1F1E9-1F1EA", "1F44B", "1F44B-1F3FD", "1F600", "2764-FE0F"]  # the alien lacks ru
    captions = read(tmp_path / "out", "train", "queries", schema.CAPTIONS)
    first = captions[captions.caption == 0].set_index(["item_id", "lang"]).text
    assert (
        first[("1F44B-1F3FD", "ru")] == "машет рукой: средний тон кожи"
    )  # a skin-tone variant, from the derived names
    assert first[("1F1E9-1F1EA", "en")] == "flag: Germany"
    assert first[("2764-FE0F", "ru")] == "красное сердце"  # emoji.json's FE0F, CLDR's key without it
    keywords = captions[captions.caption == 1].set_index(["item_id", "lang"]).text
    assert keywords[("1F600", "en")] == "face, grin"
    for path, digest in zip(images.path, images.sha256):
        assert sha256_file(raw / path) == digest
    qrels = read(tmp_path / "out", "train", "qrels", schema.QRELS)
    assert len(qrels) == len(captions) and set(qrels.pid) == set(images.pid)
    assert pd.Series(qrels.pid.str.removeprefix("image:")).isin(images.index).all()


@pytest.mark.parametrize(
    "mirror, message",
    [
        (
            {"annotations": {**ANNOTATIONS, "en": {**ANNOTATIONS["en"], "😀": {"tts": "grinning face"}}}},
            r"annotations/en/annotations.json: 'tts' of 😀 must be a list of strings, not 'grinning face'",
        ),
        (
            {"raw_annotations": {"ru": json.dumps({"annotations": {"annotations": ANNOTATIONS["ru"]}}).encode()[:-30]}},
            r"annotations/ru/annotations.json: not valid JSON",
        ),
        ({"emoji_json": json.dumps(EMOJI).encode()[:-10]}, r"emoji.json: not valid JSON"),
    ],
)
def test_malformed_emoji_data_is_named_by_file_and_entry(tmp_path, mirror, message):
    params = emoji_mirror(tmp_path / "mirror", **mirror)
    raw = corpora.download(params, tmp_path / "raw")
    with pytest.raises(schema.SchemaError, match=message):
        prepare.prepare(params, raw, tmp_path / "out")
