"""The tests of `hybridbatch/models/encoders.py`."""

import numpy as np
import torch
from conftest import TINY_MODEL
from safetensors.torch import load_file
from training_helpers import PLAN, TRAINING

from hybridbatch.batches.text import build_batches
from hybridbatch.models.encoders import TRAINED, Encoder
from hybridbatch.models.packed_encoder import PackedEncoder
from hybridbatch.train import text as training


def test_a_model_with_a_dense_layer_is_loaded_trained_and_saved_as_its_authors_packaged_it(tiny_model_dir, tmp_path):
    """A LaBSE-like directory (transformer, CLS pooling, Dense, Normalize): the project's
    embeddings equal SentenceTransformer(dir).encode, and training updates the Dense layer."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    from hybridbatch.models.base_model import build_base_model
    from hybridbatch.models.encoders import Encoder

    transformer = Transformer(str(tiny_model_dir), max_seq_length=24)
    torch.manual_seed(0)
    dense = Dense(32, 16, activation_function=torch.nn.Tanh())
    packaged = SentenceTransformer(
        modules=[transformer, Pooling(32, pooling_mode="cls"), dense, Normalize()], device="cpu"
    )
    packaged.save(str(tmp_path / "labse-like"))
    params = {**TINY_MODEL, "pooling": "mean", "source": {"kind": "local", "path": str(tmp_path / "labse-like")}}
    build_base_model(params, None, tmp_path / "model")
    texts = ["German (Switzerland)", "немецкий (Швейцария)", "德语 (瑞士)"]
    ours = Encoder(tmp_path / "model", params, device="cpu")
    theirs = SentenceTransformer(str(tmp_path / "labse-like"), device="cpu")
    expected = theirs.encode(["query: " + t for t in texts], normalize_embeddings=True)
    assert ours.encode(texts, "query", 2).shape == (3, 16)
    np.testing.assert_allclose(ours.encode(texts, "query", 2), expected, atol=1e-5)
    ours.embed(texts, "query").sum().backward()
    assert ours.model[2].linear.weight.grad.abs().sum() > 0  # the Dense layer is part of what trains
    ours.save(tmp_path / "saved")
    assert (tmp_path / "saved" / "2_Dense").is_dir()


def test_a_trained_model_stores_what_training_changed_and_loads_as_the_model_it_trained(
    pairs_dir, tiny_model_dir, tmp_path, monkeypatch
):
    build_batches({**PLAN, "epochs": 1}, pairs_dir, tmp_path / "batches")
    ended = {}
    save = PackedEncoder.save

    def recording(self, out_dir):
        ended.update({name: tensor.clone() for name, tensor in self.transformer.state_dict().items()})
        save(self, out_dir)

    monkeypatch.setattr(PackedEncoder, "save", recording)
    training_params = {"training": {**TRAINING, "freeze_embeddings": True}, "model": TINY_MODEL}
    training.train(training_params, tiny_model_dir, tmp_path / "batches", tmp_path / "model")
    stored = load_file(str(tmp_path / "model" / TRAINED))
    assert "embeddings.word_embeddings.weight" not in stored  # frozen: read from the base
    assert "encoder.layer.0.attention.self.query.weight" in stored
    shared = ["model.safetensors", "tokenizer.json", "tokenizer_config.json", "config.json", "modules.json"]
    assert [name for name in shared if (tmp_path / "model" / name).exists()] == []  # the base's, not copied
    loaded = Encoder(tmp_path / "model", TINY_MODEL, device="cpu").transformer.state_dict()
    base = load_file(str(tiny_model_dir / "model.safetensors"))
    assert ended.keys() <= loaded.keys() and all(
        torch.equal(loaded[name], base[name]) for name in loaded.keys() - ended
    )
    assert [name for name in ended if not torch.equal(loaded[name], ended[name])] == []
