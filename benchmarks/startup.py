"""Start-up: the fixed cost of each stage's process, from exec to its first useful work,
for this checkout's code against a reference commit's, on the same job, in one run.

    .venv/bin/python benchmarks/startup.py [--reference 93b4c65] [--repeats 3]
        [--stages train-lit evaluate-image-text ...]

The finished run in this checkout's results/ (`make run` first) gives each stage's command, as the
workflow runs it (`snakemake -n -p --forceall`): the first job of each stage, its outputs
sent to a scratch directory. The reference commit (default: the code before the start-up
work) is checked out in a scratch worktree and runs under the same interpreter. Each job runs
`--repeats` times per code, alternating; the probe (benchmarks/startup_probe.py) stops it at
its first useful work, a function named per stage in FIRST_WORK (the same in both codes):
the trainer's loop, the first batch encoded, the frozen layers' first batch, else the stage
function itself. Prints the median seconds, the ratio, and how many jobs the stage has in the
run (the 3-second goal is for every stage with more than one).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = "93b4c65"  # the last commit before the start-up work (#37)
OUTPUTS = ("--out", "--tables", "--plots", "--record")
FIRST_WORK = {  # stage -> the function whose first call is its first useful work
    "train": "hybridbatch.train.loop.Trainer.fit",
    "train-lit": "hybridbatch.train.loop.Trainer.fit",
    "evaluate-image-text": "hybridbatch.models.encoders.encode_by_length",
    "embed": "hybridbatch.models.encoders.encode_by_length",
    "embed-shard": "hybridbatch.models.encoders.encode_by_length",
    "caption-states": "hybridbatch.models.frozen_layers.compute_states",
}
PROBE = REPO / "benchmarks" / "startup_probe.py"


def stage_jobs() -> dict[str, tuple[list[str], int]]:
    """Each stage's first job (its `python -m hybridbatch` arguments) and its job count,
    from a dry run of the whole workflow over the finished results."""
    snakemake = Path(sys.executable).parent / "snakemake"
    dry = subprocess.run(
        [str(snakemake), "-n", "-p", "--forceall", "--cores", "1"],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    jobs: dict[str, tuple[list[str], int]] = {}
    for line in dry.stdout.splitlines():
        found = re.search(r"python -m hybridbatch (\S+) (.*?) > \S+ 2>&1\s*$", line)
        if not found or found.group(1) == "check-config":
            continue
        stage, arguments = found.group(1), shlex.split(found.group(2))
        first, count = jobs.get(stage, (arguments, 0))
        jobs[stage] = (first, count + 1)
    if not jobs:
        raise SystemExit("no stage commands in the dry run; run `make run` first")
    return jobs


def scratch_outputs(arguments: list[str], scratch: Path) -> list[str]:
    """The arguments with every output path moved under `scratch`."""
    moved = list(arguments)
    for index, argument in enumerate(moved[:-1]):
        if argument in OUTPUTS:
            moved[index + 1] = str(scratch / f"{argument[2:]}-{index}")
    return moved


def reference_checkout(rev: str, scratch: Path) -> Path:
    checkout = scratch / f"reference-{rev}"
    subprocess.run(["git", "worktree", "add", "--detach", str(checkout), rev], cwd=REPO, check=True,
                   capture_output=True)  # fmt: skip
    return checkout


def time_to_first_work(code: Path, stage: str, arguments: list[str], scratch: Path) -> float:
    """Seconds from exec to the first call of the stage's first-work function."""
    stamp = scratch / "stamp"
    stamp.unlink(missing_ok=True)
    first_work = FIRST_WORK.get(stage, "")
    env = os.environ | {"PYTHONPATH": str(code / "workflow"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
                        "MKL_NUM_THREADS": "1"}  # fmt: skip
    command = [sys.executable, str(PROBE), str(stamp), first_work, stage, *scratch_outputs(arguments, scratch)]
    started = time.time()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if not stamp.is_file():
        raise SystemExit(f"{stage} ({code}) ended before its first work:\n{done.stderr[-3000:]}")
    return float(stamp.read_text()) - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", default=REFERENCE)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stages", nargs="*", default=None, help="default: every stage of the run")
    args = parser.parse_args()
    jobs = stage_jobs()
    stages = args.stages or sorted(jobs, key=lambda stage: -jobs[stage][1])
    with tempfile.TemporaryDirectory(prefix="startup-") as scratch_name:
        scratch = Path(scratch_name)
        codes = {"reference": reference_checkout(args.reference, scratch), "now": REPO}
        try:
            print(f"{'stage':<22}{'jobs':>5}{args.reference:>11}{'now':>8}{'ratio':>7}   first work")
            rows = []
            for stage in stages:
                arguments, count = jobs[stage]
                seconds = {name: [] for name in codes}
                for _ in range(args.repeats):
                    for name, code in codes.items():
                        seconds[name].append(time_to_first_work(code, stage, arguments, scratch))
                before, now = (statistics.median(seconds[name]) for name in codes)
                rows.append({"stage": stage, "jobs": count, "reference_s": before, "now_s": now})
                work = FIRST_WORK.get(stage, "the stage function")
                print(f"{stage:<22}{count:>5}{before:>10.2f}s{now:>7.2f}s{before / now:>6.1f}x   {work}", flush=True)
            repeated = [row for row in rows if row["jobs"] > 1]
            print(json.dumps({"reference": args.reference, "slowest_repeated_now_s": max(r["now_s"] for r in repeated)
                              if repeated else None}))  # fmt: skip
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(codes["reference"])], cwd=REPO, check=False)


if __name__ == "__main__":
    main()
