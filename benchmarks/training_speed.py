"""Training speed: the project's trainer against sentence-transformers' trainer on the same
model, batches, max length, frozen word embeddings and optimiser settings, in one run.

    .venv/bin/python benchmarks/training_speed.py [--model DIR] [--batches DIR] [--steps 12] [--mini-batch N]

Defaults read the default run's outputs (`make run` first): e5-small zero-shot and the
X-X-mono batches of cldr-locales. The first `--steps` batches whose every row has a hard
negative (fewer where the batches have fewer: the default run's have 11) are trained by
- sentence-transformers' SentenceTransformerTrainer with MultipleNegativesRankingLoss
  (CachedMultipleNegativesRankingLoss with `--mini-batch`), columns (anchor, positive,
  negative), a sequential batch sampler so its batches are these batches;
- the project's `training.train` (GradCache with `--mini-batch`), packed forward;
- the same with the padded forward (sentence-transformers' own module call).
Timed: the optimisation steps only. sentence-transformers' steps are timed from the
trainer's on_step_begin to on_step_end (tokenisation happens before, in its collator);
ours from the step's start to its end, tokenisation included. Prints seconds per step
and the ratio to sentence-transformers (> 1: faster)."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "workflow"))

import pandas as pd  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from hybridbatch.batches.sampling import RELEVANCE  # noqa: E402
from hybridbatch.models.encoders import Encoder  # noqa: E402
from hybridbatch.train import text as training

MODEL = {"pooling": "mean", "query_prefix": "query: ", "passage_prefix": "passage: ", "max_length": 128}
TRAINING = {"learning_rate": 5e-5, "weight_decay": 0.01, "temperature": 0.05, "symmetric": False,
            "warmup_fraction": 0.1, "freeze_embeddings": True, "seed": 0}  # fmt: skip


def complete_batches(batch_dir: Path, steps: int) -> pd.DataFrame:
    """The first `steps` batches in which every query has a hard negative, in order (all
    there are when fewer, at least 2: the first step is not timed alike)."""
    rows = pd.concat(pq.read_table(p).to_pandas() for p in sorted(batch_dir.glob("shard-*.parquet")))
    complete = rows.groupby("batch_id").negative.apply(lambda n: n.notna().all())
    chosen = complete[complete].index[:steps]
    if len(chosen) < 2:
        raise SystemExit(f"{batch_dir}: only {len(chosen)} batches have a hard negative in every row")
    if len(chosen) < steps:
        print(f"{batch_dir}: {len(chosen)} batches have a hard negative in every row; timing {len(chosen)} steps")
    return rows[rows.batch_id.isin(chosen)]


def ours(
    model_dir: Path, rows: pd.DataFrame, batch_dir: Path, mini_batch: int | None, packed: bool, work: Path
) -> list[float]:
    """Seconds of each optimisation step of training.train on these batches."""
    batches = work / "batches"
    shutil.rmtree(batches, ignore_errors=True)
    batches.mkdir(parents=True)
    rows.to_parquet(batches / "shard-0000.parquet", index=False)
    shutil.copy(batch_dir / RELEVANCE, batches / RELEVANCE)
    (batches / "stats.json").write_text(json.dumps({"batches": int(rows.batch_id.nunique())}))
    trainer = {"device": "cpu", "precision": "fp32", "mini_batch": mini_batch, "gradient_clipping": 1.0,
               "checkpoint_every": None, "keep_checkpoints": 1, "validation_every": None, "patience": None,
               "init_seed": None}  # fmt: skip
    original = training.Encoder
    training.Encoder = partial(Encoder, packed=packed)
    try:
        out = work / f"ours-{packed}"
        training.train({"training": TRAINING, "trainer": trainer, "model": MODEL}, model_dir, batches, out)
    finally:
        training.Encoder = original
    log = pd.read_csv(out / "training_log.csv")
    steps = rows.groupby("batch_id", sort=False).size().to_numpy()
    return list(steps / log.examples_per_second.to_numpy())


def sentence_transformers(model_dir: Path, rows: pd.DataFrame, mini_batch: int | None, work: Path) -> list[float]:
    """Seconds of each optimisation step of SentenceTransformerTrainer on the same batches."""
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import DefaultBatchSampler
    from sentence_transformers.sentence_transformer.losses import (
        CachedMultipleNegativesRankingLoss,
        MultipleNegativesRankingLoss,
    )
    from torch.utils.data import SequentialSampler
    from transformers import TrainerCallback

    torch.manual_seed(0)
    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    model.max_seq_length = MODEL["max_length"]
    model[0].auto_model.get_input_embeddings().weight.requires_grad_(False)
    q, p = MODEL["query_prefix"], MODEL["passage_prefix"]
    data = Dataset.from_dict(
        {
            "anchor": [q + t for t in rows["query"]],
            "positive": [p + t for t in rows["positive"]],
            "negative": [p + t for t in rows["negative"]],
        }
    )
    scale = 1 / TRAINING["temperature"]
    loss = (
        CachedMultipleNegativesRankingLoss(model, scale=scale, mini_batch_size=mini_batch)
        if mini_batch
        else MultipleNegativesRankingLoss(model, scale=scale)
    )
    sizes = rows.groupby("batch_id").size()
    if sizes.nunique() != 1:
        raise SystemExit(
            f"batches of several sizes ({sorted(set(sizes))}): sentence-transformers' batches would not be ours"
        )
    batch_size = int(sizes.iloc[0])

    class StepTimer(TrainerCallback):
        seconds: list[float] = []

        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds.append(time.perf_counter() - self.started)

    arguments = SentenceTransformerTrainingArguments(
        output_dir=str(work / "st"),
        per_device_train_batch_size=batch_size,
        max_steps=int(rows.batch_id.nunique()),
        learning_rate=TRAINING["learning_rate"],
        weight_decay=TRAINING["weight_decay"],
        warmup_ratio=TRAINING["warmup_fraction"],
        lr_scheduler_type="linear",
        max_grad_norm=1.0,
        dataloader_drop_last=True,
        save_strategy="no",
        report_to="none",
        logging_steps=10_000,
        use_cpu=True,
        seed=0,
        batch_sampler=lambda dataset, batch_size, drop_last, **_: DefaultBatchSampler(
            SequentialSampler(dataset), batch_size=batch_size, drop_last=drop_last
        ),
    )
    timer = StepTimer()
    SentenceTransformerTrainer(model=model, args=arguments, train_dataset=data, loss=loss, callbacks=[timer]).train()
    return timer.seconds


TRAINERS = {
    "sentence-transformers": lambda a, rows, work: sentence_transformers(a.model, rows, a.mini_batch, work),
    "hybridbatch (packed)": lambda a, rows, work: ours(a.model, rows, a.batches, a.mini_batch, True, work),
    "hybridbatch (padded)": lambda a, rows, work: ours(a.model, rows, a.batches, a.mini_batch, False, work),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=Path("results/models/multilingual-e5-small/zero-shot"))
    parser.add_argument("--batches", type=Path, default=Path("results/batches/cldr-locales/X-X-mono/s0"))
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--mini-batch", type=int, default=None, help="GradCache / CachedMNRL mini-batch size")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", choices=list(TRAINERS), help=argparse.SUPPRESS)  # one trainer, in this process
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = complete_batches(args.batches, args.steps)
    if args.only:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(TRAINERS[args.only](args, rows, Path(tmp))))
        return
    results = {}
    for name in TRAINERS:  # each in a fresh process: no allocator or thread state carried over
        run = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--only", name], capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(f"{name} failed:\n{run.stderr[-3000:]}")
        results[name] = json.loads(run.stdout.strip().splitlines()[-1])
    reference = sum(results["sentence-transformers"])
    batches = rows.batch_id.nunique()
    print(
        f"{batches} batches of {len(rows) // batches} (query, positive, hard negative), "
        f"{args.threads} threads, mini-batch {args.mini_batch or 'none'}, model {args.model}"
    )
    print(f"{'trainer':24} {'s/step':>8} {'total s':>8} {'speed vs ST':>12}")
    for name, seconds in results.items():
        print(f"{name:24} {sum(seconds) / len(seconds):8.2f} {sum(seconds):8.1f} {reference / sum(seconds):11.2f}x")


if __name__ == "__main__":
    main()
