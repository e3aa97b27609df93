"""The one way files are written: atomically (a temporary name beside the target, renamed
into place) and hashed on the way, so a stage's manifest records their sha256 without
reading them back (the audit still re-hashes from disk)."""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_WRITTEN: dict[str, tuple[int, int, str]] = {}  # absolute path -> (size, mtime_ns, sha256) as written

TEMPORARY_SUFFIX = ".tmp"  # `.<name>.tmp`: what an atomic write cut short leaves


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


class HashingWriter:
    """A binary file object that hashes every byte written through it."""

    def __init__(self, handle):
        self.handle = handle
        self.digest = hashlib.sha256()
        self.position = 0

    def write(self, data) -> int:
        self.digest.update(data)
        self.position += len(data)
        return self.handle.write(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()

    @property
    def closed(self) -> bool:
        return self.handle.closed

    def writable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def seekable(self) -> bool:
        return False


@contextmanager
def atomic_hashed(path: str | os.PathLike) -> Iterator[HashingWriter]:
    """A hashing file at a temporary name beside `path`, renamed into place on success; the
    digest is remembered for `known_sha256`. On error the temporary file is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TEMPORARY_SUFFIX}")
    try:
        with open(tmp, "wb") as handle:
            writer = HashingWriter(handle)
            yield writer
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    stat = path.stat()
    _WRITTEN[os.path.abspath(path)] = (stat.st_size, stat.st_mtime_ns, writer.digest.hexdigest())


def known_sha256(path: str | os.PathLike) -> str | None:
    """The sha256 this process computed while writing `path`, if the file is still as written
    (same size and modification time); else None."""
    record = _WRITTEN.get(os.path.abspath(path))
    if record is None:
        return None
    stat = Path(path).stat()
    return record[2] if record[:2] == (stat.st_size, stat.st_mtime_ns) else None


def write_atomic(path: str | os.PathLike, data: bytes | str) -> str:
    """Write `data` (text as UTF-8) to `path` atomically; returns its sha256."""
    with atomic_hashed(path) as sink:
        sink.write(data.encode() if isinstance(data, str) else data)
    return sink.digest.hexdigest()


def copy_atomic(source: str | os.PathLike, path: str | os.PathLike) -> str:
    """Copy `source` to `path` atomically; returns its sha256."""
    with open(source, "rb") as handle, atomic_hashed(path) as sink:
        shutil.copyfileobj(handle, sink, 1 << 20)
    return sink.digest.hexdigest()
