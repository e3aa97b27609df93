"""Hugging Face dataset sources: files of a dataset repository at a pinned revision, read
with `datasets` in streaming mode and written as raw Parquet shards, so corpora of
tens of millions of passages never sit in memory or on disk twice.

Each raw table is a list of file patterns in the repository. A local mirror holding the
same files under the same relative paths is read instead of the hub, and its files are
checked against the config's sha256 pins.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from hybridbatch.artifacts.hashing import atomic_hashed, sha256_file, write_atomic
from hybridbatch.artifacts.schema import SchemaError
from hybridbatch.fetch.download import ChecksumError, DownloadError, write_checksums

COMMIT = re.compile(r"^[0-9a-f]{40}$")
log = logging.getLogger(__name__)


UNPINNED = "unpinned"


class UnpinnedRevision(ValueError):
    """A config names a hub repository without a commit it could verify."""


def resolve_revision(repo: str, revision: str, key: str, repo_type: str = "dataset") -> str:
    """The commit of `revision` (a branch or tag is resolved once, so every file of one
    download comes from the same commit). `unpinned` is refused, naming the config `key`."""
    if revision == UNPINNED:
        raise UnpinnedRevision(
            f"config key {key}: {repo} has no pinned commit (no commit could be verified offline when the config "
            f"was written); set it to a 40-hex commit of the {repo_type} repository, "
            "or to a branch to resolve and record"
        )
    if COMMIT.match(revision):
        return revision
    from huggingface_hub import HfApi

    info = HfApi().dataset_info if repo_type == "dataset" else HfApi().model_info
    commit = info(repo, revision=revision).sha
    log.warning("%s: revision %r is not a commit; resolved to %s (pin it in the config)", repo, revision, commit)
    return commit


def mirror_listing(mirror: str | None) -> list[str]:
    """Every file of the mirror directory (relative paths, sorted); none without a mirror."""
    if not mirror or not Path(mirror).is_dir():
        return []
    return sorted(p.relative_to(mirror).as_posix() for p in Path(mirror).rglob("*") if p.is_file())


def mirror_files(mirror: Path, available: list[str], patterns: list[str], sha256: dict[str, str]) -> list[str] | None:
    """The files of `available` (the mirror's listing) matching `patterns`, None when a
    pattern matches none. Pinned files are hash-checked."""
    found = []
    for pattern in patterns:
        matches = [name for name in available if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            return None
        found += matches
    for name in found:
        if name in sha256 and (actual := sha256_file(mirror / name)) != sha256[name]:
            raise ChecksumError(f"{mirror / name}: sha256 mismatch, expected {sha256[name]}, got {actual}")
    return found


def stream_rows(builder: str, data_files: list[str], batch_rows: int):
    """Record batches (as pyarrow tables) of `data_files` read by a `datasets` builder
    ('json' or 'text') in streaming mode."""
    import datasets

    stream = datasets.load_dataset(builder, data_files=data_files, split="train", streaming=True)
    for batch in stream.iter(batch_size=batch_rows):
        yield pa.Table.from_pydict(batch)


def write_shards(
    builder: str, data_files: list[str], out_dir: Path, name: str, shard_rows: int
) -> tuple[dict[str, str], int]:
    """Stream `data_files` into out_dir/name/shard-NNNNN.parquet; returns ({path: sha256}, rows)."""
    table_dir = out_dir / name
    table_dir.mkdir(exist_ok=True)
    digests, rows = {}, 0
    for shard, table in enumerate(tqdm(stream_rows(builder, data_files, shard_rows), desc=name, unit="shard")):
        path = table_dir / f"shard-{shard:05d}.parquet"
        with atomic_hashed(path) as sink:
            pq.write_table(table, sink)
        digests[str(path.relative_to(out_dir))] = sink.digest.hexdigest()
        rows += table.num_rows
    if not rows:
        raise DownloadError(f"{table_dir}: no rows in {data_files}")
    return digests, rows


def stream_tables(
    tables: dict[str, tuple[str, str, list[str]]],
    hf: dict[str, dict],
    mirror: str | None,
    sha256: dict[str, str],
    out_dir: str | Path,
    mirror_key: str,
    shard_rows: int = 500_000,
) -> Path:
    """Write each raw table (name -> (repository role in `hf`, builder, file patterns)) as
    `out_dir/<name>/shard-NNNNN.parquet`, then `source.json` (repositories, commits and
    files read) and SHA256SUMS last."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    commits: dict[str, str] = {}
    provenance, digests = {}, {}
    available = mirror_listing(mirror)
    for name, (role, builder, patterns) in sorted(tables.items()):
        local = mirror_files(Path(mirror), available, patterns, sha256) if available else None
        try:
            if local is not None:
                data_files = [str(Path(mirror) / f) for f in local]
                provenance[name] = {"mirror": str(mirror), "files": local}
            else:
                repo = hf[role]["repo"]
                commits.setdefault(
                    role,
                    resolve_revision(
                        repo, hf[role]["revision"], f"{mirror_key.removesuffix('.mirror')}.hf.{role}.revision"
                    ),
                )
                data_files = [f"hf://datasets/{repo}@{commits[role]}/{pattern}" for pattern in patterns]
                provenance[name] = {"repo": repo, "commit": commits[role], "files": patterns}
            written, provenance[name]["rows"] = write_shards(builder, data_files, out_dir, name, shard_rows)
        except (DownloadError, ChecksumError, UnpinnedRevision):
            raise
        except Exception as error:  # offline mode, no network, a gated repository without a token, bad files
            if local is not None:
                raise DownloadError(f"{out_dir / name}: the mirrored files could not be read ({error!r})") from error
            where = f"the mirror {mirror} has no files matching {patterns} and " if mirror else "no mirror is set and "
            raise DownloadError(
                f"{out_dir / name}: {where}the Hugging Face dataset {hf[role]['repo']} could not be reached "
                f"({error!r}); set {mirror_key} to a directory holding {patterns}"
            ) from error
        digests.update(written)
    digests["source.json"] = write_atomic(out_dir / "source.json", json.dumps(provenance, indent=2, sort_keys=True))
    return write_checksums(out_dir, digests)


def shards(raw_dir: str | Path, name: str) -> list[Path]:
    found = sorted((Path(raw_dir) / name).glob("shard-*.parquet"))
    if not found:
        raise DownloadError(f"{Path(raw_dir) / name}: no shards")
    return found


def read_rows(raw_dir: str | Path, name: str) -> Iterator[pa.Table]:
    """The shards of one raw table, in order."""
    for shard in shards(raw_dir, name):
        yield pq.read_table(shard)


def tsv_rows(raw_dir: str | Path, name: str, fields: int) -> Iterator[list[str]]:
    """The tab-separated fields of each line of a raw 'text' table, one shard at a time."""
    number = 0
    for table in read_rows(raw_dir, name):
        for line in table.column("text").to_pylist():
            number += 1
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != fields:
                raise SchemaError(
                    f"{Path(raw_dir) / name}: line {number} has {len(parts)} tab-separated fields, not {fields}"
                )
            yield parts
