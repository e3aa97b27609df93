"""Verify artifacts against their manifests, trace the lineage of a table, and list runs.

    hybridbatch audit [results|subtree]    re-hash everything; exit 1 naming what failed
    hybridbatch lineage TABLE [--row N]    the chain of artifacts behind a table (or a row)
    hybridbatch runs [results]             every trained run: params and headline metrics

What the audit guarantees: every artifact directory holds exactly the files its manifest
lists, with the recorded hashes (no stray, no gap, no edit); every input an artifact
was built from still has the manifest it had then (a hash chain back to the raw files);
every artifact the last run's DAG made still exists (results/workflow.json, written by the
tables stage and itself hashed in the tables' manifest); and the derived files are what
their inputs give: each run's summary.csv is recomputed from its by_language.parquet and
every table (csv, md, tex) from the metrics, and compared. What it cannot see: someone
who rewrites a file and every manifest up the chain (the hashes are not signed), and
plots (not re-drawn).
"""

from __future__ import annotations

import filecmp
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from hybridbatch.artifacts.manifest import (
    MANIFEST,
    ArtifactError,
    manifest_hash,
    owning_manifest,
    read_manifest,
    verify_artifact,
)
from hybridbatch.batch_types import ALPHA_TYPE
from hybridbatch.report.outputs import HEADLINES

RECORD = "workflow.json"


@dataclass
class Artifact:
    path: Path
    manifest: dict
    problems: list[str] = field(default_factory=list)

    @property
    def inputs(self) -> list[Path]:
        return [Path(os.path.normpath(self.path / relative)) for relative in self.manifest["inputs"]]


def results_root(path: str | Path) -> Path:
    """The results directory that `path` lies in: the nearest directory holding the
    workflow record or named `results`, else `path` itself."""
    path = Path(os.path.normpath(path))
    for candidate in [path] + list(path.parents):
        if (candidate / RECORD).is_file() or candidate.name == "results":
            return candidate
    return path


def load_artifacts(results: str | Path) -> dict[Path, Artifact]:
    """Every artifact under `results`; a malformed manifest becomes an artifact whose only
    content is that problem."""
    found = {}
    for directory, _, names in os.walk(results):
        if MANIFEST in names:
            path = Path(os.path.normpath(directory))
            try:
                found[path] = Artifact(path, read_manifest(path / MANIFEST))
            except ArtifactError as error:
                found[path] = Artifact(path, {"files": {}, "inputs": {}, "stage": "?"}, [str(error)])
    return found


def check_files(artifacts: dict[Path, Artifact], quick: bool = False) -> None:
    """Record unlisted, missing and changed files of every artifact: full sha256, or (quick)
    sizes, hashing only files modified after their manifest was written."""
    for artifact in tqdm(artifacts.values(), desc="audit", unit="artifact", disable=len(artifacts) < 50):
        if not artifact.problems:
            written = (artifact.path / MANIFEST).stat().st_mtime_ns if quick else None
            artifact.problems += verify_artifact(artifact.path, artifact.manifest, float("inf"), written)


def recorded_threads(manifest: dict) -> int | None:
    """The BLAS thread count a stage ran with: sums in matrix products (significance
    resampling) round differently with another count, so a re-derivation uses the same."""
    threads = manifest.get("threads", {})
    value = threads.get("OPENBLAS_NUM_THREADS") or threads.get("OMP_NUM_THREADS")
    return int(value) if value else None


def check_derived(artifacts: dict[Path, Artifact]) -> None:
    """Recompute what is derived without randomness of its own (each run's summary.csv,
    every table), with the BLAS threads the stage had, and record any difference from the
    file on disk."""
    from threadpoolctl import threadpool_limits

    from hybridbatch.evaluate.metrics import summary_rows
    from hybridbatch.names import metric_names
    from hybridbatch.report.outputs import IMAGE_TEXT_HEADLINES
    from hybridbatch.report.runs import load_runs
    from hybridbatch.report.tables import write_tables

    for artifact in artifacts.values():
        stage, params = artifact.manifest.get("stage"), artifact.manifest.get("params", {})
        if artifact.problems or stage not in ("evaluate", "evaluate-image-text", "tables"):
            continue
        with tempfile.TemporaryDirectory() as scratch, threadpool_limits(recorded_threads(artifact.manifest)):
            scratch = Path(scratch)
            if stage != "tables":
                names = metric_names(params["recall_at"], params["ndcg_at"], params["mrr_at"])
                by_language = pd.read_parquet(artifact.path / "by_language.parquet")
                summary_rows(by_language, names, params["descriptor"]).to_csv(scratch / "summary.csv", index=False)
                derived = ["summary.csv"]
            else:
                inputs = [p for p in artifact.inputs if p in artifacts]
                by_stage = {
                    kind: [p for p in inputs if artifacts[p].manifest.get("stage") == kind]
                    for kind in ("evaluate", "evaluate-image-text")
                }
                write_tables(
                    params,
                    load_runs(by_stage["evaluate"], HEADLINES),
                    scratch,
                    load_runs(by_stage["evaluate-image-text"], IMAGE_TEXT_HEADLINES),
                )
                derived = sorted(p.name for p in scratch.iterdir())
            for name in derived:
                if not (artifact.path / name).is_file() or not filecmp.cmp(
                    scratch / name, artifact.path / name, shallow=False
                ):
                    artifact.problems.append(
                        f"{artifact.path / name} differs from what its inputs give when re-derived"
                    )


