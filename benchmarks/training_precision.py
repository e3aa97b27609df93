"""Training throughput on CUDA by precision (trainer.precision fp32 / bf16 / fp16) and
with GradCache, for a BERT-base-sized random encoder (12 layers, hidden 768, 64-token
texts; text InfoNCE with a hard negative per example).

    python benchmarks/training_precision.py [--batch 128] [--steps 10]

Times `Trainer.optimise` only (after two warm-up steps), synchronised; prints examples/s
per setting and the ratio to fp32; then bf16 on texts of varied length with the packed and
the padded forward pass.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gradcache_memory import MODEL, build_model, trainer_and_step  # noqa: E402

BASE = {**MODEL, "source": {**MODEL["source"], "hidden_size": 768, "layers": 12, "heads": 12}}


def throughput(
    model_dir: Path,
    batch: int,
    steps: int,
    precision: str,
    mini_batch: int | None,
    varied: bool = False,
    packed: bool = True,
) -> float:
    trainer, step = trainer_and_step(
        model_dir,
        BASE,
        batch,
        "cuda",
        varied,
        packed,
        precision=precision,
        mini_batch=mini_batch,
        gradient_clipping=1.0,
    )
    for _ in range(2):
        trainer.optimise(step, "warm-up")
    torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(steps):
        trainer.optimise(step, "timed")
    torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp), BASE)
        print(f"{torch.cuda.get_device_name()}, batch {args.batch} (x3 texts of 64 tokens), {args.steps} timed steps")
        reference = None
        for precision, mini in (("fp32", None), ("bf16", None), ("fp16", None), ("bf16", 32)):
            rate = throughput(model_dir, args.batch, args.steps, precision, mini)
            reference = reference or rate
            label = precision + (f" + GradCache {mini}" if mini else "")
            print(f"{label:>20}: {rate:8.0f} examples/s  ({rate / reference:.2f}x fp32)", flush=True)
        print("texts of 8 to 64 words (a padded batch is half padding):")
        for packed in (False, True):
            rate = throughput(model_dir, args.batch, args.steps, "bf16", None, varied=True, packed=packed)
            print(f"{'bf16, ' + ('packed' if packed else 'padded'):>20}: {rate:8.0f} examples/s", flush=True)


if __name__ == "__main__":
    main()
