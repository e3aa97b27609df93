"""Verify artifacts against their manifests, trace the lineage of a table, and list runs.

    hybridbatch audit [results]            re-hash everything; exit 1 naming what failed
    hybridbatch lineage TABLE [--row N]    the chain of artifacts behind a table (or a row)
    hybridbatch runs [results]             every trained run: params and headline metrics
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from .download import sha256_file
from .manifest import MANIFEST, manifest_hash, owning_manifest


@dataclass
class Artifact:
    path: Path
    manifest: dict
    problems: list[str] = field(default_factory=list)

    @property
    def inputs(self) -> list[Path]:
        return [Path(os.path.normpath(self.path / relative)) for relative in self.manifest["inputs"]]


def load_artifacts(results: str | Path) -> dict[Path, Artifact]:
    found = {}
    for directory, _, names in os.walk(results):
        if MANIFEST in names:
            path = Path(os.path.normpath(directory))
            found[path] = Artifact(path, json.loads((path / MANIFEST).read_text()))
    return found


def check_files(artifacts: dict[Path, Artifact]) -> None:
    """Record missing and changed files of every artifact (streaming sha256)."""
    work = [(a, name, record) for a in artifacts.values() for name, record in a.manifest["files"].items()]
    total = sum(record["bytes"] for _, _, record in work)
    with tqdm(total=total, unit="B", unit_scale=True, desc="audit", disable=total < 1 << 28) as progress:
        for artifact, name, record in work:
            path = Path(os.path.normpath(artifact.path / name))
            if not path.is_file():
                artifact.problems.append(f"missing file {path}")
            elif path.stat().st_size != record["bytes"] or sha256_file(path) != record["sha256"]:
                artifact.problems.append(f"changed file {path}")
            progress.update(record["bytes"])


def failures(artifacts: dict[Path, Artifact], path: Path, memo: dict) -> list[tuple[tuple[Path, ...], str]]:
    """(chain of artifacts from `path` down to the culprit, problem) for everything failing."""
    if path in memo:
        return memo[path]
    artifact = artifacts[path]
    found = [((path,), problem) for problem in artifact.problems]
    for upstream, recorded in artifact.manifest["inputs"].items():
        source = Path(os.path.normpath(path / upstream))
        if source not in artifacts:
            found.append(((path,), f"input {source} has no manifest"))
            continue
        if manifest_hash(artifacts[source].manifest) != recorded:
            found.append(((path,), f"input {source} was rebuilt or edited after this artifact"))
        found += [((path,) + chain, problem) for chain, problem in failures(artifacts, source, memo)]
    memo[path] = list(dict.fromkeys(found))
    return memo[path]


def audit(results: str | Path = "results") -> int:
    """Print every artifact that is missing files, changed, or has a failing upstream."""
    artifacts = load_artifacts(results)
    if not artifacts:
        print(f"{results}: no manifests found")
        return 1
    check_files(artifacts)
    memo: dict = {}
    failing = 0
    for path in sorted(artifacts):
        found = failures(artifacts, path, memo)
        if found:
            failing += 1
            print(f"FAIL {path}")
            for chain, problem in found:
                print(f"     {' <- '.join(map(str, chain))}: {problem}")
    print(f"{len(artifacts) - failing} of {len(artifacts)} artifacts verified, {failing} failing")
    return 1 if failing else 0


def lineage(table: str | Path, row: int | None = None) -> list[str]:
    """The artifact tree behind `table` (or behind one row of a summary-style CSV)."""
    owner = owning_manifest(table)
    if owner is None:
        raise FileNotFoundError(f"{table}: no manifest in its directory or above")
    root = Path(os.path.relpath(owner.parent))
    artifacts = load_artifacts(root.parent)
    start = [root]
    lines = []
    if row is not None:
        record = pd.read_csv(table).iloc[row]
        lines.append(f"row {row}: " + ", ".join(f"{k}={v}" for k, v in record.items()))
        start = [p for p in artifacts[start[0]].inputs if _describes(artifacts[p], record)]
    seen: set[Path] = set()

    def walk(path: Path, depth: int) -> None:
        artifact = artifacts.get(path)
        stage = artifact.manifest["stage"] if artifact else "?"
        lines.append(f"{'  ' * depth}{path} [{stage}]" + (" (see above)" if path in seen else ""))
        if artifact and path not in seen:
            seen.add(path)
            for upstream in artifact.inputs:
                walk(upstream, depth + 1)

    for path in start:
        walk(path, 0)
    return lines


def _describes(artifact: Artifact, record: pd.Series) -> bool:
    params = artifact.manifest["params"]
    descriptor = params.get("descriptor", {})
    return all(str(descriptor.get(k)) == str(record[k]) for k in ("corpus", "model", "strategy") if k in record) and (
        pd.isna(record.get("seed")) or str(descriptor.get("seed")) == str(int(record["seed"]))
    )


def runs_table(results: str | Path = "results") -> pd.DataFrame:
    """One row per evaluated run, from the manifests: model, strategy, alpha, seed, trainset
    and training params, with headline metrics (mAP mono / cross / multi, language bias)."""
    artifacts = load_artifacts(results)
    rows = []
    for path, artifact in sorted(artifacts.items()):
        if artifact.manifest["stage"] != "evaluate":
            continue
        descriptor = artifact.manifest["params"]["descriptor"]
        summary = pd.read_csv(path / "summary.csv")
        headline = {f"{s} {m}": v for s, m, v in summary[["setting", "metric", "value"]].itertuples(index=False)
                    if m in ("map", "language_bias")}
        training = _upstream_of_stage(artifacts, path, "train")
        batches = _upstream_of_stage(artifacts, path, "batches")
        extra = {}
        if training:
            extra.update({f"training.{k}": v for k, v in training.manifest["params"]["training"].items() if k != "seed"})
        if batches:
            stats = json.loads((batches.path / "stats.json").read_text())
            extra.update({"batch_size": stats["batch_size"], "epochs": stats["epochs"], "batches": stats["batches"],
                          "realised_alpha": stats["realised_alpha"], "batch_set": str(batches.path)})
        rows.append({**descriptor, **extra, **headline, "artifact": str(path)})
    return pd.DataFrame(rows).convert_dtypes()


def _upstream_of_stage(artifacts: dict[Path, Artifact], path: Path, stage: str) -> Artifact | None:
    pending, seen = [path], set()
    while pending:
        current = pending.pop()
        if current in seen or current not in artifacts:
            continue
        seen.add(current)
        if artifacts[current].manifest["stage"] == stage:
            return artifacts[current]
        pending += artifacts[current].inputs
    return None
