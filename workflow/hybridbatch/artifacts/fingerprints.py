"""Which package source files a stage runs: the stage runner, a module and, transitively,
the package modules it imports. Rules declare them as inputs and manifests hash them, so
editing one reruns exactly the stages that use it."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent
PACKAGE = PACKAGE_DIR.name


def module_path(module: str) -> Path:
    """`corpora.cldr` -> .../hybridbatch/corpora/cldr.py (or its __init__.py)."""
    base = PACKAGE_DIR.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


@functools.cache
def _imported_modules(module: str) -> frozenset[str]:
    """The package modules `module` imports (`from hybridbatch.x import y` may name a
    module y or a name in x), and the packages above it (their __init__.py runs too);
    each module parsed once per process (Snakemake asks for every rule's stage)."""
    path = module_path(module)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == PACKAGE:
            parent = node.module.split(".")[1:]
            found.add(".".join(parent))
            found.update(".".join(parent + [alias.name]) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(
                ".".join(alias.name.split(".")[1:]) for alias in node.names if alias.name.split(".")[0] == PACKAGE
            )
    parents = {".".join(module.split(".")[:i]) for i in range(1, len(module.split(".")))}
    return frozenset(name for name in found | parents if name and module_path(name).exists())


def source_files(*modules: str) -> list[str]:
    """Paths of `modules` and every package module they import, directly or not."""
    seen: set[str] = set()
    pending = list(modules)
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            pending.extend(_imported_modules(module) - seen)
    return sorted({str(PACKAGE_DIR / "__init__.py")} | {str(module_path(module)) for module in seen})


def stage_files(module: str) -> list[str]:
    """What `python -m hybridbatch <stage>` runs for a stage in `module`: the command line
    itself (not the modules of its audit and lineage commands), the stage table, the manifest writer, and
    the stage's module with its imports."""
    return sorted({str(PACKAGE_DIR / "__main__.py")} | set(source_files("artifacts.manifest", "stages", module)))
