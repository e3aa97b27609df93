"""Peak memory of one training step (text InfoNCE, query + positive + hard negative per
example) against batch size, with and without GradCache (`trainer.mini_batch`).

    .venv/bin/python benchmarks/gradcache_memory.py [--device cpu|cuda] [--sizes 32 128 512] [--mini-batch 32]

The encoder is a random BERT (4 layers, hidden 256, texts of 64 tokens) built like the
tests' tiny model from a small CLDR corpus. Each configuration runs in its own process
(on CPU: peak RSS above the process's RSS before its only step); on CUDA,
torch.cuda.max_memory_allocated above the allocation before the step. Prints one row per
configuration and the ratio of the largest to the smallest batch's peak. On CPU the
optimizer state (allocated in the measured step) is included: a constant across sizes.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))

MODEL = {"source": {"kind": "random", "corpus": "c", "vocab_size": 2000, "hidden_size": 256, "layers": 4, "heads": 4,
                    "seed": 0}, "pooling": "mean", "query_prefix": "query: ", "passage_prefix": "passage: ",
         "max_length": 64}  # fmt: skip


def build_model(root: Path, params: dict = MODEL) -> Path:
    from hybridbatch import corpora
    from hybridbatch.corpora import prepare
    from hybridbatch.models.base_model import build_base_model

    corpus = {"source": "cldr", "languages": ["en", "de", "ru", "zh"], "test_fraction": 0.3, "split_seed": 1}
    corpora.download(corpus, root / "raw")
    prepare.prepare(corpus, root / "raw", root / "corpus")
    build_base_model(params, root / "corpus" / "train", root / "model")
    return root / "model"


def trainer_and_step(
    model_dir: str | Path, params: dict, batch: int, device: str, varied: bool = False, packed: bool = True, **settings
):
    """A Trainer over the encoder in `model_dir` and one text InfoNCE step of `batch`
    queries, each with a positive and a hard negative of 64 tokens (`varied`: 8 to 64
    words, as real texts; `packed` False: the padded forward)."""
    import torch

    from hybridbatch.models.encoders import Encoder
    from hybridbatch.train.loop import Side, Step, Trainer, TrainerSettings, parameter_groups
    from hybridbatch.train.objectives import info_nce

    torch.manual_seed(0)
    encoder = Encoder(model_dir, params, device=device, packed=packed)
    named = {n: p for n, p in encoder.model.named_parameters() if p.requires_grad}
    trainer = Trainer(
        TrainerSettings(**settings),
        named,
        parameter_groups(named, lambda _: 1e-4, 0.01),
        0.0,
        100,
        [encoder.model],
        device,
    )
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    length = (lambda i: 8 + (i * 37) % 57) if varied else (lambda i: 80)  # noqa: E731  (80 words: truncated to 64 tokens)
    text = lambda i: " ".join(words[(i + j) % len(words)] for j in range(length(i)))  # noqa: E731
    mask = torch.zeros(batch, 2 * batch, dtype=torch.bool)
    step = Step(
        [
            Side(partial(encoder.embed, kind="query"), [text(i) for i in range(batch)]),
            Side(partial(encoder.embed, kind="passage"), [text(i + 1) for i in range(2 * batch)]),
        ],
        lambda e: info_nce(e[0], e[1], mask, 0.05),
        batch,
    )
    return trainer, step


def one_step(model_dir: str, batch: int, mini_batch: int | None, device: str) -> float:
    """MB above the baseline that one optimisation step needs."""
    import torch

    trainer, step = trainer_and_step(model_dir, MODEL, batch, device, mini_batch=mini_batch, precision="fp32")
    if device == "cuda":
        trainer.optimise(step, "warm-up")  # optimizer state and kernels allocated before measuring
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        trainer.optimise(step, "measured")
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    base = current_rss_mb()  # a fresh process: ru_maxrss has seen no step yet (the Adam state counts in)
    trainer.optimise(step, "measured")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base


def current_rss_mb() -> float:
    """The resident set now (Linux /proc)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--mini-batch", type=int, default=32)
    parser.add_argument("--one", nargs=3, help=argparse.SUPPRESS)  # model_dir batch mini_batch: a child run
    args = parser.parse_args()
    if args.one:
        model_dir, batch, mini = args.one
        print(json.dumps(one_step(model_dir, int(batch), int(mini) or None, args.device)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_model(Path(tmp))
        print(f"{'batch':>6} {'mini_batch':>10} {'peak MB':>9}  ({args.device})")
        peaks: dict[int, list[float]] = {}
        for mini in (0, args.mini_batch):
            for size in args.sizes:
                child = subprocess.run(
                    [sys.executable, __file__, "--device", args.device, "--one", str(model_dir), str(size), str(mini)],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                peak = json.loads(child.stdout.strip().splitlines()[-1])
                peaks.setdefault(mini, []).append(peak)
                print(f"{size:>6} {mini or '-':>10} {peak:>9.0f}", flush=True)
        for mini, values in peaks.items():
            label = f"GradCache mini_batch {mini}" if mini else "no GradCache"
            print(f"{label}: peak at batch {args.sizes[-1]} / at batch {args.sizes[0]} = {values[-1] / values[0]:.2f}x")


if __name__ == "__main__":
    main()
