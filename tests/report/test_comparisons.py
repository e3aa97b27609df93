"""The tests of `hybridbatch/report/comparisons.py`."""

import warnings
from itertools import product

import numpy as np
import pandas as pd
import pytest
from tables_helpers import LANGS, PARAMS, write_run

from hybridbatch.names import ZERO_SHOT
from hybridbatch.report.comparisons import comparisons, confidence
from hybridbatch.report.outputs import Headline
from hybridbatch.report.runs import load_runs


def test_a_p_value_equal_to_alpha_is_not_significant(tmp_path):
    """With 19 sign flips and 30 items that all favour one run (in each of three seeds), p = (0 + 1) / 20 = alpha."""
    base = np.linspace(0.2, 0.5, 30)
    seeds = [write_run(tmp_path, "hybrid", base + 0.1 + 0.01 * seed, base, seed=seed) for seed in range(3)]
    runs = load_runs([write_run(tmp_path, ZERO_SHOT, base, base), *seeds])
    ((_, test),) = comparisons(
        runs, {**PARAMS, "permutations": 19}, {"map": Headline("map", ("mono",), True, 3)}
    ).iterrows()
    assert test.p_value == test.p_holm == 0.05 and not test.significant


def test_the_randomization_test_and_bootstrap_take_the_item_as_the_unit(tmp_path):
    """Every item's difference is the same in all its languages; items 0-3 have queries
    in only three of the six languages, so the macro average weighs their rows more. The
    p-value is the exact sign-flip p over the 8 items with those weights (rows as the unit,
    or one block, would give another), and the bootstrap interval has the width of a
    bootstrap over items of the macro average (rows would make it far narrower)."""
    differences = np.array([0.09, 0.10, 0.11, 0.08, 0.12, -0.07, -0.06, 0.10])
    base = np.linspace(0.3, 0.5, 8)
    runs = load_runs(
        [
            write_run(tmp_path, ZERO_SHOT, base, np.zeros(8), sparse_items=4),
            write_run(tmp_path, "hybrid", base + differences, np.zeros(8), sparse_items=4),
        ]
    )
    tests = comparisons(runs, PARAMS)
    pd.testing.assert_frame_equal(tests, comparisons(runs, PARAMS))  # seeded: the same p-values and intervals again
    test = tests.set_index(["setting", "metric"]).loc[("mono", "map")]
    # macro weight of an item's row: 1 / (6 blocks x its block's queries): blocks of 8 queries and of 4
    weight = np.where(np.arange(8) < 4, 3 / (6 * 8), 3 / (6 * 8) + 3 / (6 * 4))
    signs = np.array(list(product([-1, 1], repeat=8)))

    def exact_p(contributions: np.ndarray) -> float:
        return (np.abs(signs @ contributions) >= abs(contributions.sum()) - 1e-12).mean()

    exact = exact_p(differences * weight)
    assert abs(exact - exact_p(differences * np.where(np.arange(8) < 4, 3, 6) / 36)) > 0.05  # one block: another p
    assert test.p_value == pytest.approx(exact, abs=0.01)
    assert (test["queries"], test["items"], test["unit"]) == (36, 8, "item")
    assert (test.run_a, test.difference) == (ZERO_SHOT, pytest.approx(-(differences * weight).sum()))

    def item_bootstrap(values: np.ndarray) -> float:
        """Width of the 95% interval of the macro average, resampling items."""
        drawn = np.random.default_rng(1).integers(0, 8, size=(20_000, 8))
        full, sparse = values[drawn], np.where(drawn < 4, np.nan, values[drawn])  # full / sparse blocks' queries
        with warnings.catch_warnings():  # a draw of items 0-3 only leaves the sparse blocks empty: NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            means = (3 * np.nanmean(full, axis=1) + 3 * np.nanmean(sparse, axis=1)) / 6
        return float(np.diff(np.nanquantile(means, [0.025, 0.975]))[0])

    assert (test.ci_high - test.ci_low) == pytest.approx(item_bootstrap(differences), rel=0.15)
    interval = confidence(runs, PARAMS).set_index(["strategy", "setting", "metric"]).loc[("hybrid", "mono", "map")]
    assert interval.value == pytest.approx(((base + differences) * weight).sum())
    assert (interval.ci_high - interval.ci_low) == pytest.approx(item_bootstrap(base + differences), rel=0.15)


