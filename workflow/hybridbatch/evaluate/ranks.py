"""The rank engine: exact ranks of relevant candidates under dot-product scores, with one
tie rule (an equal score at an earlier candidate ranks first, `ranked_ahead`).

Its drivers: `search_block` streams stored candidate vectors in blocks (the text track:
top-k lists merged block by block, and every relevant candidate beyond its list ranked in
a second pass); `ranks_in_scores` counts in a score matrix held already (the image-text
track's shared products); `ranks_of_relevant` scores and ranks an in-memory matrix a
chunk at a time (the image-text reference and fallback).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np

from hybridbatch.artifacts.vectors import CandidateBlocks


def ranked_ahead(
    scores: np.ndarray, gold_scores: np.ndarray, gold_columns: np.ndarray, columns: np.ndarray
) -> np.ndarray:
    """Which candidates (`columns`, the positions of the score matrix's columns) rank ahead
    of each row's gold candidate: a higher score, or the same score at an earlier column."""
    gold = gold_scores[:, None]
    return (scores > gold) | ((scores == gold) & (columns[None, :] < gold_columns[:, None]))


QUERY_CHUNK = 128
BLOCK_MB = 64  # default size of one block of query x candidate scores


def top_k_exact(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, columns) of each row's k best candidates, best first; ties go to the
    earlier column, at the k-th place too."""
    if k < scores.shape[1]:
        kth = -np.partition(-scores, k - 1, axis=1)[:, k - 1 : k]
        above, tied = scores > kth, scores == kth
        wanted = k - above.sum(axis=1, keepdims=True)
        keep = above | (tied & (np.cumsum(tied, axis=1, dtype=np.int32) <= wanted))
        part = np.nonzero(keep)[1].reshape(len(scores), k)
    else:
        part = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    part_scores = np.take_along_axis(scores, part, axis=1)
    order = np.lexsort((part, -part_scores), axis=1)
    columns = np.take_along_axis(part, order, axis=1)
    return np.take_along_axis(scores, columns, axis=1), columns


def block_width(block_mb: float, rows: int = QUERY_CHUNK) -> int:
    """Candidates per block so that one block of rows x candidates float32 scores fits block_mb."""
    return max(1, int(block_mb * 2**20 // (4 * rows)))


def query_chunks(queries: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
    return ((start, queries[start : start + QUERY_CHUNK]) for start in range(0, len(queries), QUERY_CHUNK))


def golds_by_chunk(rows: np.ndarray) -> dict[int, np.ndarray]:
    """Positions of the gold pairs of each query chunk, by chunk number."""
    chunk = rows // QUERY_CHUNK
    order = np.argsort(chunk, kind="stable")
    numbers, starts = np.unique(chunk[order], return_index=True)
    return {int(n): part for n, part in zip(numbers, np.split(order, starts[1:]))}


def merge_top_k(scores: np.ndarray, columns: np.ndarray, more_scores: np.ndarray, more_columns: np.ndarray, k: int):
    """The k best of two lists per row, best first (ties: the earlier column)."""
    merged_scores, merged_columns = np.hstack([scores, more_scores]), np.hstack([columns, more_columns])
    order = np.lexsort((merged_columns, -merged_scores), axis=1)[:, :k]
    return np.take_along_axis(merged_scores, order, axis=1), np.take_along_axis(merged_columns, order, axis=1)


def streamed_search(
    queries: np.ndarray, blocks: CandidateBlocks, k: int | None, gold: tuple[np.ndarray, np.ndarray]
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """One pass over the candidate blocks: the exact top-k of every query (None when k is
    None), merged block by block (ties: the earlier candidate, as top_k_exact over all of
    them), and the scores of the gold (row, column) pairs read off the same score blocks."""
    top = [
        (np.empty((len(chunk), 0), np.float32), np.empty((len(chunk), 0), np.int64))
        for _, chunk in query_chunks(queries)
    ]
    gold_scores = np.full(len(gold[0]), np.nan, np.float32)  # NaN until its block is scored
    by_chunk = golds_by_chunk(gold[0])
    for lo, block in blocks():
        for number, (start, chunk) in enumerate(query_chunks(queries)):
            mine = by_chunk.get(number, np.empty(0, np.int64))
            here = mine[(gold[1][mine] >= lo) & (gold[1][mine] < lo + len(block))]
            if k is None and not len(here):
                continue
            scores = chunk @ block.T
            gold_scores[here] = scores[gold[0][here] - start, gold[1][here] - lo]
            if k is not None:
                block_scores, block_columns = top_k_exact(scores, min(k, len(block)))
                top[number] = merge_top_k(*top[number], block_scores, block_columns + lo, k)
    if k is None:
        return None, None, gold_scores
    return np.vstack([s for s, _ in top]), np.vstack([c for _, c in top]), gold_scores


def ranks_beyond(
    queries: np.ndarray,
    blocks: CandidateBlocks,
    gold: tuple[np.ndarray, np.ndarray],
    gold_scores: np.ndarray,
    listed: np.ndarray,
) -> np.ndarray:
    """Rank of each gold candidate that its query's list `listed` (returned columns, -1
    padded) misses: the list first, then every other candidate in exact-score order (ties:
    earlier first). Counted over the same score blocks as streamed_search."""
    rows, columns = gold
    ahead = np.zeros(len(rows), np.int64)  # candidates before the gold in exact order
    ahead_listed = np.zeros(len(rows), np.int64)  # of those, the ones in the list
    by_chunk = golds_by_chunk(rows)
    for lo, block in blocks():
        position = np.arange(lo, lo + len(block))
        for number, (start, chunk) in enumerate(query_chunks(queries)):
            here = by_chunk.get(number, [])
            if not len(here):
                continue
            before = ranked_ahead((chunk @ block.T)[rows[here] - start], gold_scores[here], columns[here], position)
            ahead[here] += before.sum(axis=1)
            in_block = (listed[here] >= lo) & (listed[here] < lo + len(block))
            listed_before = np.take_along_axis(before, np.where(in_block, listed[here] - lo, 0), axis=1)
            ahead_listed[here] += (listed_before & in_block).sum(axis=1)
    return (listed >= 0).sum(axis=1) + ahead + 1 - ahead_listed


def search_block(
    index: faiss.Index | None,
    queries: np.ndarray,
    blocks: CandidateBlocks,
    candidates: int,
    gold: tuple[np.ndarray, np.ndarray],
    top_k: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Top-k of every query plus every gold candidate beyond the top-k with its rank, in
    bounded memory: scores exist one block of QUERY_CHUNK queries x one candidate block at
    a time, and the candidates are read block by block, once for the lists (exact search,
    `index` None, merges the blocks' top-k; an approximate index returns its own lists)
    and once more when a gold candidate is beyond its list. `gold` is (query row,
    candidate column) of every relevant candidate. Returns (query row, candidate column,
    rank, score) arrays, by row and rank."""
    k = min(top_k, candidates)
    scores, columns, gold_scores = streamed_search(queries, blocks, None if index else k, gold)
    if index is not None:
        scores, columns = index.search(queries, k)
    returned = columns >= 0  # FAISS pads a short list with -1
    ranks = np.cumsum(returned, axis=1)
    rows = np.broadcast_to(np.arange(len(queries))[:, None], columns.shape)
    parts = [(rows[returned], columns[returned], ranks[returned], scores[returned])]
    outside = ~(columns[gold[0]] == gold[1][:, None]).any(axis=1)
    if outside.any():
        missed = (gold[0][outside], gold[1][outside])
        rank = ranks_beyond(queries, blocks, missed, gold_scores[outside], columns[missed[0]])
        parts.append((missed[0], missed[1], rank, gold_scores[outside]))
    q, c, rank, score = (np.concatenate(values) for values in zip(*parts))
    order = np.lexsort((rank, q))
    return q[order], c[order], rank[order], score[order]


