"""Image tower throughput: images/s of EfficientNet-Lite0 on this machine's threads, per
input size, on the real emoji images of a prepared corpus (decode + preprocess + forward).

    .venv/bin/python benchmarks/image_features.py --corpus results/corpora/emoji --images 256

The whole feature stage's time for a corpus is in results/benchmarks/image_features/.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))
from hybridbatch.artifacts import schema
from hybridbatch.models.image_towers import build_tower, read_image  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", default="results/corpora/emoji")
    parser.add_argument("--raw", default=None, help="the corpus's raw directory (default: CORPUS/raw)")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 96, 224])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    corpus = Path(args.corpus)
    raw = Path(args.raw) if args.raw else corpus / "raw"
    images = schema.read_parquet(corpus / "train/images.parquet", schema.IMAGES).head(args.images)
    for size in args.sizes:
        tower = build_tower(
            {
                "source": {"kind": "efficientnet-lite", "architecture": "efficientnet-lite0"},
                "image_size": size,
                "batch_size": args.batch_size,
            }
        )
        started = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(images), args.batch_size):
                rows = images.iloc[start : start + args.batch_size]
                tower.encode([read_image(raw, p, d) for p, d in zip(rows.path, rows.sha256)])
        seconds = time.perf_counter() - started
        print(
            f"{size:>4} px: {len(images) / seconds:6.1f} images/s "
            f"({len(images)} images, {args.threads} threads, batch {args.batch_size})"
        )


if __name__ == "__main__":
    main()
