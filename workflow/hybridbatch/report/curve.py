"""The budget curve (config `image_text.curve`): each strategy trained at a ladder of
budgets and to its plateau, three seeds each. Per run, the batches its saved model trained
and the image-caption pairs it saw; per strategy and budget, each headline's mean and
standard deviation over seeds (trained and held-out caption languages apart where a
caption language is defined); which pairs of runs are compared (equal batches, or equal
image-caption pairs); and where two strategies' curves cross."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from hybridbatch.batch_types import image_pairs
from hybridbatch.names import PLATEAU, CurvePoint, ImageTextRun
from hybridbatch.report.outputs import plotted
from hybridbatch.report.plots import pyplot
from hybridbatch.report.runs import Run, main_protocol

GROUPS = ("all", "trained", "held out")


def budget_order(budget) -> float:
    """Ladder budgets in order, the plateau last."""
    return np.inf if budget == PLATEAU else float(budget)


def trained_steps(model_dir: Path) -> tuple[int, int]:
    """(batches trained by the saved model, the image-caption pairs among them as realised
    in its batches), from the LiT run's training.json."""
    summary = json.loads((model_dir / "training.json").read_text())
    return int(summary["saved_step"]), image_pairs(summary["examples_by_batch_type"])


def curve_values(runs: list[Run], lit_models: dict[str, Path], trained: list[str]) -> pd.DataFrame:
    """One row per curve run, headline and language group: strategy, budget, seed, batches,
    pairs, headline, group, value (protocol `first` where evaluated)."""
    protocol, rows = main_protocol(runs), []
    for run in runs:
        point = CurvePoint.parse(run.key.strategy)
        if point.budget is None:
            continue
        batches, pairs = trained_steps(lit_models[ImageTextRun(run.key.strategy, int(run.key.seed)).name])
        base = (point.strategy, str(point.budget), int(run.key.seed), batches, pairs)
        for task, metric, title, _, side in plotted():
            setting = f"{task}/{protocol}"
            summary = run.summary[(run.summary.setting == setting) & (run.summary.metric == metric)]
            rows.append((*base, title, "all", float(summary.value.iloc[0])))
            if side:
                frame = run.by_language[run.by_language.setting == setting].set_index(side)[metric]
                for group, chosen in (("trained", frame.index.isin(trained)), ("held out", ~frame.index.isin(trained))):
                    if chosen.any():
                        rows.append((*base, title, group, float(frame[chosen].mean())))
    columns = ["strategy", "budget", "seed", "batches", "pairs", "headline", "group", "value"]
    return pd.DataFrame(rows, columns=columns)


def curve_table(values: pd.DataFrame, strategies: list[str]) -> pd.DataFrame:
    """Rows strategy x budget; columns batches and pairs seen, then headline x language
    group: means over seeds, standard deviations in `attrs["std"]`."""
    values = values.assign(column=values.headline + " " + values.group.str.replace("all", "").str.strip())
    values["column"] = values.column.str.strip()
    keys = ["strategy", "budget"]
    columns = list(dict.fromkeys(values.column))
    counts = values.drop_duplicates(keys + ["seed"])[[*keys, "seed", "batches", "pairs"]]
    counts = counts.melt(keys + ["seed"], ["batches", "pairs"], "column")
    both = pd.concat([counts, values[keys + ["seed", "column", "value"]]])
    table = both.pivot_table(index=keys, columns="column", values="value", aggfunc="mean")
    spread = both.pivot_table(index=keys, columns="column", values="value", aggfunc="std")
    rows = sorted(table.index, key=lambda key: (strategies.index(key[0]), budget_order(key[1])))
    order = ["batches", "pairs", *columns]
    table, spread = table.loc[rows, order], spread.reindex(index=rows, columns=order)
    spread[["batches", "pairs"]] = spread[["batches", "pairs"]].where(spread[["batches", "pairs"]] > 0)
    table.attrs["std"] = spread
    return table


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    """The curve table as text: mean ± sd, counts without decimals."""
    spread = table.attrs["std"]

    def cell(column: str, mean: float, deviation: float) -> str:
        digits = 0 if column in ("batches", "pairs") else 3
        return f"{mean:.{digits}f}" + ("" if pd.isna(deviation) else f" ± {deviation:.{digits}f}")

    return pd.DataFrame(
        {column: [cell(column, m, d) for m, d in zip(table[column], spread[column])] for column in table.columns},
        index=table.index,
    )


