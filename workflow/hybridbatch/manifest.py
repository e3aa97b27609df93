"""Artifact manifests: what every artifact directory holds and what produced it.

`manifest.json` in an artifact directory records the sha256, size (and Parquet row
count) of each file the stage wrote, the stage's config slice, its seed, the hashes of
its source files and the git commit, package versions, and the manifest hash of each
input artifact: a hash chain from every table back to the downloaded bytes. The
manifest hash covers everything but the `run` record (wall time, host, date), so two
runs of the same stage on the same inputs have the same manifest hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

from .download import sha256_file
from .sources import PACKAGE_DIR, source_files

MANIFEST = "manifest.json"
PACKAGES = ["torch", "transformers", "sentence-transformers", "tokenizers", "faiss-cpu", "numpy", "pandas", "pyarrow", "babel"]


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
            subdirs[:] = sorted(d for d in subdirs if not (here / d / MANIFEST).exists())
            files += [here / name for name in sorted(names) if not (here == root and name == MANIFEST)]
    return files


def describe_file(path: Path) -> dict:
    record = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        record["rows"] = pq.read_metadata(path).num_rows
    return record


def owning_manifest(path: str | Path) -> Path | None:
    """The manifest of the artifact that holds `path` (searching upwards)."""
    path = Path(path).resolve()
    for candidate in [path] + list(path.parents):
        if (candidate / MANIFEST).is_file():
            return candidate / MANIFEST
    return None


def manifest_hash(manifest: dict) -> str:
    content = {key: value for key, value in manifest.items() if key != "run"}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def code_version(module: str) -> dict:
    sources = source_files(module)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(Path(path).relative_to(PACKAGE_DIR).as_posix().encode() + b"\0" + Path(path).read_bytes())
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=10
        ).stdout.strip() or None
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


def find_seed(params: dict):
    if "seed" in params:
        return params["seed"]
    for value in params.values():
        if isinstance(value, dict) and "seed" in value:
            return value["seed"]
    return None


def write_manifest(stage: str, module: str, params: dict, inputs: list[str | Path], outputs: list[str | Path], seconds: float) -> Path:
    """Write the manifest of the artifact made by `stage` into the first output's directory."""
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
        "run": {"wall_seconds": round(seconds, 3), "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "host": platform.node()},
    }
    path = root / MANIFEST
    tmp = path.with_name(f".{MANIFEST}.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path
