"""Batches stage of the image-text track: a strategy is a set of weights over the batch
types (batch_types.py), one type per batch, drawn per batch from the strategy's seed (the
same `draw_batch_types` as the text track). A batch is built from its type's entry: its
captions in one language drawn per batch or in one drawn per caption, matched against
their images, or against a caption of the same image in another language (L2 != L1):

* `image-caption-mono`: every caption of the batch in one language;
* `image-caption-mixed`: each caption's language drawn per pair (standard multilingual CLIP);
* `caption-caption`: a caption in L1 and a caption of the same image in L2 != L1.

Rows use the text track's batch schema: `qid`/`query` is the caption, `pid` the image
(`passage_lang` 'image', no text) or, in caption-caption batches, the target caption
(`passage_lang` L2, its text in `positive`). An image is at most once in a batch, and two
images never share a batch when a caption of one is relevant (qrels) to the other, so
no candidate is relevant to another example's caption. Every strategy gets the same
number of batches (`steps`); types are drawn per batch, or (`type_draws: stratified`)
fixed in count and shuffled.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa

from hybridbatch.artifacts import schema
from hybridbatch.batch_types import BATCH_TYPES, CAPTIONS, IMAGE_MIXED, IMAGE_MONO
from hybridbatch.batches.sampling import (
    RELEVANCE,
    VALIDATION,
    VALIDATION_EPOCH,
    ConflictGraph,
    ItemQueue,
    batch_type_weights,
    draw_batch_types,
    validation_items,
)
from hybridbatch.names import GROUPS, IMAGE_LANG
from hybridbatch.subset import training_captions

SHARD_BATCHES = 1000
VALIDATION_WEIGHTS = {
    kind: {IMAGE_MONO: 0.5, IMAGE_MIXED: 0.5}.get(kind, 0.0) for kind in BATCH_TYPES
}  # every strategy's
CONFLICT_RULE = "a caption of one image is relevant (qrels) to the other image"


class CaptionIndex:
    """Captions of the training split by (image, language) as row arrays, and the images'
    conflict graph from the relevance judgments."""

    def __init__(self, split_dir: Path, languages: list[str], captions: str):
        queries = schema.read_parquet(split_dir / "queries.parquet", schema.CAPTIONS)
        images = schema.read_parquet(split_dir / "images.parquet", schema.IMAGES)
        qrels = schema.read_parquet(split_dir / "qrels.parquet", schema.QRELS)
        missing = sorted(set(languages) - set(queries.lang))
        if missing:
            raise schema.SchemaError(f"{split_dir / 'queries.parquet'}: no captions in {missing}")
        queries = training_captions(queries, languages, captions)
        counts = queries.groupby("item_id").lang.nunique()
        complete = set(counts.index[counts == len(languages)])
        logging.info("%d of %d images have captions in all of %s", len(complete), len(images), languages)
        images = images[images.item_id.isin(complete)].sort_values("item_id", ignore_index=True)
        if images.empty:
            raise schema.SchemaError(f"{split_dir}: no image has captions in every training language {languages}")
        self.images, self.languages = images, sorted(languages)  # the order captions are sorted in
        self.groups = image_groups(split_dir.parent / GROUPS, images.item_id)
        self.captions = queries[queries.item_id.isin(complete)].sort_values(
            ["item_id", "lang", "caption"], ignore_index=True
        )
        item_code = pd.Series(np.arange(len(images)), index=images.item_id)
        lang_code = pd.Series(np.arange(len(languages)), index=self.languages)
        key = item_code[self.captions.item_id].to_numpy() * len(languages) + lang_code[self.captions.lang].to_numpy()
        self.start = np.searchsorted(key, np.arange(len(images) * len(languages)))
        self.count = np.bincount(key, minlength=len(images) * len(languages))
        relevant = (
            qrels[qrels.relevance > 0]
            .merge(queries[["qid", "item_id"]], on="qid")
            .merge(images[["pid", "item_id"]].rename(columns={"item_id": "other"}), on="pid")
        )
        relevant = relevant[(relevant.item_id != relevant.other) & relevant.item_id.isin(complete)]
        edges = np.stack([item_code[relevant.item_id].to_numpy(), item_code[relevant.other].to_numpy()], axis=1)
        self.graph = ConflictGraph(len(images), edges.reshape(-1, 2).astype(np.int64))

    def caption_rows(self, items: np.ndarray, langs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One caption row per (image, language), uniform among that image's captions in it."""
        cell = items * len(self.languages) + langs
        return self.start[cell] + (rng.random(len(cell)) * self.count[cell]).astype(np.int64)


