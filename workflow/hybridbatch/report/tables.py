"""Tables stage: the summary contract, the paper's tables with significance markers,
per-language tables, confidence intervals and plots, from the evaluated runs."""

from __future__ import annotations

import logging
from itertools import combinations
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import pandas as pd

from hybridbatch.names import RUN_KEYS, SETTINGS, SUMMARY_COLUMNS, ZERO_SHOT, heatmap_name
from hybridbatch.report.significance import UNIT, block_weights, bootstrap_interval, holm, randomization_test

# per track: metric -> (per-query column, settings, whether larger is better, digits)
HEADLINES = {"map": ("map", SETTINGS, True, 3), "language_bias": ("rank_distance", ("multi",), False, 1)}
IMAGE_TEXT_HEADLINES = {
    "recall@1": ("recall@1", tuple(f"{s}/{p}" for p in ("first", "all") for s in ("t2i", "i2t")), True, 3),
    "map": ("map", ("i2t-multi/first", "i2t-multi/all"), True, 3),
    "language_bias": ("rank_distance", ("i2t-multi/first", "i2t-multi/all"), False, 1),
}


def reported(headlines: dict) -> tuple[list[str], list[str]]:
    """The per-query settings and metric columns the tables of a track read."""
    settings = sorted({setting for _, names, _, _ in headlines.values() for setting in names})
    return settings, sorted({column for column, _, _, _ in headlines.values()})


class Run:
    """One evaluated model state on one corpus: its descriptor, and the per-query metrics of
    the settings and columns its track's headlines report (`headlines`; all when None)."""

    def __init__(self, metrics_dir: str | Path, headlines: dict | None = None):
        metrics_dir = Path(metrics_dir)
        self.summary = pd.read_csv(metrics_dir / "summary.csv", dtype={"seed": "Int64"})
        if list(self.summary.columns) != SUMMARY_COLUMNS:
            raise ValueError(
                f"{metrics_dir / 'summary.csv'}: columns {list(self.summary.columns)}, expected {SUMMARY_COLUMNS}"
            )
        self.key = tuple(self.summary.iloc[0][RUN_KEYS])
        if headlines is None:
            self.per_query = pd.read_parquet(metrics_dir / "per_query.parquet")
        else:
            settings, columns = reported(headlines)
            self.per_query = pd.read_parquet(
                metrics_dir / "per_query.parquet",
                columns=["setting", "qid", "item_id", "query_lang", "candidate_lang", *columns],
                filters=[("setting", "in", settings)],
            )
        self.by_language = pd.read_parquet(metrics_dir / "by_language.parquet")

    @property
    def label(self) -> str:
        corpus, model, strategy, alpha, seed = self.key
        return strategy if strategy == ZERO_SHOT else f"{strategy} (alpha={alpha:g})"

    def values(self, setting: str, column: str) -> pd.DataFrame:
        rows = self.per_query[self.per_query.setting == setting]
        block = rows.query_lang + ">" + rows.candidate_lang  # a language or a language pair
        return pd.DataFrame(
            {
                "qid": rows.qid,
                "candidate_lang": rows.candidate_lang,
                "block": block,
                "item_id": rows.item_id,
                "value": rows[column],
            }
        )


QUERY_KEYS = ["qid", "candidate_lang", "block", "item_id"]


def paired_by_seed(a: dict, b: dict) -> list[tuple[object, Run, Run]]:
    """(seed, run of a, run of b) for the seeds both strategies were run with; the
    zero-shot model (one run, no seed) pairs with every run of the other."""
    only = lambda runs: next(iter(runs.values()))  # noqa: E731
    if only(a).key[2] == ZERO_SHOT:
        return [(seed, only(a), run) for seed, run in b.items()]
    if only(b).key[2] == ZERO_SHOT:
        return [(seed, run, only(b)) for seed, run in a.items()]
    return [(seed, a[seed], b[seed]) for seed in a if seed in b]


