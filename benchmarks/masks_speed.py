"""False-negative masks per training step at the real run's size: COCO-35L's relevance
(40,000 images x 35 languages x 5 captions, 7M captions each relevant to its image) and
batches of 1,024, image-caption and caption-caption alike. Times the array masks
(train/masks.py) against the per-pair Python sets and loops they replaced (the reference
here), on the same batches, and checks that both give the same masks.

    .venv/bin/python benchmarks/masks_speed.py                # the real size (about a minute)
    .venv/bin/python benchmarks/masks_speed.py --images 2000  # a quick look
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))
from hybridbatch.train.masks import Relevance, caption_false_negatives  # noqa: E402


def reference_masks(rows: dict, image_batch: bool, relevant_to: dict[str, set[str]]):
    """The per-pair masks the array code replaced: a set of images per caption, nested loops."""
    mine = [relevant_to.get(qid, set()) for qid in rows["qid"]]
    if image_batch:
        matrix = [[pid in images for pid in rows["pid"]] for images in mine]
        texts = rows["query"]
    else:
        targets = [relevant_to.get(pid, set()) for pid in rows["pid"]]
        matrix = [[bool(images & theirs) for theirs in targets] for images in mine]
        texts = rows["positive"]
    n = len(texts)
    own = torch.eye(n, dtype=torch.bool)
    relevant = torch.tensor(matrix, dtype=torch.bool).reshape(n, n) & ~own
    duplicate = torch.tensor([[text == other for text in texts] for other in texts], dtype=torch.bool)
    return relevant, duplicate & ~own & ~relevant


def caption_ids(images: int, languages: int, captions: int) -> tuple[np.ndarray, np.ndarray]:
    image = np.repeat(np.arange(images), languages * captions)
    lang = np.tile(np.repeat(np.arange(languages), captions), images)
    n = np.tile(np.arange(captions), images * languages)
    qids = np.char.add(
        np.char.add(np.char.add(np.char.add(lang.astype(str), ":"), image.astype(str)), ":"), n.astype(str)
    )
    return qids.astype(object), np.char.add("image:", image.astype(str)).astype(object)


def batches(qids: np.ndarray, pids: np.ndarray, per_image: int, size: int, count: int, rng: np.random.Generator):
    """Image-caption and caption-caption batches, alternating: distinct images, a caption
    of each (texts repeated within a batch, as short captions are)."""
    images = len(qids) // per_image
    for number in range(count):
        chosen = rng.choice(images, size, replace=False)
        first = chosen * per_image + rng.integers(per_image, size=size)
        second = chosen * per_image + rng.integers(per_image, size=size)
        texts = [f"a caption {i % (size // 2)}" for i in range(size)]
        rows = {"qid": qids[first].tolist(), "query": texts}
        if number % 2:
            yield False, rows | {"pid": qids[second].tolist(), "positive": texts[::-1]}
        else:
            yield True, rows | {"pid": pids[first].tolist()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=40_000)
    parser.add_argument("--languages", type=int, default=35)
    parser.add_argument("--captions", type=int, default=5, help="per image and language")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(1)
    qids, pids = caption_ids(args.images, args.languages, args.captions)
    print(f"{len(qids):,} captions of {args.images:,} images, batches of {args.batch_size}, one thread")
    started, before = time.perf_counter(), rss_gb()
    relevance = Relevance(qids, pids)
    print(f"relevance as arrays: built in {time.perf_counter() - started:.1f} s, {rss_gb() - before:+.2f} GB RSS")
    started, before = time.perf_counter(), rss_gb()
    relevant_to = {}
    for qid, pid in zip(qids, pids):
        relevant_to.setdefault(qid, set()).add(pid)
    print(f"relevance as Python sets (reference): built in {time.perf_counter() - started:.1f} s, "
          f"{rss_gb() - before:+.2f} GB RSS")  # fmt: skip
    times = {"arrays": [], "reference": []}
    per_image = args.languages * args.captions
    for image_batch, rows in batches(qids, pids, per_image, args.batch_size, args.steps, np.random.default_rng(0)):
        started = time.process_time()
        found = caption_false_negatives(rows, image_batch, relevance)
        times["arrays"].append(time.process_time() - started)
        started = time.process_time()
        expected = reference_masks(rows, image_batch, relevant_to)
        times["reference"].append(time.process_time() - started)
        if not all(torch.equal(a, b) for a, b in zip(found, expected)):
            sys.exit("the array masks differ from the reference")
    arrays, reference = (1000 * float(np.median(times[k])) for k in ("arrays", "reference"))
    print(f"CPU per step, median of {args.steps}: arrays {arrays:.2f} ms, reference {reference:.1f} ms, "
          f"{reference / arrays:.0f}x; masks identical")  # fmt: skip


def rss_gb() -> float:
    """The process's resident memory now (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**30


if __name__ == "__main__":
    main()
