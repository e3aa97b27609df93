"""The tests of `hybridbatch/models/caption_states.py`."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import TINY_MODEL
from image_text_helpers import LANGS, write_lit_inputs
from safetensors.torch import load_file

from hybridbatch.artifacts import schema


def test_caption_states_train_and_evaluate_as_the_whole_tower(tmp_path, corpus_dir):
    """LiT from cached frozen states: the same losses, weights and metrics as from the
    whole tower (dropout on in the trained layers), and mismatches fail naming the states."""
    from hybridbatch.evaluate.image_text import evaluate_image_text
    from hybridbatch.models.base_model import build_base_model
    from hybridbatch.models.caption_states import CaptionStates
    from hybridbatch.models.frozen_layers import caption_states
    from hybridbatch.models.image_text import ImageTextModel
    from hybridbatch.train.image_text import train_lit

    text_model = {**TINY_MODEL, "source": {**TINY_MODEL["source"], "layers": 3}}
    build_base_model(text_model, corpus_dir / "train", tmp_path / "base")
    write_lit_inputs(tmp_path)
    training = {"objective": "symmetric-info-nce", "trainable_text_layers": 2, "learning_rate": 1e-3,
                "projection_learning_rate": 1e-2, "weight_decay": 0.01, "warmup_fraction": 0.0, "temperature": 0.1,
                "learnable_temperature": True}  # fmt: skip
    states = {"text_model": text_model, "trainable_text_layers": 2}
    caption_states(
        {**states, "split": "train", "languages": LANGS[:3], "captions": "all"},
        tmp_path / "base",
        tmp_path / "corpus/train",
        tmp_path / "states/train",
    )
    evaluation = {"recall_at": [1, 5], "ndcg_at": 10, "mrr_at": 10, "languages": LANGS, "images": 10,
                  "subset_seed": 0, "protocols": ["first", "all"], "batch_size": 16, "text_model": text_model,
                  "descriptor": {"corpus": "gen", "model": "tiny", "strategy": "hybrid", "alpha": 0.5, "seed": 0}}  # fmt: skip
    subset = {key: evaluation[key] for key in ("languages", "images", "subset_seed", "protocols")}
    caption_states(
        {**states, "split": "test", **subset}, tmp_path / "base", tmp_path / "corpus/test", tmp_path / "states/test"
    )
    assert CaptionStates(tmp_path / "states/train").layers == 1
    params = {"lit": training, "seed": 0, "text_model": text_model, "text_model_name": "tiny",
              "image_tower": "random", "trainer": {"validation_every": 2}}  # fmt: skip
    for name, train_states in (("whole", None), ("cached", tmp_path / "states/train")):
        args = (tmp_path / "features", tmp_path / "batches", train_states, tmp_path / name / "model")
        train_lit(params, tmp_path / "base", *args)
    summaries = {
        name: evaluate_image_text(
            evaluation, tmp_path / "cached/model", tmp_path / "features", tmp_path / "corpus/test", test_states,
            tmp_path / name / "metrics",
        )
        for name, test_states in (("whole", None), ("cached", tmp_path / "states/test"))
    }  # fmt: skip
    for log in ("training_log.csv", "validation_log.csv"):
        whole, cached = (pd.read_csv(tmp_path / name / "model" / log) for name in ("whole", "cached"))
        loss = "loss" if log == "training_log.csv" else "validation_loss"
        np.testing.assert_allclose(cached[loss], whole[loss], atol=1e-5)
    for weights in ("text/trained.safetensors", "image_projection.safetensors"):
        whole, cached = (load_file(str(tmp_path / name / "model" / weights)) for name in ("whole", "cached"))
        assert whole.keys() == cached.keys()
        for key in whole:
            torch.testing.assert_close(cached[key], whole[key], atol=1e-5, rtol=0)
    trained = load_file(str(tmp_path / "whole/model/text/trained.safetensors"))
    assert {name.split(".")[2] for name in trained} == {"1", "2"}  # the two top layers trained, layer 0 not
    from hybridbatch.models.packed_encoder import PackedEncoder

    tower = PackedEncoder(tmp_path / "cached/model/text", text_model, "cpu", first=1)  # what a job from states loads
    assert not hasattr(tower, "embeddings") and {name.split(".")[2] for name, _ in tower.named_parameters()} == {
        "1",
        "2",
    }
    model = ImageTextModel.load(tmp_path / "cached/model", text_model)
    texts = schema.read_parquet(tmp_path / "corpus/test/queries.parquet", schema.CAPTIONS).text.tolist()
    whole = model.encode_texts(texts, 7)
    model.use_states(CaptionStates(tmp_path / "states/test"))
    evaluated = sorted(set(pd.read_parquet(tmp_path / "states/test/captions.parquet").text))
    np.testing.assert_allclose(model.encode_texts(evaluated, 7), whole[[texts.index(t) for t in evaluated]], atol=1e-5)
    # The whole tower's vectors and the states' differ in their last bits, which decides the order of
    # near-tied scores: so the evaluation from states is checked against the metrics of the very vectors
    # the states give (above, within 1e-5 of the whole tower's), computed here outside the stage.
    from hybridbatch.evaluate.image_text import relevant_pairs, score_settings
    from hybridbatch.evaluate.metrics import summary_rows
    from hybridbatch.models.image_text import read_features
    from hybridbatch.names import metric_names
    from hybridbatch.subset import evaluated_captions

    captions, images = evaluated_captions(tmp_path / "corpus/test", LANGS, 10, 0, ["first", "all"])
    relevant = relevant_pairs(
        captions, images, schema.read_parquet(tmp_path / "corpus/test/qrels.parquet", schema.QRELS)
    )
    row_of, features = read_features(tmp_path / "features/test.parquet")
    from_states = ImageTextModel.load(tmp_path / "cached/model", text_model, CaptionStates(tmp_path / "states/test"))
    with torch.inference_mode():
        vectors = {
            "caption": from_states.encode_texts(captions.text.tolist(), evaluation["batch_size"]),
            "image": from_states.embed_images(features[[row_of[pid] for pid in images.pid]]).numpy(),
        }
    _, by_language = score_settings(captions, images, relevant, vectors, evaluation)
    expected = summary_rows(by_language, metric_names([1, 5], 10, 10), evaluation["descriptor"])
    pd.testing.assert_frame_equal(summaries["cached"], expected)
    assert set(summaries["whole"].metric) == set(summaries["cached"].metric)
    assert summaries["whole"].value.nunique() > 5

    with pytest.raises(ValueError, match=rf"{tmp_path / 'states/train'}: states after 1 layers, but the text tower"):
        train_lit(
            {**params, "lit": {**training, "trainable_text_layers": 3}},
            tmp_path / "base",
            *args[:-1],
            tmp_path / "mismatch",
        )
    with pytest.raises(KeyError, match=rf"{tmp_path / 'states/test'}/captions.parquet: no states for captions"):
        CaptionStates(tmp_path / "states/test").lookup(["never evaluated"])
    narrow = tmp_path / "states/narrow"  # the states of one language: the batches' other captions have none
    caption_states(
        {**states, "split": "train", "languages": LANGS[:1], "captions": "all"},
        tmp_path / "base",
        tmp_path / "corpus/train",
        narrow,
    )
    with pytest.raises(KeyError, match=rf"{narrow}: no states for \d+ of the \d+ captions in {tmp_path / 'batches'}"):
        train_lit(params, tmp_path / "base", tmp_path / "features", tmp_path / "batches", narrow, tmp_path / "narrow")
    assert not (tmp_path / "narrow").exists()  # refused before any step
