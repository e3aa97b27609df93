"""The tests of `hybridbatch/models/packed_encoder.py`."""

import pytest
from conftest import TINY_MODEL

from hybridbatch.models.encoders import Encoder
from hybridbatch.models.packed_encoder import load_encoder


def test_models_the_packed_pass_does_not_cover_load_as_sentence_transformers(tiny_model_dir, tmp_path):
    import shutil

    shutil.copytree(tiny_model_dir, tmp_path / "model")
    pooling = tmp_path / "model" / "1_Pooling" / "config.json"
    pooling.write_text(pooling.read_text().replace('"mean"', '"max"'))
    assert type(load_encoder(tmp_path / "model", TINY_MODEL, "cpu")) is Encoder
    with pytest.raises(ValueError, match="caption states need a BERT-family encoder with mean or CLS pooling"):
        load_encoder(tmp_path / "model", TINY_MODEL, "cpu", first=1)
