"""False negatives: candidates that must never count as negatives of an example, for both
tracks. Example i's positive is candidate i; a candidate j != i is masked when the qrels
make it relevant to example i (a conflict the batch builder should have kept out), or
when it has the very text of example i's own (a duplicate)."""

from __future__ import annotations

import torch


def false_negative_masks(
    relevant: list[list[bool]], own_texts: list[str], candidate_texts: list[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(relevant, duplicate) masks over examples x candidates: `relevant[i][j]` from the
    qrels, duplicate where candidate text j equals `own_texts[i]`. Neither is ever set on
    the diagonal (the positive), and a relevant candidate is not also a duplicate."""
    n, m = len(own_texts), len(candidate_texts)
    own = torch.eye(n, m, dtype=torch.bool)
    is_relevant = torch.tensor(relevant, dtype=torch.bool).reshape(n, m) & ~own
    duplicate = torch.tensor([[text == mine for text in candidate_texts] for mine in own_texts], dtype=torch.bool)
    return is_relevant, duplicate.reshape(n, m) & ~own & ~is_relevant


def text_false_negatives(
    qids: list[str], candidate_pids: list[str], candidate_texts: list[str], relevant: set[tuple[str, str]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Text track: queries x candidates (positives, then hard negatives); relevant when
    (qid, pid) is in the qrels, duplicate when a candidate has the text of the query's positive."""
    matrix = [[(qid, pid) in relevant for pid in candidate_pids] for qid in qids]
    return false_negative_masks(matrix, candidate_texts[: len(qids)], candidate_texts)


def caption_false_negatives(
    rows: dict, image_batch: bool, relevant_to: dict[str, set[str]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Image-text track: captions x targets. Relevant: the qrels make target j relevant to
    caption i (an image, or a caption sharing a relevant image). Duplicate: caption j has
    caption i's text (image batches, where image-to-text ranks captions) or target j has
    target i's (caption-caption batches)."""
    mine = [relevant_to.get(qid, set()) for qid in rows["qid"]]
    if image_batch:
        matrix = [[pid in images for pid in rows["pid"]] for images in mine]
        texts = rows["query"]
    else:
        targets = [relevant_to.get(pid, set()) for pid in rows["pid"]]
        matrix = [[bool(images & theirs) for theirs in targets] for images in mine]
        texts = rows["positive"]
    return false_negative_masks(matrix, texts, texts)
