"""BM25 over a sparse passage x term matrix, for mining hard negatives at corpus scale.

Scores are Lucene's BM25 as bm25s computes it (k1 1.5, b 0.75). Every passage asks with
its own words, so the query is pruned: the passage's distinct words, rarest first, as
many as fit a budget of postings (the passages the words occur in, summed), and always
the rarest. A query then reads at most `budget` postings whatever the corpus size,
unless its rarest word alone occurs in more passages; memory grows with the corpus's
distinct (passage, word) pairs, not with the number of passages squared.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from scipy import sparse

TOKEN = re.compile(r"\w+", re.UNICODE)
K1, B = 1.5, 0.75
CHUNK = 50_000  # passages tokenised (and queries scored, / 50) at a time


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


@dataclass(frozen=True)
class TermIndex:
    weights: sparse.csr_matrix  # passage x term: the BM25 weight of each word a passage holds
    postings: sparse.csr_matrix  # term x passage: the same weights, by word

    @cached_property
    def document_frequency(self) -> np.ndarray:
        """Passages per term (computed once, not per query chunk)."""
        return np.diff(self.postings.indptr)


def index_texts(texts: Iterable[str]) -> TermIndex:
    """The BM25 weights of `texts`, tokenised a chunk at a time into integer term ids."""
    vocabulary: dict[str, int] = {}
    blocks, buffer = [], []

    def flush() -> None:
        ids = [[vocabulary.setdefault(word, len(vocabulary)) for word in tokens(text)] for text in buffer]
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        rows = np.repeat(np.arange(len(ids)), lengths)
        columns = np.fromiter((i for row in ids for i in row), np.int64, int(lengths.sum()))
        counts = sparse.csr_matrix(
            (np.ones(len(columns), np.float32), (rows, columns)), shape=(len(ids), len(vocabulary))
        )
        counts.sum_duplicates()
        blocks.append(counts)
        buffer.clear()

    for text in texts:
        buffer.append(text)
        if len(buffer) == CHUNK:
            flush()
    if buffer or not blocks:
        flush()
    for block in blocks:
        block.resize(block.shape[0], len(vocabulary))
    counts = sparse.vstack(blocks, format="csr")
    n = counts.shape[0]
    length = np.asarray(counts.sum(axis=1)).ravel()
    frequency = np.bincount(counts.indices, minlength=counts.shape[1])  # passages per term
    idf = np.log1p((n - frequency + 0.5) / (frequency + 0.5)).astype(np.float32)
    relative = np.repeat(length / max(length.mean(), 1e-9), np.diff(counts.indptr)).astype(np.float32)
    tf = counts.data
    weights = sparse.csr_matrix(
        (idf[counts.indices] * tf / (tf + K1 * (1 - B + B * relative)), counts.indices, counts.indptr),
        shape=counts.shape,
    )
    return TermIndex(weights, weights.T.tocsr())


def pruned_queries(index: TermIndex, rows: np.ndarray, budget: int) -> sparse.csr_matrix:
    """One query per passage in `rows`: its distinct words, rarest first (then by term id,
    the order of first appearance in the corpus), while their postings sum to at most
    `budget`; the rarest word always."""
    own = index.weights[rows]
    owner = np.repeat(np.arange(len(rows)), np.diff(own.indptr))
    frequency = index.document_frequency[own.indices]
    order = np.lexsort((own.indices, frequency, owner))
    cumulative = np.cumsum(frequency[order])
    starts = own.indptr[:-1]
    within = cumulative - np.repeat(np.concatenate(([0], cumulative))[starts], np.diff(own.indptr))
    first = np.zeros(len(order), bool)
    first[starts[np.diff(own.indptr) > 0]] = True
    keep = order[(within <= budget) | first]
    return sparse.csr_matrix(
        (np.ones(len(keep), np.float32), (owner[keep], own.indices[keep])), shape=(len(rows), own.shape[1])
    )


def top_candidates(
    index: TermIndex, rows: np.ndarray, depth: int, budget: int
) -> Iterable[tuple[int, np.ndarray, np.ndarray]]:
    """For each passage in `rows`: (row, the `depth` best-scoring passages for its pruned
    query, by score then row, and their scores); only passages sharing a query word."""
    step = max(1, CHUNK // 50)
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        scores = pruned_queries(index, chunk, budget) @ index.postings
        for i, row in enumerate(chunk):
            found = scores.indices[scores.indptr[i] : scores.indptr[i + 1]]
            values = scores.data[scores.indptr[i] : scores.indptr[i + 1]]
            if len(values) > depth:  # every passage scoring at least the depth-th best, then by row
                threshold = -np.partition(-values, depth - 1)[depth - 1]
                found, values = found[values >= threshold], values[values >= threshold]
            order = np.lexsort((found, -values))[:depth]
            yield int(row), found[order], values[order]
