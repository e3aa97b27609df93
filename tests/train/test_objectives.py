"""The tests of `hybridbatch/train/objectives.py`."""

import pytest
import torch

from hybridbatch.train.objectives import OBJECTIVES, sigmoid, symmetric_info_nce


def test_sigmoid_loss_and_its_gradient_equal_a_direct_implementation_with_masked_pairs():
    generator = torch.Generator().manual_seed(0)
    texts = torch.nn.functional.normalize(torch.randn(5, 8, generator=generator, dtype=torch.float64), dim=-1)
    targets = torch.nn.functional.normalize(torch.randn(5, 8, generator=generator, dtype=torch.float64), dim=-1)
    bias = torch.tensor(-3.0, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(5, 5, dtype=torch.bool)
    mask[1, 3] = mask[4, 0] = True

    def direct(t, c, b):
        total = 0
        for i in range(5):
            for j in range(5):
                if not mask[i, j]:
                    z = (t[i] @ c[j]) / 0.1 + b
                    total = total - torch.log(torch.sigmoid(z if i == j else -z))
        return total / 5

    t, c = texts.clone().requires_grad_(), targets.clone().requires_grad_()
    ours = sigmoid(t, c, mask, 0.1, bias)
    assert ours.item() == pytest.approx(direct(texts, targets, bias).item(), rel=1e-12)
    assert torch.autograd.gradcheck(lambda t_, c_, b_: sigmoid(t_, c_, mask, 0.1, b_), (t, c, bias))
    assert sigmoid(texts, targets, torch.zeros_like(mask), 0.1, bias).item() != pytest.approx(ours.item())


def test_symmetric_info_nce_and_its_gradient_equal_a_direct_implementation():
    generator = torch.Generator().manual_seed(0)
    texts = torch.nn.functional.normalize(torch.randn(6, 5, generator=generator, dtype=torch.float64), dim=-1)
    images = torch.nn.functional.normalize(torch.randn(6, 5, generator=generator, dtype=torch.float64), dim=-1)
    mask = torch.zeros(6, 6, dtype=torch.bool)

    def direct(t, i):
        logits = t @ i.T / 0.07
        text_to_image = -torch.diagonal(logits - torch.logsumexp(logits, dim=1, keepdim=True)).mean()
        image_to_text = -torch.diagonal(logits - torch.logsumexp(logits, dim=0, keepdim=True)).mean()
        return (text_to_image + image_to_text) / 2

    ours_t, ours_i = texts.clone().requires_grad_(), images.clone().requires_grad_()
    theirs_t, theirs_i = texts.clone().requires_grad_(), images.clone().requires_grad_()
    ours, theirs = symmetric_info_nce(ours_t, ours_i, mask, 0.07), direct(theirs_t, theirs_i)
    ours.backward()
    theirs.backward()
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-12)
    torch.testing.assert_close(ours_t.grad, theirs_t.grad, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours_i.grad, theirs_i.grad, rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda t, i: symmetric_info_nce(t, i, mask, 0.07),
        (ours_t.detach().requires_grad_(), ours_i.detach().requires_grad_()),
    )
    assert OBJECTIVES.lookup("symmetric-info-nce", "lit.objective") is symmetric_info_nce
    mask[1, 3] = mask[4, 0] = True  # never a negative, in either direction
    masked = texts @ images.T / 0.07
    masked = masked.masked_fill(mask, float("-inf"))
    expected = (
        torch.nn.functional.cross_entropy(masked, torch.arange(6))
        + torch.nn.functional.cross_entropy(masked.T, torch.arange(6))
    ) / 2
    assert symmetric_info_nce(texts, images, mask, 0.07).item() == pytest.approx(expected.item(), abs=1e-12)
    assert symmetric_info_nce(texts, images, mask, 0.07).item() != pytest.approx(ours.item(), abs=1e-6)
    one_way = OBJECTIVES.lookup("info-nce", "lit")(
        texts, images, mask, 0.07
    )  # caption-caption batches: text to target only
    direct_one_way = -torch.diagonal(masked - torch.logsumexp(masked, dim=1, keepdim=True)).mean()
    assert one_way.item() == pytest.approx(direct_one_way.item(), abs=1e-12)
