"""The tests of `hybridbatch/report/outputs.py`."""

import numpy as np
import pandas as pd
import pytest
from tables_helpers import PARAMS, mean_over_seeds, write_image_text_run, write_lit_model, write_run

from hybridbatch.names import ZERO_SHOT
from hybridbatch.report.outputs import IMAGE_TEXT_HEADLINES
from hybridbatch.report.plots import image_text_alpha_points
from hybridbatch.report.runs import load_runs
from hybridbatch.report.tables import make_tables


def test_the_stage_writes_exactly_the_files_its_outputs_module_names(tmp_path):
    """The tables rule declares its outputs from report/outputs.py: the stage writes those
    names and nothing else (text tables per headline and corpus, image-text tables and
    plots, the summary, the tests and the heatmaps)."""
    from hybridbatch.names import heatmap_name
    from hybridbatch.report.outputs import (
        IMAGE_TEXT_ALPHA_PLOT,
        IMAGE_TEXT_PLOTS,
        VALIDATION_PLOT,
        image_text_table_stems,
        per_language_stem,
        text_plots,
        text_table_stems,
    )

    text = [write_run(tmp_path, strategy, np.linspace(0.2, 0.5, 8), np.zeros(8)) for strategy in (ZERO_SHOT, "X-Y")]
    images = [write_image_text_run(tmp_path / "zero", ZERO_SHOT, 0), write_image_text_run(tmp_path, "mixed", 0)]
    log = write_lit_model(tmp_path, "mixed.s0", ["image-caption-mixed"] * 2, 2) / "validation_log.csv"
    pd.DataFrame(
        {"steps_trained": [1, 2], "validation_loss": [2.0, 1.5], "development_recall_at_1": [0.1, 0.2]}
    ).to_csv(log, index=False)
    make_tables(PARAMS, text, images, [log.parent], tmp_path / "tables", tmp_path / "plots", tmp_path / "workflow.json")
    runs = load_runs(text)
    stems = text_table_stems() + [per_language_stem("planted")] + image_text_table_stems("images")
    tables = {f"{stem}.{ext}" for stem in stems for ext in ("csv", "md", "tex")}
    assert {p.name for p in (tmp_path / "tables").iterdir()} == tables | {
        "summary.csv",
        "significance.csv",
        "confidence.csv",
        "image_text_training.csv",
        "image_text_training.md",
    }
    plots = text_plots(["planted"]) + [IMAGE_TEXT_PLOTS, IMAGE_TEXT_ALPHA_PLOT, VALIDATION_PLOT]
    heatmaps = {heatmap_name(run.key) for run in runs}
    assert {p.name for p in (tmp_path / "plots").iterdir()} == {f"{name}.png" for name in plots} | heatmaps


def test_a_headline_is_one_registry_entry_recall_at_50(tmp_path, monkeypatch):
    """Recall@50 added to the image-text headlines (one entry in report/outputs.py) gets its
    table (means over seeds), its significance tests, its alpha-plot and curve panels, and a
    file name the tables rule declares; a configuration that does not compute it is refused."""
    from hybridbatch.config import ConfigError
    from hybridbatch.preflight import check_headlines_computed
    from hybridbatch.report.curve import curve_values
    from hybridbatch.report.outputs import image_text_table_stems, plotted, recall_headline

    monkeypatch.setitem(IMAGE_TEXT_HEADLINES, "recall@50", recall_headline(50))
    text = [write_run(tmp_path, strategy, np.linspace(0.2, 0.5, 8), np.zeros(8)) for strategy in (ZERO_SHOT, "X-Y")]
    images = [
        write_image_text_run(tmp_path / f"{strategy}{seed}", strategy, seed, recall_at=(1, 50))
        for strategy in ("mixed", "hybrid")
        for seed in (1, 2, 3)
    ]
    make_tables(PARAMS, text, images, [], tmp_path / "tables", tmp_path / "plots", tmp_path / "workflow.json")

    assert "image_text_recall_at_50" in image_text_table_stems("images")
    table = pd.read_csv(tmp_path / "tables/image_text_recall_at_50.csv", header=[0, 1], index_col=[0, 1])
    per_run = [pd.read_parquet(run / "per_query.parquet") for run in images[:3]]
    for setting in ("t2i/all", "i2t/all"):
        side = "query_lang" if setting.startswith("t2i") else "candidate_lang"
        expected = mean_over_seeds(per_run, setting, side, "recall@50").mean()
        assert table.loc[("m", "(b) mixed (alpha=0.5)"), ("images", setting)] == pytest.approx(expected)
    tested = pd.read_csv(tmp_path / "tables/significance.csv")
    assert set(tested[tested.metric == "recall@50"].setting) == {"t2i/all", "i2t/all"}
    titles = set(image_text_alpha_points(load_runs(images[:3])).title)
    assert {"T→I R@50", "I→T R@50"} <= titles and len(plotted()) == 6
    lit = {
        f"mixed.s{seed}": write_lit_model(tmp_path / "lit", f"mixed.s{seed}", ["image-caption-mixed"], 1)
        for seed in (1, 2, 3)
    }
    curve_runs_at_64 = [
        write_image_text_run(tmp_path / f"c{seed}", "mixed@64", seed, recall_at=(1, 50)) for seed in (1, 2, 3)
    ]
    lit = {f"mixed@64.s{seed}": path for seed, path in zip((1, 2, 3), lit.values())}
    values = curve_values(load_runs(curve_runs_at_64), lit, ["de"])
    assert {"T→I R@50", "I→T R@50"} <= set(values.headline)

    config = {"evaluation": {"recall_at": [1, 5, 10], "ndcg_at": 10, "mrr_at": 10}, "image_text": {"corpus": "c"}}
    with pytest.raises(
        ConfigError,
        match=r"config key evaluation\.recall_at: \[1, 5, 10\] does not compute the image-text headlines \['recall@50'\]",
    ):
        check_headlines_computed(config)
    check_headlines_computed({**config, "image_text": None})  # no image-text experiment: nothing to compute
