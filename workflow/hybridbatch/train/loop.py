"""The training loop both tracks share: a step embeds its sides (queries and candidates,
captions and images) and scores them with an objective; the loop adds what a research
run needs around that.

- Checkpoints every `checkpoint_every` steps, atomically (a temporary directory renamed
  into place), the last `keep_checkpoints` kept: trainable weights, optimizer, scheduler,
  step, RNG states (torch, CUDA, numpy, python), the log so far, early-stopping state.
  Each carries a manifest of its files' hashes; one that does not match is skipped with
  a warning naming it. They live beside the output directory, in
  `<parent>/.checkpoints/<name>` (Snakemake deletes a failed job's outputs, not that),
  and are deleted once the run completes. A restarted run resumes from the newest good
  checkpoint of the same configuration and, on CPU, ends bit-identical to an
  uninterrupted one, but for the log's `examples_per_second` (a wall-clock timing).
- Validation: the loss on fixed validation batches every `validation_every` steps (and
  at the last step); early stopping after `patience` validations without improvement;
  the saved model is the best validated one (`training.json` names its step).
- GradCache (`mini_batch`): embeddings are computed without a graph in mini-batches, the
  loss's gradient with respect to them is taken, and each mini-batch is re-embedded with
  the same RNG state and back-propagated with that gradient: the gradients of the whole
  batch at the memory of one mini-batch. A locked side (nothing of it trains: a dual
  encoder's cached image features) is embedded once without a graph and never replayed.
- Mixed precision on CUDA (bf16 autocast where supported, else fp16 with a loss scaler),
  gradient clipping, weight decay on matrices only (no biases, LayerNorm or scalars).
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm
from transformers import get_linear_schedule_with_warmup

from hybridbatch.artifacts.hashing import sha256_file

CHECKPOINTS = ".checkpoints"
STATE, STATE_JSON, CHECKSUMS = "state.safetensors", "state.json", "checksums.json"


@dataclass(frozen=True)
class TrainerSettings:
    """The config's `trainer` section (shared by the text and image-text tracks)."""

    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto (bf16, else fp16, autocast on CUDA; fp32 on CPU) | bf16 | fp16 | fp32
    mini_batch: int | None = None  # GradCache chunk size; None embeds the whole batch at once
    gradient_clipping: float | None = None
    checkpoint_every: int = 0
    keep_checkpoints: int = 2
    validation_every: int = 0
    patience: int | None = None
    init_seed: int | None = None  # initialisation and dropout; None: the run's seed
    tensorboard: bool = False  # also write the log as TensorBoard event files (out_dir/tensorboard)

    @classmethod
    def from_params(cls, params: dict | None) -> TrainerSettings:
        return cls(**(params or {}))

    def resolve_device(self) -> str:
        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("config key trainer.device: cuda, but torch sees no CUDA device")
        return self.device


@dataclass(frozen=True)
class Side:
    """One side of a step: `embed(inputs)` gives its embeddings; `locked` when no trainable
    parameter is reached through it (it is embedded without a graph, never replayed)."""

    embed: Callable[[list], torch.Tensor]
    inputs: list
    locked: bool = False

    def embeddings(self, size: int | None) -> torch.Tensor:
        """All inputs embedded, in chunks of `size` (None: at once), as float32."""
        size = size or len(self.inputs) or 1
        return torch.cat([self.embed(self.inputs[i : i + size]).float() for i in range(0, len(self.inputs), size)])


@dataclass
class Step:
    """One batch: its `sides` (queries and candidates, captions and images); `loss` scores
    their embeddings."""

    sides: list[Side]
    loss: Callable[[list[torch.Tensor]], torch.Tensor]
    examples: int
    notes: tuple = ()  # extra log columns (e.g. masked conflicts)


def parameter_groups(
    named: dict[str, torch.nn.Parameter], learning_rate: Callable[[str], float], weight_decay: float
) -> list[dict]:
    """AdamW groups: weight decay on matrices only (biases, LayerNorm and scalars none)."""
    groups: dict[tuple[float, float], list] = {}
    for name, parameter in named.items():
        decay = weight_decay if parameter.ndim >= 2 else 0.0
        groups.setdefault((learning_rate(name), decay), []).append(parameter)
    return [{"params": ps, "lr": lr, "weight_decay": decay} for (lr, decay), ps in groups.items()]


