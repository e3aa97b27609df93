"""The training loop both tracks share: a step embeds its sides (queries and candidates,
captions and images) and scores them with an objective; the loop adds what a research
run needs around that.

- Checkpoints (checkpoints.py) every `checkpoint_every` steps; a restarted run resumes
  from the newest good one of the same configuration and, on CPU, ends bit-identical to
  an uninterrupted one, but for the log's `examples_per_second` (a wall-clock timing).
  The logs and their plot: logs.py.
- Validation on the development split (fixed validation batches of held-out items)
  every `validation_every` steps and at the last step: the loss, and Recall@1 of every
  validation query against the pooled candidates of all validation batches (a hit when
  the top candidate is its own or one the qrels judge relevant; ties to the earlier
  candidate). Early stopping after `patience` validations without a better development
  Recall@1. The saved model is the last step trained: no checkpoint is chosen after the
  fact, so runs of equal batches train equal batches (`training.json`).
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
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from tqdm import tqdm

from hybridbatch.train.checkpoints import Checkpoints, RunState, checkpoint_dir
from hybridbatch.train.logs import TrainingLog, plot_curves
from hybridbatch.train.masks import Relevance


class TrainerSection(TypedDict):
    """The config's `trainer` section, as a stage's params carry it (TrainerSettings: its values)."""

    device: str
    precision: str
    mini_batch: int | None
    gradient_clipping: float | None
    checkpoint_every: int
    keep_checkpoints: int
    validation_every: int
    patience: int | None
    init_seed: int | None
    tensorboard: bool


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
    notes: dict = field(default_factory=dict)  # extra log columns by name (e.g. masked_conflicts)
    ids: tuple[list, list] | None = None  # ids of sides[0] and sides[1]'s inputs (query i's own candidate: i)


def parameter_groups(
    named: dict[str, torch.nn.Parameter], learning_rate: Callable[[str], float], weight_decay: float
) -> list[dict]:
    """AdamW groups: weight decay on matrices only (biases, LayerNorm and scalars none)."""
    groups: dict[tuple[float, float], list] = {}
    for name, parameter in named.items():
        decay = weight_decay if parameter.ndim >= 2 else 0.0
        groups.setdefault((learning_rate(name), decay), []).append(parameter)
    return [{"params": ps, "lr": lr, "weight_decay": decay} for (lr, decay), ps in groups.items()]


class AdamW(torch.optim.AdamW):
    """torch.optim.AdamW without the torch.compile wrappers around its methods: each imports
    torch._dynamo on first call, 1 s of every training job's start-up, and nothing here is
    compiled. The same update (tests: bit-identical to torch.optim.AdamW), under no_grad."""

    @torch.no_grad()
    def step(self, closure=None):
        return torch.optim.AdamW.step.__wrapped__(self, closure)

    def add_param_group(self, param_group: dict) -> None:
        torch.optim.Optimizer.add_param_group.__wrapped__(self, param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        torch.optim.Optimizer.zero_grad.__wrapped__(self, set_to_none)

    def state_dict(self) -> dict:
        return torch.optim.Optimizer.state_dict.__wrapped__(self)

    def load_state_dict(self, state_dict: dict) -> None:
        torch.optim.Optimizer.load_state_dict.__wrapped__(self, state_dict)


def linear_schedule_with_warmup(optimizer, warmup: int, total: int) -> torch.optim.lr_scheduler.LambdaLR:
    """transformers' get_linear_schedule_with_warmup (tests: the same rates), without importing
    transformers (3 s of every job's start-up): linear from 0 over `warmup` steps, then to 0 at `total`."""

    def rate(step: int) -> float:
        if step < warmup:
            return float(step) / float(max(1, warmup))
        return max(0.0, float(total - step) / float(max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, rate)


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
        relevance: Relevance | None = None,
    ):
        self.settings, self.named, self.total, self.modules, self.device = settings, named, total, modules, device
        self.relevance = relevance  # the training qrels: which pooled validation candidates are relevant
        self.optimizer = AdamW(groups, fused=True)  # one kernel for all parameters: 4x faster on CPU
        self.scheduler = linear_schedule_with_warmup(self.optimizer, int(warmup_fraction * total), total)
        self.dtype = autocast_dtype(settings.precision, device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.dtype == torch.float16)

    # ---- one step -------------------------------------------------------------------------
    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.dtype)

    def embeddings_and_loss(self, step: Step, grad: bool) -> tuple[list[torch.Tensor], torch.Tensor]:
        """The embeddings of a step's sides and its loss; without gradients, embedded in
        mini-batches when GradCache is on."""
        size = None if grad else self.settings.mini_batch
        with torch.set_grad_enabled(grad), self.autocast():
            embeddings = []
            for side in step.sides:
                with torch.set_grad_enabled(grad and not side.locked):
                    embeddings.append(side.embeddings(size))
        with torch.set_grad_enabled(grad):
            return embeddings, step.loss(embeddings)

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
        _, loss = self.embeddings_and_loss(step, grad=True)
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
    def validate(self, steps: list[Step]) -> tuple[float, float]:
        """The mean loss of the validation batches and the development Recall@1."""
        for module in self.modules:
            module.eval()
        losses, queries, candidates = [], [], []
        for number, step in enumerate(steps):
            embeddings, loss = self.embeddings_and_loss(step, grad=False)
            check_finite(loss, f"validation batch {number}")
            losses.append(loss)
            queries.append(embeddings[0])
            candidates.append(embeddings[1])
        for module in self.modules:
            module.train()
        recall = development_recall_at_1(queries, candidates, [step.ids for step in steps], self.relevance)
        return float(np.mean([loss.item() for loss in losses])), recall

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
        summarise: Callable[[int], dict] = lambda steps: {},
    ) -> dict:
        """Train over `batches()` (a fresh iterator of (batch_id, batch_type, rows)), log to
        out_dir/training_log.csv as it goes, and `save()` the weights of the last step; the
        checkpoints go only then. Returns the run's summary with `summarise(steps trained)`
        (also written as out_dir/training.json)."""
        settings = self.settings
        resolved = {"device": self.device, "dtype": str(self.dtype), "threads": torch.get_num_threads()}
        checkpoints = Checkpoints(checkpoint_dir(out_dir), fingerprint | resolved, settings.keep_checkpoints)
        state = checkpoints.resume(self)
        out_dir.mkdir(parents=True, exist_ok=True)
        columns = ["step", "batch_id", "batch_type", "loss", "learning_rate", "gradient_norm", *log_columns]
        log = TrainingLog(out_dir, columns + ["examples_per_second"], state.log, state.validation, settings.tensorboard)
        for module in self.modules:
            module.train()
        for step, (batch_id, batch_type, rows) in self.remaining(batches, state):
            started = time.perf_counter()
            batch = make_step(batch_type, rows)
            loss, norm = self.optimise(batch, f"{where}: batch {batch_id} (step {step})")
            speed = batch.examples / (time.perf_counter() - started)
            notes = [batch.notes[column] for column in log_columns]
            log.append([step, batch_id, batch_type, loss, self.scheduler.get_last_lr()[0], norm, *notes, speed])
            if self.after_step(step + 1, validation, state, log, checkpoints):
                break
        log.close()
        summary = state.finish(len(log.rows), where) | summarise(len(log.rows))
        (out_dir / "training.json").write_text(json.dumps(summary, indent=2))
        state.write_validation_log(out_dir)
        plot_curves(log.rows, state.validation, summary["saved_step"], out_dir / "training_curves.png")
        save()
        checkpoints.clear()
        return summary

    def remaining(self, batches: Callable[[], Iterator], state: RunState) -> Iterator[tuple[int, tuple]]:
        """(step, batch) from the run's position on: the batches already trained on skipped,
        none when the resumed run had stopped early."""
        iterator = batches()
        for _ in range(state.step):
            next(iterator)
        if state.should_stop(self.settings.patience):  # resumed from the checkpoint of the step it stopped at
            return iter(())
        progress = tqdm(iterator, total=self.total, initial=state.step, desc="train", mininterval=5)
        return enumerate(progress, start=state.step)

    def after_step(
        self, done: int, validation: list[Step], state: RunState, log: TrainingLog, checkpoints: Checkpoints
    ) -> bool:
        """Validate, checkpoint and decide on early stopping after `done` steps; True to stop."""
        settings = self.settings
        if validation and (done % (settings.validation_every or self.total) == 0 or done == self.total):
            state.validated(done, *self.validate(validation))
            log.validated(*state.validation[-1])
        if settings.checkpoint_every and done % settings.checkpoint_every == 0 and done < self.total:
            state.step, state.log = done, log.rows
            checkpoints.save(self, state)
        if state.should_stop(settings.patience):
            logging.info(
                "early stopping at step %d: no better development Recall@1 in %d checks", done, settings.patience
            )
            return True
        return False


