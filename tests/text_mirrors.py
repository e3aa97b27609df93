"""MIRACL and mMARCO mirrors in their published file layouts (the Hugging Face
repositories' relative paths), for any languages: small, with the real formats."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from hybridbatch.corpora.mmarco import NAMES


def write_jsonl_gz(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)


def write_miracl_like(root: Path, languages: list[str], split: str = "dev", shards: int = 2) -> Path:
    """Per language: two topics, qrels (each topic one relevant passage, one judged not),
    and `shards` corpus files of three passages each."""
    for lang in languages:
        topics = root / f"miracl-v1.0-{lang}/topics/topics.miracl-v1.0-{lang}-{split}.tsv"
        topics.parent.mkdir(parents=True, exist_ok=True)
        topics.write_text(f'1\t{lang} frage eins\n2\t{lang} frage "zwei"\n', encoding="utf-8")
        qrels = root / f"miracl-v1.0-{lang}/qrels/qrels.miracl-v1.0-{lang}-{split}.tsv"
        qrels.parent.mkdir(parents=True, exist_ok=True)
        qrels.write_text("1\tQ0\t10#0\t1\n1\tQ0\t10#1\t0\n2\tQ0\t11#0\t1\n")
        for shard in range(shards):
            docs = [
                {"docid": f"{10 + shard}#{i}", "title": f"T{shard}", "text": f"{lang} text {shard} {i}"}
                for i in range(3)
            ]
            write_jsonl_gz(root / f"miracl-corpus-v1.0-{lang}/docs-{shard}.jsonl.gz", docs)
    return root


def write_mmarco_like(
    root: Path, languages: list[str], queries: int = 3, passages: int = 8, triples: list[tuple] | None = None
) -> Path:
    """The collections and training queries of `languages` (shared ids, as mMARCO's
    translations) and the small training triples (qid, positive, negative; by default one
    per query: its own positive, and a negative no query has as its positive)."""
    data = root / "data"
    (data / "google/collections").mkdir(parents=True, exist_ok=True)
    (data / "google/queries/train").mkdir(parents=True, exist_ok=True)
    qids = range(100, 100 + queries)
    for lang in languages:
        (data / f"google/collections/{NAMES[lang]}_collection.tsv").write_text(
            "".join(f"{pid}\t{lang} passage {pid} words\n" for pid in range(passages)), encoding="utf-8"
        )
        (data / f"google/queries/train/{NAMES[lang]}_queries.train.tsv").write_text(
            "".join(f"{qid}\t{lang} query {qid}\n" for qid in qids), encoding="utf-8"
        )
    assert passages > queries + 1, "each query needs its own positive and a negative that is nobody's positive"
    negatives = passages - queries - 1
    triples = triples or [(qid, 1 + n, queries + 1 + n % negatives) for n, qid in enumerate(qids)]
    (data / "triples.train.ids.small.tsv").write_text("".join(f"{q}\t{p}\t{n}\n" for q, p, n in triples))
    return root
