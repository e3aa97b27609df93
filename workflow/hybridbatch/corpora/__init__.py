"""Corpus sources: each format (one module, registered in `formats.SOURCES`) turns a config
entry into raw files, then canonical Parquet.

Where the raw files come from, by config key: `url` (files over HTTP(S), each pinned
by sha256), `git` (files of a repository at a commit, from its archive), `hf` (files
of Hugging Face dataset repositories at a revision, streamed with `datasets`), or
`urls` (named files at their own URLs); `mirror` is a local directory holding the
same files under the same relative paths, read first and checked the same way.
"""

from __future__ import annotations

from pathlib import Path

from hybridbatch.corpora import cldr, coco35l, emoji, lareqa, miracl, mmarco, xm3600  # noqa: F401  (each registers its format)
from hybridbatch.corpora.formats import SOURCES, CorpusParams


def download(params: CorpusParams, out: str | Path) -> Path:
    """Fetch or build the raw files of one corpus into `out` (checksummed)."""
    key = f"corpora.{params.get('name', '<name>')}"
    return SOURCES.lookup(params["source"], f"{key}.source").download(params, Path(out), key)
