"""The tests of `hybridbatch/pairs/build.py`."""

import math

import pandas as pd
import pytest
from conftest import LANGUAGES

from hybridbatch.artifacts import schema
from hybridbatch.pairs.bm25 import TOKEN


def test_pairs_cover_every_language_combination_of_each_item(pairs_dir, corpus_dir):
    pairs = schema.read_parquet(pairs_dir / "pairs.parquet", schema.PAIRS)
    queries = schema.read_parquet(corpus_dir / "train/queries.parquet", schema.QUERIES)
    assert len(pairs) == queries.item_id.nunique() * len(LANGUAGES) ** 2
    assert pairs.pair_id.is_unique


def test_pairs_and_their_qrels_agree_with_the_corpus(pairs_dir, corpus_dir):
    pairs = schema.read_parquet(pairs_dir / "pairs.parquet", schema.PAIRS)
    corpus_qrels = schema.read_parquet(corpus_dir / "train/qrels.parquet", schema.QRELS)
    judged = schema.read_parquet(pairs_dir / "qrels.parquet", schema.QRELS)
    every = set(zip(corpus_qrels.qid, corpus_qrels.pid))
    assert set(zip(pairs.qid, pairs.pid)) <= every  # every positive is relevant
    assert set(zip(judged.qid, judged.pid)) == set(zip(pairs.qid, pairs.pid))


def test_hard_negatives_are_never_relevant_to_their_query_in_any_language(pairs_dir, corpus_dir):
    pairs = schema.read_parquet(pairs_dir / "pairs.parquet", schema.PAIRS)
    passages = schema.read_parquet(corpus_dir / "train/passages.parquet", schema.PASSAGES).set_index("pid")
    qrels = schema.read_parquet(corpus_dir / "train/qrels.parquet", schema.QRELS)
    assert pairs.negative_pid.notna().mean() > 0.9  # none where every word-sharing passage is of the same item
    pairs = pairs[pairs.negative_pid.notna()]
    assert not set(zip(pairs.qid, pairs.negative_pid)) & set(zip(qrels.qid, qrels.pid))
    assert (passages.text.reindex(pairs.negative_pid).to_numpy() == pairs.negative.to_numpy()).all()
    assert (passages.lang.reindex(pairs.negative_pid).to_numpy() == pairs.passage_lang.to_numpy()).all()
    # "hard": the negative shares a word with the positive
    shares = [
        bool(set(TOKEN.findall(p.lower())) & set(TOKEN.findall(n.lower())))
        for p, n in zip(pairs.positive, pairs.negative)
    ]
    assert all(shares)


def lucene_bm25(query: list[str], document: list[str], documents: list[list[str]], k1=1.5, b=0.75) -> float:
    """BM25 as Lucene scores it, written out: the reference for the miner's choice."""
    average = sum(map(len, documents)) / len(documents)
    score = 0.0
    for term in set(query):
        df = sum(term in d for d in documents)
        tf = document.count(term)
        idf = math.log(1 + (len(documents) - df + 0.5) / (df + 0.5))
        score += idf * tf * (k1 + 1) / (tf + k1 * (1 - b + b * len(document) / average)) if tf else 0.0
    return score


def test_the_hard_negative_is_the_best_lucene_bm25_passage_of_another_item():
    from hybridbatch.pairs.build import bm25_hard_negatives

    texts = [
        "red apple pie recipe",
        "green apple pie",
        "apple pie apple pie with cream",
        "red car engine",
        "blue car",
        "red apple pie recipe",
        "the apple orchard",
        "fast red car engine oil",
        "pie chart",
    ]
    passages = pd.DataFrame({"pid": [f"p{i}" for i in range(len(texts))], "lang": "en", "text": texts})
    items = pd.Series({"p0": ["a"], "p1": ["a"], "p3": ["b"], "p4": ["c"], "p5": ["d"], "p8": ["e"]})
    negatives = bm25_hard_negatives(passages, items, depth=20, postings=100)
    tokens = [TOKEN.findall(t.lower()) for t in texts]
    for pid in items.index:
        row = int(pid[1:])
        allowed = [
            c for c in range(len(texts)) if texts[c] != texts[row] and not set(items.get(f"p{c}", [])) & set(items[pid])
        ]
        scores = {c: lucene_bm25(tokens[row], tokens[c], tokens) for c in allowed}
        best = max(scores.values())
        assert best > 0 and scores[int(negatives[pid][1:])] == pytest.approx(best, rel=1e-6), pid
    assert negatives["p0"] != "p1" and negatives["p0"] != "p5"  # same item; same text
    # the only passages sharing a word with "blue car" are of its own item: no negative
    assert pd.isna(
        bm25_hard_negatives(passages, pd.Series({"p4": ["c"], "p3": ["c"], "p7": ["c"]}), depth=20, postings=100)["p4"]
    )


def test_a_judged_non_relevant_passage_is_the_hard_negative_where_there_is_one(tmp_path):
    from hybridbatch.pairs import build as pairs

    corpus = tmp_path / "corpus"
    items = {"a": "red apple pie", "b": "red apple tart", "c": "green apple pie", "d": "blue car"}
    passages = pd.DataFrame(
        [(f"{l}:{i}", l, i, f"{l} {t}") for l in ("en", "de") for i, t in items.items()]
        + [("en:e", "en", "e", "en green apple pie")],
        columns=schema.PASSAGES.names,
    )  # en:c's text
    queries = pd.DataFrame(
        [(f"{l}:q{i}", l, i, f"{l} which {t}?") for l in ("en", "de") for i, t in items.items()],
        columns=schema.QUERIES.names,
    )
    qrels = [(f"{ql}:q{i}", f"{pl}:{i}", 1) for ql in ("en", "de") for pl in ("en", "de") for i in items]
    qrels += [(f"{ql}:qa", f"{pl}:d", 0) for ql in ("en", "de") for pl in ("en", "de")]  # judged: a car, not a pie
    qrels += [("en:qc", "en:e", 0), ("en:qc", "en:c", 0)]  # the positive's text; judged relevant too
    schema.write_parquet(queries, corpus / "queries.parquet", schema.QUERIES)
    schema.write_parquet(passages, corpus / "passages.parquet", schema.PASSAGES)
    schema.write_parquet(pd.DataFrame(qrels, columns=schema.QRELS.names), corpus / "qrels.parquet", schema.QRELS)
    pairs.build_pairs({"languages": ["en", "de"], "hard_negatives": True, "seed": 0}, corpus, tmp_path / "pairs")
    built = schema.read_parquet(tmp_path / "pairs/pairs.parquet", schema.PAIRS).set_index("pair_id")
    for ql in ("en", "de"):
        for pl in ("en", "de"):
            assert built.negative_pid[f"{ql}:qa>{pl}:a"] == f"{pl}:d"  # judged, in the positive's language
            assert built.negative_pid[f"{ql}:qb>{pl}:b"] in (f"{pl}:a", f"{pl}:c", "en:e")  # BM25: shares "apple"
    assert built.negative_pid["en:qc>en:c"] == "en:a"  # neither judged one qualifies: BM25's
    judged = schema.read_parquet(tmp_path / "pairs/qrels.parquet", schema.QRELS)
    assert (judged.relevance == 1).all() and "en:d" not in set(judged.pid[judged.qid == "en:qa"])
