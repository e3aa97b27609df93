"""Tables stage: the summary contract, the paper's tables with significance markers,
per-language tables and confidence intervals (csv, md, tex), and the plots (plots.py),
from the evaluated runs (runs.py) and their comparisons (comparisons.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import NotRequired, TypedDict

import pandas as pd
from threadpoolctl import threadpool_limits

from hybridbatch.batch_types import image_pairs
from hybridbatch.names import (
    MAP,
    PLATEAU,
    RANK_DISTANCE,
    SETTINGS,
    SUMMARY_COLUMNS,
    ZERO_SHOT,
    ImageTextRun,
    heatmap_name,
    recall,
)
from hybridbatch.report.comparisons import MIN_SEEDS, comparisons, confidence
from hybridbatch.report.curve import (
    by_budget,
    compared,
    curve_table,
    curve_tests,
    curve_values,
    formatted,
    leaders_and_crossings,
    markdown,
    plot_curve,
)
from hybridbatch.report.outputs import (
    CURVE,
    CURVE_TESTS,
    HEADLINES,
    IMAGE_TEXT_ALPHA_PLOT,
    IMAGE_TEXT_HEADLINES,
    IMAGE_TEXT_PLOTS,
    IMAGE_TEXT_RECALL,
    IMAGE_TEXT_TABLE,
    IMAGE_TEXT_TRAINING,
    SETTINGS_PLOT,
    VALIDATION_PLOT,
    Headline,
    alpha_plot,
    per_language_stem,
)
from hybridbatch.report.plots import (
    plot_alpha,
    plot_heatmap,
    plot_image_text,
    plot_image_text_alpha,
    plot_settings,
    plot_validation_curves,
)
from hybridbatch.report.runs import Run, load_runs, main_protocol, run_names, strategy_order
from hybridbatch.report.significance import UNIT


def row_letter(position: int) -> str:
    """a, b, ..., z, then aa, ab, ...: a table's row letters."""
    alphabet = "abcdefghijklmnopqrstuvwxyz"
    return alphabet[position] if position < 26 else row_letter(position // 26 - 1) + alphabet[position % 26]


def headline_table(
    runs: list[Run], tests: pd.DataFrame, metric: str, headlines: dict[str, Headline] = HEADLINES
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Values (rows model x strategy, mean over seeds; columns corpus x setting; the
    standard deviation over seeds in `table.attrs["std"]`) and, per cell, the letters of
    the rows it beats significantly (`comparisons`: one test over the seeds)."""
    settings, larger_is_better = headlines[metric].settings, headlines[metric].larger_is_better
    summary = pd.concat([run.summary.assign(label=run.label) for run in runs])
    chosen = summary[(summary.metric == metric) & summary.setting.isin(settings)]
    table = chosen.pivot_table(index=["model", "label"], columns=["corpus", "setting"], values="value", aggfunc="mean")
    strategy_of = {run.label: run.key.strategy for run in runs}
    rows = sorted(table.index, key=lambda key: (key[0], key[1] != ZERO_SHOT, strategy_order(strategy_of[key[1]])))
    columns = [(c, s) for c in table.columns.get_level_values(0).unique() for s in settings if (c, s) in table.columns]
    spread = chosen.pivot_table(index=["model", "label"], columns=["corpus", "setting"], values="value", aggfunc="std")
    spread = spread.reindex(index=rows, columns=columns)
    table = table.loc[rows, columns]
    table.index.names = ["model", "strategy"]
    letters = {key: row_letter(i) for i, key in enumerate(rows)}
    markers = pd.DataFrame("", index=table.index, columns=table.columns)
    mine = tests[tests.metric == metric]
    for (model, label), (corpus, setting) in ((r, c) for r in rows for c in columns):
        beaten = []
        for other in (key for key in rows if key[0] == model and key != (model, label)):
            wins = []
            for _, test in mine[(mine.corpus == corpus) & (mine.setting == setting) & (mine.model == model)].iterrows():
                if {test.run_a, test.run_b} == {label, other[1]}:
                    better = (test.difference > 0) == larger_is_better
                    wins.append(test.significant and (better if test.run_a == label else not better))
            if wins and all(wins):
                beaten.append(letters[other])
        markers.loc[(model, label), (corpus, setting)] = ",".join(beaten)
    table.index = pd.MultiIndex.from_tuples([(m, f"({letters[(m, s)]}) {s}") for m, s in rows], names=table.index.names)
    markers.index = spread.index = table.index
    table.attrs["std"] = spread
    return table, markers


def render(table: pd.DataFrame, markers: pd.DataFrame | None, digits: int, latex: bool) -> str:
    """Markdown or LaTeX (booktabs) text of `table`; markers become superscripts, and a
    standard deviation over seeds (`table.attrs["std"]`, where defined) follows the mean."""
    headers = list(table.index.names) + [" ".join(map(str, column)) for column in table.columns]
    spread = table.attrs.get("std")
    lines = []
    for position, (key, values) in enumerate(table.iterrows()):
        cells = []
        for column, value in zip(table.columns, values):
            mark = markers.iloc[position][column] if markers is not None else ""
            text = "–" if pd.isna(value) else f"{value:.{digits}f}"
            deviation = spread.iloc[position][column] if spread is not None else float("nan")
            if not pd.isna(deviation):
                text += (r" $\pm$ " if latex else " ± ") + f"{deviation:.{digits}f}"
            cells.append(text + ((f"$^{{{mark}}}$" if latex else f" ^{mark}") if mark else ""))
        lines.append(list(key if isinstance(key, tuple) else (key,)) + cells)
    if latex:

        def escape(text) -> str:
            return str(text).replace("_", r"\_").replace("&", r"\&").replace("%", r"\%")

        body = [" & ".join(escape(c) if "$" not in str(c) else str(c) for c in line) + r" \\" for line in lines]
        spec = "l" * len(table.index.names) + "r" * len(table.columns)
        return (
            "\n".join(
                [
                    rf"\begin{{tabular}}{{{spec}}}",
                    r"\toprule",
                    " & ".join(map(escape, headers)) + r" \\",
                    r"\midrule",
                    *body,
                    r"\bottomrule",
                    r"\end{tabular}",
                ]
            )
            + "\n"
        )
    rows = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    rows += ["| " + " | ".join(map(str, line)) + " |" for line in lines]
    return "\n".join(rows) + "\n"


def write_report_table(
    table: pd.DataFrame, markers: pd.DataFrame | None, digits: int, stem: Path, note: str = ""
) -> None:
    table.to_csv(stem.with_suffix(".csv"))
    (stem.with_suffix(".md")).write_text(render(table, markers, digits, latex=False) + (f"\n{note}\n" if note else ""))
    (stem.with_suffix(".tex")).write_text(render(table, markers, digits, latex=True))


def seed_means(columns: dict[tuple, list[pd.Series]]) -> pd.DataFrame:
    """One column per key: the mean over the seeds of a strategy (one series each)."""
    return pd.DataFrame(
        {key: parts[0] if len(parts) == 1 else pd.concat(parts, axis=1).mean(axis=1) for key, parts in columns.items()}
    )


def per_language_table(runs: list[Run], corpus: str) -> pd.DataFrame:
    """Rows: query language. Columns: model and strategy x (mono, cross, multi mAP, language
    bias), means over seeds; cross is the mean over candidate languages of a query language."""
    columns = {}
    for run in (r for r in runs if r.key.corpus == corpus):
        frame = run.by_language
        name = f"{run.key.model} {run.label}"
        for setting in SETTINGS:
            mean_map = frame[frame.setting == setting].groupby("query_lang")[MAP].mean()
            columns.setdefault((name, f"{setting} mAP"), []).append(mean_map)
        bias = frame[frame.setting == "multi"].groupby("query_lang")[RANK_DISTANCE].mean()
        columns.setdefault((name, "bias"), []).append(bias)
    table = seed_means(columns)
    table.index.name = "language"
    table.loc["average"] = table.mean()
    return table


def skipped_notes(runs: list[Run]) -> list[str]:
    """Per corpus: queries skipped for lacking a relevant candidate in a language, blocks
    left out of the macro average because every query was skipped, settings not reported."""
    notes = []
    for corpus in dict.fromkeys(run.key.corpus for run in runs):
        frame = next(run for run in runs if run.key.corpus == corpus).by_language
        skipped = frame.groupby("setting").skipped.sum()
        if skipped.any():
            counts = ", ".join(f"{setting} {int(n)}" for setting, n in skipped.items() if n)
            notes.append(f"{corpus}: queries skipped for a language pair with no relevant candidate: {counts}.")
        for setting, table in frame.groupby("setting", sort=False):
            empty = int((table.queries == 0).sum())
            if empty:
                notes.append(
                    f"{corpus} {setting}: averaged over {len(table) - empty} of {len(table)} language blocks "
                    f"({empty} have no query with a relevant candidate)."
                )
        missing = [setting for setting in SETTINGS if setting not in set(frame.setting)]
        if missing:
            notes.append(f"{corpus}: no {', '.join(missing)} setting (its items are not parallel across languages).")
    return notes


def write_tables(
    params: dict, runs: list[Run], tables_dir: Path, image_text_runs: list[Run] = ()
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every table (csv, md, tex) of `runs` (text track) and `image_text_runs` under
    `tables_dir`; returns the summary of both and the image-text tests."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    every = list(runs) + list(image_text_runs)
    summary = pd.concat([run.summary for run in every], ignore_index=True).sort_values(
        SUMMARY_COLUMNS[:7], ignore_index=True
    )
    summary.to_csv(tables_dir / "summary.csv", index=False)
    with threadpool_limits(1, user_api="blas"):  # the same floats whatever threads the stage or the audit has
        tests = comparisons(runs, params)
        curve = params.get("curve")
        compared_runs = compared(curve["image_shares"]) if curve else None
        image_tests = comparisons(list(image_text_runs), params, IMAGE_TEXT_HEADLINES, compared_runs)
        intervals = [confidence(runs, params), confidence(list(image_text_runs), params, IMAGE_TEXT_HEADLINES)]
    pd.concat([tests.assign(family="text"), image_tests.assign(family="image-text")], ignore_index=True).to_csv(
        tables_dir / "significance.csv", index=False
    )
    pd.concat(intervals, ignore_index=True).to_csv(tables_dir / "confidence.csv", index=False)
    note = (
        f"Superscripts: the rows (letters) a cell is better than in a paired randomization test with the {UNIT} "
        f"as the unit (one sign per {UNIT} for all its languages and language pairs; {params['permutations']} "
        f"sign flips), Holm-corrected over the track's tests (the family column of significance.csv), "
        f"p < {params['alpha']}, and over the seeds: at least {MIN_SEEDS} seeds, each seed's difference of one sign "
        f"and Welch's p < {params['alpha']} over the seeds' values (with fewer seeds no difference is marked: seed "
        "variance is not measured). The item test pairs runs of a seed and averages each query's difference over "
        "the seeds; the interval of a difference (significance.csv) resamples the seeds, then the items. Means "
        "over seeds; ± the standard deviation over seeds where a run has several."
    )
    text_note = note + "".join(f" {line}" for line in skipped_notes(runs))
    for metric, headline in HEADLINES.items():
        table, markers = headline_table(runs, tests, metric)
        write_report_table(table, markers, headline.digits, tables_dir / headline.stem, text_note)
    for corpus in dict.fromkeys(run.key.corpus for run in runs):
        write_report_table(per_language_table(runs, corpus), None, 3, tables_dir / per_language_stem(corpus))
    if image_text_runs:
        image_note = note.replace(f"the {UNIT} as", "the image as").replace(f"per {UNIT} ", "per image ")
        for metric, headline in IMAGE_TEXT_HEADLINES.items():
            table, markers = headline_table(list(image_text_runs), image_tests, metric, IMAGE_TEXT_HEADLINES)
            write_report_table(table, markers, headline.digits, tables_dir / headline.stem, image_note)
        write_report_table(
            image_text_table(image_text_runs),
            None,
            3,
            tables_dir / "image_text",
            IMAGE_TEXT_RECALL + " Macro averages over caption languages; bias: rank distance in "
            "i2t-multi as a share of the pooled captions.",
        )
        for corpus in dict.fromkeys(run.key.corpus for run in image_text_runs):
            write_report_table(
                image_text_per_language(image_text_runs, corpus, params.get("image_text_train_languages")),
                None,
                3,
                tables_dir / per_language_stem(f"image_text_{corpus}"),
            )
    return summary, image_tests


def image_text_table(runs: list[Run]) -> pd.DataFrame:
    """The image-text Table 1: rows model x strategy (mean over seeds); columns protocol x
    (T->I and I->T R@1/5/10, pooled I->T mAP, language bias)."""
    summary = pd.concat([run.summary.assign(label=run.label) for run in runs])
    summary[["task", "protocol"]] = summary.setting.str.split("/", expand=True)
    wanted = summary.set_index(["task", "metric"]).index.isin(IMAGE_TEXT_TABLE)
    table = summary[wanted].pivot_table(
        index=["model", "label"], columns=["protocol", "task", "metric"], values="value"
    )
    order = [(p, t, m) for p in ("first", "all") for t, m in IMAGE_TEXT_TABLE if (p, t, m) in table.columns]
    table = table[order]
    table.index.names = ["model", "strategy"]
    return table


def image_text_per_language(runs: list[Run], corpus: str, trained: list[str] | None = None) -> pd.DataFrame:
    """Rows: caption language (the `trained` ones first, each group with its average, then
    the average of all). Columns: run x (T->I R@1, I->T R@1, T->T cross R@1 as the query
    language), protocol `first` (or `all` where `first` was not evaluated); means over seeds."""
    columns, protocol = {}, main_protocol(runs)
    runs = [r for r in runs if r.key.corpus == corpus]
    for run, name in zip(runs, run_names(runs)):
        frame = run.by_language
        for column, part in (
            ("T->I R@1", frame[frame.setting == f"t2i/{protocol}"].set_index("query_lang")[recall(1)]),
            ("I->T R@1", frame[frame.setting == f"i2t/{protocol}"].set_index("candidate_lang")[recall(1)]),
            ("T->T R@1", frame[frame.setting == f"t2t-cross/{protocol}"].groupby("query_lang")[recall(1)].mean()),
        ):
            columns.setdefault((name, column), []).append(part)
    table = seed_means(columns)
    average = table.mean()
    if trained:
        groups = [
            ("average trained", [lang for lang in table.index if lang in trained]),
            ("average held out", [lang for lang in table.index if lang not in trained]),
        ]
        table = pd.concat(
            [
                part
                for name, langs in groups
                if langs
                for part in (table.loc[langs], table.loc[langs].mean().to_frame(name).T)
            ]
        )
    table.loc["average"] = average
    table.index.name = "language"
    return table


def write_curve(
    params: dict, runs: list[Run], tests: pd.DataFrame, lit_models: list, tables_dir: Path, plots_dir: Path
) -> None:
    """The budget curve's tables (per seed, strategy x budget, the paired tests) and plot."""
    curve = params["curve"]
    models = {Path(model).name: Path(model) for model in lit_models}
    trained = params.get("image_text_train_languages", [])
    values = curve_values(runs, models, trained)
    values.to_csv(tables_dir / f"{CURVE}_runs.csv", index=False)
    table = curve_table(values, curve["strategies"])
    text = formatted(table)
    note = leaders_and_crossings(table) + [
        f"{strategy} plateaus at {batches} batches (early stopping on development Recall@1, saved at its last "
        "step; mean ± sd over seeds)"
        for (strategy, budget), batches in text.batches.items()
        if budget == PLATEAU
    ]
    table.to_csv(tables_dir / f"{CURVE}.csv")
    table.attrs["std"].to_csv(tables_dir / f"{CURVE}_sd.csv")
    (tables_dir / f"{CURVE}.md").write_text(f"{by_budget(text)}\n### Every budget\n\n{markdown(text, note)}")
    paired = curve_tests(tests, main_protocol(runs))
    paired.to_csv(tables_dir / f"{CURVE_TESTS}.csv")
    (tables_dir / f"{CURVE_TESTS}.md").write_text(
        markdown(
            paired.fillna(""),
            [
                "a - b (means over seeds); * Holm-significant in a paired randomization test "
                "with the image as the unit "
                f"(one sign per image for all its captions), p < {params['alpha']} "
                "(significance.csv, family image-text: every test of the curve)"
            ],
        )
    )
    plot_curve(values, curve["strategies"], plots_dir / f"{CURVE}.png")


TRAINING_COLUMNS = ["saved step", "image-caption pairs", "caption-caption pairs", "development R@1"]  # pairs by target


def training_table(lit_models: list[str | Path]) -> pd.DataFrame:
    """Per LiT run (strategy, seed): the step its saved model ends (the last trained), the
    image-caption and caption-caption pairs among its batches as realised, and Recall@1 on
    the development split at that step."""
    rows = []
    for model in lit_models:
        run = ImageTextRun.parse(Path(model).name)
        summary = json.loads((Path(model) / "training.json").read_text())
        examples = summary["examples_by_batch_type"]
        pairs = image_pairs(examples)
        values = [summary["saved_step"], pairs, sum(examples.values()) - pairs, summary["development_recall_at_1"]]
        rows.append([run.strategy, run.seed, *values])
    return pd.DataFrame(rows, columns=["strategy", "seed", *TRAINING_COLUMNS])


def write_training_table(lit_models: list[str | Path], stem: Path) -> None:
    """The runs' training table (csv, one row per run) and its means ± sd over seeds (md)."""
    runs = training_table(lit_models)
    runs.to_csv(stem.with_suffix(".csv"), index=False)
    grouped = runs.groupby("strategy", sort=False)[TRAINING_COLUMNS]
    means, spread = grouped.mean(), grouped.std()
    text = pd.DataFrame(index=means.index)
    text["seeds"] = grouped.size()
    for column in TRAINING_COLUMNS:
        digits = 3 if column == "development R@1" else 0
        text[column] = [
            f"{m:.{digits}f}" + ("" if pd.isna(sd) or sd == 0 else f" ± {sd:.{digits}f}")
            for m, sd in zip(means[column], spread[column])
        ]
    note = [
        "The saved model is the last step trained (the end of its schedule, or where early stopping on "
        "development Recall@1 ended it); no checkpoint is chosen afterwards. Pairs are counted in the batches "
        "trained, as drawn. Development R@1: captions of the held-out development images (whole near-duplicate "
        "groups, never trained on) against those images pooled, at the saved step. Means ± sd over seeds."
    ]
    stem.with_suffix(".md").write_text(markdown(text, note))


class TablesParams(TypedDict):
    """The config's `significance` section, and the languages LiT trains on (the image-text
    per-language table groups its rows by them)."""

    alpha: float
    permutations: int
    bootstrap_samples: int
    seed: int
    image_text_train_languages: NotRequired[list[str]]
    curve: NotRequired[dict]  # with image_text.curve: its strategies, batch size and image-caption shares


def make_tables(
    params: TablesParams,
    metrics: list[str | Path],
    image_text_metrics: list[str | Path],
    lit_models: list[str | Path],
    tables: str | Path,
    plots: str | Path,
    record: str | Path,
) -> pd.DataFrame:
    """Write every table under `tables`, every plot under `plots` (with the
    validation curves of the LiT runs in `lit_models`), and the workflow record (every
    artifact behind them) at `record`."""
    from hybridbatch.artifacts.manifest import write_record

    tables_dir, plots_dir = Path(tables), Path(plots)
    for directory in (tables_dir, plots_dir):  # a former configuration's tables are not this run's
        for stale in directory.glob("*") if directory.is_dir() else []:
            if stale.is_file():
                stale.unlink()
    plots_dir.mkdir(parents=True, exist_ok=True)
    runs = load_runs(metrics, HEADLINES)
    image_text_runs = load_runs(image_text_metrics or [], IMAGE_TEXT_HEADLINES)
    summary, image_tests = write_tables(params, runs, tables_dir, image_text_runs)
    text_summary = summary[summary.corpus.isin({run.key.corpus for run in runs})]
    for corpus in text_summary.corpus.unique():
        plot_alpha(text_summary, corpus, plots_dir / f"{alpha_plot(corpus)}.png")
    for run in runs:
        plot_heatmap(run, plots_dir / heatmap_name(run.key))
    plot_settings(text_summary, plots_dir / f"{SETTINGS_PLOT}.png")
    if image_text_runs:
        plot_image_text(image_text_runs, plots_dir / f"{IMAGE_TEXT_PLOTS}.png")
        if any(run.key.strategy != ZERO_SHOT for run in image_text_runs):
            plot_image_text_alpha(image_text_runs, plots_dir / f"{IMAGE_TEXT_ALPHA_PLOT}.png")
    if lit_models:
        write_training_table(lit_models, tables_dir / IMAGE_TEXT_TRAINING)
        logs = [Path(model) / "validation_log.csv" for model in lit_models]  # absent: no development batches
        plot_validation_curves([log for log in logs if log.is_file()], plots_dir / f"{VALIDATION_PLOT}.png")
    if params.get("curve"):
        write_curve(params, image_text_runs, image_tests, lit_models, tables_dir, plots_dir)
    write_record(record, [tables_dir], list(metrics) + list(image_text_metrics or []))
    return summary
