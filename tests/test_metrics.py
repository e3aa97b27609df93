import numpy as np
import pytest
import pytrec_eval

from hybridbatch.evaluate.metrics import rank_metrics
from hybridbatch.evaluate.ranks import exact_ranks

RECALL_AT = [1, 5, 10, 100]


def random_run(seed: int, n_queries: int = 60, n_docs: int = 300):
    rng = np.random.default_rng(seed)
    scores = rng.standard_normal((n_queries, n_docs)).astype(np.float32)
    qrels = {
        f"q{q}": {f"d{d}": 1 for d in rng.choice(n_docs, rng.integers(1, 12), replace=False)} for q in range(n_queries)
    }
    return scores, qrels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_equal_pytrec_eval(seed):
    scores, qrels = random_run(seed)
    rows, columns = zip(*[(q, int(d[1:])) for q in range(len(scores)) for d in qrels[f"q{q}"]])
    rows, columns = np.array(rows), np.array(columns)
    ranks = exact_ranks(scores, columns, rows)
    ours = rank_metrics(np.array([f"q{q}" for q in rows]), ranks, RECALL_AT, 10, 10)

    run = {f"q{q}": {f"d{d}": float(s) for d, s in enumerate(row)} for q, row in enumerate(scores)}
    measures = {"map", "ndcg_cut_10"} | {f"recall_{k}" for k in RECALL_AT}
    reference = pytrec_eval.RelevanceEvaluator(qrels, measures).evaluate(run)
    top10 = {q: dict(sorted(docs.items(), key=lambda kv: -kv[1])[:10]) for q, docs in run.items()}
    mrr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    for qid, values in reference.items():
        assert ours.loc[qid, "map"] == pytest.approx(values["map"], abs=1e-6)
        assert ours.loc[qid, "ndcg@10"] == pytest.approx(values["ndcg_cut_10"], abs=1e-6)
        for k in RECALL_AT:
            assert ours.loc[qid, f"recall@{k}"] == pytest.approx(values[f"recall_{k}"], abs=1e-6)
        assert ours.loc[qid, "mrr@10"] == pytest.approx(mrr[qid]["recip_rank"], abs=1e-6)


def test_ranks_match_a_full_sort_and_break_ties_by_candidate_order():
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.5]])
    ranks = exact_ranks(scores, np.array([0, 2, 4, 3, 1]), np.zeros(5, dtype=int))
    assert ranks.tolist() == [2, 3, 4, 5, 1]
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((5, 50))
    rows, columns = np.repeat(np.arange(5), 50), np.tile(np.arange(50), 5)
    expected = np.argsort(np.argsort(-scores, axis=1), axis=1).ravel() + 1
    assert (exact_ranks(scores, columns, rows) == expected).all()


def test_language_bias_is_worst_minus_best_rank():
    # query a: relevant at ranks 3 (en), 17 (de), 5 (zh); query b: ranks 1 and 2
    query = np.array(["a", "a", "a", "b", "b"])
    ranks = np.array([3, 17, 5, 2, 1])
    result = rank_metrics(query, ranks, [1], 10, 10)
    assert result.loc["a", "rank_distance"] == 14
    assert result.loc["b", "rank_distance"] == 1
    assert result.loc["a", "map"] == pytest.approx((1 / 3 + 2 / 5 + 3 / 17) / 3)
    assert result.loc["b", "mrr@10"] == 1.0
    assert result.loc["a", "recall@1"] == 0.0
    assert result.loc["a", "n_relevant"] == 3


@pytest.mark.parametrize("case", ["distinct", "tied with others", "tied golds"])
def test_counted_ranks_of_many_relevant_candidates_break_ties_by_candidate_order(case):
    """One query with 10 relevant candidates (ranked by counting, not comparison): gold
    scores all distinct, or some equal to other candidates' scores (before and after
    them in candidate order), or equal to each other: the ranks of a direct comparison."""
    from hybridbatch.evaluate.ranks import ranks_of_relevant

    scores = np.arange(30, dtype=np.float64)[::-1].copy()  # candidate i scores 29 - i
    gold = np.arange(0, 30, 3)
    if case == "tied with others":
        scores[gold[3] - 1], scores[gold[6] + 1] = scores[gold[3]], scores[gold[6]]
    if case == "tied golds":
        scores[gold[5]] = scores[gold[4]]
    rows = np.zeros(len(gold), dtype=np.int64)
    ranks = ranks_of_relevant(np.ones((1, 1)), scores[:, None], rows, gold)
    assert ranks.tolist() == exact_ranks(scores[None, :], gold, rows).tolist()
