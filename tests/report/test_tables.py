"""The tests of `hybridbatch/report/tables.py`."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from tables_helpers import LANGS, PARAMS, mean_over_seeds, write_image_text_run, write_metrics, write_run

from hybridbatch.artifacts import schema
from hybridbatch.names import SUMMARY_COLUMNS, ZERO_SHOT
from hybridbatch.report.comparisons import comparisons
from hybridbatch.report.outputs import HEADLINES, IMAGE_TEXT_HEADLINES
from hybridbatch.report.runs import Run, load_runs
from hybridbatch.report.tables import (
    headline_table,
    image_text_per_language,
    image_text_table,
    make_tables,
    per_language_table,
    render,
    skipped_notes,
    write_report_table,
    write_tables,
)


def test_tables_give_the_standard_deviation_over_seeds_beside_the_mean():
    from hybridbatch.report.tables import render

    columns = pd.MultiIndex.from_tuples([("c", "mono")], names=["corpus", "setting"])
    index = pd.MultiIndex.from_tuples([("m", "(a) zero-shot"), ("m", "(b) hybrid")], names=["model", "strategy"])
    table = pd.DataFrame([[0.5], [0.75]], index=index, columns=columns)
    table.attrs["std"] = pd.DataFrame([[float("nan")], [0.125]], index=index, columns=columns)  # one seed, two seeds
    markdown = render(table, None, 3, latex=False)
    assert "| m | (a) zero-shot | 0.500 |" in markdown and "| m | (b) hybrid | 0.750 ± 0.125 |" in markdown
    assert r"0.750 $\pm$ 0.125" in render(table, None, 3, latex=True)


def letters(runs: list[Run], metric: str, setting: str) -> dict[str, str]:
    """The letters in each row's cell of `setting`, by strategy."""
    table, markers = headline_table(runs, comparisons(runs, PARAMS), metric)
    return {label.split(" ")[1]: markers.loc[("m", label), ("planted", setting)] for _, label in table.index}


@pytest.mark.parametrize("bias_shift", [-5.0, 5.0])
def test_a_significance_letter_goes_to_the_better_row(tmp_path, bias_shift):
    """(a) zero-shot, (b) X-X-mono: 0.2 lower mAP and 0.5 higher rank distance on every item
    (worse in both: lower bias is better); (c) hybrid: 0.2 higher mAP in mono and multi, the
    same mAP as zero-shot in cross, and a rank distance `bias_shift` away from zero-shot's.
    Three seeds each, 0.01 apart: every difference holds in each seed and over the seeds."""
    rng = np.random.default_rng(0)
    base_map, base_bias = rng.uniform(0.2, 0.6, 30), rng.uniform(10, 20, 30)
    paths = [write_run(tmp_path, ZERO_SHOT, base_map, base_bias)]
    for seed, jitter in enumerate((0.0, 0.01, -0.01)):
        paths += [
            write_run(tmp_path, "hybrid", base_map + 0.2 + jitter, base_bias + bias_shift + jitter, seed=seed,
                      cross_map=base_map),
            write_run(tmp_path, "X-X-mono", base_map - 0.2 + jitter, base_bias + 0.5 + jitter, alpha=1.0, seed=seed),
        ]  # fmt: skip
    runs = load_runs(paths)
    assert list(dict.fromkeys(run.key[2] for run in runs)) == [ZERO_SHOT, "X-X-mono", "hybrid"]  # zero-shot first
    assert letters(runs, "map", "mono") == {ZERO_SHOT: "b", "X-X-mono": "", "hybrid": "a,b"}
    assert letters(runs, "map", "cross") == {ZERO_SHOT: "b", "X-X-mono": "", "hybrid": "b"}
    expected = (
        {ZERO_SHOT: "b", "X-X-mono": "", "hybrid": "a,b"}
        if bias_shift < 0
        else {ZERO_SHOT: "b,c", "X-X-mono": "c", "hybrid": ""}
    )
    assert letters(runs, "language_bias", "multi") == expected


