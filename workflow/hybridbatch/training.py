"""Train stage: InfoNCE with in-batch (and hard) negatives over the audited batch shards
(the loop, checkpoints, validation and GradCache: trainer.py)."""

from __future__ import annotations

import json
import logging
from functools import partial
from pathlib import Path

import pandas as pd
import torch

from .batching import RELEVANCE, VALIDATION, iter_batches
from .encoders import Encoder
from .objectives import info_nce
from .download import sha256_file
from .trainer import Step, Trainer, TrainerSettings, parameter_groups


def false_negatives(
    qids: list[str], candidate_pids: list[str], candidate_texts: list[str], relevant: set[tuple[str, str]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(relevant, duplicate) masks over queries x candidates, where query i's positive is
    candidate i: relevant[i, j] when (qid i, candidate j) is in the qrels (a conflict the
    batch builder should have kept out), duplicate[i, j] when candidate j has the very
    text of query i's positive. Neither is ever a negative."""
    n = len(qids)
    is_relevant = torch.tensor([[(qid, pid) in relevant for pid in candidate_pids] for qid in qids], dtype=torch.bool)
    duplicate = torch.tensor([[text == candidate_texts[i] for text in candidate_texts] for i in range(n)], dtype=torch.bool)
    own = torch.zeros_like(is_relevant)
    own[torch.arange(n), torch.arange(n)] = True
    return is_relevant & ~own, duplicate & ~own & ~is_relevant


def read_relevance(path: Path) -> set[tuple[str, str]]:
    from . import schema

    qrels = schema.read_table(path, schema.QRELS).to_pandas()
    qrels = qrels[qrels.relevance > 0]
    return set(zip(qrels.qid, qrels.pid))


def train(params: dict, base_dir: str | Path, batch_dir: str | Path, out_dir: str | Path) -> dict:
    """Fine-tune the model in `base_dir` on the shards of `batch_dir`, in their order
    (validated on `batch_dir/validation` when the batch stage held items out)."""
    config, model_params = params["training"], params["model"]
    settings = TrainerSettings.from_params(params.get("trainer"))
    batch_dir, out_dir = Path(batch_dir), Path(out_dir)
    shards, total = batch_shards(batch_dir)
    relevant = read_relevance(batch_dir / RELEVANCE)
    device = settings.resolve_device()
    torch.manual_seed(config["seed"] if settings.init_seed is None else settings.init_seed)
    encoder = Encoder(base_dir, model_params, device=device)
    if config["freeze_embeddings"]:
        encoder.transformer.get_input_embeddings().weight.requires_grad_(False)
    named = {name: p for name, p in encoder.model.named_parameters() if p.requires_grad}
    groups = parameter_groups(named, lambda _: config["learning_rate"], config["weight_decay"])
    trainer = Trainer(settings, named, groups, config["warmup_fraction"], total, [encoder.model], device)

    def make_step(batch_type: str, batch) -> Step:
        rows = batch.to_pydict()
        hard = [i for i, negative in enumerate(rows["negative_pid"]) if negative is not None]
        candidates = rows["positive"] + [rows["negative"][i] for i in hard]
        candidate_pids = rows["pid"] + [rows["negative_pid"][i] for i in hard]
        conflicts, duplicates = false_negatives(rows["qid"], candidate_pids, candidates, relevant)
        mask = conflicts | duplicates
        return Step(
            sides=[(partial(encoder.embed, kind="query"), rows["query"]), (partial(encoder.embed, kind="passage"), candidates)],
            loss=lambda e: info_nce(e[0], e[1], mask, config["temperature"], symmetric=config["symmetric"]),
            examples=len(rows["qid"]),
            notes=(int(conflicts.sum()), int(duplicates.sum())),
        )

    validation = [make_step(kind, batch) for _, kind, batch in iter_batches(validation_shards(batch_dir))]
    summary = trainer.fit(lambda: iter_batches(shards), make_step, validation, out_dir,
                          run_fingerprint(params, base_dir, batch_dir), ["masked_conflicts", "masked_duplicates"], str(batch_dir),
                          save=lambda: encoder.save(out_dir))
    warn_masked_conflicts(out_dir)
    return summary


def batch_shards(batch_dir: Path) -> tuple[list[Path], int]:
    """The training shards of a batch directory and their number of batches."""
    shards = sorted(batch_dir.glob("shard-*.parquet"))
    total = json.loads((batch_dir / "stats.json").read_text())["batches"]
    if not shards or total == 0:
        raise ValueError(f"{batch_dir}: no batch shards to train on")
    return shards, total


def validation_shards(batch_dir: Path) -> list[Path]:
    return sorted((batch_dir / VALIDATION).glob("shard-*.parquet"))


def run_fingerprint(params: dict, base: str | Path, batch_dir: Path) -> dict:
    """What a checkpoint must match to be resumed: the params and the exact inputs."""
    return {"params": params, "base": str(base), "batches": sha256_file(batch_dir / "stats.json")}


def warn_masked_conflicts(out_dir: Path) -> None:
    masked = pd.read_csv(out_dir / "training_log.csv").masked_conflicts.sum()
    if masked:
        logging.warning("%d relevant candidates were masked in the loss (the batches should hold none)", int(masked))
