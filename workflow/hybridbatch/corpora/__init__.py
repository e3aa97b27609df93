"""Corpus sources: each turns a config entry into raw files, then canonical Parquet.

Where the raw files come from, by config key: `url` (files over HTTP(S), each pinned
by sha256), `git` (files of a repository at a commit, from its archive), `hf` (files
of Hugging Face dataset repositories at a revision, streamed with `datasets`), or
`urls` (named files at their own URLs); `mirror` is a local directory holding the
same files under the same relative paths, read first and checked the same way.
"""

from __future__ import annotations

from pathlib import Path

from ..download import fetch_files, git_fetcher, url_fetcher
from ..streaming import stream_tables
from . import cldr, miracl, mmarco, xm3600

STREAMED = {"miracl": miracl, "mmarco": mmarco}


def download(params: dict, out_dir: str | Path) -> Path:
    """Fetch or build the raw files of one corpus into `out_dir` (checksummed)."""
    source = params["source"]
    key = f"corpora.{params.get('name', '<name>')}"
    if source == "cldr":
        return cldr.download(params["languages"], out_dir)
    if source in STREAMED:
        tables = STREAMED[source].raw_tables(params)
        return stream_tables(tables, params["hf"], params.get("mirror"), params.get("sha256", {}), out_dir, f"{key}.mirror")
    if source == "lareqa":
        files, fetcher = lareqa_files(params, key)
    elif source == "xm3600":
        files, fetcher = {name: params["sha256"][name] for name in params["urls"]}, url_fetcher(params["urls"])
    else:
        raise ValueError(f"config key {key}.source: unknown source {source!r}")
    raw_dir = fetch_files(files, fetcher, params.get("mirror"), out_dir, f"{key}.mirror")
    if source == "xm3600":
        xm3600.extract(raw_dir)
    return raw_dir


def lareqa_files(params: dict, key: str):
    """`<lang>.json` per language: from `url` (every file pinned by sha256) or from `git`
    (the commit pins them; sha256 pins are checked where given)."""
    hashes = params.get("sha256", {})
    if "git" in params:
        return {f"{lang}.json": hashes.get(lang) for lang in params["languages"]}, git_fetcher(params["git"])
    unhashed = [lang for lang in params["languages"] if lang not in hashes]
    if unhashed:
        raise ValueError(f"config key {key}.sha256: no hash for languages {unhashed}")
    files = {f"{lang}.json": hashes[lang] for lang in params["languages"]}
    return files, url_fetcher({name: params["url"].rstrip("/") + "/" + name for name in files})
