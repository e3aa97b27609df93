"""Each stage's params, built from the config and a job's wildcards: one pure function per
stage, named as the stage (`image-text-batches`: image_text_batches), returning the shape
the stage function's params TypedDict declares. The rules pass `build(stage, config,
wildcards)`; the config arithmetic (step factors, seeds, normalised weights) is here, where
a unit test reaches it. Not part of any stage's code fingerprint: what a builder changes
reaches a job as its params."""

from __future__ import annotations

from collections.abc import Callable

from hybridbatch.batch_types import image_share
from hybridbatch.config import descriptor, image_text_descriptor, normalised_weights
from hybridbatch.names import PLATEAU, CurvePoint, ImageTextRun, Variant, is_dual_encoder
from hybridbatch.stages import STAGES


def build(stage: str, config: dict, wildcards) -> dict:
    """The params of one job of `stage` (wildcards: Snakemake's, or any object with the
    wildcards as attributes)."""
    return BUILDERS[stage](config, wildcards)


def import_files(config: dict, w) -> dict:
    imports = config.get("imports", {})
    if w.name not in imports:
        raise KeyError(f"config key imports.{w.name}: not set (imports: {{{w.name}: <your file or directory>}})")
    return {"source": imports[w.name]}


def download(config: dict, w) -> dict:
    return {**config["corpora"][w.corpus], "name": w.corpus}


prepare = download


def pairs(config: dict, w) -> dict:
    return config["trainsets"][w.trainset]


def batches(config: dict, w) -> dict:
    return {**config["batching"], "alpha": config["strategies"][w.strategy]["alpha"], "seed": int(w.seed)}


def base_model(config: dict, w) -> dict:
    return {**config["models"][w.model], "name": w.model}


def train(config: dict, w) -> dict:
    return {
        "training": {**config["training"], "seed": int(w.seed)},
        "trainer": config["trainer"],
        "model": config["models"][w.model],
    }


def image_features(config: dict, w) -> dict:
    return {**config["image_towers"][w.tower], "name": w.tower}


def image_text_steps(section: dict, point: CurvePoint) -> int:
    """Batches a strategy label trains: its curve budget, the plateau run's most, or the
    grid's `steps` times the strategy's `step_factor`."""
    if point.budget == PLATEAU:
        return section["curve"]["plateau"]["steps"]
    if point.budget is not None:
        return point.budget
    return section["batching"]["steps"] * section["strategies"][point.strategy].get("step_factor", 1)


def image_text_batches(config: dict, w) -> dict:
    """The shared batching section, with the strategy label's steps, its normalised
    weights, the languages trained and the seed."""
    section = config["image_text"]
    point = CurvePoint.parse(w.strategy)
    return {
        **section["batching"],
        "steps": image_text_steps(section, point),
        "languages": sorted(section["train_languages"]),
        "strategy": {"weights": normalised_weights(section["strategies"][point.strategy]["weights"])},
        "seed": int(w.seed),
    }


def image_text_model(config: dict, model: str | None = None) -> dict:
    """A text model's config entry (default: the image-text experiment's), with the
    experiment's caption length for a sentence-transformers model (a dual encoder's is its
    checkpoint's)."""
    section = config["image_text"]
    entry = config["models"][model or section["text_model"]]
    return entry if is_dual_encoder(entry) else {**entry, "max_length": section["max_length"]}


def caption_states(config: dict, w) -> dict:
    """The text model, its trained layers, and the captions of the split (training: its
    languages and captions; test: the evaluated subset)."""
    section = config["image_text"]
    evaluation = section["evaluation"]
    captions = (
        {key: evaluation[key] for key in ("languages", "images", "subset_seed", "protocols")}
        if w.split == "test"
        else {"languages": section["train_languages"], "captions": section["batching"]["captions"]}
    )
    layers = section["training"]["trainable_text_layers"]
    return {"text_model": image_text_model(config), "trainable_text_layers": layers, "split": w.split, **captions}


def train_lit(config: dict, w) -> dict:
    """The LiT training section and the trainer; a plateau run validates and stops as its
    curve says."""
    section = config["image_text"]
    trainer = config["trainer"]
    if CurvePoint.parse(w.strategy).budget == PLATEAU:
        plateau = section["curve"]["plateau"]
        trainer = {**trainer, "validation_every": plateau["validation_every"], "patience": plateau["patience"]}
    return {
        "lit": section["training"],
        "trainer": trainer,
        "seed": int(w.seed),
        "text_model": image_text_model(config),
        "text_model_name": section["text_model"],
        "image_tower": section["image_tower"],
    }


def evaluate_image_text(config: dict, w) -> dict:
    run = ImageTextRun.parse(w.run)
    return {
        **config["evaluation"],
        **config["image_text"]["evaluation"],
        "text_model": image_text_model(config, run.zero_shot),
        "descriptor": image_text_descriptor(config, run),
        "train_languages": sorted(config["image_text"]["train_languages"]),
    }


def embedding(config: dict, model: str) -> dict:
    """The embedding keys but the shard counts, and the model."""
    shared = {key: value for key, value in config["embedding"].items() if key != "shards"}
    return {**shared, "model": config["models"][model]}


def embed_shard(config: dict, w) -> dict:
    """A shard's says which shard it is and has no index factory, so that changing the
    index re-encodes no shard."""
    return {**embedding(config, w.model), "shard": int(w.shard), "shards": int(w.shards)}


def embed(config: dict, w) -> dict:
    return {**embedding(config, w.model), "index_factory": config["index"]["factory"]}


def search(config: dict, w) -> dict:
    return config["search"]


def evaluate(config: dict, w) -> dict:
    return {**config["evaluation"], "descriptor": descriptor(config, w.corpus, w.model, Variant.parse(w.variant))}


def tables(config: dict, w) -> dict:
    """`significance`, the languages LiT trains on, and with a budget curve its strategies
    and each strategy's share of image-caption batches."""
    section = config.get("image_text")
    trained = {"image_text_train_languages": sorted(section["train_languages"])} if section else {}
    if section and section.get("curve"):
        shares = {name: image_share(section["strategies"][name]["weights"]) for name in section["curve"]["strategies"]}
        trained["curve"] = {"strategies": section["curve"]["strategies"], "image_shares": shares}
    return {**config["significance"], **trained}


BUILDERS: dict[str, Callable[[dict, object], dict]] = {name: globals()[name.replace("-", "_")] for name in STAGES}