def markdown(table: pd.DataFrame, note: list[str] = ()) -> str:
    headers = list(table.index.names) + list(table.columns)
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for key, values in table.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        lines.append("| " + " | ".join(map(str, [*key, *values.fillna("")])) + " |")
    return "\n".join(lines + [""] + [f"- {line}" for line in note]) + "\n"


def by_budget(text: pd.DataFrame) -> str:
    """Markdown: per headline (all caption languages), a table of strategy x budget, each
    cell mean ± sd over seeds as in the curve table; the plateau column with its batches."""
    parts = []
    for _, _, title, _, _ in plotted():
        if title not in text.columns:
            continue
        cells = text[title].copy()
        plateau = [key for key in cells.index if key[1] == PLATEAU]
        for key in plateau:
            cells[key] = f"{cells[key]} ({text.batches[key]} batches)"
        wide = cells.unstack("budget")
        wide = wide.loc[
            list(dict.fromkeys(text.index.get_level_values("strategy"))), sorted(wide.columns, key=budget_order)
        ]
        wide.columns = [f"{budget} batches" if budget != PLATEAU else PLATEAU for budget in wide.columns]
        parts.append(f"### {title}\n\n" + markdown(wide.rename_axis(index="strategy")))
    return "\n".join(parts)


def compared(image_shares: dict[str, float]):
    """Which two curve runs a paired test compares: two strategies at the same budget
    (equal batches), or at budgets that give them equal image-caption pairs (`mixed@64`
    and `hybrid@128`: hybrid spends half its batches on caption-caption pairs)."""

    def same_budget_or_pairs(a: str, b: str) -> bool:
        first, second = CurvePoint.parse(a), CurvePoint.parse(b)
        if first.strategy == second.strategy or PLATEAU in (first.budget, second.budget):
            return first.strategy != second.strategy and first.budget == second.budget
        if first.budget == second.budget:
            return True
        pairs = [point.budget * image_shares[point.strategy] for point in (first, second)]
        return np.isclose(*pairs)

    return same_budget_or_pairs


def comparison_kind(a: str, b: str) -> str:
    budgets = CurvePoint.parse(a).budget, CurvePoint.parse(b).budget
    if PLATEAU in budgets:
        return "each at its plateau"
    return "equal batches" if budgets[0] == budgets[1] else "equal pairs"


def curve_tests(tests: pd.DataFrame, protocol: str) -> pd.DataFrame:
    """The curve's paired tests of the main protocol: rows comparison (budget, a, b, kind),
    columns headline; each cell the difference a - b, `*` where Holm-significant."""
    rows = {}
    titles = {(task, metric): title for task, metric, title, _, _ in plotted()}
    for _, test in tests.iterrows():
        task, chosen = test.setting.split("/")
        if chosen != protocol or (task, test.metric) not in titles:
            continue
        a, b = (CurvePoint.parse(label.split(" (alpha")[0]) for label in (test.run_a, test.run_b))
        key = (str(a.budget), a.name, b.name, comparison_kind(a.name, b.name))
        cell = f"{test.difference:+.3f}"
        rows.setdefault(key, {})[titles[(task, test.metric)]] = cell + (" *" if test.significant else "")
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index = pd.MultiIndex.from_tuples(table.index, names=["budget", "a", "b", "compared at"])
    ordered = sorted(table.index, key=lambda key: (budget_order(key[0]), key[3], key[1], key[2]))
    return table.loc[ordered, [title for _, _, title, _, _ in plotted() if title in table.columns]]