def development_recall_at_1(
    queries: list[torch.Tensor], candidates: list[torch.Tensor], ids: list, relevance: Relevance | None
) -> float:
    """Recall@1 of every validation query against the validation batches' candidates pooled
    (each id once, where it first appears), by cosine: a hit when the top candidate is the
    query's own or one `relevance` judges relevant to it; ties go to the earlier candidate.
    NaN when a batch carries no ids."""
    if not ids or any(pair is None for pair in ids):
        return float("nan")
    query_ids = [qid for query_side, _ in ids for qid in query_side]
    candidate_ids = [pid for _, candidate_side in ids for pid in candidate_side]
    own = [candidate_side[i] for query_side, candidate_side in ids for i in range(len(query_side))]
    _, first = np.unique(np.array(candidate_ids, dtype=object), return_index=True)
    first = np.sort(first)
    vectors = torch.nn.functional.normalize(torch.cat(candidates)[torch.from_numpy(first)], dim=-1)
    scores = torch.nn.functional.normalize(torch.cat(queries), dim=-1) @ vectors.T
    top = [candidate_ids[i] for i in first[scores.argmax(dim=1).cpu().numpy()]]
    hits = np.array([t == o for t, o in zip(top, own)])
    if relevance is not None:
        hits |= (relevance.targets_of(query_ids) == relevance.codes(top)[:, None]).any(axis=1)
    return float(hits.mean())


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
