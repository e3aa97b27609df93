"""The image-text batch types, one entry each: how a batch of the type draws its caption
languages and what its captions are matched against. A strategy is weights over these
names (config `image_text.strategies.<name>.weights`); the config checks, the batches
stage (batches/image_text.py builds any entry's batches from its fields), training (its
targets) and the reports (pairs by target) all read this table. Adding a type is one
entry here. Standard library only: the Snakemake driver checks the config against it.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGES, CAPTIONS = "images", "captions"  # what a batch's captions are matched against


@dataclass(frozen=True)
class BatchType:
    """`one_language`: every caption of a batch in one language drawn per batch (else one
    drawn per caption); `targets`: IMAGES (the captions' images) or CAPTIONS (a caption of
    the same image in another language, drawn per caption)."""

    one_language: bool
    targets: str

    @property
    def languages_needed(self) -> int:
        """Training languages a batch of this type needs."""
        return 2 if self.targets == CAPTIONS else 1


IMAGE_MONO, IMAGE_MIXED, CAPTION_CAPTION = "image-caption-mono", "image-caption-mixed", "caption-caption"
BATCH_TYPES = {
    IMAGE_MONO: BatchType(one_language=True, targets=IMAGES),
    IMAGE_MIXED: BatchType(one_language=False, targets=IMAGES),  # standard multilingual CLIP
    CAPTION_CAPTION: BatchType(one_language=False, targets=CAPTIONS),  # translation pairs
}
ALPHA_TYPE = IMAGE_MONO  # a strategy's alpha: this type's share of its batches


def lookup(name: str, key: str) -> BatchType:
    """The entry of batch type `name`, or an error naming the config key and the known types."""
    if name not in BATCH_TYPES:
        raise KeyError(f"config key {key}: unknown batch type {name!r} (known: {sorted(BATCH_TYPES)})")
    return BATCH_TYPES[name]


def image_pairs(examples: dict[str, int]) -> int:
    """The pairs whose targets are images among a run's examples by batch type."""
    return sum(n for name, n in examples.items() if BATCH_TYPES[name].targets == IMAGES)


def image_share(weights: dict[str, float]) -> float:
    """The share of a strategy's batches (normalised `weights`) whose targets are images."""
    total = sum(weights.values())
    return sum(w for name, w in weights.items() if BATCH_TYPES[name].targets == IMAGES) / total
