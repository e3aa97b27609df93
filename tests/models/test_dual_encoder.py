"""The tests of `hybridbatch/models/dual_encoder.py`."""

import importlib.util
import json

import numpy as np
import pandas as pd
import pytest
import torch
from dual_encoder_helpers import images
from dual_encoders import TEXTS, tiny_clip, tiny_siglip
from image_text_helpers import LANGS, plan, write_image_corpus

from hybridbatch.artifacts import schema
from hybridbatch.batch_types import CAPTION_CAPTION, IMAGE_MIXED, IMAGE_MONO
from hybridbatch.batches.image_text import build_image_text_batches
from hybridbatch.train.objectives import sigmoid, symmetric_info_nce

BUILDERS = {"clip": tiny_clip, "siglip": tiny_siglip}


def test_torchvision_is_not_installed():
    """transformers imports an installed torchvision even for its PIL image processors, and
    no torchvision wheel imports beside the CPU torch: the project must never install it."""
    assert importlib.util.find_spec("torchvision") is None, "torchvision is installed: it breaks the PIL image path"


@pytest.fixture(scope="module", params=sorted(BUILDERS))
def base(request, tmp_path_factory):
    """(family, checkpoint dir, base model dir built by the dual-encoder model source from a local path)."""
    from hybridbatch.models.base_model import build_base_model

    root = tmp_path_factory.mktemp(request.param)
    checkpoint = BUILDERS[request.param](root / "checkpoint")
    build_base_model(
        {"name": request.param, "source": {"kind": "dual-encoder", "path": str(checkpoint)}}, None, root / "base"
    )
    return request.param, checkpoint, root / "base"


def reference(checkpoint):
    from transformers import AutoImageProcessor, AutoModel, AutoTokenizer

    return (
        AutoModel.from_pretrained(str(checkpoint)).eval(),
        AutoTokenizer.from_pretrained(str(checkpoint)),
        AutoImageProcessor.from_pretrained(str(checkpoint), backend="pil"),
    )


