"""Helpers the tests of several modules share: LANGS, WORDS, generated_test_split, plan, read_batches, write_image_corpus, write_lit_inputs."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from hybridbatch.artifacts import schema
from hybridbatch.artifacts.vectors import embeddings_table
from hybridbatch.batch_types import CAPTION_CAPTION, IMAGE_MONO
from hybridbatch.batches.image_text import build_image_text_batches
from hybridbatch.names import GROUPS

LANGS = ["en", "de", "ru", "zh"]


WORDS = {"en": "red blue green small big round", "de": "rot blau grün klein groß rund",
         "ru": "красный синий зелёный малый большой круглый", "zh": "红 蓝 绿 小 大 圆"}  # fmt: skip


def write_image_corpus(
    root, n_images: int, seed: int = 0, conflict: tuple[str, str] | None = None, group_size: int = 1
) -> None:
    """Canonical image-text splits: captions (two per image and language, a few words
    that depend on the image) and images; `conflict` makes the first caption of one
    image relevant to another image too. Groups of `group_size` consecutive images are
    near-duplicates (groups.parquet)."""
    rng = np.random.default_rng(seed)
    groups = [
        (f"{offset + i:05d}", f"{split}:{i // group_size:05d}", split)
        for split, offset in (("train", 0), ("test", 10_000))
        for i in range(n_images)
    ]
    root.mkdir(parents=True, exist_ok=True)
    schema.write_parquet(pd.DataFrame(groups, columns=schema.GROUPS.names), root / GROUPS, schema.GROUPS)
    for split, offset in (("train", 0), ("test", 10_000)):
        captions, images = [], []
        for i in range(n_images):
            item = f"{offset + i:05d}"
            images.append((f"image:{item}", item, f"img/{item}.png", "0" * 64))
            for lang in LANGS:
                words = WORDS[lang].split()
                for caption in range(2):
                    text = " ".join(words[j] for j in rng.permutation(len(words))[: 2 + caption]) + f" {i}"
                    captions.append((f"{lang}:{item}:{caption}", lang, item, text, caption))
        queries = pd.DataFrame(captions, columns=schema.CAPTIONS.names)
        qrels = pd.DataFrame({"qid": queries.qid, "pid": "image:" + queries.item_id, "relevance": 1})
        if conflict and split == "train":
            extra = {"qid": f"en:{conflict[0]}:0", "pid": f"image:{conflict[1]}", "relevance": 1}
            qrels = pd.concat([qrels, pd.DataFrame([extra])], ignore_index=True)
        schema.write_parquet(queries, root / split / "queries.parquet", schema.CAPTIONS)
        schema.write_parquet(
            pd.DataFrame(images, columns=schema.IMAGES.names), root / split / "images.parquet", schema.IMAGES
        )
        schema.write_parquet(qrels, root / split / "qrels.parquet", schema.QRELS)


def plan(
    strategy: dict,
    steps: int = 200,
    captions: str = "all",
    seed: int = 0,
    type_draws: str = "per-batch",
    development_fraction: float = 0.0,
) -> dict:
    return {
        "strategy": strategy,
        "languages": LANGS[:3],
        "batch_size": 8,
        "steps": steps,
        "captions": captions,
        "seed": seed,
        "type_draws": type_draws,
        "development_fraction": development_fraction,
        "development_seed": 0,
    }


def read_batches(out) -> pd.DataFrame:
    return pd.concat([pq.read_table(p).to_pandas() for p in sorted(out.glob("shard-*.parquet"))], ignore_index=True)


def generated_test_split(tmp_path):
    """Captions, images and qrels of the test split of a generated 12-image corpus."""
    write_image_corpus(tmp_path, 12)
    return (
        schema.read_parquet(tmp_path / "test/queries.parquet", schema.CAPTIONS),
        schema.read_parquet(tmp_path / "test/images.parquet", schema.IMAGES),
        schema.read_parquet(tmp_path / "test/qrels.parquet", schema.QRELS),
    )


def write_lit_inputs(tmp_path) -> None:
    """A generated corpus of 24 images, random 12-d image features, and 6 batches (half
    image-caption, half caption-caption) with validation batches."""
    write_image_corpus(tmp_path / "corpus", 24)
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        pids = schema.read_parquet(tmp_path / "corpus" / split / "images.parquet", schema.IMAGES).pid.tolist()
        schema.write_table(
            embeddings_table(pids, ["image"] * len(pids), rng.normal(size=(len(pids), 12))),
            tmp_path / "features" / f"{split}.parquet",
        )
    build_image_text_batches(
        plan({"weights": {IMAGE_MONO: 0.5, CAPTION_CAPTION: 0.5}}, 6, development_fraction=0.4),
        tmp_path / "corpus/train",
        tmp_path / "batches",
    )
