"""Offline image-text corpus: Noto emoji images named by native speakers (CLDR annotations).

Raw files (npm registry tarballs, the bytes `npm pack` fetches, each pinned by sha256):
  * `images.tgz`: emoji-datasource-google (Noto Emoji art, Apache-2.0 images, MIT
    data): `emoji.json` and one 64x64 PNG per emoji and skin-tone variant;
  * `annotations.tgz`: cldr-annotations-full (Unicode licence): per locale, a short name
    (`tts`) and keywords (`default`) for each base emoji, written by native speakers;
  * `derived.tgz`: cldr-annotations-derived-full: the same for flags, keycaps and
    skin-tone variants.

Canonical form: an image per emoji (`pid` `image:<unified>`, `item_id` the unified code
point sequence); per image and language two captions, its CLDR name (caption 0, the
`first` protocol) and its keywords (caption 1); each caption is relevant to its image.
An emoji is kept when every configured language names it. Splits are by group: an emoji
and its skin-tone variants (the same sequence but for modifiers U+1F3FB-1F3FF) are one
group, so no test image has a training image that differs from it only by skin tone.
Gender, hair and other variants are separate emoji in CLDR, each with a name of its own,
and stay separate groups (merging them would take 1,927 groups to 1,720 and 1,716:
docs/image_text.md).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from hybridbatch.artifacts import schema
from hybridbatch.corpora.formats import SOURCES, CorpusSource, captioned_images, grouped_by_item
from hybridbatch.fetch.archives import safe_extract
from hybridbatch.fetch.download import fetch_files, url_fetcher, url_files

ARCHIVES = ("images.tgz", "annotations.tgz", "derived.tgz")
SKIN_TONES = {"1F3FB", "1F3FC", "1F3FD", "1F3FE", "1F3FF"}
IMAGE_DIR = "img/google/64"


def download(params: dict, out_dir: Path, key: str) -> Path:
    missing = [name for name in ARCHIVES if name not in params["urls"]]
    if missing:
        raise ValueError(f"config key {key}.urls: needs {missing}")
    files = url_files(params, list(ARCHIVES), key)
    raw_dir = fetch_files(files, url_fetcher(params["urls"]), params.get("mirror"), out_dir, f"{key}.mirror")
    safe_extract(raw_dir / "images.tgz", raw_dir, strip_components=1, under=(IMAGE_DIR, "emoji.json"))
    for archive, folder in (("annotations.tgz", "annotations"), ("derived.tgz", "annotationsDerived")):
        wanted = tuple(f"{folder}/{lang}/annotations.json" for lang in params["languages"])
        safe_extract(raw_dir / archive, raw_dir, strip_components=1, under=wanted)
    return raw_dir


def emoji_images(raw_dir: Path) -> list[tuple[str, str]]:
    """(unified code points, image file) of every emoji and skin-tone variant with a Google image."""
    found = []
    for record in read_json(raw_dir / "emoji.json"):
        for entry in [record] + list(record.get("skin_variations", {}).values()):
            if entry.get("has_img_google"):
                found.append((entry["unified"], entry["image"]))
    return sorted(found)


def names(raw_dir: Path, lang: str) -> dict[str, dict]:
    """Emoji character -> {"tts": [...], "default": [...]} of one language (base and derived)."""
    merged: dict[str, dict] = {}
    for folder, top in (("annotationsDerived", "annotationsDerived"), ("annotations", "annotations")):
        path = raw_dir / folder / lang / "annotations.json"
        if not path.is_file():
            raise schema.SchemaError(
                f"{path}: missing (language {lang!r} is configured; CLDR has no annotations for it?)"
            )
        try:
            entries = read_json(path)[top]["annotations"]
        except (KeyError, TypeError) as error:
            raise schema.SchemaError(f"{path}: no {top}.annotations ({error!r})") from error
        for char, entry in entries.items():
            for field in ("tts", "default"):
                value = entry.get(field, [])
                if not isinstance(value, list) or not all(isinstance(text, str) for text in value):
                    raise schema.SchemaError(f"{path}: {field!r} of {char} must be a list of strings, not {value!r}")
        merged.update(entries)
    return merged


def read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise schema.SchemaError(f"{path}: not valid JSON ({error})") from error


def character(unified: str) -> str:
    return "".join(chr(int(code, 16)) for code in unified.split("-"))


def frames(params: dict, raw_dir: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    languages = params["languages"]
    by_lang = {lang: names(raw_dir, lang) for lang in languages}
    captions, kept, unnamed = [], [], {lang: 0 for lang in languages}
    for unified, image in emoji_images(raw_dir):
        char = character(unified)
        found = {lang: by_lang[lang].get(char) or by_lang[lang].get(char.replace("\ufe0f", "")) for lang in languages}
        for lang, entry in found.items():
            unnamed[lang] += not (entry and entry.get("tts"))
        if not all(entry and entry.get("tts") for entry in found.values()):
            continue
        kept.append((unified, f"{IMAGE_DIR}/{image}"))
        for lang, entry in found.items():
            texts = [entry["tts"][0]] + ([", ".join(entry["default"])] if entry.get("default") else [])
            captions += [(f"{lang}:{unified}:{i}", lang, unified, text, i) for i, text in enumerate(texts)]
    logging.info("%d emoji images named in all of %s; unnamed per language: %s", len(kept), languages, unnamed)
    queries, images, qrels = grouped_by_item(*captioned_images(raw_dir, captions, kept))
    groups = {unified: toneless(unified) for unified, _ in kept}
    logging.info("%d emoji in %d groups (skin-tone variants with their base)", len(kept), len(set(groups.values())))
    return queries.assign(group=queries.item_id.map(groups)), images.assign(group=images.item_id.map(groups)), qrels


def toneless(unified: str) -> str:
    """The code point sequence without skin-tone modifiers: an emoji's near-duplicate group."""
    return "-".join(code for code in unified.split("-") if code.upper() not in SKIN_TONES)


SOURCES.register("emoji")(CorpusSource(download=download, frames=frames, images=True))
