import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from conftest import TINY_MODEL
from safetensors.torch import load_file, save_file

from hybridbatch.__main__ import main
from hybridbatch.batches.text import build_batches
from hybridbatch.models.encoders import BASE, TRAINED, Encoder
from hybridbatch.models.packed_encoder import PackedEncoder
from hybridbatch.train import text as training
from hybridbatch.train.masks import Relevance, text_false_negatives
from hybridbatch.train.objectives import info_nce

TRAINING = {
    "learning_rate": 2e-3,
    "weight_decay": 0.01,
    "temperature": 0.05,
    "symmetric": False,
    "warmup_fraction": 0.1,
    "freeze_embeddings": False,
    "seed": 0,
}
PLAN = {
    "alpha": 0.5,
    "batch_size": 16,
    "epochs": 6,
    "seed": 0,
    "mono_language_sampling": "uniform",
    "drop_last": True,
    "development_fraction": 0.0,
    "development_seed": 0,
}


@pytest.fixture(scope="module")
def trained(pairs_dir, tiny_model_dir, tmp_path_factory):
    """A training run, with every call that fed texts to the model recorded from outside
    the trainer (a wrapper around PackedEncoder.embed, the encoder the stages run)."""
    root = tmp_path_factory.mktemp("train")
    build_batches(PLAN, pairs_dir, root / "batches")
    embedded = []
    original = PackedEncoder.embed

    def recording(self, texts, kind):
        embedded.append((kind, list(texts)))
        return original(self, texts, kind)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PackedEncoder, "embed", recording)
        training.train({"training": TRAINING, "model": TINY_MODEL}, tiny_model_dir, root / "batches", root / "model")
    return root, pd.read_csv(root / "model" / "training_log.csv"), embedded


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


def test_training_embeds_exactly_the_shards_texts_in_order_and_lowers_the_loss(trained):
    root, log, embedded = trained
    rows = pd.concat(pq.read_table(p).to_pandas() for p in sorted((root / "batches").glob("shard-*.parquet")))
    expected = []
    for _, batch in rows.groupby("batch_id", sort=True):
        expected.append(("query", batch["query"].tolist()))
        expected.append(("passage", batch.positive.tolist() + batch.negative.dropna().tolist()))
    assert embedded == expected
    assert log.loss.iloc[-20:].mean() < 0.85 * log.loss.iloc[:20].mean()
    assert (log.masked_conflicts == 0).all()  # the batch builder kept every relevant candidate out
    assert (root / "model" / TRAINED).is_file() and (root / "model" / BASE).is_file()


def test_an_exported_model_loads_in_sentence_transformers_with_the_same_embeddings(trained, tmp_path):
    from sentence_transformers import SentenceTransformer

    root = trained[0]
    texts = ["German (Switzerland)", "немецкий (Швейцария)", "德语 (瑞士)"]
    ours = Encoder(root / "model", TINY_MODEL, device="cpu")
    assert main(["export-model", str(root / "model"), str(tmp_path / "exported")]) == 0
    with pytest.raises(FileExistsError, match="exported exists: export-model does not overwrite"):
        main(["export-model", str(root / "model"), str(tmp_path / "exported")])
    st_model = SentenceTransformer(str(tmp_path / "exported"), device="cpu")
    for kind in ("query", "passage"):
        expected = ours.encode(texts, kind, batch_size=2)
        theirs = st_model.encode(texts, prompt_name=kind, normalize_embeddings=True)
        assert np.abs(expected - theirs).max() < 1e-5


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


def test_a_model_whose_base_changed_or_went_missing_does_not_load(trained, tiny_model_dir, tmp_path):
    shutil.copytree(tiny_model_dir, tmp_path / "base")
    shutil.copytree(trained[0] / "model", tmp_path / "model")
    reference = json.loads((tmp_path / "model" / BASE).read_text())
    (tmp_path / "model" / BASE).write_text(json.dumps({**reference, "path": "../base"}))
    Encoder(tmp_path / "model", TINY_MODEL, device="cpu")
    weights = load_file(str(tmp_path / "base" / "model.safetensors"))
    weights["embeddings.word_embeddings.weight"][0, 0] += 1
    save_file(weights, str(tmp_path / "base" / "model.safetensors"))
    with pytest.raises(
        ValueError, match=r"model/base\.json: .*base/model\.safetensors has sha256 \w+, not \w+, the base"
    ):
        Encoder(tmp_path / "model", TINY_MODEL, device="cpu")
    shutil.rmtree(tmp_path / "base")
    with pytest.raises(FileNotFoundError, match=r"model/base\.json: its base model .*base has no model\.safetensors"):
        Encoder(tmp_path / "model", TINY_MODEL, device="cpu")


def test_nan_loss_stops_training_naming_the_batch(pairs_dir, tiny_model_dir, tmp_path, monkeypatch):
    build_batches({**PLAN, "epochs": 1}, pairs_dir, tmp_path / "batches")
    monkeypatch.setattr(training, "info_nce", lambda *args, **kwargs: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match=r"batches: batch 0 \(step 0\): loss is nan"):
        training.train(
            {"training": TRAINING, "model": TINY_MODEL}, tiny_model_dir, tmp_path / "batches", tmp_path / "m"
        )
    assert not (tmp_path / "m" / TRAINED).exists()
