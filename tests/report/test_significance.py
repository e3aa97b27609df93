"""The tests of `hybridbatch/report/significance.py`."""

from itertools import product

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hybridbatch.report.significance import block_weights, bootstrap_interval, holm, randomization_test


def test_holm_matches_hand_computation():
    assert holm(np.array([0.01, 0.04, 0.03])).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert holm(np.array([0.5, 0.9])).tolist() == pytest.approx([1.0, 1.0])
    assert holm(np.array([0.9, 0.6, 0.01])).tolist() == [1.0, 1.0, 0.03]  # 2 x 0.6 is capped at 1


def direct_cluster_bootstrap(values, blocks, clusters, samples: int, seed: int) -> np.ndarray:
    """Macro averages of `samples` resamples of the clusters, one resample at a time."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"value": values, "block": blocks, "cluster": clusters})
    names = frame.cluster.unique()
    by_cluster = {name: part for name, part in frame.groupby("cluster")}
    means = []
    for _ in range(samples):
        drawn = pd.concat([by_cluster[name] for name in rng.choice(names, len(names))])
        means.append(drawn.groupby("block").value.mean().mean())
    return np.array(means)


def test_bootstrap_interval_equals_a_direct_cluster_bootstrap_of_the_macro_average():
    """Six clusters, each with several rows in some of three blocks (of unequal sizes):
    the percentile interval is the 2.5% and 97.5% quantiles of a direct resampling loop,
    within its Monte Carlo error; it is the same again for the same seed."""
    rng = np.random.default_rng(4)
    clusters = np.repeat(np.arange(6), [2, 5, 3, 6, 1, 4])
    blocks = rng.choice(["de", "en", "zh"], size=len(clusters), p=[0.5, 0.3, 0.2])
    values = rng.normal(clusters / 3, 0.5)
    direct = direct_cluster_bootstrap(values, blocks, clusters, 4000, seed=1)
    for level, tails in ((0.95, [0.025, 0.975]), (0.5, [0.25, 0.75])):
        low, high = bootstrap_interval(values, blocks, clusters, 40_000, seed=0, level=level)
        reference = np.quantile(direct, tails)
        assert (low, high) == pytest.approx(tuple(reference), abs=0.03 * np.ptp(np.quantile(direct, [0.025, 0.975])))
        assert bootstrap_interval(values, blocks, clusters, 40_000, seed=0, level=level) == (low, high)


def test_bootstrap_interval_of_one_or_two_clusters_is_exact():
    """Two clusters (0.2, 0.6): a resample's mean is 0.2, 0.4 or 0.6 with probabilities
    1/4, 1/2, 1/4, so the 95% interval is (0.2, 0.6) and the 40% one (0.4, 0.4); one
    cluster gives its mean for every sample, however few."""
    values, blocks = np.array([0.2, 0.6]), np.zeros(2)
    assert bootstrap_interval(values, blocks, np.array([0, 1]), 4000, seed=0) == pytest.approx((0.2, 0.6))
    assert bootstrap_interval(values, blocks, np.array([0, 1]), 4000, seed=0, level=0.4) == pytest.approx((0.4, 0.4))
    assert bootstrap_interval(values, blocks, np.zeros(2), 3, seed=0) == pytest.approx((0.4, 0.4))


def test_bootstrap_samples_drawn_in_several_chunks_are_all_used():
    """3,000 clusters x 2 blocks: the samples are drawn in chunks of 666, the last one short."""
    rng = np.random.default_rng(5)
    values = rng.normal(0.0, 1.0, size=6000)
    low, high = bootstrap_interval(values, np.tile(["a", "b"], 3000), np.repeat(np.arange(3000), 2), 1000, seed=0)
    half_width = 1.96 * values.reshape(3000, 2).mean(axis=1).std() / np.sqrt(3000)
    assert (low, high) == pytest.approx((values.mean() - half_width, values.mean() + half_width), abs=0.15 * half_width)


def test_randomization_test_matches_exact_enumeration():
    differences = np.array([0.3, -0.1, 0.25, 0.4, 0.05, 0.2])
    blocks = np.array(["en", "en", "en", "de", "de", "de"])
    weighted = differences * block_weights(blocks)
    flips = np.array(list(product([-1, 1], repeat=len(differences))))
    exact = (np.abs(flips @ weighted) >= abs(weighted.sum()) - 1e-12).mean()
    assert randomization_test(differences, blocks, np.arange(6), 40_000, seed=0) == pytest.approx(exact, abs=0.01)


def test_randomization_test_agrees_with_a_paired_t_test_on_normal_data():
    rng = np.random.default_rng(1)
    differences = rng.normal(0.05, 0.3, size=400)
    blocks = np.zeros(400)
    p = randomization_test(differences, blocks, np.arange(400), 20_000, seed=0)
    assert p == pytest.approx(stats.ttest_1samp(differences, 0).pvalue, abs=0.01)
    assert randomization_test(np.zeros(50), np.zeros(50), np.arange(50), 1000, seed=0) == 1.0
    # 5,000 clusters: sign flips drawn in chunks of 400, the last one short; every flip ties a zero difference
    assert randomization_test(np.zeros(5000), np.zeros(5000), np.arange(5000), 1000, seed=0) == 1.0


def test_block_weights_give_the_macro_average():
    values = np.array([1.0, 0.0, 0.0, 0.5])
    blocks = np.array(["a", "b", "b", "b"])
    assert block_weights(blocks) @ values == pytest.approx((1.0 + 0.5 / 3) / 2)


def test_bootstrap_interval_covers_the_mean_with_the_expected_width():
    rng = np.random.default_rng(2)
    values = rng.normal(0.6, 0.2, size=1000)
    low, high = bootstrap_interval(values, np.zeros(1000), np.arange(1000), 2000, seed=0)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(1000), rel=0.15)


def test_an_interval_over_seeds_carries_the_spread_between_seeds():
    """Three seeds whose differences (+0.08, -0.02, +0.11) spread far more than their 4,000
    items' noise: the two-level interval reaches below zero and spans most of the seeds'
    range; the items-only interval of the same rows is a hundred times narrower. Each
    draw equals a direct two-level bootstrap (runs, then items) of the mean."""
    rng = np.random.default_rng(0)
    shifts, n = np.array([0.08, -0.02, 0.11]), 4000
    values = np.concatenate([shift + rng.normal(0, 0.01, n) for shift in shifts])
    runs, items, blocks = np.repeat(np.arange(3), n), np.tile(np.arange(n), 3), np.zeros(3 * n)
    low, high = bootstrap_interval(values, blocks, items, 4000, seed=0, runs=runs)
    item_low, item_high = bootstrap_interval(values, blocks, items, 4000, seed=0)
    assert low < 0 < 0.09 < high and high - low > 0.1 > 100 * (item_high - item_low)
    by_run = values.reshape(3, n)
    direct = []
    for _ in range(4000):
        drawn_items, drawn_runs = rng.integers(0, n, n), rng.integers(0, 3, 3)
        direct.append(by_run[drawn_runs][:, drawn_items].mean())
    assert (low, high) == pytest.approx(tuple(np.quantile(direct, [0.025, 0.975])), abs=0.01)
    single = bootstrap_interval(values[:n], blocks[:n], items[:n], 1000, seed=0, runs=runs[:n])
    assert single == bootstrap_interval(values[:n], blocks[:n], items[:n], 1000, seed=0)  # one seed: items only


def correlated_differences(rng, n_items: int, n_langs: int, effect: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row differences with a strong per-item component shared by all its languages."""
    item_effect = rng.normal(effect, 1.0, size=n_items)
    values = np.repeat(item_effect, n_langs) + rng.normal(0, 0.2, size=n_items * n_langs)
    return values, np.tile(np.arange(n_langs), n_items), np.repeat(np.arange(n_items), n_langs)


