"""The tests of `hybridbatch/__main__.py`."""

import pytest

from hybridbatch.stages import STAGES


def test_the_command_line_takes_exactly_the_declared_paths(tmp_path):
    """Required paths are required, optional ones may be left out, several-path ones take a list."""
    from hybridbatch.__main__ import main

    with pytest.raises(SystemExit):  # --out missing
        main(["download", "--params", "{}"])
    declared = {path.name: path for path in STAGES["tables"].paths}
    assert declared["metrics"].several and not declared["metrics"].optional
    assert declared["image_text_metrics"].optional and declared["image_text_metrics"].several
    assert [path.name for path in STAGES["train-lit"].paths if path.optional] == ["states"]
