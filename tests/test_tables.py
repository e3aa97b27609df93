"""The tables stage on runs with planted per-item values: which row a significance letter
goes to (mAP: higher is better, language bias: lower is better), the item, not the row,
as the unit of the randomization test and the bootstrap, and every written table read
back from its file against the runs' own per-query rows."""

import json
import warnings
from itertools import product
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hybridbatch.artifacts import schema
from hybridbatch.evaluate.metrics import summary_rows
from hybridbatch.names import SUMMARY_COLUMNS, ZERO_SHOT
from hybridbatch.report.comparisons import comparisons, confidence
from hybridbatch.report.outputs import HEADLINES, IMAGE_TEXT_HEADLINES, Headline
from hybridbatch.report.plots import (
    image_text_alpha_points,
    image_text_by_language,
    plot_image_text_alpha,
    plot_validation_curves,
    validation_curves,
)
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

LANGS = ["de", "en", "es", "ru", "zh", "ar"]
PARAMS = {"alpha": 0.05, "permutations": 20_000, "bootstrap_samples": 4000, "seed": 0}


def write_metrics(
    out: Path, per_query: pd.DataFrame, names: list[str], corpus: str, strategy: str, alpha, seed, model: str = "m"
) -> Path:
    """per_query.parquet, by_language.parquet (means of the queries of a block) and summary.csv."""
    keys = ["setting", "query_lang", "candidate_lang"]
    by_language = per_query.groupby(keys, as_index=False)[names + ["rank_distance"]].mean()
    by_language["queries"], by_language["skipped"] = per_query.groupby(keys).size().to_numpy(), 0
    descriptor = {"corpus": corpus, "model": model, "strategy": strategy, "alpha": alpha, "seed": seed}
    out.mkdir(parents=True)
    for name, frame in (("per_query", per_query), ("by_language", by_language)):
        schema.write_table(pa.Table.from_pandas(frame, preserve_index=False), out / f"{name}.parquet")
    summary_rows(by_language, names, descriptor).to_csv(out / "summary.csv", index=False)
    return out


def write_run(
    root: Path,
    strategy: str,
    item_map: np.ndarray,
    item_bias: np.ndarray,
    alpha: float | None = 0.5,
    seed: int | None = 0,
    cross_map: np.ndarray | None = None,
    sparse_items: int = 0,
) -> Path:
    """A text run: every query (one per item and language) has its item's mAP in mono,
    multi and cross (against the next language; `cross_map` if given), and its item's rank
    distance in multi. The first `sparse_items` items have no query in half the languages."""
    if strategy == ZERO_SHOT:
        alpha = seed = None
    rows = []
    for (item, value), lang in product(enumerate(item_map), LANGS):
        if item < sparse_items and LANGS.index(lang) >= len(LANGS) // 2:
            continue
        following = LANGS[(LANGS.index(lang) + 1) % len(LANGS)]
        for setting, candidates in (("mono", lang), ("cross", following), ("multi", "all")):
            rows.append(
                {
                    "item_id": f"i{item}",
                    "qid": f"{lang}:i{item}",
                    "query_lang": lang,
                    "candidate_lang": candidates,
                    "setting": setting,
                    "map": cross_map[item] if setting == "cross" and cross_map is not None else value,
                    "rank_distance": item_bias[item] if setting == "multi" else np.nan,
                }
            )
    return write_metrics(root / f"{strategy}-{seed}", pd.DataFrame(rows), ["map"], "planted", strategy, alpha, seed)


