"""The tests of `hybridbatch/fetch/hf_datasets.py`."""

import pytest
from sources_helpers import miracl_params

from hybridbatch import corpora
from hybridbatch.artifacts import schema
from hybridbatch.corpora import prepare
from hybridbatch.fetch.download import ChecksumError, DownloadError
from hybridbatch.fetch.hf_datasets import read_rows, stream_tables


def test_streaming_writes_bounded_shards(miracl_mirror, tmp_path):
    tables = {"corpus": ("corpus", "json", ["miracl-corpus-v1.0-de/docs-*.jsonl.gz"])}
    raw = stream_tables(tables, {}, str(miracl_mirror), {}, tmp_path / "raw", "corpora.x.mirror", shard_rows=4)
    assert [len(t) for t in read_rows(raw, "corpus")] == [4, 2]


def test_miracl_mirror_pins_and_offline_errors(miracl_mirror, tmp_path):
    pinned = {"miracl-corpus-v1.0-de/docs-1.jsonl.gz": "0" * 64}
    with pytest.raises(ChecksumError, match=r"docs-1.jsonl.gz: sha256 mismatch, expected 0{64}"):
        corpora.download(miracl_params(miracl_mirror, sha256=pinned), tmp_path / "raw")
    with pytest.raises(DownloadError, match="no mirror is set .* set corpora.miracl.mirror"):
        corpora.download(miracl_params(None), tmp_path / "raw2")
    (miracl_mirror / "miracl-corpus-v1.0-sw/docs-0.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(DownloadError, match="raw3/corpus-sw: the mirrored files could not be read"):
        corpora.download(miracl_params(miracl_mirror), tmp_path / "raw3")


def test_miracl_malformed_qrels_are_named(miracl_mirror, tmp_path):
    (miracl_mirror / "miracl-v1.0-sw/qrels/qrels.miracl-v1.0-sw-dev.tsv").write_text("1 Q0 10#0 1\n")
    raw = corpora.download(miracl_params(miracl_mirror), tmp_path / "raw")
    with pytest.raises(schema.SchemaError, match="qrels-sw: line 1 has 1 tab-separated fields, not 4"):
        prepare.prepare(miracl_params(miracl_mirror), raw, tmp_path / "out")
