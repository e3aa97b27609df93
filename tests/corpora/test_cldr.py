"""The tests of `hybridbatch/corpora/cldr.py`."""

import unicodedata

import yaml
from conftest import CORPUS, REPO
from corpora_helpers import read

from hybridbatch import corpora


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


def test_query_and_its_passage_differ_and_qrels_link_translations(corpus_dir):
    queries, passages = read(corpus_dir, "test", "queries"), read(corpus_dir, "test", "passages")
    qrels = read(corpus_dir, "test", "qrels")
    same_lang = queries.merge(passages, on=["item_id", "lang"], suffixes=("_q", "_p"))
    assert (same_lang.text_q != same_lang.text_p).all()
    linked = qrels.merge(queries[["qid", "item_id"]], on="qid").merge(passages[["pid", "item_id"]], on="pid")
    assert (linked.item_id_x == linked.item_id_y).all()
    assert len(qrels) == len(queries) * len(CORPUS["languages"])
