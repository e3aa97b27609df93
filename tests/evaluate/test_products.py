"""The tests of `hybridbatch/evaluate/products.py`."""

import numpy as np
import pandas as pd
import pytest
from image_text_helpers import generated_test_split


@pytest.mark.parametrize("dimension, device", [(2, None), (8, None), (8, "cpu")])
def test_blocks_sliced_from_shared_products_rank_as_blocks_scored_alone(tmp_path, dimension, device):
    """t2i and i2t of a language share one product, L1->L2 and L2->L1 too, and `first` is
    part of `all`: the per-query frame equals scoring every block on its own, ties included
    (2-d integer vectors tie often and exactly), also with the products run by torch (the
    path of a job holding a GPU, here on the CPU)."""
    from hybridbatch.evaluate.image_text import relevant_pairs, score_settings

    captions, images, qrels = generated_test_split(tmp_path)
    rng = np.random.default_rng(5)
    vectors = {
        "image": rng.integers(-2, 3, size=(len(images), dimension)).astype(np.float32),
        "caption": rng.integers(-2, 3, size=(len(captions), dimension)).astype(np.float32),
    }
    params = {"recall_at": [1, 5], "ndcg_at": 10, "mrr_at": 10, "protocols": ["first", "all"], "t2t_languages": None}
    relevant = relevant_pairs(captions, images, qrels)
    shared, shared_blocks = score_settings(captions, images, relevant, vectors, params, device=device)
    alone, alone_blocks = score_settings(captions, images, relevant, vectors, params, per_block=True)
    pd.testing.assert_frame_equal(shared, alone)
    pd.testing.assert_frame_equal(shared_blocks, alone_blocks)
    assert set(shared.setting) == {
        f"{s}/{p}" for s in ("t2i", "i2t", "i2t-multi", "t2t-cross") for p in ("first", "all")
    }
    assert 0 < shared["recall@1"].mean() < 1
