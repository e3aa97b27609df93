"""The tests of `hybridbatch/names.py`."""

import pytest
from sources_helpers import shipped_config


@pytest.mark.parametrize("overlay", [None, "config/xm3600.yaml", "config/xm3600_hybrid.yaml", "config/paper.yaml"])
def test_run_records_name_their_directories_and_parse_back(overlay):
    """Every run of a shipped config has one directory name, read back to the same record
    (strategy names hold dots and dashes; zero-shot runs name their model)."""
    from hybridbatch.config import image_text_runs, variants
    from hybridbatch.names import ImageTextRun, Variant

    config = shipped_config(overlay)
    runs = image_text_runs(config) if config.get("image_text") else []
    for record, kind in [(run, ImageTextRun) for run in runs] + [(v, Variant) for v in variants(config)]:
        assert kind.parse(record.name) == record
    assert len({run.name for run in runs}) == len(runs)
    assert ImageTextRun.parse("hybrid-mixed.s2") == ImageTextRun("hybrid-mixed", 2)
    assert ImageTextRun.parse("zero-shot.msiglip") == ImageTextRun(zero_shot="msiglip")
