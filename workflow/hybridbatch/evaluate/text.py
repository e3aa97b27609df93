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

Ranks: with an exact (flat, or no) index the top-k is computed here, streaming the stored
vectors in blocks (memory: one block of 128 queries x `search.block_mb` of scores, flat
in the corpus size) and merging each block's top-k (ties: the earlier candidate); an
approximate index (HNSW/IVF/PQ) returns its own list, possibly shorter than k, never a
-1 label. Every relevant candidate outside the list is ranked after it, in exact-score
order among the candidates the list missed (ties: earlier first), counted block by
block in a second pass. Scores are float32 matrix products: BLAS may round a product
differently in blocks of another shape, so two block sizes can order candidates whose
scores differ in the last bit differently (a test with exactly representable scores
shows every block size giving the same runs).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TypedDict

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa

from hybridbatch.artifacts import schema
from hybridbatch.artifacts.vectors import POOLED, candidate_rows, parquet_blocks, read_embeddings, read_ids
from hybridbatch.evaluate.metrics import rank_metrics, summary_rows
from hybridbatch.evaluate.ranks import BLOCK_MB, block_width, search_block
from hybridbatch.names import RANK_DISTANCE, SETTINGS, metric_names


def setting_blocks(query_langs: list[str], candidate_langs: list[str]) -> dict[str, list[tuple[str, str]]]:
    """The (query language, candidate language) searches that make up each setting."""
    return {
        "mono": [(lang, lang) for lang in query_langs if lang in candidate_langs],
        "cross": [(lq, lc) for lq in query_langs for lc in candidate_langs if lq != lc],
        "multi": [(lang, POOLED) for lang in query_langs],
    }


def relevant_pairs(corpus_dir: Path) -> pd.DataFrame:
    """The corpus's relevant (qid, pid) pairs, each once."""
    qrels = schema.read_parquet(corpus_dir / "qrels.parquet", schema.QRELS)
    return qrels[qrels.relevance > 0].drop_duplicates(["qid", "pid"])


def is_parallel(query_rows: np.ndarray, passage_langs: np.ndarray) -> bool:
    """Whether some query has relevant candidates in two languages (items are parallel)."""
    pairs = pd.DataFrame({"query": query_rows, "lang": passage_langs}).drop_duplicates()
    return bool(pairs["query"].duplicated().any())


def open_index(path: Path) -> faiss.Index | None:
    """An approximate index, or None for exact search, which streams the stored vectors:
    no index file (the embed stage writes none for Flat) or a flat one (memory-mapped to tell).
    The embed artifact's manifest says which files belong there (checked before the search)."""
    if not path.exists():
        return None
    index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC)  # a flat index's vectors stay on disk
    return None if isinstance(index, faiss.IndexFlat) else faiss.read_index(str(path))


class SearchParams(TypedDict):
    """The config's `search` section."""

    top_k: int
    block_mb: float


class EvaluationParams(TypedDict):
    """The config's `evaluation` section and the run's summary descriptor."""

    recall_at: list[int]
    ndcg_at: int
    mrr_at: int
    descriptor: dict


def setting_run(
    blocks: list[tuple[str, str]], searched: dict, qlangs: np.ndarray, qid_array: pa.Array, pid_array: pa.Array
) -> pa.Table:
    """One setting's run (schema.RUN): each block's queries' rows of its candidate set's search."""
    tables = [schema.RUN.empty_table()]
    for lq, lc in blocks:
        q, c, rank, score = searched[lc]
        mine = qlangs[q] == lq
        n = int(mine.sum())
        tables.append(
            pa.table(
                {
                    "qid": qid_array.take(pa.array(q[mine])),
                    "query_lang": pa.array([lq] * n, pa.string()),
                    "candidate_lang": pa.array([lc] * n, pa.string()),
                    "pid": pid_array.take(pa.array(c[mine])),
                    "rank": pa.array(rank[mine], pa.int64()),
                    "score": pa.array(score[mine].astype(np.float32)),
                },
                schema=schema.RUN,
            )
        )
    return pa.concat_tables(tables)


