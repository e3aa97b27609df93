"""Train stage: InfoNCE with in-batch (and hard) negatives over the audited batch shards."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from .batching import RELEVANCE, iter_batches
from .encoders import Encoder
from .objectives import info_nce


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


def train(params: dict, base_dir: str | Path, batch_dir: str | Path, out_dir: str | Path) -> pd.DataFrame:
    """Fine-tune the model in `base_dir` on the shards of `batch_dir`, in their order."""
    config, model_params = params["training"], params["model"]
    torch.manual_seed(config["seed"])
    batch_dir, out_dir = Path(batch_dir), Path(out_dir)
    shards = sorted(batch_dir.glob("shard-*.parquet"))
    total = json.loads((batch_dir / "stats.json").read_text())["batches"]
    if not shards or total == 0:
        raise ValueError(f"{batch_dir}: no batch shards to train on")
    relevant = read_relevance(batch_dir / RELEVANCE)
    encoder = Encoder(base_dir, model_params)
    if config["freeze_embeddings"]:
        encoder.transformer.get_input_embeddings().weight.requires_grad_(False)
    trainable = [p for p in encoder.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config["learning_rate"], weight_decay=config["weight_decay"])
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config["warmup_fraction"] * total), total)
    encoder.model.train()
    log = []
    started = time.perf_counter()
    for step, (batch_id, batch_type, batch) in enumerate(tqdm(iter_batches(shards), total=total, desc="train")):
        rows = batch.to_pydict()
        hard = [i for i, negative in enumerate(rows["negative_pid"]) if negative is not None]
        candidates = rows["positive"] + [rows["negative"][i] for i in hard]
        candidate_pids = rows["pid"] + [rows["negative_pid"][i] for i in hard]
        conflicts, duplicates = false_negatives(rows["qid"], candidate_pids, candidates, relevant)
        loss = info_nce(
            encoder.embed(rows["query"], "query"),
            encoder.embed(candidates, "passage"),
            conflicts | duplicates,
            config["temperature"],
            config["symmetric"],
        )
        optimisation_step(loss, optimizer, scheduler, batch_dir, batch_id, step)
        log.append((step, batch_id, batch_type, loss.item(), scheduler.get_last_lr()[0], int(conflicts.sum()),
                    int(duplicates.sum()), time.perf_counter() - started))
    encoder.save(out_dir)
    return write_training_log(log, ["step", "batch_id", "batch_type", "loss", "learning_rate", "masked_conflicts",
                                    "masked_duplicates", "seconds"], out_dir)


def optimisation_step(loss: torch.Tensor, optimizer, scheduler, batch_dir: Path, batch_id: int, step: int) -> None:
    """Backward, step and schedule, refusing a loss that is not finite (naming the batch)."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{batch_dir}: loss is {loss.item()} at batch {batch_id} (step {step})")
    loss.backward()
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def write_training_log(log: list[tuple], columns: list[str], out_dir: Path) -> pd.DataFrame:
    """training_log.csv; a warning when the loss had to mask relevant candidates."""
    frame = pd.DataFrame(log, columns=columns)
    if frame.masked_conflicts.any():
        logging.warning("%d relevant candidates were masked in the loss (the batches should hold none)",
                        int(frame.masked_conflicts.sum()))
    frame.to_csv(out_dir / "training_log.csv", index=False)
    return frame