def test_written_tables_hold_the_runs_values(tmp_path):
    """Every table write_tables makes, read back from its files, against the runs' own
    per-query rows: the summary contract is the runs' summaries (seeds as integers); a
    headline cell is the mean over seeds ± their standard deviation, with the letters of
    the rows it beats in every seed; per-language views are means of a language's queries."""
    rng = np.random.default_rng(2)
    base, bias = rng.uniform(0.2, 0.6, 12), rng.uniform(5, 9, 12)
    text = [
        write_run(tmp_path, "hybrid", base + 0.3, np.zeros(12), seed=0),
        write_run(tmp_path, ZERO_SHOT, base, bias, cross_map=base / 2),
        write_run(tmp_path, "hybrid", base + 0.5, np.zeros(12), seed=1),
        write_run(tmp_path, "hybrid", base + 0.4, np.zeros(12), seed=2),
    ]
    images = [write_image_text_run(tmp_path / f"s{seed}", "hybrid", seed, perfect=True) for seed in (1, 2, 3)]
    images.append(write_image_text_run(tmp_path, ZERO_SHOT, 0))
    tables = tmp_path / "tables"
    params = {**PARAMS, "permutations": 2000, "bootstrap_samples": 200}
    write_tables(params, load_runs(text), tables, load_runs(images))
    reported = load_runs(images[::-1], IMAGE_TEXT_HEADLINES)  # only the rows the tables report, as the stage reads
    assert set(reported[0].per_query.setting) == {"t2i/all", "i2t/all", "i2t-multi/all"}  # no t2t-cross rows
    write_tables(params, load_runs(text[::-1], HEADLINES), tmp_path / "again", reported)
    for path in tables.iterdir():  # seeded tests and intervals, runs in a fixed order: the very same files
        assert path.read_bytes() == (tmp_path / "again" / path.name).read_bytes(), path.name
    written = pd.read_csv(tables / "summary.csv")
    expected = pd.concat([pd.read_csv(run / "summary.csv") for run in text + images], ignore_index=True)
    key = ["corpus", "strategy", "seed", "setting", "metric"]
    pd.testing.assert_frame_equal(
        written.sort_values(key, ignore_index=True), expected.sort_values(key, ignore_index=True)
    )
    assert "planted,m,hybrid,0.5,1,mono,map," in (tables / "summary.csv").read_text()  # seeds stay integers
    headline = pd.read_csv(tables / "map.csv", header=[0, 1], index_col=[0, 1])
    assert headline.index.names == ["model", "strategy"] and list(headline.columns.names) == ["corpus", "setting"]
    cells = [line.split("|")[-2].strip() for line in (tables / "map.md").read_text().splitlines()[2:4]]
    assert cells == [f"{base.mean():.3f}", f"{base.mean() + 0.4:.3f} ± {np.std([0.3, 0.5, 0.4], ddof=1):.3f} ^a"]
    assert (tables / "language_bias.md").read_text().splitlines()[3].endswith("| 0.0 ± 0.0 ^a |")
    assert "$^{a}$" in (tables / "map.tex").read_text().splitlines()[5]  # the hybrid row (seeds 0 to 2)
    assert (
        (tables / "image_text_recall_at_1.md")
        .read_text()
        .splitlines()[3]
        .endswith("| 1.000 ± 0.000 ^a | 1.000 ± 0.000 ^a |")
    )
    assert (
        (tables / "per_language_planted.md").read_text().endswith(" |\n")
    )  # a table without a note ends with its last row
    per_language = pd.read_csv(tables / "per_language_planted.csv", header=[0, 1], index_col=0)
    assert per_language.index.name == "language"
    rows = pd.read_parquet(text[1] / "per_query.parquet")
    for setting in ("mono", "cross", "multi"):
        means = rows[rows.setting == setting].groupby("query_lang")["map"].mean()
        np.testing.assert_allclose(per_language[("m zero-shot", f"{setting} mAP")][LANGS], means[LANGS])
        assert per_language.loc["average", ("m zero-shot", f"{setting} mAP")] == pytest.approx(means.mean())
    np.testing.assert_allclose(per_language[("m zero-shot", "bias")][LANGS], pd.Series(bias.mean(), LANGS))
    table = pd.read_csv(tables / "image_text.csv", header=[0, 1, 2], index_col=[0, 1])
    by_language = pd.read_csv(tables / "per_language_image_text_images.csv", header=[0, 1], index_col=0)
    assert table.index.names == ["model", "strategy"] and by_language.index.name == "language"
    for runs_of, label in ((images[:3], "hybrid (alpha=0.5)"), (images[3:], "zero-shot")):  # means over seeds
        per_run = [pd.read_parquet(run / "per_query.parquet") for run in runs_of]

        recall = mean_over_seeds(per_run, "t2i/all", "query_lang", "recall@1")
        assert table.loc[("m", label), ("all", "t2i", "recall@1")] == pytest.approx(recall.mean())
        bias = np.mean([rows[rows.setting == "i2t-multi/all"].rank_distance.mean() for rows in per_run])
        assert table.loc[("m", label), ("all", "i2t-multi", "language_bias")] == pytest.approx(bias)
        np.testing.assert_allclose(by_language[(label, "T->I R@1")][LANGS[:3]], recall[LANGS[:3]])
        i2t = mean_over_seeds(per_run, "i2t/all", "candidate_lang", "recall@1")
        np.testing.assert_allclose(by_language[(label, "I->T R@1")][LANGS[:3]], i2t[LANGS[:3]])
        t2t = mean_over_seeds(per_run, "t2t-cross/all", "query_lang", "recall@1")
        np.testing.assert_allclose(by_language[(label, "T->T R@1")][LANGS[:3]], t2t[LANGS[:3]])
        assert by_language.loc["average", (label, "T->I R@1")] == pytest.approx(recall.mean())
    tests = pd.read_csv(tables / "significance.csv")
    assert list(tests.columns) == [
        "corpus",
        "model",
        "seed",
        "setting",
        "metric",
        "run_a",
        "run_b",
        "value_a",
        "value_b",
        "difference",
        "ci_low",
        "ci_high",
        "queries",
        "items",
        "unit",
        "p_value",
        "seed_differences",
        "seed_p_value",
        "holds_over_seeds",
        "p_holm",
        "significant",
        "family",
    ]
    assert (tests.value_a - tests.value_b).to_numpy() == pytest.approx(tests.difference.to_numpy())
    # text: 1 pair over 3 seeds (zero-shot joins each) x (3 mAP + bias); image-text: (2 R@1, mAP, bias) under `all`
    assert sorted(tests.family.value_counts().items()) == [("image-text", 4), ("text", 4)]
    assert set(tests[tests.family == "text"].seed) == {"0+1+2"}
    assert set(tests[tests.family == "image-text"].setting) == {"t2i/all", "i2t/all", "i2t-multi/all"}
    intervals = pd.read_csv(tables / "confidence.csv")
    assert len(intervals) == 4 * 4 + 4 * 4  # runs x headlines, text and image-text and set(intervals.unit) == {"item"}
    assert list(intervals.columns) == SUMMARY_COLUMNS[:5] + ["setting", "metric", "value", "ci_low", "ci_high", "unit"]


