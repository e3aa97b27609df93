"""LiT training of the image-text track (models: image_text_model.py): the image tower is
locked, so its features come from the cached features stage; the text tower (all or its
top N layers), its projection (or the image projection of a text-only tower) and, if
learnable, the temperature (and a SigLIP bias) train. The objective is the config's, or
the model family's own (SigLIP: sigmoid); caption-caption batches use InfoNCE, or the
sigmoid loss over text-text pairs when that is the objective."""

from __future__ import annotations

from pathlib import Path

import torch

from .batching import RELEVANCE, iter_batches
from .image_text_batches import CAPTION_CAPTION
from .image_text_model import read_features, start_model
from .objectives import OBJECTIVES
from .trainer import Step, Trainer, TrainerSettings, parameter_groups
from .training import batch_shards, read_relevance, run_fingerprint, validation_shards, warn_masked_conflicts

LAYERS_KEY = "image_text.training.trainable_text_layers"


def caption_false_negatives(rows: dict, image_batch: bool, relevant_to: dict[str, set[str]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(relevant, duplicate) masks over captions x targets, where caption i's positive is
    target i. Relevant: the qrels make target j relevant to caption i (an image, or a
    caption sharing a relevant image). Duplicate: caption j has caption i's very text
    (in image batches, where the image-to-text direction ranks captions) or target j has
    target i's text (caption-caption batches). Neither is ever a negative."""
    n = len(rows["qid"])
    mine = [relevant_to.get(qid, set()) for qid in rows["qid"]]
    if image_batch:
        relevant = [[pid in images for pid in rows["pid"]] for images in mine]
        texts = rows["query"]
    else:
        targets = [relevant_to.get(pid, set()) for pid in rows["pid"]]
        relevant = [[bool(images & theirs) for theirs in targets] for images in mine]
        texts = rows["positive"]
    own = torch.eye(n, dtype=torch.bool)
    relevant = torch.tensor(relevant, dtype=torch.bool) & ~own
    duplicate = torch.tensor([[a == b for b in texts] for a in texts], dtype=torch.bool) & ~own & ~relevant
    return relevant, duplicate


def relevance_by_caption(pairs: set[tuple[str, str]]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for qid, pid in pairs:
        out.setdefault(qid, set()).add(pid)
    return out


def train_lit(params: dict, base: str | Path, features: str | Path, batches: str | Path, out: str | Path) -> dict:
    """Train the text tower and image projection on the batch shards in `batches`, the
    image features in `features/train.parquet`, from the text model in `base`."""
    config, batch_dir, out_dir = params["lit"], Path(batches), Path(out)
    settings = TrainerSettings.from_params(params.get("trainer"))
    shards, total = batch_shards(batch_dir)
    row_of, image_features = read_features(Path(features) / "train.parquet")
    relevant_to = relevance_by_caption(read_relevance(batch_dir / RELEVANCE))
    device = settings.resolve_device()
    torch.manual_seed(params["seed"] if settings.init_seed is None else settings.init_seed)  # same start for every strategy
    model = start_model(base, params["text_model"], image_features.shape[1], config["temperature"],
                        config["learnable_temperature"], device)
    model.unfreeze(config["trainable_text_layers"], LAYERS_KEY)
    named = model.trainable()
    rates = lambda name: config["projection_learning_rate"] if model.is_projection(name) else config["learning_rate"]  # noqa: E731
    trainer = Trainer(settings, named, parameter_groups(named, rates, config["weight_decay"]), config["warmup_fraction"],
                      total, model.modules_to_train(), device)
    objective_name = config["objective"] or model.default_objective
    objective = OBJECTIVES.lookup(objective_name, "image_text.training.objective")
    text_to_text = objective if objective_name == "sigmoid" else OBJECTIVES.lookup("info-nce", "lit")

    def make_step(batch_type: str, batch) -> Step:
        rows = batch.to_pydict()
        image_batch = batch_type != CAPTION_CAPTION
        conflicts, duplicates = caption_false_negatives(rows, image_batch, relevant_to)
        mask = conflicts | duplicates
        if image_batch:
            missing = [pid for pid in rows["pid"] if pid not in row_of]
            if missing:
                raise KeyError(f"{features}/train.parquet: no features for images {missing[:3]}")
            targets = (lambda rows_: model.embed_images(image_features[rows_]), [row_of[pid] for pid in rows["pid"]])
        else:
            targets = (model.embed_texts, rows["positive"])
        loss_of = objective if image_batch else text_to_text
        return Step(
            sides=[(model.embed_texts, rows["query"]), targets],
            loss=lambda e: loss_of(e[0], e[1], mask, model.temperature, model.bias),
            examples=len(rows["qid"]),
            notes=(float(model.temperature.detach()), int(conflicts.sum()), int(duplicates.sum())),
        )

    validation = [make_step(kind, batch) for _, kind, batch in iter_batches(validation_shards(batch_dir))]
    summary = trainer.fit(lambda: iter_batches(shards), make_step, validation, out_dir,
                          run_fingerprint(params, base, batch_dir) | {"features": str(features)},
                          ["temperature", "masked_conflicts", "masked_duplicates"], str(batch_dir), save=lambda: model.save(
                              out_dir, {"image_tower": params["image_tower"], "text_model": params["text_model_name"],
                                        "image_dim": image_features.shape[1], "objective": objective_name}))
    warn_masked_conflicts(out_dir)
    return summary
