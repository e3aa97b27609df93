"""Train stage of the text track: InfoNCE with in-batch (and hard) negatives over the
audited batch shards (the runner: runner.py; the loop, checkpoints, validation and
GradCache: loop.py)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TypedDict

from hybridbatch.models.encoders import Encoder, ModelEntry
from hybridbatch.models.packed_encoder import PackedEncoder, load_encoder
from hybridbatch.train.loop import Side, Step, TrainerSection, parameter_groups
from hybridbatch.train.masks import Relevance, text_false_negatives
from hybridbatch.train.objectives import info_nce
from hybridbatch.train.runner import Task, run_training


class TextTraining(TypedDict):
    """The config's `training` section and the run's seed."""

    learning_rate: float
    weight_decay: float
    temperature: float
    symmetric: bool
    warmup_fraction: float
    freeze_embeddings: bool
    seed: int


class TrainParams(TypedDict):
    """The config's `training` section with the run's seed, its `trainer` section, and the
    models entry trained."""

    training: TextTraining
    trainer: TrainerSection
    model: ModelEntry


class TextSteps:
    """How a batch of the text track becomes a Step: queries against the batch's positives
    and hard negatives under InfoNCE, the candidates the qrels make relevant to a query
    (and repeated texts) masked."""

    log_columns = ["masked_conflicts", "masked_duplicates"]

    def __init__(self, encoder: Encoder | PackedEncoder, relevance: Relevance, temperature: float, symmetric: bool):
        self.encoder, self.relevance, self.temperature, self.symmetric = encoder, relevance, temperature, symmetric

    def __call__(self, batch_type: str, batch) -> Step:
        rows = batch.to_pydict()
        hard = [i for i, negative in enumerate(rows["negative_pid"]) if negative is not None]
        candidates = rows["positive"] + [rows["negative"][i] for i in hard]
        candidate_pids = rows["pid"] + [rows["negative_pid"][i] for i in hard]
        conflicts, duplicates = text_false_negatives(rows["qid"], candidate_pids, candidates, self.relevance)
        mask = conflicts | duplicates
        return Step(
            sides=[
                Side(partial(self.encoder.embed, kind="query"), rows["query"]),
                Side(partial(self.encoder.embed, kind="passage"), candidates),
            ],
            loss=lambda e: info_nce(e[0], e[1], mask, self.temperature, symmetric=self.symmetric),
            examples=len(rows["qid"]),
            notes={"masked_conflicts": int(conflicts.sum()), "masked_duplicates": int(duplicates.sum())},
            ids=(rows["qid"], candidate_pids),
        )


def train(params: TrainParams, base: str | Path, batches: str | Path, out: str | Path) -> dict:
    """Fine-tune the model in `base` on the shards of `batches`, in their order."""
    training, model_params = params["training"], params["model"]

    def build_task(device: str, relevance: Relevance) -> Task:
        encoder = load_encoder(base, model_params, device=device)
        if training["freeze_embeddings"]:
            encoder.transformer.get_input_embeddings().weight.requires_grad_(False)
        named = {name: p for name, p in encoder.model.named_parameters() if p.requires_grad}
        steps = TextSteps(encoder, relevance, training["temperature"], training["symmetric"])
        return Task(
            named,
            parameter_groups(named, lambda _: training["learning_rate"], training["weight_decay"]),
            [encoder.model],
            steps,
            steps.log_columns,
            lambda: encoder.save(Path(out)),
        )

    return run_training(params, training["seed"], training["warmup_fraction"], base, batches, out, build_task)