def leaders_and_crossings(table: pd.DataFrame) -> list[str]:
    """Plain sentences: per headline, the leading strategy at each budget (means over
    seeds, all languages), and the budgets between which two strategies' order flips."""
    lines = []
    for _, _, title, larger_is_better, _ in plotted():
        if title not in table.columns:
            continue
        means = table[title].unstack("strategy")[list(dict.fromkeys(table.index.get_level_values("strategy")))]
        means = means.loc[sorted(means.index, key=budget_order)]
        best = means.idxmax(axis=1) if larger_is_better else means.idxmin(axis=1)
        lines.append(f"{title}: leader per budget: " + ", ".join(f"{budget} {best[budget]}" for budget in means.index))
        for a, b in combinations(means.columns, 2):
            sign = np.sign(means[a] - means[b])
            for before, after in zip(means.index[:-1], means.index[1:]):
                if sign[before] * sign[after] < 0:
                    lines.append(f"{title}: {a} and {b} cross between {before} and {after}.")
    return lines


def draw_strategy(axis, values: pd.DataFrame, x: str, style: str, colour, label: str) -> None:
    """One strategy's rows of one headline and language group: its ladder as a line (mean
    over seeds, one standard deviation shaded) and its plateau run as a star."""
    points = values.groupby("budget", sort=False)[[x, "value"]].agg(["mean", "std"])
    points = points.loc[sorted(points.index, key=budget_order)]
    ladder = points[[budget != PLATEAU for budget in points.index]]
    mean, spread = ladder[("value", "mean")], ladder[("value", "std")].fillna(0)
    axis.plot(ladder[(x, "mean")], mean, style, marker="o", color=colour, label=label)
    axis.fill_between(ladder[(x, "mean")], mean - spread, mean + spread, color=colour, alpha=0.12)
    if PLATEAU in points.index:
        top = points.loc[PLATEAU]
        axis.errorbar(
            top[(x, "mean")], top[("value", "mean")], yerr=np.nan_to_num(top[("value", "std")]),
            xerr=np.nan_to_num(top[(x, "std")]), marker="*", markersize=11, color=colour, capsize=3, linestyle="none",
        )  # fmt: skip


def plot_curve(values: pd.DataFrame, strategies: list[str], path: Path) -> None:
    """Each headline against batches trained (top row) and image-caption pairs seen
    (bottom row), log scale: mean over seeds at each budget, one standard deviation
    shaded; R@1 for the trained (solid) and held-out (dashed) caption languages apart;
    the plateau run as a star at its saved model's mean batches and pairs."""
    plt = pyplot()
    panels = plotted()
    figure, axes = plt.subplots(2, len(panels), figsize=(4.5 * len(panels), 8), squeeze=False)
    colours = plt.get_cmap("tab10")
    for column, (_, _, title, larger_is_better, side) in enumerate(panels):
        groups = [("trained", "-"), ("held out", "--")] if side else [("all", "-")]
        for row, x in enumerate(("batches", "pairs")):
            axis = axes[row][column]
            panel = values[values.headline == title]
            for index, strategy in enumerate(strategies):
                for group, style in groups:
                    chosen = panel[(panel.strategy == strategy) & (panel.group == group)]
                    label = strategy + (f" ({group})" if side else "")
                    draw_strategy(axis, chosen, x, style, colours(index), label)
            axis.set_xscale("log", base=2)
            axis.set(xlabel="batches trained" if x == "batches" else "image-caption pairs seen", title=title)
            axis.set_ylabel(title + ("" if larger_is_better else " (lower is better)"), fontsize=8)
            axis.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(strategies))
    figure.suptitle("Budget curve: mean ± sd over seeds; ★ trained to the plateau (early stopping)", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
