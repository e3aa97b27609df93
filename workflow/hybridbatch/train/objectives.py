"""Training objectives, registered by name: the text track's InfoNCE, the symmetric
image-text InfoNCE of CLIP/LiT and SigLIP's pairwise sigmoid loss. Row i's positive is
column i; masked entries (relevant candidates or copies of the positive) are never
negatives. Every objective takes a temperature and a logit bias (None: no bias); a
softmax loss is unchanged by a bias added to every logit, so the InfoNCE losses ignore it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn.functional import cross_entropy

from hybridbatch.registry import Registry

Objective = Callable[..., torch.Tensor]  # (queries, candidates, mask, temperature, bias=None) -> loss
OBJECTIVES: Registry[Objective] = Registry("objective")


def _scores(queries: torch.Tensor, candidates: torch.Tensor, mask: torch.Tensor, temperature) -> torch.Tensor:
    scores = queries @ candidates.T / temperature
    return scores.masked_fill(mask.to(scores.device), float("-inf"))


def info_nce(
    queries: torch.Tensor,
    candidates: torch.Tensor,
    false_negative_mask: torch.Tensor,
    temperature: float | torch.Tensor,
    bias: torch.Tensor | None = None,
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


def symmetric_info_nce(
    texts: torch.Tensor,
    images: torch.Tensor,
    false_negative_mask: torch.Tensor,
    temperature: float | torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """CLIP's loss: the mean of text->image and image->text cross-entropy over the batch."""
    return info_nce(texts, images, false_negative_mask, temperature, symmetric=True)


def sigmoid(
    texts: torch.Tensor,
    targets: torch.Tensor,
    false_negative_mask: torch.Tensor,
    temperature: float | torch.Tensor,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """SigLIP's loss: every (text, target) pair is a binary decision, positive on the
    diagonal; logits are cosine / temperature + bias; the loss sums -log sigmoid over a row
    and averages the rows (as transformers' SiglipModel). Masked pairs count neither way."""
    n = texts.shape[0]
    logits = texts @ targets[:n].T / temperature
    if bias is not None:
        logits = logits + bias
    signs = 2 * torch.eye(n, device=logits.device, dtype=logits.dtype) - 1
    terms = torch.nn.functional.logsigmoid(signs * logits).masked_fill(false_negative_mask[:, :n].to(logits.device), 0)
    return -terms.sum(dim=1).mean()


# Registered here rather than by decorator: mutmut (make mutation) mutates undecorated functions only.
OBJECTIVES.register("info-nce")(info_nce)
OBJECTIVES.register("symmetric-info-nce")(symmetric_info_nce)
OBJECTIVES.register("sigmoid")(sigmoid)
