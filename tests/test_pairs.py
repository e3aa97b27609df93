import pandas as pd

from conftest import LANGUAGES
from hybridbatch import schema


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
    assert pairs.negative_pid.notna().all()
    assert not set(zip(pairs.qid, pairs.negative_pid)) & set(zip(qrels.qid, qrels.pid))
    assert (passages.text.reindex(pairs.negative_pid).to_numpy() == pairs.negative.to_numpy()).all()
    assert (passages.lang.reindex(pairs.negative_pid).to_numpy() == pairs.passage_lang.to_numpy()).all()
    # "hard": the negative shares a word with the positive more often than chance would
    shares = [bool(set(p.lower().split()) & set(n.lower().split())) for p, n in zip(pairs.positive, pairs.negative)]
    assert pd.Series(shares).mean() > 0.9