def search(params: SearchParams, embeddings: str | Path, corpus: str | Path, out: str | Path) -> dict[str, int]:
    """Write runs <out_dir>/<setting>.parquet (schema.RUN) for the three settings. Each
    candidate set (a language, or all pooled) is searched once by every query that needs
    it, reading the passages' vectors in blocks of `block_mb` scores."""
    embed_dir, corpus_dir, out_dir = Path(embeddings), Path(corpus), Path(out)
    qids, qlangs, qvectors = read_embeddings(embed_dir / "queries.parquet")
    passages_path = embed_dir / "passages.parquet"
    pids, plangs = read_ids(passages_path)
    qrels = relevant_pairs(corpus_dir)
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
    plan = setting_blocks(sorted(set(qlangs)), sorted(set(plangs)))
    for setting in plan:
        if setting != "mono" and not parallel:
            logging.info("%s: no query has relevant candidates in two languages, so no %s setting", corpus_dir, setting)
            plan[setting] = []
    searched: dict[str, tuple[np.ndarray, ...]] = {}  # candidate set -> (query row, passage row, rank, score)
    width = block_width(params.get("block_mb", BLOCK_MB))
    for lc in sorted({lc for blocks in plan.values() for _, lc in blocks}):
        langs = sorted({lq for blocks in plan.values() for lq, c in blocks if c == lc})
        rows, columns = np.flatnonzero(np.isin(qlangs, langs)), candidate_rows(plangs, lc)
        query_position, position = np.full(len(qids), -1), np.full(len(pids), -1)
        query_position[rows], position[columns] = np.arange(len(rows)), np.arange(len(columns))
        keep = (query_position[gold_query] >= 0) & (position[gold_passage] >= 0)
        gold = (query_position[gold_query[keep]], position[gold_passage[keep]])
        q, c, rank, score = search_block(
            open_index(embed_dir / f"index-{lc}.faiss"),
            qvectors[rows],
            parquet_blocks(passages_path, columns, width),
            len(columns),
            gold,
            params["top_k"],
        )
        searched[lc] = (rows[q], columns[c], rank, score)
    counts = {}
    for setting, blocks in plan.items():
        run = setting_run(blocks, searched, qlangs, qid_array, pid_array)
        schema.write_table(run, out_dir / f"{setting}.parquet")
        counts[setting] = run.num_rows
    return counts


def evaluate(params: EvaluationParams, run: str | Path, corpus: str | Path, out: str | Path) -> pd.DataFrame:
    """Per-query metrics (per_query.parquet, with each query's item), per-language
    aggregates (by_language.parquet) and macro-averaged rows of the summary contract
    (summary.csv). `params['descriptor']` names the run: corpus, model, strategy, alpha, seed."""
    run_dir, corpus_dir, out_dir = Path(run), Path(corpus), Path(out)
    qrels = relevant_pairs(corpus_dir)
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
        scores = rank_metrics(
            key.to_numpy(), gold["rank"].to_numpy(), params["recall_at"], params["ndcg_at"], params["mrr_at"]
        )
        scores = scores.reset_index()
        scores[["qid", "query_lang", "candidate_lang"]] = scores["query"].str.split("\t", expand=True)
        scores = scores.drop(columns="query")
        scores.insert(0, "item_id", item_of.reindex(scores.qid).to_numpy())
        scores["setting"] = setting
        if setting != "multi":
            scores[RANK_DISTANCE] = np.nan
        per_query.append(scores)
        searched = run.group_by(["query_lang", "candidate_lang"]).aggregate([("qid", "count_distinct")]).to_pandas()
        searched = (
            searched.set_index(["query_lang", "candidate_lang"])["qid_count_distinct"].rename("searched").sort_index()
        )
        grouped = scores.groupby(["query_lang", "candidate_lang"])
        table = searched.to_frame().join(grouped[names + [RANK_DISTANCE]].mean()).join(grouped.size().rename("queries"))
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
