"""Embed + index stage: encode a corpus's test split (its passages in shards, each its own job,
when config `embedding.shards` names the corpus) and build FAISS inner-product indices
(one per candidate language and one pooled)."""

from __future__ import annotations

from pathlib import Path
from typing import NotRequired, TypedDict

import faiss
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from hybridbatch.artifacts import schema
from hybridbatch.artifacts.vectors import POOLED, candidate_rows, embeddings_table, parquet_blocks, read_ids
from hybridbatch.models.encoders import Encoder, ModelEntry
from hybridbatch.models.packed_encoder import PackedEncoder, load_encoder

ROW_GROUP = 65_536  # vectors per Parquet row group: the unit the search reads (100 MB at 384-d)
TRAINING_SAMPLE = 262_144  # vectors an approximate index is trained on (a seeded sample of its candidates)
EXACT = "Flat"  # the exact factory: search streams passages.parquet, so no index file is written


def write_indices(passages_path: Path, factory: str, out_dir: Path) -> list[str]:
    """index-<lang>.faiss for each candidate language and the pooled set, built from the
    stored vectors block by block (trained on a seeded sample of at most TRAINING_SAMPLE);
    none for an exact index. Returns the candidate sets indexed."""
    if factory == EXACT:
        return []
    _, langs = read_ids(passages_path)
    langs = np.asarray(langs)
    dimension = pq.ParquetFile(passages_path).schema_arrow.field("embedding").type.list_size
    written = []
    for lang in sorted(set(langs)) + [POOLED]:
        rows = candidate_rows(langs, lang)
        index = faiss.index_factory(dimension, factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            sample = np.sort(np.random.default_rng(0).choice(rows, min(len(rows), TRAINING_SAMPLE), replace=False))
            index.train(np.concatenate([block for _, block in parquet_blocks(passages_path, sample, ROW_GROUP)()]))
        for _, block in parquet_blocks(passages_path, rows, ROW_GROUP)():
            index.add(block)
        faiss.write_index(index, str(out_dir / f"index-{lang}.faiss"))
        written.append(lang)
    return written


def shard_rows(total: int, shard: int, shards: int) -> slice:
    """Rows of shard `shard` of `shards` near-equal contiguous parts of `total` rows."""
    return slice(total * shard // shards, total * (shard + 1) // shards)


def read_rows(path: Path, table_schema, rows: slice) -> pd.DataFrame:
    """Rows `rows` of a canonical Parquet file, reading only the row groups that hold them."""
    file = pq.ParquetFile(path)
    schema.check_schema(file.schema_arrow, table_schema, path)
    sizes = np.array([file.metadata.row_group(g).num_rows for g in range(file.num_row_groups)], dtype=np.int64)
    ends = sizes.cumsum()
    groups = [g for g in range(len(sizes)) if ends[g] > rows.start and ends[g] - sizes[g] < rows.stop]
    first = int(ends[groups[0]] - sizes[groups[0]]) if groups else 0
    table = file.read_row_groups(groups, columns=table_schema.names) if groups else table_schema.empty_table()
    return table.slice(rows.start - first, rows.stop - rows.start).to_pandas()


def encode_file(
    encoder: Encoder | PackedEncoder,
    path: Path,
    table_schema,
    kind: str,
    params: dict,
    out_path: Path,
    rows: slice | None = None,
) -> int:
    """Encode the texts of a queries or passages file (or `rows` of it) into `out_path`, stored
    as params['dtype']; return the number of texts."""
    frame = read_rows(path, table_schema, rows) if rows else schema.read_parquet(path, table_schema)
    schema.require_nonempty(frame, path, f"rows {rows.start}:{rows.stop}" if rows else "rows")
    vectors = encoder.encode(frame.text.tolist(), kind, params["batch_size"], desc=f"encode {path.stem}")
    schema.write_table(
        embeddings_table(frame.iloc[:, 0].tolist(), frame.lang.tolist(), vectors, params["dtype"]),
        out_path,
        row_group_size=ROW_GROUP,
    )
    return len(frame)


class EmbedParams(TypedDict):
    """The config's `embedding` section (but the shard counts), the models entry, and either
    the index factory (the whole corpus) or which shard this is."""

    batch_size: int
    dtype: str
    model: ModelEntry
    index_factory: NotRequired[str]
    shard: NotRequired[int]
    shards: NotRequired[int]


def embed_shard(params: EmbedParams, model: str | Path, corpus: str | Path, out: str | Path) -> dict:
    """One shard of a corpus's passages (params shard of shards) into out/passages.parquet."""
    corpus_dir, out_dir = Path(corpus), Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = corpus_dir / "passages.parquet"
    rows = shard_rows(pq.read_metadata(path).num_rows, params["shard"], params["shards"])
    count = encode_file(
        load_encoder(model, params["model"]),
        path,
        schema.PASSAGES,
        "passage",
        params,
        out_dir / "passages.parquet",
        rows,
    )
    return {"shard": params["shard"], "passages": count}


def gather_shards(shard_dirs: list[Path], out_path: Path) -> None:
    """Concatenate the shards' passages embeddings, in shard order, row group by row group."""
    files = [pq.ParquetFile(Path(d) / "passages.parquet") for d in shard_dirs]
    groups = (file.read_row_group(group) for file in files for group in range(file.num_row_groups))
    schema.write_batches(groups, out_path, files[0].schema_arrow)


def embed_and_index(
    params: EmbedParams,
    model: str | Path,
    corpus: str | Path,
    shards: list[str | Path],
    out: str | Path,
) -> dict:
    """Write queries/passages embeddings Parquet and (approximate factories) index-<lang>.faiss files into `out`.
    Passages come from `shards` (embed_shard's outputs) when given, else are encoded here."""
    corpus_dir, out_dir = Path(corpus), Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = load_encoder(model, params["model"])
    queries = encode_file(
        encoder, corpus_dir / "queries.parquet", schema.QUERIES, "query", params, out_dir / "queries.parquet"
    )
    if shards:
        gather_shards([Path(d) for d in shards], out_dir / "passages.parquet")
    else:
        encode_file(
            encoder, corpus_dir / "passages.parquet", schema.PASSAGES, "passage", params, out_dir / "passages.parquet"
        )
    indexed = write_indices(out_dir / "passages.parquet", params["index_factory"], out_dir)
    return {
        "queries": queries,
        "passages": pq.read_metadata(out_dir / "passages.parquet").num_rows,
        "shards": len(shards),
        "indices": len(indexed),
    }
