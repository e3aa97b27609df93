"""LiT training of the image-text track (models: models/image_text.py): the image tower is
locked, so its features come from the cached features stage; the text tower (all or its
top N layers), its projection (or the image projection of a text-only tower) and, if
learnable, the temperature (and a SigLIP bias) train. The objective is the config's, or
the model family's own (SigLIP: sigmoid); caption-caption batches use InfoNCE with the
shared temperature, or, when the objective is the sigmoid loss, the sigmoid loss with a
logit scale and bias of their own (CaptionCaptionLogits)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import NotRequired, TypedDict

import pyarrow.parquet as pq
import torch

from hybridbatch.batch_types import BATCH_TYPES, IMAGES
from hybridbatch.batches.sampling import VALIDATION
from hybridbatch.models.caption_states import STATES, CaptionStates
from hybridbatch.models.encoders import ModelEntry, weights_sha256
from hybridbatch.models.image_text import LAYERS_KEY, read_features, start_model
from hybridbatch.train.loop import Side, Step, TrainerSection, parameter_groups
from hybridbatch.train.masks import Relevance, caption_false_negatives
from hybridbatch.train.objectives import OBJECTIVES
from hybridbatch.train.runner import Task, run_training


class CaptionCaptionLogits(torch.nn.Module):
    """The logit scale and bias of SigLIP's loss on caption-caption batches, started where
    SigLIP starts a new model (scale 10, bias -10) and trained like the image-text pair:
    text-text cosines run far above image-text ones, so under the checkpoint's image-text
    scale and bias every text-text negative would carry a large positive logit
    (docs/image_text.md, "SigLIP's loss on caption-caption batches")."""

    def __init__(self, learnable: bool, device: str):
        super().__init__()
        self.logit_scale = torch.nn.Parameter(torch.tensor(math.log(10.0), device=device), requires_grad=learnable)
        self.logit_bias = torch.nn.Parameter(torch.tensor(-10.0, device=device), requires_grad=learnable)

    @property
    def temperature(self) -> torch.Tensor:
        return 1 / self.logit_scale.exp()

    @property
    def bias(self) -> torch.Tensor:
        return self.logit_bias

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        return {f"caption_caption.{name}": p for name, p in self.named_parameters() if p.requires_grad}

    def describe(self) -> dict:
        return {
            "caption_caption_logit_scale": float(self.logit_scale.detach().exp()),
            "caption_caption_logit_bias": float(self.logit_bias.detach()),
        }


def batch_captions(batch_dir: Path) -> set[str]:
    """Every caption text of the training and validation batches: captions, and the target
    captions of caption-caption batches."""
    texts: set[str] = set()
    for shard in sorted(batch_dir.glob("shard-*.parquet")) + sorted((batch_dir / VALIDATION).glob("shard-*.parquet")):
        table = pq.read_table(shard, columns=["query", "positive"])
        texts.update(table.column("query").to_pylist())
        texts.update(text for text in table.column("positive").to_pylist() if text is not None)
    return texts


class LitTraining(TypedDict):
    """The config's `image_text.training` section."""

    objective: str | None
    trainable_text_layers: int | str
    caption_states: NotRequired[bool]
    learning_rate: float
    projection_learning_rate: float
    weight_decay: float
    warmup_fraction: float
    temperature: float | None
    learnable_temperature: bool


class LitParams(TypedDict):
    """The config's `image_text.training` section (`lit`), its `trainer` section, the run's
    seed, the text model's entry and name, and the image tower's name."""

    lit: LitTraining
    trainer: TrainerSection
    seed: int
    text_model: ModelEntry
    text_model_name: str
    image_tower: str


