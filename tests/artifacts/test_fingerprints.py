"""The tests of `hybridbatch/artifacts/fingerprints.py`."""

from pathlib import Path


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