def test_seeds_combine_into_one_test_on_each_items_difference_averaged_over_seeds(tmp_path):
    """hybrid and X-X-mono with seeds 0, 1 and 2, zero-shot once: each pair of strategies is
    one test, whose p-value is the exact sign-flip p over the 8 items of each item's
    difference within its seed averaged over the seeds; zero-shot pairs with every seed."""
    base = np.linspace(0.3, 0.5, 8)
    rng = np.random.default_rng(3)
    shifts = rng.normal(0.05, 0.08, (3, 8))  # hybrid's gain over zero-shot, per seed and item
    paths = [write_run(tmp_path, ZERO_SHOT, base, np.zeros(8))]
    for seed in range(3):
        paths.append(write_run(tmp_path, "hybrid", base + shifts[seed], np.zeros(8), seed=seed))
        paths.append(write_run(tmp_path, "X-X-mono", base + 0.01 * seed, np.zeros(8), alpha=1.0, seed=seed))
    tests = comparisons(load_runs(paths), PARAMS, {"map": Headline("map", ("mono",), True, 3)})
    assert len(tests) == 3 and set(tests.seed) == {"0+1+2"} and set(tests.queries) == {8 * len(LANGS)}
    tests = tests.set_index(["run_a", "run_b"])
    signs = np.array(list(product([-1, 1], repeat=8)))
    for pair, per_item in (
        ((ZERO_SHOT, "hybrid (alpha=0.5)"), -shifts.mean(axis=0)),
        (("X-X-mono (alpha=1)", "hybrid (alpha=0.5)"), (0.01 * np.arange(3)[:, None] - shifts).mean(axis=0)),
    ):
        exact = (np.abs(signs @ per_item) >= abs(per_item.sum()) - 1e-12).mean()
        assert tests.loc[pair].p_value == pytest.approx(exact, abs=0.01), pair
        assert tests.loc[pair].difference == pytest.approx(per_item.mean()), pair
    one_seed = comparisons(load_runs(paths[:3]), PARAMS, {"map": Headline("map", ("mono",), True, 3)})
    assert set(one_seed.seed) == {"0"}  # one seed: the test of that seed's runs


@pytest.mark.parametrize(
    ("seed_means", "differences", "marked"),
    [
        ((0.30, 0.35, 0.40), (0.03, -0.01, 0.02), False),  # one seed favours b: the sign flips
        ((0.30, 0.35, 0.40), (0.003, 0.004, 0.005), False),  # one sign, but far inside the seeds' spread (Welch)
        ((0.30, 0.31, 0.32), (0.20, 0.21, 0.19), True),  # large and the same in every seed
    ],
)
def test_a_difference_must_hold_over_the_seeds_however_many_items(tmp_path, seed_means, differences, marked):
    """Three seeds of 600 items each: a's mAP is b's plus the seed's difference on every item, so
    the item-level test is significant every time; the difference is marked only where it also
    holds over the seeds (each seed of one sign, Welch's p over the seeds' means)."""
    rng = np.random.default_rng(5)
    spread = rng.uniform(-0.1, 0.1, 600)
    paths = []
    for seed, (mean, difference) in enumerate(zip(seed_means, differences)):
        paths.append(write_run(tmp_path, "hybrid", mean + spread + difference, np.zeros(600), seed=seed))
        paths.append(write_run(tmp_path, "X-X-mono", mean + spread, np.zeros(600), alpha=1.0, seed=seed))
    params = {**PARAMS, "permutations": 2000, "bootstrap_samples": 100}
    ((_, test),) = comparisons(load_runs(paths), params, {"map": Headline("map", ("mono",), True, 3)}).iterrows()
    assert test.p_holm < 0.01  # the items alone: always significant
    assert test.seed_differences == " ".join(f"{-d:+.4f}" for d in differences)  # run a is X-X-mono
    assert test.significant == test.holds_over_seeds == marked


def test_too_few_sign_flips_for_holm_over_the_tests_are_named(tmp_path, caplog):
    """Holm over m tests needs p below alpha / m; the smallest p of P sign flips is 1 / (P + 1)."""
    base = np.linspace(0.3, 0.5, 8)
    runs = load_runs([write_run(tmp_path, name, base, np.zeros(8)) for name in (ZERO_SHOT, "hybrid")])
    tests = len(comparisons(runs, PARAMS))
    assert tests
    assert "significance.permutations" not in caplog.text
    comparisons(runs, {**PARAMS, "permutations": int(tests / PARAMS["alpha"]) - 2})
    assert f"Holm over {tests} tests cannot reach 0.05" in caplog.text
