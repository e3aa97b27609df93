"""Configuration: schema validation, cross-references, and the experiment grid."""

from __future__ import annotations

from pathlib import Path

from hybridbatch.batch_types import ALPHA_TYPE, lookup
from hybridbatch.names import (
    DUAL_ENCODER,
    PLATEAU,
    ZERO_SHOT,
    CurvePoint,
    ImageTextRun,
    Variant,
    is_dual_encoder,
)

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "config.schema.yaml"
# corpus formats whose candidates are images (images.parquet): what the driver plans with;
# check_config_deeply holds it against the formats' registrations
IMAGE_SOURCES = {"coco35l", "emoji", "xm3600"}


def normalised_weights(weights: dict[str, float]) -> dict[str, float]:
    """Batch type weights that sum to 1, by type name: {1, 1} and {0.5, 0.5} are one strategy
    (one set of batches, one alpha)."""
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"batch type weights {weights} sum to {total}")
    return {kind: weight / total for kind, weight in sorted(weights.items())}


class ConfigError(ValueError):
    """The configuration breaks the schema or refers to something it does not define."""


HUB_FIELDS = ("id", "revision")
LOCAL_KIND = {"hub": "local", DUAL_ENCODER: DUAL_ENCODER}  # the kind that reads the same model from a directory


def local_paths_win(config: dict) -> None:
    """A model source given a `path` (an overlay pointing a shipped hub model at a local
    checkpoint: Snakemake merges it into the shipped `id` and `revision`) reads that
    directory: the hub fields are dropped, and a `hub` source becomes `local`."""
    for model in config.get("models", {}).values():
        source = model.get("source", {})
        if source.get("path") is not None and source.get("kind") in LOCAL_KIND:
            for field in HUB_FIELDS:
                source.pop(field, None)
            source["kind"] = LOCAL_KIND[source["kind"]]


# A key renamed keeps pointing at its new name: the held-out items are the development
# split (their Recall@1 is what early stopping and any choice between runs read).
RENAMED_KEYS = {
    f"{section}.{old}": f"{section}.{new}"
    for section in ("batching", "image_text.batching")
    for old, new in (("validation_fraction", "development_fraction"), ("validation_seed", "development_seed"))
}


def refuse_renamed_keys(config: dict) -> None:
    for old, new in RENAMED_KEYS.items():
        *parents, key = old.split(".")
        section = config
        for parent in parents:
            section = section.get(parent) if isinstance(section, dict) else None
        if isinstance(section, dict) and key in section:
            raise ConfigError(f"config key {old} is now {new}: rename it in your config")


def validate_config(config: dict, schema_path: Path = SCHEMA_PATH) -> None:
    """Raise ConfigError naming the offending key (e.g. `training.learnin_rate`)."""
    import jsonschema  # here, not at the top: the stages import this module for its helpers
    import yaml

    refuse_renamed_keys(config)
    schema = yaml.safe_load(schema_path.read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(config), key=lambda e: list(e.path))
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        where = ".".join(map(str, error.absolute_path)) or "(top level)"
        raise ConfigError(f"config key {where}: {error.message}{_number_hint(error.instance)}")
    references = [
        ("experiment.models", config["experiment"]["models"], "models"),
        ("experiment.trainset", [config["experiment"]["trainset"]], "trainsets"),
        ("experiment.strategies", config["experiment"]["strategies"], "strategies"),
        ("experiment.eval_corpora", config["experiment"]["eval_corpora"], "corpora"),
    ]
    references += [(f"trainsets.{name}.corpus", [t["corpus"]], "corpora") for name, t in config["trainsets"].items()]
    references.append(("embedding.shards", list(config["embedding"].get("shards", {})), "corpora"))
    references += [
        (f"models.{name}.source.corpus", [m["source"]["corpus"]], "corpora")
        for name, m in config["models"].items()
        if "corpus" in m["source"]
    ]
    for key, names, section in references:
        unknown = [name for name in names if name not in config[section]]
        if unknown:
            raise ConfigError(
                f"config key {key}: {unknown} not defined under {section} (has {sorted(config[section])})"
            )
    for name, trainset in config["trainsets"].items():
        outside = sorted(set(trainset["languages"]) - set(config["corpora"][trainset["corpus"]]["languages"]))
        if outside:
            raise ConfigError(f"config key trainsets.{name}.languages: {outside} not in corpus {trainset['corpus']}")
    check_splits(config)
    for name in config["experiment"]["eval_corpora"]:
        if config["corpora"][name]["source"] in IMAGE_SOURCES:
            raise ConfigError(
                f"config key experiment.eval_corpora: {name} is an image-text corpus (its candidates are "
                f"images); the text models of experiment.models cannot embed images"
            )
    for name in config["experiment"]["models"]:
        if is_dual_encoder(config["models"][name]):
            raise ConfigError(
                f"config key experiment.models: {name} is a dual encoder (image-text track); the text "
                f"track trains sentence-transformers models"
            )
    check_image_towers(config)
    check_image_text(config)
    for name, model in config["models"].items():
        source = model["source"]
        if source["kind"] == "random" and source["hidden_size"] % source["heads"]:
            raise ConfigError(
                f"config key models.{name}.source.hidden_size: {source['hidden_size']} is not a multiple "
                f"of heads ({source['heads']})"
            )


