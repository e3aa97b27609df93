"""The one training runner: both tracks read their batch shards, seed, build a task, and
hand it to the loop (loop.py). A task (text.py, image_text.py) owns what differs: its
model, its trainable parameters, how a batch becomes a step (masks and objective), and
how the trained model is saved."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from hybridbatch.artifacts.hashing import sha256_file
from hybridbatch.batches.sampling import RELEVANCE, VALIDATION, iter_batches
from hybridbatch.train.loop import Step, Trainer, TrainerSettings
from hybridbatch.train.masks import Relevance


@dataclass
class Task:
    """What a track trains and how: `step(batch_type, rows)` turns a batch into a Step."""

    named: dict[str, torch.nn.Parameter]
    groups: list[dict]
    modules: list[torch.nn.Module]
    step: Callable[[str, object], Step]
    log_columns: list[str]
    save: Callable[[], None]


def run_training(
    params: dict,
    seed: int,
    warmup_fraction: float,
    base: str | Path,
    batches: str | Path,
    out: str | Path,
    build_task: Callable[[str, Relevance], Task],
    fingerprint: dict | None = None,
) -> dict:
    """Train the task `build_task(device, relevance judgments)` makes on the shards of `batches`,
    in their order (validated on `batches/validation` when the batch stage held items out).
    The model is initialised under `seed`, or the trainer's `init_seed` when set."""
    settings = TrainerSettings.from_params(params.get("trainer"))
    batch_dir, out_dir = Path(batches), Path(out)
    shards, total = batch_shards(batch_dir)
    relevance = Relevance.read(batch_dir / RELEVANCE)
    device = settings.resolve_device()
    torch.manual_seed(seed if settings.init_seed is None else settings.init_seed)
    task = build_task(device, relevance)
    trainer = Trainer(settings, task.named, task.groups, warmup_fraction, total, task.modules, device, relevance)
    validation = [task.step(kind, batch) for _, kind, batch in iter_batches(validation_shards(batch_dir))]
    summary = trainer.fit(
        lambda: iter_batches(shards),
        task.step,
        validation,
        out_dir,
        run_fingerprint(params, base, batch_dir) | (fingerprint or {}),
        task.log_columns,
        str(batch_dir),
        save=task.save,
        summarise=lambda steps: {"examples_by_batch_type": examples_by_batch_type(shards, steps)},
    )
    warn_masked_conflicts(out_dir)
    return summary


def batch_shards(batch_dir: Path) -> tuple[list[Path], int]:
    """The training shards of a batch directory and their number of batches."""
    shards = sorted(batch_dir.glob("shard-*.parquet"))
    total = json.loads((batch_dir / "stats.json").read_text())["batches"]
    if not shards or total == 0:
        raise ValueError(f"{batch_dir}: no batch shards to train on")
    return shards, total


def examples_by_batch_type(shards: list[Path], steps: int) -> dict[str, int]:
    """The training examples (pairs) of each batch type in the first `steps` batches: what the
    saved model was trained on, as realised, not as the strategy's weights promise."""
    table = pd.concat(pd.read_parquet(shard, columns=["batch_id", "batch_type"]) for shard in sorted(shards))
    trained = table[table.batch_id.isin(pd.unique(table.batch_id)[:steps])]
    return {kind: int(n) for kind, n in trained.batch_type.value_counts().sort_index().items()}


def validation_shards(batch_dir: Path) -> list[Path]:
    return sorted((batch_dir / VALIDATION).glob("shard-*.parquet"))


def run_fingerprint(params: dict, base: str | Path, batch_dir: Path) -> dict:
    """What a checkpoint must match to be resumed: the params and the exact inputs."""
    return {"params": params, "base": str(base), "batches": sha256_file(batch_dir / "stats.json")}


def warn_masked_conflicts(out_dir: Path) -> None:
    masked = pd.read_csv(out_dir / "training_log.csv").masked_conflicts.sum()
    if masked:
        logging.warning("%d relevant candidates were masked in the loss (the batches should hold none)", int(masked))
