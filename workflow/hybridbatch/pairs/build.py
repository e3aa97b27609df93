"""Pairs stage: training triplets (query, positive, hard negative) from a corpus's train split;
the hard negative is a passage judged not relevant to the query where the corpus has one
(mMARCO), else BM25's best passage of another item."""

from __future__ import annotations

import logging
from collections.abc import Collection
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import pandas as pd

from hybridbatch.artifacts import schema
from hybridbatch.pairs import bm25

HARD_NEGATIVE_DEPTH = 20  # BM25 candidates looked at per passage (trainsets.<name>.hard_negative_depth)
HARD_NEGATIVE_POSTINGS = 10_000  # postings a passage's query may read (trainsets.<name>.hard_negative_postings)


def bm25_hard_negatives(
    passages: pd.DataFrame, relevant_items: pd.Series, depth: int, postings: int, asking: Collection[str] | None = None
) -> pd.Series:
    """For each passage in `asking` (default: every passage in `relevant_items`, pid -> the
    items it is relevant to), the passage of its language that BM25 ranks highest for the
    passage's own words (pruned to `postings`, hybridbatch.pairs.bm25), among the top `depth` that
    share a word with it, are relevant to none of its items and have other text. One
    sparse index per language; no passage x passage matrix."""
    asking = set(relevant_items.index if asking is None else asking)
    negatives = pd.Series(index=sorted(asking), dtype=object)
    item_sets = {pid: set(items) for pid, items in relevant_items.items()}
    for lang, group in passages.groupby("lang", sort=True):
        asking_rows = np.flatnonzero(group.pid.isin(asking).to_numpy())
        if not len(asking_rows):
            continue
        pids, texts = group.pid.to_numpy(), group.text.to_numpy()
        index = bm25.index_texts(texts)
        for row, candidates, _ in bm25.top_candidates(index, asking_rows, depth + 1, postings):
            mine = item_sets[pids[row]]
            for candidate in candidates:
                if texts[candidate] != texts[row] and not mine & item_sets.get(pids[candidate], set()):
                    negatives[pids[row]] = pids[candidate]
                    break
        logging.info(
            "%s: %d of %d passages have a BM25 hard negative",
            lang,
            negatives.reindex(pids[asking_rows]).notna().sum(),
            len(asking_rows),
        )
    return negatives


def judged_negatives(links: pd.DataFrame, qrels: pd.DataFrame, passages: pd.DataFrame) -> pd.Series:
    """For each link (a query and its relevant passage), the first (by pid) passage judged
    not relevant to the query (relevance 0 in the corpus qrels, as mMARCO's training
    triples give) in the relevant passage's language, judged relevant by no other qrel and
    with other text than the relevant passage; missing where there is none."""
    relevant = pd.MultiIndex.from_frame(qrels.loc[qrels.relevance > 0, ["qid", "pid"]])
    judged = qrels[(qrels.relevance <= 0) & ~pd.MultiIndex.from_frame(qrels[["qid", "pid"]]).isin(relevant)]
    text_of = pd.Series(pd.factorize(passages.text)[0], index=passages.pid)  # same text, same code
    judged = (
        judged[["qid", "pid"]]
        .merge(passages[["pid", "lang"]], on="pid")
        .assign(text=lambda j: text_of[j.pid].to_numpy())
    )
    offered = (
        links[["qid", "lang_p"]]
        .assign(text_p=text_of[links.pid].to_numpy())
        .reset_index()
        .merge(judged, left_on=["qid", "lang_p"], right_on=["qid", "lang"])
    )
    first = offered[offered.text != offered.text_p].groupby("index").pid.min()
    return first.reindex(links.index)


class PairsParams(TypedDict):
    """A trainset entry of the config (`trainsets.<name>`)."""

    corpus: str
    languages: list[str]
    hard_negatives: bool
    seed: int
    hard_negative_depth: NotRequired[int]
    hard_negative_postings: NotRequired[int]


def build_pairs(params: PairsParams, corpus: str | Path, out: str | Path) -> dict[str, int]:
    """pairs.parquet: one pair per query and relevant passage (qrels) with both in
    `params['languages']`; qrels.parquet: every relevance judgment between those queries
    and those passages, in any of the languages (what batches and the loss check against)."""
    corpus_dir, out_dir = Path(corpus), Path(out)
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
        links["negative_pid"] = judged_negatives(links, qrels, passages)
        unjudged = links[links.negative_pid.isna()]
        relevant_items = links.groupby("pid").item_id_q.apply(lambda ids: sorted(set(ids)))
        depth = params.get("hard_negative_depth", HARD_NEGATIVE_DEPTH)
        postings = params.get("hard_negative_postings", HARD_NEGATIVE_POSTINGS)
        mined = bm25_hard_negatives(passages, relevant_items, depth, postings, asking=unjudged.pid.unique())
        links.loc[unjudged.index, "negative_pid"] = mined.reindex(unjudged.pid).to_numpy()
        logging.info(
            "hard negatives: %d judged, %d BM25, %d none",
            len(links) - len(unjudged),
            int(links.loc[unjudged.index, "negative_pid"].notna().sum()),
            int(links.negative_pid.isna().sum()),
        )
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