class RngState:
    """The torch (and CUDA) generator state, to replay dropout when GradCache re-embeds."""

    def __init__(self, device: str):
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state() if device == "cuda" else None

    def restore(self) -> None:
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda)


class Trainer:
    def __init__(
        self,
        settings: TrainerSettings,
        named: dict[str, torch.nn.Parameter],
        groups: list[dict],
        warmup_fraction: float,
        total: int,
        modules: list[torch.nn.Module],
        device: str,
    ):
        self.settings, self.named, self.total, self.modules, self.device = settings, named, total, modules, device
        self.optimizer = torch.optim.AdamW(groups, fused=True)  # one kernel for all parameters: 4x faster on CPU
        self.scheduler = get_linear_schedule_with_warmup(self.optimizer, int(warmup_fraction * total), total)
        self.dtype = autocast_dtype(settings.precision, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)

    # ---- one step -------------------------------------------------------------------------
    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)

    def embeddings_and_loss(self, step: Step, grad: bool) -> torch.Tensor:
        """The loss of a step; without gradients, embedded in mini-batches when GradCache is on."""
        size = None if grad else self.settings.mini_batch
        with torch.set_grad_enabled(grad), self.autocast():
            embeddings = []
            for side in step.sides:
                with torch.set_grad_enabled(grad and not side.locked):
                    embeddings.append(side.embeddings(size))
        with torch.set_grad_enabled(grad):
            return step.loss(embeddings)

    def cached_loss(self, step: Step, where: str) -> torch.Tensor:
        """GradCache: the loss and, left in .grad, the gradients of the whole batch."""
        size = self.settings.mini_batch
        cached, states = [], []
        for side in step.sides:
            chunks = []
            for start in range(0, len(side.inputs), size):
                states.append(None if side.locked else RngState(self.device))
                with torch.no_grad(), self.autocast():
                    chunks.append(side.embed(side.inputs[start : start + size]).float())
            cached.append(torch.cat(chunks).requires_grad_(not side.locked))
        loss = step.loss(cached)
        check_finite(loss, where)
        self.scaler.scale(loss).backward()
        replay = iter(states)
        for side, embeddings in zip(step.sides, cached):
            for start in range(0, len(side.inputs), size):
                state = next(replay)
                if side.locked:
                    continue
                state.restore()
                with self.autocast():
                    chunk = side.embed(side.inputs[start : start + size]).float()
                chunk.backward(embeddings.grad[start : start + size])
        return loss.detach()

    def backward(self, step: Step, where: str) -> torch.Tensor:
        """The step's loss, its (scaled) gradients left in the parameters' .grad."""
        if self.settings.mini_batch:
            return self.cached_loss(step, where)
        loss = self.embeddings_and_loss(step, grad=True)
        check_finite(loss, where)
        self.scaler.scale(loss).backward()
        return loss.detach()

    def optimise(self, step: Step, where: str) -> tuple[float, float]:
        """Backward, clip, step and schedule; (loss, gradient norm before clipping)."""
        loss = self.backward(step, where)
        self.scaler.unscale_(self.optimizer)
        limit = self.settings.gradient_clipping or math.inf
        norm = torch.nn.utils.clip_grad_norm_(list(self.named.values()), limit)
        scale = self.scaler.get_scale()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scaler.get_scale() < scale:  # fp16 overflow: the optimizer step was skipped
            logging.warning(
                "%s: gradients overflowed in fp16; step skipped, loss scale now %g", where, self.scaler.get_scale()
            )
        else:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.item(), float(norm)

    @torch.no_grad()
    def validation_loss(self, steps: list[Step]) -> float:
        for module in self.modules:
            module.eval()
        losses = []
        for number, step in enumerate(steps):
            losses.append(self.embeddings_and_loss(step, grad=False))
            check_finite(losses[-1], f"validation batch {number}")
        losses = [loss.item() for loss in losses]
        for module in self.modules:
            module.train()
        return float(np.mean(losses))

    # ---- the run --------------------------------------------------------------------------
    def fit(
        self,
        batches: Callable[[], Iterator[tuple[int, str, object]]],
        make_step: Callable[[str, object], Step],
        validation: list[Step],
        out_dir: Path,
        fingerprint: dict,
        log_columns: list[str],
        where: str,
        save: Callable[[], None],
    ) -> dict:
        """Train over `batches()` (a fresh iterator of (batch_id, batch_type, rows)), log to
        out_dir/training_log.csv as it goes, put the best (or last) weights in place and
        `save()` them; the checkpoints go only then. Returns the run's summary (also
        written as out_dir/training.json)."""
        settings = self.settings
        resolved = {"device": self.device, "dtype": str(self.dtype), "threads": torch.get_num_threads()}
        checkpoints = Checkpoints(checkpoint_dir(out_dir), fingerprint | resolved, settings.keep_checkpoints)
        state = checkpoints.resume(self)
        out_dir.mkdir(parents=True, exist_ok=True)
        columns = [
            "step",
            "batch_id",
            "batch_type",
            "loss",
            "learning_rate",
            "gradient_norm",
            *log_columns,
            "examples_per_second",
        ]
        log = TrainingLog(out_dir, columns, state.log, state.validation, settings.tensorboard)
        for module in self.modules:
            module.train()
        iterator = batches()
        for _ in range(state.step):  # the data position: batches already trained on
            next(iterator)
        progress = tqdm(iterator, total=self.total, initial=state.step, desc="train", mininterval=5)
        if state.should_stop(settings.patience):  # resumed from the checkpoint of the step it stopped at
            progress = []
        for step, (batch_id, batch_type, rows) in enumerate(progress, start=state.step):
            started = time.perf_counter()
            batch = make_step(batch_type, rows)
            loss, norm = self.optimise(batch, f"{where}: batch {batch_id} (step {step})")
            speed = batch.examples / (time.perf_counter() - started)
            log.append([step, batch_id, batch_type, loss, self.scheduler.get_last_lr()[0], norm, *batch.notes, speed])
            done = step + 1
            if validation and (done % (settings.validation_every or self.total) == 0 or done == self.total):
                state.validated(done, self.validation_loss(validation), self.named)
                log.validated(*state.validation[-1])
            if settings.checkpoint_every and done % settings.checkpoint_every == 0 and done < self.total:
                state.step, state.log = done, log.rows
                checkpoints.save(self, state)
            if state.should_stop(settings.patience):
                logging.info(
                    "early stopping at step %d: no better validation loss in %d checks", done, settings.patience
                )
                break
        log.close()
        summary = state.finish(self.named, len(log.rows), where)
        (out_dir / "training.json").write_text(json.dumps(summary, indent=2))
        state.write_validation_log(out_dir)
        plot_curves(log.rows, state.validation, summary["saved_step"], out_dir / "training_curves.png")
        save()
        checkpoints.clear()
        return summary


