"""The tests of `hybridbatch/corpora/miracl.py`."""

import json

from corpora_helpers import read
from sources_helpers import miracl_params

from hybridbatch import corpora
from hybridbatch.corpora import prepare


def test_miracl_streams_from_the_mirror_into_canonical_parquet(miracl_mirror, tmp_path):
    raw = corpora.download(miracl_params(miracl_mirror), tmp_path / "raw")
    provenance = json.loads((raw / "source.json").read_text())
    assert provenance["corpus-de"]["files"] == [
        "miracl-corpus-v1.0-de/docs-0.jsonl.gz",
        "miracl-corpus-v1.0-de/docs-1.jsonl.gz",
    ]
    counts = prepare.prepare(miracl_params(miracl_mirror), raw, tmp_path / "out")
    assert counts == {
        "train": {"queries": 0, "passages": 0, "qrels": 0, "items": 0, "groups": 0},
        "test": {"queries": 4, "passages": 12, "qrels": 4, "items": 4, "groups": 4},
    }
    passages = read(tmp_path / "out", "test", "passages").set_index("pid")
    assert passages.loc["sw:11#2", "text"] == "T1 sw text 1 2" and passages.loc["sw:11#2", "lang"] == "sw"
    qrels = read(tmp_path / "out", "test", "qrels")
    assert sorted(qrels.pid[qrels.qid == "de:1"]) == ["de:10#0"]  # the relevance-0 judgement is dropped
    assert read(tmp_path / "out", "test", "queries").set_index("qid").loc["de:2", "text"] == 'de frage "zwei"'
