"""Config checks that need the stages' code, run once before any job (`hybridbatch
check-config`), not at parse time: every corpus format, model source, image tower and
objective the config names is registered (the registries are the lists, the config schema
has none), the evaluation computes every headline metric, the trainable text layers fit
the text tower, and the image-text training split holds a training and a validation batch."""

from __future__ import annotations

import math

from hybridbatch.config import IMAGE_SOURCES, ConfigError
from hybridbatch.corpora.formats import SOURCES
from hybridbatch.models.base_model import MODEL_SOURCES, text_layers
from hybridbatch.models.dual_encoder import check_layers
from hybridbatch.models.image_text import LAYERS_KEY
from hybridbatch.models.image_towers import IMAGE_TOWERS
from hybridbatch.names import RANK_DISTANCE, metric_names
from hybridbatch.report.outputs import IMAGE_TEXT_HEADLINES
from hybridbatch.train.objectives import OBJECTIVES


def check_registered_names(config: dict) -> None:
    """Every corpus format, model source, image tower and objective the config names is
    registered (the registries are the lists; the schema has none)."""
    names = [(SOURCES, corpus["source"], f"corpora.{name}.source") for name, corpus in config["corpora"].items()]
    names += [
        (MODEL_SOURCES, model["source"]["kind"], f"models.{name}.source.kind")
        for name, model in config["models"].items()
    ]
    names += [
        (IMAGE_TOWERS, tower["source"]["kind"], f"image_towers.{name}.source.kind")
        for name, tower in config.get("image_towers", {}).items()
    ]
    objective = ((config.get("image_text") or {}).get("training") or {}).get("objective")
    names += [(OBJECTIVES, objective, "image_text.training.objective")] if objective else []
    for registry, name, key in names:
        try:
            registry.lookup(name, key)
        except ValueError as error:
            raise ConfigError(str(error)) from error
    registered = {name for name in SOURCES.names() if SOURCES.entries[name].images}
    if registered != IMAGE_SOURCES:
        raise ConfigError(
            f"hybridbatch.config.IMAGE_SOURCES {sorted(IMAGE_SOURCES)} differs from the corpus formats "
            f"registered with images {sorted(registered)}"
        )


def check_trainable_layers(config: dict) -> None:
    """`image_text.training.trainable_text_layers` fits the text tower, checked before any
    job (where the layer count is known before the model is built: base_model.text_layers)."""
    section = config.get("image_text")
    if not section:
        return
    available = text_layers(config["models"][section["text_model"]])
    if available is not None:
        try:
            check_layers(section["training"]["trainable_text_layers"], available, LAYERS_KEY)
        except ValueError as error:
            raise ConfigError(f"{error} ({section['text_model']})") from error


def training_images(config: dict) -> tuple[int, str] | None:
    """The images of the image-text corpus's train split as the config alone decides them
    (its `max_images`, else the published corpus's size), and what decided it; None when
    only the data can tell."""
    name = config["image_text"]["corpus"]
    corpus = config["corpora"][name]
    full = SOURCES.lookup(corpus["source"], f"corpora.{name}.source").full_images
    sample = corpus.get("max_images")
    if sample is not None and (full is None or sample < full):
        images, why = sample, f"corpora.{name}.max_images: {sample}"
    elif full is not None:
        images, why = full, f"the {full:,} images of {corpus['source']}"
    else:
        return None
    test = round(corpus["test_fraction"] * images)  # as prepare's split_items
    return images - test, f"{why}, corpora.{name}.test_fraction: {corpus['test_fraction']}"


def check_image_text_sizes(config: dict) -> None:
    """A trained image-text run needs one batch of validation images (when any are held
    out) and one of training images: checked from the config's sizes, not after prepare."""
    section = config.get("image_text")
    if not section or not section.get("strategies") or not section.get("seeds"):
        return
    known = training_images(config)
    if known is None:
        return
    images, why = known
    batching = section["batching"]
    fraction, size = batching["development_fraction"], batching["batch_size"]
    held_out = round(fraction * images)  # as the batches stage's validation_items
    if 0 < held_out < size:
        needed = math.ceil(1000 * size / images) / 1000
        raise ConfigError(
            f"config key image_text.batching.development_fraction: {fraction} holds out {held_out} of "
            f"{images} training images ({why}), fewer than one batch of {size} "
            f"(image_text.batching.batch_size); set it to at least {needed}, or 0 for no validation"
        )
    if images - held_out < size:
        raise ConfigError(
            f"config key image_text.batching.batch_size: {size}, but only {images - held_out} training images "
            f"remain ({why}, image_text.batching.development_fraction: {fraction})"
        )


def check_headlines_computed(config: dict) -> None:
    """The evaluation computes every image-text headline's column (report/outputs.py)."""
    evaluation = {key: config["evaluation"][key] for key in ("recall_at", "ndcg_at", "mrr_at")}
    computed = {*metric_names(**evaluation), RANK_DISTANCE}
    missing = [metric for metric, headline in IMAGE_TEXT_HEADLINES.items() if headline.column not in computed]
    if config.get("image_text") and missing:
        raise ConfigError(
            f"config key evaluation.recall_at: {evaluation['recall_at']} does not compute the image-text "
            f"headlines {missing} (report/outputs.py)"
        )


def check_before_any_job(config: dict) -> None:
    check_registered_names(config)
    check_headlines_computed(config)
    check_trainable_layers(config)
    check_image_text_sizes(config)
