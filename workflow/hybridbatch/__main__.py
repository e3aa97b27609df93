"""Command line: one sub-command per stage, `python -m hybridbatch <stage> --params JSON PATHS...`.

The Snakemake rules call these; they are also the way to run one stage by hand.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
import time

# stage name -> (module, function, names of its path arguments after params). Modules
# are imported only for the stage that runs, so a pandas-only stage skips torch.
STAGES = {
    "download": ("corpora", "download", ["out"]),
    "prepare": ("corpora.prepare", "prepare", ["raw", "out"]),
    "pairs": ("pairs", "build_pairs", ["corpus", "out"]),
    "batches": ("batching", "build_batches", ["pairs", "out"]),
    "base-model": ("encoders", "build_base_model", ["corpus", "out"]),
    "train": ("training", "train", ["base", "batches", "out"]),
    "embed": ("indexing", "embed_and_index", ["model", "corpus", "out"]),
    "search": ("evaluation", "search", ["embeddings", "corpus", "out"]),
    "evaluate": ("evaluation", "evaluate", ["run", "corpus", "out", "descriptor"]),
    "tables": ("tables", "make_tables", ["summaries", "tables", "plots"]),
}


def stage_function(name: str):
    module, function, _ = STAGES[name]
    return getattr(importlib.import_module(f"{__package__}.{module}"), function)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hybridbatch", description=__doc__)
    commands = parser.add_subparsers(dest="stage", required=True)
    for name, (_, _, paths) in STAGES.items():
        command = commands.add_parser(name)
        if name != "tables":
            command.add_argument("--params", required=True, help="the stage's config slice, as JSON")
        command.add_argument("--threads", type=int, default=None)
        for path in paths:
            kind = {"descriptor": {"type": json.loads}, "summaries": {"nargs": "+"}}.get(path, {})
            command.add_argument(f"--{path}", required=True, **kind)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    started = time.perf_counter()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    paths = [getattr(args, path) for path in STAGES[args.stage][2]]
    function = stage_function(args.stage)
    result = function(*paths) if args.stage == "tables" else function(json.loads(args.params), *paths)
    logging.info("%s: %s", args.stage, result if isinstance(result, dict) else type(result).__name__)
    logging.info("%s done in %.1f s", args.stage, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
