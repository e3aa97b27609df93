import unicodedata

import pandas as pd
import pytest
import yaml
from conftest import CORPUS, REPO

from hybridbatch import corpora
from hybridbatch.artifacts import schema
from hybridbatch.corpora import prepare
from hybridbatch.fetch.download import ChecksumError


def read(corpus_dir, split, name):
    table_schema = {"queries": schema.QUERIES, "passages": schema.PASSAGES, "qrels": schema.QRELS}[name]
    return schema.read_parquet(corpus_dir / split / f"{name}.parquet", table_schema)


def script(text: str) -> str:
    letters = [unicodedata.name(ch).split()[0] for ch in text if ch.isalpha()]
    return max(set(letters), key=letters.count)


def test_default_corpus_has_eight_languages_and_three_non_latin_scripts():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    languages = config["corpora"]["cldr-locales"]["languages"]
    assert len(languages) >= 8
    records = corpora.cldr.extract_records(languages)
    names = records[0]["names"]
    scripts = {script(corpora.cldr.query_text(names[lang])) for lang in languages}
    assert len(scripts - {"LATIN"}) >= 3, scripts


def test_items_are_parallel_and_split_without_overlap(corpus_dir):
    items = {}
    for split in prepare.SPLITS:
        queries, passages = read(corpus_dir, split, "queries"), read(corpus_dir, split, "passages")
        assert set(queries.lang) == set(CORPUS["languages"])
        # every item exists in every language, once as query and once as passage
        assert (queries.groupby("item_id").lang.nunique() == len(CORPUS["languages"])).all()
        assert set(queries.item_id) == set(passages.item_id)
        items[split] = set(queries.item_id)
    assert not items["train"] & items["test"]
    share = len(items["test"]) / (len(items["test"]) + len(items["train"]))
    assert share == pytest.approx(CORPUS["test_fraction"], abs=0.01)


def test_query_and_its_passage_differ_and_qrels_link_translations(corpus_dir):
    queries, passages = read(corpus_dir, "test", "queries"), read(corpus_dir, "test", "passages")
    qrels = read(corpus_dir, "test", "qrels")
    same_lang = queries.merge(passages, on=["item_id", "lang"], suffixes=("_q", "_p"))
    assert (same_lang.text_q != same_lang.text_p).all()
    linked = qrels.merge(queries[["qid", "item_id"]], on="qid").merge(passages[["pid", "item_id"]], on="pid")
    assert (linked.item_id_x == linked.item_id_y).all()
    assert len(qrels) == len(queries) * len(CORPUS["languages"])


def test_tampered_raw_file_is_named(tmp_path):
    raw = tmp_path / "raw"
    corpora.download(CORPUS, raw)
    with open(raw / "records.jsonl", "ab") as handle:
        handle.write(b" ")
    with pytest.raises(ChecksumError, match="records.jsonl: sha256 mismatch"):
        prepare.prepare(CORPUS, raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_unreadable_parquet_is_named(tmp_path):
    bad = tmp_path / "queries.parquet"
    bad.write_bytes(b"not parquet")
    with pytest.raises(schema.SchemaError, match="queries.parquet"):
        schema.read_parquet(bad, schema.QUERIES)
    pd.DataFrame({"qid": ["a"]}).to_parquet(bad)
    with pytest.raises(schema.SchemaError, match="missing column 'lang'"):
        schema.read_parquet(bad, schema.QUERIES)
