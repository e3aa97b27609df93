"""The stages `python -m hybridbatch <stage>` runs, one declaration each: the module and
function, the function's path arguments (which are outputs, which optional, which take
several paths), and, by the stage's name, the builder of its params from the config and
the job's wildcards (`stage_params.<stage with underscores>`). The command line, the
rules' params and the tests of the contract all read these declarations. Standard
library only: the Snakemake rules read it to declare each stage's code
(artifacts/fingerprints.py), and a stage's code is its module's, not the builders'.

A stage function declares its params beside it, as the TypedDict its `params` argument is
annotated with; the builder fills it, and `check_params` holds the JSON to it before the
stage runs."""

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import NotRequired, get_args, get_origin, get_type_hints, is_typeddict

OUTPUTS = ("out", "tables", "plots", "record")


@dataclass(frozen=True)
class PathArgument:
    """A path argument of a stage function: an output when its name is in OUTPUTS;
    `optional` (absent: None, or [] with `several`); `several` paths (a list)."""

    name: str
    optional: bool = False
    several: bool = False

    @property
    def output(self) -> bool:
        return self.name in OUTPUTS


@dataclass(frozen=True)
class Stage:
    module: str
    function: str
    paths: tuple[PathArgument, ...]


def stage(module: str, function: str, *paths: str | PathArgument) -> Stage:
    return Stage(module, function, tuple(p if isinstance(p, PathArgument) else PathArgument(p) for p in paths))


def optional(name: str) -> PathArgument:
    return PathArgument(name, optional=True)


STAGES = {
    "import-files": stage("artifacts.imports", "import_files", "out"),  # a user's own files, run by hand
    "download": stage("corpora", "download", "out"),
    "prepare": stage("corpora.prepare", "prepare", "raw", "out"),
    "pairs": stage("pairs.build", "build_pairs", "corpus", "out"),
    "batches": stage("batches.text", "build_batches", "pairs", "out"),
    "base-model": stage("models.base_model", "build_base_model", optional("corpus"), "out"),
    "train": stage("train.text", "train", "base", "batches", "out"),
    "image-features": stage("models.image_towers", "image_features", "corpus", "raw", optional("model"), "out"),
    "image-text-batches": stage("batches.image_text", "build_image_text_batches", "corpus", "out"),
    "caption-states": stage("models.frozen_layers", "caption_states", "base", "corpus", "out"),
    "train-lit": stage("train.image_text", "train_lit", "base", "features", "batches", optional("states"), "out"),
    "evaluate-image-text": stage(
        "evaluate.image_text", "evaluate_image_text", "model", "features", "corpus", optional("states"), "out"
    ),
    "embed-shard": stage("evaluate.embed", "embed_shard", "model", "corpus", "out"),
    "embed": stage("evaluate.embed", "embed_and_index", "model", "corpus", PathArgument("shards", True, True), "out"),
    "search": stage("evaluate.text", "search", "embeddings", "corpus", "out"),
    "evaluate": stage("evaluate.text", "evaluate", "run", "corpus", "out"),
    "tables": stage(
        "report.tables",
        "make_tables",
        PathArgument("metrics", several=True),
        PathArgument("image_text_metrics", True, True),
        PathArgument("lit_models", True, True),
        "tables",
        "plots",
        "record",
    ),
}
TOOLS = {"audit": "report.audit"}  # commands over a results tree that a rule runs (audit, runs)


def module_of(command: str) -> str:
    """The module that runs a stage or tool."""
    return STAGES[command].module if command in STAGES else TOOLS[command]


def check_params(stage: str, function: Callable, params: dict) -> None:
    """Raise naming the stage and the keys when `params` is not the shape `function` declares,
    nested TypedDicts (config sections) included: `lit.trainable_text_layers`."""
    function = inspect.unwrap(function)
    declared = get_type_hints(function).get("params")
    if not is_typeddict(declared):
        raise TypeError(f"stage {stage}: {function.__module__}.{function.__name__} declares no params TypedDict")
    problems = mismatches(declared, params, "")
    if problems:
        raise ValueError(
            f"stage {stage}: params do not match {function.__module__}.{declared.__name__}; " + "; ".join(problems)
        )


def mismatches(declared: type, params: dict, prefix: str) -> list[str]:
    """The keys of `params` a TypedDict does not declare and those it requires that are missing,
    at every level where a field is itself a TypedDict."""
    fields = get_type_hints(declared, include_extras=True)  # postponed annotations resolved: NotRequired kept
    required = {key for key, hint in fields.items() if get_origin(hint) is not NotRequired}
    unknown, missing = sorted(set(params) - set(fields)), sorted(required - set(params))
    problems = [f"not declared: {[prefix + key for key in unknown]}"] if unknown else []
    problems += [f"missing: {[prefix + key for key in missing]}"] if missing else []
    for key, hint in fields.items():
        inner = get_args(hint)[0] if get_origin(hint) is NotRequired else hint
        if is_typeddict(inner) and isinstance(params.get(key), dict):
            problems += mismatches(inner, params[key], f"{prefix}{key}.")
    return problems
