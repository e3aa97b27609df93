"""Search + evaluate stages: the LAReQA settings over stored embeddings and indices.

* mono:  queries in L against the candidates in L;
* cross: queries in L1 against the candidates in L2 != L1;
* multi: queries in L against the pooled candidates of all languages.

Cross and multi need items that are parallel across languages: where no query has
relevant candidates in two languages (MIRACL's monolingual qrels), their runs are
empty and no cross, multi or language-bias value is reported.

A query whose item has no relevant candidate in the searched set is skipped for
that setting and language pair, and the number skipped is reported; a block where
every query is skipped stays in by_language.parquet with 0 queries.

Ranks: the top-k comes from the index (an exact index ranks by the same matrix product
as below; an approximate one, HNSW/IVF/PQ, returns its own list, possibly shorter than
k, never a -1 label). Every relevant candidate outside that list is ranked after it, in
exact-score order among the candidates the index did not return (ties: earlier first).
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa

from . import schema
from .layout import SETTINGS, SUMMARY_COLUMNS
from .vectors import POOLED, candidate_rows, read_embeddings
from .metrics import exact_ranks, metric_names, rank_metrics

QUERY_CHUNK = 128


def setting_blocks(query_langs: list[str], candidate_langs: list[str]) -> dict[str, list[tuple[str, str]]]:
    """The (query language, candidate language) searches that make up each setting."""
    return {
        "mono": [(lang, lang) for lang in query_langs if lang in candidate_langs],
        "cross": [(lq, lc) for lq in query_langs for lc in candidate_langs if lq != lc],
        "multi": [(lang, POOLED) for lang in query_langs],
    }


def top_k_exact(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, columns) of each row's k best candidates, best first; ties go to the
    earlier column, at the k-th place too."""
    if k < scores.shape[1]:
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
        above, tied = scores > kth, scores == kth
        wanted = k - above.sum(axis=1, keepdims=True)
        keep = above | (tied & (np.cumsum(tied, axis=1) <= wanted))
        part = np.nonzero(keep)[1].reshape(len(scores), k)
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
    """Top-k of every query plus every gold candidate beyond the top-k with its rank.

    `gold` is (query row, candidate column) of every relevant candidate, sorted by row.
    Returns (query row, candidate column, rank, score) arrays."""
    k = min(top_k, index.ntotal)
    exact_index = isinstance(index, faiss.IndexFlat)
    parts = []
    for start in range(0, len(queries), QUERY_CHUNK):
        chunk = queries[start : start + QUERY_CHUNK]
        exact = chunk @ candidates.T
        scores, columns = top_k_exact(exact, k) if exact_index else index.search(chunk, k)
        returned = columns >= 0  # FAISS pads a short list with -1
        ranks = np.cumsum(returned, axis=1)
        rows = np.broadcast_to(np.arange(len(chunk))[:, None], columns.shape)
        parts.append((rows[returned] + start, columns[returned], ranks[returned], scores[returned]))
        lo, hi = np.searchsorted(gold[0], [start, start + len(chunk)])
        gold_rows, gold_columns = gold[0][lo:hi] - start, gold[1][lo:hi]
        outside = ~(columns[gold_rows] == gold_columns[:, None]).any(axis=1)
        gold_rows, gold_columns = gold_rows[outside], gold_columns[outside]
        if len(gold_rows):
            listed = columns[gold_rows]
            gold_scores = exact[gold_rows, gold_columns][:, None]
            listed_scores = exact[gold_rows[:, None], np.maximum(listed, 0)]
            ahead = (listed_scores > gold_scores) | ((listed_scores == gold_scores) & (listed < gold_columns[:, None]))
            ahead_in_list = (ahead & (listed >= 0)).sum(axis=1)
            rank = returned[gold_rows].sum(axis=1) + exact_ranks(exact, gold_columns, gold_rows) - ahead_in_list
            parts.append((gold_rows + start, gold_columns, rank, exact[gold_rows, gold_columns]))
    return tuple(np.concatenate(values) for values in zip(*parts))


