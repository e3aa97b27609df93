"""The tables stage on runs with planted per-item differences: which row a significance
letter goes to (mAP: higher is better, language bias: lower is better), and the item,
not the row, as the unit of the randomization test and the bootstrap."""

from itertools import product

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from hybridbatch import schema
from hybridbatch.evaluation import summary_rows
from hybridbatch.layout import ZERO_SHOT
from hybridbatch.tables import Run, comparisons, confidence, headline_table, load_runs

LANGS = ["de", "en", "es", "ru", "zh", "ar"]
PARAMS = {"alpha": 0.05, "permutations": 20_000, "bootstrap_samples": 4000, "seed": 0}


def write_run(root, strategy: str, item_map: np.ndarray, item_bias: np.ndarray, languages=LANGS) -> Run:
    """A run whose every query (one per item and language) has its item's mAP in mono
    and multi, and its item's rank distance in multi."""
    rows = []
    for (item, value), lang in product(enumerate(item_map), languages):
        for setting, candidates in (("mono", lang), ("multi", "all")):
            rows.append({"item_id": f"i{item}", "qid": f"{lang}:i{item}", "query_lang": lang, "candidate_lang": candidates,
                         "setting": setting, "map": value,
                         "rank_distance": item_bias[item] if setting == "multi" else np.nan})
    per_query = pd.DataFrame(rows)
    by_language = per_query.groupby(["setting", "query_lang", "candidate_lang"], as_index=False)[["map", "rank_distance"]].mean()
    by_language["queries"], by_language["skipped"] = len(item_map), 0
    alpha, seed = (None, None) if strategy == ZERO_SHOT else (0.5, 0)
    descriptor = {"corpus": "planted", "model": "m", "strategy": strategy, "alpha": alpha, "seed": seed}
    out = root / strategy
    out.mkdir(parents=True)
    for name, frame in (("per_query", per_query), ("by_language", by_language)):
        schema.write_table(pa.Table.from_pandas(frame, preserve_index=False), out / f"{name}.parquet")
    summary_rows(by_language, ["map"], descriptor).to_csv(out / "summary.csv", index=False)
    return out


def letters(runs, metric: str) -> dict[str, str]:
    """The letters in each row's mono (mAP) or multi (bias) cell."""
    table, markers = headline_table(runs, comparisons(runs, PARAMS), metric)
    column = ("planted", "mono" if metric == "map" else "multi")
    return {label.split(") ")[1]: markers.loc[("m", label), column] for _, label in table.index}


@pytest.mark.parametrize("bias_shift", [-5.0, 5.0])
def test_a_significance_letter_goes_to_the_better_row(tmp_path, bias_shift):
    """`hybrid` has a higher mAP on every item (better) and a rank distance `bias_shift`
    away from zero-shot's: lower is better, so it wins the bias column only when negative."""
    rng = np.random.default_rng(0)
    base_map, base_bias = rng.uniform(0.2, 0.6, 30), rng.uniform(10, 20, 30)
    runs = load_runs([write_run(tmp_path, ZERO_SHOT, base_map, base_bias),
                      write_run(tmp_path, "hybrid", base_map + 0.2, base_bias + bias_shift)])
    assert [run.label for run in runs] == [ZERO_SHOT, "hybrid (alpha=0.5)"]
    assert letters(runs, "map") == {ZERO_SHOT: "", "hybrid (alpha=0.5)": "a"}
    winner = "hybrid (alpha=0.5)" if bias_shift < 0 else ZERO_SHOT
    expected = {ZERO_SHOT: "", "hybrid (alpha=0.5)": ""}
    expected[winner] = "b" if winner == ZERO_SHOT else "a"
    assert letters(runs, "language_bias") == expected


def test_the_randomization_test_and_bootstrap_take_the_item_as_the_unit(tmp_path):
    """Every item's difference is the same in all six languages: the p-value is the exact
    sign-flip p over 8 items (rows as the unit would be far smaller), and the bootstrap
    interval has the width of a bootstrap over items (rows would make it ~2.4x narrower)."""
    differences = np.array([0.09, 0.10, 0.11, 0.08, 0.12, -0.07, -0.06, 0.10])
    base = np.linspace(0.3, 0.5, 8)
    runs = load_runs([write_run(tmp_path, ZERO_SHOT, base, np.zeros(8)), write_run(tmp_path, "hybrid", base + differences, np.zeros(8))])
    test = comparisons(runs, PARAMS).set_index(["setting", "metric"]).loc[("mono", "map")]
    signs = np.array(list(product([-1, 1], repeat=8)))
    exact = (np.abs(signs @ differences) >= abs(differences.sum()) - 1e-12).mean()
    assert 0.02 < exact < 0.2
    assert test.p_value == pytest.approx(exact, abs=0.01)
    assert (test["queries"], test["items"], test["unit"]) == (48, 8, "item")
    assert (test.run_a, test.difference) == (ZERO_SHOT, pytest.approx(-differences.mean()))
    rng = np.random.default_rng(1)
    means = differences[rng.integers(0, 8, size=(20_000, 8))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    assert (test.ci_high - test.ci_low) == pytest.approx(high - low, rel=0.15)
    interval = confidence(runs, PARAMS).set_index(["strategy", "setting", "metric"]).loc[("hybrid", "mono", "map")]
    means = (base + differences)[rng.integers(0, 8, size=(20_000, 8))].mean(axis=1)
    assert interval.value == pytest.approx((base + differences).mean())
    assert (interval.ci_high - interval.ci_low) == pytest.approx(np.diff(np.quantile(means, [0.025, 0.975]))[0], rel=0.15)
