"""The import stage: a user's own file or directory (a corpus, pairs, a model) enters the
workflow as an artifact. Its files are copied into a new directory and hashed on the way;
the stage's manifest records them with the source path, so that every stage given the
import checks its files before it runs, and the audit and the lineage of a table reach it.

    python -m hybridbatch import --params '{"source": "my_pairs"}' --out results/imports/my_pairs
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TypedDict

from hybridbatch.artifacts.hashing import atomic_hashed
from hybridbatch.artifacts.manifest import MANIFEST


class ImportParams(TypedDict):
    source: str  # a file or a directory of the user's


def import_files(params: ImportParams, out: str | Path) -> dict[str, int]:
    """Copy `params.source` (a file, or a directory's files) into the new directory `out`."""
    source, out_dir = Path(params["source"]), Path(out)
    if not source.exists():
        raise FileNotFoundError(f"import: params.source {source} does not exist")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir}: not empty (an import never overwrites an artifact)")
    files = {source.name: source} if source.is_file() else {
        path.relative_to(source).as_posix(): path for path in sorted(source.rglob("*")) if path.is_file()
    }  # fmt: skip
    if not files:
        raise ValueError(f"import: params.source {source} holds no files")
    if MANIFEST in files:
        raise ValueError(f"import: {source / MANIFEST} is an artifact's manifest: give its files, not the artifact")
    for relative, path in files.items():
        with path.open("rb") as reader, atomic_hashed(out_dir / relative) as writer:
            shutil.copyfileobj(reader, writer, 1 << 20)
    return {"files": len(files), "bytes": sum(path.stat().st_size for path in files.values())}
