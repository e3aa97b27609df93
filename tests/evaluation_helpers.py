"""Helpers the tests of several modules share: DESCRIPTOR, METRICS."""

METRICS = {"recall_at": [1, 2, 5], "ndcg_at": 3, "mrr_at": 3}


DESCRIPTOR = {"corpus": "fixture", "model": "random", "strategy": "zero-shot", "alpha": None, "seed": None}
