import pandas as pd

from conftest import LANGUAGES
from hybridbatch import schema


def test_pairs_cover_every_language_combination_of_each_item(pairs_path, corpus_dir):
    pairs = schema.read_parquet(pairs_path, schema.PAIRS)
    queries = schema.read_parquet(corpus_dir / "train/queries.parquet", schema.QUERIES)
    assert len(pairs) == queries.item_id.nunique() * len(LANGUAGES) ** 2
    assert pairs.pair_id.is_unique
    assert (pairs.groupby("item_id").size() == len(LANGUAGES) ** 2).all()


def test_hard_negatives_come_from_another_item_in_the_positives_language(pairs_path, corpus_dir):
    pairs = schema.read_parquet(pairs_path, schema.PAIRS)
    passages = schema.read_parquet(corpus_dir / "train/passages.parquet", schema.PASSAGES)
    assert pairs.negative.notna().all()
    assert (pairs.negative_item_id != pairs.item_id).all()
    located = pairs.merge(passages, left_on=["negative", "negative_item_id"], right_on=["text", "item_id"], how="left")
    assert located.lang.notna().all()
    assert (located.lang == located.passage_lang).all()
    # "hard": the negative shares a word with the positive more often than chance would
    shares = [bool(set(p.lower().split()) & set(n.lower().split())) for p, n in zip(pairs.positive, pairs.negative)]
    assert pd.Series(shares).mean() > 0.9
