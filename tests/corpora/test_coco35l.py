"""The tests of `hybridbatch/corpora/coco35l.py`."""

import bz2
import json
import zipfile

import numpy as np
import pytest
from dual_encoder_helpers import images

from hybridbatch import corpora
from hybridbatch.artifacts import schema
from hybridbatch.corpora import prepare


def write_mini_coco35l(mirror, languages: list[str], n_images: int = 4) -> dict:
    """COCO-35L's published files in their format: bz2 JSON lines, Karpathy's split in a zip,
    the photos in train2014.zip / val2014.zip."""
    mirror.mkdir(parents=True)
    lines, karpathy = [], []
    for i in range(n_images):
        cocoid, folder = 100 + i, ("train2014", "val2014")[i % 2]
        filename = f"COCO_{folder}_{cocoid:012d}.jpg"
        split = ("train", "restval")[i % 2]  # COCO-35L translates both
        karpathy.append({"cocoid": cocoid, "filepath": folder, "filename": filename, "split": split})
        for n in range(2):
            english = f"a photo number {i} caption {n}"
            for lang in languages:
                if lang != "en":
                    lines.append(
                        {
                            "image_id": f"{cocoid}_{n}",
                            "src_lang": "en",
                            "trg_lang": lang,
                            "caption_tokenized": english,
                            "translation_tokenized": f"[{lang}] {english}",
                        }
                    )
    karpathy.append(
        {"cocoid": 999, "filepath": "val2014", "filename": "COCO_val2014_000000000999.jpg", "split": "test"}
    )
    with bz2.open(mirror / "coco_mt_train.jsonl.bz2", "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(line) + "\n" for line in lines)
    with zipfile.ZipFile(mirror / "caption_datasets.zip", "w") as handle:
        handle.writestr("dataset_coco.json", json.dumps({"images": karpathy, "dataset": "coco"}))
    for folder in ("train2014", "val2014"):
        with zipfile.ZipFile(mirror / f"{folder}.zip", "w") as handle:
            for record, image in zip(karpathy, images(n_images)):
                if record["filepath"] == folder:
                    path = mirror / record["filename"]
                    image.save(path, format="JPEG")
                    handle.write(path, f"{folder}/{record['filename']}")
    names = ["coco_mt_train.jsonl.bz2", "caption_datasets.zip", "train2014.zip", "val2014.zip"]
    return {
        "name": "coco",
        "source": "coco35l",
        "urls": {n: f"https://example.invalid/{n}" for n in names},
        "sha256": {n: None for n in names},
        "mirror": str(mirror),
        "languages": languages,
        "test_fraction": 0.0,
        "split_seed": 0,
    }


def test_coco35l_samples_its_images_in_one_pass_whatever_the_line_order(tmp_path):
    """max_images keeps the images of smallest seeded hash among those the caption file
    names (a two-pass reference here), each with all its captions, also when the file's
    lines come in another order (the sample's captions are held, the others dropped)."""
    from hybridbatch.corpora.coco35l import CAPTIONS, ImageSample, load

    languages = ["de", "en", "ja"]
    params = write_mini_coco35l(tmp_path / "mirror", languages, n_images=12)
    raw = corpora.download(params, tmp_path / "raw")
    with bz2.open(raw / CAPTIONS, "rt", encoding="utf-8") as handle:
        lines = handle.readlines()
    named = {json.loads(line)["image_id"].split("_")[0] for line in lines}
    ranked = sorted(named, key=ImageSample(5, 3).rank)
    expected = sorted(ranked[:5], key=int)
    captions = lambda frame: sorted(zip(frame.item_id, frame.lang, frame.text))  # noqa: E731
    queries, images_, _ = load(raw, languages, 5, 3)
    assert images_.item_id.tolist() == expected
    assert len(queries) == 5 * len(languages) * 2  # every caption of each sampled image in each language
    np.random.default_rng(0).shuffle(lines)
    with bz2.open(raw / CAPTIONS, "wt", encoding="utf-8") as handle:
        handle.writelines(lines)
    shuffled, images_again, _ = load(raw, languages, 5, 3)
    assert images_again.item_id.tolist() == expected and captions(shuffled) == captions(queries)
    assert load(raw, languages, 5, 4)[1].item_id.tolist() != expected  # another seed, another sample


def test_coco35l_reads_the_published_format(tmp_path):
    params = write_mini_coco35l(tmp_path / "mirror", ["de", "en", "ja"])
    raw = corpora.download(params, tmp_path / "raw")
    counts = prepare.prepare(params, raw, tmp_path / "corpus")
    assert (
        counts["train"] == {"queries": 4 * 3 * 2, "images": 4, "qrels": 24, "items": 4, "groups": 4}
        and counts["test"]["images"] == 0
    )
    queries = schema.read_parquet(tmp_path / "corpus/train/queries.parquet", schema.CAPTIONS).set_index("qid")
    assert queries.loc["en:101:1", "text"] == "a photo number 1 caption 1"  # English: the source side of the de lines
    assert queries.loc["ja:102:0", "text"] == "[ja] a photo number 2 caption 0"
    images_ = schema.read_parquet(tmp_path / "corpus/train/images.parquet", schema.IMAGES).set_index("pid")
    assert images_.loc["image:101", "path"] == "images/val2014/COCO_val2014_000000000101.jpg"
    assert "image:999" not in images_.index  # in Karpathy's split file, but no caption names it
    sample = prepare.prepare({**params, "max_images": 2}, raw, tmp_path / "sample")
    assert sample["train"]["images"] == 2
    with pytest.raises(schema.SchemaError, match="has no 'ko' caption"):
        prepare.prepare({**params, "languages": ["de", "ko"]}, raw, tmp_path / "ko")
    with bz2.open(raw / "coco_mt_train.jsonl.bz2", "wt") as handle:
        handle.write(json.dumps({"image_id": "100_0", "trg_lang": "de"}) + "\n")
    with pytest.raises(schema.SchemaError, match=r"coco_mt_train.jsonl.bz2:1: a COCO-35L line needs string fields"):
        from hybridbatch.corpora.coco35l import load

        load(raw, ["de"], None, 0)
