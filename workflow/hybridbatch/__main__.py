"""Command line: one sub-command per stage, `python -m hybridbatch <stage> --params JSON PATHS...`,
plus `audit`, `lineage` and `runs` over a results tree, and `export-model`.

The Snakemake rules call the stages; they are also the way to run one stage by hand.
After a stage succeeds, the manifest of its artifact is written (hybridbatch.artifacts.manifest).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import time

from hybridbatch.stages import STAGES, check_params


def run_stage(stage: str, params: dict, paths: dict[str, object]) -> object:
    """Check the input artifacts against their manifests, run one stage, and write its
    artifact's manifest."""
    from hybridbatch.artifacts.manifest import verify_inputs, write_manifest

    declared = STAGES[stage]
    function = getattr(importlib.import_module(f"{__package__}.{declared.module}"), declared.function)
    check_params(stage, function, params)
    flat = lambda value: value if isinstance(value, list) else [value]  # noqa: E731
    inputs = [p for path in declared.paths if not path.output and paths[path.name] for p in flat(paths[path.name])]
    outputs = [p for path in declared.paths if path.output for p in flat(paths[path.name])]
    verify_inputs(inputs)
    started = time.perf_counter()
    result = function(params, **{path.name: paths[path.name] for path in declared.paths})
    summary = result if isinstance(result, dict) else None
    write_manifest(stage, declared.module, params, inputs, outputs, time.perf_counter() - started, summary)
    return result


def build_parser() -> argparse.ArgumentParser:
    """A sub-command per stage (its paths as the declaration gives them) and per tool."""
    parser = argparse.ArgumentParser(prog="hybridbatch", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    for name, declared in STAGES.items():
        command = commands.add_parser(name)
        command.add_argument("--params", required=True, help="the stage's config slice, as JSON")
        command.add_argument("--threads", type=int, default=None)
        for path in declared.paths:
            nargs = ("*" if path.optional else "+") if path.several else None
            command.add_argument(
                f"--{path.name.replace('_', '-')}",
                dest=path.name,
                required=not path.optional,
                nargs=nargs,
                default=[] if nargs == "*" else None,
            )
    command = commands.add_parser("check-config", help="checks that need the stages' libraries (Babel, FAISS)")
    command.add_argument("--params", required=True, help="the whole config, as JSON")
    command = commands.add_parser("audit", help="re-hash every artifact against its manifest")
    command.add_argument("results", nargs="?", default="results")
    command.add_argument(
        "--quick", action="store_true", help="check sizes; hash only files modified after their manifest was written"
    )
    command = commands.add_parser("lineage", help="the chain of artifacts behind a table")
    command.add_argument("table")
    command.add_argument("--row", type=int, default=None, help="0-based data row of a summary-style CSV")
    command = commands.add_parser("runs", help="every evaluated run with its params and headline metrics")
    command.add_argument("results", nargs="?", default="results")
    command.add_argument("--csv", default=None, help="also write the table here")
    command = commands.add_parser(
        "export-model", help="write the full sentence-transformers directory of a trained model"
    )
    command.add_argument("model", help="a trained model directory (text track) or a LiT model's text/")
    command.add_argument("out", help="a new directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    if args.command not in STAGES:
        return run_tool(args)
    if args.threads:  # the workflow sets these from config `compute.threads` for every stage
        from hybridbatch.names import THREAD_VARIABLES

        os.environ.update({name: str(args.threads) for name in THREAD_VARIABLES})
    started = time.perf_counter()
    paths = {path.name: getattr(args, path.name) for path in STAGES[args.command].paths}
    result = run_stage(args.command, json.loads(args.params), paths)
    logging.info("%s: %s", args.command, result if isinstance(result, dict) else type(result).__name__)
    logging.info("%s done in %.1f s", args.command, time.perf_counter() - started)
    return 0


def run_tool(args: argparse.Namespace) -> int:
    """check-config, export-model, and the commands over a results tree (audit, lineage, runs)."""
    if args.command == "check-config":
        import importlib.util

        from hybridbatch.config import ConfigError, check_config_deeply

        config = json.loads(args.params)
        try:
            check_config_deeply(config)
            if all(importlib.util.find_spec(name) for name in ("torch", "pandas", "pyarrow")):
                from hybridbatch.preflight import check_before_any_job

                check_before_any_job(config)
            else:  # a driver without the stages' libraries: each stage looks its names up again
                logging.warning("registry checks skipped: torch, pandas or pyarrow not installed where Snakemake runs")
        except ConfigError as error:
            print(error, file=sys.stderr)
            return 1
        return 0
    if args.command == "export-model":
        from hybridbatch.models.encoders import export_model

        export_model(args.model, args.out)
        return 0
    if args.command in ("audit", "lineage", "runs"):
        from hybridbatch.report import audit

        if args.command == "audit":
            return audit.audit(args.results, args.quick)
        if args.command == "lineage":
            try:
                print("\n".join(audit.lineage(args.table, args.row)))
            except (FileNotFoundError, IndexError) as error:
                print(error, file=sys.stderr)
                return 2
            return 0
        table = audit.runs_table(args.results)
        print(table.to_string(index=False))
        if args.csv:
            table.to_csv(args.csv, index=False)
        return 0


if __name__ == "__main__":
    sys.exit(main())
