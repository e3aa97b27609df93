"""Ranking metrics computed from the ranks of the relevant candidates (binary relevance).

Every relevant candidate's rank is known (the run stores it even beyond the top-k),
so mAP is exact. Ranks are 1-based; ties in score are broken by candidate order in
the index (the earlier candidate ranks first).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def metric_names(recall_at: list[int], ndcg_at: int, mrr_at: int) -> list[str]:
    return ["map"] + [f"recall@{k}" for k in recall_at] + [f"ndcg@{ndcg_at}", f"mrr@{mrr_at}"]


RECALL_RULES = ("fraction", "any")  # share of relevant candidates in the top k (LAReQA), or 1 if any is (CLIP_benchmark)


def rank_metrics(
    query: np.ndarray, rank: np.ndarray, recall_at: list[int], ndcg_at: int, mrr_at: int, recall_rule: str = "fraction"
) -> pd.DataFrame:
    """Per-query metrics from the ranks of every relevant candidate.

    `query[i]` names the query that relevant candidate i belongs to and `rank[i]` its
    rank. `recall_rule` 'fraction' gives Recall@k as the share of the query's relevant
    candidates in the top k; 'any' gives 1 when any of them is (CLIP_benchmark's rule).
    Returns one row per query (indexed by query) with mAP, Recall@k, nDCG@k,
    MRR@k, the number of relevant candidates and the rank distance (worst rank minus
    best rank among the relevant candidates: the language bias of Huang et al. 2023
    when there is one relevant candidate per language).
    """
    frame = pd.DataFrame({"query": query, "rank": rank.astype(np.int64)}).sort_values(["query", "rank"])
    codes, queries = pd.factorize(frame["query"], sort=False)
    ranks = frame["rank"].to_numpy()
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    n_relevant = np.diff(np.r_[starts, len(ranks)])
    position = np.arange(len(ranks)) - np.repeat(starts, n_relevant) + 1
    out = {"n_relevant": n_relevant}
    out["map"] = np.add.reduceat(position / ranks, starts) / n_relevant
    best = ranks[starts]
    for k in recall_at:
        if recall_rule == "any":
            out[f"recall@{k}"] = (best <= k).astype(float)
        else:
            out[f"recall@{k}"] = np.add.reduceat((ranks <= k).astype(float), starts) / n_relevant
    gains = np.where(ranks <= ndcg_at, 1.0 / np.log2(ranks + 1.0), 0.0)
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, ndcg_at + 2)))
    out[f"ndcg@{ndcg_at}"] = np.add.reduceat(gains, starts) / discounts[np.minimum(n_relevant, ndcg_at) - 1]
    out[f"mrr@{mrr_at}"] = np.where(best <= mrr_at, 1.0 / best, 0.0)
    out["rank_distance"] = np.maximum.reduceat(ranks, starts) - best
    return pd.DataFrame(out, index=pd.Index(queries, name="query"))


def exact_ranks(scores: np.ndarray, gold_columns: np.ndarray, gold_rows: np.ndarray) -> np.ndarray:
    """Rank of candidate gold_columns[i] for query row gold_rows[i] in the score matrix,
    counting higher scores and equal scores of earlier candidates."""
    gold_scores = scores[gold_rows, gold_columns]
    higher = (scores[gold_rows] > gold_scores[:, None]).sum(axis=1)
    earlier = np.arange(scores.shape[1])[None, :] < gold_columns[:, None]
    ties = ((scores[gold_rows] == gold_scores[:, None]) & earlier).sum(axis=1)
    return higher + ties + 1


def ranks_of_relevant(
    queries: np.ndarray, candidates: np.ndarray, gold_rows: np.ndarray, gold_columns: np.ndarray, budget: int = 20_000_000
) -> np.ndarray:
    """Exact rank of candidate gold_columns[i] for query gold_rows[i] under dot-product
    scores (ties: the earlier candidate first), holding at most about `budget` scores
    or comparisons at a time."""
    ranks = np.empty(len(gold_rows), dtype=np.int64)
    order = np.argsort(gold_rows, kind="stable")
    sorted_rows = gold_rows[order]
    chunk = max(1, budget // max(1, len(candidates)))
    for start in range(0, len(queries), chunk):
        lo, hi = np.searchsorted(sorted_rows, [start, start + chunk])
        if hi == lo:
            continue
        scores = queries[start : start + chunk] @ candidates.T
        for part in range(lo, hi, chunk):
            chosen = order[part : min(part + chunk, hi)]
            ranks[chosen] = exact_ranks(scores, gold_columns[chosen], gold_rows[chosen] - start)
    return ranks
