"""Image-text evaluation speed at XM3600's size from stored embeddings: 36 languages,
3,600 images, two captions per image and language (the `all` protocol; `first` keeps
one), 512-d vectors, every setting of the evaluate stage (t2i, i2t, i2t-multi and
t2t-cross with English as the pivot) under both protocols.

    .venv/bin/python benchmarks/image_text_evaluation.py [--images 3600 --languages 36]

Embeddings are synthetic (seeded; a caption is its image's vector plus noise). Timed:
`evaluate.image_text.score_settings`, the scoring the stage runs after encoding, with
blocks sliced from shared products, against the reference that scores every block on its
own (`per_block=True`, the stage until 2026-12-04); both must give the same per-query
frame. Goal: under 30 s on 2 cores. `--no-reference` skips the reference (about 2.5 min).
`--caption-noise 0` makes every caption random (an untrained model's worst case: about half
of all captions score above an image's lowest gold caption).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))
from hybridbatch.artifacts import schema
from hybridbatch.evaluate.image_text import relevant_pairs, score_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=3600)
    parser.add_argument("--languages", type=int, default=36)
    parser.add_argument("--dimension", type=int, default=512)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--caption-noise", type=float, default=4.0, help="noise around the image's vector; 0: random")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    languages = ["en"] + [f"l{i:02d}" for i in range(1, args.languages)]
    items = [f"{i:05d}" for i in range(args.images)]
    captions = pd.DataFrame(
        [(f"{lang}:{item}:{c}", lang, item, "", c) for lang in languages for item in items for c in range(2)],
        columns=schema.CAPTIONS.names,
    )
    images = pd.DataFrame({"pid": [f"image:{i}" for i in items], "item_id": items, "path": "", "sha256": ""})
    qrels = pd.DataFrame({"qid": captions.qid, "pid": "image:" + captions.item_id, "relevance": 1})
    image_vectors = rng.normal(size=(args.images, args.dimension)).astype(np.float32)
    owner = pd.Series(np.arange(args.images), index=items)[captions.item_id].to_numpy()
    noise = rng.normal(size=(len(captions), args.dimension)).astype(np.float32)
    caption_vectors = image_vectors[owner] + args.caption_noise * noise if args.caption_noise else noise
    normalise = lambda v: v / np.linalg.norm(v, axis=1, keepdims=True)  # noqa: E731
    vectors = {"caption": normalise(caption_vectors), "image": normalise(image_vectors)}
    params = {
        "recall_at": [1, 5, 10],
        "ndcg_at": 10,
        "mrr_at": 10,
        "protocols": ["first", "all"],
        "t2t_languages": ["en"],
    }
    started = time.perf_counter()
    relevant = relevant_pairs(captions, images, qrels)
    per_query, by_language = score_settings(captions, images, relevant, vectors, params)
    seconds = time.perf_counter() - started
    print(
        f"{args.languages} languages x {args.images} images, {len(captions):,} captions ({args.dimension}-d), "
        f"both protocols: {len(by_language)} blocks, {len(per_query):,} query rows scored in {seconds:.1f} s "
        f"(goal 30 s: {seconds / 30:.2f}x of it)"
    )
    if not args.no_reference:
        started = time.perf_counter()
        reference, _ = score_settings(captions, images, relevant, vectors, params, per_block=True)
        reference_seconds = time.perf_counter() - started
        pd.testing.assert_frame_equal(per_query, reference)
        print(
            f"reference (every block scored on its own): {reference_seconds:.1f} s, the same per-query frame; "
            f"ratio reference / shared products: {reference_seconds / seconds:.2f}x"
        )
    for setting, rows in per_query.groupby("setting"):
        print(f"  {setting:16s} R@1 {rows['recall@1'].mean():.3f} over {len(rows):,} queries")


if __name__ == "__main__":
    main()
