"""Artifact manifests: what every artifact directory holds and what produced it.

`manifest.json` in an artifact directory records the sha256, size (and Parquet row
count) of each file the stage wrote, the stage's config slice, its seed, the hashes of
its source files and the git commit, package versions, and the manifest hash of each
input artifact: a hash chain from every table back to the downloaded bytes, and the
stage's `summary` (what it returned: prepare's rows, items and groups per split). The
manifest hash covers everything but the `run` record (wall time, host, date) and the
summary, so two runs of the same stage on the same inputs have the same manifest hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from hybridbatch.artifacts.fingerprints import PACKAGE_DIR, stage_files
from hybridbatch.artifacts.hashing import TEMPORARY_SUFFIX, known_sha256, sha256_file, write_atomic
from hybridbatch.names import PARTIAL, REJECTED, THREAD_VARIABLES

MANIFEST = "manifest.json"
IGNORED = {".snakemake_timestamp"}  # Snakemake's marker in directory outputs


def ignored(name: str) -> bool:
    """Snakemake's marker, and the temporary files of an atomic write that was cut short."""
    return name in IGNORED or (name.startswith(".") and name.endswith(TEMPORARY_SUFFIX))


HASHED_ON_READ = 64 << 20  # inputs up to this size are re-hashed before a stage uses them


class ArtifactError(ValueError):
    """An artifact directory does not hold exactly the files its manifest lists."""


PACKAGES = [
    "torch",
    "transformers",
    "sentence-transformers",
    "tokenizers",
    "faiss-cpu",
    "numpy",
    "pandas",
    "pyarrow",
    "babel",
]


def artifact_dir(path: str | Path) -> Path:
    """The directory an output lives in as an artifact (itself if a directory)."""
    path = Path(path)
    return path if path.is_dir() else path.parent


def artifact_files(outputs: list[Path], root: Path) -> list[Path]:
    """Files under the outputs, leaving out manifests and nested artifacts with their own."""
    files = []
    for output in outputs:
        if output.is_file():
            files.append(output)
            continue
        for directory, subdirs, names in os.walk(output):
            here = Path(directory)
            subdirs[:] = sorted(
                d for d in subdirs if not (here / d / MANIFEST).exists() and d not in (PARTIAL, REJECTED)
            )
            files += [here / n for n in sorted(names) if not ignored(n) and not (here == root and n == MANIFEST)]
    return files


def in_scope(name: str, scope: list[str] | None) -> bool:
    """Whether an artifact's file (relative path) is one of, or under one of, `scope` (None: all)."""
    return scope is None or any(part == "." or name == part or name.startswith(part + "/") for part in scope)


def unlisted_and_missing(root: Path, manifest: dict, scope: list[str] | None = None) -> tuple[list[str], list[str]]:
    """Files in the artifact's directories that its manifest does not list, and listed
    files that are not there (paths relative to `root`; within `scope` if given)."""
    listed = {os.path.normpath(name) for name in manifest["files"]}
    # directories outside the artifact's own that it writes into (the tables' ../plots), but
    # not one that holds the artifact itself (../workflow.json sits in results/)
    outside = {os.path.dirname(name) for name in listed if name.startswith("..")}
    outside = {d for d in outside if not os.path.abspath(root).startswith(os.path.abspath(root / d) + os.sep)}
    present = {
        os.path.relpath(f, root)
        for f in artifact_files([root] + [root / d for d in outside if (root / d).is_dir()], root)
    }
    return (
        sorted(name for name in present - listed if in_scope(name, scope)),
        sorted(name for name in listed if in_scope(name, scope) and not (root / name).is_file()),
    )


def verify_artifact(
    root: Path, manifest: dict, hash_up_to: float, written_after_ns: int | None = None, scope: list[str] | None = None
) -> list[str]:
    """Problems of one artifact (within `scope`, paths relative to `root`): unlisted, missing,
    resized or (up to `hash_up_to` bytes) changed files. With `written_after_ns` (quick), only
    files modified after that time are hashed."""
    unlisted, missing = unlisted_and_missing(root, manifest, scope)
    problems = [f"unlisted file {os.path.normpath(root / name)}" for name in unlisted]
    problems += [f"missing file {os.path.normpath(root / name)}" for name in missing]
    for name, record in manifest["files"].items():
        path = root / name
        if name in missing or not path.is_file() or not in_scope(os.path.normpath(name), scope):
            continue
        stat = path.stat()
        rehash = record["bytes"] <= hash_up_to and (written_after_ns is None or stat.st_mtime_ns > written_after_ns)
        if stat.st_size != record["bytes"] or (rehash and sha256_file(path) != record["sha256"]):
            problems.append(f"changed file {os.path.normpath(path)}")
    return problems


def read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("files"), dict) or not isinstance(manifest.get("inputs"), dict):
            raise ValueError("no 'files' or 'inputs' table")
        return manifest
    except (OSError, ValueError) as error:
        raise ArtifactError(f"{path}: malformed manifest ({error})") from error


