"""Embed + index stage: encode a corpus's test split, build FAISS inner-product indices
(one per candidate language and one pooled), and search them."""

from __future__ import annotations

import json
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from . import schema
from .encoders import Encoder

POOLED = "all"


def embeddings_table(ids: list[str], langs: list[str], vectors: np.ndarray) -> pa.Table:
    flat = pa.array(vectors.astype(np.float32).ravel(), type=pa.float32())
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "lang": pa.array(langs, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
        }
    )


def read_embeddings(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    table = pq.read_table(path)
    for name in ("id", "lang", "embedding"):
        if name not in table.column_names:
            raise schema.SchemaError(f"{path}: missing column {name!r}")
    column = table.column("embedding").combine_chunks()
    vectors = column.flatten().to_numpy().reshape(len(table), column.type.list_size)
    return table.column("id").to_pylist(), table.column("lang").to_pylist(), vectors


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


def candidate_rows(passage_langs: np.ndarray, lang: str) -> np.ndarray:
    """Rows of the passages embeddings held by index-<lang>.faiss, in index order."""
    return np.arange(len(passage_langs)) if lang == POOLED else np.flatnonzero(passage_langs == lang)
