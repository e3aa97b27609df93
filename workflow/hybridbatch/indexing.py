"""Embed + index stage: encode a corpus's test split and build FAISS inner-product indices
(one per candidate language and one pooled)."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np

from . import schema
from .encoders import Encoder
from .vectors import POOLED, candidate_rows, embeddings_table, read_embeddings


def build_index(vectors: np.ndarray, factory: str) -> faiss.Index:
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    return index


def embed_and_index(params: dict, model_dir: str | Path, corpus_dir: str | Path, out_dir: str | Path) -> dict:
    """Write queries/passages embeddings Parquet and index-<lang>.faiss files into `out_dir`."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = Encoder(model_dir, params["model"])
    counts = {}
    for kind, table_schema in (("queries", schema.QUERIES), ("passages", schema.PASSAGES)):
        path = corpus_dir / f"{kind}.parquet"
        frame = schema.require_nonempty(schema.read_parquet(path, table_schema), path, kind)
        ids = frame.iloc[:, 0].tolist()
        kind_name = "query" if kind == "queries" else "passage"
        vectors = encoder.encode(frame.text.tolist(), kind_name, params["batch_size"], desc=f"encode {kind}")
        schema.write_table(embeddings_table(ids, frame.lang.tolist(), vectors), out_dir / f"{kind}.parquet")
        counts[kind] = len(ids)
    _, langs, vectors = read_embeddings(out_dir / "passages.parquet")
    langs = np.array(langs)
    for lang in sorted(set(langs)) + [POOLED]:
        rows = candidate_rows(langs, lang)
        faiss.write_index(build_index(vectors[rows], params["index_factory"]), str(out_dir / f"index-{lang}.faiss"))
    (out_dir / "counts.json").write_text(json.dumps(counts, sort_keys=True))
    return counts
