"""The tests of `hybridbatch/corpora/lareqa.py`."""

import pytest
from lareqa_helpers import SHARED, corpus_params, write_fixture

from hybridbatch.artifacts import schema
from hybridbatch.corpora import download, lareqa, prepare
from hybridbatch.fetch.download import ChecksumError

CANDIDATES = {
    "ar": 1222,
    "de": 1276,
    "el": 1234,
    "en": 1180,
    "es": 1215,
    "hi": 1244,
    "ru": 1219,
    "th": 852,
    "tr": 1167,
    "vi": 1209,
    "zh": 1196,
}


@pytest.fixture
def fixture_dir(tmp_path):
    # en: 3 sentences; "q1" answers in sentence 2, "q2" in sentence 0. de: 2 sentences, only q1.
    write_fixture(tmp_path, "en", ["Aa aa.", "Bb bb bb.", "Cc."], {"q1": 7, "q2": 0})
    write_fixture(tmp_path, "de", ["Dd dd dd dd.", "Ee."], {"q1": 13})
    return tmp_path


def test_gold_is_the_sentence_containing_the_answer(fixture_dir):
    queries, passages, qrels = lareqa.load(fixture_dir, ["en", "de"])
    assert len(passages) == 3 + 2 + 2 + 2
    relevant = qrels.groupby("qid").pid.apply(sorted).to_dict()
    assert relevant == {
        "en:q1": ["de:0-0-1", "en:0-0-1"],
        "en:q2": ["en:0-0-0"],
        "de:q1": ["de:0-0-1", "en:0-0-1"],
    }
    assert set(queries.item_id) == {"q1", "q2"}


def test_missing_language_file_and_bad_json_are_named(fixture_dir):
    with pytest.raises(schema.SchemaError, match="fr.json: missing"):
        lareqa.load(fixture_dir, ["en", "fr"])
    (fixture_dir / "de.json").write_text("{")
    with pytest.raises(schema.SchemaError, match="de.json: not a LAReQA"):
        lareqa.load(fixture_dir, ["de"])


def test_mirror_download_checks_hashes_and_split_is_by_article(fixture_dir, tmp_path_factory):
    params = corpus_params(fixture_dir, ["en", "de"])
    out = tmp_path_factory.mktemp("corpus")
    download(params, out / "raw")
    counts = prepare.prepare(params, out / "raw", out)
    articles = {}
    for split in prepare.SPLITS:
        passages = schema.read_parquet(out / split / "passages.parquet", schema.PASSAGES)
        articles[split] = set(passages.item_id.str.split("-").str[0])
    assert articles["train"] and articles["test"] and not articles["train"] & articles["test"]
    assert counts["train"]["passages"] + counts["test"]["passages"] == 9

    bad = dict(params, sha256={**params["sha256"], "de": "0" * 64})
    with pytest.raises(ChecksumError, match=r"de.json: sha256 mismatch, expected 0{64}, got [0-9a-f]{64}"):
        download(bad, tmp_path_factory.mktemp("bad"))


@pytest.mark.skipif(not SHARED.is_dir(), reason="the real XQuAD-R files (../shared/corpora/xquad-r) are not here")
def test_real_xquad_r_counts():
    queries, passages, qrels = lareqa.load(SHARED, sorted(CANDIDATES))
    assert queries.groupby("lang").size().to_dict() == {lang: 1190 for lang in CANDIDATES}
    assert passages.groupby("lang").size().to_dict() == CANDIDATES
    assert queries.groupby("item_id").lang.nunique().eq(11).all()
    assert len(qrels) == 1190 * 11 * 11