def image_groups(path: Path, item_ids: pd.Series) -> np.ndarray:
    """Each image's near-duplicate group, from the corpus's groups file."""
    groups = schema.read_parquet(path, schema.GROUPS).drop_duplicates("item_id").set_index("item_id").group
    missing = sorted(set(item_ids) - set(groups.index))
    if missing:
        raise schema.SchemaError(f"{path}: no group for images {missing[:3]}")
    return groups.reindex(item_ids).to_numpy()


def plan_batches(
    index: CaptionIndex,
    weights: dict[str, float],
    batch_size: int,
    steps: int,
    seed: int | list[int],
    stratified: bool,
    items: np.ndarray,
):
    """(batch type, caption rows, target rows or None for the images) per batch, over the
    images `items`."""
    type_rng, item_rng, lang_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    queue = ItemQueue(items, item_rng, index.graph, "image-text batches")
    n_langs = len(index.languages)
    for kind, weight in weights.items():
        if weight > 0 and BATCH_TYPES[kind].languages_needed > n_langs:
            raise ValueError(f"{kind} batches need at least {BATCH_TYPES[kind].languages_needed} training languages")
    for kind in draw_batch_types(weights, steps, type_rng, stratified):
        entry = BATCH_TYPES[kind]
        items = queue.take(batch_size)
        if entry.one_language:
            langs = np.full(batch_size, lang_rng.integers(n_langs))
        else:
            langs = lang_rng.integers(n_langs, size=batch_size)
        captions = index.caption_rows(items, langs, lang_rng)
        target = None
        if entry.targets == CAPTIONS:  # L2 uniform among the other languages
            other = (langs + 1 + lang_rng.integers(n_langs - 1, size=batch_size)) % n_langs
            target = index.caption_rows(items, other, lang_rng)
        yield kind, items, captions, target


def batch_table(index: CaptionIndex, batch_id: int, epoch: int, kind: str, items, captions, target) -> pa.Table:
    source = index.captions.iloc[captions]
    n = len(items)
    if target is None:
        pids = index.images.pid.to_numpy()[items]
        target_lang, target_text = [IMAGE_LANG] * n, [None] * n
    else:
        aim = index.captions.iloc[target]
        pids, target_lang, target_text = aim.qid.to_numpy(), aim.lang.tolist(), aim.text.tolist()
    columns = {
        "batch_id": np.full(n, batch_id, dtype=np.int64),
        "epoch": np.full(n, epoch, dtype=np.int32),
        "batch_type": [kind] * n,
        "pair_id": [f"{qid}>{pid}" for qid, pid in zip(source.qid, pids)],
        "item_id": source.item_id.tolist(),
        "qid": source.qid.tolist(),
        "pid": list(pids),
        "negative_pid": [None] * n,
        "query_lang": source.lang.tolist(),
        "passage_lang": target_lang,
        "query": source.text.tolist(),
        "positive": target_text,
        "negative": [None] * n,
    }
    return pa.table(columns, schema=schema.BATCHES)


class ImageTextBatchParams(TypedDict):
    """The config's `image_text.batching` section, the train languages, the strategy's
    normalised weights over batch types, and the run's seed."""

    batch_size: int
    steps: int
    captions: str
    type_draws: str
    development_fraction: float
    development_seed: int
    languages: list[str]
    strategy: dict
    seed: int


