"""LiT training of the image-text track (models: models/image_text.py): the image tower is
locked, so its features come from the cached features stage; the text tower (all or its
top N layers), its projection (or the image projection of a text-only tower) and, if
learnable, the temperature (and a SigLIP bias) train. The objective is the config's, or
the model family's own (SigLIP: sigmoid); caption-caption batches use InfoNCE, or the
sigmoid loss over text-text pairs when that is the objective."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict

from hybridbatch.batches.image_text import CAPTION_CAPTION
from hybridbatch.models.caption_states import STATES, CaptionStates
from hybridbatch.models.encoders import weights_sha256
from hybridbatch.models.image_text import LAYERS_KEY, read_features, start_model
from hybridbatch.train.loop import Side, Step, parameter_groups
from hybridbatch.train.masks import Relevance, caption_false_negatives
from hybridbatch.train.objectives import OBJECTIVES
from hybridbatch.train.runner import Task, run_training


class LitParams(TypedDict):
    """The config's `image_text.training` section (`lit`), its `trainer` section, the run's
    seed, the text model's entry and name, and the image tower's name."""

    lit: dict
    trainer: dict
    seed: int
    text_model: dict
    text_model_name: str
    image_tower: str


def train_lit(
    params: LitParams,
    base: str | Path,
    features: str | Path,
    batches: str | Path,
    states: str | Path | None,
    out: str | Path,
) -> dict:
    """Train the text tower and image projection on the batch shards in `batches`, the
    image features in `features/train.parquet`, from the text model in `base`; its frozen
    layers' outputs read from the caption states in `states`, when given."""
    config = params["lit"]

    def build_task(device: str, relevance: Relevance) -> Task:
        row_of, image_features = read_features(Path(features) / "train.parquet")
        model = start_model(
            base,
            params["text_model"],
            image_features.shape[1],
            config["temperature"],
            config["learnable_temperature"],
            device,
        )  # the same start for every strategy
        model.unfreeze(config["trainable_text_layers"], LAYERS_KEY)
        if states:
            model.use_states(CaptionStates(states))
        named = model.trainable()

        def rates(name: str) -> float:
            return config["projection_learning_rate"] if model.is_projection(name) else config["learning_rate"]

        objective_name = config["objective"] or model.default_objective
        objective = OBJECTIVES.lookup(objective_name, "image_text.training.objective")
        text_to_text = objective if objective_name == "sigmoid" else OBJECTIVES.lookup("info-nce", "lit")

        def step(batch_type: str, batch) -> Step:
            rows = batch.to_pydict()
            image_batch = batch_type != CAPTION_CAPTION
            conflicts, duplicates = caption_false_negatives(rows, image_batch, relevance)
            mask = conflicts | duplicates
            if image_batch:
                missing = [pid for pid in rows["pid"] if pid not in row_of]
                if missing:
                    raise KeyError(f"{features}/train.parquet: no features for images {missing[:3]}")
                targets = Side(
                    lambda rows_: model.embed_images(image_features[rows_]),
                    [row_of[pid] for pid in rows["pid"]],
                    locked=model.images_locked,
                )
            else:
                targets = Side(model.embed_texts, rows["positive"])
            loss_of = objective if image_batch else text_to_text
            return Step(
                sides=[Side(model.embed_texts, rows["query"]), targets],
                loss=lambda e: loss_of(e[0], e[1], mask, model.temperature, model.bias),
                examples=len(rows["qid"]),
                notes=(float(model.temperature.detach()), int(conflicts.sum()), int(duplicates.sum())),
            )

        description = {
            "image_tower": params["image_tower"],
            "text_model": params["text_model_name"],
            "image_dim": image_features.shape[1],
            "objective": objective_name,
        }
        return Task(
            named,
            parameter_groups(named, rates, config["weight_decay"]),
            model.modules_to_train(),
            step,
            ["temperature", "masked_conflicts", "masked_duplicates"],
            lambda: model.save(Path(out), description),
        )

    inputs = {"features": str(features), "states": weights_sha256(Path(states) / STATES) if states else None}
    return run_training(params, params["seed"], config["warmup_fraction"], base, batches, out, build_task, inputs)
