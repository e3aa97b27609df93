"""The tests of `hybridbatch/report/plots.py`."""

from itertools import product

import numpy as np
import pandas as pd
import pytest
from tables_helpers import write_image_text_run

from hybridbatch.names import ZERO_SHOT
from hybridbatch.report.plots import (
    image_text_alpha_points,
    image_text_by_language,
    plot_image_text_alpha,
    plot_validation_curves,
    validation_curves,
)
from hybridbatch.report.runs import load_runs


def test_the_image_text_alpha_plot_shows_each_strategys_mean_and_spread_over_seeds(tmp_path):
    """Three seeds each of two strategies (and a zero-shot run, not plotted): every point is
    the mean and standard deviation over the seeds of that strategy's summary value."""
    paths = [write_image_text_run(tmp_path / "zero", ZERO_SHOT, 0)]
    paths += [
        write_image_text_run(tmp_path / f"s{seed}", name, seed) for name in ("mixed", "hybrid") for seed in range(3)
    ]
    runs = load_runs(paths)
    points = image_text_alpha_points(runs).set_index(["strategy", "title"])
    assert set(points.index.get_level_values(0)) == {"mixed", "hybrid"} and set(points.seeds) == {3}
    for strategy, (title, setting, metric) in product(
        ("mixed", "hybrid"),
        [("T→I R@1", "t2i/all", "recall@1"), ("language bias", "i2t-multi/all", "language_bias")],
    ):
        values = [
            run.summary.query(f"setting == '{setting}' and metric == '{metric}'").value.item()
            for run in runs
            if run.key[2] == strategy
        ]
        assert points.loc[(strategy, title), "mean"] == pytest.approx(np.mean(values))
        assert points.loc[(strategy, title), "std"] == pytest.approx(np.std(values, ddof=1))
        assert points.loc[(strategy, title), "alpha"] == 0.5
    plot_image_text_alpha(runs, tmp_path / "alpha.png")
    assert (tmp_path / "alpha.png").stat().st_size > 10_000


def test_the_validation_curves_are_each_strategys_mean_and_spread_over_seeds(tmp_path):
    """Per strategy and step: the mean and standard deviation of the seeds' validation losses,
    a run's strategy and seed read from its directory's name (`<strategy>.s<seed>`)."""
    rng = np.random.default_rng(0)
    losses, logs = {}, []
    for strategy, steps in (("mixed", [10, 20]), ("hybrid-2x", [10, 20, 30, 40])):
        for seed in range(3):
            losses[strategy, seed] = rng.uniform(1, 3, len(steps))
            log = tmp_path / f"{strategy}.s{seed}" / "validation_log.csv"
            log.parent.mkdir()
            recall = rng.uniform(0, 1, len(steps))
            frame = {
                "steps_trained": steps,
                "validation_loss": losses[strategy, seed],
                "development_recall_at_1": recall,
            }
            pd.DataFrame(frame).to_csv(log, index=False)
            logs.append(log)
    curves = validation_curves(logs).set_index(["strategy", "steps_trained"])
    assert len(curves) == 6 and set(curves.seeds) == {3}
    at_30 = [losses["hybrid-2x", seed][2] for seed in range(3)]
    assert curves.loc[("hybrid-2x", 30), "mean"] == pytest.approx(np.mean(at_30))
    assert curves.loc[("hybrid-2x", 30), "std"] == pytest.approx(np.std(at_30, ddof=1))
    assert curves.loc[("mixed", 10), "mean"] == pytest.approx(np.mean([losses["mixed", seed][0] for seed in range(3)]))
    plot_validation_curves(logs, tmp_path / "validation.png")
    assert (tmp_path / "validation.png").stat().st_size > 10_000


def test_the_per_language_plot_shows_each_strategys_mean_over_seeds(tmp_path):
    """With several seeds, a strategy's bars are the mean of its seeds (not one seed's)."""
    runs = load_runs([write_image_text_run(tmp_path / f"s{seed}", "mixed", seed) for seed in range(3)])
    t2i, _, bias = image_text_by_language(runs)
    assert list(t2i.columns) == list(bias.index) == ["mixed (alpha=0.5)"]
    seeds = [run.by_language.query("setting == 't2i/all'").set_index("query_lang")["recall@1"] for run in runs]
    pd.testing.assert_series_equal(t2i.iloc[:, 0], pd.concat(seeds, axis=1).mean(axis=1), check_names=False)
    values = [
        run.summary.query("metric == 'language_bias' and setting == 'i2t-multi/all'").value.item() for run in runs
    ]
    assert bias.iloc[0] == pytest.approx(np.mean(values)) and len(set(values)) > 1