class LitSteps:
    """How a batch of the image-text track becomes a Step: captions against the batch's
    images (their cached features) under the objective, or, in a caption-caption batch,
    against the other captions (InfoNCE, or the sigmoid loss with logits of their own);
    pairs the qrels make relevant (and repeated texts) masked."""

    log_columns = ["temperature", "masked_conflicts", "masked_duplicates"]

    def __init__(self, model, features: tuple[Path, dict, torch.Tensor], relevance: Relevance, objective_name: str,
                 learnable: bool):  # fmt: skip
        """`features`: the training images' features file, each image's row in it, and the vectors."""
        self.model, self.relevance = model, relevance
        self.features, self.row_of, self.image_features = features
        self.objective = OBJECTIVES.lookup(objective_name, "image_text.training.objective")
        self.text_to_text, self.caption_logits = OBJECTIVES.lookup("info-nce", "lit"), None
        if objective_name == "sigmoid":  # learnable: the caption-caption scale and bias train with the model's
            self.text_to_text, self.caption_logits = self.objective, CaptionCaptionLogits(learnable, model.device)

    def trainable(self) -> dict[str, torch.nn.Parameter]:
        """The model's trainable parameters and the caption-caption logits' (if any)."""
        return self.model.trainable() | (self.caption_logits.trainable() if self.caption_logits else {})

    def describe(self) -> dict:
        """What the saved model records of the steps: the caption-caption scale and bias, as trained."""
        return self.caption_logits.describe() if self.caption_logits else {}

    def targets(self, rows: dict, image_batch: bool) -> Side:
        if not image_batch:
            return Side(self.model.embed_texts, rows["positive"])
        missing = [pid for pid in rows["pid"] if pid not in self.row_of]
        if missing:
            raise KeyError(f"{self.features}: no features for images {missing[:3]}")
        return Side(
            lambda rows_: self.model.embed_images(self.image_features[rows_]),
            [self.row_of[pid] for pid in rows["pid"]],
            locked=self.model.images_locked,
        )

    def __call__(self, batch_type: str, batch) -> Step:
        rows = batch.to_pydict()
        image_batch = BATCH_TYPES[batch_type].targets == IMAGES
        conflicts, duplicates = caption_false_negatives(rows, image_batch, self.relevance)
        mask = conflicts | duplicates
        loss_of, logits = (
            (self.objective, self.model) if image_batch else (self.text_to_text, self.caption_logits or self.model)
        )
        return Step(
            sides=[Side(self.model.embed_texts, rows["query"]), self.targets(rows, image_batch)],
            loss=lambda e: loss_of(e[0], e[1], mask, logits.temperature, logits.bias),
            examples=len(rows["qid"]),
            notes={
                "temperature": float(self.model.temperature.detach()),
                "masked_conflicts": int(conflicts.sum()),
                "masked_duplicates": int(duplicates.sum()),
            },
            ids=(rows["qid"], rows["pid"]),
        )


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
    lit = params["lit"]

    def build_task(device: str, relevance: Relevance) -> Task:
        row_of, image_features = read_features(Path(features) / "train.parquet")
        image_dim = image_features.shape[1]
        model = start_model(
            base,
            params["text_model"],
            image_dim,
            lit["temperature"],
            lit["learnable_temperature"],
            device,
            CaptionStates(states) if states else None,
        )  # the same start for every strategy
        model.unfreeze(lit["trainable_text_layers"], LAYERS_KEY)
        objective_name = lit["objective"] or model.default_objective
        training_features = (Path(features) / "train.parquet", row_of, image_features)
        steps = LitSteps(model, training_features, relevance, objective_name, lit["learnable_temperature"])
        named = steps.trainable()

        def rates(name: str) -> float:
            return lit["projection_learning_rate"] if model.is_projection(name) else lit["learning_rate"]

        description = {
            "image_tower": params["image_tower"],
            "text_model": params["text_model_name"],
            "image_dim": image_dim,
            "objective": objective_name,
        }
        return Task(
            named,
            parameter_groups(named, rates, lit["weight_decay"]),
            model.modules_to_train(),
            steps,
            steps.log_columns,
            lambda: model.save(Path(out), description | steps.describe()),
        )

    if states:
        CaptionStates(states).check_covers(batch_captions(Path(batches)), Path(batches))
    inputs = {"features": str(features), "states": weights_sha256(Path(states) / STATES) if states else None}
    return run_training(params, params["seed"], lit["warmup_fraction"], base, batches, out, build_task, inputs)
