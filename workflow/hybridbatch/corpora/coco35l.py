"""COCO-35L: COCO 2014 images with their English captions machine-translated into 34
languages (released with XM3600; big_vision's `datasets/coco35l` reads it the same way).

Raw files (named under `urls`; Google publishes no checksums: pin what the first
download prints, as for XM3600): `coco_mt_train.jsonl.bz2`, one line per (caption,
target language) with `image_id` (`<cocoid>_<n>`), `trg_lang`, `caption_tokenized`
(English) and `translation_tokenized`; `caption_datasets.zip` holding Karpathy's
`dataset_coco.json` (cocoid -> `filepath`/`filename`); `train2014.zip` and `val2014.zip`
(the photos, extracted under `images/`).

Canonical image-text form as XM3600's: an image per cocoid (`pid` `image:<cocoid>`),
every caption a query (`qid` `<lang>:<cocoid>:<n>`, n counting that image's captions in
that language in file order); English captions are the source sides of the `de` lines
(each English caption is translated once into every language), as big_vision reads
them. `max_images` keeps a reproducible sample of the images the caption file names: the
images of smallest hash under `split_seed`, found while the file is read once, so only
the sample's captions are ever held.
"""

from __future__ import annotations

import bz2
import hashlib
import heapq
import json
from pathlib import Path

from hybridbatch.artifacts import schema
from hybridbatch.corpora.formats import SOURCES, CorpusSource, captioned_images, grouped_by_item, url_download
from hybridbatch.fetch.archives import safe_extract

CAPTIONS = "coco_mt_train.jsonl.bz2"
KARPATHY = "dataset_coco.json"
IMAGES = "images"
IMAGE_ARCHIVES = ("train2014.zip", "val2014.zip")
ENGLISH_FROM = "de"  # the target language whose lines carry each English caption once
FIELDS = ("image_id", "trg_lang", "caption_tokenized", "translation_tokenized")
TRAIN_IMAGES = 113_287  # Karpathy's train and restval images: the size check's count when max_images is unset


def extract(raw_dir: Path) -> None:
    safe_extract(raw_dir / "caption_datasets.zip", raw_dir, under=KARPATHY)
    for archive in IMAGE_ARCHIVES:
        safe_extract(raw_dir / archive, raw_dir / IMAGES)


def photo_paths(raw_dir: Path) -> dict[str, str]:
    """cocoid -> the photo's path relative to the raw directory, from Karpathy's split file."""
    path = raw_dir / KARPATHY
    try:
        images = json.loads(path.read_text(encoding="utf-8"))["images"]
        return {str(image["cocoid"]): f"{IMAGES}/{image['filepath']}/{image['filename']}" for image in images}
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise schema.SchemaError(f"{path}: not Karpathy's dataset_coco.json ({error!r})") from error


class ImageSample:
    """The `size` images of smallest seeded hash among those the caption file names (all
    of them when `size` is None), found in one pass: an image's captions are held while it
    is among the smallest so far and dropped when it is pushed out. The sample's own images
    are never pushed out, so their captions are complete whatever the file's line order."""

    def __init__(self, size: int | None, seed: int):
        self.size, self.seed = size, seed
        self.captions: dict[str, dict[str, list[str]]] = {}
        self.largest: list[tuple[int, str]] = []  # a max-heap of (-hash, cocoid) over the held images

    def rank(self, cocoid: str) -> int:
        digest = hashlib.blake2b(f"{self.seed}:{cocoid}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big")

    def held(self, cocoid: str) -> dict[str, list[str]] | None:
        """The caption lists of `cocoid` by language, if it is (now) in the sample."""
        if cocoid in self.captions:
            return self.captions[cocoid]
        if self.size is not None:
            rank = self.rank(cocoid)
            if len(self.largest) == self.size:
                if rank >= -self.largest[0][0]:
                    return None
                del self.captions[heapq.heappop(self.largest)[1]]
            heapq.heappush(self.largest, (-rank, cocoid))
        return self.captions.setdefault(cocoid, {})

    def images(self) -> list[str]:
        return sorted(self.captions, key=int)


def caption_lines(path: Path):
    """(line number, record) of the COCO-35L caption file, each checked for its fields."""
    with bz2.open(path, "rt", encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise schema.SchemaError(f"{path}:{number}: not JSON ({error})") from error
            if not isinstance(record, dict) or any(not isinstance(record.get(field), str) for field in FIELDS):
                raise schema.SchemaError(f"{path}:{number}: a COCO-35L line needs string fields {list(FIELDS)}")
            yield number, record


def load(raw_dir: str | Path, languages: list[str], max_images: int | None, seed: int):
    """The captions in `languages` of a sample of the images the caption file names
    (ImageSample), read in one pass: only the sample's captions are ever held."""
    raw_dir = Path(raw_dir)
    path, photos = raw_dir / CAPTIONS, photo_paths(raw_dir)
    wanted, sample = set(languages), ImageSample(max_images, seed)
    for number, record in caption_lines(path):
        cocoid = record["image_id"].split("_")[0]
        if cocoid not in photos:
            raise schema.SchemaError(f"{path}:{number}: image {cocoid} is not in {KARPATHY}")
        captions = sample.held(cocoid)
        if captions is None:
            continue
        found = [(record["trg_lang"], record["translation_tokenized"])]
        if record["trg_lang"] == ENGLISH_FROM:
            found.append(("en", record["caption_tokenized"]))
        for lang, text in found:
            if lang in wanted:
                captions.setdefault(lang, []).append(text)
    keys, queries = sample.images(), []
    for cocoid in keys:
        for lang in languages:
            texts = sample.captions[cocoid].get(lang)
            if not texts:
                raise schema.SchemaError(f"{path}: image {cocoid} has no {lang!r} caption")
            queries += [(f"{lang}:{cocoid}:{i}", lang, cocoid, text, i) for i, text in enumerate(texts)]
    return captioned_images(raw_dir, queries, [(cocoid, photos[cocoid]) for cocoid in keys])


SOURCES.register("coco35l")(
    CorpusSource(
        images=True,
        full_images=TRAIN_IMAGES,
        download=url_download(extract),
        frames=lambda params, raw_dir: grouped_by_item(
            *load(raw_dir, params["languages"], params.get("max_images"), params["split_seed"])
        ),
    )
)
