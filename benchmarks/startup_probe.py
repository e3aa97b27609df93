"""Runs one stage as `python -m hybridbatch` would, and stops it at its first useful work
(benchmarks/startup.py): the first call of the function named by its dotted path (or, when
empty, of the stage function) writes the wall-clock time to the stamp file and exits.

    python benchmarks/startup_probe.py STAMP DOTTED.FUNCTION STAGE [stage arguments...]

The function is replaced wherever a loaded module holds it (it may be imported by name).
"""

import functools
import importlib
import sys
import time


def stop_at_first_call(original, stamp: str):
    @functools.wraps(original)  # the stage's params check reads the function it wraps
    def first_work(*args, **kwargs):
        with open(stamp, "w") as file:
            file.write(repr(time.time()))
        raise SystemExit(0)

    for module in list(sys.modules.values()):
        for name, value in list(getattr(module, "__dict__", {}).items()):
            if value is original:
                setattr(module, name, first_work)
    return first_work


def main() -> int:
    stamp, dotted, stage, *arguments = sys.argv[1:]
    from hybridbatch import __main__ as cli
    from hybridbatch.stages import STAGES

    declared = STAGES[stage]
    module_name, _, attribute = dotted.rpartition(".") if dotted else (f"hybridbatch.{declared.module}", "", "")
    attribute = attribute or declared.function
    owner = None
    try:
        owner = importlib.import_module(module_name)
    except ModuleNotFoundError:  # a method: Module.Class.method
        module_name, _, class_name = module_name.rpartition(".")
        owner = getattr(importlib.import_module(module_name), class_name)
    importlib.import_module(f"hybridbatch.{declared.module}")
    original = getattr(owner, attribute)
    replacement = stop_at_first_call(original, stamp)
    if isinstance(owner, type):
        setattr(owner, attribute, replacement)
    return cli.main([stage, *arguments])


if __name__ == "__main__":
    sys.exit(main())