def plot_curves(log: list[list], validation: list[list], saved_step: int, path: Path) -> None:
    """Training loss per step (and its running mean over 10), validation loss, the saved step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([row[0] + 1 for row in log])  # steps trained after each row
    losses = np.array([row[3] for row in log], dtype=float)
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.plot(steps, losses, color="0.75", linewidth=0.8, label="training loss")
    if len(losses) >= 10:
        axis.plot(steps[9:], np.convolve(losses, np.ones(10) / 10, mode="valid"), label="running mean (10 steps)")
    if validation:
        axis.plot(*zip(*validation), marker="o", label="validation loss")
    axis.axvline(saved_step, color="k", linestyle=":", label=f"saved (step {saved_step})")
    axis.set_xlabel("steps trained")
    axis.set_ylabel("loss")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def autocast_dtype(precision: str, device: str) -> torch.dtype | None:
    """The CUDA autocast type (None: fp32); fp16 comes with a loss scaler."""
    if precision == "fp32" or device != "cuda":
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def check_finite(loss: torch.Tensor, where: str) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"{where}: loss is {loss.item()}")


class TrainingLog:
    """training_log.csv, appended and flushed after every step; with `tensorboard`, the same
    numbers (and the validation losses) as TensorBoard scalars in out_dir/tensorboard/, at
    the number of steps trained (rows restored from a checkpoint are written again)."""

    SCALARS_FROM = 3  # columns after step, batch_id, batch_type

    def __init__(self, out_dir: Path, columns: list[str], rows: list[list], validation: list[list], tensorboard: bool):
        self.columns, self.rows = columns, []
        self.file = open(out_dir / "training_log.csv", "w", newline="")
        self.writer = csv.writer(self.file)
        self.writer.writerow(columns)
        self.events = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            shutil.rmtree(out_dir / "tensorboard", ignore_errors=True)
            self.events = SummaryWriter(str(out_dir / "tensorboard"))
        for row in rows:
            self.append(list(row))
        for steps_trained, loss in validation:
            self.validated(steps_trained, loss)

    def append(self, row: list) -> None:
        self.rows.append(row)
        self.writer.writerow(row)
        self.file.flush()
        if self.events is not None:
            for column, value in zip(self.columns[self.SCALARS_FROM :], row[self.SCALARS_FROM :]):
                self.events.add_scalar(f"train/{column}", value, row[0] + 1)

    def validated(self, steps_trained: int, loss: float) -> None:
        if self.events is not None:
            self.events.add_scalar("validation/loss", loss, steps_trained)

    def close(self) -> None:
        self.file.close()
        if self.events is not None:
            self.events.close()


@dataclass
class RunState:
    """What a checkpoint restores besides weights, optimizer, scheduler and RNG."""

    step: int = 0
    log: list | None = None
    validation: list | None = None  # [step, loss]
    best_step: int | None = None
    best_loss: float = math.inf
    checks_without_improvement: int = 0
    best: dict[str, torch.Tensor] | None = None  # trainable weights at best_step

    def __post_init__(self):
        self.log = self.log or []
        self.validation = self.validation or []

    def validated(self, step: int, loss: float, named: dict[str, torch.nn.Parameter]) -> None:
        self.validation.append([step, loss])
        if loss < self.best_loss:
            self.best_step, self.best_loss, self.checks_without_improvement = step, loss, 0
            self.best = {name: p.detach().cpu().clone() for name, p in named.items()}
        else:
            self.checks_without_improvement += 1

    def should_stop(self, patience: int | None) -> bool:
        return patience is not None and self.checks_without_improvement >= patience

    def finish(self, named: dict[str, torch.nn.Parameter], steps: int, where: str) -> dict:
        if self.best is not None:
            with torch.no_grad():
                for name, parameter in named.items():
                    parameter.copy_(self.best[name])
        summary = {
            "steps": steps,
            "validated": bool(self.validation),
            "best_step": self.best_step,
            "best_validation_loss": self.best_loss if self.validation else None,
            "saved_step": self.best_step if self.validation else steps,
        }
        logging.info("%s: %d steps; saved weights of step %s", where, steps, summary["saved_step"])
        return summary

    def write_validation_log(self, out_dir: Path) -> None:
        if self.validation:
            with open(out_dir / "validation_log.csv", "w", newline="") as file:
                writer = csv.writer(file)
                writer.writerow(["steps_trained", "validation_loss"])
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
        if state.best is not None:
            tensors.update({f"best/{name}": t.contiguous() for name, t in state.best.items()})
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
            "best_loss": state.best_loss if state.best is not None else None,
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
        best = {name[len("best/") :]: t for name, t in tensors.items() if name.startswith("best/")} or None
        return RunState(
            step=meta["step"],
            log=meta["log"],
            validation=meta["validation"],
            best_step=meta["best_step"],
            best_loss=meta["best_loss"] if meta["best_loss"] is not None else math.inf,
            checks_without_improvement=meta["checks_without_improvement"],
            best=best,
        )

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.parent.rmdir()  # the .checkpoints folder, once no run uses it


def _jsonable(value):
    return [_jsonable(v) for v in value] if isinstance(value, tuple) else value


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
