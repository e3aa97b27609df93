"""The tests of `hybridbatch/stages.py`."""

from types import SimpleNamespace

import pytest
from conftest import REPO
from stages_helpers import stage_function

from hybridbatch.stages import STAGES, check_params


def test_a_params_mismatch_fails_naming_the_stage_and_the_keys():
    with pytest.raises(
        ValueError, match=r"stage search: .*SearchParams; not declared: \['blockmb'\]; missing: \['block_mb'\]"
    ):
        check_params("search", stage_function("search"), {"top_k": 100, "blockmb": 64})


def test_config_sections_inside_params_are_checked_key_by_key():
    """A stage's params carry config sections as TypedDicts: a key misspelt or missing inside
    one (`image_text.training`, `trainer`, the model entry) is named with its path."""
    from sources_helpers import shipped_config

    from hybridbatch.stage_params import build
    from hybridbatch.train.image_text import train_lit

    config = shipped_config()
    wildcards = SimpleNamespace(corpus="emoji", strategy="mixed", seed="0")
    params = build("train-lit", config, wildcards)
    check_params("train-lit", train_lit, params)
    params["lit"]["trainable_layers"] = params["lit"].pop("trainable_text_layers")
    del params["trainer"]["patience"]
    params["text_model"]["polling"] = "mean"
    message = (
        r"stage train-lit: .*LitParams; not declared: \['lit\.trainable_layers'\]; missing: \['lit\.trainable_text_layers'\]; "
        r"missing: \['trainer\.patience'\]; not declared: \['text_model\.polling'\]"
    )
    with pytest.raises(ValueError, match=message):
        check_params("train-lit", train_lit, params)


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
