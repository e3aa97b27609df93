"""Evaluate stage of the image-text track: XM3600's settings over a test split.

Settings, each under both caption protocols (named `<setting>/<protocol>` in the
summary's `setting` column):

* `t2i`: captions in L against every image (per language L);
* `i2t`: images against the captions in L (per language L);
* `i2t-multi`: images against the pooled captions of all languages (language bias: over
  languages, worst minus best of the best rank of an image's relevant captions in each
  language, with one caption per language, as under `first`, the text track's definition,
  divided by the number of pooled captions: a share of the pool, so that evaluations of
  different sizes compare);
* `t2t-cross`: captions in L1 against the captions in L2 != L1 of the same images (every
  ordered pair, or only those with a language of `t2t_languages`, e.g. English as pivot).

With the languages LiT trains on (`train_languages`), `t2i` and `i2t` are also reported
over each language group, `t2i-trained`, `t2i-held-out`, `i2t-trained` and `i2t-held-out`
(the caption languages trained on and not): the same per-query rows, their macro average
over the group's languages, and significance tests of their own.

Protocol `first` keeps each image's first caption per language (caption 0), `all`
every caption. Relevance comes from the qrels (caption -> image; two captions are
relevant to each other when they share a relevant image). Recall@k follows
CLIP_benchmark: 1 when any relevant candidate is in the top k. Ranks are exact (a flat
scan: scores of every candidate), ties going to the earlier candidate.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from hybridbatch.artifacts import schema
from hybridbatch.artifacts.vectors import POOLED
from hybridbatch.evaluate.metrics import is_multi, rank_metrics, summary_rows
from hybridbatch.evaluate.products import Block, BlockScores, Side, rank_blocks
from hybridbatch.models.caption_states import CaptionStates
from hybridbatch.models.encoders import ModelEntry
from hybridbatch.models.image_text import load_model, read_features
from hybridbatch.names import IMAGE_LANG, RANK_DISTANCE, metric_names
from hybridbatch.subset import evaluated_captions

PROTOCOLS = ("first", "all")
SETTINGS = ("t2i", "i2t", "i2t-multi", "t2t-cross")
CAPTION_SIDE = {"t2i": "query_lang", "i2t": "candidate_lang"}  # the settings split by caption language groups
LANGUAGE_GROUPS = ("trained", "held-out")


def setting_name(setting: str, protocol: str) -> str:
    return f"{setting}/{protocol}"


def gold_positions(sizes: dict[str, int], pairs: pd.DataFrame, query_rows, candidate_rows, query_col, candidate_col):
    """(query position, candidate position) of the relevant pairs within a block, in pairs'
    order (`sizes`: the length of the frame each column's rows index)."""
    positions = []
    for rows, column in ((query_rows, query_col), (candidate_rows, candidate_col)):
        position = np.full(sizes[column], -1)
        position[rows] = np.arange(len(rows))
        positions.append(position[pairs[column].to_numpy()])
    inside = (positions[0] >= 0) & (positions[1] >= 0)
    return positions[0][inside], positions[1][inside]


def blocks(
    captions: pd.DataFrame,
    images: pd.DataFrame,
    relevant: pd.DataFrame,
    protocol: str,
    t2t_languages: list[str] | None = None,
) -> Iterator[Block]:
    """Every block of a protocol; t2t-cross pairs every two distinct languages of
    `t2t_languages` with the others (default: all)."""
    chosen = captions.index[captions.caption == 0] if protocol == "first" else captions.index
    chosen = captions.loc[chosen]
    languages = sorted(chosen.lang.unique())
    image_rows = np.arange(len(images))
    sizes = {"caption": len(captions), "image": len(images), "caption_target": len(captions)}
    gold = partial(gold_positions, sizes)
    pairs = relevant[relevant.caption.isin(chosen.index)]
    by_lang = {lang: chosen.index[chosen.lang == lang].to_numpy() for lang in languages}
    for lang in languages:
        captions_in, all_images = Side("caption", by_lang[lang]), Side("image", image_rows)
        yield Block(
            "t2i", lang, IMAGE_LANG, captions_in, all_images, gold(pairs, by_lang[lang], image_rows, "caption", "image")
        )
    for lang in languages:
        captions_in, all_images = Side("caption", by_lang[lang]), Side("image", image_rows)
        yield Block(
            "i2t", IMAGE_LANG, lang, all_images, captions_in, gold(pairs, image_rows, by_lang[lang], "image", "caption")
        )
    everything = chosen.index.to_numpy()
    yield Block(
        "i2t-multi",
        IMAGE_LANG,
        POOLED,
        Side("image", image_rows),
        Side("caption", everything),
        gold(pairs, image_rows, everything, "image", "caption"),
    )
    caption_lang = captions.lang.to_numpy()[pairs.caption.to_numpy()]
    pairs_in = {lang: pairs[caption_lang == lang] for lang in languages}
    pivots = set(t2t_languages or languages)
    for source in languages:
        for target in languages:
            if source != target and (source in pivots or target in pivots):
                both = pairs_in[source].merge(pairs_in[target], on="image", suffixes=("", "_target"))
                yield Block(
                    "t2t-cross",
                    source,
                    target,
                    Side("caption", by_lang[source]),
                    Side("caption", by_lang[target]),
                    gold(both, by_lang[source], by_lang[target], "caption", "caption_target"),
                )


def relevant_pairs(captions: pd.DataFrame, images: pd.DataFrame, qrels: pd.DataFrame) -> pd.DataFrame:
    """(caption row, image row) of every relevant judgment among the evaluated captions and images."""
    qrels = qrels[qrels.relevance > 0]
    return (
        pd.DataFrame(
            {
                "caption": pd.Series(np.arange(len(captions)), index=captions.qid).reindex(qrels.qid).to_numpy(),
                "image": pd.Series(np.arange(len(images)), index=images.pid).reindex(qrels.pid).to_numpy(),
            }
        )
        .dropna()
        .astype(np.int64)
    )


def score_settings(
    captions: pd.DataFrame,
    images: pd.DataFrame,
    relevant: pd.DataFrame,
    vectors: dict[str, np.ndarray],
    params: dict,
    per_block: bool = False,
    device: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-query metrics and per-block means of every setting and protocol, from the
    caption and image vectors (rows as in `captions` and `images`) and the relevant
    (caption row, image row) pairs. Blocks are sliced from shared products (BlockScores)
    and pooled blocks counted from them (PooledRanks), or, `per_block`, each scored on its
    own (the reference the tests and the benchmark hold the shared products to). The
    shared products run on `device` when given (torch; the evaluation job's GPU)."""
    ids = {"caption": captions.qid.to_numpy(), "image": images.pid.to_numpy()}
    items = {"caption": captions.item_id.to_numpy(), "image": images.item_id.to_numpy()}
    caption_langs = captions.lang.to_numpy()
    names = metric_names(params["recall_at"], params["ndcg_at"], params["mrr_at"])
    jobs = [
        (protocol, block)
        for protocol in params["protocols"]
        for block in blocks(captions, images, relevant, protocol, params.get("t2t_languages"))
    ]
    ranks = rank_blocks([block for _, block in jobs], BlockScores(captions, vectors, device), per_block)
    per_query, by_language = [], []
    for (protocol, block), block_ranks in zip(jobs, ranks):
        pooled = is_multi(block.setting)  # language bias: best rank per caption language first
        query_ids, query_items = ids[block.query.kind][block.query.rows], items[block.query.kind][block.query.rows]
        scores = rank_metrics(
            query_ids[block.gold[0]],
            block_ranks,
            params["recall_at"],
            params["ndcg_at"],
            params["mrr_at"],
            "any",
            caption_langs[block.candidate.rows][block.gold[1]] if pooled else None,
        )
        scores = scores.rename_axis("qid").reset_index()
        scores.insert(0, "item_id", pd.Series(query_items, index=query_ids).reindex(scores.qid).to_numpy())
        name = setting_name(block.setting, protocol)
        scores = scores.assign(query_lang=block.query_lang, candidate_lang=block.candidate_lang, setting=name)
        if pooled:  # a share of the candidate pool
            scores[RANK_DISTANCE] /= len(block.candidate.rows)
        else:
            scores[RANK_DISTANCE] = np.nan
        per_query.append(scores)
        means = scores[names + [RANK_DISTANCE]].mean().to_frame().T
        by_language.append(
            means.assign(
                query_lang=block.query_lang,
                candidate_lang=block.candidate_lang,
                queries=len(scores),
                skipped=len(block.query.rows) - len(scores),
                setting=name,
            )
        )
    return pd.concat(per_query, ignore_index=True), pd.concat(by_language, ignore_index=True)


def language_group_settings(frame: pd.DataFrame, trained: list[str]) -> pd.DataFrame:
    """`frame` (per-query rows or per-block means) with the rows of t2i and i2t again under
    `<setting>-trained` and `<setting>-held-out`, by their caption language."""
    groups = [frame]
    for name in frame.setting.unique():
        task, protocol = name.split("/")
        if task not in CAPTION_SIDE:
            continue
        rows = frame[frame.setting == name]
        inside = rows[CAPTION_SIDE[task]].isin(trained)
        for group, chosen in zip(LANGUAGE_GROUPS, (inside, ~inside)):
            groups.append(rows[chosen].assign(setting=setting_name(f"{task}-{group}", protocol)))
    return pd.concat(groups, ignore_index=True)


class ImageTextEvaluationParams(TypedDict):
    """The config's `evaluation` and `image_text.evaluation` sections, the text model's entry,
    and the run's summary descriptor."""

    recall_at: list[int]
    ndcg_at: int
    mrr_at: int
    languages: list[str]
    images: int | None
    subset_seed: int
    protocols: list[str]
    batch_size: int
    text_model: ModelEntry
    descriptor: dict
    corpus: NotRequired[str]
    t2t_languages: NotRequired[list[str] | None]
    train_languages: NotRequired[list[str]]


def evaluate_image_text(
    params: ImageTextEvaluationParams,
    model: str | Path,
    features: str | Path,
    corpus: str | Path,
    states: str | Path | None,
    out: str | Path,
) -> pd.DataFrame:
    """per_query.parquet, by_language.parquet and summary.csv (the text track's formats)
    of one image-text model on the test split in `corpus`; its captions embedded from
    the caption states in `states` (the frozen layers' outputs), when given."""
    corpus_dir, out_dir = Path(corpus), Path(out)
    captions, images = evaluated_captions(
        corpus_dir, params["languages"], params["images"], params["subset_seed"], params["protocols"]
    )
    relevant = relevant_pairs(captions, images, schema.read_parquet(corpus_dir / "qrels.parquet", schema.QRELS))
    image_text_model = load_model(model, params["text_model"], CaptionStates(states) if states else None)
    row_of, image_features = read_features(Path(features) / "test.parquet")
    missing = sorted(set(images.pid) - set(row_of))
    if missing:
        raise schema.SchemaError(f"{features}/test.parquet: no features for images {missing[:3]}")
    with torch.inference_mode():
        vectors = {
            "caption": image_text_model.encode_texts(captions.text.tolist(), params["batch_size"]),
            "image": image_text_model.embed_images(image_features[[row_of[pid] for pid in images.pid]]).cpu().numpy(),
        }
    gpu = str(image_text_model.device) if str(image_text_model.device).startswith("cuda") else None
    per_query, by_language = score_settings(captions, images, relevant, vectors, params, device=gpu)
    if params.get("train_languages"):
        per_query, by_language = (
            language_group_settings(f, params["train_languages"]) for f in (per_query, by_language)
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    schema.write_table(pa.Table.from_pandas(per_query, preserve_index=False), out_dir / "per_query.parquet")
    schema.write_table(pa.Table.from_pandas(by_language, preserve_index=False), out_dir / "by_language.parquet")
    names = metric_names(params["recall_at"], params["ndcg_at"], params["mrr_at"])
    summary = summary_rows(by_language, names, params["descriptor"])
    summary.to_csv(out_dir / "summary.csv", index=False)
    return summary
