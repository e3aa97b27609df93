"""Pairs stage: training triplets (query, positive, hard negative) from a corpus's train split."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from . import schema

TOKEN = re.compile(r"\w+", re.UNICODE)


def lexical_hard_negatives(passages: pd.DataFrame, seed: int) -> pd.Series:
    """For each passage, the pid of the passage of another item in the same language
    sharing the most word tokens (ties broken at random from `seed`)."""
    rng = np.random.default_rng(seed)
    negatives = pd.Series(index=passages.pid.values, dtype=object)
    for _, group in passages.groupby("lang", sort=True):
        if group.item_id.nunique() < 2:
            continue
        vocab: dict[str, int] = {}
        rows, cols = [], []
        for row, text in enumerate(group.text):
            for token in set(TOKEN.findall(text.lower())):
                rows.append(row)
                cols.append(vocab.setdefault(token, len(vocab)))
        bag = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(group), len(vocab)))
        overlap = (bag @ bag.T).toarray() + rng.random((len(group), len(group))) * 0.5
        items = group.item_id.to_numpy()
        overlap[items[:, None] == items[None, :]] = -np.inf
        negatives[group.pid.values] = group.pid.to_numpy()[overlap.argmax(axis=1)]
    return negatives


def build_pairs(params: dict, corpus_dir: str | Path, out_path: str | Path) -> pd.DataFrame:
    """One pair per item and (query language, passage language) of `params['languages']`."""
    corpus_dir = Path(corpus_dir)
    languages = params["languages"]
    queries = schema.read_parquet(corpus_dir / "queries.parquet", schema.QUERIES)
    passages = schema.read_parquet(corpus_dir / "passages.parquet", schema.PASSAGES)
    for frame, name in ((queries, "queries"), (passages, "passages")):
        missing = sorted(set(languages) - set(frame.lang))
        if missing:
            raise schema.SchemaError(f"{corpus_dir / name}.parquet: no rows in trainset languages {missing}")
    queries = queries[queries.lang.isin(languages)]
    passages = passages[passages.lang.isin(languages)].reset_index(drop=True)
    if params["hard_negatives"]:
        negative_pid = lexical_hard_negatives(passages, params["seed"])
        by_pid = passages.set_index("pid")
        passages["negative"] = by_pid.text.reindex(negative_pid.reindex(passages.pid).values).values
        passages["negative_item_id"] = by_pid.item_id.reindex(negative_pid.reindex(passages.pid).values).values
    else:
        passages["negative"] = None
        passages["negative_item_id"] = None
    pairs = queries.merge(passages, on="item_id", suffixes=("_q", "_p"))
    pairs = pd.DataFrame(
        {
            "pair_id": pairs.item_id + ":" + pairs.lang_q + ">" + pairs.lang_p,
            "item_id": pairs.item_id,
            "query_lang": pairs.lang_q,
            "passage_lang": pairs.lang_p,
            "query": pairs.text_q,
            "positive": pairs.text_p,
            "negative": pairs.negative,
            "negative_item_id": pairs.negative_item_id,
        }
    ).sort_values("pair_id", ignore_index=True)
    schema.require_nonempty(pairs, corpus_dir, f"training pairs in languages {languages}")
    schema.write_parquet(pairs, out_path, schema.PAIRS)
    return pairs
