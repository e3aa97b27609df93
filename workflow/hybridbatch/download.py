"""Raw-file storage for the download stage: atomic writes and SHA256SUMS checks."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

CHECKSUM_FILE = "SHA256SUMS"


class ChecksumError(ValueError):
    """A raw file does not match the hash recorded for it."""


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_checksummed(out_dir: Path, files: dict[str, bytes]) -> Path:
    """Write `files` into `out_dir` and record their hashes in SHA256SUMS (written last)."""
    for name, data in sorted(files.items()):
        atomic_write_bytes(out_dir / name, data)
    sums = "".join(f"{hashlib.sha256(files[name]).hexdigest()}  {name}\n" for name in sorted(files))
    atomic_write_bytes(out_dir / CHECKSUM_FILE, sums.encode())
    return out_dir


def read_checksums(sums_file: Path) -> dict[str, str]:
    if not sums_file.is_file():
        raise ChecksumError(f"{sums_file}: checksum file missing")
    expected = {}
    for number, line in enumerate(sums_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        digest, sep, name = line.partition("  ")
        if not sep or len(digest) != 64:
            raise ChecksumError(f"{sums_file}:{number}: malformed line {line!r}")
        expected[name.strip()] = digest
    return expected


def verify_checksums(raw_dir: str | Path) -> dict[str, str]:
    """Re-hash every file listed in `raw_dir`/SHA256SUMS; raise naming the first mismatch."""
    raw_dir = Path(raw_dir)
    expected = read_checksums(raw_dir / CHECKSUM_FILE)
    for name, digest in expected.items():
        path = raw_dir / name
        if not path.is_file():
            raise ChecksumError(f"{path}: listed in {CHECKSUM_FILE} but missing")
        actual = sha256_file(path)
        if actual != digest:
            raise ChecksumError(f"{path}: sha256 mismatch, expected {digest}, got {actual}")
    return expected
