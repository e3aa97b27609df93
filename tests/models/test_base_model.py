"""The tests of `hybridbatch/models/base_model.py`."""

import numpy as np
import pytest
from conftest import TINY_MODEL


def test_local_model_source_gives_the_same_encoder(tiny_model_dir, tmp_path):
    from hybridbatch.models.base_model import build_base_model
    from hybridbatch.models.encoders import Encoder

    params = {**TINY_MODEL, "source": {"kind": "local", "path": str(tiny_model_dir)}}
    build_base_model(params, None, tmp_path / "model")
    texts = ["hello world", "guten tag"]
    original = Encoder(tiny_model_dir, TINY_MODEL, device="cpu").encode(texts, "query", 8)
    copied = Encoder(tmp_path / "model", params, device="cpu").encode(texts, "query", 8)
    np.testing.assert_allclose(copied, original, atol=1e-6)


def test_an_unpinned_hub_revision_stops_naming_the_key(tmp_path):
    from hybridbatch.fetch.hf_datasets import UnpinnedRevision
    from hybridbatch.models.base_model import build_base_model

    params = {
        **TINY_MODEL,
        "name": "labse",
        "source": {"kind": "hub", "id": "sentence-transformers/LaBSE", "revision": "unpinned"},
    }
    with pytest.raises(UnpinnedRevision, match=r"config key models\.labse\.source\.revision: .* no pinned commit"):
        build_base_model(params, None, tmp_path / "model")
