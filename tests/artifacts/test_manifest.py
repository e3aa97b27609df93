"""The tests of `hybridbatch/artifacts/manifest.py`."""

import hashlib
import os

import pytest
from manifest_helpers import table

from hybridbatch.artifacts import manifest, schema


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
