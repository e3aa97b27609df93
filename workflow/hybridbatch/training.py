"""Train stage: InfoNCE with in-batch (and hard) negatives over the audited batch shards."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from .batching import iter_batches
from .encoders import Encoder


def false_negatives(query_items: list[str], candidate_items: list[str], candidate_texts: list[str]) -> torch.Tensor:
    """mask[i, j]: candidate j is not query i's positive (candidate i) but is of query
    i's item (a translation of its positive) or has the positive's very text."""
    n = len(query_items)
    mask = torch.tensor(
        [
            [item == own or text == candidate_texts[i] for item, text in zip(candidate_items, candidate_texts)]
            for i, own in enumerate(query_items)
        ]
    )
    mask[torch.arange(n), torch.arange(n)] = False
    return mask


def info_nce(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    false_negative_mask: torch.Tensor,
    temperature: float,
    symmetric: bool = False,
) -> torch.Tensor:
    """Query i's positive is candidate i; every other candidate is a negative, except
    those masked as false negatives."""
    n = queries.shape[0]
    scores = queries @ candidates.T / temperature
    scores = scores.masked_fill(false_negative_mask.to(scores.device), float("-inf"))
    labels = torch.arange(n, device=scores.device)
    loss = torch.nn.functional.cross_entropy(scores, labels)
    if symmetric:
        loss = (loss + torch.nn.functional.cross_entropy(scores[:, :n].T, labels)) / 2
    return loss


def train(params: dict, base_dir: str | Path, batch_dir: str | Path, out_dir: str | Path) -> pd.DataFrame:
    """Fine-tune the model in `base_dir` on the shards of `batch_dir`, in their order."""
    config, model_params = params["training"], params["model"]
    torch.manual_seed(config["seed"])
    batch_dir, out_dir = Path(batch_dir), Path(out_dir)
    shards = sorted(batch_dir.glob("shard-*.parquet"))
    total = json.loads((batch_dir / "stats.json").read_text())["batches"]
    if not shards or total == 0:
        raise ValueError(f"{batch_dir}: no batch shards to train on")
    encoder = Encoder(base_dir, model_params)
    if config["freeze_embeddings"]:
        encoder.model.get_input_embeddings().weight.requires_grad_(False)
    trainable = [p for p in encoder.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config["learning_rate"], weight_decay=config["weight_decay"])
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config["warmup_fraction"] * total), total)
    encoder.model.train()
    log = []
    started = time.perf_counter()
    for step, (batch_id, batch_type, batch) in enumerate(tqdm(iter_batches(shards), total=total, desc="train")):
        rows = batch.to_pydict()
        hard = [i for i, negative in enumerate(rows["negative"]) if negative is not None]
        candidates = rows["positive"] + [rows["negative"][i] for i in hard]
        candidate_items = rows["item_id"] + [rows["negative_item_id"][i] for i in hard]
        loss = info_nce(
            encoder.embed(rows["query"], "query"),
            encoder.embed(candidates, "passage"),
            false_negatives(rows["item_id"], candidate_items, candidates),
            config["temperature"],
            config["symmetric"],
        )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{batch_dir}: loss is {loss.item()} at batch {batch_id} (step {step})")
        loss.backward()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        log.append((step, batch_id, batch_type, loss.item(), scheduler.get_last_lr()[0], time.perf_counter() - started))
    encoder.save(out_dir)
    frame = pd.DataFrame(log, columns=["step", "batch_id", "batch_type", "loss", "learning_rate", "seconds"])
    frame.to_csv(out_dir / "training_log.csv", index=False)
    return frame