def write_image_text_run(
    root: Path,
    strategy: str,
    seed: int,
    protocols=("all",),
    model: str = "m",
    perfect: bool = False,
    recall_at: tuple[int, ...] = (1,),
) -> Path:
    """An image-text run evaluated under `protocols` (default `all` only), with random
    per-query values (`perfect`: R@1 is 1 for every query); Recall@k beyond k=1 is random."""
    rng = np.random.default_rng(seed)
    rows = []
    for protocol, item, lang in product(protocols, range(10), LANGS[:3]):
        image, caption, other = f"image:{item}", f"{lang}:{item}:0", LANGS[(LANGS.index(lang) + 1) % 3]
        for setting, qid, query_lang, candidate_lang in (
            ("t2i", caption, lang, "image"),
            ("i2t", image, "image", lang),
            ("t2t-cross", caption, lang, other),
        ):
            rows.append(
                {
                    "item_id": str(item),
                    "qid": qid,
                    "query_lang": query_lang,
                    "candidate_lang": candidate_lang,
                    "setting": f"{setting}/{protocol}",
                    "recall@1": float(perfect or rng.random() < 0.4),
                    **{f"recall@{k}": float(rng.random() < 0.6) for k in recall_at[1:]},
                    "map": rng.random(),
                    "rank_distance": np.nan,
                }
            )
    for protocol, item in product(protocols, range(10)):
        rows.append(
            {
                "item_id": str(item),
                "qid": f"image:{item}",
                "query_lang": "image",
                "candidate_lang": "all",
                "setting": f"i2t-multi/{protocol}",
                "recall@1": 1.0,
                **{f"recall@{k}": 1.0 for k in recall_at[1:]},
                "map": rng.random(),
                "rank_distance": float(rng.integers(0, 9)),
            }
        )
    alpha, seed = (None, None) if strategy == ZERO_SHOT else (0.5, seed)
    return write_metrics(
        root / f"image-{strategy}",
        pd.DataFrame(rows),
        ["map", *(f"recall@{k}" for k in recall_at)],
        "images",
        strategy,
        alpha,
        seed,
        model,
    )


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


def test_a_p_value_equal_to_alpha_is_not_significant(tmp_path):
    """With 19 sign flips and 30 items that all favour one run (in each of three seeds), p = (0 + 1) / 20 = alpha."""
    base = np.linspace(0.2, 0.5, 30)
    seeds = [write_run(tmp_path, "hybrid", base + 0.1 + 0.01 * seed, base, seed=seed) for seed in range(3)]
    runs = load_runs([write_run(tmp_path, ZERO_SHOT, base, base), *seeds])
    ((_, test),) = comparisons(
        runs, {**PARAMS, "permutations": 19}, {"map": Headline("map", ("mono",), True, 3)}
    ).iterrows()
    assert test.p_value == test.p_holm == 0.05 and not test.significant


def test_the_randomization_test_and_bootstrap_take_the_item_as_the_unit(tmp_path):
    """Every item's difference is the same in all its languages; items 0-3 have queries
    in only three of the six languages, so the macro average weighs their rows more. The
    p-value is the exact sign-flip p over the 8 items with those weights (rows as the unit,
    or one block, would give another), and the bootstrap interval has the width of a
    bootstrap over items of the macro average (rows would make it far narrower)."""
    differences = np.array([0.09, 0.10, 0.11, 0.08, 0.12, -0.07, -0.06, 0.10])
    base = np.linspace(0.3, 0.5, 8)
    runs = load_runs(
        [
            write_run(tmp_path, ZERO_SHOT, base, np.zeros(8), sparse_items=4),
            write_run(tmp_path, "hybrid", base + differences, np.zeros(8), sparse_items=4),
        ]
    )
    tests = comparisons(runs, PARAMS)
    pd.testing.assert_frame_equal(tests, comparisons(runs, PARAMS))  # seeded: the same p-values and intervals again
    test = tests.set_index(["setting", "metric"]).loc[("mono", "map")]
    # macro weight of an item's row: 1 / (6 blocks x its block's queries): blocks of 8 queries and of 4
    weight = np.where(np.arange(8) < 4, 3 / (6 * 8), 3 / (6 * 8) + 3 / (6 * 4))
    signs = np.array(list(product([-1, 1], repeat=8)))

    def exact_p(contributions: np.ndarray) -> float:
        return (np.abs(signs @ contributions) >= abs(contributions.sum()) - 1e-12).mean()

    exact = exact_p(differences * weight)
    assert abs(exact - exact_p(differences * np.where(np.arange(8) < 4, 3, 6) / 36)) > 0.05  # one block: another p
    assert test.p_value == pytest.approx(exact, abs=0.01)
    assert (test["queries"], test["items"], test["unit"]) == (36, 8, "item")
    assert (test.run_a, test.difference) == (ZERO_SHOT, pytest.approx(-(differences * weight).sum()))

    def item_bootstrap(values: np.ndarray) -> float:
        """Width of the 95% interval of the macro average, resampling items."""
        drawn = np.random.default_rng(1).integers(0, 8, size=(20_000, 8))
        full, sparse = values[drawn], np.where(drawn < 4, np.nan, values[drawn])  # full / sparse blocks' queries
        with warnings.catch_warnings():  # a draw of items 0-3 only leaves the sparse blocks empty: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            means = (3 * np.nanmean(full, axis=1) + 3 * np.nanmean(sparse, axis=1)) / 6
        return float(np.diff(np.nanquantile(means, [0.025, 0.975]))[0])

    assert (test.ci_high - test.ci_low) == pytest.approx(item_bootstrap(differences), rel=0.15)
    interval = confidence(runs, PARAMS).set_index(["strategy", "setting", "metric"]).loc[("hybrid", "mono", "map")]
    assert interval.value == pytest.approx(((base + differences) * weight).sum())
    assert (interval.ci_high - interval.ci_low) == pytest.approx(item_bootstrap(base + differences), rel=0.15)


