"""LiT training of the image-text track (model: image_text_model.py): the image tower is
locked, so its features come from the cached features stage; the text tower (all or its
top N layers), the image projection and, if learnable, the temperature train."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from .batching import RELEVANCE, iter_batches
from .encoders import Encoder
from .image_text_batches import CAPTION_CAPTION
from .image_text_model import ImageTextModel, read_features
from .objectives import OBJECTIVES
from .training import optimisation_step, read_relevance, write_training_log

LAYERS_KEY = "image_text.training.trainable_text_layers"


def unfreeze_top_layers(encoder: Encoder, layers: int | str) -> None:
    """Train the top `layers` transformer layers ('all': every layer); word embeddings stay."""
    transformer = encoder.transformer
    blocks = transformer.encoder.layer
    if layers != "all" and not 1 <= layers <= len(blocks):
        raise ValueError(f"config key {LAYERS_KEY}: {layers}, but the text tower has {len(blocks)} layers (1 to "
                         f"{len(blocks)}, or 'all')")
    for parameter in transformer.parameters():
        parameter.requires_grad_(layers == "all")
    transformer.get_input_embeddings().weight.requires_grad_(False)
    if layers != "all":
        for block in blocks[len(blocks) - layers :]:
            block.requires_grad_(True)


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


def train_lit(params: dict, base: str | Path, features: str | Path, batches: str | Path, out: str | Path) -> pd.DataFrame:
    """Train the text tower and image projection on the batch shards in `batches`, the
    image features in `features/train.parquet`, from the text model in `base`."""
    config, batch_dir, out_dir = params["lit"], Path(batches), Path(out)
    shards = sorted(batch_dir.glob("shard-*.parquet"))
    total = json.loads((batch_dir / "stats.json").read_text())["batches"]
    if not shards or total == 0:
        raise ValueError(f"{batch_dir}: no batch shards to train on")
    row_of, image_features = read_features(Path(features) / "train.parquet")
    relevant_to = relevance_by_caption(read_relevance(batch_dir / RELEVANCE))
    torch.manual_seed(params["seed"])  # same initialisation for every strategy of a seed
    model = ImageTextModel(Encoder(base, params["text_model"]), image_features.shape[1], config["temperature"],
                           config["learnable_temperature"])
    unfreeze_top_layers(model.text, config["trainable_text_layers"])
    text_parameters = [p for p in model.text.model.parameters() if p.requires_grad]
    head = config["projection_learning_rate"]
    optimizer = torch.optim.AdamW(
        [{"params": text_parameters, "lr": config["learning_rate"]},
         {"params": [model.image_projection.weight], "lr": head},
         {"params": [model.image_projection.bias, model.log_scale], "lr": head, "weight_decay": 0.0}],
        weight_decay=config["weight_decay"],
    )
    scheduler = get_linear_schedule_with_warmup(optimizer, int(config["warmup_fraction"] * total), total)
    objective = OBJECTIVES.lookup(config["objective"], "lit.objective")
    model.text.model.train()
    log, started = [], time.perf_counter()
    for step, (batch_id, batch_type, batch) in enumerate(tqdm(iter_batches(shards), total=total, desc="train", mininterval=5)):
        rows = batch.to_pydict()
        captions = model.embed_texts(rows["query"])
        if batch_type == CAPTION_CAPTION:
            targets, loss_of = model.embed_texts(rows["positive"]), OBJECTIVES.lookup("info-nce", "lit")
        else:
            missing = [pid for pid in rows["pid"] if pid not in row_of]
            if missing:
                raise KeyError(f"{features}/train.parquet: no features for images {missing[:3]}")
            targets = model.embed_images(image_features[[row_of[pid] for pid in rows["pid"]]])
            loss_of = objective
        conflicts, duplicates = caption_false_negatives(rows, batch_type != CAPTION_CAPTION, relevant_to)
        loss = loss_of(captions, targets, conflicts | duplicates, model.temperature)
        optimisation_step(loss, optimizer, scheduler, batch_dir, batch_id, step)
        log.append((step, batch_id, batch_type, loss.item(), scheduler.get_last_lr()[0], float(model.temperature.detach()),
                    int(conflicts.sum()), int(duplicates.sum()), time.perf_counter() - started))
    model.save(out_dir, {"image_tower": params["image_tower"], "text_model": params["text_model_name"],
                         "image_dim": image_features.shape[1], "objective": config["objective"]})
    return write_training_log(log, ["step", "batch_id", "batch_type", "loss", "learning_rate", "temperature",
                                    "masked_conflicts", "masked_duplicates", "seconds"], out_dir)
