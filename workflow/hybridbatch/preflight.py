"""Config checks that need the stages' code, run once before any job (`hybridbatch
check-config`), not at parse time: every corpus format, model source, image tower and
objective the config names is registered (the registries are the lists, the config schema
has none), and the trainable text layers fit the text tower."""

from __future__ import annotations

from hybridbatch.config import IMAGE_SOURCES, ConfigError
from hybridbatch.corpora.formats import SOURCES
from hybridbatch.models.base_model import MODEL_SOURCES, text_layers
from hybridbatch.models.dual_encoder import check_layers
from hybridbatch.models.image_text import LAYERS_KEY
from hybridbatch.models.image_towers import IMAGE_TOWERS
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


def check_before_any_job(config: dict) -> None:
    check_registered_names(config)
    check_trainable_layers(config)
