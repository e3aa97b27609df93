"""mMARCO (`unicamp-dl/mmarco`): MS MARCO passages and training queries machine-translated
into 13 languages; a training set.

Ids are shared across languages, so a query's `item_id` is its MS MARCO qid and a
query is relevant to its positive passage in every language (cross-lingual pairs
for X-Y batches). The first `max_queries` queries of the small training triples are
kept, with their positive passages and the first `negatives_per_query` (default 1) of
their triples' negatives: BM25-retrieved passages not judged relevant, which the qrels
record with relevance 0 (in every language); the pairs stage takes one per pair as its hard
negative (with none kept, BM25 mines among the positive passages).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hybridbatch.artifacts import schema
from hybridbatch.corpora.formats import SOURCES, CorpusSource, grouped_by_item, streamed
from hybridbatch.fetch.hf_datasets import tsv_rows

NAMES = {
    "ar": "arabic", "de": "german", "en": "english", "es": "spanish", "fr": "french", "hi": "hindi",
    "id": "indonesian", "it": "italian", "ja": "japanese", "nl": "dutch", "pt": "portuguese",
    "ru": "russian", "vi": "vietnamese", "zh": "chinese",
}  # fmt: skip
COLLECTION = "data/google/collections/{name}_collection.tsv"
QUERIES = "data/google/queries/train/{name}_queries.train.tsv"
TRIPLES = "data/triples.train.ids.small.tsv"


def raw_tables(params: dict) -> dict[str, tuple[str, str, list[str]]]:
    unknown = sorted(set(params["languages"]) - set(NAMES))
    if unknown:
        raise ValueError(f"config key corpora.{params.get('name', '<name>')}.languages: mMARCO has no {unknown}")
    tables = {"triples": ("data", "text", [TRIPLES])}
    for lang in params["languages"]:
        tables[f"collection-{lang}"] = ("data", "text", [COLLECTION.format(name=NAMES[lang])])
        tables[f"queries-{lang}"] = ("data", "text", [QUERIES.format(name=NAMES[lang])])
    return tables


def load(
    raw_dir: str | Path, languages: list[str], max_queries: int, negatives_per_query: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    raw_dir = Path(raw_dir)
    positives: dict[str, set[str]] = {}
    negatives: dict[str, list[str]] = {}
    for qid, positive, negative in tsv_rows(raw_dir, "triples", 3):
        if qid not in positives and len(positives) == max_queries:
            continue
        positives.setdefault(qid, set()).add(positive)
        kept = negatives.setdefault(qid, [])
        if len(kept) < negatives_per_query and negative not in kept:
            kept.append(negative)
    passage_ids = set().union(*positives.values(), *negatives.values())
    queries, passages = [], []
    for lang in languages:
        found = [(qid, text) for qid, text in tsv_rows(raw_dir, f"queries-{lang}", 2) if qid in positives]
        queries += [(f"{lang}:{qid}", lang, qid, text) for qid, text in found]
        passages += [
            (f"{lang}:{pid}", lang, f"p{pid}", text)
            for pid, text in tsv_rows(raw_dir, f"collection-{lang}", 2)
            if pid in passage_ids
        ]
    queries = pd.DataFrame(queries, columns=schema.QUERIES.names)
    passages = pd.DataFrame(passages, columns=schema.PASSAGES.names)
    judgments = [(qid, f"p{pid}", 1) for qid, pids in positives.items() for pid in pids]
    judgments += [(qid, f"p{pid}", 0) for qid, pids in negatives.items() for pid in pids if pid not in positives[qid]]
    links = pd.DataFrame(judgments, columns=["item_id", "passage_item", "relevance"])
    qrels = (
        queries[["qid", "item_id"]]
        .merge(links, on="item_id")
        .merge(passages[["pid", "item_id"]].rename(columns={"item_id": "passage_item"}), on="passage_item")
    )
    return queries, passages, qrels[["qid", "pid", "relevance"]]


SOURCES.register("mmarco")(
    CorpusSource(
        download=streamed(raw_tables),
        frames=lambda params, raw_dir: grouped_by_item(
            *load(raw_dir, params["languages"], params["max_queries"], params.get("negatives_per_query", 1))
        ),
    )
)
