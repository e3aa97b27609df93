"""Command line: one sub-command per stage, `python -m hybridbatch <stage> --params JSON PATHS...`.

The Snakemake rules call these; they are also the way to run one stage by hand.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import torch

from . import batching, corpora, encoders, evaluation, indexing, pairs, tables, training
from .corpora import prepare

# stage name -> (function, names of its path arguments after params)
STAGES = {
    "download": (corpora.download, ["out"]),
    "prepare": (prepare.prepare, ["raw", "out"]),
    "pairs": (pairs.build_pairs, ["corpus", "out"]),
    "batches": (batching.build_batches, ["pairs", "out"]),
    "base-model": (encoders.build_base_model, ["corpus", "out"]),
    "train": (training.train, ["base", "batches", "out"]),
    "embed": (indexing.embed_and_index, ["model", "corpus", "out"]),
    "search": (evaluation.search, ["embeddings", "corpus", "out"]),
    "evaluate": (evaluation.evaluate, ["run", "corpus", "out", "descriptor"]),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hybridbatch", description=__doc__)
    commands = parser.add_subparsers(dest="stage", required=True)
    for name, (function, paths) in STAGES.items():
        command = commands.add_parser(name, help=(function.__doc__ or "").splitlines()[0])
        command.add_argument("--params", required=True, help="the stage's config slice, as JSON")
        command.add_argument("--threads", type=int, default=None)
        for path in paths:
            command.add_argument(f"--{path}", required=True, type=json.loads if path == "descriptor" else str)
    command = commands.add_parser("tables", help=tables.make_tables.__doc__)
    command.add_argument("--summaries", nargs="+", required=True)
    command.add_argument("--tables", required=True)
    command.add_argument("--plots", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    started = time.perf_counter()
    if args.stage == "tables":
        tables.make_tables(args.summaries, args.tables, args.plots)
    else:
        if args.threads:
            torch.set_num_threads(args.threads)
        function, paths = STAGES[args.stage]
        result = function(json.loads(args.params), *(getattr(args, p) for p in paths))
        logging.info("%s: %s", args.stage, result if isinstance(result, dict) else type(result).__name__)
    logging.info("%s done in %.1f s", args.stage, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
