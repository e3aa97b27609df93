"""The benchmarks' own logic (their timings are printed, never tested)."""

import importlib.util

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO


def benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_speed_times_the_complete_batches_there_are(tmp_path, capsys):
    """The default run's X-X-mono batches have 11 batches with a hard negative in every row:
    asked for 12, the benchmark times those 11 instead of stopping."""
    complete_batches = benchmark("training_speed").complete_batches
    rows = pd.DataFrame(
        {"batch_id": [b for b in range(14) for _ in range(2)],
         "negative": [None if b in (3, 7, 9) and r == 1 else f"n{b}" for b in range(14) for r in range(2)]}
    )  # fmt: skip
    pq.write_table(pa.Table.from_pandas(rows), tmp_path / "shard-00000.parquet")
    chosen = complete_batches(tmp_path, 12)
    assert sorted(chosen.batch_id.unique()) == [b for b in range(14) if b not in (3, 7, 9)]
    assert "11 batches have a hard negative in every row; timing 11 steps" in capsys.readouterr().out
    assert sorted(complete_batches(tmp_path, 4).batch_id.unique()) == [0, 1, 2, 4]
    rows.loc[rows.batch_id > 0, "negative"] = None
    (tmp_path / "one").mkdir()
    pq.write_table(pa.Table.from_pandas(rows), tmp_path / "one" / "shard-00000.parquet")
    with pytest.raises(SystemExit, match="only 1 batches"):
        complete_batches(tmp_path / "one", 12)