def exact_ranks(scores: np.ndarray, gold_columns: np.ndarray, gold_rows: np.ndarray) -> np.ndarray:
    """Rank of candidate gold_columns[i] for query row gold_rows[i] in the score matrix,
    counting higher scores and equal scores of earlier candidates (ranked_ahead, which
    only rows with a tie at the gold score need)."""
    return _ranks_in_rows(scores[gold_rows], gold_columns)


def _ranks_in_rows(rows: np.ndarray, gold_columns: np.ndarray) -> np.ndarray:
    """exact_ranks of gold_columns[i] in row i."""
    gold = rows[np.arange(len(rows)), gold_columns][:, None]
    ranks = np.count_nonzero(rows > gold, axis=1) + 1
    tied = np.count_nonzero(rows == gold, axis=1) > 1  # another candidate has the gold's very score
    if tied.any():
        ahead = ranked_ahead(rows[tied], gold[tied, 0], gold_columns[tied], np.arange(rows.shape[1]))
        ranks[tied] = np.count_nonzero(ahead, axis=1) + 1
    return ranks


def count_in_rows(mask: np.ndarray) -> np.ndarray:
    """np.count_nonzero(mask, axis=1), eight booleans (bytes 0 or 1) a bit count at a time."""
    if mask.shape[1] % 8 or not mask.flags.c_contiguous:
        return np.count_nonzero(mask, axis=1)
    return np.bitwise_count(mask.view(np.uint64)).sum(axis=1, dtype=np.int64)