def is_parallel(query_rows: np.ndarray, passage_langs: np.ndarray) -> bool:
    """Whether some query has relevant candidates in two languages (items are parallel)."""
    pairs = pd.DataFrame({"query": query_rows, "lang": passage_langs}).drop_duplicates()
    return bool(pairs["query"].duplicated().any())


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
    parallel = is_parallel(gold_query, plangs[gold_passage])
    counts = {}
    indices: dict[str, faiss.Index] = {}
    for setting, blocks in setting_blocks(sorted(set(qlangs)), sorted(set(plangs))).items():
        if setting != "mono" and not parallel:
            logging.info("%s: no query has relevant candidates in two languages, so no %s setting", corpus_dir, setting)
            blocks = []
        tables = [schema.RUN.empty_table()]
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
    """Per-query metrics (per_query.parquet, with each query's item), per-language
    aggregates (by_language.parquet) and macro-averaged rows of the summary contract
    (summary.csv). `params['descriptor']` names the run: corpus, model, strategy, alpha, seed."""
    run_dir, corpus_dir, out_dir = Path(run_dir), Path(corpus_dir), Path(out_dir)
    qrels = schema.read_parquet(corpus_dir / "qrels.parquet", schema.QRELS)
    qrels = qrels[qrels.relevance > 0]
    item_of = schema.read_parquet(corpus_dir / "queries.parquet", schema.QUERIES).set_index("qid").item_id
    relevant = pa.Table.from_pandas(qrels[["qid", "pid"]], preserve_index=False).cast(
        pa.schema([("qid", pa.string()), ("pid", pa.string())])
    )
    names = metric_names(params["recall_at"], params["ndcg_at"], params["mrr_at"])
    per_query, by_language = [], []
    for setting in SETTINGS:
        run = schema.read_table(run_dir / f"{setting}.parquet", schema.RUN)
        if run.num_rows == 0:
            continue
        gold = run.join(relevant, keys=["qid", "pid"], join_type="inner").to_pandas()
        key = gold.qid + "\t" + gold.query_lang + "\t" + gold.candidate_lang
        scores = rank_metrics(key.to_numpy(), gold["rank"].to_numpy(), params["recall_at"], params["ndcg_at"], params["mrr_at"])
        scores = scores.reset_index()
        scores[["qid", "query_lang", "candidate_lang"]] = scores["query"].str.split("\t", expand=True)
        scores = scores.drop(columns="query")
        scores.insert(0, "item_id", item_of.reindex(scores.qid).to_numpy())
        scores["setting"] = setting
        if setting != "multi":
            scores["rank_distance"] = np.nan
        per_query.append(scores)
        searched = run.group_by(["query_lang", "candidate_lang"]).aggregate([("qid", "count_distinct")]).to_pandas()
        searched = searched.set_index(["query_lang", "candidate_lang"])["qid_count_distinct"].rename("searched").sort_index()
        grouped = scores.groupby(["query_lang", "candidate_lang"])
        table = searched.to_frame().join(grouped[names + ["rank_distance"]].mean()).join(grouped.size().rename("queries"))
        table["queries"] = table.queries.fillna(0).astype(np.int64)
        table["skipped"] = table.searched - table.queries
        by_language.append(table.drop(columns="searched").reset_index().assign(setting=setting))
    if not per_query:
        raise schema.SchemaError(f"{run_dir}: no run has a query with a relevant candidate")
    per_query_frame = pd.concat(per_query, ignore_index=True)
    by_language_frame = pd.concat(by_language, ignore_index=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    schema.write_table(pa.Table.from_pandas(per_query_frame, preserve_index=False), out_dir / "per_query.parquet")
    schema.write_table(pa.Table.from_pandas(by_language_frame, preserve_index=False), out_dir / "by_language.parquet")
    summary = summary_rows(by_language_frame, names, params["descriptor"])
    summary.to_csv(out_dir / "summary.csv", index=False)
    return summary


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
            rows.append((setting, "language_bias", table["rank_distance"].mean()))
    frame = pd.DataFrame(rows, columns=["setting", "metric", "value"])
    for column in ("corpus", "model", "strategy", "alpha", "seed"):
        frame.insert(SUMMARY_COLUMNS.index(column), column, descriptor[column])
    return frame[SUMMARY_COLUMNS]
