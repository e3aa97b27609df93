"""The tests of `hybridbatch/artifacts/imports.py`."""

import hashlib
import json

import pytest

from hybridbatch.artifacts.manifest import ArtifactError, manifest_hash


def test_a_users_own_files_enter_through_the_import_stage_and_are_then_verified(tmp_path):
    """The files a stage refuses for want of a manifest pass once imported: the import copies
    them with their hashes into a manifest, and a file changed afterwards is refused by name."""
    import pandas as pd
    from batching_helpers import synthetic_pairs, write_pairs

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
