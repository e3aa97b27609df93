"""The tests of `hybridbatch/artifacts/schema.py`."""

import pandas as pd
import pytest

from hybridbatch.artifacts import schema


def test_unreadable_parquet_is_named(tmp_path):
    bad = tmp_path / "queries.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(schema.SchemaError, match="queries.parquet"):
        schema.read_parquet(bad, schema.QUERIES)
    pd.DataFrame({"qid": ["a"]}).to_parquet(bad)
    with pytest.raises(schema.SchemaError, match="missing column 'lang'"):
        schema.read_parquet(bad, schema.QUERIES)
