"""Corpus sources: each turns a config entry into raw files, then canonical Parquet."""

from __future__ import annotations

from pathlib import Path

from ..download import fetch_files
from . import cldr


def download(params: dict, out_dir: str | Path) -> Path:
    """Fetch or build the raw files of one corpus into `out_dir` (checksummed)."""
    source = params["source"]
    if source == "cldr":
        return cldr.download(params["languages"], out_dir)
    if source == "lareqa":
        key = f"corpora.{params.get('name', '<name>')}"
        unhashed = [lang for lang in params["languages"] if lang not in params["sha256"]]
        if unhashed:
            raise ValueError(f"config key {key}.sha256: no hash for languages {unhashed}")
        files = {f"{lang}.json": params["sha256"][lang] for lang in params["languages"]}
        return fetch_files(files, params["url"], params.get("mirror"), out_dir, f"{key}.mirror")
    raise ValueError(f"corpora: unknown source {source!r}")
