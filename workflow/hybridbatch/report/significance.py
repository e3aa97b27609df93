"""Paired significance tests and bootstrap confidence intervals for macro-averaged metrics,
with the item as the unit of resampling.

A table value is a macro average: the mean over blocks (a query language, or a query
and candidate language pair) of the per-query mean in that block. An item's
translations (mono, multi) and a query's language pairs (cross) are strongly
correlated, so rows are not independent; both procedures treat the item as the unit:
  * paired randomization test: one random sign per item flips the differences of all
    its rows (every language and language pair); the p-value is the share of flips whose
    macro-averaged difference is at least as large in magnitude as the observed one
    (two-sided, with +1 smoothing);
  * cluster bootstrap: items are resampled with replacement, each drawn item bringing
    all its rows, and the macro average is recomputed over the blocks present; over
    several seeds, the seeds are resampled too (a two-level bootstrap), so an interval
    is as wide as the spread between seeds however many items there are.
Holm's step-down correction controls the family-wise error over all comparisons made.
"""

from __future__ import annotations

import warnings

import numpy as np

UNIT = "item"


def block_weights(blocks: np.ndarray) -> np.ndarray:
    """Weight per row so that weights @ values is the macro average over blocks."""
    _, inverse, counts = np.unique(blocks, return_inverse=True, return_counts=True)
    return 1.0 / (len(counts) * counts[inverse])


def randomization_test(
    differences: np.ndarray, blocks: np.ndarray, clusters: np.ndarray, permutations: int, seed: int
) -> float:
    """Two-sided p-value of the paired sign-flip test on the macro-averaged difference,
    one sign per cluster (pass one cluster per row for the row-level test)."""
    _, cluster = np.unique(clusters, return_inverse=True)
    per_cluster = np.bincount(cluster, weights=differences * block_weights(blocks))
    observed = abs(per_cluster.sum())
    rng = np.random.default_rng(seed)
    at_least, chunk = 0, max(1, 2_000_000 // max(1, len(per_cluster)))
    for start in range(0, permutations, chunk):
        signs = rng.integers(0, 2, size=(min(chunk, permutations - start), len(per_cluster)), dtype=np.int8) * 2 - 1
        at_least += int((np.abs(signs @ per_cluster) >= observed - 1e-12).sum())
    return (at_least + 1) / (permutations + 1)


def bootstrap_interval(
    values: np.ndarray,
    blocks: np.ndarray,
    clusters: np.ndarray,
    samples: int,
    seed: int,
    level: float = 0.95,
    runs: np.ndarray | None = None,
) -> tuple[float, float]:
    """Percentile interval of the macro average, resampling clusters with replacement.

    With `runs` (each row's run: a seed), a two-level bootstrap: each sample draws the
    runs with replacement, then the clusters (one draw shared by the runs, which score the
    same items), and averages the drawn runs' macro averages; an interval then carries the
    spread between seeds as well as between items (rliable's stratified bootstrap over
    runs, Agarwal et al. 2021, with items inside)."""
    _, run = np.unique(np.zeros(len(values)) if runs is None else runs, return_inverse=True)
    _, cluster = np.unique(clusters, return_inverse=True)
    _, block = np.unique(blocks, return_inverse=True)
    n_runs, n_clusters, n_blocks = run.max() + 1, cluster.max() + 1, block.max() + 1
    sums = np.zeros((n_runs, n_clusters, n_blocks))
    counts = np.zeros((n_runs, n_clusters, n_blocks))
    np.add.at(sums, (run, cluster, block), values)
    np.add.at(counts, (run, cluster, block), 1)
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    chunk = max(1, 4_000_000 // (n_runs * n_clusters * n_blocks))
    for start in range(0, samples, chunk):
        size = min(chunk, samples - start)
        drawn = rng.integers(0, n_clusters, size=(size, n_clusters))
        multiplicity = np.zeros((size, n_clusters))
        np.add.at(multiplicity, (np.repeat(np.arange(size), n_clusters), drawn.ravel()), 1)
        totals = np.einsum("ki,rib->krb", multiplicity, sums)
        sizes = np.einsum("ki,rib->krb", multiplicity, counts)
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a block no drawn cluster reaches
            per_run = np.nanmean(totals / sizes, axis=2)
        chosen = rng.integers(0, n_runs, size=(size, n_runs)) if n_runs > 1 else np.zeros((size, 1), dtype=int)
        means[start : start + size] = np.take_along_axis(per_run, chosen, axis=1).mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def holm(p_values: np.ndarray) -> np.ndarray:
    """Holm-adjusted p-values (monotone, capped at 1)."""
    p_values = np.asarray(p_values, dtype=float)
    order = np.argsort(p_values)
    m = len(p_values)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p_values[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out
