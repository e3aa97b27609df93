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
    query: np.ndarray,
    rank: np.ndarray,
    recall_at: list[int],
    ndcg_at: int,
    mrr_at: int,
    recall_rule: str = "fraction",
    language: np.ndarray | None = None,
) -> pd.DataFrame:
    """Per-query metrics from the ranks of every relevant candidate.

    `query[i]` names the query that relevant candidate i belongs to and `rank[i]` its
    rank. `recall_rule` 'fraction' gives Recall@k as the share of the query's relevant
    candidates in the top k; 'any' gives 1 when any of them is (CLIP_benchmark's rule).
    Returns one row per query (indexed by query) with mAP, Recall@k, nDCG@k,
    MRR@k, the number of relevant candidates and the rank distance (worst rank minus
    best rank among the relevant candidates: the language bias of Huang et al. 2023
    when there is one relevant candidate per language; given each relevant candidate's
    `language`, the spread over languages of each language's best rank).
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
    if language is None:
        out["rank_distance"] = np.maximum.reduceat(ranks, starts) - best
    else:
        best_per_language = pd.DataFrame({"query": codes, "language": language[frame.index.to_numpy()], "rank": ranks})
        spread = best_per_language.groupby(["query", "language"])["rank"].min().groupby("query")
        out["rank_distance"] = (spread.max() - spread.min()).to_numpy()
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
    or comparisons at a time. A query with many relevant candidates (pooled settings)
    is ranked by counting, one pass over its scores, how many candidates beat each of
    its gold scores; others by direct comparison."""
    ranks = np.empty(len(gold_rows), dtype=np.int64)
    order = np.argsort(gold_rows, kind="stable")
    sorted_rows = gold_rows[order]
    chunk = max(1, budget // max(1, len(candidates)))
    for start in range(0, len(queries), chunk):
        lo, hi = np.searchsorted(sorted_rows, [start, start + chunk])
        if hi == lo:
            continue
        scores = queries[start : start + chunk] @ candidates.T
        if (hi - lo) > MANY_RELEVANT * min(chunk, len(queries) - start):
            bounds = np.searchsorted(sorted_rows[lo:hi], np.arange(start, start + len(scores) + 1)) + lo
            for row, (first, last) in enumerate(zip(bounds[:-1], bounds[1:])):
                if last > first:
                    chosen = order[first:last]
                    ranks[chosen] = _ranks_by_counting(scores[row], gold_columns[chosen])
            continue
        for part in range(lo, hi, chunk):
            chosen = order[part : min(part + chunk, hi)]
            ranks[chosen] = exact_ranks(scores, gold_columns[chosen], gold_rows[chosen] - start)
    return ranks


MANY_RELEVANT = 8  # relevant candidates per query above which ranks are counted, not compared


def _ranks_by_counting(scores: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Ranks of the candidates `columns` in one row of scores: 1 + how many score higher,
    from a histogram of where every score falls among the sorted gold scores; a row with
    a tie at a gold score falls back to direct comparison."""
    gold = scores[columns]
    order = np.argsort(gold, kind="stable")
    ascending = gold[order]
    below = np.searchsorted(ascending, scores, side="left")  # gold scores strictly below each candidate's
    if (np.searchsorted(ascending, scores, side="right") - below).sum() != len(np.unique(columns)):  # a tie at a gold score
        return exact_ranks(scores[None, :], columns, np.zeros(len(columns), dtype=np.int64))
    above = np.cumsum(np.bincount(below, minlength=len(ascending) + 1)[::-1])[::-1][1:]
    ranks = np.empty(len(columns), dtype=np.int64)
    ranks[order] = above + 1
    return ranks