def pooled(output) -> torch.Tensor:
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def test_embeddings_equal_transformers_get_features(base):
    from hybridbatch.models.dual_encoder import DualEncoderImageText

    family, checkpoint, base_dir = base
    model, tokenizer, processor = reference(checkpoint)
    settings = json.loads((base_dir / "text_settings.json").read_text())
    padding = "max_length" if family == "siglip" else "longest"
    assert settings["padding"] == padding and settings["max_length"] == model.config.text_config.max_position_embeddings
    inputs = tokenizer(TEXTS, padding=padding, truncation=True, max_length=settings["max_length"], return_tensors="pt")
    if family == "siglip":  # trained without a mask, pooling the last (padded) position
        inputs = {"input_ids": inputs["input_ids"]}
    with torch.no_grad():
        texts = torch.nn.functional.normalize(pooled(model.get_text_features(**inputs)), dim=-1).numpy()
        pixels = processor(images=images(3), return_tensors="pt")
        image_features = pooled(model.get_image_features(**pixels))
    ours = DualEncoderImageText(base_dir, "cpu")
    np.testing.assert_allclose(ours.encode_texts(TEXTS, batch_size=2), texts, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(ours.encoder.image_features(images(3)).numpy(), image_features.numpy(), atol=1e-5)
    assert ours.default_objective == ("sigmoid" if family == "siglip" else "symmetric-info-nce")


def test_siglip_texts_are_padded_to_the_towers_length_without_a_mask(base):
    """Dynamic padding (or a mask) changes a SigLIP embedding: the pipeline must not use it."""
    from hybridbatch.models.dual_encoder import DualEncoder

    family, checkpoint, base_dir = base
    encoder = DualEncoder(base_dir, "cpu")
    inputs = encoder.text_inputs(TEXTS[:2])
    model, tokenizer, _ = reference(checkpoint)
    dynamic = tokenizer(TEXTS[:2], padding="longest", return_tensors="pt")
    with torch.no_grad():
        padded = pooled(model.get_text_features(**inputs))
        unpadded = pooled(model.get_text_features(**dynamic))
    if family == "siglip":
        assert (
            set(inputs) == {"input_ids"}
            and inputs["input_ids"].shape[1] == model.config.text_config.max_position_embeddings
        )
        assert (padded - unpadded).abs().max() > 1e-3
    else:  # CLIP pools its end token under a mask: padding changes nothing
        assert set(inputs) == {"input_ids", "attention_mask"}
        torch.testing.assert_close(padded, unpadded, atol=1e-5, rtol=1e-5)


def test_sigmoid_and_clip_losses_equal_transformers_own(base):
    family, checkpoint, _ = base
    model, tokenizer, processor = reference(checkpoint)
    inputs = tokenizer(
        TEXTS[:4],
        padding="max_length",
        truncation=True,
        max_length=model.config.text_config.max_position_embeddings,
        return_tensors="pt",
    )
    pixels = processor(images=images(4), return_tensors="pt")
    with torch.no_grad():
        output = model(input_ids=inputs["input_ids"], **pixels, return_loss=True)
    texts, targets = output.text_embeds, output.image_embeds  # normalised by the model
    none = torch.zeros(4, 4, dtype=torch.bool)
    temperature = 1 / model.logit_scale.exp()
    if family == "siglip":
        ours = sigmoid(texts, targets, none, temperature, model.logit_bias)
    else:
        ours = symmetric_info_nce(texts, targets, none, temperature)
    assert ours.item() == pytest.approx(output.loss.item(), rel=1e-5)


STRATEGIES = {
    "mixed": {IMAGE_MIXED: 1.0},
    "X-X-mono": {IMAGE_MONO: 1.0},
    "hybrid": {IMAGE_MONO: 0.5, CAPTION_CAPTION: 0.5},
    "hybrid-mixed": {IMAGE_MONO: 0.5, IMAGE_MIXED: 0.5},
}


def dual_encoder_lit_inputs(base, tmp_path) -> dict:
    """A 16-image corpus with real image files, the dual encoder's features of it, and LiT
    params training its top text layer (the trainer section left to the caller)."""
    from hybridbatch.fetch.download import sha256_file
    from hybridbatch.models.image_towers import image_features

    family, _, base_dir = base
    write_image_corpus(tmp_path / "corpus", 16)
    raw = tmp_path / "raw"
    for split in ("train", "test"):  # real image files with the hashes the corpus records
        frame = schema.read_parquet(tmp_path / "corpus" / split / "images.parquet", schema.IMAGES)
        for path, image in zip(frame.path, images(len(frame))):
            (raw / path).parent.mkdir(parents=True, exist_ok=True)
            image.save(raw / path)
        frame["sha256"] = [sha256_file(raw / p) for p in frame.path]
        schema.write_parquet(frame, tmp_path / "corpus" / split / "images.parquet", schema.IMAGES)
    tower = {"name": "vision", "source": {"kind": "dual-encoder", "model": family}, "batch_size": 3}
    assert image_features(tower, tmp_path / "corpus", raw, base_dir, tmp_path / "features") == {"train": 16, "test": 16}
    assert "get_image_features" in json.loads((tmp_path / "features/tower.json").read_text())["features"]
    text_model = {"source": {"kind": "dual-encoder", "path": "unused"}}
    training = {
        "objective": None,
        "trainable_text_layers": 1,
        "learning_rate": 1e-3,
        "projection_learning_rate": 1e-3,
        "weight_decay": 0.0,
        "warmup_fraction": 0.0,
        "temperature": None,
        "learnable_temperature": True,
    }
    return {"lit": training, "seed": 0, "text_model": text_model, "text_model_name": family, "image_tower": "vision"}


@pytest.mark.slow
def test_lit_from_a_dual_encoder_with_every_strategy_saves_a_model_transformers_loads(base, tmp_path):
    from transformers import AutoModel

    from hybridbatch.artifacts.vectors import read_embeddings
    from hybridbatch.evaluate.image_text import evaluate_image_text
    from hybridbatch.models.dual_encoder import DualEncoderImageText
    from hybridbatch.train.image_text import train_lit

    family, _, base_dir = base
    params = dual_encoder_lit_inputs(base, tmp_path) | {"trainer": {"validation_every": 3}}
    untouched = {k: v.clone() for k, v in AutoModel.from_pretrained(str(base_dir)).state_dict().items()}
    for strategy, weights in STRATEGIES.items():
        batches, out = tmp_path / f"batches-{strategy}", tmp_path / f"model-{strategy}"
        build_image_text_batches(
            plan({"weights": weights}, 3, development_fraction=0.5), tmp_path / "corpus/train", batches
        )
        train_lit(params, base_dir, tmp_path / "features", batches, None, out)
        log = pd.read_csv(out / "training_log.csv")
        assert len(log) == 3 and log.loss.notna().all()
        assert json.loads((out / "model.json").read_text())["objective"] == (
            "sigmoid" if family == "siglip" else "symmetric-info-nce"
        )
        trained = AutoModel.from_pretrained(str(out)).state_dict()  # the checkpoint's own format, no project code
        changed = {k for k in trained if not torch.equal(trained[k], untouched[k])}
        assert changed and all(k.startswith(("text_model.", "text_projection", "logit_")) for k in changed), changed
        assert not any(k.startswith(("text_model.embeddings", "vision_model", "visual_projection")) for k in changed)
    reloaded = DualEncoderImageText(out, "cpu")
    model = AutoModel.from_pretrained(str(out)).eval()
    with torch.no_grad():
        direct = torch.nn.functional.normalize(
            pooled(model.get_text_features(**reloaded.encoder.text_inputs(TEXTS))), dim=-1
        )
    np.testing.assert_allclose(reloaded.encode_texts(TEXTS, 2), direct.numpy(), atol=1e-5)
    evaluation = {
        "recall_at": [1, 5, 10],
        "ndcg_at": 10,
        "mrr_at": 10,
        "languages": LANGS,
        "images": None,
        "subset_seed": 0,
        "protocols": ["first"],
        "batch_size": 4,
        "text_model": params["text_model"],
        "descriptor": {
            "corpus": "gen",
            "model": f"{family}+vision",
            "strategy": "hybrid-mixed",
            "alpha": 0.5,
            "seed": 0,
        },
    }
    for model_dir, name in ((out, "trained"), (base_dir, "zero-shot")):
        summary = evaluate_image_text(
            evaluation, model_dir, tmp_path / "features", tmp_path / "corpus/test", None, tmp_path / name
        )
        assert {"t2i/first", "i2t/first", "i2t-multi/first", "t2t-cross/first"} <= set(summary.setting)
    per_query = pd.read_parquet(tmp_path / "trained/per_query.parquet")
    t2i = per_query[per_query.setting == "t2i/first"].set_index("qid")
    captions = schema.read_parquet(tmp_path / "corpus/test/queries.parquet", schema.CAPTIONS)
    first = captions[captions.caption == 0].reset_index(drop=True)
    _, _, vectors = read_embeddings(tmp_path / "features/test.parquet")
    image_vectors = torch.nn.functional.normalize(torch.from_numpy(np.asarray(vectors, dtype=np.float32)), dim=-1)
    caption_vectors = torch.from_numpy(reloaded.encode_texts(first.text.tolist(), 4))
    owner = first.item_id.map({item: row for row, item in enumerate(sorted(set(first.item_id)))}).to_numpy()
    scores = caption_vectors @ image_vectors.T
    gold = scores[torch.arange(len(first)), owner]
    expected = 1 / (1 + (scores > gold[:, None]).sum(dim=1).numpy())  # the evaluation scored what the model embeds
    np.testing.assert_allclose(
        t2i.loc[first.qid, "mrr@10"].to_numpy(), np.where(expected >= 0.1, expected, 0), atol=1e-6
    )


@pytest.mark.slow
def test_gradcache_with_a_dual_encoder_trains_as_whole_batches(base, tmp_path):
    """The image side of a dual encoder is locked (its cached features are already in the
    joint space): GradCache embeds it once and replays only the captions, with the losses,
    validation losses and trained weights of whole-batch steps."""
    from transformers import AutoModel

    from hybridbatch.train.image_text import train_lit

    _, _, base_dir = base
    params = dual_encoder_lit_inputs(base, tmp_path)
    batches = tmp_path / "batches"
    strategy = {"weights": {IMAGE_MONO: 0.5, CAPTION_CAPTION: 0.5}}
    build_image_text_batches(plan(strategy, 4, development_fraction=0.5), tmp_path / "corpus/train", batches)
    for name, mini_batch in (("whole", None), ("cached", 3)):
        trainer = {"validation_every": 2, "precision": "fp32", "mini_batch": mini_batch}
        train_lit(params | {"trainer": trainer}, base_dir, tmp_path / "features", batches, None, tmp_path / name)
    whole, cached = (pd.read_csv(tmp_path / name / "training_log.csv") for name in ("whole", "cached"))
    assert set(whole.batch_type) == {IMAGE_MONO, CAPTION_CAPTION}  # image and caption targets both trained
    np.testing.assert_allclose(cached.loss, whole.loss, rtol=1e-5)  # float32 sums in another order
    np.testing.assert_allclose(cached.gradient_norm, whole.gradient_norm, rtol=1e-4)
    validation = [pd.read_csv(tmp_path / name / "validation_log.csv") for name in ("whole", "cached")]
    np.testing.assert_allclose(validation[1].validation_loss, validation[0].validation_loss, atol=1e-5)
    weights = [AutoModel.from_pretrained(str(tmp_path / name)).state_dict() for name in ("whole", "cached")]
    assert weights[0].keys() == weights[1].keys()
    # a key bias has no gradient (softmax ignores it): Adam turns its rounding noise into steps
    for key in [key for key in weights[0] if not key.endswith("k_proj.bias")]:
        torch.testing.assert_close(weights[1][key], weights[0][key], atol=1e-5, rtol=0, msg=key)


@pytest.mark.slow
def test_siglip_caption_caption_batches_train_a_scale_and_bias_of_their_own(base, tmp_path):
    """Under SigLIP's loss a caption-caption step's logits are cosine x 10 - 10 (SigLIP's
    start), not the checkpoint's image-text scale and bias: the first step's loss equals
    the sigmoid loss computed from transformers' own text embeddings of that batch, the
    checkpoint's scale and bias get no gradient from such batches, and the trained pair is
    recorded in model.json. CLIP keeps InfoNCE with the shared temperature."""
    from transformers import AutoModel, AutoTokenizer

    from hybridbatch.batches.sampling import iter_batches
    from hybridbatch.models.dual_encoder import features
    from hybridbatch.train.image_text import train_lit

    family, _, base_dir = base
    params = dual_encoder_lit_inputs(base, tmp_path)
    batches = tmp_path / "batches"
    build_image_text_batches(plan({"weights": {CAPTION_CAPTION: 1.0}}, 3), tmp_path / "corpus/train", batches)
    trainer = {"validation_every": None, "precision": "fp32", "mini_batch": None}
    train_lit(params | {"trainer": trainer}, base_dir, tmp_path / "features", batches, None, tmp_path / "out")
    log = pd.read_csv(tmp_path / "out/training_log.csv")
    reference, trained = (AutoModel.from_pretrained(str(path)).eval() for path in (base_dir, tmp_path / "out"))
    description = json.loads((tmp_path / "out/model.json").read_text())
    if family != "siglip":
        assert "caption_caption_logit_scale" not in description
        return
    torch.testing.assert_close(trained.logit_scale, reference.logit_scale, rtol=0, atol=0)
    torch.testing.assert_close(trained.logit_bias, reference.logit_bias, rtol=0, atol=0)
    assert description["caption_caption_logit_scale"] != pytest.approx(10.0, abs=1e-6)
    assert description["caption_caption_logit_bias"] != pytest.approx(-10.0, abs=1e-6)
    _, _, first = next(iter_batches(sorted(batches.glob("shard-*.parquet"))))
    rows = first.to_pydict()
    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    length = reference.config.text_config.max_position_embeddings
    with torch.no_grad():
        embedded = [
            torch.nn.functional.normalize(
                features(
                    reference.get_text_features(
                        input_ids=tokenizer(
                            texts, padding="max_length", truncation=True, max_length=length, return_tensors="pt"
                        )["input_ids"]
                    )
                ),
                dim=-1,
            )
            for texts in (rows["query"], rows["positive"])
        ]
    logits = embedded[0] @ embedded[1].T * 10.0 - 10.0
    signs = 2 * torch.eye(len(logits)) - 1
    expected = -torch.nn.functional.logsigmoid(signs * logits).sum(dim=1).mean()
    assert log.loss[0] == pytest.approx(float(expected), rel=1e-5)
