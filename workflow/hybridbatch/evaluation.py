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


def top_k_exact(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, columns) of each row's k best candidates, best first; ties by column."""
    if k < scores.shape[1]:
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    columns = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(scores, columns, axis=1), columns


def search_block(
    index: faiss.Index,
    queries: np.ndarray,
    candidates: np.ndarray,
    gold: tuple[np.ndarray, np.ndarray],
    top_k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-k of every query plus every gold candidate beyond the top-k with its exact rank.

    `gold` is (query row, candidate column) of every relevant candidate, sorted by row.
    An exact (flat) index is searched with the same matrix product that ranks the gold
    candidates; an approximate one (HNSW, IVF, PQ) through FAISS. Returns (query row,
    candidate column, rank, score) arrays."""
    k = min(top_k, index.ntotal)
    exact_index = isinstance(index, faiss.IndexFlat)
    parts = []
    for start in range(0, len(queries), QUERY_CHUNK):
        chunk = queries[start : start + QUERY_CHUNK]
        exact = chunk @ candidates.T
        scores, columns = top_k_exact(exact, k) if exact_index else index.search(chunk, k)
        rows = np.repeat(np.arange(len(chunk)), k)
        parts.append((rows + start, columns.ravel(), np.tile(np.arange(1, k + 1), len(chunk)), scores.ravel()))
        lo, hi = np.searchsorted(gold[0], [start, start + len(chunk)])
        gold_rows, gold_columns = gold[0][lo:hi] - start, gold[1][lo:hi]
        outside = ~(columns[gold_rows] == gold_columns[:, None]).any(axis=1)
        gold_rows, gold_columns = gold_rows[outside], gold_columns[outside]
        if len(gold_rows):
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
    qlangs, plangs = np.array(qlangs), np.array(plangs)
    qid_array, pid_array = pa.array(qids, pa.string()), pa.array(pids, pa.string())
    pid_row = pd.Series(np.arange(len(pids)), index=pids)
    unknown = set(qrels.pid) - set(pids)
    if unknown:
        raise schema.SchemaError(f"{corpus_dir / 'qrels.parquet'}: pids without passages, e.g. {sorted(unknown)[:3]}")
    qid_row = pd.Series(np.arange(len(qids)), index=qids)
    gold_query = qid_row.reindex(qrels.qid).to_numpy()
    known = ~np.isnan(gold_query)
    gold_query, gold_passage = gold_query[known].astype(np.int64), pid_row[qrels.pid].to_numpy()[known]
    counts = {}
    indices: dict[str, faiss.Index] = {}
    for setting, blocks in setting_blocks(sorted(set(qlangs)), sorted(set(plangs))).items():
        tables = []
        for lq, lc in blocks:
            rows = np.flatnonzero(qlangs == lq)
            columns = candidate_rows(plangs, lc)
            query_position, position = np.full(len(qids), -1), np.full(len(pids), -1)
            query_position[rows], position[columns] = np.arange(len(rows)), np.arange(len(columns))
            keep = (query_position[gold_query] >= 0) & (position[gold_passage] >= 0)
            order = np.argsort(query_position[gold_query[keep]], kind="stable")
            gold = (query_position[gold_query[keep]][order], position[gold_passage[keep]][order])
            if lc not in indices:
                indices[lc] = faiss.read_index(str(embed_dir / f"index-{lc}.faiss"))
            q, c, rank, score = search_block(indices[lc], qvectors[rows], pvectors[columns], gold, params["top_k"])
            n = len(q)
            tables.append(
                pa.table(
                    {
                        "qid": qid_array.take(pa.array(rows[q])),
                        "query_lang": pa.array([lq] * n, pa.string()),
                        "candidate_lang": pa.array([lc] * n, pa.string()),
                        "pid": pid_array.take(pa.array(columns[c])),
                        "rank": pa.array(rank, pa.int64()),
                        "score": pa.array(score.astype(np.float32)),
                    },
                    schema=schema.RUN,
                )
            )
        run = pa.concat_tables(tables)
        schema.write_table(run, out_dir / f"{setting}.parquet")
        counts[setting] = run.num_rows
    return counts


def evaluate(params: dict, run_dir: str | Path, corpus_dir: str | Path, out_dir: str | Path) -> pd.DataFrame:
    """Per-query metrics (per_query.parquet), per-language aggregates (by_language.parquet)
    and macro-averaged rows of the summary contract (summary.csv). `params['descriptor']`
    names the run: corpus, model, strategy, alpha, seed."""
    run_dir, corpus_dir, out_dir = Path(run_dir), Path(corpus_dir), Path(out_dir)
    qrels = schema.read_parquet(corpus_dir / "qrels.parquet", schema.QRELS)
    qrels = qrels[qrels.relevance > 0]
    relevant = pa.Table.from_pandas(qrels[["qid", "pid"]], preserve_index=False).cast(
        pa.schema([("qid", pa.string()), ("pid", pa.string())])
    )
    names = metric_names(params["recall_at"], params["ndcg_at"], params["mrr_at"])
    per_query, by_language = [], []
    for setting in SETTINGS:
        run = schema.read_table(run_dir / f"{setting}.parquet", schema.RUN)
        gold = run.join(relevant, keys=["qid", "pid"], join_type="inner").to_pandas()
        key = gold.qid + "\t" + gold.query_lang + "\t" + gold.candidate_lang
        scores = rank_metrics(key.to_numpy(), gold["rank"].to_numpy(), params["recall_at"], params["ndcg_at"], params["mrr_at"])
        scores = scores.reset_index()
        scores[["qid", "query_lang", "candidate_lang"]] = scores["query"].str.split("\t", expand=True)
        scores = scores.drop(columns="query")
        scores["setting"] = setting
        if setting != "multi":
            scores["rank_distance"] = np.nan
        per_query.append(scores)
        searched = run.group_by(["query_lang", "candidate_lang"]).aggregate([("qid", "count_distinct")]).to_pandas()
        searched = searched.set_index(["query_lang", "candidate_lang"])["qid_count_distinct"].rename("searched")
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
