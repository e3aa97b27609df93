"""The tests of `hybridbatch/corpora/prepare.py`."""

import pandas as pd
import pytest
from conftest import CORPUS
from corpora_helpers import read

from hybridbatch import corpora
from hybridbatch.corpora import prepare
from hybridbatch.fetch.download import ChecksumError
from hybridbatch.names import GROUPS


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


def test_tampered_raw_file_is_named(tmp_path):
    raw = tmp_path / "raw"
    corpora.download(CORPUS, raw)
    with open(raw / "records.jsonl", "ab") as handle:
        handle.write(b" ")
    with pytest.raises(ChecksumError, match="records.jsonl: sha256 mismatch"):
        prepare.prepare(CORPUS, raw, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_prepare_refuses_a_group_in_two_splits_naming_corpus_and_group(tmp_path):
    """Planted siblings: item 2 of group g1 lands in test while item 1 of g1 is in train."""
    assigned = pd.DataFrame(
        {"item_id": ["1", "2", "3"], "group": ["g1", "g1", "g2"], "split": ["train", "test", "test"]}
    )
    with pytest.raises(ValueError, match=r"corpus emoji: group 'g1' has items in splits \['test', 'train'\]"):
        prepare.write_groups("emoji", assigned, tmp_path / GROUPS)
    assert not (tmp_path / GROUPS).exists()
    counts = prepare.write_groups("emoji", assigned.assign(split=["train", "train", "test"]), tmp_path / GROUPS)
    assert counts == {"train": {"items": 2, "groups": 1}, "test": {"items": 1, "groups": 1}}