def test_markdown_and_latex_tables_are_rendered_exactly():
    """A missing value, a standard deviation, letters and LaTeX's special characters."""
    columns = pd.MultiIndex.from_tuples([("c_1", "mono"), ("c_1", "multi")], names=["corpus", "setting"])
    index = pd.MultiIndex.from_tuples([("m", "(a) zero-shot"), ("m", "(b) X&Y 50%")], names=["model", "strategy"])
    table = pd.DataFrame([[0.5, np.nan], [0.75, 0.25]], index=index, columns=columns)
    table.attrs["std"] = pd.DataFrame([[np.nan, np.nan], [0.125, np.nan]], index=index, columns=columns)
    markers = pd.DataFrame([["", ""], ["a", "a,b"]], index=index, columns=columns)
    assert render(table, markers, 3, latex=False) == (
        "| model | strategy | c_1 mono | c_1 multi |\n"
        "|---|---|---|---|\n"
        "| m | (a) zero-shot | 0.500 | – |\n"
        "| m | (b) X&Y 50% | 0.750 ± 0.125 ^a | 0.250 ^a,b |\n"
    )
    assert render(table, markers, 3, latex=True) == (
        "\\begin{tabular}{llrr}\n\\toprule\n"
        "model & strategy & c\\_1 mono & c\\_1 multi \\\\\n\\midrule\n"
        "m & (a) zero-shot & 0.500 & – \\\\\n"
        "m & (b) X\\&Y 50\\% & 0.750 $\\pm$ 0.125$^{a}$ & 0.250$^{a,b}$ \\\\\n"
        "\\bottomrule\n\\end{tabular}\n"
    )


def test_notes_name_skipped_queries_empty_blocks_and_missing_settings(tmp_path):
    """mono only (no cross or multi); de has no query with a relevant candidate in 1 block."""
    rows = pd.DataFrame(
        {
            "item_id": ["i0", "i1"],
            "qid": ["en:0", "en:1"],
            "query_lang": "en",
            "candidate_lang": "en",
            "setting": "mono",
            "map": [0.5, 1.0],
            "rank_distance": np.nan,
        }
    )
    path = write_metrics(tmp_path / "run", rows, ["map"], "mono-corpus", ZERO_SHOT, None, None)
    by_language = pd.read_parquet(path / "by_language.parquet")
    empty = by_language.assign(query_lang="de", candidate_lang="de", queries=0, skipped=3, map=np.nan)
    schema.write_table(
        pa.Table.from_pandas(pd.concat([by_language, empty]), preserve_index=False), path / "by_language.parquet"
    )
    assert skipped_notes([Run(path)]) == [
        "mono-corpus: queries skipped for a language pair with no relevant candidate: mono 3.",
        "mono-corpus mono: averaged over 1 of 2 language blocks (1 have no query with a relevant candidate).",
        "mono-corpus: no cross, multi setting (its items are not parallel across languages).",
    ]
    write_report_table(pd.DataFrame({"x": [1.0]}, index=pd.Index(["r"], name="row")), None, 1, tmp_path / "t", "a note")
    assert (tmp_path / "t.md").read_text() == "| row | x |\n|---|---|\n| r | 1.0 |\n\na note\n"
    assert (tmp_path / "t.tex").read_text().startswith("\\begin{tabular}{lr}") and (tmp_path / "t.csv").is_file()


