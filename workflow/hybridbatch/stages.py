"""The stages `python -m hybridbatch <stage>` runs: each is one function of one module, with
the names of its path arguments. Standard library only: the Snakemake rules read it to
declare each stage's code (artifacts/fingerprints.py).

A stage function declares its params beside it, as the TypedDict its `params` argument is
annotated with; the rule fills it, and `check_params` holds the JSON to it before the stage
runs."""

import inspect
from collections.abc import Callable
from typing import NotRequired, get_origin, get_type_hints, is_typeddict

OUTPUTS = ("out", "tables", "plots", "record")
# stage name -> (module, function, names of its path arguments after params; outputs are
# those in OUTPUTS). Modules are imported only for the stage that runs.
STAGES = {
    "download": ("corpora", "download", ["out"]),
    "prepare": ("corpora.prepare", "prepare", ["raw", "out"]),
    "pairs": ("pairs.build", "build_pairs", ["corpus", "out"]),
    "batches": ("batches.text", "build_batches", ["pairs", "out"]),
    "base-model": ("models.base_model", "build_base_model", ["corpus", "out"]),
    "train": ("train.text", "train", ["base", "batches", "out"]),
    "image-features": ("models.image_towers", "image_features", ["corpus", "raw", "model", "out"]),
    "image-text-batches": ("batches.image_text", "build_image_text_batches", ["corpus", "out"]),
    "caption-states": ("models.frozen_layers", "caption_states", ["base", "corpus", "out"]),
    "train-lit": ("train.image_text", "train_lit", ["base", "features", "batches", "states", "out"]),
    "evaluate-image-text": (
        "evaluate.image_text",
        "evaluate_image_text",
        ["model", "features", "corpus", "states", "out"],
    ),
    "embed-shard": ("evaluate.embed", "embed_shard", ["model", "corpus", "out"]),
    "embed": ("evaluate.embed", "embed_and_index", ["model", "corpus", "shards", "out"]),
    "search": ("evaluate.text", "search", ["embeddings", "corpus", "out"]),
    "evaluate": ("evaluate.text", "evaluate", ["run", "corpus", "out"]),
    "tables": (
        "report.tables",
        "make_tables",
        ["metrics", "image_text_metrics", "lit_models", "tables", "plots", "record"],
    ),
}
TOOLS = {"audit": "report.audit"}  # commands over a results tree that a rule runs (audit, runs)


def module_of(command: str) -> str:
    """The module that runs a stage or tool."""
    return STAGES[command][0] if command in STAGES else TOOLS[command]


def check_params(stage: str, function: Callable, params: dict) -> None:
    """Raise naming the stage and the keys when `params` is not the shape `function` declares."""
    function = inspect.unwrap(function)
    declared = get_type_hints(function).get("params")
    if not is_typeddict(declared):
        raise TypeError(f"stage {stage}: {function.__module__}.{function.__name__} declares no params TypedDict")
    fields = get_type_hints(declared, include_extras=True)  # postponed annotations resolved: NotRequired kept
    required = {key for key, hint in fields.items() if get_origin(hint) is not NotRequired}
    unknown, missing = sorted(set(params) - set(fields)), sorted(required - set(params))
    if unknown or missing:
        raise ValueError(
            f"stage {stage}: params do not match {function.__module__}.{declared.__name__}"
            + (f"; not declared: {unknown}" if unknown else "")
            + (f"; missing: {missing}" if missing else "")
        )
