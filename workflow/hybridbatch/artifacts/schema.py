"""Canonical Parquet schemas (every stage reads and writes these) and checked, atomic Parquet I/O."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from hybridbatch.artifacts.hashing import atomic_hashed

PASSAGES = pa.schema([("pid", pa.string()), ("lang", pa.string()), ("item_id", pa.string()), ("text", pa.string())])
QUERIES = pa.schema([("qid", pa.string()), ("lang", pa.string()), ("item_id", pa.string()), ("text", pa.string())])
# Image-text corpora: captions are queries (with their index among the image's captions
# in that language: 0 is the `first` protocol's caption); images are the candidates.
CAPTIONS = pa.schema(list(QUERIES) + [("caption", pa.int32())])
IMAGES = pa.schema([("pid", pa.string()), ("item_id", pa.string()), ("path", pa.string()), ("sha256", pa.string())])
QRELS = pa.schema([("qid", pa.string()), ("pid", pa.string()), ("relevance", pa.int32())])
# A corpus's items with their near-duplicate group (the unit of every split) and split.
GROUPS = pa.schema([("item_id", pa.string()), ("group", pa.string()), ("split", pa.string())])
# A training pair: a query, its relevant passage (pid) and an optional hard negative
# (negative_pid, null when none). qid/pid/negative_pid let anyone check a batch against
# the corpus qrels without this package.
PAIRS = pa.schema(
    [
        ("pair_id", pa.string()),
        ("item_id", pa.string()),
        ("qid", pa.string()),
        ("pid", pa.string()),
        ("negative_pid", pa.string()),
        ("query_lang", pa.string()),
        ("passage_lang", pa.string()),
        ("query", pa.string()),
        ("positive", pa.string()),
        ("negative", pa.string()),
    ]
)
BATCHES = pa.schema([("batch_id", pa.int64()), ("epoch", pa.int32()), ("batch_type", pa.string())] + list(PAIRS))
RUN = pa.schema(
    [
        ("qid", pa.string()),
        ("query_lang", pa.string()),
        ("candidate_lang", pa.string()),
        ("pid", pa.string()),
        ("rank", pa.int64()),
        ("score", pa.float32()),
    ]
)


class SchemaError(ValueError):
    """A Parquet file does not hold the columns its stage promises."""


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike, schema: pa.Schema) -> None:
    """Write `frame` with exactly `schema`'s columns, atomically (temporary file, then rename)."""
    path = Path(path)
    missing = [name for name in schema.names if name not in frame.columns]
    if missing:
        raise SchemaError(f"{path}: missing columns {missing}")
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    write_table(table, path)


def write_table(table: pa.Table, path: str | os.PathLike, **options) -> None:
    """Write atomically (a temporary file renamed into place), hashed on the way (hashing.py);
    options go to pq.write_table."""
    with atomic_hashed(path) as sink:
        pq.write_table(table, sink, **options)


def write_batches(batches: Iterable[pa.Table], path: str | os.PathLike, schema: pa.Schema) -> int:
    """Stream tables of `schema` into one Parquet file, atomically; returns the row count."""
    rows = 0
    with atomic_hashed(path) as sink, pq.ParquetWriter(sink, schema) as writer:
        for table in batches:
            writer.write_table(table.cast(schema))
            rows += table.num_rows
    return rows


def read_table(path: str | os.PathLike, schema: pa.Schema) -> pa.Table:
    """Read a Parquet file as `schema`'s columns, naming the file in any error."""
    path = Path(path)
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as error:
        raise SchemaError(f"{path}: not a readable Parquet file ({error})") from error
    check_schema(table.schema, schema, path)
    return table.select(schema.names).cast(schema)


def read_parquet(path: str | os.PathLike, schema: pa.Schema) -> pd.DataFrame:
    return read_table(path, schema).to_pandas()


def check_schema(actual: pa.Schema, expected: pa.Schema, path: str | os.PathLike) -> None:
    for field in expected:
        if field.name not in actual.names:
            raise SchemaError(f"{path}: missing column {field.name!r} (has {actual.names})")
        found = actual.field(field.name).type
        compatible = pa.types.is_null(found) or (_is_text(found) and _is_text(field.type))
        if found != field.type and not compatible:
            raise SchemaError(f"{path}: column {field.name!r} is {found}, expected {field.type}")


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind)


def require_nonempty(frame: pd.DataFrame, path: str | os.PathLike, what: str) -> pd.DataFrame:
    if frame.empty:
        raise SchemaError(f"{path}: no {what}")
    return frame
