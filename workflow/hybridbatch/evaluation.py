"""Search + evaluate stages: the LAReQA settings over stored embeddings and indices.

* mono:  queries in L against the candidates in L;
* cross: queries in L1 against the candidates in L2 != L1;
* multi: queries in L against the pooled candidates of all languages.

A query whose item has no relevant candidate in the searched set is skipped for
that setting and language pair, and the number skipped is reported.
"""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa

from . import schema
from .vectors import POOLED, candidate_rows, read_embeddings
from .metrics import exact_ranks, metric_names, rank_metrics

SETTINGS = ("mono", "cross", "multi")
QUERY_CHUNK = 128


def setting_blocks(query_langs: list[str], candidate_langs: list[str]) -> dict[str, list[tuple[str, str]]]:
    """The (query language, candidate language) searches that make up each setting."""
    return {
        "mono": [(lang, lang) for lang in query_langs if lang in candidate_langs],
        "cross": [(lq, lc) for lq in query_langs for lc in candidate_langs if lq != lc],
        "multi": [(lang, POOLED) for lang in query_langs],
    }


def search_block(
    index: faiss.Index,
    queries: np.ndarray,
    candidates: np.ndarray,
    gold: list[np.ndarray],
    top_k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-k of every query plus every gold candidate beyond the top-k with its exact rank.

    Returns (query row, candidate column, rank, score) arrays."""
    k = min(top_k, index.ntotal)
    parts = []
    for start in range(0, len(queries), QUERY_CHUNK):
        chunk = queries[start : start + QUERY_CHUNK]
        scores, columns = index.search(chunk, k)
        rows = np.repeat(np.arange(len(chunk)), k)
        parts.append((rows + start, columns.ravel(), np.tile(np.arange(1, k + 1), len(chunk)), scores.ravel()))
        gold_rows = np.concatenate([np.full(len(g), i) for i, g in enumerate(gold[start : start + QUERY_CHUNK])])
        gold_columns = np.concatenate(gold[start : start + QUERY_CHUNK]).astype(np.int64)
        outside = ~(columns[gold_rows.astype(np.int64)] == gold_columns[:, None]).any(axis=1)
        gold_rows, gold_columns = gold_rows[outside].astype(np.int64), gold_columns[outside]
        if len(gold_rows):
            exact = chunk @ candidates.T
            ranks = np.maximum(exact_ranks(exact, gold_columns, gold_rows), k + 1)
            parts.append((gold_rows + start, gold_columns, ranks, exact[gold_rows, gold_columns]))
    return tuple(np.concatenate(values) for values in zip(*parts))


def search(params: dict, embed_dir: str | Path, corpus_dir: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Write runs <out_dir>/<setting>.parquet (schema.RUN) for the three settings."""
    embed_dir, corpus_dir, out_dir = Path(embed_dir), Path(corpus_dir), Path(out_dir)
    qids, qlangs, qvectors = read_embeddings(embed_dir / "queries.parquet")
    pids, plangs, pvectors = read_embeddings(embed_dir / "passages.parquet")
    qrels = schema.read_parquet(corpus_dir / "qrels.parquet", schema.QRELS)
    qrels = qrels[qrels.relevance > 0]
    qlangs, plangs, pids_array = np.array(qlangs), np.array(plangs), np.array(pids)
    pid_row = pd.Series(np.arange(len(pids)), index=pids)
    unknown = set(qrels.pid) - set(pids)
    if unknown:
        raise schema.SchemaError(f"{corpus_dir / 'qrels.parquet'}: pids without passages, e.g. {sorted(unknown)[:3]}")
    gold_of = qrels.assign(row=pid_row[qrels.pid].values).groupby("qid").row.apply(np.array).to_dict()
    counts = {}
    indices: dict[str, faiss.Index] = {}
    for setting, blocks in setting_blocks(sorted(set(qlangs)), sorted(set(plangs))).items():
        frames = []
        for lq, lc in blocks:
            rows = np.flatnonzero(qlangs == lq)
            columns = candidate_rows(plangs, lc)
            position = np.full(len(pids), -1)
            position[columns] = np.arange(len(columns))
            gold = [position[gold_of.get(qids[r], np.array([], dtype=int))] for r in rows]
            gold = [g[g >= 0] for g in gold]
            if lc not in indices:
                indices[lc] = faiss.read_index(str(embed_dir / f"index-{lc}.faiss"))
            q, c, rank, score = search_block(indices[lc], qvectors[rows], pvectors[columns], gold, params["top_k"])
            frames.append(
                pd.DataFrame(
                    {
                        "qid": np.array(qids)[rows][q],
                        "query_lang": lq,
                        "candidate_lang": lc,
                        "pid": pids_array[columns][c],
                        "rank": rank,
                        "score": score.astype(np.float32),
                    }
                )
            )
        run = pd.concat(frames, ignore_index=True)
        schema.write_parquet(run, out_dir / f"{setting}.parquet", schema.RUN)
        counts[setting] = len(run)
    return counts


def evaluate(params: dict, run_dir: str | Path, corpus_dir: str | Path, out_dir: str | Path) -> pd.DataFrame:
    """Per-query metrics (per_query.parquet), per-language aggregates (by_language.parquet)
    and macro-averaged rows of the summary contract (summary.csv). `params['descriptor']`
    names the run: corpus, model, strategy, alpha, seed."""
    run_dir, corpus_dir, out_dir = Path(run_dir), Path(corpus_dir), Path(out_dir)
    queries = schema.read_parquet(corpus_dir / "queries.parquet", schema.QUERIES)
    qrels = schema.read_parquet(corpus_dir / "qrels.parquet", schema.QRELS)
    qrels = qrels[qrels.relevance > 0]
    names = metric_names(params["recall_at"], params["ndcg_at"], params["mrr_at"])
    per_query, by_language = [], []
    for setting in SETTINGS:
        run = schema.read_parquet(run_dir / f"{setting}.parquet", schema.RUN)
        gold = run.merge(qrels[["qid", "pid"]], on=["qid", "pid"])
        key = gold.qid + "\t" + gold.candidate_lang
        scores = rank_metrics(key.to_numpy(), gold["rank"].to_numpy(), params["recall_at"], params["ndcg_at"], params["mrr_at"])
        scores = scores.reset_index()
        scores[["qid", "candidate_lang"]] = scores["query"].str.split("\t", expand=True)
        scores = scores.drop(columns="query").merge(queries[["qid", "lang"]].rename(columns={"lang": "query_lang"}), on="qid")
        scores["setting"] = setting
        if setting != "multi":
            scores["rank_distance"] = np.nan
        per_query.append(scores)
        searched = run.groupby(["query_lang", "candidate_lang"]).qid.nunique().rename("searched")
        grouped = scores.groupby(["query_lang", "candidate_lang"])
        table = grouped[names + ["rank_distance"]].mean().join(grouped.size().rename("queries")).join(searched)
        table["skipped"] = table.searched - table.queries
        by_language.append(table.drop(columns="searched").reset_index().assign(setting=setting))
    per_query_frame = pd.concat(per_query, ignore_index=True)
    by_language_frame = pd.concat(by_language, ignore_index=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    schema.write_table(pa.Table.from_pandas(per_query_frame, preserve_index=False), out_dir / "per_query.parquet")
    schema.write_table(pa.Table.from_pandas(by_language_frame, preserve_index=False), out_dir / "by_language.parquet")
    summary = summary_rows(by_language_frame, names, params["descriptor"])
    summary.to_csv(out_dir / "summary.csv", index=False)
    return summary


SUMMARY_COLUMNS = ["corpus", "model", "strategy", "alpha", "seed", "setting", "metric", "value"]


def summary_rows(by_language: pd.DataFrame, names: list[str], descriptor: dict) -> pd.DataFrame:
    """Macro averages: over languages (mono, multi) or language pairs (cross).
    language_bias is the multilingual rank distance, macro-averaged over query languages."""
    rows = []
    for setting, table in by_language.groupby("setting", sort=False):
        for name in names:
            rows.append((setting, name, table[name].mean()))
        if setting == "multi":
            rows.append((setting, "language_bias", table["rank_distance"].mean()))
    frame = pd.DataFrame(rows, columns=["setting", "metric", "value"])
    for column in ("corpus", "model", "strategy", "alpha", "seed"):
        frame.insert(SUMMARY_COLUMNS.index(column), column, descriptor[column])
    return frame[SUMMARY_COLUMNS]
