"""The tests of `hybridbatch/pairs/bm25.py`."""

import numpy as np
import pytest


def zipf_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(f"w{w}" for w in np.minimum(rng.zipf(1.3, rng.integers(3, 15)), 400)) for _ in range(n)]


@pytest.mark.parametrize("postings", [10**6, 40])
def test_bm25_scores_equal_bm25s_for_the_pruned_query(postings):
    import bm25s

    from hybridbatch.pairs import bm25

    texts = zipf_texts(300) + ["", "w1 w1 w1", "..."]
    index = bm25.index_texts(texts)
    reference = bm25s.BM25()  # Lucene scoring, k1 1.5, b 0.75
    reference.index([bm25.tokens(t) for t in texts], show_progress=False)
    frequency = {w: sum(w in set(bm25.tokens(t)) for t in texts) for t in texts for w in bm25.tokens(t)}
    first_seen: dict[str, int] = {}  # term ids: the order of first appearance
    for word in (w for t in texts for w in bm25.tokens(t)):
        first_seen.setdefault(word, len(first_seen))
    rows = np.arange(len(texts))
    queries = bm25.pruned_queries(index, rows, postings)
    pruned = 0
    for row, candidates, scores in bm25.top_candidates(index, rows, 5, postings):
        words = sorted(set(bm25.tokens(texts[row])), key=lambda w: (frequency[w], first_seen[w]))
        kept = [w for i, w in enumerate(words) if i == 0 or sum(frequency[v] for v in words[: i + 1]) <= postings]
        assert queries[row].nnz == len(kept)  # the rarest words while their postings fit
        pruned += len(kept) < len(words)
        expected = reference.get_scores(kept) if kept else np.zeros(len(texts))
        best = sorted((-expected[c], c) for c in range(len(texts)) if expected[c] > 0)[:5]
        assert list(candidates) == [c for _, c in best], row  # by score, ties by row
        np.testing.assert_allclose(scores, [-s for s, _ in best], rtol=1e-5)
    assert (pruned > 0) == (postings < 10**6)
    assert [len(c) for _, c, _ in bm25.top_candidates(index, np.array([300, 302]), 5, postings)] == [0, 0]  # no words
