"""The tests of `hybridbatch/evaluate/ranks.py`."""

import faiss
import numpy as np
import pandas as pd
import pytest

from hybridbatch.artifacts.vectors import CandidateBlocks
from hybridbatch.evaluate import ranks
from hybridbatch.evaluate.ranks import exact_ranks, ranks_of_relevant


def blocks_of(vectors: np.ndarray, rows: np.ndarray, width: int) -> CandidateBlocks:
    """Blocks (first column, vectors) of the candidates vectors[rows], at most `width` each."""
    return lambda: ((lo, vectors[rows[lo : lo + width]]) for lo in range(0, len(rows), width))


def test_exact_top_k_of_wide_score_rows_equals_a_full_sort():
    """5,000 candidates a row (numpy's partition leaves the prefix unsorted at this size), distinct or tied."""
    rng = np.random.default_rng(1)
    for scores in (rng.random((20, 5000)).astype(np.float32), rng.integers(0, 400, size=(20, 5000)).astype(np.float32)):
        top_scores, columns = ranks.top_k_exact(scores, 50)
        order = np.lexsort((np.broadcast_to(np.arange(5000), scores.shape), -scores), axis=1)[:, :50]
        assert (columns == order).all() and (top_scores == np.take_along_axis(scores, order, axis=1)).all()


def test_exact_top_k_breaks_ties_by_column_at_the_boundary_too():
    from hybridbatch.evaluate.ranks import exact_ranks

    rng = np.random.default_rng(0)
    for _ in range(200):
        candidates = rng.integers(0, 3, size=(40, 4)).astype(np.float32)  # many duplicated vectors: ties
        scores = rng.integers(0, 3, size=(5, 4)).astype(np.float32) @ candidates.T
        top_scores, columns = ranks.top_k_exact(scores, 10)
        rows = np.repeat(np.arange(5), 10)
        assert (exact_ranks(scores, columns.ravel(), rows) == np.tile(np.arange(1, 11), 5)).all()


def run_tuples(result) -> set[tuple]:
    return set(zip(*(values.tolist() for values in result)))


@pytest.mark.parametrize("approximate", [False, True])
def test_search_in_candidate_blocks_equals_one_block_and_brute_force(approximate):
    """Scores computed block by block (any width, ties included) give the same top-k and
    the same ranks of the gold candidates as the whole score matrix at once; those ranks
    are the list's length plus the exact order of the candidates the list missed."""
    from hybridbatch.evaluate.ranks import exact_ranks

    rng = np.random.default_rng(3)
    queries = rng.integers(0, 3, size=(300, 4)).astype(np.float32)  # > QUERY_CHUNK rows: several query chunks
    candidates = rng.integers(0, 3, size=(61, 4)).astype(np.float32)  # duplicated vectors: many ties
    gold_rows = np.repeat(np.arange(300), 3)
    gold_columns = rng.integers(0, 61, size=900)
    keep = ~pd.DataFrame({"r": gold_rows, "c": gold_columns}).duplicated().to_numpy()
    gold = (gold_rows[keep], gold_columns[keep])
    index = None
    if approximate:
        index = faiss.index_factory(4, "IVF4,Flat", faiss.METRIC_INNER_PRODUCT)
        index.train(candidates)
        index.add(candidates)  # probes 1 list of 4: short lists, padded with -1
    rows = np.arange(61)
    late = gold[0] >= 2 * ranks.QUERY_CHUNK  # relevant candidates of the third query chunk only
    alone = run_tuples(
        ranks.search_block(index, queries, blocks_of(candidates, rows, 7), 61, (gold[0][late], gold[1][late]), 10)
    )
    results = [
        run_tuples(ranks.search_block(index, queries, blocks_of(candidates, rows, width), 61, gold, 10))
        for width in (61, 1, 7, 16, 1000)
    ]
    assert all(result == results[0] for result in results[1:])
    assert {row for row in alone if row[0] >= 2 * ranks.QUERY_CHUNK} == {
        row for row in results[0] if row[0] >= 2 * ranks.QUERY_CHUNK
    }
    scores = queries @ candidates.T
    ranked = {(r, c): rank for r, c, rank, _ in results[0]}
    if approximate:
        listed = index.search(queries, 10)[1]
        for r, c in zip(*gold):
            if c not in listed[r]:
                unlisted = np.setdiff1d(np.arange(61), listed[r])
                ahead = (
                    (scores[r, unlisted] > scores[r, c]) | ((scores[r, unlisted] == scores[r, c]) & (unlisted < c))
                ).sum()
                assert ranked[r, c] == (listed[r] >= 0).sum() + ahead + 1
    else:
        assert [ranked[r, c] for r, c in zip(*gold)] == exact_ranks(scores, gold[1], gold[0]).tolist()
        top_scores, top_columns = ranks.top_k_exact(scores, 10)
        listed = {(r, c): rank for r, c, rank, _ in results[0] if rank <= 10}
        assert listed == {(r, c): i + 1 for r in range(300) for i, c in enumerate(top_columns[r])}


@pytest.mark.parametrize("rounded", [False, True])
def test_ranks_of_many_relevant_candidates_equal_direct_comparison(rounded):
    from hybridbatch.evaluate.ranks import exact_ranks

    rng = np.random.default_rng(5)
    queries, candidates = rng.normal(size=(30, 6)), rng.normal(size=(400, 6))
    if rounded:  # many tied scores, some at gold scores
        queries, candidates = np.round(queries), np.round(candidates)
    rows = np.repeat(np.arange(30), 25)
    columns = np.concatenate([rng.choice(400, 25, replace=False) for _ in range(30)])
    expected = exact_ranks(queries @ candidates.T, columns, rows)
    assert (
        ranks_of_relevant(queries, candidates, rows, columns, budget=400 * 7) == expected
    ).all()  # 5 chunks of 7 queries
    assert (ranks_of_relevant(queries, candidates, rows, columns) == expected).all()  # counted (25 a query)
    later = rows >= 14  # the first two chunks hold no relevant candidate
    assert (
        ranks_of_relevant(queries, candidates, rows[later], columns[later], budget=400 * 7) == expected[later]
    ).all()
    few = np.arange(len(rows)) % 25 < 2  # 2 a query: compared, not counted, in chunks of 7 queries
    assert (ranks_of_relevant(queries, candidates, rows[few], columns[few], budget=400 * 7) == expected[few]).all()


def test_ranks_match_a_full_sort_and_break_ties_by_candidate_order():
    scores = np.array([[0.5, 0.9, 0.5, 0.1, 0.5]])
    ranks = exact_ranks(scores, np.array([0, 2, 4, 3, 1]), np.zeros(5, dtype=int))
    assert ranks.tolist() == [2, 3, 4, 5, 1]
    rng = np.random.default_rng(0)
    scores = rng.standard_normal((5, 50))
    rows, columns = np.repeat(np.arange(5), 50), np.tile(np.arange(50), 5)
    expected = np.argsort(np.argsort(-scores, axis=1), axis=1).ravel() + 1
    assert (exact_ranks(scores, columns, rows) == expected).all()


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
