"""Pairs stage: training triplets (query, positive, hard negative) from a corpus's train split."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from . import schema

TOKEN = re.compile(r"\w+", re.UNICODE)


def lexical_hard_negatives(passages: pd.DataFrame, relevant_items: pd.Series, seed: int) -> pd.Series:
    """For each passage, the pid of the passage in the same language sharing the most
    word tokens with it, among passages relevant to none of its items and with other
    text (ties broken at random from `seed`). `relevant_items` maps pid -> item ids."""
    rng = np.random.default_rng(seed)
    negatives = pd.Series(index=passages.pid.values, dtype=object)
    for _, group in passages.groupby("lang", sort=True):
        bag = _incidence([set(TOKEN.findall(text.lower())) for text in group.text])
        overlap = (bag @ bag.T).toarray() + rng.random((len(group), len(group))) * 0.5
        items = _incidence([set(ids) if isinstance(ids, list) else set() for ids in relevant_items.reindex(group.pid)])
        texts = group.text.to_numpy()
        overlap[((items @ items.T).toarray() > 0) | (texts[:, None] == texts[None, :])] = -np.inf
        best = overlap.argmax(axis=1)
        found = np.isfinite(overlap[np.arange(len(group)), best])
        negatives[group.pid.values[found]] = group.pid.to_numpy()[best[found]]
    return negatives


def _incidence(sets: list[set[str]]) -> sparse.csr_matrix:
    """Row i has a 1 in the column of each element of sets[i]."""
    vocab: dict[str, int] = {}
    rows, cols = [], []
    for row, elements in enumerate(sets):
        for element in elements:
            rows.append(row)
            cols.append(vocab.setdefault(element, len(vocab)))
    return sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(sets), max(1, len(vocab))))


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
        links["negative_pid"] = lexical_hard_negatives(passages, relevant_items, params["seed"]).reindex(links.pid).values
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
