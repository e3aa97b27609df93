"""Evaluate stage of the image-text track: XM3600's settings over a test split.

Settings, each under both caption protocols (named `<setting>/<protocol>` in the
summary's `setting` column):

* `t2i`: captions in L against every image (per language L);
* `i2t`: images against the captions in L (per language L);
* `i2t-multi`: images against the pooled captions of all languages (language bias: over
  languages, worst minus best of the best rank of an image's relevant captions in each
  language; with one caption per language, as under `first`, the text track's definition);
* `t2t-cross`: captions in L1 against the captions in L2 != L1 of the same images (every
  ordered pair, or only those with a language of `t2t_languages`, e.g. English as pivot).

Protocol `first` keeps each image's first caption per language (caption 0), `all`
every caption. Relevance comes from the qrels (caption -> image; two captions are
relevant to each other when they share a relevant image). Recall@k follows
CLIP_benchmark: 1 when any relevant candidate is in the top k. Ranks are exact (a flat
scan: scores of every candidate), ties going to the earlier candidate.
"""

from __future__ import annotations

from pathlib import Path
from typing import NotRequired, TypedDict

import numpy as np
import pandas as pd
import pyarrow as pa
import torch

from hybridbatch.artifacts import schema
from hybridbatch.artifacts.vectors import POOLED
from hybridbatch.evaluate.metrics import is_multi, metric_names, rank_metrics, summary_rows
from hybridbatch.evaluate.ranks import ranks_in_scores, ranks_of_relevant
from hybridbatch.evaluate.subset import evaluated_captions
from hybridbatch.models.caption_states import CaptionStates
from hybridbatch.models.image_text import load_model, read_features
from hybridbatch.names import IMAGE_LANG

PROTOCOLS = ("first", "all")
SETTINGS = ("t2i", "i2t", "i2t-multi", "t2t-cross")


def setting_name(setting: str, protocol: str) -> str:
    return f"{setting}/{protocol}"