def verify_inputs(inputs: list[str | Path]) -> None:
    """Before a stage runs: what it reads of each input artifact (the input files, and the
    whole of input directories) is exactly what the artifact's manifest lists, with their
    sizes (and hashes, for files up to 64 MB). Files of an artifact that the stage does not
    read are left to the audit (a storage plugin fetches only a job's inputs). An input with
    no manifest is refused here, before the stage runs, not after."""
    scopes: dict[Path, list[str]] = {}
    for path in inputs:
        owner = owning_manifest(path)
        if owner is None:
            raise FileNotFoundError(f"{path}: input has no {MANIFEST} (was it made by this workflow?)")
        scopes.setdefault(owner, []).append(os.path.normpath(os.path.relpath(os.path.abspath(path), owner.parent)))
    for owner, scope in scopes.items():
        problems = verify_artifact(owner.parent, read_manifest(owner), HASHED_ON_READ, scope=scope)
        if problems:
            raise ArtifactError(f"{owner.parent}: does not match its {MANIFEST}: " + "; ".join(problems))


def describe_file(path: Path) -> dict:
    """sha256 (as computed while writing, where this process wrote the file), size, Parquet rows."""
    record = {"sha256": known_sha256(path) or sha256_file(path), "bytes": path.stat().st_size}
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        record["rows"] = pq.read_metadata(path).num_rows
    return record


def owning_manifest(path: str | Path) -> Path | None:
    """The manifest of the artifact that holds `path` (searching upwards)."""
    path = Path(os.path.abspath(path))  # not resolved: a symlinked results/ keeps its relative chain
    for candidate in [path] + list(path.parents):
        if (candidate / MANIFEST).is_file():
            return candidate / MANIFEST
    return None


def manifest_hash(manifest: dict) -> str:
    """The hash of everything but the run record and the summary (what the files, hashed
    already, say again)."""
    content = {key: value for key, value in manifest.items() if key not in ("run", "summary")}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def code_version(module: str) -> dict:
    sources = stage_files(module)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(Path(path).relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + Path(path).read_bytes())
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"module": module, "sources_sha256": digest.hexdigest(), "git_commit": commit}


def package_versions() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def thread_settings() -> dict:
    """The thread counts a stage ran with (config `compute.threads`, set by the workflow)."""
    settings = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    if "torch" in sys.modules:
        settings["torch"] = sys.modules["torch"].get_num_threads()
    return settings


def find_seed(params: dict):
    if "seed" in params:
        return params["seed"]
    for value in params.values():
        if isinstance(value, dict) and "seed" in value:
            return value["seed"]
    return None


def write_manifest(
    stage: str,
    module: str,
    params: dict,
    inputs: list[str | Path],
    outputs: list[str | Path],
    seconds: float,
    summary: dict | None = None,
) -> Path:
    """Write the manifest of the artifact made by `stage` into the first output's directory,
    with the stage's `summary` (what it returned: e.g. prepare's rows, items and groups per
    split, a training run's saved step)."""
    outputs = [Path(p) for p in outputs]
    root = artifact_dir(outputs[0])
    upstream = {}
    for path in inputs:
        owner = owning_manifest(path)
        if owner is None:
            raise FileNotFoundError(f"{path}: input has no {MANIFEST} (was it made by this workflow?)")
        relative = os.path.relpath(owner.parent, root)
        upstream[relative] = manifest_hash(json.loads(owner.read_text()))
    manifest = {
        "stage": stage,
        "files": {os.path.relpath(f, root): describe_file(f) for f in artifact_files(outputs, root)},
        "params": params,
        "seed": find_seed(params),
        "inputs": dict(sorted(upstream.items())),
        "code": code_version(module),
        "packages": package_versions(),
        "threads": thread_settings(),
        "summary": json.loads(json.dumps(summary, default=str)) if summary else None,
        "run": {
            "wall_seconds": round(seconds, 3),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": platform.node(),
        },
    }
    path = root / MANIFEST
    write_atomic(path, json.dumps(manifest, indent=1, sort_keys=True))
    return path


def upstream_closure(paths: list[str | Path]) -> dict[Path, str]:
    """Every artifact that `paths` were built from, themselves included: directory -> manifest hash."""
    found: dict[Path, str] = {}
    pending = [owning_manifest(path) for path in paths]
    while pending:
        owner = pending.pop()
        if owner is None or owner.parent in found:
            continue
        manifest = read_manifest(owner)
        found[owner.parent] = manifest_hash(manifest)
        pending += [owning_manifest(owner.parent / relative) for relative in manifest["inputs"]]
    return found


def write_record(record: str | Path, final: list[str | Path], inputs: list[str | Path]) -> None:
    """The workflow record: every artifact the run's DAG made (paths relative to the
    record's directory, with manifest hashes), so an audit can tell what should exist.
    `final` are the artifact directories of the last stage, whose manifest is written after this."""
    record = Path(record)
    base = os.path.abspath(record.parent)
    artifacts = {os.path.relpath(path, base): digest for path, digest in upstream_closure(inputs).items()}
    content = {
        "final": sorted(os.path.relpath(os.path.abspath(p), base) for p in final),
        "artifacts": dict(sorted(artifacts.items())),
    }
    write_atomic(record, json.dumps(content, indent=1, sort_keys=True))
