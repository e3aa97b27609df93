"""Stored embeddings: Parquet with an id, a language and a fixed-size float32 (or float16) vector."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hybridbatch.artifacts import schema

POOLED = "all"

# blocks (first column, vectors) of a candidate set, read anew at each call
CandidateBlocks = Callable[[], Iterator[tuple[int, np.ndarray]]]


STORED_TYPES = {"float32": pa.float32(), "float16": pa.float16()}


def embeddings_table(ids: list[str], langs: list[str], vectors: np.ndarray, dtype: str = "float32") -> pa.Table:
    """ids, languages and vectors, the vectors stored as float32 or float16."""
    flat = pa.array(vectors.astype(dtype).ravel(), type=STORED_TYPES[dtype])
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "lang": pa.array(langs, pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1]),
        }
    )


def vectors_of(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """The float32 matrix of an embedding column (float16 storage is widened)."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return column.flatten().to_numpy().reshape(len(column), column.type.list_size).astype(np.float32, copy=False)


def read_embeddings(path: str | Path) -> tuple[list[str], list[str], np.ndarray]:
    table = pq.read_table(path)
    for name in ("id", "lang", "embedding"):
        if name not in table.column_names:
            raise schema.SchemaError(f"{path}: missing column {name!r}")
    return table.column("id").to_pylist(), table.column("lang").to_pylist(), vectors_of(table.column("embedding"))


def read_ids(path: str | Path) -> tuple[list[str], list[str]]:
    """The ids and languages of an embeddings file, without its vectors."""
    table = pq.read_table(path, columns=["id", "lang"])
    return table.column("id").to_pylist(), table.column("lang").to_pylist()


def candidate_rows(passage_langs: np.ndarray, lang: str) -> np.ndarray:
    """Rows of the passages embeddings held by index-<lang>.faiss, in index order."""
    return np.arange(len(passage_langs)) if lang == POOLED else np.flatnonzero(passage_langs == lang)


def parquet_blocks(path: Path, rows: np.ndarray, width: int) -> CandidateBlocks:
    """Blocks of the candidates at `rows` (sorted) of an embeddings file, read `width`
    stored rows at a time: the file's vectors never sit in memory together."""

    def blocks() -> Iterator[tuple[int, np.ndarray]]:
        wanted = np.zeros(rows[-1] + 1 if len(rows) else 0, dtype=bool)
        wanted[rows] = True
        start = lo = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=width, columns=["embedding"]):
            keep = wanted[start : start + batch.num_rows]
            start += batch.num_rows
            if keep.any():
                vectors = vectors_of(batch.column(0))[np.flatnonzero(keep)]
                yield lo, vectors
                lo += len(vectors)

    return blocks
