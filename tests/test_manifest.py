"""Manifests record what a stage wrote: hashes taken while writing, equal to the file's."""

import hashlib
import json
import os
from pathlib import Path

import pyarrow as pa
import pytest

from hybridbatch.artifacts import manifest, schema
from hybridbatch.artifacts.manifest import ArtifactError, manifest_hash


def table(rows: int) -> pa.Table:
    return pa.table(
        {
            "pid": [f"p{i}" for i in range(rows)],
            "lang": ["en"] * rows,
            "item_id": ["i"] * rows,
            "text": [f"text {i}" for i in range(rows)],
        },
        schema=schema.PASSAGES,
    )


def test_a_written_file_is_described_without_reading_it_back_and_an_edited_one_is_rehashed(tmp_path, monkeypatch):
    schema.write_table(table(1000), tmp_path / "a.parquet", row_group_size=100)
    schema.write_batches((table(10) for _ in range(5)), tmp_path / "b.parquet", schema.PASSAGES)
    reads = []
    monkeypatch.setattr(manifest, "sha256_file", lambda path: reads.append(path) or "read back")
    for name, rows in (("a.parquet", 1000), ("b.parquet", 50)):
        path = tmp_path / name
        record = manifest.describe_file(path)
        assert record == {
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "bytes": path.stat().st_size,
            "rows": rows,
        }
    assert reads == []
    path = tmp_path / "a.parquet"
    data = bytearray(path.read_bytes())
    data[200] ^= 1  # same size, later modification time
    path.write_bytes(bytes(data))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1_000_000))
    assert manifest.describe_file(path)["sha256"] == "read back" and reads == [path]


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    def failing():
        yield table(3)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        schema.write_batches(failing(), tmp_path / "c.parquet", schema.PASSAGES)
    assert list(tmp_path.iterdir()) == []


def test_a_stage_declares_its_own_modules_and_not_those_of_other_commands():
    from hybridbatch.artifacts.fingerprints import PACKAGE_DIR, module_path, stage_files
    from hybridbatch.stages import STAGES

    for stage, declared in STAGES.items():
        module = declared.module
        files = {Path(path).relative_to(PACKAGE_DIR).as_posix() for path in stage_files(module)}
        assert {
            "__main__.py",
            "stages.py",
            "artifacts/manifest.py",
            module_path(module).relative_to(PACKAGE_DIR).as_posix(),
        } <= files, stage
        assert "report/audit.py" not in files, stage  # the audit command's module: editing it reruns no stage
        assert ("report/tables.py" in files) == (stage == "tables"), stage  # editing a plot reruns only the tables
    assert "train/text.py" not in {
        Path(path).relative_to(PACKAGE_DIR).as_posix() for path in stage_files("pairs.build")
    }


def test_editing_the_download_code_reruns_no_training_and_no_evaluation():
    """The fetchers (fetch/) run where raw files or hub revisions are read; the corpus formats
    in the download and prepare stages only;
    batch building does not run an image tower."""
    from hybridbatch.artifacts.fingerprints import PACKAGE_DIR, stage_files
    from hybridbatch.stages import STAGES

    def folders(module):
        return {Path(path).relative_to(PACKAGE_DIR).parts[0] for path in stage_files(module)}

    for stage, declared in STAGES.items():
        module = declared.module
        assert ("fetch" in folders(module)) == (stage in ("download", "prepare", "base-model")), stage
        assert ("corpora" in folders(module)) == (stage in ("download", "prepare")), stage
    for module in ("batches.text", "batches.image_text", "train.text", "train.image_text"):
        files = {Path(path).relative_to(PACKAGE_DIR).as_posix() for path in stage_files(module)}
        assert "models/image_towers.py" not in files and "fetch/download.py" not in files, module


def test_an_input_without_a_manifest_is_refused_before_the_stage_runs(tmp_path):
    """A stage's input made outside the workflow has no manifest: run_stage refuses it,
    naming it, before the stage runs (prepare itself would fail on the missing checksums)."""
    from hybridbatch.__main__ import run_stage

    raw = tmp_path / "raw"
    raw.mkdir()
    params = {"name": "c", "source": "cldr", "languages": ["en", "de"], "test_fraction": 0.3, "split_seed": 0}
    with pytest.raises(FileNotFoundError, match=rf"{raw}: input has no manifest.json"):
        run_stage("prepare", params, {"raw": str(raw), "out": str(tmp_path / "out")})
    assert not (tmp_path / "out").exists()


def test_a_users_own_files_enter_through_the_import_stage_and_are_then_verified(tmp_path):
    """The files a stage refuses for want of a manifest pass once imported: the import copies
    them with their hashes into a manifest, and a file changed afterwards is refused by name."""
    import pandas as pd
    from test_batching import synthetic_pairs, write_pairs

    from hybridbatch.__main__ import run_stage

    own = write_pairs(synthetic_pairs(40, seed=0), tmp_path / "my_pairs")
    params = {"alpha": 0.5, "batch_size": 4, "epochs": 1, "seed": 0, "mono_language_sampling": "uniform",
              "drop_last": True, "development_fraction": 0.1, "development_seed": 0}  # fmt: skip
    with pytest.raises(FileNotFoundError, match=rf"{own}: input has no manifest.json"):
        run_stage("batches", params, {"pairs": str(own), "out": str(tmp_path / "refused")})

    imported = tmp_path / "results/imports/my_pairs"
    summary = run_stage("import-files", {"source": str(own)}, {"out": str(imported)})
    manifest = json.loads((imported / "manifest.json").read_text())
    assert summary["files"] == 2 and manifest["stage"] == "import-files" and manifest["params"]["source"] == str(own)
    for name in ("pairs.parquet", "qrels.parquet"):
        assert (imported / name).read_bytes() == (own / name).read_bytes()
        assert manifest["files"][name]["sha256"] == hashlib.sha256((own / name).read_bytes()).hexdigest()
    run_stage("batches", params, {"pairs": str(imported), "out": str(tmp_path / "batches")})
    assert json.loads((tmp_path / "batches/manifest.json").read_text())["inputs"] == {
        "../results/imports/my_pairs": manifest_hash(manifest)
    }

    with pytest.raises(FileExistsError, match="not empty"):
        run_stage("import-files", {"source": str(own)}, {"out": str(imported)})
    pd.DataFrame({"qid": ["x"], "pid": ["y"], "relevance": [1]}).to_parquet(imported / "qrels.parquet")
    with pytest.raises(ArtifactError, match=r"qrels\.parquet"):
        run_stage("batches", params, {"pairs": str(imported), "out": str(tmp_path / "again")})
