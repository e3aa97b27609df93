"""Safe extraction of downloaded tar and zip archives.

A member is refused (and nothing of the archive is written) when its path is absolute,
contains `..`, or is a link, device or other special file; so no member can land
outside the target directory. Two members that would land on the same path are refused
too: the later would silently replace the earlier.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

from hybridbatch.artifacts.hashing import atomic_hashed


class UnsafeArchiveError(ValueError):
    """An archive member would leave the extraction directory or is not a plain file."""


def _member_path(archive: Path, name: str, strip_components: int) -> PurePosixPath | None:
    """The member's path relative to the target, None when stripped away entirely."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} contains '..'")
    parts = path.parts[strip_components:]
    return PurePosixPath(*parts) if parts else None


def _wanted(path: PurePosixPath, under: str | tuple[str, ...] | None) -> bool:
    if under is None:
        return True
    prefixes = (PurePosixPath(prefix).parts for prefix in ((under,) if isinstance(under, str) else under))
    return any(path.parts[: len(prefix)] == prefix for prefix in prefixes)


def _plan(
    archive: Path, strip_components: int, under: str | tuple[str, ...] | None
) -> list[tuple[object, PurePosixPath]]:
    """(member, relative path) of every regular file to extract; raises on any unsafe member."""
    plan = []
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as handle:
            for info in handle.infolist():
                path = _member_path(archive, info.filename, strip_components)
                mode = info.external_attr >> 16
                if mode and (mode & 0o170000) not in (0, 0o100000, 0o040000):
                    raise UnsafeArchiveError(f"{archive}: member {info.filename!r} is a link or special file")
                if path is not None and not info.is_dir() and _wanted(path, under):
                    plan.append((info, path))
        return plan
    with tarfile.open(archive) as handle:
        for info in handle.getmembers():
            path = _member_path(archive, info.name, strip_components)
            if info.issym() or info.islnk():
                raise UnsafeArchiveError(f"{archive}: member {info.name!r} is a link (to {info.linkname!r})")
            if not (info.isfile() or info.isdir()):
                raise UnsafeArchiveError(f"{archive}: member {info.name!r} is not a regular file or directory")
            if path is not None and info.isfile() and _wanted(path, under):
                plan.append((info, path))
    return plan


def _refuse_duplicates(archive: Path, plan: list[tuple[object, PurePosixPath]]) -> None:
    seen: set[PurePosixPath] = set()
    for _, path in plan:
        if path in seen:
            raise UnsafeArchiveError(
                f"{archive}: member {str(path)!r} appears twice (the second would overwrite the first)"
            )
        seen.add(path)


def safe_extract(
    archive: str | Path, target: str | Path, strip_components: int = 0, under: str | tuple[str, ...] | None = None
) -> list[str]:
    """Extract the regular files of `archive` (tar of any compression, or zip) into
    `target`, dropping `strip_components` leading path parts and keeping only those
    below `under` or one of its paths (after stripping), in one pass over the archive. Every
    member is checked before anything is written; each file is written through a temporary
    name. Returns the relative paths."""
    archive, target = Path(archive), Path(target)
    plan = _plan(archive, strip_components, under)
    _refuse_duplicates(archive, plan)
    if zipfile.is_zipfile(archive):
        opened, read = zipfile.ZipFile(archive), lambda handle, info: handle.open(info)
    else:
        opened, read = tarfile.open(archive), lambda handle, info: handle.extractfile(info)
    with opened as handle:
        for info, path in plan:
            with read(handle, info) as source, atomic_hashed(target.joinpath(*path.parts)) as out:
                shutil.copyfileobj(source, out, 1 << 20)
    return [str(path) for _, path in plan]
