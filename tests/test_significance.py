from itertools import product

import numpy as np
import pytest
from scipy import stats

from hybridbatch.significance import block_weights, bootstrap_interval, holm, randomization_test


def test_holm_matches_hand_computation():
    assert holm(np.array([0.01, 0.04, 0.03])).tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert holm(np.array([0.5, 0.9])).tolist() == pytest.approx([1.0, 1.0])


def test_randomization_test_matches_exact_enumeration():
    differences = np.array([0.3, -0.1, 0.25, 0.4, 0.05, 0.2])
    blocks = np.array(["en", "en", "en", "de", "de", "de"])
    weighted = differences * block_weights(blocks)
    flips = np.array(list(product([-1, 1], repeat=len(differences))))
    exact = (np.abs(flips @ weighted) >= abs(weighted.sum()) - 1e-12).mean()
    assert randomization_test(differences, blocks, 40_000, seed=0) == pytest.approx(exact, abs=0.01)


def test_randomization_test_agrees_with_a_paired_t_test_on_normal_data():
    rng = np.random.default_rng(1)
    differences = rng.normal(0.05, 0.3, size=400)
    blocks = np.zeros(400)
    p = randomization_test(differences, blocks, 20_000, seed=0)
    assert p == pytest.approx(stats.ttest_1samp(differences, 0).pvalue, abs=0.01)
    assert randomization_test(np.zeros(50), np.zeros(50), 1000, seed=0) == 1.0


def test_block_weights_give_the_macro_average():
    values = np.array([1.0, 0.0, 0.0, 0.5])
    blocks = np.array(["a", "b", "b", "b"])
    assert block_weights(blocks) @ values == pytest.approx((1.0 + 0.5 / 3) / 2)


def test_bootstrap_interval_covers_the_mean_with_the_expected_width():
    rng = np.random.default_rng(2)
    values = rng.normal(0.6, 0.2, size=1000)
    low, high = bootstrap_interval(values, np.zeros(1000), 2000, seed=0)
    assert low < values.mean() < high
    assert high - low == pytest.approx(2 * 1.96 * values.std() / np.sqrt(1000), rel=0.15)
