"""Paired significance tests and bootstrap confidence intervals for macro-averaged metrics.

A table value is a macro average: the mean over blocks (a query language, or a query
and candidate language pair) of the per-query mean in that block. Both procedures work
on that statistic directly:
  * paired randomization test: per query, the difference between two runs has its sign
    flipped at random; the p-value is the share of flips whose macro-averaged difference
    is at least as large in magnitude as the observed one (two-sided, with +1 smoothing);
  * bootstrap: queries are resampled with replacement within each block.
Holm's step-down correction controls the family-wise error over all comparisons made.
"""

from __future__ import annotations

import numpy as np


def block_weights(blocks: np.ndarray) -> np.ndarray:
    """Weight per row so that weights @ values is the macro average over blocks."""
    _, inverse, counts = np.unique(blocks, return_inverse=True, return_counts=True)
    return 1.0 / (len(counts) * counts[inverse])


def randomization_test(differences: np.ndarray, blocks: np.ndarray, permutations: int, seed: int) -> float:
    """Two-sided p-value of the paired sign-flip test on the macro-averaged difference."""
    weighted = differences * block_weights(blocks)
    observed = abs(weighted.sum())
    rng = np.random.default_rng(seed)
    at_least, chunk = 0, max(1, 2_000_000 // max(1, len(weighted)))
    for start in range(0, permutations, chunk):
        signs = rng.integers(0, 2, size=(min(chunk, permutations - start), len(weighted)), dtype=np.int8) * 2 - 1
        at_least += int((np.abs(signs @ weighted) >= observed - 1e-12).sum())
    return (at_least + 1) / (permutations + 1)


def bootstrap_interval(values: np.ndarray, blocks: np.ndarray, samples: int, seed: int, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the macro average, resampling rows within each block."""
    rng = np.random.default_rng(seed)
    labels, inverse = np.unique(blocks, return_inverse=True)
    means = np.zeros(samples)
    for block in range(len(labels)):
        members = values[inverse == block]
        picks = rng.integers(0, len(members), size=(samples, len(members)))
        means += members[picks].mean(axis=1)
    means /= len(labels)
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
