"""The tests of `hybridbatch/train/checkpoints.py`."""

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time

import pandas as pd
import pytest
import torch
from conftest import REPO, TINY_MODEL

from hybridbatch.batches.text import build_batches
from hybridbatch.train.checkpoints import Checkpoints, RunState, checkpoint_dir
from hybridbatch.train.loop import (
    Trainer,
    TrainerSettings,
)

TRAINING = {"learning_rate": 2e-3, "weight_decay": 0.01, "temperature": 0.05, "symmetric": False,
            "warmup_fraction": 0.1, "freeze_embeddings": False, "seed": 0}  # fmt: skip


PLAN = {"alpha": 0.5, "batch_size": 8, "epochs": 2, "seed": 0, "mono_language_sampling": "uniform", "drop_last": True,
        "development_fraction": 0.2, "development_seed": 0}  # fmt: skip


def test_early_stopping_counts_validations_without_a_better_development_recall():
    """Patience counts development Recall@1, not the loss; the saved model is the last step."""
    state = RunState()
    for step, loss, recall in [(2, 3.0, 0.2), (4, 2.0, 0.5), (6, 1.5, 0.4), (8, 1.4, 0.5), (10, 1.3, 0.9)]:
        state.validated(step, loss, recall)
        if state.should_stop(patience=2):
            break
    assert step == 8 and state.best_step == 4  # lower losses and an equal recall are no improvement
    summary = state.finish(8, "test")
    assert summary["saved_step"] == 8 and summary["development_recall_at_1"] == 0.5
    assert summary["validation_loss"] == 1.4 and summary["best_development_step"] == 4


# ---- checkpoints and resume --------------------------------------------------------------
TRAIN = """
import json, logging, sys, time
from hybridbatch.train import loop as trainer
from hybridbatch.train import text as training
optimise = trainer.Trainer.optimise
def slowly(self, *args):
    time.sleep(0.1)  # time to kill it mid-way; the numbers are untouched
    return optimise(self, *args)
if sys.argv[1] == "slow":
    trainer.Trainer.optimise = slowly
logging.basicConfig(level=logging.INFO)
training.train(json.loads(sys.argv[2]), *sys.argv[3:])
"""


def train_command(params: dict, base, batches, out, slow: bool = False) -> list[str]:
    return [
        sys.executable,
        "-c",
        TRAIN,
        "slow" if slow else "fast",
        json.dumps(params),
        str(base),
        str(batches),
        str(out),
    ]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tensorboard_scalars(directory) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TensorBoard event files of `directory` (TFRecord framing: length,
    its CRC, an Event proto, its CRC), by tag, as (step, value) in file order."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list] = {}
    files = sorted(directory.glob("events.out.tfevents.*"))
    assert len(files) == 1, files
    data, offset = files[0].read_bytes(), 0
    while offset < len(data):
        (length,) = struct.unpack_from("<Q", data, offset)
        event = Event.FromString(data[offset + 12 : offset + 12 + length])
        offset += 12 + length + 4
        for value in event.summary.value:
            scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


def assert_series(scalars: list[tuple[int, float]], steps, values) -> None:
    assert [step for step, _ in scalars] == list(steps)
    assert [value for _, value in scalars] == pytest.approx(list(values), rel=1e-6)  # stored as float32


def deterministic_log(out) -> pd.DataFrame:
    return pd.read_csv(out / "training_log.csv").drop(columns="examples_per_second")  # a timing


@pytest.fixture(scope="module")
def batches_with_validation(pairs_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("batches") / "b"
    build_batches(PLAN, pairs_dir, out)
    return out


@pytest.mark.slow
def test_a_killed_run_resumes_bit_identical_skipping_a_corrupt_checkpoint(
    tiny_model_dir, batches_with_validation, tmp_path
):
    from hybridbatch.artifacts import manifest

    params = {"training": TRAINING, "model": TINY_MODEL, "trainer": {"device": "cpu", "checkpoint_every": 3,
              "keep_checkpoints": 2, "validation_every": 4, "gradient_clipping": 1.0, "tensorboard": True}}  # fmt: skip
    path = os.pathsep.join(filter(None, [str(REPO / "workflow"), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    subprocess.run(
        train_command(params, tiny_model_dir, batches_with_validation, tmp_path / "whole"),
        env=env,
        check=True,
        capture_output=True,
    )
    out = tmp_path / "killed"
    process = subprocess.Popen(
        train_command(params, tiny_model_dir, batches_with_validation, out, slow=True),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = checkpoint_dir(out)
    deadline = time.time() + 120
    while len(list(checkpoints.glob("step-*[0-9]"))) < 2 or len(pd.read_csv(out / "training_log.csv")) < 8:
        assert process.poll() is None and time.time() < deadline, "the run ended before it could be killed"
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not (out / "trained.safetensors").exists()
    newest, older = sorted(checkpoints.glob("step-*[0-9]"), reverse=True)
    data = bytearray((newest / "state.safetensors").read_bytes())
    data[-10] ^= 0xFF  # a flipped byte: the hash no longer matches
    (newest / "state.safetensors").write_bytes(data)

    resumed = subprocess.run(
        train_command(params, tiny_model_dir, batches_with_validation, out),
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    assert f"checkpoint {newest} skipped: state.safetensors does not match its hash" in resumed.stderr
    assert f"resuming from {older}" in resumed.stderr
    for name in ("trained.safetensors", "base.json"):
        assert sha256(out / name) == sha256(tmp_path / "whole" / name)
    pd.testing.assert_frame_equal(deterministic_log(out), deterministic_log(tmp_path / "whole"))
    assert (out / "validation_log.csv").read_text() == (tmp_path / "whole" / "validation_log.csv").read_text()
    scalars = tensorboard_scalars(out / "tensorboard")  # the killed run's events replaced by one complete file
    log, validation = deterministic_log(out), pd.read_csv(out / "validation_log.csv")
    assert_series(scalars.pop("validation/loss"), validation.steps_trained, validation.validation_loss)
    recall = scalars.pop("validation/development_recall_at_1")
    assert_series(recall, validation.steps_trained, validation.development_recall_at_1)
    assert set(scalars) == {
        f"train/{c}"
        for c in [
            "loss",
            "learning_rate",
            "gradient_norm",
            "masked_conflicts",
            "masked_duplicates",
            "examples_per_second",
        ]
    }
    for column in ["loss", "learning_rate", "gradient_norm"]:
        assert_series(scalars[f"train/{column}"], log.step + 1, log[column])
    assert not checkpoints.exists()  # cleared once the run completed
    summary = json.loads((out / "training.json").read_text())
    assert summary["validated"] and summary["saved_step"] == summary["steps"] == len(log)
    assert summary["development_recall_at_1"] == validation.development_recall_at_1.iloc[-1]
    assert manifest.describe_file(out / "training.json")


def test_checkpoints_of_another_configuration_are_not_resumed(tmp_path):
    root = tmp_path / ".checkpoints" / "run"
    weight = torch.nn.Parameter(torch.ones(3))
    trainer = Trainer(TrainerSettings(), {"w": weight}, [{"params": [weight], "lr": 0.1}], 0.0, 10, [], "cpu")
    Checkpoints(root, {"lr": 1}, keep=2).save(trainer, RunState(step=3))
    assert Checkpoints(root, {"lr": 1}, keep=2).resume(trainer).step == 3
    assert Checkpoints(root, {"lr": 2}, keep=2).resume(trainer).step == 0
    assert not root.exists()
