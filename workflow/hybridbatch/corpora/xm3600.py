"""Crossmodal-3600 (XM3600): 3,600 photos with captions written in 36 languages.

Raw files: `captions.zip` (holding `captions.jsonl`, one line per image with
`image/key` and, per language, `{"caption": [...]}`) and `images.tgz`
(`<image/key>.jpg`); both are safely extracted into the raw directory, the photos
under `images/`. Google publishes no checksums: pin the sha256 the first download
prints (a `null` pin is accepted with a warning and the observed hash recorded).

Canonical image-text form: an image per key (`pid` `image:<key>`, its path relative to
the raw directory and its sha256); every caption a query (`qid` `<lang>:<key>:<n>`,
`caption` n, so caption 0 is the `first` protocol's); each caption is relevant to its
image. A missing or unreadable photo is an error naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from hybridbatch.artifacts import schema
from hybridbatch.corpora.formats import SOURCES, CorpusSource, captioned_images, grouped_by_item, url_download
from hybridbatch.fetch.archives import safe_extract

CAPTIONS = "captions.jsonl"
IMAGES = "images"


def extract(raw_dir: Path) -> None:
    """Unpack the verified archives next to them: captions.jsonl and images/."""
    safe_extract(raw_dir / "captions.zip", raw_dir, under=CAPTIONS)
    safe_extract(raw_dir / "images.tgz", raw_dir / IMAGES)


def load(raw_dir: str | Path, languages: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    raw_dir = Path(raw_dir)
    path = raw_dir / CAPTIONS
    photos = {p.stem: p.relative_to(raw_dir).as_posix() for p in (raw_dir / IMAGES).rglob("*.jpg")}
    queries, images, line_of = [], [], {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
                key = record["image/key"]
            except (json.JSONDecodeError, KeyError, TypeError) as error:
                raise schema.SchemaError(f"{path}:{number}: not an XM3600 caption record ({error!r})") from error
            if key in line_of:
                raise schema.SchemaError(f"{path}:{number}: image/key {key!r} again (first on line {line_of[key]})")
            line_of[key] = number
            for lang in languages:
                entry = record.get(lang) or {}
                captions = entry.get("caption") if isinstance(entry, dict) else None
                if not captions:
                    raise schema.SchemaError(f"{path}:{number}: image {key} has no {lang!r} caption")
                if not isinstance(captions, list) or not all(isinstance(text, str) for text in captions):
                    raise schema.SchemaError(
                        f"{path}:{number}: image {key}: {lang!r} caption must be a list of strings, not {captions!r}"
                    )
                queries += [(f"{lang}:{key}:{i}", lang, key, text, i) for i, text in enumerate(captions)]
            images.append((key, photos.get(key, f"{IMAGES}/{key}.jpg")))
    return captioned_images(raw_dir, queries, images)


SOURCES.register("xm3600")(
    CorpusSource(
        images=True,
        full_images=3_600,
        download=url_download(extract),
        frames=lambda params, raw_dir: grouped_by_item(*load(raw_dir, params["languages"])),
    )
)
