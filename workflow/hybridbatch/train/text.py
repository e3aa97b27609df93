"""Train stage of the text track: InfoNCE with in-batch (and hard) negatives over the
audited batch shards (the runner: runner.py; the loop, checkpoints, validation and
GradCache: loop.py)."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TypedDict

from hybridbatch.models.encoders import Encoder
from hybridbatch.train.loop import Side, Step, parameter_groups
from hybridbatch.train.masks import Relevance, text_false_negatives
from hybridbatch.train.objectives import info_nce
from hybridbatch.train.runner import Task, run_training


class TrainParams(TypedDict):
    """The config's `training` section with the run's seed, its `trainer` section, and the
    models entry trained."""

    training: dict
    trainer: dict
    model: dict


def train(params: TrainParams, base_dir: str | Path, batch_dir: str | Path, out_dir: str | Path) -> dict:
    """Fine-tune the model in `base_dir` on the shards of `batch_dir`, in their order."""
    config, model_params = params["training"], params["model"]

    def build_task(device: str, relevance: Relevance) -> Task:
        encoder = Encoder(base_dir, model_params, device=device)
        if config["freeze_embeddings"]:
            encoder.transformer.get_input_embeddings().weight.requires_grad_(False)
        named = {name: p for name, p in encoder.model.named_parameters() if p.requires_grad}

        def step(batch_type: str, batch) -> Step:
            rows = batch.to_pydict()
            hard = [i for i, negative in enumerate(rows["negative_pid"]) if negative is not None]
            candidates = rows["positive"] + [rows["negative"][i] for i in hard]
            candidate_pids = rows["pid"] + [rows["negative_pid"][i] for i in hard]
            conflicts, duplicates = text_false_negatives(rows["qid"], candidate_pids, candidates, relevance)
            mask = conflicts | duplicates
            return Step(
                sides=[
                    Side(partial(encoder.embed, kind="query"), rows["query"]),
                    Side(partial(encoder.embed, kind="passage"), candidates),
                ],
                loss=lambda e: info_nce(e[0], e[1], mask, config["temperature"], symmetric=config["symmetric"]),
                examples=len(rows["qid"]),
                notes=(int(conflicts.sum()), int(duplicates.sum())),
            )

        return Task(
            named,
            parameter_groups(named, lambda _: config["learning_rate"], config["weight_decay"]),
            [encoder.model],
            step,
            ["masked_conflicts", "masked_duplicates"],
            lambda: encoder.save(Path(out_dir)),
        )

    return run_training(params, config["seed"], config["warmup_fraction"], base_dir, batch_dir, out_dir, build_task)
