"""The shared training loop: GradCache gradients, checkpoints and bit-identical resume
after SIGKILL, corrupt checkpoints, early stopping, weight decay groups, CUDA paths."""

import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import time
from functools import partial

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import REPO, TINY_MODEL

from hybridbatch.batches.text import build_batches
from hybridbatch.models.encoders import Encoder
from hybridbatch.train.checkpoints import Checkpoints, RunState, checkpoint_dir
from hybridbatch.train.loop import (
    AdamW,
    Side,
    Step,
    Trainer,
    TrainerSettings,
    linear_schedule_with_warmup,
    parameter_groups,
)
from hybridbatch.train.masks import Relevance
from hybridbatch.train.objectives import info_nce, sigmoid, symmetric_info_nce

TRAINING = {"learning_rate": 2e-3, "weight_decay": 0.01, "temperature": 0.05, "symmetric": False,
            "warmup_fraction": 0.1, "freeze_embeddings": False, "seed": 0}  # fmt: skip
PLAN = {"alpha": 0.5, "batch_size": 8, "epochs": 2, "seed": 0, "mono_language_sampling": "uniform", "drop_last": True,
        "development_fraction": 0.2, "development_seed": 0}  # fmt: skip
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def tiny_trainer(model_dir, device: str, **settings) -> tuple[Encoder, Trainer]:
    torch.manual_seed(0)
    encoder = Encoder(model_dir, TINY_MODEL, device=device)
    encoder.model.eval()  # no dropout: cached and uncached passes see the same network
    named = dict(encoder.model.named_parameters())
    trainer = Trainer(
        TrainerSettings(**settings),
        named,
        parameter_groups(named, lambda _: 1e-3, 0.01),
        0.0,
        10,
        [encoder.model],
        device,
    )
    return encoder, trainer


def text_step(encoder: Encoder, n: int) -> Step:
    queries = [f"question {i} about {'ab' * (i % 5)}" for i in range(n)]
    candidates = [f"answer {i} in {'xyz ' * (i % 7)}" for i in range(2 * n)]  # positives, then hard negatives
    mask = torch.zeros(n, 2 * n, dtype=torch.bool)
    mask[0, n + 1] = True
    return Step(
        [Side(partial(encoder.embed, kind="query"), queries), Side(partial(encoder.embed, kind="passage"), candidates)],
        lambda e: info_nce(e[0], e[1], mask, 0.05),
        n,
    )


def image_text_step(encoder: Encoder, n: int) -> Step:
    projection = torch.nn.Linear(12, encoder.model.get_embedding_dimension()).to(encoder.device)
    features = torch.randn(n, 12, generator=torch.Generator().manual_seed(1)).to(encoder.device)
    embed_images = lambda rows: torch.nn.functional.normalize(projection(features[rows]), dim=-1)  # noqa: E731
    captions = [f"caption {i} {'word ' * (i % 4)}" for i in range(n)]
    return Step(
        [Side(partial(encoder.embed, kind="query"), captions), Side(embed_images, list(range(n)))],
        lambda e: symmetric_info_nce(e[0], e[1], torch.zeros(n, n, dtype=torch.bool), 0.07),
        n,
    )


def sigmoid_step(encoder: Encoder, n: int) -> Step:
    """SigLIP's loss (with a bias) over the image-text step's embeddings, one pair masked."""
    step = image_text_step(encoder, n)
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[2, 3] = True
    return Step(step.sides, lambda e: sigmoid(e[0], e[1], mask, 0.1, torch.tensor(-2.0)), n)


def gradients(trainer: Trainer, step: Step) -> tuple[float, dict[str, torch.Tensor]]:
    loss = trainer.backward(step, "test")
    grads = {name: p.grad.detach().clone() for name, p in trainer.named.items() if p.grad is not None}
    trainer.optimizer.zero_grad(set_to_none=True)
    return loss.item(), grads


@pytest.mark.parametrize("make_step", [text_step, image_text_step, sigmoid_step])
def test_gradcache_gives_the_gradients_of_the_whole_batch(tiny_model_dir, make_step):
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        encoder, whole = tiny_trainer(tiny_model_dir, device, precision="fp32")
        step = make_step(encoder, 12)
        expected_loss, expected = gradients(whole, step)
        cached = Trainer(
            TrainerSettings(mini_batch=5, precision="fp32"),
            whole.named,
            whole.optimizer.param_groups,
            0.0,
            10,
            whole.modules,
            device,
        )
        loss, found = gradients(cached, step)
        assert loss == pytest.approx(expected_loss, abs=1e-5)
        assert found.keys() == expected.keys() and len(found) > 4
        for name in expected:
            assert torch.allclose(found[name], expected[name], atol=1e-5, rtol=1e-4), name


def test_gradcache_replays_dropout_exactly(tiny_model_dir):
    """With dropout on, GradCache's second pass must draw the masks of its first: its
    gradients equal those of the same chunks embedded with gradients in one pass under
    the same seed (the reference draws the masks in the same order)."""
    encoder, trainer = tiny_trainer(tiny_model_dir, "cpu", mini_batch=5, precision="fp32")
    encoder.model.train()
    assert any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in encoder.model.modules())
    step = text_step(encoder, 12)
    torch.manual_seed(7)
    embeddings = [
        torch.cat([side.embed(side.inputs[start : start + 5]) for start in range(0, len(side.inputs), 5)])
        for side in step.sides
    ]
    step.loss(embeddings).backward()
    expected = {name: p.grad.detach().clone() for name, p in trainer.named.items() if p.grad is not None}
    trainer.optimizer.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    _, found = gradients(trainer, step)
    assert found.keys() == expected.keys() and len(found) > 4
    for name in expected:
        assert torch.allclose(found[name], expected[name], atol=1e-5, rtol=1e-4), name
    torch.manual_seed(8)  # other masks: other gradients, so the test can tell
    _, other = gradients(trainer, step)
    assert max((other[name] - expected[name]).abs().max() for name in expected) > 1e-3