def check_record(root: Path, artifacts: dict[Path, Artifact]) -> list[str]:
    """Artifacts the workflow record lists that are gone or no longer the ones recorded."""
    record = root / RECORD
    if not record.is_file():
        return [
            f"no workflow record {record}: the audit cannot tell which artifacts should exist "
            "(run the workflow to its end)"
        ]
    try:
        content = json.loads(record.read_text())
        listed, final = content["artifacts"], content["final"]
    except (OSError, ValueError, KeyError) as error:
        return [f"{record}: malformed workflow record ({error!r})"]
    problems = []
    for relative, recorded in sorted(listed.items()):
        path = Path(os.path.normpath(root / relative))
        if path not in artifacts:
            problems.append(f"missing artifact {path} (listed in {record})")
        elif manifest_hash(artifacts[path].manifest) != recorded:
            problems.append(f"artifact {path} was rebuilt or edited after {record} was written")
    problems += [
        f"missing artifact {Path(os.path.normpath(root / p))} (listed in {record})"
        for p in final
        if not (root / p / MANIFEST).is_file()
    ]
    return problems


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


def audit(target: str | Path = "results", quick: bool = False) -> int:
    """Print every artifact under `target` (the results directory or a part of it) that
    fails, with the chain to the culprit, and what the workflow record misses. `quick`
    trusts files that have their recorded size and were not modified after their
    manifest (a copy that does not keep modification times is hashed in full)."""
    target = Path(os.path.normpath(target))
    if not target.exists():
        print(f"{target}: no such directory")
        return 1
    root = results_root(target)
    artifacts = load_artifacts(root)
    shown = {path: a for path, a in artifacts.items() if path == target or target in path.parents}
    if not shown:
        print(f"{target}: no manifests found")
        return 1
    check_files(artifacts, quick)
    check_derived(artifacts)
    memo: dict = {}
    failing = 0
    for path in sorted(shown):
        found = failures(artifacts, path, memo)
        if found:
            failing += 1
            print(f"FAIL {path}")
            for chain, problem in found:
                print(f"     {' <- '.join(map(str, chain))}: {problem}")
    gaps = check_record(root, artifacts) if target == root else []
    for problem in gaps:
        print(f"FAIL {problem}")
    print(
        f"{len(shown) - failing} of {len(shown)} artifacts verified, {failing} failing"
        + (f"; {len(gaps)} workflow record problems" if gaps else "")
    )
    return 1 if failing or gaps else 0


def lineage(table: str | Path, row: int | None = None) -> list[str]:
    """The artifact tree behind `table` (or behind one row of a summary-style CSV)."""
    owner = owning_manifest(table)
    if owner is None:
        raise FileNotFoundError(f"{table}: no manifest in its directory or above")
    root = Path(os.path.relpath(owner.parent))
    artifacts = load_artifacts(results_root(root))
    start = [root]
    lines = []
    if row is not None:
        frame = pd.read_csv(table)
        if not 0 <= row < len(frame):
            raise IndexError(f"{table}: --row {row} is out of range (it has data rows 0 to {len(frame) - 1})")
        record = frame.iloc[row]
        lines.append(f"row {row}: " + ", ".join(f"{k}={v}" for k, v in record.items()))
        start = [p for p in artifacts[start[0]].inputs if p in artifacts and _describes(artifacts[p], record)]
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


# evaluate stage -> (its train stage, the key of that stage's training params, its batches stage)
TRACKS = {
    "evaluate": ("train", "training", "batches"),
    "evaluate-image-text": ("train-lit", "lit", "image-text-batches"),
}


def runs_table(results: str | Path = "results") -> pd.DataFrame:
    """One row per evaluated run of either track, from the manifests: model, strategy,
    alpha, seed and training params, with headline metrics (mAP and language bias per
    setting) and the realised batch mixture."""
    artifacts = load_artifacts(results)
    rows = []
    for path, artifact in sorted(artifacts.items()):
        if artifact.manifest["stage"] not in TRACKS:
            continue
        train_stage, training_key, batches_stage = TRACKS[artifact.manifest["stage"]]
        descriptor = artifact.manifest["params"]["descriptor"]
        summary = pd.read_csv(path / "summary.csv")
        headline = {
            f"{s} {m}": v
            for s, m, v in summary[["setting", "metric", "value"]].itertuples(index=False)
            if m in HEADLINES  # the text track's: mAP and language bias
        }
        training = _upstream_of_stage(artifacts, path, train_stage)
        batches = _upstream_of_stage(artifacts, path, batches_stage)
        extra = {}
        if training:
            params = training.manifest["params"][training_key]
            extra.update({f"training.{k}": v for k, v in params.items() if k != "seed"})
        if batches:
            stats = json.loads((batches.path / "stats.json").read_text())
            mixture = stats.get("realised_weights", {})
            extra.update(
                {
                    "batch_size": stats["batch_size"],
                    "epochs": stats.get("epochs"),
                    "batches": stats["batches"],
                    "realised_alpha": stats.get("realised_alpha", mixture.get(ALPHA_TYPE)),
                    **{f"realised {kind}": share for kind, share in mixture.items()},
                    "batch_set": str(batches.path),
                }
            )
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