def check_image_towers(config: dict) -> None:
    """A dual encoder's image tower names a dual-encoder model."""
    for name, tower in config.get("image_towers", {}).items():
        model = tower["source"].get("model")
        if tower["source"]["kind"] == DUAL_ENCODER and (
            model not in config["models"] or not is_dual_encoder(config["models"][model])
        ):
            raise ConfigError(
                f"config key image_towers.{name}.source.model: {model!r} is not a dual-encoder model under models"
            )


def tower_of(config: dict, model: str, key: str) -> str:
    """The image tower of dual-encoder `model`: the one image_towers entry built from it."""
    towers = [name for name, tower in config.get("image_towers", {}).items() if tower["source"].get("model") == model]
    if len(towers) != 1:
        raise ConfigError(
            f"config key {key}: {model} needs exactly one image_towers entry with source "
            f"{{kind: {DUAL_ENCODER}, model: {model}}} (found {towers})"
        )
    return towers[0]


def eval_corpus(section: dict) -> str:
    return section["evaluation"].get("corpus", section["corpus"])


def trained_strategies(section: dict) -> list[str]:
    """The strategy labels trained: every strategy of the grid, or with a `curve`, each of
    its strategies at each budget and to its plateau (`mixed@64`, ..., `mixed@plateau`)."""
    curve = section.get("curve")
    if not curve:
        return list(section["strategies"])
    budgets = [*curve["budgets"], *([PLATEAU] if curve.get("plateau") else [])]
    return [CurvePoint(strategy, budget).name for strategy in curve["strategies"] for budget in budgets]


def image_text_runs(config: dict) -> list[ImageTextRun]:
    """The evaluated image-text runs: each untrained dual encoder, then each trained cell."""
    section = config["image_text"]
    return [ImageTextRun(zero_shot=model) for model in section.get("zero_shot", [])] + [
        ImageTextRun(strategy, seed) for strategy in trained_strategies(section) for seed in section["seeds"]
    ]


