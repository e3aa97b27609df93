"""benchmarks/gpu_check.py (`make gpu-check`) on the CPU: every path runs and is compared, a
difference out of tolerance fails the check, and without CUDA it says so and exits 0."""

import importlib.util
import sys

import numpy as np
import torch
from conftest import REPO


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_every_cuda_path_runs_and_is_compared_with_the_cpu(tiny_model_dir, monkeypatch):
    """Everything but the device: the CPU against itself agrees; a product off by 1e-3 on the
    checked device is reported out of tolerance."""
    check = gpu_check()
    checks = check.run_checks(tiny_model_dir, "cpu", "fp32")
    assert [c.path for c in checks] == [
        "packed encoder, fp32",
        "packed encoder, fp32 autocast",
        "LiT step loss, GradCache, fp32",
        "LiT step gradients, GradCache, fp32 (relative)",
        "evaluation products",
        "image tower features",
    ]
    assert all(c.passed for c in checks), check.table(checks, "cpu")
    product = check.score_product
    monkeypatch.setattr(check, "score_product", lambda device: product(device) + (1e-3 if device else 0))
    checks = check.run_checks(tiny_model_dir, "cpu", "fp32")
    assert [c.path for c in checks if not c.passed] == ["evaluation products"]
    assert "| evaluation products | 1.00e-03 | 1e-04 | OUT OF TOLERANCE |" in check.table(checks, "cpu")


def test_without_cuda_it_says_so_and_exits_0(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check().main([]) == 0
    assert "no CUDA device" in capsys.readouterr().out


def test_differences_are_absolute_and_elementwise():
    check = gpu_check()
    assert check.largest_difference(np.array([1.0, -2.0]), np.array([1.0, -2.5])) == 0.5
    assert not check.Check("x", 0.2, 0.1).passed and check.Check("x", 0.1, 0.1).passed
