"""Raw-file storage for the download stage: mirrors, URL and git fetchers, SHA256SUMS checks."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from hybridbatch.artifacts.hashing import copy_atomic, known_sha256, sha256_file, write_atomic
from hybridbatch.fetch.archives import safe_extract
from hybridbatch.names import PARTIAL, REJECTED

log = logging.getLogger(__name__)

CHECKSUM_FILE = "SHA256SUMS"


class ChecksumError(ValueError):
    """A raw file does not match the hash recorded for it."""


def write_checksummed(out_dir: Path, files: dict[str, bytes]) -> Path:
    """Write `files` into `out_dir` and record their hashes in SHA256SUMS (written last)."""
    for name, data in sorted(files.items()):
        write_atomic(out_dir / name, data)
    return write_checksums(out_dir, {name: hashlib.sha256(data).hexdigest() for name, data in files.items()})


def write_checksums(out_dir: Path, digests: dict[str, str]) -> Path:
    """SHA256SUMS for `digests` (name -> sha256), written last so its presence means complete."""
    sums = "".join(f"{digests[name]}  {name}\n" for name in sorted(digests))
    write_atomic(out_dir / CHECKSUM_FILE, sums.encode())
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


def partial_path(out_dir: Path, name: str) -> Path:
    """Where a download into `out_dir` grows: beside that directory, in `.partial/`, since
    Snakemake deletes a failed job's output directory and the bytes fetched so far with it.
    The next attempt resumes from there (an HTTP Range request)."""
    return out_dir.parent / PARTIAL / out_dir.name / f"{name}.part"


def rejected_path(out_dir: Path, name: str) -> Path:
    """Where a download whose hash is wrong is kept: beside `out_dir`, outside it."""
    return out_dir.parent / REJECTED / out_dir.name / name


def fetch_url(url: str, target: Path, part: Path, timeout: float = 60.0) -> None:
    """Fetch `url` into `target` through `part`, resuming what an earlier attempt left there."""
    part.parent.mkdir(parents=True, exist_ok=True)
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        mode = "ab" if have and response.status == 206 else "wb"
        with open(part, mode) as handle:
            while chunk := response.read(1 << 20):
                handle.write(chunk)
    shutil.move(part, target)
    for empty in (part.parent, part.parent.parent):  # .partial/<name>/ and .partial/, once unused
        with contextlib.suppress(OSError):
            empty.rmdir()


GITHUB_ARCHIVE = "https://codeload.github.com/{repository}/tar.gz/{commit}"


def url_fetcher(urls: dict[str, str]) -> tuple[str, Callable[[list[str], Path], None]]:
    """(description, fetch): fetch each name from its URL in `urls`."""

    def fetch(names: list[str], out_dir: Path) -> None:
        for name in names:
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            fetch_url(urls[name], out_dir / name, partial_path(out_dir, name))

    first = min(urls.values())
    return (first if len(urls) == 1 else f"{first} (and {len(urls) - 1} more URLs)"), fetch


def git_fetcher(git: dict) -> tuple[str, Callable[[list[str], Path], None]]:
    """(description, fetch): files under `git['path']` of a repository at `git['commit']`,
    from the archive of that commit, safely extracted (the archive is then deleted)."""
    archive_url = GITHUB_ARCHIVE.format(**git)

    def fetch(names: list[str], out_dir: Path) -> None:
        archive = out_dir / f".{git['commit']}.tar.gz"
        fetch_url(archive_url, archive, partial_path(out_dir, archive.name))
        staging = out_dir / ".extract"
        shutil.rmtree(staging, ignore_errors=True)
        safe_extract(archive, staging, strip_components=1, under=git["path"])
        for name in names:
            member = staging / git["path"] / name
            if not member.is_file():
                raise DownloadError(f"{archive_url}: no file {git['path']}/{name} at commit {git['commit']}")
            (out_dir / name).parent.mkdir(parents=True, exist_ok=True)
            os.replace(member, out_dir / name)
        shutil.rmtree(staging)
        archive.unlink()

    return f"{archive_url} ({git['path']}/)", fetch


def url_files(params: dict, names: list[str], key: str) -> dict[str, str | None]:
    """name -> pinned sha256 of url-sourced files; a `null` pin (a source that publishes no
    checksum, e.g. XM3600) is accepted with a warning: the observed hash lands in
    SHA256SUMS and the manifest, to be pinned from then on."""
    files = {name: params.get("sha256", {}).get(name) for name in names}
    for name in sorted(n for n, digest in files.items() if digest is None):
        log.warning(
            "%s: no sha256 pinned under %s.sha256; the observed hash is recorded in SHA256SUMS: pin it", name, key
        )
    return files


def fetch_files(
    files: dict[str, str | None],
    fetcher: tuple[str, Callable[[list[str], Path], None]],
    mirror: str | None,
    out_dir: str | Path,
    mirror_key: str,
) -> Path:
    """Place each file of `files` (relative name -> pinned sha256, or None where the source
    itself is pinned, e.g. a git commit) in `out_dir`: from `mirror` when it holds the
    file, else through `fetcher`. Check every pinned hash and write SHA256SUMS last.

    A file whose hash is wrong is moved beside `out_dir`, to `.rejected/<out_dir
    name>/<name>`, where Snakemake's removal of a failed job's output does not reach it
    (the job's output directory itself, an earlier good download included, is removed
    when the job fails); the error names the file, the expected and actual hash, and
    where it was kept."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    description, fetch = fetcher
    origins, missing = {}, []
    for name in sorted(files):
        source = Path(mirror) / name if mirror else None
        if source is not None and source.is_file():
            copy_atomic(source, out_dir / name)
            origins[name] = str(source)
        else:
            missing.append(name)
    if missing:
        try:
            fetch(missing, out_dir)
        except (urllib.error.URLError, OSError) as error:
            where = f"the mirror {mirror} lacks {missing} and " if mirror else "no mirror is set and "
            raise DownloadError(
                f"{out_dir}: {where}{description} could not be fetched ({error}); "
                f"set {mirror_key} to a directory holding {sorted(files)}"
            ) from error
    digests = {}
    for name, expected in sorted(files.items()):
        target = out_dir / name
        digests[name] = known_sha256(target) or sha256_file(target)  # hashed while written, where it was
        if expected is not None and digests[name] != expected:
            rejected = rejected_path(out_dir, name)
            rejected.parent.mkdir(parents=True, exist_ok=True)
            os.replace(target, rejected)
            origin = origins.get(name, f"{description} {name}")
            raise ChecksumError(
                f"{origin}: sha256 mismatch, expected {expected}, got {digests[name]} (kept as {rejected})"
            )
    return write_checksums(out_dir, digests)
