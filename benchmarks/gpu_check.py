"""`make gpu-check`: every CUDA path of the workflow on tiny models, each compared with its CPU
result: the packed encoder (fp32, and under bf16 autocast as training runs it), a LiT step with
GradCache under bf16 autocast (loss and every gradient), the evaluation's score products, and
the locked image tower's features. Prints one row per path (largest difference, tolerance,
verdict) and exits 1 when one is out of tolerance; on a machine without CUDA it says so and
exits 0.

    .venv/bin/python benchmarks/gpu_check.py [--device cuda:0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch

TEXTS = [f"query {i}: {'multilingual retrieval ' * (i % 6)}{'ab' * i}" for i in range(24)]
LANGUAGES = ["en", "de"]
TINY_TEXT_MODEL = {
    "source": {"kind": "random", "corpus": "c", "vocab_size": 400, "hidden_size": 32, "layers": 2, "heads": 2,
               "seed": 0},
    "pooling": "mean",
    "query_prefix": "query: ",
    "passage_prefix": "passage: ",
    "max_length": 24,
}  # fmt: skip
IMAGE_TOWER = {
    "name": "efficientnet-lite0",
    "source": {"kind": "efficientnet-lite", "architecture": "efficientnet-lite0"},
    "image_size": 64,
    "batch_size": 8,
}
BF16 = 3e-2  # bf16 keeps 8 bits of mantissa: differences of a few 1e-3 on unit vectors


@dataclass(frozen=True)
class Check:
    path: str
    difference: float  # the largest absolute difference, relative to the CPU result's scale where named
    tolerance: float

    @property
    def passed(self) -> bool:
        return bool(self.difference <= self.tolerance)


def largest_difference(reference: np.ndarray, other: np.ndarray) -> float:
    return float(np.abs(np.asarray(reference, np.float64) - np.asarray(other, np.float64)).max())


def build_text_model(out_dir: Path) -> Path:
    """A 2-layer random BERT with a tokenizer trained on a small CLDR corpus (offline)."""
    from hybridbatch import corpora
    from hybridbatch.corpora import prepare
    from hybridbatch.models.base_model import build_base_model

    corpus = {"source": "cldr", "languages": LANGUAGES, "test_fraction": 0.3, "split_seed": 1}
    corpora.download(corpus, out_dir / "corpus/raw")
    prepare.prepare(corpus, out_dir / "corpus/raw", out_dir / "corpus")
    build_base_model(TINY_TEXT_MODEL, out_dir / "corpus/train", out_dir / "model")
    return out_dir / "model"


def packed_embeddings(model_dir: Path, device: str, dtype: torch.dtype | None) -> np.ndarray:
    """The stages' encoder (PackedEncoder), under autocast to `dtype` when given."""
    from hybridbatch.models.packed_encoder import load_encoder

    encoder = load_encoder(model_dir, TINY_TEXT_MODEL, device)
    encoder.eval()
    autocast = torch.autocast(device.split(":")[0], dtype=dtype, enabled=dtype is not None)
    with torch.no_grad(), autocast:
        return encoder.embed(TEXTS, "passage").float().cpu().numpy()


def lit_step(model_dir: Path, device: str, precision: str, mini_batch: int | None) -> tuple[float, dict]:
    """One LiT step's loss and gradients (text tower and image projection): symmetric InfoNCE
    over captions and projected locked image features, dropout off."""
    from hybridbatch.models.packed_encoder import load_encoder
    from hybridbatch.train.loop import Side, Step, Trainer, TrainerSettings, parameter_groups
    from hybridbatch.train.objectives import symmetric_info_nce

    torch.manual_seed(0)
    encoder = load_encoder(model_dir, TINY_TEXT_MODEL, device)
    encoder.eval()
    projection = torch.nn.Linear(12, encoder.dimension).to(device)
    features = torch.randn(len(TEXTS), 12, generator=torch.Generator().manual_seed(1)).to(device)
    named = {**{f"text.{k}": p for k, p in encoder.named_parameters()}, **dict(projection.named_parameters())}
    settings = TrainerSettings(precision=precision, mini_batch=mini_batch)
    trainer = Trainer(settings, named, parameter_groups(named, lambda _: 1e-3, 0.01), 0.0, 10, [encoder], device)
    images = lambda rows: torch.nn.functional.normalize(projection(features[rows]), dim=-1)  # noqa: E731
    step = Step(
        [Side(partial(encoder.embed, kind="query"), TEXTS), Side(images, list(range(len(TEXTS))))],
        lambda e: symmetric_info_nce(e[0], e[1], torch.zeros(len(TEXTS), len(TEXTS), dtype=torch.bool), 0.07),
        len(TEXTS),
    )
    loss = trainer.backward(step, "gpu check")
    return loss.item(), {name: p.grad.float().cpu().numpy() for name, p in named.items() if p.grad is not None}


