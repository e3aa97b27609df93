"""The tests of `hybridbatch/train/loop.py`."""

import subprocess
import sys
from functools import partial

import numpy as np
import pytest
import torch
from conftest import TINY_MODEL
from training_helpers import PLAN, TRAINING

from hybridbatch.batches.text import build_batches
from hybridbatch.models.encoders import TRAINED, Encoder
from hybridbatch.train import text as training
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


def test_nan_loss_stops_training_naming_the_batch(pairs_dir, tiny_model_dir, tmp_path, monkeypatch):
    build_batches({**PLAN, "epochs": 1}, pairs_dir, tmp_path / "batches")
    monkeypatch.setattr(training, "info_nce", lambda *args, **kwargs: torch.tensor(float("nan"), requires_grad=True))
    with pytest.raises(FloatingPointError, match=r"batches: batch 0 \(step 0\): loss is nan"):
        training.train(
            {"training": TRAINING, "model": TINY_MODEL}, tiny_model_dir, tmp_path / "batches", tmp_path / "m"
        )
    assert not (tmp_path / "m" / TRAINED).exists()
