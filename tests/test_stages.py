"""The stage declarations (hybridbatch.stages) are the contract between the rules and the
stages: every builder fills exactly the params its stage function declares, for every job
of every shipped config, and the command line takes exactly the declared paths."""

from types import SimpleNamespace

import pytest
from conftest import REPO
from test_sources import shipped_config

from hybridbatch.config import image_text_runs, variants
from hybridbatch.stages import STAGES, check_params

SHIPPED = [None] + sorted(f"config/{path.name}" for path in (REPO / "config").glob("*.yaml"))


def stage_function(stage: str):
    import importlib

    declared = STAGES[stage]
    return getattr(importlib.import_module(f"hybridbatch.{declared.module}"), declared.function)


def jobs(config: dict):
    """(stage, wildcards) of every job of the config's grid (the tables stage has none)."""
    w = SimpleNamespace
    experiment = config["experiment"]
    for corpus in config["corpora"]:
        yield "download", w(corpus=corpus)
        yield "prepare", w(corpus=corpus)
    for trainset in config["trainsets"]:
        yield "pairs", w(trainset=trainset)
    grid = [(s, seed) for s in experiment["strategies"] for seed in experiment["seeds"]]
    for model in config["models"]:
        yield "base-model", w(model=model)
    for model in experiment["models"]:
        yield "embed-shard", w(model=model, variant="zero-shot", corpus="c", shard="0", shards="2")
        for strategy, seed in grid:
            yield "batches", w(trainset=experiment["trainset"], strategy=strategy, seed=str(seed))
            yield "train", w(model=model, trainset=experiment["trainset"], strategy=strategy, seed=str(seed))
        for variant in variants(config):
            for corpus in experiment["eval_corpora"]:
                for stage in ("embed", "search", "evaluate"):
                    yield stage, w(model=model, variant=variant.name, corpus=corpus)
    for tower in config.get("image_towers", {}):
        yield "image-features", w(tower=tower, corpus="c")
    section = config.get("image_text")
    if section:
        for split in ("train", "test"):
            yield "caption-states", w(corpus=section["corpus"], split=split)
        for run in image_text_runs(config):
            yield "evaluate-image-text", w(corpus=section["corpus"], run=run.name)
            if not run.zero_shot:
                yield "image-text-batches", w(corpus=section["corpus"], strategy=run.strategy, seed=str(run.seed))
                yield "train-lit", w(corpus=section["corpus"], strategy=run.strategy, seed=str(run.seed))
    yield "tables", w()


@pytest.mark.parametrize("overlay", SHIPPED)
def test_every_builder_fills_the_params_its_stage_declares(overlay):
    from hybridbatch.config import local_paths_win
    from hybridbatch.stage_params import build

    config = shipped_config(overlay)
    local_paths_win(config)
    built = set()
    for stage, wildcards in jobs(config):
        check_params(stage, stage_function(stage), build(stage, config, wildcards))
        built.add(stage)
    assert {"download", "prepare", "base-model", "embed", "search", "evaluate", "tables"} <= built


def test_a_params_mismatch_fails_naming_the_stage_and_the_keys():
    with pytest.raises(
        ValueError, match=r"stage search: .*SearchParams; not declared: \['blockmb'\]; missing: \['block_mb'\]"
    ):
        check_params("search", stage_function("search"), {"top_k": 100, "blockmb": 64})


def test_builders_do_the_config_arithmetic():
    """A strategy's steps are the shared steps times its step factor; its weights are
    normalised; the seed is the wildcard's, as an integer."""
    from hybridbatch.stage_params import build

    config = shipped_config()
    section = config["image_text"]
    section["strategies"]["hybrid-2x"] = {"weights": {"image-caption-mono": 1, "caption-caption": 1}, "step_factor": 2}
    plan = build("image-text-batches", config, SimpleNamespace(corpus="emoji", strategy="hybrid-2x", seed="2"))
    assert plan["steps"] == 2 * section["batching"]["steps"] and plan["seed"] == 2
    assert sum(plan["strategy"]["weights"].values()) == pytest.approx(1.0)
    text = build("batches", config, SimpleNamespace(trainset="cldr-locales", strategy="hybrid", seed="0"))
    assert text["alpha"] == config["strategies"]["hybrid"]["alpha"]


def test_the_command_line_takes_exactly_the_declared_paths(tmp_path):
    """Required paths are required, optional ones may be left out, several-path ones take a list."""
    from hybridbatch.__main__ import main

    with pytest.raises(SystemExit):  # --out missing
        main(["download", "--params", "{}"])
    declared = {path.name: path for path in STAGES["tables"].paths}
    assert declared["metrics"].several and not declared["metrics"].optional
    assert declared["image_text_metrics"].optional and declared["image_text_metrics"].several
    assert [path.name for path in STAGES["train-lit"].paths if path.optional] == ["states"]


@pytest.mark.parametrize(
    "stage", ["train-lit", "evaluate-image-text", "train", "embed", "caption-states", "image-text-batches", "search"]
)
def test_a_repeated_stage_imports_neither_transformers_nor_sentence_transformers(stage):
    """Each job starts a process: the stages the default run repeats import only what they run
    (transformers and sentence-transformers alone take 5 s; benchmarks/startup.py)."""
    import subprocess
    import sys

    module = f"hybridbatch.{STAGES[stage].module}"
    heavy = ("transformers", "sentence_transformers", "sklearn", "matplotlib")
    code = f"import sys, {module}; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO / "workflow")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]", (module, result.stdout)


@pytest.mark.parametrize("stage", list(STAGES))
def test_each_declaration_names_its_functions_path_arguments_in_order(stage):
    """Paths reach a stage function by keyword: the declaration's names are its parameters
    after `params`, in the same order (so a call by position agrees too)."""
    import importlib
    import inspect

    declared = STAGES[stage]
    function = getattr(importlib.import_module(f"hybridbatch.{declared.module}"), declared.function)
    parameters = list(inspect.signature(inspect.unwrap(function)).parameters)
    assert parameters == ["params", *(path.name for path in declared.paths)], stage