def seed_averaged_pairs(pairs: list[tuple[object, Run, Run]], setting: str, column: str) -> pd.DataFrame:
    """Each query's values in the two runs of every seed (paired within the seed), averaged
    over the seeds; a query missing from a seed is left out."""
    frames = [a.values(setting, column).merge(b.values(setting, column), on=QUERY_KEYS) for _, a, b in pairs]
    if any(frame.empty for frame in frames):
        return pd.DataFrame()
    paired = pd.concat(frames).groupby(QUERY_KEYS, sort=False)
    means = paired[["value_x", "value_y"]].mean().assign(seeds=paired.size()).reset_index()
    return means[means.seeds == len(pairs)]


def comparisons(runs: list[Run], params: dict, headlines: dict = HEADLINES) -> pd.DataFrame:
    """Every pair of strategies of the same corpus and model, per headline metric and
    setting: one test over the seeds both have (the zero-shot model joins every seed), on
    each query's difference within its seed averaged over the seeds, the item the unit;
    Holm-corrected over all."""
    rows = []
    strategies: dict[tuple, dict[str, dict]] = {}  # (corpus, model) -> label -> seed -> run
    for run in runs:
        strategies.setdefault(run.key[:2], {}).setdefault(run.label, {})[run.key[4]] = run
    for (corpus, model), labels in sorted(strategies.items(), key=lambda group: str(group[0])):
        for (label_a, seeds_a), (label_b, seeds_b) in combinations(labels.items(), 2):
            pairs = paired_by_seed(seeds_a, seeds_b)
            seeds = "+".join(str(seed) for seed, _, _ in pairs)
            for metric, (column, settings, _, _) in headlines.items():
                for setting in settings:
                    paired = seed_averaged_pairs(pairs, setting, column) if pairs else pd.DataFrame()
                    if paired.empty:
                        continue
                    differences = (paired.value_x - paired.value_y).to_numpy()
                    blocks, items = paired.block.to_numpy(), paired.item_id.to_numpy()
                    weights = block_weights(blocks)
                    value_a, value_b = weights @ paired.value_x.to_numpy(), weights @ paired.value_y.to_numpy()
                    low, high = bootstrap_interval(
                        differences, blocks, items, params["bootstrap_samples"], params["seed"]
                    )
                    p = randomization_test(differences, blocks, items, params["permutations"], params["seed"])
                    rows.append(
                        (
                            corpus,
                            model,
                            seeds,
                            setting,
                            metric,
                            label_a,
                            label_b,
                            value_a,
                            value_b,
                            value_a - value_b,
                            low,
                            high,
                            len(paired),
                            len(set(items)),
                            UNIT,
                            p,
                        )
                    )
    columns = [
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
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame["p_holm"] = holm(frame.p_value.to_numpy()) if len(frame) else []
    frame["significant"] = frame.p_holm < params["alpha"]
    if len(frame) / (params["permutations"] + 1) >= params["alpha"]:  # Holm's smallest: tests x the smallest p
        logging.warning(
            "config key significance.permutations: %d sign flips give p >= 1/%d, so Holm over %d tests cannot "
            "reach %s: nothing can be significant; raise it above %d",
            params["permutations"],
            params["permutations"] + 1,
            len(frame),
            params["alpha"],
            int(len(frame) / params["alpha"]),
        )
    return frame


def confidence(runs: list[Run], params: dict, headlines: dict = HEADLINES) -> pd.DataFrame:
    rows = []
    for run in runs:
        for metric, (column, settings, _, _) in headlines.items():
            for setting in settings:
                values = run.values(setting, column)
                if values.empty:
                    continue
                blocks, items = values.block.to_numpy(), values.item_id.to_numpy()
                value = block_weights(blocks) @ values.value.to_numpy()
                low, high = bootstrap_interval(
                    values.value.to_numpy(), blocks, items, params["bootstrap_samples"], params["seed"]
                )
                rows.append(run.key + (setting, metric, value, low, high, UNIT))
    return pd.DataFrame(rows, columns=RUN_KEYS + ["setting", "metric", "value", "ci_low", "ci_high", "unit"])


def headline_table(
    runs: list[Run], tests: pd.DataFrame, metric: str, headlines: dict = HEADLINES
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Values (rows model x strategy, mean over seeds; columns corpus x setting; the
    standard deviation over seeds in `table.attrs["std"]`) and, per cell, the letters of
    the rows it beats significantly (`comparisons`: one test over the seeds)."""
    _, settings, larger_is_better, _ = headlines[metric]
    summary = pd.concat([run.summary.assign(label=run.label) for run in runs])
    chosen = summary[(summary.metric == metric) & summary.setting.isin(settings)]
    table = chosen.pivot_table(index=["model", "label"], columns=["corpus", "setting"], values="value", aggfunc="mean")
    rows = sorted(table.index, key=lambda key: (key[0], key[1] != ZERO_SHOT, key[1]))
    columns = [(c, s) for c in table.columns.get_level_values(0).unique() for s in settings if (c, s) in table.columns]
    spread = chosen.pivot_table(index=["model", "label"], columns=["corpus", "setting"], values="value", aggfunc="std")
    spread = spread.reindex(index=rows, columns=columns)
    table = table.loc[rows, columns]
    table.index.names = ["model", "strategy"]
    letters = {key: "abcdefghijklmnopqrstuvwxyz"[i % 26] for i, key in enumerate(rows)}
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
    for run in (r for r in runs if r.key[0] == corpus):
        frame = run.by_language
        name = f"{run.key[1]} {run.label}"
        for setting in SETTINGS:
            mean_map = frame[frame.setting == setting].groupby("query_lang")["map"].mean()
            columns.setdefault((name, f"{setting} mAP"), []).append(mean_map)
        bias = frame[frame.setting == "multi"].groupby("query_lang")["rank_distance"].mean()
        columns.setdefault((name, "bias"), []).append(bias)
    table = seed_means(columns)
    table.index.name = "language"
    table.loc["average"] = table.mean()
    return table


def skipped_notes(runs: list[Run]) -> list[str]:
    """Per corpus: queries skipped for lacking a relevant candidate in a language, blocks
    left out of the macro average because every query was skipped, settings not reported."""
    notes = []
    for corpus in dict.fromkeys(run.key[0] for run in runs):
        frame = next(run for run in runs if run.key[0] == corpus).by_language
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


def plot_heatmap(run: Run, path: Path) -> None:
    plt = _pyplot()
    frame = run.by_language[run.by_language.setting.isin(["mono", "cross"])]
    matrix = frame.pivot_table(index="query_lang", columns="candidate_lang", values="map")
    figure, axis = plt.subplots(figsize=(1.5 + 0.55 * len(matrix.columns), 1 + 0.5 * len(matrix)))
    image = axis.imshow(matrix.to_numpy(), vmin=0, vmax=1, cmap="viridis")
    axis.set(
        xticks=range(len(matrix.columns)),
        xticklabels=matrix.columns,
        yticks=range(len(matrix)),
        yticklabels=matrix.index,
    )
    axis.set(xlabel="candidate language", ylabel="query language")
    for (i, j), value in np.ndenumerate(matrix.to_numpy()):
        label = f"{value:.2f}".removeprefix("0")
        axis.text(j, i, label, ha="center", va="center", fontsize=6, color="w" if value < 0.6 else "k")
    corpus, model = run.key[:2]
    axis.set_title(f"{corpus}, {model}, {run.label}: mAP (diagonal: mono)", fontsize=8)
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_alpha(summary: pd.DataFrame, corpus: str, path: Path) -> None:
    """mAP per setting and language bias against alpha (X-Y is alpha=0, X-X-mono alpha=1)."""
    plt = _pyplot()
    trained = summary[(summary.corpus == corpus) & (summary.strategy != ZERO_SHOT)]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for model, rows in trained.groupby("model"):
        for setting in SETTINGS:
            points = (
                rows[(rows.metric == "map") & (rows.setting == setting)].groupby("alpha").value.agg(["mean", "std"])
            )
            left.errorbar(
                points.index,
                points["mean"],
                yerr=points["std"].fillna(0),
                marker="o",
                capsize=3,
                label=f"{model} {setting}",
            )
        bias = rows[rows.metric == "language_bias"].groupby("alpha").value.agg(["mean", "std"])
        right.errorbar(bias.index, bias["mean"], yerr=bias["std"].fillna(0), marker="o", capsize=3, label=model)
    left.set(xlabel="alpha (share of X-X-mono batches)", ylabel="mAP", title=f"{corpus}: mAP vs alpha")
    right.set(
        xlabel="alpha (share of X-X-mono batches)", ylabel="mean rank distance", title="language bias (lower is better)"
    )
    for axis in (left, right):
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=3)  # below, not over the lines
        axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def load_runs(metrics_dirs: list[str | Path], headlines: dict | None = None) -> list[Run]:
    """The evaluated runs in a fixed order (corpus, model, zero-shot first, strategy, seed),
    so tables do not depend on the order the metrics directories are given in; each with
    the per-query rows its track's `headlines` report (all when None)."""
    runs = [Run(path, headlines) for path in metrics_dirs]
    return sorted(
        runs, key=lambda r: (r.key[0], r.key[1], r.key[2] != ZERO_SHOT, r.key[2], -1 if pd.isna(r.key[4]) else r.key[4])
    )


def write_tables(params: dict, runs: list[Run], tables_dir: Path, image_text_runs: list[Run] = ()) -> pd.DataFrame:
    """Every table (csv, md, tex) of `runs` (text track) and `image_text_runs` under
    `tables_dir`; returns the summary of both."""
    tables_dir.mkdir(parents=True, exist_ok=True)
    every = list(runs) + list(image_text_runs)
    summary = pd.concat([run.summary for run in every], ignore_index=True).sort_values(
        SUMMARY_COLUMNS[:7], ignore_index=True
    )
    summary.to_csv(tables_dir / "summary.csv", index=False)
    tests = comparisons(runs, params)
    image_tests = comparisons(list(image_text_runs), params, IMAGE_TEXT_HEADLINES)
    pd.concat([tests.assign(family="text"), image_tests.assign(family="image-text")], ignore_index=True).to_csv(
        tables_dir / "significance.csv", index=False
    )
    pd.concat(
        [confidence(runs, params), confidence(list(image_text_runs), params, IMAGE_TEXT_HEADLINES)], ignore_index=True
    ).to_csv(tables_dir / "confidence.csv", index=False)
    note = (
        f"Superscripts: the rows (letters) a cell is better than in a paired randomization test with the {UNIT} "
        f"as the unit (one sign per {UNIT} for all its languages and language pairs; {params['permutations']} "
        f"sign flips), Holm-corrected over the track's tests (the family column of significance.csv), "
        f"p < {params['alpha']}. With several seeds, one test per pair: each query's difference within its "
        "seed (runs of the same seed paired), averaged over the seeds. Means over seeds; ± the standard deviation "
        "over seeds where a run has several."
    )
    text_note = note + "".join(f" {line}" for line in skipped_notes(runs))
    for metric, (_, _, _, digits) in HEADLINES.items():
        table, markers = headline_table(runs, tests, metric)
        write_report_table(table, markers, digits, tables_dir / metric, text_note)
    for corpus in dict.fromkeys(run.key[0] for run in runs):
        write_report_table(per_language_table(runs, corpus), None, 3, tables_dir / f"per_language_{corpus}")
    if image_text_runs:
        image_note = note.replace(f"the {UNIT} as", "the image as").replace(f"per {UNIT} ", "per image ")
        for metric, (_, _, _, digits) in IMAGE_TEXT_HEADLINES.items():
            table, markers = headline_table(list(image_text_runs), image_tests, metric, IMAGE_TEXT_HEADLINES)
            write_report_table(
                table, markers, digits, tables_dir / f"image_text_{metric.replace('@', '_at_')}", image_note
            )
        write_report_table(
            image_text_table(image_text_runs),
            None,
            3,
            tables_dir / "image_text",
            "Recall@k: 1 when any relevant candidate is in the top k (CLIP_benchmark). Macro averages over "
            "caption languages; bias: rank distance in i2t-multi.",
        )
        for corpus in dict.fromkeys(run.key[0] for run in image_text_runs):
            write_report_table(
                image_text_per_language(image_text_runs, corpus, params.get("image_text_train_languages")),
                None,
                3,
                tables_dir / f"per_language_image_text_{corpus}",
            )
    return summary


IMAGE_TEXT_COLUMNS = [
    ("t2i", "recall@1"),
    ("t2i", "recall@5"),
    ("t2i", "recall@10"),
    ("i2t", "recall@1"),
    ("i2t", "recall@5"),
    ("i2t", "recall@10"),
    ("i2t-multi", "map"),
    ("i2t-multi", "language_bias"),
]


def image_text_table(runs: list[Run]) -> pd.DataFrame:
    """The image-text Table 1: rows model x strategy (mean over seeds); columns protocol x
    (T->I and I->T R@1/5/10, pooled I->T mAP, language bias)."""
    summary = pd.concat([run.summary.assign(label=run.label) for run in runs])
    summary[["task", "protocol"]] = summary.setting.str.split("/", expand=True)
    wanted = summary.set_index(["task", "metric"]).index.isin(IMAGE_TEXT_COLUMNS)
    table = summary[wanted].pivot_table(
        index=["model", "label"], columns=["protocol", "task", "metric"], values="value"
    )
    order = [(p, t, m) for p in ("first", "all") for t, m in IMAGE_TEXT_COLUMNS if (p, t, m) in table.columns]
    table = table[order]
    table.index.names = ["model", "strategy"]
    return table


def main_protocol(runs: list[Run]) -> str:
    """`first` where it was evaluated, else `all`: the protocol of per-language views."""
    return "first" if any((run.summary.setting == "t2i/first").any() for run in runs) else "all"


def run_names(runs: list[Run]) -> list[str]:
    """Each run's label, prefixed by its model where runs of several models are shown together."""
    several = len({run.key[1] for run in runs}) > 1
    return [f"{run.key[1]}: {run.label}" if several else run.label for run in runs]


def image_text_per_language(runs: list[Run], corpus: str, trained: list[str] | None = None) -> pd.DataFrame:
    """Rows: caption language (the `trained` ones first, each group with its average, then
    the average of all). Columns: run x (T->I R@1, I->T R@1, T->T cross R@1 as the query
    language), protocol `first` (or `all` where `first` was not evaluated); means over seeds."""
    columns, protocol = {}, main_protocol(runs)
    runs = [r for r in runs if r.key[0] == corpus]
    for run, name in zip(runs, run_names(runs)):
        frame = run.by_language
        for column, part in (
            ("T->I R@1", frame[frame.setting == f"t2i/{protocol}"].set_index("query_lang")["recall@1"]),
            ("I->T R@1", frame[frame.setting == f"i2t/{protocol}"].set_index("candidate_lang")["recall@1"]),
            ("T->T R@1", frame[frame.setting == f"t2t-cross/{protocol}"].groupby("query_lang")["recall@1"].mean()),
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


def image_text_by_language(runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """T->I and I->T R@1 (caption language x strategy) and the i2t-multi language bias per
    strategy, each the mean over the strategy's seeds."""
    protocol, names = main_protocol(runs), run_names(runs)
    recalls = []
    for setting, side in ((f"t2i/{protocol}", "query_lang"), (f"i2t/{protocol}", "candidate_lang")):
        per_run = [
            run.by_language[run.by_language.setting == setting].set_index(side)["recall@1"].rename(name)
            for run, name in zip(runs, names)
        ]
        recalls.append(pd.concat(per_run, axis=1).T.groupby(level=0, sort=False).mean().T)
    bias = pd.Series(
        [
            run.summary.query(f"metric == 'language_bias' and setting == 'i2t-multi/{protocol}'").value.mean()
            for run in runs
        ],
        index=names,
    )
    return recalls[0], recalls[1], bias.groupby(level=0, sort=False).mean()


def plot_image_text(runs: list[Run], path: Path) -> None:
    """Per-language T->I and I->T R@1 bars per strategy, and the language bias per strategy
    (means over seeds)."""
    plt = _pyplot()
    protocol = main_protocol(runs)
    t2i, i2t, bias = image_text_by_language(runs)
    figure, axes = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [3, 3, 1.6]})
    for axis, setting, bars in ((axes[0], f"t2i/{protocol}", t2i), (axes[1], f"i2t/{protocol}", i2t)):
        bars.plot.bar(ax=axis, rot=0, width=0.8)
        axis.set(
            ylabel="R@1",
            xlabel="caption language",
            title=f"{setting.split('/')[0].upper().replace('2', '→')} R@1 ({protocol})",
        )
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    bias[::-1].plot.barh(ax=axes[2], color="grey")  # the first strategy on top
    axes[2].tick_params(axis="y", labelsize=7)
    axes[2].set(xlabel="mean rank distance", title="language bias, i2t-multi\n(lower is better)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


IMAGE_TEXT_ALPHA_PANELS = [  # (task, metric, title) of the headlines plotted against alpha
    ("t2i", "recall@1", "T→I R@1"),
    ("i2t", "recall@1", "I→T R@1"),
    ("i2t-multi", "map", "pooled I→T mAP"),
    ("i2t-multi", "language_bias", "language bias (lower is better)"),
]


def image_text_alpha_points(runs: list[Run]) -> pd.DataFrame:
    """Per trained strategy and headline (protocol `first` where evaluated): its alpha, the
    mean and standard deviation over its seeds, and the number of seeds."""
    protocol = main_protocol(runs)
    summary = pd.concat([run.summary.assign(label=run.label) for run in runs if run.key[2] != ZERO_SHOT])
    panels = pd.DataFrame(IMAGE_TEXT_ALPHA_PANELS, columns=["task", "metric", "title"])
    panels["setting"] = panels.task + "/" + protocol
    chosen = summary.merge(panels, on=["setting", "metric"])
    points = chosen.groupby(["model", "strategy", "alpha", "title"], sort=False).value.agg(["mean", "std", "count"])
    return points.rename(columns={"count": "seeds"}).reset_index()


def plot_image_text_alpha(runs: list[Run], path: Path) -> None:
    """Each image-text headline against alpha (the share of image-caption-mono batches): a
    point per strategy at the mean over seeds, bars one standard deviation either side;
    strategies at the same alpha sit side by side."""
    plt = _pyplot()
    points = image_text_alpha_points(runs)
    strategies = points[["model", "strategy", "alpha"]].drop_duplicates().reset_index(drop=True)
    at_alpha = strategies.groupby("alpha").strategy
    strategies["offset"] = 0.012 * (at_alpha.cumcount() - (at_alpha.transform("size") - 1) / 2)
    figure, axes = plt.subplots(1, len(IMAGE_TEXT_ALPHA_PANELS), figsize=(16, 3.9))
    colours = plt.get_cmap("tab10")
    for axis, (_, _, title) in zip(axes, IMAGE_TEXT_ALPHA_PANELS):
        panel = points[points.title == title]
        for index, strategy in strategies.iterrows():
            row = panel[(panel.model == strategy.model) & (panel.strategy == strategy.strategy)]
            seeds = int(row.seeds.max()) if len(row) else 0
            axis.errorbar(
                row.alpha + strategy.offset,
                row["mean"],
                yerr=row["std"].fillna(0),
                fmt="o",
                capsize=3,
                color=colours(index % 10),
                label=f"{strategy.strategy} ({seeds} seed{'s' * (seeds != 1)})",
            )
        axis.set(xlabel="alpha (share of image-caption-mono batches)", title=title, xlim=(-0.08, 1.08))
        axis.set_xticks([0, 0.25, 0.5, 0.75, 1])
        axis.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=len(labels))
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def validation_curves(logs: list[str | Path]) -> pd.DataFrame:
    """Validation loss by strategy and steps trained: mean, standard deviation and seeds,
    from LiT runs' validation_log.csv (each in its run's `<strategy>.s<seed>` directory)."""
    frames = []
    for log in logs:
        strategy, seed = Path(log).parent.name.rsplit(".s", 1)
        frames.append(pd.read_csv(log).assign(strategy=strategy, seed=int(seed)))
    curves = pd.concat(frames).groupby(["strategy", "steps_trained"], sort=False).validation_loss
    return curves.agg(["mean", "std", "count"]).rename(columns={"count": "seeds"}).reset_index()


def plot_validation_curves(logs: list[str | Path], path: Path) -> None:
    """Each strategy's validation loss on the shared validation batches against steps
    trained: the mean over seeds, shaded one standard deviation either side."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4))
    if not logs:
        axis.text(0.5, 0.5, "no validation batches", ha="center")
    curves = validation_curves(logs) if logs else pd.DataFrame(columns=["strategy"])
    colours = plt.get_cmap("tab10")
    for index, (strategy, curve) in enumerate(curves.groupby("strategy", sort=False)):
        colour = colours(index % 10)
        seeds = int(curve.seeds.max())
        axis.plot(curve.steps_trained, curve["mean"], color=colour, label=f"{strategy} ({seeds} seeds)")
        spread = curve["std"].fillna(0)
        axis.fill_between(curve.steps_trained, curve["mean"] - spread, curve["mean"] + spread, color=colour, alpha=0.15)
    axis.set(xlabel="steps trained", ylabel="validation loss (image-caption batches)", title="LiT validation loss")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


class TablesParams(TypedDict):
    """The config's `significance` section, and the languages LiT trains on (the image-text
    per-language table groups its rows by them)."""

    alpha: float
    permutations: int
    bootstrap_samples: int
    seed: int
    image_text_train_languages: NotRequired[list[str]]


def make_tables(
    params: TablesParams,
    metrics_dirs: list[str | Path],
    image_text_metrics: list[str | Path],
    lit_models: list[str | Path],
    tables_dir: str | Path,
    plots_dir: str | Path,
    record: str | Path,
) -> pd.DataFrame:
    """Write every table under `tables_dir`, every plot under `plots_dir` (with the
    validation curves of the LiT runs in `lit_models`), and the workflow record (every
    artifact behind them) at `record`."""
    from hybridbatch.artifacts.manifest import write_record

    tables_dir, plots_dir = Path(tables_dir), Path(plots_dir)
    for directory in (tables_dir, plots_dir):  # a former configuration's tables are not this run's
        for stale in directory.glob("*") if directory.is_dir() else []:
            if stale.is_file():
                stale.unlink()
    plots_dir.mkdir(parents=True, exist_ok=True)
    runs = load_runs(metrics_dirs, HEADLINES)
    image_text_runs = load_runs(image_text_metrics or [], IMAGE_TEXT_HEADLINES)
    summary = write_tables(params, runs, tables_dir, image_text_runs)
    text_summary = summary[summary.corpus.isin({run.key[0] for run in runs})]
    for corpus in text_summary.corpus.unique():
        plot_alpha(text_summary, corpus, plots_dir / f"alpha_{corpus}.png")
    for run in runs:
        plot_heatmap(run, plots_dir / heatmap_name(run.key))
    plot_settings(text_summary, plots_dir / "map_by_setting.png")
    if image_text_runs:
        plot_image_text(image_text_runs, plots_dir / "image_text_by_language.png")
        if any(run.key[2] != ZERO_SHOT for run in image_text_runs):
            plot_image_text_alpha(image_text_runs, plots_dir / "image_text_alpha.png")
    if lit_models:
        logs = [Path(model) / "validation_log.csv" for model in lit_models]  # absent: too few images held out
        plot_validation_curves([log for log in logs if log.is_file()], plots_dir / "image_text_validation.png")
    write_record(record, [tables_dir], list(metrics_dirs) + list(image_text_metrics or []))
    return summary


def plot_settings(summary: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()
    chosen = summary[summary.metric == "map"].copy()
    chosen["run"] = chosen.model + "\n" + chosen.strategy
    corpora = chosen.corpus.unique()
    figure, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 4), squeeze=False)
    for axis, corpus in zip(axes[0], corpora):
        block = chosen[chosen.corpus == corpus].pivot_table(
            index="setting", columns="run", values="value", aggfunc="mean"
        )
        block.reindex([setting for setting in SETTINGS if setting in block.index]).plot.bar(ax=axis, rot=0)
        axis.set(title=f"{corpus}: mAP by setting", ylabel="mAP", ylim=(0, 1))
        axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside the bars, not over them
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
