"""What a corpus format provides, and the registry the formats register into.

A format turns a config entry into raw files (`download`, checksummed) and raw files
into canonical frames (`frames`: queries and passages with a `group` column, the unit
of the train/test split, and qrels); a format too large for frames writes its splits
itself (`write_splits`). Adding a format is one module that registers itself here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NotRequired, TypedDict

import pandas as pd
import pyarrow as pa

from hybridbatch.artifacts import schema
from hybridbatch.fetch.hf_datasets import stream_tables
from hybridbatch.registry import Registry

Frames = tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]


@dataclass(frozen=True)
class CorpusSource:
    download: Callable[[dict, Path, str], Path]  # (params, raw dir, config key) -> raw dir
    frames: Callable[[dict, Path], Frames] | None = None  # (params, raw dir) -> queries, passages, qrels
    write_splits: Callable[[dict, Path, Path], dict] | None = None  # (params, raw dir, out dir) -> row counts
    images: bool = False  # its candidates are images (images.parquet), not passages
    full_images: int | None = None  # images of the published corpus, where the format fixes it (size checks)


class CorpusParams(TypedDict):
    """A corpus entry of the config (`corpora.<name>`, its schema in config.schema.yaml) and
    its name: the params of the download and prepare stages. Keys of one format only are
    not required."""

    name: str
    source: str
    languages: list[str]
    test_fraction: float
    split_seed: int
    mirror: NotRequired[str | None]
    sha256: NotRequired[dict[str, str]]
    url: NotRequired[str]
    urls: NotRequired[dict[str, str]]
    git: NotRequired[dict]
    hf: NotRequired[dict]
    split: NotRequired[str]
    max_images: NotRequired[int]
    max_queries: NotRequired[int]
    negatives_per_query: NotRequired[int]


SOURCES: Registry[CorpusSource] = Registry("corpus source")


def grouped_by_item(queries: pd.DataFrame, passages: pd.DataFrame, qrels: pd.DataFrame) -> Frames:
    """Frames split by item: an item's queries and passages land in the same split."""
    return queries.assign(group=queries.item_id), passages.assign(group=passages.item_id), qrels


def streamed(raw_tables: Callable[[dict], dict]) -> Callable[[dict, Path, str], Path]:
    """A download that streams Hugging Face dataset files (or their mirror) into raw shards."""

    def download(params: dict, out_dir: Path, key: str) -> Path:
        return stream_tables(
            raw_tables(params), params["hf"], params.get("mirror"), params.get("sha256", {}), out_dir, f"{key}.mirror"
        )

    return download


def url_download(extract: Callable[[Path], None]) -> Callable[[dict, Path, str], Path]:
    """A download of the files named under `urls` (each pinned by sha256, or null), then `extract` of the raw dir."""
    from hybridbatch.fetch.download import fetch_files, url_fetcher, url_files

    def download(params: dict, out_dir: Path, key: str) -> Path:
        files = url_files(params, sorted(params["urls"]), key)
        raw_dir = fetch_files(files, url_fetcher(params["urls"]), params.get("mirror"), out_dir, f"{key}.mirror")
        extract(raw_dir)
        return raw_dir

    return download


def image_records(raw_dir: Path, images: list[tuple[str, str]]) -> pd.DataFrame:
    """Canonical images (schema.IMAGES) from (item id, path relative to `raw_dir`): each
    file must exist, pass PIL's checks (PNG chunk checksums) and decode in full (a
    truncated JPEG passes the checks); its sha256 is recorded so every reader can check it."""
    from hybridbatch.artifacts.images import read_image

    rows = []
    for item_id, relative in images:
        _, digest = read_image(raw_dir / relative, checks=True)
        rows.append((f"image:{item_id}", item_id, relative, digest))
    return pd.DataFrame(rows, columns=schema.IMAGES.names)


def captioned_images(raw_dir: Path, captions: list[tuple], images: list[tuple[str, str]]) -> Frames:
    """An image-text corpus's frames: captions (schema.CAPTIONS rows), images
    (image_records), and each caption relevant to its image."""
    queries = pd.DataFrame(captions, columns=schema.CAPTIONS.names)
    images = image_records(raw_dir, images)
    qrels = queries[["qid", "item_id"]].merge(images[["pid", "item_id"]], on="item_id")[["qid", "pid"]]
    return queries, images, qrels.assign(relevance=1)


def candidate_table(image_corpus: bool) -> tuple[str, pa.Schema]:
    """The file and schema of a split's retrieval candidates: passages, or images."""
    return ("images", schema.IMAGES) if image_corpus else ("passages", schema.PASSAGES)


def write_split(
    split_dir: Path,
    queries: pd.DataFrame,
    candidates: Iterable[pa.Table],
    qrels: pd.DataFrame,
    image_corpus: bool = False,
) -> dict[str, int]:
    """queries, candidates (passages or images, written as they come) and qrels of one
    split; their row counts."""
    name, table_schema = candidate_table(image_corpus)
    schema.write_parquet(queries, split_dir / "queries.parquet", schema.CAPTIONS if image_corpus else schema.QUERIES)
    n_candidates = schema.write_batches(candidates, split_dir / f"{name}.parquet", table_schema)
    schema.write_parquet(qrels, split_dir / "qrels.parquet", schema.QRELS)
    return {"queries": len(queries), name: n_candidates, "qrels": len(qrels)}
