"""Tables stage: the summary contract, the paper-style table, the bias table and a plot."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .evaluation import SETTINGS, SUMMARY_COLUMNS

ZERO_SHOT = "zero-shot"


def read_summaries(paths: list[str | Path]) -> pd.DataFrame:
    frames = []
    for path in paths:
        frame = pd.read_csv(path, dtype={"seed": "Int64"})
        if list(frame.columns) != SUMMARY_COLUMNS:
            raise ValueError(f"{path}: columns {list(frame.columns)}, expected {SUMMARY_COLUMNS}")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _row_label(frame: pd.DataFrame) -> pd.Series:
    return frame.strategy.where(frame.strategy == ZERO_SHOT, frame.strategy + " (alpha=" + frame.alpha.map("{:g}".format) + ")")


def pivot(summary: pd.DataFrame, metric: str, settings: tuple[str, ...]) -> pd.DataFrame:
    """Rows model x strategy (mean over seeds), columns corpus x setting."""
    chosen = summary[(summary.metric == metric) & summary.setting.isin(settings)].copy()
    chosen["strategy"] = _row_label(chosen)
    table = chosen.pivot_table(index=["model", "strategy"], columns=["corpus", "setting"], values="value", aggfunc="mean")
    order = [(corpus, s) for corpus in table.columns.get_level_values(0).unique() for s in settings if (corpus, s) in table.columns]
    zero_first = sorted(table.index, key=lambda key: (key[0], key[1] != ZERO_SHOT, key[1]))
    return table.loc[zero_first, order]


def to_markdown(table: pd.DataFrame, digits: int) -> str:
    headers = list(table.index.names) + [" ".join(map(str, column)) for column in table.columns]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for key, values in table.iterrows():
        cells = list(key) + [f"{v:.{digits}f}" for v in values]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_settings(summary: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = pivot(summary, "map", SETTINGS)
    corpora = table.columns.get_level_values(0).unique()
    figure, axes = plt.subplots(1, len(corpora), figsize=(6 * len(corpora), 4), squeeze=False)
    for axis, corpus in zip(axes[0], corpora):
        block = table[corpus]
        block.index = [f"{model}\n{strategy}" for model, strategy in block.index]
        block.T.plot.bar(ax=axis, rot=0)
        axis.set(title=f"{corpus}: mAP by setting", ylabel="mAP", ylim=(0, 1))
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def make_tables(summary_paths: list[str | Path], tables_dir: str | Path, plots_dir: str | Path) -> pd.DataFrame:
    tables_dir, plots_dir = Path(tables_dir), Path(plots_dir)
    tables_dir.mkdir(parents=True, exist_ok=True)
    plots_dir.mkdir(parents=True, exist_ok=True)
    summary = read_summaries(summary_paths).sort_values(SUMMARY_COLUMNS[:7], ignore_index=True)
    summary.to_csv(tables_dir / "summary.csv", index=False)
    for name, metric, settings, digits in (
        ("map", "map", SETTINGS, 3),
        ("language_bias", "language_bias", ("multi",), 1),
    ):
        table = pivot(summary, metric, settings)
        table.to_csv(tables_dir / f"{name}.csv")
        (tables_dir / f"{name}.md").write_text(to_markdown(table, digits))
    plot_settings(summary, plots_dir / "map_by_setting.png")
    return summary
