"""The paired comparisons of the tables: every two strategies of a corpus and model, per
headline and setting (a randomization test over the items, Holm-corrected, that must also
hold over the seeds), and each run's bootstrap confidence intervals."""

from __future__ import annotations

import logging
from collections.abc import Callable
from itertools import combinations

import numpy as np
import pandas as pd
from scipy import stats

from hybridbatch.names import RUN_KEYS, ZERO_SHOT
from hybridbatch.report.outputs import HEADLINES, Headline
from hybridbatch.report.runs import QUERY_KEYS, Run
from hybridbatch.report.significance import UNIT, block_weights, bootstrap_interval, holm, randomization_test


def paired_by_seed(a: dict, b: dict) -> list[tuple[object, Run, Run]]:
    """(seed, run of a, run of b) for the seeds both strategies were run with; the
    zero-shot model (one run, no seed) pairs with every run of the other."""
    only = lambda runs: next(iter(runs.values()))  # noqa: E731
    if only(a).key.strategy == ZERO_SHOT:
        return [(seed, only(a), run) for seed, run in b.items()]
    if only(b).key.strategy == ZERO_SHOT:
        return [(seed, run, only(b)) for seed, run in a.items()]
    return [(seed, a[seed], b[seed]) for seed in a if seed in b]


def seed_frames(pairs: list[tuple[object, Run, Run]], setting: str, column: str) -> list[pd.DataFrame]:
    """Each seed's queries with their values in its two runs (value_x, value_y)."""
    return [a.values(setting, column).merge(b.values(setting, column), on=QUERY_KEYS) for _, a, b in pairs]


def seed_averaged_pairs(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Each query's two values averaged over the seeds' frames; a query missing from a
    seed is left out."""
    if not frames or any(frame.empty for frame in frames):
        return pd.DataFrame()
    paired = pd.concat(frames).groupby(QUERY_KEYS, sort=False)
    means = paired[["value_x", "value_y"]].mean().assign(seeds=paired.size()).reset_index()
    return means[means.seeds == len(frames)]


MIN_SEEDS = 3  # seeds a difference between strategies needs before it can be marked


def seed_check(frames: list[pd.DataFrame], alpha: float) -> tuple[str, float, bool]:
    """The difference over the seeds: each seed's a - b (its runs' block-weighted means),
    Welch's p over the two strategies' per-seed values, and whether the difference can be
    marked at all: at least MIN_SEEDS seeds, every seed's difference of one sign, p < alpha
    (a necessary condition beside the item-level test; Bouthillier et al., MLSys 2021)."""
    means = np.array([block_weights(f.block.to_numpy()) @ f[["value_x", "value_y"]].to_numpy() for f in frames])
    differences = means[:, 0] - means[:, 1]
    if len(means) < 2:
        p = np.nan
    elif means.std(axis=0).max() == 0:  # neither strategy varies over the seeds: nothing for Welch to weigh
        p = 0.0 if differences[0] != 0 else 1.0
    else:
        p = stats.ttest_ind(means[:, 0], means[:, 1], equal_var=False).pvalue
    one_sign = bool((differences > 0).all() or (differences < 0).all())
    holds = len(frames) >= MIN_SEEDS and one_sign and bool(p < alpha)
    return " ".join(f"{d:+.4f}" for d in differences), float(p), holds


COMPARISON_COLUMNS = [
    "corpus", "model", "seed", "setting", "metric", "run_a", "run_b", "value_a", "value_b", "difference",
    "ci_low", "ci_high", "queries", "items", "unit", "p_value", "seed_differences", "seed_p_value", "holds_over_seeds",
]  # fmt: skip


def paired_test(paired: pd.DataFrame, frames: list[pd.DataFrame], params: dict) -> tuple:
    """(value a, value b, difference, ci low, ci high, queries, items, unit, p) of one
    pair of strategies in one setting: block-weighted means of the seed-averaged `paired`
    queries and the randomization test's p over them, the item the unit; the interval of
    the difference from the seeds' own `frames`, resampling seeds, then items."""
    differences = (paired.value_x - paired.value_y).to_numpy()
    blocks, items = paired.block.to_numpy(), paired.item_id.to_numpy()
    weights = block_weights(blocks)
    value_a, value_b = weights @ paired.value_x.to_numpy(), weights @ paired.value_y.to_numpy()
    seeds = pd.concat([frame.assign(run=number) for number, frame in enumerate(frames)], ignore_index=True)
    low, high = bootstrap_interval(
        (seeds.value_x - seeds.value_y).to_numpy(),
        seeds.block.to_numpy(),
        seeds.item_id.to_numpy(),
        params["bootstrap_samples"],
        params["seed"],
        runs=seeds.run.to_numpy(),
    )
    p = randomization_test(differences, blocks, items, params["permutations"], params["seed"])
    return value_a, value_b, value_a - value_b, low, high, len(paired), len(set(items)), UNIT, p


def comparisons(
    runs: list[Run],
    params: dict,
    headlines: dict[str, Headline] = HEADLINES,
    compared: Callable[[str, str], bool] | None = None,
) -> pd.DataFrame:
    """Every pair of strategies of the same corpus and model (those `compared` accepts, by
    strategy name, where given), per headline metric and setting: one test over the seeds
    both have (the zero-shot model joins every seed), on each query's difference within
    its seed averaged over the seeds, the item the unit; Holm-corrected over all.
    `significant` needs that test and the seed check (`seed_check`) both."""
    rows = []
    strategies: dict[tuple, dict[str, dict]] = {}  # (corpus, model) -> label -> seed -> run
    for run in runs:
        strategies.setdefault((run.key.corpus, run.key.model), {}).setdefault(run.label, {})[run.key.seed] = run
    for (corpus, model), labels in sorted(strategies.items(), key=lambda group: str(group[0])):
        for (label_a, seeds_a), (label_b, seeds_b) in combinations(labels.items(), 2):
            strategies = (next(iter(seeds.values())).key.strategy for seeds in (seeds_a, seeds_b))
            if compared and not compared(*strategies):
                continue
            pairs = paired_by_seed(seeds_a, seeds_b)
            seeds = "+".join(str(seed) for seed, _, _ in pairs)
            for metric, headline in headlines.items():
                for setting in headline.settings:
                    frames = seed_frames(pairs, setting, headline.column)
                    paired = seed_averaged_pairs(frames)
                    if not paired.empty:
                        test = paired_test(paired, frames, params) + seed_check(frames, params["alpha"])
                        rows.append((corpus, model, seeds, setting, metric, label_a, label_b, *test))
    frame = pd.DataFrame(rows, columns=COMPARISON_COLUMNS)
    frame["p_holm"] = holm(frame.p_value.to_numpy()) if len(frame) else []
    frame["significant"] = (frame.p_holm < params["alpha"]) & frame.holds_over_seeds.astype(bool)
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


def confidence(runs: list[Run], params: dict, headlines: dict[str, Headline] = HEADLINES) -> pd.DataFrame:
    rows = []
    for run in runs:
        for metric, headline in headlines.items():
            for setting in headline.settings:
                values = run.values(setting, headline.column)
                if values.empty:
                    continue
                blocks, items = values.block.to_numpy(), values.item_id.to_numpy()
                value = block_weights(blocks) @ values.value.to_numpy()
                low, high = bootstrap_interval(
                    values.value.to_numpy(), blocks, items, params["bootstrap_samples"], params["seed"]
                )
                rows.append(run.key + (setting, metric, value, low, high, UNIT))
    return pd.DataFrame(rows, columns=RUN_KEYS + ["setting", "metric", "value", "ci_low", "ci_high", "unit"])
