"""Pairs stage: training triplets (query, positive, BM25 hard negative) from a corpus's train split."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from . import schema

TOKEN = re.compile(r"\w+", re.UNICODE)
HARD_NEGATIVE_DEPTH = 20  # BM25 candidates looked at per passage (config trainsets.<name>.hard_negative_depth)


def bm25_hard_negatives(passages: pd.DataFrame, relevant_items: pd.Series, depth: int) -> pd.Series:
    """For each passage in `relevant_items` (pid -> item ids), the passage of its language
    that BM25 (bm25s, Lucene scoring) ranks highest with the passage's distinct words as the query,
    among the top `depth` that share a word with it, are relevant to none of its items and
    have other text. Memory grows with the corpus's tokens, not its square: one sparse
    index per language, queried by the passages that need a negative."""
    import bm25s

    negatives = pd.Series(index=relevant_items.index, dtype=object)
    item_sets = {pid: set(items) for pid, items in relevant_items.items()}
    for lang, group in passages.groupby("lang", sort=True):
        asking = np.flatnonzero(group.pid.isin(item_sets).to_numpy())
        if not len(asking):
            continue
        tokens = [TOKEN.findall(text.lower()) for text in group.text]
        retriever = bm25s.BM25()
        retriever.index(tokens, show_progress=False)
        queries = [sorted(set(tokens[row])) for row in asking]
        found, scores = retriever.retrieve(queries, k=min(depth + 1, len(group)), show_progress=False, n_threads=1)
        pids, texts = group.pid.to_numpy(), group.text.to_numpy()
        for row, candidates, candidate_scores in zip(asking, found, scores):
            mine = item_sets[pids[row]]
            for candidate, score in zip(candidates, candidate_scores):
                if score > 0 and texts[candidate] != texts[row] and not mine & item_sets.get(pids[candidate], set()):
                    negatives[pids[row]] = pids[candidate]
                    break
        logging.info("%s: %d of %d passages have a BM25 hard negative", lang, negatives.reindex(pids[asking]).notna().sum(), len(asking))
    return negatives


def build_pairs(params: dict, corpus_dir: str | Path, out_dir: str | Path) -> dict[str, int]:
    """pairs.parquet: one pair per query and relevant passage (qrels) with both in
    `params['languages']`; qrels.parquet: every relevance judgment between those queries
    and those passages, in any of the languages (what batches and the loss check against)."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    languages = params["languages"]
    queries = schema.read_parquet(corpus_dir / "queries.parquet", schema.QUERIES)
    passages = schema.read_parquet(corpus_dir / "passages.parquet", schema.PASSAGES)
    qrels = schema.read_parquet(corpus_dir / "qrels.parquet", schema.QRELS)
    for frame, name in ((queries, "queries"), (passages, "passages")):
        missing = sorted(set(languages) - set(frame.lang))
        if missing:
            raise schema.SchemaError(f"{corpus_dir / name}.parquet: no rows in trainset languages {missing}")
    queries = queries[queries.lang.isin(languages)]
    passages = passages[passages.lang.isin(languages)].reset_index(drop=True)
    links = qrels[qrels.relevance > 0].merge(queries, on="qid").merge(passages, on="pid", suffixes=("_q", "_p"))
    schema.require_nonempty(links, corpus_dir, f"training pairs in languages {languages}")
    links["negative_pid"] = None
    if params["hard_negatives"]:
        relevant_items = links.groupby("pid").item_id_q.apply(lambda ids: sorted(set(ids)))
        links["negative_pid"] = bm25_hard_negatives(passages, relevant_items, params.get("hard_negative_depth", HARD_NEGATIVE_DEPTH)).reindex(links.pid).values
        relevant = pd.MultiIndex.from_frame(links[["qid", "pid"]])
        clash = pd.MultiIndex.from_arrays([links.qid, links.negative_pid]).isin(relevant)
        if clash.any():  # the miner excludes its items' passages; relevance has the last word
            logging.warning("%d hard negatives are relevant to their query and were dropped", int(clash.sum()))
            links.loc[clash, "negative_pid"] = None
    links["negative"] = passages.set_index("pid").text.reindex(links.negative_pid).values
    pairs = pd.DataFrame(
        {
            "pair_id": links.qid + ">" + links.pid,
            "item_id": links.item_id_q,
            "qid": links.qid,
            "pid": links.pid,
            "negative_pid": links.negative_pid,
            "query_lang": links.lang_q,
            "passage_lang": links.lang_p,
            "query": links.text_q,
            "positive": links.text_p,
            "negative": links.negative,
        }
    ).sort_values("pair_id", ignore_index=True)
    judged = links[["qid", "pid"]].assign(relevance=1).sort_values(["qid", "pid"], ignore_index=True)
    schema.write_parquet(pairs, out_dir / "pairs.parquet", schema.PAIRS)
    schema.write_parquet(judged, out_dir / "qrels.parquet", schema.QRELS)
    return {"pairs": len(pairs), "qrels": len(judged), "hard_negatives": int(pairs.negative_pid.notna().sum())}
