"""The tables stage's plots: per-run heatmaps, mAP and language bias against alpha, mAP by
setting (text track); per-language recall, the headlines against alpha and the LiT
validation curves (image-text track)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hybridbatch.names import LANGUAGE_BIAS, MAP, SETTINGS, ZERO_SHOT, ImageTextRun, recall
from hybridbatch.report.outputs import plotted
from hybridbatch.report.runs import Run, main_protocol, run_names


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_heatmap(run: Run, path: Path) -> None:
    plt = pyplot()
    frame = run.by_language[run.by_language.setting.isin(["mono", "cross"])]
    matrix = frame.pivot_table(index="query_lang", columns="candidate_lang", values=MAP)
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
    corpus, model = run.key.corpus, run.key.model
    axis.set_title(f"{corpus}, {model}, {run.label}: mAP (diagonal: mono)", fontsize=8)
    figure.colorbar(image, ax=axis)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_alpha(summary: pd.DataFrame, corpus: str, path: Path) -> None:
    """mAP per setting and language bias against alpha (X-Y is alpha=0, X-X-mono alpha=1)."""
    plt = pyplot()
    trained = summary[(summary.corpus == corpus) & (summary.strategy != ZERO_SHOT)]
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    for model, rows in trained.groupby("model"):
        for setting in SETTINGS:
            points = rows[(rows.metric == MAP) & (rows.setting == setting)].groupby("alpha").value.agg(["mean", "std"])
            left.errorbar(
                points.index,
                points["mean"],
                yerr=points["std"].fillna(0),
                marker="o",
                capsize=3,
                label=f"{model} {setting}",
            )
        bias = rows[rows.metric == LANGUAGE_BIAS].groupby("alpha").value.agg(["mean", "std"])
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


def plot_settings(summary: pd.DataFrame, path: Path) -> None:
    plt = pyplot()
    chosen = summary[summary.metric == MAP].copy()
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


def image_text_by_language(runs: list[Run]) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """T->I and I->T R@1 (caption language x strategy) and the i2t-multi language bias per
    strategy, each the mean over the strategy's seeds."""
    protocol, names = main_protocol(runs), run_names(runs)
    recalls = []
    for setting, side in ((f"t2i/{protocol}", "query_lang"), (f"i2t/{protocol}", "candidate_lang")):
        per_run = [
            run.by_language[run.by_language.setting == setting].set_index(side)[recall(1)].rename(name)
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
    plt = pyplot()
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


def image_text_alpha_points(runs: list[Run]) -> pd.DataFrame:
    """Per trained strategy and headline (protocol `first` where evaluated): its alpha, the
    mean and standard deviation over its seeds, and the number of seeds."""
    protocol = main_protocol(runs)
    summary = pd.concat([run.summary.assign(label=run.label) for run in runs if run.key.strategy != ZERO_SHOT])
    panels = pd.DataFrame([panel[:3] for panel in plotted()], columns=["task", "metric", "title"])
    panels["setting"] = panels.task + "/" + protocol
    chosen = summary.merge(panels, on=["setting", "metric"])
    points = chosen.groupby(["model", "strategy", "alpha", "title"], sort=False).value.agg(["mean", "std", "count"])
    return points.rename(columns={"count": "seeds"}).reset_index()


def plot_image_text_alpha(runs: list[Run], path: Path) -> None:
    """Each image-text headline against alpha (the share of image-caption-mono batches): a
    point per strategy at the mean over seeds, bars one standard deviation either side;
    strategies at the same alpha sit side by side."""
    plt = pyplot()
    points = image_text_alpha_points(runs)
    strategies = points[["model", "strategy", "alpha"]].drop_duplicates().reset_index(drop=True)
    at_alpha = strategies.groupby("alpha").strategy
    strategies["offset"] = 0.012 * (at_alpha.cumcount() - (at_alpha.transform("size") - 1) / 2)
    panels = plotted()  # (task, metric, title, larger is better, language side)
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.9), squeeze=False)
    colours = plt.get_cmap("tab10")
    for axis, (_, _, title, larger_is_better, _) in zip(axes[0], panels):
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
        title += "" if larger_is_better else " (lower is better)"
        axis.set(xlabel="alpha (share of image-caption-mono batches)", title=title, xlim=(-0.08, 1.08))
        axis.set_xticks([0, 0.25, 0.5, 0.75, 1])
        axis.grid(alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.02), ncol=len(labels))
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)


def validation_curves(logs: list[str | Path], column: str = "validation_loss") -> pd.DataFrame:
    """A validation log column (the loss, or development_recall_at_1) by strategy and steps
    trained: mean, standard deviation and seeds, from LiT runs' validation_log.csv (each in
    its run's `<strategy>.s<seed>` directory)."""
    frames = []
    for log in logs:
        run = ImageTextRun.parse(Path(log).parent.name)
        frames.append(pd.read_csv(log).assign(strategy=run.strategy, seed=run.seed))
    curves = pd.concat(frames).groupby(["strategy", "steps_trained"], sort=False)[column]
    return curves.agg(["mean", "std", "count"]).rename(columns={"count": "seeds"}).reset_index()


def plot_validation_curves(logs: list[str | Path], path: Path) -> None:
    """Each strategy's validation loss and development Recall@1 on the shared development
    batches against steps trained: the mean over seeds, shaded one standard deviation
    either side."""
    plt = pyplot()
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    panels = [
        (left, "validation_loss", "validation loss (image-caption batches)"),
        (right, "development_recall_at_1", "development Recall@1"),
    ]
    colours = plt.get_cmap("tab10")
    for axis, column, label in panels:
        if not logs:
            axis.text(0.5, 0.5, "no validation batches", ha="center")
        curves = validation_curves(logs, column) if logs else pd.DataFrame(columns=["strategy"])
        for index, (strategy, curve) in enumerate(curves.groupby("strategy", sort=False)):
            colour = colours(index % 10)
            seeds = int(curve.seeds.max())
            axis.plot(curve.steps_trained, curve["mean"], color=colour, label=f"{strategy} ({seeds} seeds)")
            spread = curve["std"].fillna(0)
            axis.fill_between(
                curve.steps_trained, curve["mean"] - spread, curve["mean"] + spread, color=colour, alpha=0.15
            )
        axis.set(xlabel="steps trained", ylabel=label)
        axis.grid(alpha=0.3)
    figure.suptitle("LiT on the development split")
    axis = right
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))
    figure.tight_layout()
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
