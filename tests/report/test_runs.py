"""The tests of `hybridbatch/report/runs.py`."""

import numpy as np
import pandas as pd
import pytest
from tables_helpers import write_run

from hybridbatch.names import SUMMARY_COLUMNS, ZERO_SHOT
from hybridbatch.report.runs import Run


def test_a_summary_without_the_contract_columns_is_refused_naming_it(tmp_path):
    path = write_run(tmp_path, ZERO_SHOT, np.ones(3), np.ones(3))
    pd.read_csv(path / "summary.csv").rename(columns={"value": "score"}).to_csv(path / "summary.csv", index=False)
    with pytest.raises(ValueError) as error:
        Run(path)
    columns = SUMMARY_COLUMNS[:-1] + ["score"]
    assert str(error.value) == f"{path / 'summary.csv'}: columns {columns}, expected {SUMMARY_COLUMNS}"
