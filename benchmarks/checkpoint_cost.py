"""What a training checkpoint costs at mSigLIP's size: the trainable text tower (about
85M parameters outside the frozen word embeddings), its AdamW moments and the best
validated copy, written and hashed by the loop's `Checkpoints.save`, against the run it
interrupts (steps x seconds per step, the step time given: a GPU's, measured or derived).

    .venv/bin/python benchmarks/checkpoint_cost.py                      # config/xm3600_hybrid.yaml's spacing
    .venv/bin/python benchmarks/checkpoint_cost.py --every 250 --step-seconds 0.2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "workflow"))
from hybridbatch.train.checkpoints import Checkpoints, RunState  # noqa: E402
from hybridbatch.train.loop import Trainer, TrainerSettings, parameter_groups  # noqa: E402


def main() -> None:
    shipped = yaml.safe_load((REPO / "config/xm3600_hybrid.yaml").read_text())
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parameters", type=float, default=85e6, help="trainable parameters")
    parser.add_argument("--steps", type=int, default=shipped["image_text"]["batching"]["steps"])
    parser.add_argument("--every", type=int, default=shipped["trainer"]["checkpoint_every"])
    parser.add_argument(
        "--step-seconds", type=float, default=0.11, help="one step of the run (default: 4.5e13 FLOP at 400 TFLOP/s)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    width = 768
    layers = max(1, round(args.parameters / (width * width)))
    named = {f"layer{i}.weight": torch.nn.Parameter(torch.randn(width, width)) for i in range(layers)}
    trainer = Trainer(TrainerSettings(), named, parameter_groups(named, lambda _: 1e-5, 0.0), 0.0, 10, [], "cpu")
    for parameter in named.values():
        parameter.grad = torch.randn_like(parameter)
    trainer.optimizer.step()  # the AdamW moments exist, as after any step
    state = RunState(step=args.every, best={name: p.detach().clone() for name, p in named.items()})
    with tempfile.TemporaryDirectory(dir=REPO) as scratch:
        checkpoints = Checkpoints(Path(scratch) / "checkpoints", {"run": "benchmark"}, keep=2)
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            checkpoints.save(trainer, state)
            seconds.append(time.perf_counter() - started)
            state.step += args.every
        size = sum(f.stat().st_size for f in checkpoints.existing()[0].iterdir()) / 2**30
    saved = min(seconds)
    count = (args.steps - 1) // args.every
    run = args.steps * args.step_seconds
    print(f"{layers * width * width / 1e6:.0f}M trainable parameters: a checkpoint of {size:.2f} GB in {saved:.1f} s")
    print(f"{count} checkpoints in a run of {args.steps} steps at {args.step_seconds} s: {count * saved:.0f} s of "
          f"{run:.0f} s, {100 * count * saved / run:.1f}% of the run")  # fmt: skip


if __name__ == "__main__":
    main()