def build_image_text_batches(params: ImageTextBatchParams, corpus: str | Path, out: str | Path) -> dict:
    """Shards, stats.json, batch_types.png and the training qrels of one strategy, from
    the train split of an image-text corpus."""
    split_dir, out_dir = Path(corpus), Path(out)
    weights = batch_type_weights(params["strategy"], tuple(BATCH_TYPES))
    index = CaptionIndex(split_dir, params["languages"], params["captions"])
    out_dir.mkdir(parents=True, exist_ok=True)
    held_out = validation_items(index.groups, params["development_fraction"], params["development_seed"])
    per_epoch = max(1, int((~held_out).sum()) // params["batch_size"])
    stratified = params["type_draws"] == "stratified"
    plan = plan_batches(
        index, weights, params["batch_size"], params["steps"], params["seed"], stratified, np.flatnonzero(~held_out)
    )
    types, langs = write_training_shards(index, plan, per_epoch, params["steps"], out_dir)
    validation_batches = write_validation_batches(index, held_out, params, out_dir)
    stats = {
        "strategy": params["strategy"],
        "type_draws": params["type_draws"],
        "weights": weights,
        "seed": params["seed"],
        "batch_size": params["batch_size"],
        "batches": params["steps"],
        "batches_per_epoch": per_epoch,
        "examples": params["steps"] * params["batch_size"],
        "batch_types": types,
        "realised_weights": {kind: n / params["steps"] for kind, n in types.items()},
        "languages": langs,
        "items": int((~held_out).sum()),
        "validation": {
            "items": int(held_out.sum()),
            "groups": len(set(index.groups[held_out])),
            "batches": validation_batches,
            "seed": params["development_seed"],
            "weights": VALIDATION_WEIGHTS,
        },
        "conflicts": {
            "rule": CONFLICT_RULE,
            "item_pairs": index.graph.n_edges,
            "items_with_conflicts": int((index.graph.degree() > 0).sum()),
            "deferred_for_a_conflict": index.graph.deferrals,
        },
    }
    shutil.copyfile(split_dir / "qrels.parquet", out_dir / RELEVANCE)
    (out_dir / "stats.json").write_text(json.dumps(stats, indent=2, sort_keys=True))
    plot_batch_types(stats, out_dir / "batch_types.png")
    return types


def write_training_shards(
    index: CaptionIndex, plan, per_epoch: int, steps: int, out_dir: Path
) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """The planned batches in shards of SHARD_BATCHES; the count of each batch type, and of
    each caption and target language."""
    types = {kind: 0 for kind in BATCH_TYPES}
    langs = {
        "caption": {lang: 0 for lang in index.languages},
        "target": {lang: 0 for lang in [IMAGE_LANG] + index.languages},
    }
    shard: list[pa.Table] = []
    for batch_id, (kind, items, captions, target) in enumerate(plan):
        table = batch_table(index, batch_id, batch_id // per_epoch, kind, items, captions, target)
        types[kind] += 1
        for lang, n in pd.Series(table.column("query_lang").to_pylist()).value_counts().items():
            langs["caption"][lang] += int(n)
        for lang, n in pd.Series(table.column("passage_lang").to_pylist()).value_counts().items():
            langs["target"][lang] += int(n)
        shard.append(table)
        if len(shard) == SHARD_BATCHES or batch_id == steps - 1:
            schema.write_table(pa.concat_tables(shard), out_dir / f"shard-{batch_id // SHARD_BATCHES:04d}.parquet")
            shard = []
    return types, langs


def write_validation_batches(index: CaptionIndex, held_out: np.ndarray, params: dict, out_dir: Path) -> int:
    """The held-out images' validation batches (image-caption, every strategy the same),
    in one shard under VALIDATION; their number."""
    validation_batches = int(held_out.sum()) // params["batch_size"]
    if held_out.any():
        if not validation_batches:
            raise ValueError(
                f"config key image_text.batching.development_fraction: {params['development_fraction']} "
                f"holds out {int(held_out.sum())} images, fewer than one batch of {params['batch_size']}"
            )
        plan = plan_batches(
            index,
            VALIDATION_WEIGHTS,
            params["batch_size"],
            validation_batches,
            [params["development_seed"], VALIDATION_EPOCH],
            True,
            np.flatnonzero(held_out),
        )
        tables = [batch_table(index, batch_id, 0, *batch) for batch_id, batch in enumerate(plan)]
        schema.write_table(pa.concat_tables(tables), out_dir / VALIDATION / "shard-0000.parquet")
    return validation_batches


def plot_batch_types(stats: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))
    kinds = list(stats["batch_types"])
    left.bar(kinds, [stats["realised_weights"][k] for k in kinds], label="realised")
    left.scatter(kinds, [stats["weights"][k] for k in kinds], color="k", zorder=3, label="strategy weight")
    left.set(ylabel="share of batches", ylim=(0, 1), title=f"batch types ({stats['batches']} batches)")
    left.legend(fontsize=7)
    captions = stats["languages"]["caption"]
    right.bar(list(captions), list(captions.values()))
    right.set(ylabel="captions", title="caption languages")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
