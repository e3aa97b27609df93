"""Checkpoints of a training run and the state they carry: every `checkpoint_every` steps,
atomically (a temporary directory renamed into place), the last `keep_checkpoints` kept:
trainable weights, optimizer, scheduler, step, RNG states (torch, CUDA, numpy, python),
the log so far and the validation state (RunState). Each carries a manifest of its
files' hashes; one that does not match is skipped with a warning naming it. They live
beside the output directory, in `<parent>/.checkpoints/<name>` (Snakemake deletes a
failed job's outputs, not that), and are deleted once the run completes."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hybridbatch.artifacts.hashing import sha256_file


class Trainer(Protocol):
    """What a checkpoint saves of the loop's trainer (loop.Trainer) and restores into it."""

    named: dict[str, torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    device: str


CHECKPOINTS = ".checkpoints"
VALIDATION_LOG = "validation_log.csv"
VALIDATION_COLUMNS = ["steps_trained", "validation_loss", "development_recall_at_1"]
STATE, STATE_JSON, CHECKSUMS = "state.safetensors", "state.json", "checksums.json"


@dataclass
class RunState:
    """What a checkpoint restores besides weights, optimizer, scheduler and RNG: the
    validations so far, [steps trained, loss, development Recall@1], and early stopping's
    count of validations since the best development Recall@1."""

    step: int = 0
    log: list | None = None
    validation: list | None = None
    best_step: int | None = None
    best_recall: float = -math.inf
    checks_without_improvement: int = 0

    def __post_init__(self):
        self.log = self.log or []
        self.validation = self.validation or []

    def validated(self, step: int, loss: float, recall: float) -> None:
        self.validation.append([step, loss, recall])
        if recall > self.best_recall:
            self.best_step, self.best_recall, self.checks_without_improvement = step, recall, 0
        else:
            self.checks_without_improvement += 1

    def should_stop(self, patience: int | None) -> bool:
        return patience is not None and self.checks_without_improvement >= patience

    def finish(self, steps: int, where: str) -> dict:
        """The run's summary. The saved model is the last step trained: the end of the
        schedule, or where early stopping ended it; no checkpoint is chosen afterwards."""
        last = self.validation[-1] if self.validation else [None, None, None]
        summary = {
            "steps": steps,
            "saved_step": steps,
            "validated": bool(self.validation),
            "validation_loss": last[1],
            "development_recall_at_1": last[2],
            "best_development_step": self.best_step,
        }
        logging.info("%s: %d steps; saved the weights of the last step", where, steps)
        return summary

    def write_validation_log(self, out_dir: Path) -> None:
        if self.validation:
            with open(out_dir / VALIDATION_LOG, "w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(VALIDATION_COLUMNS)
                writer.writerows(self.validation)


def checkpoint_dir(out_dir: Path) -> Path:
    return out_dir.parent / CHECKPOINTS / out_dir.name


class Checkpoints:
    """step-NNNNNNNN directories under `root`, each with a hash manifest."""

    def __init__(self, root: Path, fingerprint: dict, keep: int):
        self.root, self.fingerprint, self.keep = root, json.loads(json.dumps(fingerprint, sort_keys=True)), keep

    def existing(self) -> list[Path]:
        return sorted(self.root.glob("step-*[0-9]"), reverse=True) if self.root.is_dir() else []

    def save(self, trainer: Trainer, state: RunState) -> None:
        final = self.root / f"step-{state.step:08d}"
        tmp = self.root / f".{final.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        tensors = {f"param/{name}": p.detach().cpu().contiguous() for name, p in trainer.named.items()}
        optimizer = trainer.optimizer.state_dict()
        for index, values in optimizer["state"].items():
            for key, value in values.items():
                tensors[f"optimizer/{index}/{key}"] = value.detach().cpu().contiguous()
        tensors["rng/torch"] = torch.get_rng_state()
        if trainer.device == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state()
        numpy_state = np.random.get_state()
        tensors["rng/numpy"] = torch.from_numpy(numpy_state[1].astype(np.int64))
        save_file(tensors, str(tmp / STATE))
        meta = {
            "fingerprint": self.fingerprint,
            "step": state.step,
            "log": state.log,
            "validation": state.validation,
            "best_step": state.best_step,
            "best_recall": state.best_recall if state.best_step is not None else None,
            "checks_without_improvement": state.checks_without_improvement,
            "optimizer_groups": optimizer["param_groups"],
            "scheduler": trainer.scheduler.state_dict(),
            "scaler": trainer.scaler.state_dict(),
            "python_rng": _jsonable(random.getstate()),
            "numpy_rng": [numpy_state[0], *[_jsonable(v) for v in numpy_state[2:]]],
        }
        (tmp / STATE_JSON).write_text(json.dumps(meta))
        (tmp / CHECKSUMS).write_text(json.dumps({name: sha256_file(tmp / name) for name in (STATE, STATE_JSON)}))
        shutil.rmtree(final, ignore_errors=True)  # one skipped as corrupt, now replaced
        tmp.rename(final)
        for old in self.existing()[self.keep :]:
            shutil.rmtree(old)

    def resume(self, trainer: Trainer) -> RunState:
        """Restore the newest intact checkpoint of this configuration; a fresh state if none."""
        for path in self.existing():
            problem = self.problem(path)
            if problem:
                logging.warning("checkpoint %s skipped: %s", path, problem)
                shutil.rmtree(path, ignore_errors=True)
                continue
            meta = json.loads((path / STATE_JSON).read_text())
            if meta["fingerprint"] != self.fingerprint:
                logging.warning("checkpoints in %s belong to another configuration: starting from step 0", self.root)
                self.clear()
                return RunState()
            logging.info("resuming from %s", path)
            return self.restore(trainer, path, meta)
        return RunState()

    @staticmethod
    def problem(path: Path) -> str | None:
        try:
            expected = json.loads((path / CHECKSUMS).read_text())
        except (OSError, ValueError) as error:
            return f"no readable {CHECKSUMS} ({error})"
        for name in (STATE, STATE_JSON):
            if not (path / name).is_file():
                return f"{name} is missing"
            if sha256_file(path / name) != expected.get(name):
                return f"{name} does not match its hash"
        return None

    @staticmethod
    def restore(trainer: Trainer, path: Path, meta: dict) -> RunState:
        tensors = load_file(str(path / STATE))
        with torch.no_grad():
            for name, parameter in trainer.named.items():
                parameter.copy_(tensors[f"param/{name}"])
        optimizer_state: dict[int, dict] = {}
        for key, value in tensors.items():
            if key.startswith("optimizer/"):
                _, index, name = key.split("/", 2)
                optimizer_state.setdefault(int(index), {})[name] = value
        trainer.optimizer.load_state_dict({"state": optimizer_state, "param_groups": meta["optimizer_groups"]})
        trainer.scheduler.load_state_dict(meta["scheduler"])
        trainer.scaler.load_state_dict(meta["scaler"])
        torch.set_rng_state(tensors["rng/torch"])
        if "rng/cuda" in tensors and trainer.device == "cuda":
            torch.cuda.set_rng_state(tensors["rng/cuda"])
        random.setstate(_tuples(meta["python_rng"]))
        kind, *rest = meta["numpy_rng"]
        np.random.set_state((kind, tensors["rng/numpy"].numpy().astype(np.uint32), *rest))
        return RunState(
            step=meta["step"],
            log=meta["log"],
            validation=meta["validation"],
            best_step=meta["best_step"],
            best_recall=meta["best_recall"] if meta["best_recall"] is not None else -math.inf,
            checks_without_improvement=meta["checks_without_improvement"],
        )

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.parent.rmdir()  # the .checkpoints folder, once no run uses it


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
