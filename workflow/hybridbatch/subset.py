"""Which captions each image-text stage reads: the training captions (shared by the
batches stage and the train split's caption states) and the test captions and images the
evaluation scores (shared by the evaluation and the test split's caption states)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hybridbatch.artifacts import schema


def training_captions(captions: pd.DataFrame, languages: list[str], protocol: str) -> pd.DataFrame:
    """The training split's captions in the training `languages`: each image's first caption
    (protocol `first`: its CLDR name) or all of them (`all`)."""
    chosen = captions[captions.lang.isin(languages)]
    return chosen[chosen.caption == 0] if protocol == "first" else chosen


def test_subset(captions: pd.DataFrame, images: pd.DataFrame, languages: list[str], n_images: int | None, seed: int):
    """The evaluated captions (configured languages) and images (`n_images` drawn with
    `seed`, or all), each image with a caption in every language."""
    missing = sorted(set(languages) - set(captions.lang))
    if missing:
        raise schema.SchemaError(f"test captions: no captions in {missing}")
    captions = captions[captions.lang.isin(languages)]
    complete = captions.groupby("item_id").lang.nunique()
    items = np.array(sorted(set(complete.index[complete == len(languages)]) & set(images.item_id)), dtype=object)
    if n_images is not None and n_images > len(items):
        raise schema.SchemaError(
            f"config key image_text.evaluation.images: {n_images} requested, but the test split has {len(items)} "
            f"images with a caption in each of {languages} (set it to {len(items)} or fewer, or null for all)"
        )
    if n_images is not None and n_images < len(items):
        items = np.sort(np.random.default_rng(seed).choice(items, n_images, replace=False))
    keep = set(items)
    images = images[images.item_id.isin(keep)].sort_values("pid", ignore_index=True)
    captions = captions[captions.item_id.isin(keep)].sort_values(["lang", "item_id", "caption"], ignore_index=True)
    return captions, images


def evaluated_captions(
    corpus_dir: Path, languages: list[str], n_images: int | None, seed: int, protocols: list[str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The test subset of the split in `corpus_dir`; only each image's caption 0 when
    `first` is the one protocol (it ranks caption 0 alone)."""
    captions, images = test_subset(
        schema.read_parquet(corpus_dir / "queries.parquet", schema.CAPTIONS),
        schema.read_parquet(corpus_dir / "images.parquet", schema.IMAGES),
        languages,
        n_images,
        seed,
    )
    if "all" not in protocols:
        captions = captions[captions.caption == 0].reset_index(drop=True)
    return captions, images
