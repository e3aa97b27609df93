"""Raw-file storage for the download stage: atomic writes and SHA256SUMS checks."""

from __future__ import annotations

import hashlib
import os
import shutil
import urllib.error
import urllib.request
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
    return write_checksums(out_dir, {name: hashlib.sha256(data).hexdigest() for name, data in files.items()})


def write_checksums(out_dir: Path, digests: dict[str, str]) -> Path:
    """SHA256SUMS for `digests` (name -> sha256), written last so its presence means complete."""
    sums = "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
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


class DownloadError(OSError):
    """A file could be neither copied from the mirror nor fetched."""


def fetch_url(url: str, target: Path, timeout: float = 60.0) -> None:
    """Fetch `url` into `target` through `target.part`, resuming a partial download."""
    part = target.with_name(f".{target.name}.part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        mode = "ab" if have and response.status == 206 else "wb"
        with open(part, mode) as handle:
            while chunk := response.read(1 << 20):
                handle.write(chunk)
    os.replace(part, target)


def fetch_files(files: dict[str, str], url: str, mirror: str | None, out_dir: str | Path, mirror_key: str) -> Path:
    """Place each file of `files` (name -> sha256) in `out_dir`, from `mirror` when it holds
    the file, else from `url` + name; check every hash and write SHA256SUMS last.

    A file whose hash is wrong is kept aside as `<name>.rejected` and the error names
    the file, the expected and the actual hash."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, expected in sorted(files.items()):
        target = out_dir / name
        source = Path(mirror) / name if mirror else None
        if source is not None and source.is_file():
            tmp = target.with_name(f".{target.name}.part")
            shutil.copyfile(source, tmp)
            os.replace(tmp, target)
            origin = str(source)
        else:
            origin = url.rstrip("/") + "/" + name
            try:
                fetch_url(origin, target)
            except (urllib.error.URLError, OSError) as error:
                where = f"the mirror {mirror} has no {name} and " if mirror else "no mirror is set and "
                raise DownloadError(
                    f"{target}: {where}{origin} could not be fetched ({error}); "
                    f"set {mirror_key} to a directory holding {sorted(files)}"
                ) from error
        actual = sha256_file(target)
        if actual != expected:
            rejected = target.with_name(f"{target.name}.rejected")
            os.replace(target, rejected)
            raise ChecksumError(f"{origin}: sha256 mismatch, expected {expected}, got {actual} (kept as {rejected})")
    return write_checksums(out_dir, files)