def test_seeds_combine_into_one_test_on_each_items_difference_averaged_over_seeds(tmp_path):
    """hybrid and X-X-mono with seeds 0, 1 and 2, zero-shot once: each pair of strategies is
    one test, whose p-value is the exact sign-flip p over the 8 items of each item's
    difference within its seed averaged over the seeds; zero-shot pairs with every seed."""
    base = np.linspace(0.3, 0.5, 8)
    rng = np.random.default_rng(3)
    shifts = rng.normal(0.05, 0.08, (3, 8))  # hybrid's gain over zero-shot, per seed and item
    paths = [write_run(tmp_path, ZERO_SHOT, base, np.zeros(8))]
    for seed in range(3):
        paths.append(write_run(tmp_path, "hybrid", base + shifts[seed], np.zeros(8), seed=seed))
        paths.append(write_run(tmp_path, "X-X-mono", base + 0.01 * seed, np.zeros(8), alpha=1.0, seed=seed))
    tests = comparisons(load_runs(paths), PARAMS, {"map": Headline("map", ("mono",), True, 3)})
    assert len(tests) == 3 and set(tests.seed) == {"0+1+2"} and set(tests.queries) == {8 * len(LANGS)}
    tests = tests.set_index(["run_a", "run_b"])
    signs = np.array(list(product([-1, 1], repeat=8)))
    for pair, per_item in (
        ((ZERO_SHOT, "hybrid (alpha=0.5)"), -shifts.mean(axis=0)),
        (("X-X-mono (alpha=1)", "hybrid (alpha=0.5)"), (0.01 * np.arange(3)[:, None] - shifts).mean(axis=0)),
    ):
        exact = (np.abs(signs @ per_item) >= abs(per_item.sum()) - 1e-12).mean()
        assert tests.loc[pair].p_value == pytest.approx(exact, abs=0.01), pair
        assert tests.loc[pair].difference == pytest.approx(per_item.mean()), pair
    one_seed = comparisons(load_runs(paths[:3]), PARAMS, {"map": Headline("map", ("mono",), True, 3)})
    assert set(one_seed.seed) == {"0"}  # one seed: the test of that seed's runs


