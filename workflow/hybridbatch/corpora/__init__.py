"""Corpus sources: each turns a config entry into raw files, then canonical Parquet."""

from __future__ import annotations

from pathlib import Path

from . import cldr

SOURCES = {"cldr": cldr.download}


def download(params: dict, out_dir: str | Path) -> Path:
    """Fetch or build the raw files of one corpus into `out_dir` (checksummed)."""
    source = params["source"]
    if source not in SOURCES:
        raise ValueError(f"corpora: unknown source {source!r}; known: {sorted(SOURCES)}")
    return SOURCES[source](params["languages"], out_dir)
