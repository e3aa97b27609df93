"""Helpers the tests of several modules share: ANNOTATIONS, DERIVED, EMOJI, add, emoji_mirror, image_bytes, many_emoji_mirror, mini_xm3600, read, xm3600_params, xm3600_records."""

import io
import json
import tarfile
import zipfile

from PIL import Image

from hybridbatch.artifacts import schema
from hybridbatch.fetch.download import sha256_file


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