@pytest.mark.parametrize(
    ("seed_means", "differences", "marked"),
    [
        ((0.30, 0.35, 0.40), (0.03, -0.01, 0.02), False),  # one seed favours b: the sign flips
        ((0.30, 0.35, 0.40), (0.003, 0.004, 0.005), False),  # one sign, but far inside the seeds' spread (Welch)
        ((0.30, 0.31, 0.32), (0.20, 0.21, 0.19), True),  # large and the same in every seed
    ],
)
def test_a_difference_must_hold_over_the_seeds_however_many_items(tmp_path, seed_means, differences, marked):
    """Three seeds of 600 items each: a's mAP is b's plus the seed's difference on every item, so
    the item-level test is significant every time; the difference is marked only where it also
    holds over the seeds (each seed of one sign, Welch's p over the seeds' means)."""
    rng = np.random.default_rng(5)
    spread = rng.uniform(-0.1, 0.1, 600)
    paths = []
    for seed, (mean, difference) in enumerate(zip(seed_means, differences)):
        paths.append(write_run(tmp_path, "hybrid", mean + spread + difference, np.zeros(600), seed=seed))
        paths.append(write_run(tmp_path, "X-X-mono", mean + spread, np.zeros(600), alpha=1.0, seed=seed))
    params = {**PARAMS, "permutations": 2000, "bootstrap_samples": 100}
    ((_, test),) = comparisons(load_runs(paths), params, {"map": Headline("map", ("mono",), True, 3)}).iterrows()
    assert test.p_holm < 0.01  # the items alone: always significant
    assert test.seed_differences == " ".join(f"{-d:+.4f}" for d in differences)  # run a is X-X-mono
    assert test.significant == test.holds_over_seeds == marked


def test_a_summary_without_the_contract_columns_is_refused_naming_it(tmp_path):
    path = write_run(tmp_path, ZERO_SHOT, np.ones(3), np.ones(3))
    pd.read_csv(path / "summary.csv").rename(columns={"value": "score"}).to_csv(path / "summary.csv", index=False)
    with pytest.raises(ValueError) as error:
        Run(path)
    columns = SUMMARY_COLUMNS[:-1] + ["score"]
    assert str(error.value) == f"{path / 'summary.csv'}: columns {columns}, expected {SUMMARY_COLUMNS}"


def mean_over_seeds(per_run: list[pd.DataFrame], setting: str, by: str, column: str) -> pd.Series:
    """Each group's mean of `column` in `setting`, averaged over the runs (seeds)."""
    return sum(rows[rows.setting == setting].groupby(by)[column].mean() for rows in per_run) / len(per_run)


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


def test_too_few_sign_flips_for_holm_over_the_tests_are_named(tmp_path, caplog):
    """Holm over m tests needs p below alpha / m; the smallest p of P sign flips is 1 / (P + 1)."""
    base = np.linspace(0.3, 0.5, 8)
    runs = load_runs([write_run(tmp_path, name, base, np.zeros(8)) for name in (ZERO_SHOT, "hybrid")])
    tests = len(comparisons(runs, PARAMS))
    assert tests
    assert "significance.permutations" not in caplog.text
    comparisons(runs, {**PARAMS, "permutations": int(tests / PARAMS["alpha"]) - 2})
    assert f"Holm over {tests} tests cannot reach 0.05" in caplog.text


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
    from hybridbatch.config import ConfigError, check_image_text_evaluation
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
    assert {"T→I R@50", "I→T R@50"} <= titles and len(plotted(IMAGE_TEXT_HEADLINES)) == 6
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

    config = {"evaluation": {"recall_at": [1, 5, 10], "ndcg_at": 10, "mrr_at": 10}}
    with pytest.raises(ConfigError, match=r"does not compute the image-text headlines \['recall@50'\]"):
        check_image_text_evaluation(config, {"evaluation": {"languages": ["en"]}})


def write_lit_model(root: Path, name: str, batch_types: list[str], saved_step: int, batch_size: int = 3) -> Path:
    """A LiT run's training.json (the examples of each batch type it was saved after) and
    training_log.csv: one row per batch trained."""
    model = root / name
    model.mkdir(parents=True)
    examples = pd.Series(batch_types[:saved_step]).value_counts() * batch_size
    summary = {"saved_step": saved_step, "examples_by_batch_type": examples.to_dict(), "development_recall_at_1": 0.5}
    (model / "training.json").write_text(json.dumps(summary))
    pd.DataFrame({"step": range(len(batch_types)), "batch_type": batch_types}).to_csv(model / "training_log.csv")
    return model


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


def test_row_letters_go_on_past_z():
    from hybridbatch.report.tables import row_letter

    assert [row_letter(i) for i in (0, 25, 26, 27, 51, 52)] == ["a", "z", "aa", "ab", "az", "ba"]
