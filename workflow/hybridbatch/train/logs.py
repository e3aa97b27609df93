"""The training log of a run: training_log.csv row by row (and TensorBoard event files
when asked), validation_log.csv, and the plot of both curves."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np


class TrainingLog:
    """training_log.csv, appended and flushed after every step; with `tensorboard`, the same
    numbers (and the validations: loss, development Recall@1) as TensorBoard scalars in out_dir/tensorboard/, at
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
        for steps_trained, loss, recall in validation:
            self.validated(steps_trained, loss, recall)

    def append(self, row: list) -> None:
        self.rows.append(row)
        self.writer.writerow(row)
        self.file.flush()
        if self.events is not None:
            for column, value in zip(self.columns[self.SCALARS_FROM :], row[self.SCALARS_FROM :]):
                self.events.add_scalar(f"train/{column}", value, row[0] + 1)

    def validated(self, steps_trained: int, loss: float, recall: float) -> None:
        if self.events is not None:
            self.events.add_scalar("validation/loss", loss, steps_trained)
            self.events.add_scalar("validation/development_recall_at_1", recall, steps_trained)

    def close(self) -> None:
        self.file.close()
        if self.events is not None:
            self.events.close()


def plot_curves(log: list[list], validation: list[list], saved_step: int, path: Path) -> None:
    """Training loss per step (and its running mean over 10), validation loss, development
    Recall@1 (right axis), the saved step."""
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
        steps_validated, validation_loss, recall = zip(*validation)
        axis.plot(steps_validated, validation_loss, marker="o", label="validation loss")
        right = axis.twinx()
        right.plot(steps_validated, recall, marker="s", color="tab:green", label="development Recall@1")
        right.set_ylabel("development Recall@1")
        right.legend(fontsize=8, loc="center right")
    axis.axvline(saved_step, color="k", linestyle=":", label=f"saved (step {saved_step})")
    axis.set_xlabel("steps trained")
    axis.set_ylabel("loss")
    axis.legend(fontsize=8, loc="upper left")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