def ranks_in_scores(
    scores: np.ndarray,
    gold_rows: np.ndarray,
    gold_columns: np.ndarray,
    by_column: bool = False,
    order: np.ndarray | None = None,
    budget: int = 20_000_000,
) -> np.ndarray:
    """exact_ranks over a score matrix computed already; `by_column`, the queries are its
    columns (the rank of candidate row gold_rows[i] in query column gold_columns[i]). The
    k-th gold of every query is counted at once, about `budget` scores at a time: how many
    candidates score higher, and how many the same (a tie at the gold: ranked_ahead, the
    earlier candidate by `order`, each candidate line's place, by default its position)."""
    queries, candidates = (gold_columns, gold_rows) if by_column else (gold_rows, gold_columns)
    gold = scores[gold_rows, gold_columns]
    by_query = np.argsort(queries, kind="stable")
    slot = np.empty(len(by_query), dtype=np.int64)  # k-th gold of its query
    slot[by_query] = np.arange(len(by_query)) - np.searchsorted(queries[by_query], queries[by_query], side="left")
    thresholds = np.full((slot.max(initial=-1) + 1, scores.shape[1 if by_column else 0]), np.nan, scores.dtype)
    thresholds[slot, queries] = gold  # NaN where a query has no k-th gold: nothing compares to it
    workers = faiss.omp_get_max_threads()  # the job's threads (numpy's comparisons release the GIL)
    chunk = max(1, min(budget // max(1, scores.shape[1]), -(-len(scores) // (4 * workers))))

    def count(start: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(higher, same) counts of each k-th gold threshold over rows start:start+chunk."""
        part = scores[start : start + chunk]
        if by_column:
            return [(np.count_nonzero(part > t, axis=0), np.count_nonzero(part == t, axis=0)) for t in thresholds]
        mine = thresholds[:, start : start + chunk, None]
        return [(count_in_rows(part > t), count_in_rows(part == t)) for t in mine]

    higher, same = np.zeros(thresholds.shape, np.int64), np.zeros(thresholds.shape, np.int64)
    with ThreadPoolExecutor(workers) as pool:
        for start, part in zip(range(0, len(scores), chunk), pool.map(count, range(0, len(scores), chunk))):
            for k, (above, tied) in enumerate(part):
                if by_column:
                    higher[k] += above
                    same[k] += tied
                else:
                    higher[k, start : start + chunk], same[k, start : start + chunk] = above, tied
    ranks = higher[slot, queries] + 1
    tied = same[slot, queries] > 1  # another candidate has the gold's very score
    if tied.any():
        lines = scores[:, queries[tied]].T if by_column else scores[queries[tied]]
        order = np.arange(lines.shape[1]) if order is None else order
        ahead = ranked_ahead(lines, gold[tied], order[candidates[tied]], order)
        ranks[tied] = np.count_nonzero(ahead, axis=1) + 1
    return ranks


def ranks_of_relevant(
    queries: np.ndarray,
    candidates: np.ndarray,
    gold_rows: np.ndarray,
    gold_columns: np.ndarray,
    budget: int = 20_000_000,
) -> np.ndarray:
    """Exact rank of candidate gold_columns[i] for query gold_rows[i] under dot-product
    scores (ties: the earlier candidate first), holding at most about `budget` scores
    or comparisons at a time. A query with many relevant candidates (pooled settings)
    is ranked by counting, one pass over its scores, how many candidates beat each of
    its gold scores; others by direct comparison."""
    ranks = np.empty(len(gold_rows), dtype=np.int64)
    order = np.argsort(gold_rows, kind="stable")
    sorted_rows = gold_rows[order]
    chunk = max(1, budget // max(1, len(candidates)))
    for start in range(0, len(queries), chunk):
        lo, hi = np.searchsorted(sorted_rows, [start, start + chunk])
        if hi == lo:
            continue
        scores = queries[start : start + chunk] @ candidates.T
        if (hi - lo) > MANY_RELEVANT * min(chunk, len(queries) - start):
            bounds = np.searchsorted(sorted_rows[lo:hi], np.arange(start, start + len(scores) + 1)) + lo
            for row, (first, last) in enumerate(zip(bounds[:-1], bounds[1:])):
                if last > first:
                    chosen = order[first:last]
                    ranks[chosen] = _ranks_by_counting(scores[row], gold_columns[chosen])
            continue
        for part in range(lo, hi, chunk):
            chosen = order[part : min(part + chunk, hi)]
            ranks[chosen] = exact_ranks(scores, gold_columns[chosen], gold_rows[chosen] - start)
    return ranks


MANY_RELEVANT = 8  # relevant candidates per query above which ranks are counted, not compared


def _ranks_by_counting(scores: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """Ranks of the candidates `columns` in one row of scores: 1 + how many score higher,
    from a histogram of where every score at least the lowest gold score falls among the
    sorted gold scores; a row with a tie at a gold score falls back to direct comparison."""
    gold = scores[columns]
    order = np.argsort(gold, kind="stable")
    ascending = gold[order]
    contenders = scores[scores >= ascending[0]]  # the only candidates ahead of (or tied with) a gold
    below = np.searchsorted(ascending, contenders, side="left")  # gold scores strictly below each candidate's
    if (np.searchsorted(ascending, contenders, side="right") - below).sum() != len(
        np.unique(columns)
    ):  # a tie at a gold score
        return exact_ranks(scores[None, :], columns, np.zeros(len(columns), dtype=np.int64))
    above = np.cumsum(np.bincount(below, minlength=len(ascending) + 1)[::-1])[::-1][1:]
    ranks = np.empty(len(columns), dtype=np.int64)
    ranks[order] = above + 1
    return ranks
