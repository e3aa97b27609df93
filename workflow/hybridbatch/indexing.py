"""Embed + index stage: encode a corpus's test split and build FAISS inner-product indices
(one per candidate language and one pooled)."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np

from . import schema
from .encoders import Encoder
from .vectors import POOLED, candidate_rows, embeddings_table

ROW_GROUP = 65_536  # vectors per Parquet row group: the unit the search reads (100 MB at 384-d)


def build_index(vectors: np.ndarray, factory: str) -> faiss.Index:
    index = faiss.index_factory(vectors.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    if not index.is_trained:
        index.train(vectors)
    index.add(vectors)
    return index


def encode_file(encoder: Encoder, path: Path, table_schema, kind: str, params: dict, out_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Encode the texts of a queries or passages file into `out_path` (as params['dtype']);
    return (langs, vectors as stored, in float32)."""
    frame = schema.require_nonempty(schema.read_parquet(path, table_schema), path, "rows")
    vectors = encoder.encode(frame.text.tolist(), kind, params["batch_size"], desc=f"encode {path.stem}")
    vectors = vectors.astype(params["dtype"]).astype(np.float32)  # the index holds what the file holds
    schema.write_table(embeddings_table(frame.iloc[:, 0].tolist(), frame.lang.tolist(), vectors, params["dtype"]), out_path,
                       row_group_size=ROW_GROUP)
    return frame.lang.to_numpy(), vectors


def embed_and_index(params: dict, model_dir: str | Path, corpus_dir: str | Path, out_dir: str | Path) -> dict:
    """Write queries/passages embeddings Parquet and index-<lang>.faiss files into `out_dir`."""
    corpus_dir, out_dir = Path(corpus_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = Encoder(model_dir, params["model"])
    queries, _ = encode_file(encoder, corpus_dir / "queries.parquet", schema.QUERIES, "query", params, out_dir / "queries.parquet")
    langs, vectors = encode_file(encoder, corpus_dir / "passages.parquet", schema.PASSAGES, "passage", params, out_dir / "passages.parquet")
    for lang in sorted(set(langs)) + [POOLED]:
        rows = candidate_rows(langs, lang)
        faiss.write_index(build_index(vectors[rows], params["index_factory"]), str(out_dir / f"index-{lang}.faiss"))
    return {"queries": len(queries), "passages": len(langs)}