def test_weight_decay_only_on_matrices(tiny_model_dir):
    encoder = Encoder(tiny_model_dir, TINY_MODEL, device="cpu")
    named = dict(encoder.model.named_parameters())
    groups = parameter_groups(named, lambda name: 0.1 if "pooler" in name else 0.2, 0.01)
    decay = {id(p) for group in groups if group["weight_decay"] for p in group["params"]}
    for name, parameter in named.items():
        assert (id(parameter) in decay) == (parameter.ndim == 2), name  # biases and LayerNorm never decay
    assert sum(len(group["params"]) for group in groups) == len(named)


def test_adamw_is_torch_adamw_bit_for_bit_and_imports_no_dynamo():
    def trained(optimizer_class) -> tuple[list[torch.Tensor], dict]:
        torch.manual_seed(0)
        parameters = [torch.nn.Parameter(torch.randn(5, 4)), torch.nn.Parameter(torch.randn(4))]
        optimizer = optimizer_class(
            [{"params": parameters[:1], "lr": 1e-2, "weight_decay": 0.1}, {"params": parameters[1:], "lr": 3e-2}],
            fused=True,
        )
        schedule = linear_schedule_with_warmup(optimizer, 2, 6)
        for _ in range(6):
            for parameter in parameters:
                parameter.grad = torch.randn_like(parameter)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
        return parameters, optimizer.state_dict()

    ours, our_state = trained(AdamW)
    reference, reference_state = trained(torch.optim.AdamW)
    assert all(torch.equal(a, b) for a, b in zip(ours, reference))
    assert our_state["param_groups"] == reference_state["param_groups"]
    for index, state in reference_state["state"].items():
        assert all(torch.equal(our_state["state"][index][key], value) for key, value in state.items())

    fresh_process = (
        "import sys, torch\n"
        "from hybridbatch.train.loop import AdamW\n"
        "parameter = torch.nn.Parameter(torch.zeros(3))\n"
        "optimizer = AdamW([parameter], fused=True)\n"
        "parameter.grad = torch.ones(3)\n"
        "optimizer.step(); optimizer.zero_grad(); optimizer.load_state_dict(optimizer.state_dict())\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    imported = subprocess.run([sys.executable, "-c", fresh_process], capture_output=True, text=True, check=True)
    assert imported.stdout.strip() == "False"  # 1 s of every training job's start-up


@pytest.mark.parametrize(("warmup", "total"), [(0, 1), (0, 7), (3, 30), (6, 64), (30, 30)])
def test_the_learning_rate_schedule_is_transformers_linear_warmup_and_decay(warmup, total):
    from transformers import get_linear_schedule_with_warmup

    def rates(schedule_of) -> list[float]:
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.3)
        schedule = schedule_of(optimizer, warmup, total)
        seen = []
        for _ in range(total + 2):
            seen.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
        return seen

    assert rates(linear_schedule_with_warmup) == rates(get_linear_schedule_with_warmup)


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


def test_development_recall_pools_the_validation_batches():
    """Queries against every validation batch's candidates, each id once: a hit when the top
    candidate (ties to the earlier) is the query's own or relevant by the qrels."""
    from hybridbatch.train.loop import development_recall_at_1

    e = torch.eye(3)
    queries = [e[[0, 1]], e[[2, 0]]]
    # batch 1: q1 -> a (own), q2 -> b (own); batch 2: q3 -> c (own), q4 -> a (own, a repeated)
    candidates = [e[[0, 1]], e[[2, 0]]]
    ids = [(["q1", "q2"], ["a", "b"]), (["q3", "q4"], ["c", "a"])]
    assert development_recall_at_1(queries, candidates, ids, None) == 1.0
    # q1 ties a and b: a (earlier) is its own; q2 and q3 find c, q4 finds c (q2 own: b, q4 own: a)
    queries = [torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0]])]
    assert development_recall_at_1(queries, candidates, ids, None) == 0.5  # q1 and q3
    relevance = Relevance.from_pairs([("q2", "c")])  # the qrels make c relevant to q2 too
    assert development_recall_at_1(queries, candidates, ids, relevance) == 0.75
    assert np.isnan(development_recall_at_1(queries, candidates, [None, None], None))


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


@needs_cuda
@pytest.mark.parametrize("precision", ["auto", "bf16", "fp16"])
def test_cuda_training_with_autocast_gradcache_and_clipping(tiny_model_dir, precision):
    encoder, trainer = tiny_trainer(tiny_model_dir, "cuda", precision=precision, mini_batch=4, gradient_clipping=0.5)
    assert trainer.dtype in (torch.bfloat16, torch.float16)
    assert trainer.scaler.is_enabled() == (trainer.dtype == torch.float16)
    before = {name: p.detach().clone() for name, p in trainer.named.items()}
    for _ in range(3):
        loss, norm = trainer.optimise(text_step(encoder, 10), "cuda test")
        assert torch.isfinite(torch.tensor([loss, norm])).all()
    assert any(not torch.equal(before[name], p) for name, p in trainer.named.items())
    assert all(p.device.type == "cuda" for p in trainer.named.values())
