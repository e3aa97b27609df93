"""Every registry a config names entries of (corpus formats, model sources, image towers,
objectives), and the check that a config names only registered ones: the registries are
the lists, the config schema has none. It imports the stages' libraries, so the workflow
runs it once before any job (`hybridbatch check-config`), not at parse time."""

from __future__ import annotations

from hybridbatch.config import IMAGE_SOURCES, ConfigError
from hybridbatch.corpora.formats import SOURCES
from hybridbatch.models.base_model import MODEL_SOURCES
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
