"""Training objectives, registered by name: the text track's InfoNCE and the symmetric
image-text InfoNCE of CLIP/LiT. Row i's positive is column i; masked entries (relevant
candidates or copies of the positive) are never negatives."""

from __future__ import annotations

from typing import Callable

import torch
from torch.nn.functional import cross_entropy

from .registry import Registry

Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "float | torch.Tensor"], torch.Tensor]
OBJECTIVES: Registry[Objective] = Registry("objective")


def _scores(queries: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor, temperature) -> torch.Tensor:
    scores = queries @ candidates.T / temperature
    return scores.masked_fill(mask.to(scores.device), float("-inf"))


@OBJECTIVES.register("info-nce")
def info_nce(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    false_negative_mask: torch.Tensor,
    temperature: float | torch.Tensor,
    symmetric: bool = False,
) -> torch.Tensor:
    """Query i's positive is candidate i; every other candidate (in-batch and hard
    negatives) is a negative, except those masked as false negatives. `symmetric` adds
    the candidate-to-query direction over the positives."""
    n = queries.shape[0]
    scores = _scores(queries, candidates, false_negative_mask, temperature)
    labels = torch.arange(n, device=scores.device)
    loss = cross_entropy(scores, labels)
    if symmetric:
        loss = (loss + cross_entropy(scores[:, :n].T, labels)) / 2
    return loss


@OBJECTIVES.register("symmetric-info-nce")
def symmetric_info_nce(
    texts: torch.Tensor, images: torch.Tensor, false_negative_mask: torch.Tensor, temperature: float | torch.Tensor
) -> torch.Tensor:
    """CLIP's loss: the mean of text->image and image->text cross-entropy over the batch."""
    return info_nce(texts, images, false_negative_mask, temperature, symmetric=True)
