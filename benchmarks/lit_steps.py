"""LiT step speed on the default run's artifacts: the same batches of one strategy, from
the same start, trained three ways in one run (one thread, as the workflow's LiT jobs):

* before: the whole text tower runs every step, every layer in train mode (dropout in
  the frozen layers too): LiT until 2026-12-04;
* whole: the whole tower runs every step, the frozen layers in eval mode: what LiT
  computes, without caption states;
* cached: the trainable layers run from the caption states (the workflow's LiT).

    .venv/bin/python benchmarks/lit_steps.py [--strategy mixed --seed 0 --steps 30]

Prints seconds per step (text tower, image projection, loss, backward and optimizer step
together), the ratios, and the largest difference between the whole and cached runs'
trained weights. Goal: cached at least 3x faster than before.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))
from hybridbatch.batches.sampling import iter_batches  # noqa: E402
from hybridbatch.models.caption_states import CaptionStates  # noqa: E402
from hybridbatch.models.image_text import LAYERS_KEY, read_features, start_model  # noqa: E402
from hybridbatch.names import ZERO_SHOT, artifact  # noqa: E402
from hybridbatch.train.objectives import symmetric_info_nce  # noqa: E402

MODES = ("before", "whole", "cached")


def train(mode: str, config: dict, batches: list, steps: int) -> tuple[float, dict[str, torch.Tensor]]:
    """Seconds per step over `steps` image-caption batches, and the trained weights."""
    section = config["image_text"]
    text_model = {**config["models"][section["text_model"]], "max_length": section["max_length"]}
    features_dir = REPO / artifact("features", tower=section["image_tower"], corpus=section["corpus"])
    row_of, features = read_features(features_dir / "train.parquet")
    torch.manual_seed(0)
    base = REPO / artifact("model", model=section["text_model"], variant=ZERO_SHOT)
    training = section["training"]
    model = start_model(base, text_model, features.shape[1], training["temperature"], False, "cpu")
    model.unfreeze(training["trainable_text_layers"], LAYERS_KEY)
    if mode == "before":
        model.text.model.train()
    else:
        for module in model.modules_to_train():
            module.train()
    if mode == "cached":
        model.use_states(CaptionStates(REPO / artifact("caption_states", corpus=section["corpus"], split="train")))
    named = model.trainable()
    optimizer = torch.optim.AdamW(list(named.values()), lr=training["learning_rate"], fused=True)
    torch.manual_seed(0)
    started = time.perf_counter()
    for rows in batches[:steps]:
        texts = model.embed_texts(rows["query"])
        images = model.embed_images(features[[row_of[pid] for pid in rows["pid"]]])
        mask = torch.zeros(len(texts), len(images), dtype=torch.bool)
        symmetric_info_nce(texts, images, mask, model.temperature).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return (time.perf_counter() - started) / steps, {k: v.detach().clone() for k, v in named.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO / "config.yaml"))
    parser.add_argument("--strategy", default="mixed", help="an image_text.strategies name of the config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = yaml.safe_load(Path(args.config).read_text())
    section = config["image_text"]
    batch_dir = REPO / artifact("image_text_batches", corpus=section["corpus"], strategy=args.strategy, seed=args.seed)
    shards = sorted(batch_dir.glob("shard-*.parquet"))
    if not shards:
        sys.exit(f"{batch_dir}: no batch shards; run the workflow first (make run)")
    image_batches = (rows for _, kind, rows in iter_batches(shards) if kind != "caption-caption")
    batches = [rows.to_pydict() for rows in itertools.islice(image_batches, args.steps + 1)]
    train(MODES[-1], config, batches, 1)  # warm-up: caches, allocator, thread pool
    seconds, weights = {}, {}
    for mode in MODES:
        seconds[mode], weights[mode] = train(mode, config, batches[1:], args.steps)
        print(f"{mode:>7}: {seconds[mode]:.3f} s/step ({args.steps} steps of {args.strategy}, seed {args.seed})")
    print(f"cached vs before: {seconds['before'] / seconds['cached']:.2f}x faster")
    print(f"cached vs whole:  {seconds['whole'] / seconds['cached']:.2f}x faster")
    difference = max((weights["cached"][k] - weights["whole"][k]).abs().max().item() for k in weights["whole"])
    print(f"largest difference between the whole and cached runs' weights: {difference:.2e}")


if __name__ == "__main__":
    main()