def test_image_text_views_use_protocol_first_where_evaluated_and_name_each_model(tmp_path):
    """Runs of two models under both protocols: per-language views show `first`, the
    Table 1 csv both, and columns carry the model's name."""
    paths = [
        write_image_text_run(tmp_path / model, ZERO_SHOT, seed, ("first", "all"), model)
        for seed, model in enumerate(["m1", "m2"])
    ]
    runs = load_runs(paths)
    view = image_text_per_language(runs, "images")
    for path, model in zip(paths, ["m1", "m2"]):
        rows = pd.read_parquet(path / "per_query.parquet")
        recall = rows[rows.setting == "t2i/first"].groupby("query_lang")["recall@1"].mean()
        np.testing.assert_allclose(view[(f"{model}: zero-shot", "T->I R@1")][LANGS[:3]], recall[LANGS[:3]])
    table = image_text_table(runs)
    assert table.index.names == ["model", "strategy"]
    assert [column[0] for column in table.columns] == ["first"] * 4 + ["all"] * 4  # R@1 t2i, i2t; mAP, bias


def test_per_language_tables_average_the_seeds_of_a_strategy(tmp_path):
    """Two seeds of one strategy make one column group holding their mean, not the last seed."""
    rng = np.random.default_rng(7)
    maps = [rng.random(8), rng.random(8)]
    runs = [Run(write_run(tmp_path, "hybrid", maps[seed], rng.random(8) * 10, seed=seed)) for seed in (0, 1)]
    table = per_language_table(runs, "planted")
    assert list(table.columns.get_level_values(0).unique()) == ["m hybrid (alpha=0.5)"]
    for lang in LANGS:  # a language's mono mAP is the mean over items; the table's, the mean over seeds
        expected = np.mean([per_seed.mean() for per_seed in maps])
        assert table.loc[lang, ("m hybrid (alpha=0.5)", "mono mAP")] == pytest.approx(expected)
    image_runs = [Run(write_image_text_run(tmp_path / f"it{seed}", "mixed", seed)) for seed in (0, 1)]
    image_table = image_text_per_language(image_runs, "images")
    t2i = [
        run.by_language[run.by_language.setting == "t2i/all"].set_index("query_lang")["recall@1"] for run in image_runs
    ]
    assert list(image_table.columns.get_level_values(0).unique()) == [image_runs[0].label]
    np.testing.assert_allclose(
        image_table.loc[LANGS[:3], (image_runs[0].label, "T->I R@1")], (t2i[0] + t2i[1])[LANGS[:3]] / 2
    )
    assert not np.allclose(t2i[0][LANGS[:3]], t2i[1][LANGS[:3]])  # the seeds differ, so the mean is not either one


def test_the_image_text_per_language_table_groups_trained_and_held_out_languages(tmp_path):
    """Trained languages first with their average, then the held-out ones with theirs, then
    the average of all (the summary's macro average)."""
    runs = [Run(write_image_text_run(tmp_path / f"s{seed}", "mixed", seed)) for seed in (0, 1)]
    whole = image_text_per_language(runs, "images")
    split = image_text_per_language(runs, "images", trained=["es", "de"])
    assert list(split.index) == ["de", "es", "average trained", "en", "average held out", "average"]
    pd.testing.assert_series_equal(split.loc["average trained"], whole.loc[["de", "es"]].mean(), check_names=False)
    pd.testing.assert_series_equal(split.loc["average held out"], whole.loc["en"], check_names=False)
    pd.testing.assert_series_equal(split.loc["average"], whole.loc["average"])
    assert split.index.name == "language"


def test_tables_with_only_zero_shot_image_text_runs_draw_no_alpha_plot(tmp_path):
    """A config that evaluates pretrained dual encoders only (no strategy is trained) gets
    its tables and the per-language plot, and no plot against alpha."""
    text = [write_run(tmp_path, ZERO_SHOT, np.linspace(0.2, 0.5, 8), np.zeros(8))]
    images = [write_image_text_run(tmp_path / "zero", ZERO_SHOT, 0)]
    make_tables(PARAMS, text, images, [], tmp_path / "tables", tmp_path / "plots", tmp_path / "workflow.json")
    assert sorted(path.name for path in (tmp_path / "plots").glob("image_text_*")) == ["image_text_by_language.png"]
    assert (tmp_path / "tables" / "image_text.md").is_file()


def test_row_letters_go_on_past_z():
    from hybridbatch.report.tables import row_letter

    assert [row_letter(i) for i in (0, 25, 26, 27, 51, 52)] == ["a", "z", "aa", "ab", "az", "ba"]
