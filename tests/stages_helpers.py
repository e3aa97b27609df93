"""Helpers the tests of several modules share: stage_function."""

from hybridbatch.stages import STAGES


def stage_function(stage: str):
    import importlib

    declared = STAGES[stage]
    return getattr(importlib.import_module(f"hybridbatch.{declared.module}"), declared.function)
