"""The evaluated runs the tables stage reads: each run's key (the summary contract's
identifying columns) and the per-query metrics of the settings its track reports."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import pandas as pd

from hybridbatch.names import PLATEAU, SUMMARY_COLUMNS, ZERO_SHOT, CurvePoint
from hybridbatch.report.outputs import Headline, reported


class RunKey(NamedTuple):
    """The summary contract's identifying columns of one evaluated run."""

    corpus: str
    model: str
    strategy: str
    alpha: float | None
    seed: int | None


class Run:
    """One evaluated model state on one corpus: its descriptor, and the per-query metrics of
    the settings and columns its track's headlines report (`headlines`; all when None)."""

    def __init__(self, metrics_dir: str | Path, headlines: dict[str, Headline] | None = None):
        metrics_dir = Path(metrics_dir)
        self.summary = pd.read_csv(metrics_dir / "summary.csv", dtype={"seed": "Int64"})
        if list(self.summary.columns) != SUMMARY_COLUMNS:
            raise ValueError(
                f"{metrics_dir / 'summary.csv'}: columns {list(self.summary.columns)}, expected {SUMMARY_COLUMNS}"
            )
        self.key = RunKey(*self.summary.iloc[0][list(RunKey._fields)])
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
        strategy = self.key.strategy
        return strategy if strategy == ZERO_SHOT else f"{strategy} (alpha={self.key.alpha:g})"

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


def strategy_order(label: str) -> tuple[str, float]:
    """A strategy label's place: by strategy, then its curve budgets in order, the plateau last."""
    point = CurvePoint.parse(label)
    if point.budget is None:
        return label, 0.0
    return point.strategy, float("inf") if point.budget == PLATEAU else float(point.budget)


def load_runs(metrics_dirs: list[str | Path], headlines: dict[str, Headline] | None = None) -> list[Run]:
    """The evaluated runs in a fixed order (corpus, model, zero-shot first, strategy, seed),
    so tables do not depend on the order the metrics directories are given in; each with
    the per-query rows its track's `headlines` report (all when None)."""
    runs = [Run(path, headlines) for path in metrics_dirs]
    return sorted(
        runs,
        key=lambda r: (
            r.key.corpus,
            r.key.model,
            r.key.strategy != ZERO_SHOT,
            *strategy_order(r.key.strategy),
            -1 if pd.isna(r.key.seed) else r.key.seed,
        ),
    )


def main_protocol(runs: list[Run]) -> str:
    """`first` where it was evaluated, else `all`: the protocol of per-language views."""
    return "first" if any((run.summary.setting == "t2i/first").any() for run in runs) else "all"


def run_names(runs: list[Run]) -> list[str]:
    """Each run's label, prefixed by its model where runs of several models are shown together."""
    several = len({run.key.model for run in runs}) > 1
    return [f"{run.key.model}: {run.label}" if several else run.label for run in runs]
