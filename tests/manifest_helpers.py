"""Helpers the tests of several modules share: table."""

import pyarrow as pa

from hybridbatch.artifacts import schema


def table(rows: int) -> pa.Table:
    return pa.table(
        {
            "pid": [f"p{i}" for i in range(rows)],
            "lang": ["en"] * rows,
            "item_id": ["i"] * rows,
            "text": [f"text {i}" for i in range(rows)],
        },
        schema=schema.PASSAGES,
    )
