"""Configuration: schema validation, cross-references, and the experiment grid."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"
ZERO_SHOT = "zero-shot"


class ConfigError(ValueError):
    """The configuration breaks the schema or refers to something it does not define."""


def validate_config(config: dict, schema_path: Path = SCHEMA_PATH) -> None:
    """Raise ConfigError naming the offending key (e.g. `training.learnin_rate`)."""
    schema = yaml.safe_load(schema_path.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        where = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise ConfigError(f"config key {where}: {error.message}")
    references = [
        ("experiment.models", config["experiment"]["models"], "models"),
        ("experiment.trainset", [config["experiment"]["trainset"]], "trainsets"),
        ("experiment.strategies", config["experiment"]["strategies"], "strategies"),
        ("experiment.eval_corpora", config["experiment"]["eval_corpora"], "corpora"),
    ]
    references += [(f"trainsets.{name}.corpus", [t["corpus"]], "corpora") for name, t in config["trainsets"].items()]
    references += [
        (f"models.{name}.source.corpus", [m["source"]["corpus"]], "corpora")
        for name, m in config["models"].items()
        if "corpus" in m["source"]
    ]
    for key, names, section in references:
        unknown = [name for name in names if name not in config[section]]
        if unknown:
            raise ConfigError(f"config key {key}: {unknown} not defined under {section} (has {sorted(config[section])})")
    for name, trainset in config["trainsets"].items():
        outside = sorted(set(trainset["languages"]) - set(config["corpora"][trainset["corpus"]]["languages"]))
        if outside:
            raise ConfigError(f"config key trainsets.{name}.languages: {outside} not in corpus {trainset['corpus']}")


@dataclass(frozen=True)
class Variant:
    """A model state to evaluate: the untrained base, or one trained cell of the grid."""

    trainset: str | None = None
    strategy: str | None = None
    seed: int | None = None

    @property
    def name(self) -> str:
        return ZERO_SHOT if self.strategy is None else f"{self.trainset}.{self.strategy}.s{self.seed}"

    @classmethod
    def parse(cls, name: str) -> "Variant":
        if name == ZERO_SHOT:
            return cls()
        trainset, strategy, seed = name.split(".")
        return cls(trainset, strategy, int(seed.removeprefix("s")))


def variants(config: dict) -> list[Variant]:
    experiment = config["experiment"]
    trained = [
        Variant(experiment["trainset"], strategy, seed)
        for strategy in experiment["strategies"]
        for seed in experiment["seeds"]
    ]
    return [Variant()] + trained


def descriptor(config: dict, corpus: str, model: str, variant: Variant) -> dict:
    """The identifying columns of the summary contract for one evaluated run."""
    if variant.strategy is None:
        return {"corpus": corpus, "model": model, "strategy": ZERO_SHOT, "alpha": None, "seed": None}
    alpha = config["strategies"][variant.strategy]["alpha"]
    return {"corpus": corpus, "model": model, "strategy": variant.strategy, "alpha": alpha, "seed": variant.seed}
