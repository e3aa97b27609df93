"""The tests of `hybridbatch/train/masks.py`."""

import numpy as np
import pytest
import torch

from hybridbatch.train.masks import Relevance, text_false_negatives
from hybridbatch.train.objectives import info_nce


def test_caption_batches_mask_relevant_targets_and_duplicate_texts():
    from hybridbatch.train.masks import Relevance, caption_false_negatives

    relevance = Relevance.from_pairs(
        [("a", "image:1"), ("b", "image:2"), ("c", "image:3"), ("x", "image:1"), ("y", "image:2"), ("z", "image:1")]
    )
    rows = {
        "qid": ["a", "b", "c"],
        "pid": ["x", "y", "z"],
        "query": ["red", "blue", "red"],
        "positive": ["rot", "blau", "rot"],
    }
    relevant, duplicate = caption_false_negatives(rows, False, relevance)
    assert relevant.tolist() == [
        [False, False, True],
        [False, False, False],
        [False, False, False],
    ]  # z shares a's image
    assert duplicate.tolist() == [
        [False, False, False],
        [False, False, False],
        [True, False, False],
    ]  # same target text
    images = {"qid": ["a", "b", "c"], "pid": ["image:1", "image:2", "image:1"], "query": ["red", "blue", "red"]}
    relevant, duplicate = caption_false_negatives(images, True, relevance)
    assert relevant.tolist() == [[False, False, True], [False, False, False], [False, False, False]]
    assert duplicate.tolist() == [[False, False, False], [False, False, False], [True, False, False]]  # a's text again


def test_info_nce_masks_relevant_candidates_and_copies_of_the_positive():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    c = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    # a hand-built conflict: query a is relevant to hard negative "pa-de" (its gold sentence in
    # de, shared with another question); the last candidate copies b's positive text
    relevant = {("qa", "pa"), ("qb", "pb"), ("qc", "pc"), ("qa", "pa-de")}
    conflicts, duplicates = text_false_negatives(
        ["qa", "qb", "qc"],
        ["pa", "pb", "pc", "pa-de", "px"],
        ["ta", "tb", "tc", "ta-de", "tb"],
        Relevance.from_pairs(relevant),
    )
    assert conflicts.nonzero().tolist() == [[0, 3]]
    assert duplicates.nonzero().tolist() == [[1, 4]]
    loss = info_nce(q, c, conflicts | duplicates, temperature=0.1)
    logits = (q @ c.T / 0.1).numpy()
    allowed = [[0, 1, 2, 4], [0, 1, 2, 3], [0, 1, 2, 3, 4]]
    expected = [-logits[i, i] + np.log(np.exp(logits[i, allowed[i]]).sum()) for i in range(3)]
    assert loss.item() == pytest.approx(np.mean(expected), rel=1e-5)
