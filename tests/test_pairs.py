import math

import pandas as pd
import pytest

from conftest import LANGUAGES
from hybridbatch import schema
from hybridbatch.pairs import TOKEN


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
    shares = [bool(set(TOKEN.findall(p.lower())) & set(TOKEN.findall(n.lower()))) for p, n in zip(pairs.positive, pairs.negative)]
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
    from hybridbatch.pairs import bm25_hard_negatives

    texts = ["red apple pie recipe", "green apple pie", "apple pie apple pie with cream", "red car engine",
             "blue car", "red apple pie recipe", "the apple orchard", "fast red car engine oil", "pie chart"]
    passages = pd.DataFrame({"pid": [f"p{i}" for i in range(len(texts))], "lang": "en", "text": texts})
    items = pd.Series({"p0": ["a"], "p1": ["a"], "p3": ["b"], "p4": ["c"], "p5": ["d"], "p8": ["e"]})
    negatives = bm25_hard_negatives(passages, items, depth=20)
    tokens = [TOKEN.findall(t.lower()) for t in texts]
    for pid in items.index:
        row = int(pid[1:])
        allowed = [c for c in range(len(texts)) if texts[c] != texts[row]
                   and not set(items.get(f"p{c}", [])) & set(items[pid])]
        scores = {c: lucene_bm25(tokens[row], tokens[c], tokens) for c in allowed}
        best = max(scores.values())
        assert best > 0 and scores[int(negatives[pid][1:])] == pytest.approx(best, rel=1e-6), pid
    assert negatives["p0"] != "p1" and negatives["p0"] != "p5"  # same item; same text
    # the only passages sharing a word with "blue car" are of its own item: no negative
    assert pd.isna(bm25_hard_negatives(passages, pd.Series({"p4": ["c"], "p3": ["c"], "p7": ["c"]}), depth=20)["p4"])
