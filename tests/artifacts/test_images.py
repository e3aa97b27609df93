"""The tests of `hybridbatch/artifacts/images.py`."""

import pytest
from image_corpora_helpers import image_bytes, mini_xm3600, xm3600_params

from hybridbatch import corpora
from hybridbatch.artifacts import schema
from hybridbatch.corpora import prepare


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
