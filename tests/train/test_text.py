"""The tests of `hybridbatch/train/text.py`."""

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import TINY_MODEL
from safetensors.torch import load_file, save_file
from training_helpers import PLAN, TRAINING

from hybridbatch.__main__ import main
from hybridbatch.batches.text import build_batches
from hybridbatch.models.encoders import BASE, TRAINED, Encoder
from hybridbatch.models.packed_encoder import PackedEncoder
from hybridbatch.train import text as training


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
