"""The tests of `hybridbatch/artifacts/hashing.py`."""

import pytest
from manifest_helpers import table

from hybridbatch.artifacts import schema


def test_a_failed_write_leaves_neither_the_file_nor_its_temporary(tmp_path):
    def failing():
        yield table(3)
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        schema.write_batches(failing(), tmp_path / "c.parquet", schema.PASSAGES)
    assert list(tmp_path.iterdir()) == []