def check_image_text(config: dict) -> None:
    """The image-text experiment names image corpora, a text model and an image tower that
    exist, languages its corpora have, and text settings its model family allows."""
    if not config.get("image_text"):
        return
    section = config["image_text"]
    evaluation = section["evaluation"]
    for key, name, section_name in (
        ("corpus", section["corpus"], "corpora"),
        ("evaluation.corpus", eval_corpus(section), "corpora"),
        ("text_model", section["text_model"], "models"),
        ("image_tower", section["image_tower"], "image_towers"),
    ):
        if name not in config.get(section_name, {}):
            raise ConfigError(
                f"config key image_text.{key}: {name!r} not defined under {section_name} "
                f"(has {sorted(config.get(section_name, {}))})"
            )
        if section_name == "corpora" and config["corpora"][name]["source"] not in IMAGE_SOURCES:
            raise ConfigError(
                f"config key image_text.{key}: {name} is not an image-text corpus "
                f"(source {config['corpora'][name]['source']!r}; image sources: {sorted(IMAGE_SOURCES)})"
            )
    trained, evaluated = section["corpus"], eval_corpus(section)
    if not image_text_runs(config):
        raise ConfigError(
            "config key image_text.seeds: empty, and image_text.zero_shot names no model: nothing to evaluate"
        )
    if section["strategies"] and section["seeds"] and config["corpora"][trained]["test_fraction"] >= 1:
        raise ConfigError(
            f"config key corpora.{trained}.test_fraction: 1 leaves no train split, but image_text trains on {trained}"
        )
    if config["corpora"][evaluated]["test_fraction"] <= 0:
        raise ConfigError(
            f"config key corpora.{evaluated}.test_fraction: 0 leaves no test split, but image_text "
            f"evaluates on {evaluated}"
        )
    for key, languages, corpus in (
        ("train_languages", section["train_languages"], trained),
        ("evaluation.languages", evaluation["languages"], evaluated),
    ):
        outside = sorted(set(languages) - set(config["corpora"][corpus]["languages"]))
        if outside:
            raise ConfigError(f"config key image_text.{key}: {outside} not in corpus {corpus}")
    check_image_text_model(config, section)
    check_image_text_evaluation(config, section)
    check_image_text_strategies(section)


def check_image_text_evaluation(config: dict, section: dict) -> None:
    evaluated = section["evaluation"]
    outside = sorted(set(evaluated.get("t2t_languages", [])) - set(evaluated["languages"]))
    if outside:
        raise ConfigError(
            f"config key image_text.evaluation.t2t_languages: {outside} not in image_text.evaluation.languages"
        )


def check_image_text_strategies(section: dict) -> None:
    for name, strategy in section["strategies"].items():
        key = f"config key image_text.strategies.{name}"
        if name == ZERO_SHOT:
            raise ConfigError(f"{key}: {ZERO_SHOT!r} names the untrained model; choose another name")
        if sum(strategy["weights"].values()) <= 0:
            raise ConfigError(f"{key}.weights: they sum to 0")
        for kind, weight in strategy["weights"].items():
            try:
                needed = lookup(kind, f"image_text.strategies.{name}.weights").languages_needed
            except KeyError as error:
                raise ConfigError(error.args[0]) from None
            if weight > 0 and needed > len(section["train_languages"]):
                raise ConfigError(f"{key}.weights: {kind} batches need {needed} image_text.train_languages")
    check_curve(section)


def check_curve(section: dict) -> None:
    """A curve names strategies of the grid, and a plateau run has validation batches to stop on."""
    curve = section.get("curve")
    if not curve:
        return
    unknown = [name for name in curve["strategies"] if name not in section["strategies"]]
    if unknown:
        raise ConfigError(f"config key image_text.curve.strategies: {unknown} not defined under image_text.strategies")
    if curve["budgets"] != sorted(set(curve["budgets"])):
        raise ConfigError(f"config key image_text.curve.budgets: {curve['budgets']} is not increasing")
    if curve.get("plateau") and not section["batching"]["development_fraction"]:
        raise ConfigError(
            "config key image_text.curve.plateau: early stopping needs validation batches, but "
            "image_text.batching.development_fraction is 0"
        )


def check_image_text_model(config: dict, section: dict) -> None:
    """A dual encoder reads captions as its checkpoint says and sees images through its own
    tower; a sentence-transformers text tower needs a caption length and a temperature."""
    text_model = section["text_model"]
    training = section["training"]
    for model in section.get("zero_shot", []):
        if model not in config["models"] or not is_dual_encoder(config["models"][model]):
            raise ConfigError(
                f"config key image_text.zero_shot: {model!r} is not a dual-encoder model under models "
                f"(an untrained text tower with a new image projection retrieves nothing)"
            )
        tower_of(config, model, "image_text.zero_shot")
    if is_dual_encoder(config["models"][text_model]):
        if section.get("max_length") is not None:
            raise ConfigError(
                f"config key image_text.max_length: {text_model} is a dual encoder: its checkpoint sets "
                f"the caption length and padding (SigLIP: 64 tokens, padded); set it to null"
            )
        tower = tower_of(config, text_model, "image_text.text_model")
        if section["image_tower"] != tower:
            raise ConfigError(
                f"config key image_text.image_tower: {section['image_tower']!r}, but dual encoder "
                f"{text_model} scores images through its own tower {tower!r}"
            )
        return
    if section.get("max_length") is None:
        raise ConfigError(
            f"config key image_text.max_length: required for the sentence-transformers text model {text_model}"
        )
    if training["temperature"] is None:
        raise ConfigError(
            f"config key image_text.training.temperature: null takes a dual encoder's checkpoint "
            f"temperature, but {text_model} has none; give a number"
        )


