"""Ranks of the image-text evaluation's blocks from products shared between them: t2i
and i2t of a language are parts of one product of its captions against the images, L1->L2
and L2->L1 of one product of two languages' captions, the `first` protocol's blocks parts
of the `all` protocol's (BlockScores); the pooled i2t-multi block is counted from the
per-language image products (PooledRanks). The records a block is made of are here too."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from hybridbatch.evaluate.ranks import ranks_in_scores, ranks_of_relevant


@dataclass(frozen=True)
class Side:
    """One side of a block: `kind` 'caption' or 'image', and its rows in that frame."""

    kind: str
    rows: np.ndarray


@dataclass(frozen=True)
class Block:
    """One setting's block: its query and candidate sides and languages, and `gold`, the
    (query position, candidate position) of each relevant pair within it."""

    setting: str
    query_lang: str
    candidate_lang: str
    query: Side
    candidate: Side
    gold: tuple[np.ndarray, np.ndarray]


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

    def key(self, block: Block) -> tuple | None:
        """The product a block is part of: ('image', L) or ('caption', L1, L2), L1 < L2;
        None for pooled caption candidates of several languages."""
        sides = (block.query, block.candidate)
        languages = [self.language[side.rows[:1]][0] if side.kind == "caption" else None for side in sides]
        if any(side.kind == "caption" and len(set(self.language[side.rows])) != 1 for side in sides):
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

    def block(self, key: tuple, block: Block):
        """(scores, query lines, candidate lines, by_column): the part of the product `key`
        (self.key of the block) that holds the block, the line of each query and candidate
        in it, and whether the queries are its columns (the product is not transposed)."""
        product = self.hold(key)
        query = block.query
        query_first = query.kind == "caption" and self.language[query.rows[0]] == key[1]  # the product's rows
        lines = [side.rows if side.kind == "image" else self.position[side.rows] for side in (query, block.candidate)]
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

    def __init__(self, vectors: dict[str, np.ndarray], products: BlockScores, block: Block, chunk: int = 2048):
        """`products`: the shared products; each caption's language and line in its product come from it."""
        images, captions, (gold_queries, gold_candidates) = block.query.rows, block.candidate.rows, block.gold
        self.vectors, self.block, self.chunk = vectors, block, chunk
        self.language, self.line = products.language, products.position
        self.gold_images, self.gold_captions = images[gold_queries], captions[gold_candidates]
        self.gold_positions = gold_candidates
        self.gold_scores = np.full(len(gold_queries), np.nan, dtype=np.float32)
        self.pooled_position = np.full(len(self.language), -1)
        self.pooled_position[captions] = np.arange(len(captions))
        self.unread, self.uncounted = set(self.language[captions]), set(self.language[captions])
        self.exact = vectors["caption"].dtype == vectors["image"].dtype == np.float32
        self.histogram: np.ndarray | None = None
        self.tied_keys, self.tied_positions = [], []

    def _gold_rows(self, lang: str) -> tuple[np.ndarray, np.ndarray]:
        """The golds of `lang` and their lines in its product."""
        mine = np.flatnonzero(self.language[self.gold_captions] == lang)
        return mine, self.line[self.gold_captions[mine]]

    def read_golds(self, lang: str, product: np.ndarray) -> None:
        mine, lines = self._gold_rows(lang)
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
        mine, lines = self._gold_rows(lang)
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
        block = self.block
        return ranks_of_relevant(
            self.vectors["image"][block.query.rows], self.vectors["caption"][block.candidate.rows], *block.gold
        )


def rank_blocks(blocks: list[Block], products: BlockScores, per_block: bool) -> list[np.ndarray]:
    """The ranks of every block's gold pairs, each shared product computed once: blocks
    sliced from the products, pooled blocks counted from them (their gold scores read off
    the image products first), or, `per_block`, every block scored on its own."""
    vectors = products.vectors
    keys = [None if per_block else products.key(block) for block in blocks]
    pooled = {
        number: PooledRanks(vectors, products, block)
        for number, block in enumerate(blocks)
        if not per_block and block.query.kind == "image" and keys[number] is None
    }
    for key in sorted({key for key in keys if key and key[0] == "image"}) if pooled else []:
        for counts in pooled.values():
            counts.read_golds(key[1], products.hold(key))
    ranks: list[np.ndarray | None] = [None] * len(blocks)
    for number in sorted(range(len(blocks)), key=lambda n: keys[n] or ("pooled",)):  # each product once
        block, key = blocks[number], keys[number]
        if number in pooled:
            ranks[number] = pooled[number].ranks()
        elif key is None:  # per_block: scored a chunk of queries at a time
            sides = (vectors[side.kind][side.rows] for side in (block.query, block.candidate))
            ranks[number] = ranks_of_relevant(*sides, *block.gold)
        else:
            if key[0] == "image":
                for counts in pooled.values():
                    if key[1] in counts.uncounted:
                        counts.add(key[1], products.rows[key[1]], products.hold(key))
            scores, query_lines, candidate_lines, by_column = products.block(key, block)
            order = np.empty(len(candidate_lines), dtype=np.int64)
            order[candidate_lines] = np.arange(len(candidate_lines))  # the block's candidate order, for ties
            g_q, g_c = block.gold
            gold = (candidate_lines[g_c], query_lines[g_q]) if by_column else (query_lines[g_q], candidate_lines[g_c])
            ranks[number] = ranks_in_scores(scores, *gold, by_column=by_column, order=order)
    return ranks
