"""Crossmodal-3600 (XM3600): 3,600 photos with captions written in 36 languages.

Raw files: `captions.zip` (holding `captions.jsonl`, one line per image with
`image/key` and, per language, `{"caption": [...]}`) and optionally `images.tgz`
(`<image/key>.jpg`); both are safely extracted into the raw directory, the photos
under `images/`.

Canonical form (the standard protocol: the first caption per image and language):
a query is a caption (`qid` `<lang>:<key>`, `item_id` the image key); a passage is an
image (`pid` `image:<key>`, `lang` "image", `text` its path relative to the raw
directory, `images/<key>.jpg` where the photos are absent); each caption is relevant to its image.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import schema
from ..archives import safe_extract

CAPTIONS = "captions.jsonl"
IMAGES = "images"
IMAGE_LANG = "image"


def extract(raw_dir: Path) -> None:
    """Unpack the verified archives next to them: captions.jsonl and images/."""
    safe_extract(raw_dir / "captions.zip", raw_dir, under=CAPTIONS)
    if (raw_dir / "images.tgz").is_file():
        safe_extract(raw_dir / "images.tgz", raw_dir / IMAGES)


def load(raw_dir: str | Path, languages: list[str]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    raw_dir = Path(raw_dir)
    path = raw_dir / CAPTIONS
    photos = {p.stem: p.relative_to(raw_dir).as_posix() for p in (raw_dir / IMAGES).rglob("*.jpg")}
    queries, passages = [], []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
                key = record["image/key"]
            except (json.JSONDecodeError, KeyError) as error:
                raise schema.SchemaError(f"{path}:{number}: not an XM3600 caption record ({error!r})") from error
            for lang in languages:
                captions = record.get(lang, {}).get("caption") or []
                if not captions:
                    raise schema.SchemaError(f"{path}:{number}: image {key} has no {lang!r} caption")
                queries.append((f"{lang}:{key}", lang, key, captions[0]))
            passages.append((f"{IMAGE_LANG}:{key}", IMAGE_LANG, key, photos.get(key, f"{IMAGES}/{key}.jpg")))
    queries = pd.DataFrame(queries, columns=schema.QUERIES.names)
    passages = pd.DataFrame(passages, columns=schema.PASSAGES.names)
    qrels = queries[["qid", "item_id"]].merge(passages[["pid", "item_id"]], on="item_id")[["qid", "pid"]]
    return queries, passages, qrels.assign(relevance=1)
