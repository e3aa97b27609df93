"""The tests of `hybridbatch/corpora/xm3600.py`."""

import pytest
from image_corpora_helpers import image_bytes, mini_xm3600, read, xm3600_params, xm3600_records

from hybridbatch import corpora
from hybridbatch.artifacts import schema
from hybridbatch.corpora import prepare
from hybridbatch.fetch.download import sha256_file


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