def blocks(
    captions: pd.DataFrame,
    images: pd.DataFrame,
    relevant: pd.DataFrame,
    protocol: str,
    t2t_languages: list[str] | None = None,
):
    """(setting, query_lang, candidate_lang, query rows, candidate rows, gold) per block;
    rows index the caption frame ('caption' side) or image frame ('image' side); gold
    is (query position, candidate position) of each relevant pair in the block. t2t-cross
    pairs every two distinct languages of `t2t_languages` with the others (default: all)."""
    chosen = captions.index[captions.caption == 0] if protocol == "first" else captions.index
    chosen = captions.loc[chosen]
    languages = sorted(chosen.lang.unique())
    image_rows = np.arange(len(images))
    sizes = {"caption": len(captions), "image": len(images), "caption_target": len(captions)}

    def gold(pairs: pd.DataFrame, query_rows, candidate_rows, query_col, candidate_col):
        """(query position, candidate position) of the pairs within the block, in pairs' order."""
        positions = []
        for rows, column in ((query_rows, query_col), (candidate_rows, candidate_col)):
            position = np.full(sizes[column], -1)
            position[rows] = np.arange(len(rows))
            positions.append(position[pairs[column].to_numpy()])
        inside = (positions[0] >= 0) & (positions[1] >= 0)
        return positions[0][inside], positions[1][inside]

    pairs = relevant[relevant.caption.isin(chosen.index)]
    by_lang = {lang: chosen.index[chosen.lang == lang].to_numpy() for lang in languages}
    for lang in languages:
        yield (
            "t2i",
            lang,
            IMAGE_LANG,
            ("caption", by_lang[lang]),
            ("image", image_rows),
            gold(pairs, by_lang[lang], image_rows, "caption", "image"),
        )
    for lang in languages:
        yield (
            "i2t",
            IMAGE_LANG,
            lang,
            ("image", image_rows),
            ("caption", by_lang[lang]),
            gold(pairs, image_rows, by_lang[lang], "image", "caption"),
        )
    everything = chosen.index.to_numpy()
    yield (
        "i2t-multi",
        IMAGE_LANG,
        POOLED,
        ("image", image_rows),
        ("caption", everything),
        gold(pairs, image_rows, everything, "image", "caption"),
    )
    caption_lang = captions.lang.to_numpy()[pairs.caption.to_numpy()]
    pairs_in = {lang: pairs[caption_lang == lang] for lang in languages}
    pivots = set(t2t_languages or languages)
    for source in languages:
        for target in languages:
            if source != target and (source in pivots or target in pivots):
                yield (
                    "t2t-cross",
                    source,
                    target,
                    ("caption", by_lang[source]),
                    ("caption", by_lang[target]),
                    gold(
                        pairs_in[source].merge(pairs_in[target], on="image", suffixes=("", "_target")),
                        by_lang[source],
                        by_lang[target],
                        "caption",
                        "caption_target",
                    ),
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


def product(first: np.ndarray, second: np.ndarray, device: str | None) -> np.ndarray:
    """first @ second.T: by numpy on the CPU (device None), or by torch on `device` (the
    GPU the evaluation job holds), returned to host memory."""
    if device is None:
        return first @ second.T
    with torch.inference_mode():
        return (torch.from_numpy(first).to(device) @ torch.from_numpy(second).to(device).T).cpu().numpy()


class BlockScores:
    """The score matrix of a block, part of one product per caption language against
    the images, or per two caption languages, over every caption of those languages:
    `t2i` and `i2t` of a language share one product, as do L1->L2 and L2->L1, and the
    `first` protocol's blocks are parts of the `all` protocol's (the same floats: a block
    of a product is that product of the block). A language's captions are the product's
    lines caption 0 first, so that a `first` block is a corner of it, not a copy. One
    product is held at a time."""

    def __init__(self, captions: pd.DataFrame, vectors: dict[str, np.ndarray], device: str | None = None):
        self.vectors, self.language, self.device = vectors, captions.lang.to_numpy(), device
        later = captions.caption.to_numpy() != 0
        self.rows = {
            lang: rows[np.argsort(later[rows], kind="stable")]
            for lang in np.unique(self.language)
            for rows in [np.flatnonzero(self.language == lang)]
        }
        self.position = np.empty(len(captions), dtype=np.int64)
        for rows in self.rows.values():
            self.position[rows] = np.arange(len(rows))
        self.held: tuple | None = None
        self.product: np.ndarray | None = None

    def key(self, query: tuple[str, np.ndarray], candidate: tuple[str, np.ndarray]) -> tuple | None:
        """The product a block is part of: ('image', L) or ('caption', L1, L2), L1 < L2;
        None for pooled caption candidates of several languages."""
        languages = [self.language[rows[:1]][0] if side == "caption" else None for side, rows in (query, candidate)]
        if any(side == "caption" and len(set(self.language[rows])) != 1 for side, rows in (query, candidate)):
            return None
        if None in languages:
            return ("image", next(lang for lang in languages if lang is not None))
        return ("caption", *sorted(languages))

    def hold(self, key: tuple) -> np.ndarray:
        """The product `key`: its first language's captions (rows) against the images or
        the second language's captions (columns)."""
        if key != self.held:
            first = self.vectors["caption"][self.rows[key[1]]]
            second = self.vectors["image"] if key[0] == "image" else self.vectors["caption"][self.rows[key[2]]]
            self.held, self.product = key, product(first, second, self.device)
        return self.product

    def block(self, key: tuple, query: tuple[str, np.ndarray], candidate: tuple[str, np.ndarray]):
        """(scores, query lines, candidate lines, by_column): the part of the product `key`
        (self.key of the block) that holds the block, the line of each query and candidate
        in it, and whether the queries are its columns (the product is not transposed)."""
        product = self.hold(key)
        query_first = query[0] == "caption" and self.language[query[1][0]] == key[1]  # the product's rows
        lines = [side[1] if side[0] == "image" else self.position[side[1]] for side in (query, candidate)]
        row_lines, column_lines = lines if query_first else lines[::-1]
        scores = product
        for axis, positions in enumerate((row_lines, column_lines)):
            corner = np.zeros(len(positions), dtype=bool)
            corner[positions[positions < len(positions)]] = True
            if corner.all():  # the first lines, in any order: a view
                scores = scores[: len(positions)] if axis == 0 else scores[:, : len(positions)]
            else:
                scores = scores.take(positions, axis=axis)
                lines[axis if query_first else 1 - axis] = np.arange(len(positions))
        return scores, lines[0], lines[1], not query_first


def ordered_bits(scores: np.ndarray) -> np.ndarray:
    """float32 scores as int64 keys in [0, 2**32) with the same order and ties (-0.0 == 0.0)."""
    bits = (scores + np.float32(0)).view(np.int32).astype(np.int64)
    return np.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + 2**31


class PooledRanks:
    """Ranks of a pooled block (images against the captions of every language) counted
    from the products of each language's captions against the images (BlockScores), not
    from a product of its own: first every gold score is read off those products
    (`read_golds`, each language's), then each product's captions scoring at least an
    image's lowest gold score are counted (`add`) into a histogram over the image's sorted
    gold scores (keys: image and score as one integer), so that the cost is one search
    per such caption, however many there are. Should a product's gold scores differ from
    those read first, or a language be missing, or the scores not be float32, `ranks`
    falls back to ranks_of_relevant."""

    def __init__(self, vectors: dict[str, np.ndarray], language: np.ndarray, block: tuple, chunk: int = 2048):
        (_, images), (_, captions), (gold_queries, gold_candidates) = block
        self.vectors, self.language, self.block, self.chunk = vectors, language, block, chunk
        self.gold_images, self.gold_captions = images[gold_queries], captions[gold_candidates]
        self.gold_positions = gold_candidates
        self.gold_scores = np.full(len(gold_queries), np.nan, dtype=np.float32)
        self.pooled_position = np.full(len(language), -1)
        self.pooled_position[captions] = np.arange(len(captions))
        self.unread, self.uncounted = set(language[captions]), set(language[captions])
        self.exact = vectors["caption"].dtype == vectors["image"].dtype == np.float32
        self.histogram: np.ndarray | None = None
        self.tied_keys, self.tied_positions = [], []

    def _gold_rows(self, lang: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The golds of `lang` and their lines in its product (rows: the product's caption rows)."""
        mine = np.flatnonzero(self.language[self.gold_captions] == lang)
        line = np.empty(len(self.language), dtype=np.int64)
        line[rows] = np.arange(len(rows))
        return mine, line[self.gold_captions[mine]]

    def read_golds(self, lang: str, rows: np.ndarray, product: np.ndarray) -> None:
        mine, lines = self._gold_rows(lang, rows)
        self.gold_scores[mine] = product[lines, self.gold_images[mine]]
        self.unread.discard(lang)

    def _start_counting(self) -> None:
        self.lowest = np.full(len(self.vectors["image"]), np.inf, dtype=np.float32)
        np.minimum.at(self.lowest, self.gold_images, self.gold_scores)
        self.gold_keys = self.gold_images * 2**32 + ordered_bits(self.gold_scores)
        self.sorted_keys = np.sort(self.gold_keys)
        self.histogram = np.zeros(len(self.sorted_keys) + len(self.vectors["image"]) + 1, dtype=np.int64)

    def add(self, lang: str, rows: np.ndarray, product: np.ndarray) -> None:
        """Counts the captions of `lang` (rows: their caption rows, the rows of `product`
        against every image) that score at least an image's lowest gold: each lands in the
        histogram at (golds of its image strictly below it) + its image, so that images'
        bins never meet; a caption at a gold's very score is kept for the tie rule."""
        if not self.exact or self.unread or not len(self.gold_scores):
            return
        if self.histogram is None:
            self._start_counting()
        mine, lines = self._gold_rows(lang, rows)
        self.exact &= np.array_equal(product[lines, self.gold_images[mine]], self.gold_scores[mine])
        self.uncounted.discard(lang)
        inside = np.flatnonzero(self.pooled_position[rows] >= 0)
        scores = product[: len(inside)] if inside[-1] == len(inside) - 1 else product[inside]  # caption 0 first
        for start in range(0, len(scores), self.chunk):
            row, image = np.nonzero(scores[start : start + self.chunk] >= self.lowest)
            keys = image * 2**32 + ordered_bits(scores[start + row, image])
            below = np.searchsorted(self.sorted_keys, keys)
            self.histogram += np.bincount(below + image, minlength=len(self.histogram))
            tied = self.sorted_keys[np.minimum(below, len(self.sorted_keys) - 1)] == keys
            self.tied_keys.append(keys[tied])
            self.tied_positions.append(self.pooled_position[rows[inside[start + row[tied]]]])

    def _tied_ahead(self) -> np.ndarray:
        """Per gold, the captions at its very score (same image) earlier in the pool."""
        keys, positions = np.concatenate(self.tied_keys), np.concatenate(self.tied_positions)
        distinct = np.unique(keys)
        span = len(self.language) + 1
        pairs = np.sort(np.searchsorted(distinct, keys) * span + positions)
        group = np.searchsorted(distinct, self.gold_keys) * span
        return np.searchsorted(pairs, group + self.gold_positions) - np.searchsorted(pairs, group)

    def ranks(self) -> np.ndarray:
        if self.exact and not self.unread and not self.uncounted:
            cumulative = np.concatenate([[0], np.cumsum(self.histogram)])
            above = np.searchsorted(self.sorted_keys, self.gold_keys, side="right")  # golds up to its score
            image_end = np.searchsorted(self.sorted_keys, (self.gold_images + 1) * 2**32)
            higher = cumulative[image_end + self.gold_images + 1] - cumulative[above + self.gold_images]
            return higher + self._tied_ahead() + 1
        (_, images), (_, captions), (gold_queries, gold_candidates) = self.block
        return ranks_of_relevant(
            self.vectors["image"][images], self.vectors["caption"][captions], gold_queries, gold_candidates
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
    names = metric_names(params["recall_at"], params["ndcg_at"], params["mrr_at"])
    jobs = [
        (protocol, block)
        for protocol in params["protocols"]
        for block in blocks(captions, images, relevant, protocol, params.get("t2t_languages"))
    ]
    products = BlockScores(captions, vectors, device)
    keys = [None if per_block else products.key(*block[3:5]) for _, block in jobs]
    pooled = {
        number: PooledRanks(vectors, products.language, block[3:6])
        for number, (_, block) in enumerate(jobs)
        if not per_block and block[3][0] == "image" and keys[number] is None
    }
    image_keys = sorted({key for key in keys if key and key[0] == "image"}) if pooled else []
    for key in image_keys:  # the gold scores of every pooled block, read off the products that count them
        for counts in pooled.values():
            counts.read_golds(key[1], products.rows[key[1]], products.hold(key))
    ranks_of = {}
    for number in sorted(range(len(jobs)), key=lambda n: keys[n] or ("pooled",)):  # each product once
        _, (_, _, _, query, candidate, (g_q, g_c)) = jobs[number]
        if number in pooled:
            ranks_of[number] = pooled[number].ranks()
        elif keys[number] is None:  # per_block: scored a chunk of queries at a time
            ranks_of[number] = ranks_of_relevant(
                vectors[query[0]][query[1]], vectors[candidate[0]][candidate[1]], g_q, g_c
            )
        else:
            if keys[number][0] == "image":
                for counts in pooled.values():
                    if keys[number][1] in counts.uncounted:
                        counts.add(keys[number][1], products.rows[keys[number][1]], products.hold(keys[number]))
            scores, query_lines, candidate_lines, by_column = products.block(keys[number], query, candidate)
            order = np.empty(len(candidate_lines), dtype=np.int64)
            order[candidate_lines] = np.arange(len(candidate_lines))  # the block's candidate order, for ties
            gold = (candidate_lines[g_c], query_lines[g_q]) if by_column else (query_lines[g_q], candidate_lines[g_c])
            ranks_of[number] = ranks_in_scores(scores, *gold, by_column=by_column, order=order)
    per_query, by_language = [], []
    for number, (protocol, block) in enumerate(jobs):
        setting, query_lang, candidate_lang, (q_side, q_rows), (c_side, c_rows), (g_q, g_c) = block
        name = setting_name(setting, protocol)
        ranks = ranks_of[number]
        pooled = is_multi(setting)  # language bias: best rank per caption language first
        languages = captions.lang.to_numpy()[c_rows][g_c] if pooled else None
        scores = rank_metrics(
            ids[q_side][q_rows][g_q],
            ranks,
            params["recall_at"],
            params["ndcg_at"],
            params["mrr_at"],
            "any",
            languages,
        )
        scores = scores.rename_axis("qid").reset_index()
        scores.insert(
            0, "item_id", pd.Series(items[q_side][q_rows], index=ids[q_side][q_rows]).reindex(scores.qid).to_numpy()
        )
        scores = scores.assign(query_lang=query_lang, candidate_lang=candidate_lang, setting=name)
        if not pooled:
            scores["rank_distance"] = np.nan
        per_query.append(scores)
        means = scores[names + ["rank_distance"]].mean().to_frame().T
        by_language.append(
            means.assign(
                query_lang=query_lang,
                candidate_lang=candidate_lang,
                queries=len(scores),
                skipped=len(q_rows) - len(scores),
                setting=name,
            )
        )
    return pd.concat(per_query, ignore_index=True), pd.concat(by_language, ignore_index=True)


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
    text_model: dict
    descriptor: dict
    corpus: NotRequired[str]
    t2t_languages: NotRequired[list[str] | None]


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
    image_text_model = load_model(model, params["text_model"])
    if states:
        image_text_model.use_states(CaptionStates(states))
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
    out_dir.mkdir(parents=True, exist_ok=True)
    schema.write_table(pa.Table.from_pandas(per_query, preserve_index=False), out_dir / "per_query.parquet")
    schema.write_table(pa.Table.from_pandas(by_language, preserve_index=False), out_dir / "by_language.parquet")
    names = metric_names(params["recall_at"], params["ndcg_at"], params["mrr_at"])
    summary = summary_rows(by_language, names, params["descriptor"])
    summary.to_csv(out_dir / "summary.csv", index=False)
    return summary
