"""MIRACL (dev): topics and qrels from `miracl/miracl`, passages from `miracl/miracl-corpus`.

Monolingual, evaluation only: a query's relevant passages are in its own language.
Passage text is "<title> <text>"; judged non-relevant qrels (relevance 0) are dropped,
which leaves every metric with binary gains unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hybridbatch.artifacts import schema
from hybridbatch.corpora.formats import SOURCES, CorpusSource, streamed, write_split
from hybridbatch.fetch.hf_datasets import shards, tsv_rows

TOPICS = "miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv"
QRELS = "miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv"
CORPUS = "miracl-corpus-v1.0-{lang}/docs-*.jsonl.gz"


def raw_tables(params: dict) -> dict[str, tuple[str, str, list[str]]]:
    """Raw table name -> (hf repository role, datasets builder, file patterns)."""
    tables = {}
    for lang in params["languages"]:
        names = {"lang": lang, "split": params["split"]}
        tables[f"topics-{lang}"] = ("topics", "text", [TOPICS.format(**names)])
        tables[f"qrels-{lang}"] = ("topics", "text", [QRELS.format(**names)])
        tables[f"corpus-{lang}"] = ("corpus", "json", [CORPUS.format(**names)])
    return tables


def queries_and_qrels(raw_dir: str | Path, languages: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    raw_dir = Path(raw_dir)
    queries, qrels = [], []
    for lang in languages:
        topics = {qid: text for qid, text in tsv_rows(raw_dir, f"topics-{lang}", 2)}
        queries += [(f"{lang}:{qid}", lang, f"{lang}:{qid}", text) for qid, text in topics.items()]
        for qid, _, docid, relevance in tsv_rows(raw_dir, f"qrels-{lang}", 4):
            if qid not in topics:
                raise schema.SchemaError(f"{raw_dir / f'qrels-{lang}'}: query {qid} has no topic")
            if int(relevance) > 0:
                qrels.append((f"{lang}:{qid}", f"{lang}:{docid}", int(relevance)))
    return pd.DataFrame(queries, columns=schema.QUERIES.names), pd.DataFrame(qrels, columns=schema.QRELS.names)


def passage_batches(raw_dir: str | Path, languages: list[str]) -> Iterator[pa.Table]:
    """Canonical passages, one raw shard at a time."""
    raw_dir = Path(raw_dir)
    for lang in languages:
        for shard in shards(raw_dir, f"corpus-{lang}"):
            table = pq.read_table(shard, columns=["docid", "title", "text"])
            pid = pc.binary_join_element_wise(pa.scalar(lang), table["docid"], ":")
            text = pc.binary_join_element_wise(table["title"], table["text"], " ")
            yield pa.table([pid, pa.array([lang] * len(table)), pid, text], schema=schema.PASSAGES)


def write_splits(params: dict, raw_dir: Path, out_dir: Path) -> dict[str, dict[str, int]]:
    """Evaluation only: everything is the test split, passages streamed shard by shard."""
    queries, qrels = queries_and_qrels(raw_dir, params["languages"])
    schema.require_nonempty(queries, raw_dir, "queries")
    return {
        "train": write_split(out_dir / "train", queries.iloc[:0], [], qrels.iloc[:0]),
        "test": write_split(out_dir / "test", queries, passage_batches(raw_dir, params["languages"]), qrels),
    }


SOURCES.register("miracl")(CorpusSource(download=streamed(raw_tables), write_splits=write_splits))
