"""Helpers the tests of several modules share: read."""

from hybridbatch.artifacts import schema


def read(corpus_dir, split, name):
    """A split's queries, passages or qrels, checked against their schema."""
    table_schema = {"queries": schema.QUERIES, "passages": schema.PASSAGES, "qrels": schema.QRELS}[name]
    return schema.read_parquet(corpus_dir / split / f"{name}.parquet", table_schema)
