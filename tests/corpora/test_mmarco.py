"""The tests of `hybridbatch/corpora/mmarco.py`."""

import pandas as pd
import pytest
from corpora_helpers import read
from text_mirrors import write_mmarco_like

from hybridbatch import corpora
from hybridbatch.corpora import prepare
from hybridbatch.pairs import build as pairs


@pytest.fixture
def mmarco_mirror(tmp_path):
    triples = [(100, 1, 5), (100, 1, 6), (101, 2, 7), (102, 3, 4)]
    return write_mmarco_like(tmp_path / "mirror", ["en", "de"], triples=triples)


def test_mmarco_gives_parallel_training_pairs(mmarco_mirror, tmp_path):
    params = {"name": "mm", "source": "mmarco", "hf": {"data": {"repo": "unicamp-dl/mmarco", "revision": "main"}},
              "mirror": str(mmarco_mirror), "languages": ["en", "de"], "max_queries": 2,
              "test_fraction": 0.0, "split_seed": 0}  # fmt: skip
    raw = corpora.download(params, tmp_path / "raw")
    prepare.prepare(params, raw, tmp_path / "out")
    queries = read(tmp_path / "out", "train", "queries")
    assert sorted(queries.qid) == ["de:100", "de:101", "en:100", "en:101"]  # the first 2 queries of the triples
    passages = read(tmp_path / "out", "train", "passages")
    assert sorted(passages.pid[passages.lang == "en"]) == [
        "en:1",
        "en:2",
        "en:5",
        "en:7",
    ]  # each query's first negative
    qrels = read(tmp_path / "out", "train", "qrels")
    judged = qrels[qrels.qid == "de:100"].set_index("pid").relevance.to_dict()
    assert judged == {"de:1": 1, "en:1": 1, "de:5": 0, "en:5": 0}  # relevant, and judged not, in every language
    pairs.build_pairs(
        {"languages": ["en", "de"], "hard_negatives": True, "seed": 0}, tmp_path / "out/train", tmp_path / "pairs"
    )
    built = pd.read_parquet(tmp_path / "pairs" / "pairs.parquet")
    assert {(r.query_lang, r.passage_lang) for r in built.itertuples()} == {
        ("en", "en"),
        ("en", "de"),
        ("de", "en"),
        ("de", "de"),
    }
    assert (
        built.negative_pid == built.passage_lang + ":" + built.item_id.map({"100": "5", "101": "7"})
    ).all()  # the triples' own
    prepare.prepare({**params, "negatives_per_query": 2}, raw, tmp_path / "two")
    assert sorted(read(tmp_path / "two", "train", "passages").pid[lambda p: p.str.startswith("en")]) == [
        "en:1",
        "en:2",
        "en:5",
        "en:6",
        "en:7",
    ]
