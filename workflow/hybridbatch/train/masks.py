"""False negatives: candidates that must never count as negatives of an example, for both
tracks. Example i's positive is candidate i; a candidate j != i is masked when the qrels
make it relevant to example i (a conflict the batch builder should have kept out), or
when it has the very text of example i's own (a duplicate).

The qrels are held as arrays (`Relevance`): each query's relevant targets as integer
codes, padded; a batch's masks are array comparisons, no Python loop over its pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from hybridbatch.artifacts import schema

PAD, UNKNOWN = -1, -2  # no relevant target in that slot; a target the qrels never name


class Relevance:
    """The qrels' relevant (query, target) pairs: `targets_of(qids)` gives each query's
    relevant targets as codes (rows padded with PAD), `codes(pids)` a target's code."""

    def __init__(self, qids: np.ndarray, pids: np.ndarray):
        self.queries = pd.Index(pd.unique(qids))
        target_codes, targets = pd.factorize(pids)
        self.targets = pd.Index(targets)
        rows = self.queries.get_indexer(qids)
        self.flat = target_codes[np.lexsort((target_codes, rows))]  # each query's targets, query by query
        counts = np.bincount(rows, minlength=len(self.queries))
        self.counts = np.append(counts, 0)  # the last entry: unknown queries (get_indexer's -1)
        self.starts = np.append(np.cumsum(counts) - counts, 0)

    @classmethod
    def read(cls, path: Path) -> Relevance:
        qrels = schema.read_parquet(path, schema.QRELS)
        qrels = qrels[qrels.relevance > 0]
        return cls(qrels.qid.to_numpy(), qrels.pid.to_numpy())

    @classmethod
    def from_pairs(cls, pairs) -> Relevance:
        qids, pids = zip(*pairs) if pairs else ((), ())
        return cls(np.array(qids, dtype=object), np.array(pids, dtype=object))

    def targets_of(self, qids: list[str]) -> np.ndarray:
        """(queries x the most targets any of them has): target codes, rows padded with PAD."""
        rows = self.queries.get_indexer(qids)
        counts = self.counts[rows]
        slots = np.arange(max(int(counts.max(initial=0)), 1))
        index = np.minimum(self.starts[rows][:, None] + slots, max(len(self.flat) - 1, 0))
        found = self.flat[index] if len(self.flat) else np.zeros(index.shape, dtype=np.int64)
        return np.where(slots < counts[:, None], found, PAD)

    def codes(self, pids: list[str]) -> np.ndarray:
        codes = self.targets.get_indexer(pids)
        return np.where(codes < 0, UNKNOWN, codes)

    def relevant(self, qids: list[str], pids: list[str]) -> np.ndarray:
        """(queries x targets): the qrels judge target j relevant to query i."""
        mine = self.targets_of(qids)
        return (mine[:, :, None] == self.codes(pids)[None, None, :]).any(axis=1)

    def share_a_target(self, qids: list[str], other_qids: list[str]) -> np.ndarray:
        """(queries x other queries): some target is relevant to both."""
        mine, theirs = self.targets_of(qids), self.targets_of(other_qids)
        same = mine[:, None, :, None] == theirs[None, :, None, :]
        return (same & (mine != PAD)[:, None, :, None]).any(axis=(2, 3))


def false_negative_masks(
    relevant: np.ndarray, own_texts: list[str], candidate_texts: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(relevant, duplicate) masks over examples x candidates: `relevant` from the qrels,
    duplicate where candidate text j equals `own_texts[i]`. Neither is ever set on the
    diagonal (the positive), and a relevant candidate is not also a duplicate."""
    n, m = len(own_texts), len(candidate_texts)
    own = torch.eye(n, m, dtype=torch.bool)
    codes, _ = pd.factorize(np.array(list(own_texts) + list(candidate_texts), dtype=object))
    is_relevant = torch.from_numpy(np.asarray(relevant, dtype=bool).reshape(n, m)) & ~own
    duplicate = torch.from_numpy(codes[:n, None] == codes[None, n:])
    return is_relevant, duplicate & ~own & ~is_relevant


def text_false_negatives(
    qids: list[str], candidate_pids: list[str], candidate_texts: list[str], relevance: Relevance
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text track: queries x candidates (positives, then hard negatives); relevant when
    (qid, pid) is in the qrels, duplicate when a candidate has the text of the query's positive."""
    relevant = relevance.relevant(qids, candidate_pids)
    return false_negative_masks(relevant, candidate_texts[: len(qids)], candidate_texts)


def caption_false_negatives(rows: dict, image_batch: bool, relevance: Relevance) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-text track: captions x targets. Relevant: the qrels make target j relevant to
    caption i (an image, or a caption sharing a relevant image). Duplicate: caption j has
    caption i's text (image batches, where image-to-text ranks captions) or target j has
    target i's (caption-caption batches)."""
    if image_batch:
        relevant = relevance.relevant(rows["qid"], rows["pid"])
        texts = rows["query"]
    else:
        relevant = relevance.share_a_target(rows["qid"], rows["pid"])
        texts = rows["positive"]
    return false_negative_masks(relevant, texts, texts)
