"""Ranking metrics computed from the ranks of the relevant candidates (binary relevance).

Every relevant candidate's rank is known (the run stores it even beyond the top-k),
so mAP is exact. Ranks are 1-based; ties in score are broken by candidate order in
the index (the earlier candidate ranks first).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hybridbatch.names import LANGUAGE_BIAS, MAP, RANK_DISTANCE, SUMMARY_COLUMNS, mrr, ndcg, recall


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
    out[MAP] = np.add.reduceat(position / ranks, starts) / n_relevant
    best = ranks[starts]
    for k in recall_at:
        if recall_rule == "any":
            out[recall(k)] = (best <= k).astype(float)
        else:
            out[recall(k)] = np.add.reduceat((ranks <= k).astype(float), starts) / n_relevant
    gains = np.where(ranks <= ndcg_at, 1.0 / np.log2(ranks + 1.0), 0.0)
    discounts = np.cumsum(1.0 / np.log2(np.arange(2, ndcg_at + 2)))
    out[ndcg(ndcg_at)] = np.add.reduceat(gains, starts) / discounts[np.minimum(n_relevant, ndcg_at) - 1]
    out[mrr(mrr_at)] = np.where(best <= mrr_at, 1.0 / best, 0.0)
    if language is None:
        out[RANK_DISTANCE] = np.maximum.reduceat(ranks, starts) - best
    else:
        best_per_language = pd.DataFrame({"query": codes, "language": language[frame.index.to_numpy()], "rank": ranks})
        spread = best_per_language.groupby(["query", "language"])["rank"].min().groupby("query")
        out[RANK_DISTANCE] = (spread.max() - spread.min()).to_numpy()
    return pd.DataFrame(out, index=pd.Index(queries, name="query"))


def is_multi(setting: str) -> bool:
    """A pooled-candidates setting (text `multi`, image-text `i2t-multi/<protocol>`): it has a language bias."""
    return setting.split("/")[0].endswith("multi")


def summary_rows(by_language: pd.DataFrame, names: list[str], descriptor: dict) -> pd.DataFrame:
    """Macro averages over the blocks of a setting: languages (mono, multi, t2i, i2t) or
    language pairs (cross, t2t-cross). language_bias is the rank distance of a pooled
    setting, macro-averaged over its blocks."""
    rows = []
    for setting, table in by_language.groupby("setting", sort=False):
        for name in names:
            rows.append((setting, name, table[name].mean()))
        if is_multi(setting):
            rows.append((setting, LANGUAGE_BIAS, table[RANK_DISTANCE].mean()))
    frame = pd.DataFrame(rows, columns=["setting", "metric", "value"])
    for column in ("corpus", "model", "strategy", "alpha", "seed"):
        frame.insert(SUMMARY_COLUMNS.index(column), column, descriptor[column])
    return frame[SUMMARY_COLUMNS]
