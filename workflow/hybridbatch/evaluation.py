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
from typing import Iterator

import faiss
import numpy as np
import pandas as pd
import pyarrow as pa

from . import schema
from .layout import SETTINGS, SUMMARY_COLUMNS
from .vectors import POOLED, CandidateBlocks, candidate_rows, parquet_blocks, read_embeddings, read_ids
from .metrics import metric_names, rank_metrics

QUERY_CHUNK = 128
BLOCK_MB = 64  # default size of one block of query x candidate scores


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
        keep = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= wanted))
        part = np.nonzero(keep)[1].reshape(len(scores), k)
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    columns = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(scores, columns, axis=1), columns


def block_width(block_mb: float, rows: int = QUERY_CHUNK) -> int:
    """Candidates per block so that one block of rows x candidates float32 scores fits block_mb."""
    return max(1, int(block_mb * 2**20 // (4 * rows)))


def query_chunks(queries: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    return ((start, queries[start : start + QUERY_CHUNK]) for start in range(0, len(queries), QUERY_CHUNK))


def golds_by_chunk(rows: np.ndarray) -> dict[int, np.ndarray]:
    """Positions of the gold pairs of each query chunk, by chunk number."""
    chunk = rows // QUERY_CHUNK
    order = np.argsort(chunk, kind="stable")
    numbers, starts = np.unique(chunk[order], return_index=True)
    return {int(n): part for n, part in zip(numbers, np.split(order, starts[1:]))}


def merge_top_k(scores: np.ndarray, columns: np.ndarray, more_scores: np.ndarray, more_columns: np.ndarray, k: int):
    """The k best of two lists per row, best first (ties: the earlier column)."""
    merged_scores, merged_columns = np.hstack([scores, more_scores]), np.hstack([columns, more_columns])
    order = np.lexsort((merged_columns, -merged_scores), axis=1)[:, :k]
    return np.take_along_axis(merged_scores, order, axis=1), np.take_along_axis(merged_columns, order, axis=1)


def streamed_search(queries: np.ndarray, blocks: CandidateBlocks, k: int | None, gold: tuple[np.ndarray, np.ndarray]
                    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """One pass over the candidate blocks: the exact top-k of every query (None when k is
    None), merged block by block (ties: the earlier candidate, as top_k_exact over all of
    them), and the scores of the gold (row, column) pairs read off the same score blocks."""
    top = [(np.empty((len(chunk), 0), np.float32), np.empty((len(chunk), 0), np.int64)) for _, chunk in query_chunks(queries)]
    gold_scores = np.full(len(gold[0]), np.nan, np.float32)  # NaN until its block is scored
    by_chunk = golds_by_chunk(gold[0])
    for lo, block in blocks():
        for number, (start, chunk) in enumerate(query_chunks(queries)):
            mine = by_chunk.get(number, np.empty(0, np.int64))
            here = mine[(gold[1][mine] >= lo) & (gold[1][mine] < lo + len(block))]
            if k is None and not len(here):
                continue
            scores = chunk @ block.T
            gold_scores[here] = scores[gold[0][here] - start, gold[1][here] - lo]
            if k is not None:
                block_scores, block_columns = top_k_exact(scores, min(k, len(block)))
                top[number] = merge_top_k(*top[number], block_scores, block_columns + lo, k)
    if k is None:
        return None, None, gold_scores
    return np.vstack([s for s, _ in top]), np.vstack([c for _, c in top]), gold_scores


def ranks_beyond(queries: np.ndarray, blocks: CandidateBlocks, gold: tuple[np.ndarray, np.ndarray],
                 gold_scores: np.ndarray, listed: np.ndarray) -> np.ndarray:
    """Rank of each gold candidate that its query's list `listed` (returned columns, -1
    padded) misses: the list first, then every other candidate in exact-score order (ties:
    earlier first). Counted over the same score blocks as streamed_search."""
    rows, columns = gold
    ahead = np.zeros(len(rows), np.int64)  # candidates before the gold in exact order
    ahead_listed = np.zeros(len(rows), np.int64)  # of those, the ones in the list
    by_chunk = golds_by_chunk(rows)
    for lo, block in blocks():
        position = np.arange(lo, lo + len(block))
        for number, (start, chunk) in enumerate(query_chunks(queries)):
            here = by_chunk.get(number, [])
            if not len(here):
                continue
            scores, g = (chunk @ block.T)[rows[here] - start], gold_scores[here, None]
            before = (scores > g) | ((scores == g) & (position < columns[here, None]))
            ahead[here] += before.sum(axis=1)
            in_block = (listed[here] >= lo) & (listed[here] < lo + len(block))
            listed_before = np.take_along_axis(before, np.where(in_block, listed[here] - lo, 0), axis=1)
            ahead_listed[here] += (listed_before & in_block).sum(axis=1)
    return (listed >= 0).sum(axis=1) + ahead + 1 - ahead_listed


def search_block(index: faiss.Index | None, queries: np.ndarray, blocks: CandidateBlocks, candidates: int,
                 gold: tuple[np.ndarray, np.ndarray], top_k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-k of every query plus every gold candidate beyond the top-k with its rank, in
    bounded memory: scores exist one block of QUERY_CHUNK queries x one candidate block at
    a time, and the candidates are read block by block, once for the lists (exact search,
    `index` None, merges the blocks' top-k; an approximate index returns its own lists)
    and once more when a gold candidate is beyond its list. `gold` is (query row,
    candidate column) of every relevant candidate. Returns (query row, candidate column,
    rank, score) arrays, by row and rank."""
    k = min(top_k, candidates)
    scores, columns, gold_scores = streamed_search(queries, blocks, None if index else k, gold)
    if index is not None:
        scores, columns = index.search(queries, k)
    returned = columns >= 0  # FAISS pads a short list with -1
    ranks = np.cumsum(returned, axis=1)
    rows = np.broadcast_to(np.arange(len(queries))[:, None], columns.shape)
    parts = [(rows[returned], columns[returned], ranks[returned], scores[returned])]
    outside = ~(columns[gold[0]] == gold[1][:, None]).any(axis=1)
    if outside.any():
        missed = (gold[0][outside], gold[1][outside])
        rank = ranks_beyond(queries, blocks, missed, gold_scores[outside], columns[missed[0]])
        parts.append((missed[0], missed[1], rank, gold_scores[outside]))
    q, c, rank, score = (np.concatenate(values) for values in zip(*parts))
    order = np.lexsort((rank, q))
    return q[order], c[order], rank[order], score[order]


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


def search(params: dict, embed_dir: str | Path, corpus_dir: str | Path, out_dir: str | Path) -> dict[str, int]:
    """Write runs <out_dir>/<setting>.parquet (schema.RUN) for the three settings. Each
    candidate set (a language, or all pooled) is searched once by every query that needs
    it, reading the passages' vectors in blocks of `block_mb` scores."""
    embed_dir, corpus_dir, out_dir = Path(embed_dir), Path(corpus_dir), Path(out_dir)
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
        q, c, rank, score = search_block(open_index(embed_dir / f"index-{lc}.faiss"), qvectors[rows],
                                         parquet_blocks(passages_path, columns, width), len(columns), gold, params["top_k"])
        searched[lc] = (rows[q], columns[c], rank, score)
    counts = {}
    for setting, blocks in plan.items():
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
        run = pa.concat_tables(tables)
        schema.write_table(run, out_dir / f"{setting}.parquet")
        counts[setting] = run.num_rows
    return counts


def evaluate(params: dict, run_dir: str | Path, corpus_dir: str | Path, out_dir: str | Path) -> pd.DataFrame:
    """Per-query metrics (per_query.parquet, with each query's item), per-language
    aggregates (by_language.parquet) and macro-averaged rows of the summary contract
    (summary.csv). `params['descriptor']` names the run: corpus, model, strategy, alpha, seed."""
    run_dir, corpus_dir, out_dir = Path(run_dir), Path(corpus_dir), Path(out_dir)
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
