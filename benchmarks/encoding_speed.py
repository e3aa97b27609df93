"""Encoding speed: the project's Encoder against sentence-transformers' `encode()` on the
same model, texts, prefix, max length and threads, in one run.

    .venv/bin/python benchmarks/encoding_speed.py [--model DIR] [--corpus DIR] [--texts 2000]
        [--batch-size 64] [--threads 2] [--repeats 3]

Defaults: e5-small from the default run (`make run` first) and the sentences of XQuAD-R in
../shared/corpora/xquad-r (all its languages, first `--texts` sentences after a seeded
shuffle). Each contender encodes every text `--repeats` times, round-robin, after a warm-up batch
(best pass reported); the passage prefix
is added by both. Prints texts per second, the ratio to sentence-transformers' torch backend
(> 1: faster) and the least cosine between the two embeddings of a text (must be >= 0.9999).
sentence-transformers' onnx and openvino backends are timed too where optimum is installed.
The last row feeds sentence-transformers the project's batches (texts sorted by token count,
not characters), one encode() call each: it shows how much of the ratio is the batching."""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hybridbatch.models.encoders import Encoder  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
MODEL = {"pooling": "mean", "query_prefix": "query: ", "passage_prefix": "passage: ", "max_length": 128}


def xquad_r_sentences(corpus: Path, count: int) -> list[str]:
    sentences = []
    for path in sorted(corpus.glob("*.json")):
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            for paragraph in article["paragraphs"]:
                sentences += paragraph["sentences"]
    random.Random(0).shuffle(sentences)
    return sentences[:count]


def timed(encode, texts: list[str]) -> tuple[float, np.ndarray]:
    encode(texts[:64])  # warm-up: allocator, thread pool, first-call dispatch
    start = time.perf_counter()
    vectors = encode(texts)
    return len(texts) / (time.perf_counter() - start), vectors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=REPO / "results/models/multilingual-e5-small/zero-shot")
    parser.add_argument("--corpus", type=Path, default=REPO.parent / "shared/corpora/xquad-r")
    parser.add_argument("--texts", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each contender (best is reported)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    texts = xquad_r_sentences(args.corpus, args.texts)

    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(args.model), device="cpu", local_files_only=True)
    reference.max_seq_length = MODEL["max_length"]

    def st_encode(model):
        return lambda batch: model.encode(
            batch,
            prompt=MODEL["passage_prefix"],
            batch_size=args.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
        )

    contenders = {"sentence-transformers encode (torch)": st_encode(reference)}
    for backend in ("onnx", "openvino"):
        if importlib.util.find_spec("optimum") is not None:
            model = SentenceTransformer(str(args.model), device="cpu", backend=backend, local_files_only=True)
            model.max_seq_length = MODEL["max_length"]
            contenders[f"sentence-transformers encode ({backend})"] = st_encode(model)

    def st_in_token_order(batch):  # sentence-transformers' own forward, fed the project's batches
        order = np.argsort(encoder.token_counts(batch, "passage"), kind="stable")
        out = np.empty((len(batch), reference.get_embedding_dimension()), dtype=np.float32)
        for start in range(0, len(batch), args.batch_size):
            rows = order[start : start + args.batch_size]
            out[rows] = st_encode(reference)([batch[i] for i in rows])
        return out

    for label, packed in [("hybridbatch Encoder, padded", False), ("hybridbatch Encoder, packed", True)]:
        encoder = Encoder(args.model, MODEL, device="cpu", packed=packed)
        contenders[label] = lambda batch, e=encoder: e.encode(batch, "passage", args.batch_size)
    contenders["sentence-transformers encode, fed token-sorted batches"] = st_in_token_order
    speeds = {label: [] for label in contenders}
    vectors = {}
    for _ in range(args.repeats):  # round-robin, so that a slow spell of the machine hits every contender
        for label, encode in contenders.items():
            speed, vectors[label] = timed(encode, texts)
            speeds[label].append(speed)
    base_label = next(iter(contenders))
    base_speed, base = max(speeds[base_label]), vectors[base_label]
    rows = [(label, max(speeds[label]), float((vectors[label] * base).sum(1).min())) for label in contenders]
    rows += [
        (f"sentence-transformers encode ({b})", None, None)
        for b in ("onnx", "openvino")
        if importlib.util.find_spec("optimum") is None
    ]

    print(
        f"{len(texts)} XQuAD-R sentences, {args.model.name} e5-small, batch {args.batch_size}, "
        f"max length {MODEL['max_length']}, {args.threads} threads, torch {torch.__version__}"
    )
    print(f"{'contender':<58} {'texts/s':>8} {'vs ST':>6} {'min cos':>8}")
    for label, speed, cosine in rows:
        if speed is None:
            print(f"{label:<58} {'(optimum not installed)':>24}")
            continue
        print(f"{label:<58} {speed:8.1f} {speed / base_speed:5.2f}x {cosine:8.6f}")


if __name__ == "__main__":
    main()
