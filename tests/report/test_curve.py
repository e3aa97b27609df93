"""The tests of `hybridbatch/report/curve.py`."""

from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from tables_helpers import LANGS, PARAMS, write_image_text_run, write_lit_model, write_run

from hybridbatch.names import ZERO_SHOT
from hybridbatch.report.runs import Run
from hybridbatch.report.tables import make_tables


def curve_runs(tmp_path: Path) -> tuple[list[Path], list[Path]]:
    """mixed and hybrid at 2 and 4 batches and to their plateau, two seeds: metrics and LiT
    runs (hybrid's odd batches caption-caption; the plateau saved at step 6 of 8)."""
    metrics, models = [], []
    for strategy, point, seed in product(("mixed", "hybrid"), ("2", "4", "plateau"), (0, 1)):
        label = f"{strategy}@{point}"
        metrics.append(write_image_text_run(tmp_path / f"s{seed}", label, seed, ("first", "all")))
        steps = 8 if point == "plateau" else int(point)
        kinds = [
            "image-caption-mixed" if strategy == "mixed" or step % 2 == 0 else "caption-caption"
            for step in range(steps)
        ]
        models.append(
            write_lit_model(tmp_path / "models", f"{label}.s{seed}", kinds, 6 if point == "plateau" else steps)
        )
    return metrics, models


CURVE_PARAMS = {
    **PARAMS,
    "permutations": 2000,
    "bootstrap_samples": 200,
    "image_text_train_languages": LANGS[:2],
    "curve": {"strategies": ["mixed", "hybrid"], "image_shares": {"mixed": 1.0, "hybrid": 0.5}},
}


def test_the_curve_tables_hold_each_runs_budget_pairs_and_headlines(tmp_path):
    """The budget curve's tables: per run, the batches its saved model trained and the
    image-caption pairs among them (the caption-caption batches not counted), and each
    headline of protocol `first` as its summary says (trained and held-out languages
    apart, as their per-language means); per strategy and budget the mean and standard
    deviation over the seeds; tests between the strategies at each budget and at equal
    pairs only (hybrid@4 against mixed@2), in significance.csv too."""
    from hybridbatch.report.outputs import CURVE, CURVE_TESTS, curve_tables

    metrics, models = curve_runs(tmp_path)
    text = [write_run(tmp_path, ZERO_SHOT, np.linspace(0.2, 0.5, 8), np.zeros(8))]
    make_tables(CURVE_PARAMS, text, metrics, models, tmp_path / "tables", tmp_path / "plots", tmp_path / "w.json")
    tables = tmp_path / "tables"
    assert set(curve_tables()) <= {path.name for path in tables.iterdir()}
    assert (tmp_path / "plots" / f"{CURVE}.png").is_file()
    values = pd.read_csv(tables / f"{CURVE}_runs.csv", dtype={"budget": str})
    hybrid_plateau = values[(values.strategy == "hybrid") & (values.budget == "plateau")]
    assert set(hybrid_plateau.batches) == {6} and set(hybrid_plateau.pairs) == {3 * 3}  # steps 0, 2, 4 of 0-5
    assert set(values[(values.strategy == "mixed") & (values.budget == "4")].pairs) == {4 * 3}
    training = pd.read_csv(tables / "image_text_training.csv").set_index(["strategy", "seed"])
    assert training.loc[("hybrid@plateau", 1), "image-caption pairs"] == 3 * 3
    assert training.loc[("hybrid@plateau", 1), "caption-caption pairs"] == 3 * 3  # steps 1, 3, 5 of 0-5
    assert training.loc[("hybrid@plateau", 1), "saved step"] == 6 and len(training) == len(models)
    assert "| hybrid@plateau | 2 | 6 | 9 | 9 | 0.500 |" in (tables / "image_text_training.md").read_text()
    for path in metrics:
        run = Run(path)
        summary = run.summary.set_index(["setting", "metric"]).value
        mine = values[(values.strategy + "@" + values.budget == run.key.strategy) & (values.seed == run.key.seed)]
        mine = mine.set_index(["headline", "group"]).value
        assert mine[("T→I R@1", "all")] == pytest.approx(summary[("t2i/first", "recall@1")])
        assert mine[("language bias", "all")] == pytest.approx(summary[("i2t-multi/first", "language_bias")])
        by_language = run.by_language[run.by_language.setting == "i2t/first"].set_index("candidate_lang")["recall@1"]
        assert mine[("I→T R@1", "held out")] == pytest.approx(by_language[LANGS[2]])
        assert mine[("I→T R@1", "trained")] == pytest.approx(by_language[LANGS[:2]].mean())
    table = pd.read_csv(tables / f"{CURVE}.csv", dtype={"budget": str}).set_index(["strategy", "budget"])
    spread = pd.read_csv(tables / f"{CURVE}_sd.csv", dtype={"budget": str}).set_index(["strategy", "budget"])
    cell = values[(values.strategy == "mixed") & (values.budget == "2") & (values.headline == "pooled I→T mAP")]
    assert table.loc[("mixed", "2"), "pooled I→T mAP"] == pytest.approx(cell.value.mean())
    assert spread.loc[("mixed", "2"), "pooled I→T mAP"] == pytest.approx(cell.value.std())
    assert list(table.index) == [(s, b) for s in ("mixed", "hybrid") for b in ("2", "4", "plateau")]
    tests = pd.read_csv(tables / "significance.csv")
    tests = tests[tests.family == "image-text"]
    compared_pairs = {frozenset((a.split(" ")[0], b.split(" ")[0])) for a, b in zip(tests.run_a, tests.run_b)}
    assert compared_pairs == {
        frozenset(("mixed@2", "hybrid@2")),
        frozenset(("mixed@4", "hybrid@4")),
        frozenset(("mixed@plateau", "hybrid@plateau")),
        frozenset(("mixed@2", "hybrid@4")),
    }
    paired = pd.read_csv(tables / f"{CURVE_TESTS}.csv")
    assert len(paired) == 4 and set(paired["compared at"]) == {"equal batches", "equal pairs", "each at its plateau"}


def test_the_curve_notes_name_each_budgets_leader_and_where_curves_cross():
    from hybridbatch.report.curve import leaders_and_crossings

    index = pd.MultiIndex.from_tuples(
        [(s, b) for s in ("mixed", "hybrid") for b in (64, 128, "plateau")], names=["strategy", "budget"]
    )
    table = pd.DataFrame(
        {"T→I R@1": [0.3, 0.4, 0.5, 0.2, 0.45, 0.6], "language bias": [10, 9, 8, 12, 11, 10]}, index=index
    )
    lines = leaders_and_crossings(table)
    assert "T→I R@1: leader per budget: 64 mixed, 128 hybrid, plateau hybrid" in lines
    assert "T→I R@1: mixed and hybrid cross between 64 and 128." in lines
    assert "language bias: leader per budget: 64 mixed, 128 mixed, plateau mixed" in lines  # lower is better
    assert not any(line.startswith("language bias") and "cross" in line for line in lines)
