"""The tests of `hybridbatch/stage_params.py`."""

from types import SimpleNamespace

import pytest
from conftest import REPO
from sources_helpers import shipped_config
from stages_helpers import stage_function

from hybridbatch.config import image_text_runs, variants
from hybridbatch.stages import check_params

SHIPPED = [None] + sorted(f"config/{path.name}" for path in (REPO / "config").glob("*.yaml"))


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