def rejection_rate(effect: float, simulations: int, clustered: bool) -> float:
    rng = np.random.default_rng(5)
    rejected = 0
    for s in range(simulations):
        values, blocks, items = correlated_differences(rng, 60, 8, effect)
        clusters = items if clustered else np.arange(len(values))
        rejected += randomization_test(values, blocks, clusters, 400, seed=s) < 0.05
    return rejected / simulations


def test_item_level_test_holds_its_size_where_the_row_level_test_over_claims():
    assert rejection_rate(0.0, 500, clustered=True) <= 0.07
    assert rejection_rate(0.0, 500, clustered=False) > 0.2  # the simulation has within-item correlation that bites


def test_item_level_test_has_power_against_a_real_difference():
    assert rejection_rate(0.45, 200, clustered=True) > 0.8


def test_one_sign_per_item_equals_exact_enumeration_over_items():
    differences = np.array([0.3, 0.2, -0.1, -0.3, 0.25, 0.4, 0.05, 0.1])
    blocks = np.array(["en", "de"] * 4)
    items = np.repeat(np.arange(4), 2)
    per_item = np.bincount(items, weights=differences * block_weights(blocks))
    flips = np.array(list(product([-1, 1], repeat=4)))
    exact = (np.abs(flips @ per_item) >= abs(per_item.sum()) - 1e-12).mean()
    assert randomization_test(differences, blocks, items, 40_000, seed=0) == pytest.approx(exact, abs=0.01)


def test_cluster_bootstrap_resamples_items_not_rows():
    rng = np.random.default_rng(3)
    values, blocks, items = correlated_differences(rng, 200, 10, 0.5)
    low, high = bootstrap_interval(values, blocks, items, 2000, seed=0)
    item_means = values.reshape(200, 10).mean(axis=1)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * item_means.std() / np.sqrt(200), rel=0.15)
    row_low, row_high = bootstrap_interval(values, blocks, np.arange(len(values)), 2000, seed=0)
    assert row_high - row_low < 0.5 * (high - low)  # rows as the unit would claim a far narrower interval