def image_text_descriptor(config: dict, run: ImageTextRun) -> dict:
    """The summary contract's identifying columns for an image-text run: the model is text
    model + image tower, alpha the share of the ALPHA_TYPE (image-caption-mono) batches."""
    section = config["image_text"]
    corpus = eval_corpus(section)
    if run.zero_shot:
        tower = tower_of(config, run.zero_shot, "image_text.zero_shot")
        model = f"{run.zero_shot}+{tower}"
        return {"corpus": corpus, "model": model, "strategy": ZERO_SHOT, "alpha": None, "seed": None}
    weights = section["strategies"][CurvePoint.parse(run.strategy).strategy]["weights"]
    return {
        "corpus": corpus,
        "model": f"{section['text_model']}+{section['image_tower']}",
        "strategy": run.strategy,
        "alpha": normalised_weights(weights).get(ALPHA_TYPE, 0.0),
        "seed": run.seed,
    }


def _number_hint(value) -> str:
    """YAML 1.1 reads 5e-4 (no dot) as a string: say how to write the number."""
    if not isinstance(value, str):
        return ""
    try:
        number = float(value)
    except ValueError:
        return ""
    return f" (YAML reads {value!r} as text; write the number with a dot: {number:.1e})"


def check_splits(config: dict) -> None:
    """A corpus trained on needs a train split, one evaluated on needs a test split."""
    experiment = config["experiment"]
    trained = {config["trainsets"][experiment["trainset"]]["corpus"]}
    trained |= {
        config["models"][m]["source"]["corpus"]
        for m in experiment["models"]
        if config["models"][m]["source"]["kind"] == "random"
    }
    for corpus in sorted(trained):
        if config["corpora"][corpus]["test_fraction"] >= 1:
            raise ConfigError(
                f"config key corpora.{corpus}.test_fraction: 1 leaves no train split, but the experiment "
                f"trains on {corpus}"
            )
    for corpus in experiment["eval_corpora"]:
        if config["corpora"][corpus]["test_fraction"] <= 0:
            raise ConfigError(
                f"config key corpora.{corpus}.test_fraction: 0 leaves no test split, but "
                f"experiment.eval_corpora evaluates on {corpus}"
            )


def check_config_deeply(config: dict) -> None:
    """Checks that need the stages' libraries (run once before any job, not at parse time):
    every CLDR corpus language is known to Babel, the FAISS index factory string builds.
    A driver without those libraries (a cluster login node) skips them with a warning:
    the stages that use them check again."""
    import importlib.util
    import logging

    missing = [name for name in ("babel", "faiss") if importlib.util.find_spec(name) is None]
    if missing:
        logging.warning("config checks that need %s skipped: not installed where Snakemake runs", " and ".join(missing))
    for name, corpus in config["corpora"].items():
        if corpus["source"] == "cldr" and "babel" not in missing:
            from babel import Locale, UnknownLocaleError

            for lang in corpus["languages"]:
                try:
                    Locale.parse(lang)
                except (UnknownLocaleError, ValueError) as error:
                    raise ConfigError(
                        f"config key corpora.{name}.languages: {lang!r} is not a CLDR locale ({error})"
                    ) from error
    if "faiss" in missing:
        return
    import faiss

    factory = config["index"]["factory"]
    try:
        faiss.index_factory(768, factory, faiss.METRIC_INNER_PRODUCT)  # 768: PQ sizes that fit 384-d fit it too
    except RuntimeError as error:
        raise ConfigError(
            f"config key index.factory: FAISS cannot build {factory!r} ({str(error).strip().split('Error: ')[-1]})"
        ) from error


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