def score_product(device: str | None) -> np.ndarray:
    """The image-text evaluation's caption x image product (evaluate/products.py)."""
    from hybridbatch.evaluate.products import product

    generator = np.random.default_rng(0)
    captions, images = (generator.standard_normal((n, 64)).astype(np.float32) for n in (300, 50))
    return product(captions, images, device)


def image_features(device: str) -> np.ndarray:
    """EfficientNet-Lite0 features of random images (the image_features stage's tower)."""
    from PIL import Image

    from hybridbatch.models.image_towers import build_tower

    generator = np.random.default_rng(0)
    images = [Image.fromarray(generator.integers(0, 256, (40, 40, 4), dtype=np.uint8), "RGBA") for _ in range(8)]
    tower = build_tower(IMAGE_TOWER).to(device)
    with torch.inference_mode():
        return tower(torch.stack([tower.preprocess(image) for image in images]).to(device)).cpu().numpy()


def run_checks(model_dir: Path, device: str, precision: str = "bf16") -> list[Check]:
    """Each path on `device` (`precision` where training autocasts) against the same on the CPU in fp32."""
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]
    reference = packed_embeddings(model_dir, "cpu", None)
    checks = [
        Check("packed encoder, fp32", largest_difference(reference, packed_embeddings(model_dir, device, None)), 1e-5),
        Check(
            f"packed encoder, {precision} autocast",
            largest_difference(reference, packed_embeddings(model_dir, device, dtype)),
            BF16 if dtype else 1e-5,
        ),
    ]
    cpu_loss, cpu_gradients = lit_step(model_dir, "cpu", "fp32", None)
    loss, gradients = lit_step(model_dir, device, precision, 8)
    checks.append(Check(f"LiT step loss, GradCache, {precision}", abs(loss - cpu_loss) / abs(cpu_loss), BF16))
    scale = max(np.abs(gradient).max() for gradient in cpu_gradients.values())  # of the largest gradient
    worst = max(largest_difference(cpu_gradients[name], gradients[name]) for name in cpu_gradients) / scale
    checks.append(Check(f"LiT step gradients, GradCache, {precision} (relative)", worst, BF16 if dtype else 1e-5))
    products = largest_difference(score_product(None), score_product(device))
    features = largest_difference(image_features("cpu"), image_features(device))
    return checks + [Check("evaluation products", products, 1e-4), Check("image tower features", features, 1e-3)]


def table(checks: list[Check], device: str) -> str:
    lines = [f"CUDA paths on {device} against the CPU", "", "| path | largest difference | tolerance | |"]
    lines.append("|---|---|---|---|")
    lines += [
        f"| {c.path} | {c.difference:.2e} | {c.tolerance:.0e} | {'ok' if c.passed else 'OUT OF TOLERANCE'} |"
        for c in checks
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="the device to check against the CPU (default: cuda)")
    args = parser.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device here; nothing to check")
        return 0
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        checks = run_checks(build_text_model(Path(scratch)), args.device)
    name = torch.cuda.get_device_name(args.device) if args.device.startswith("cuda") else args.device
    print(table(checks, f"{name} (torch {torch.__version__}, CUDA {torch.version.cuda})"))
    return 0 if all(check.passed for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
