import math

import pytest
import torch

from trainables.losses import LOSSES, info_nce, spectral


def info_nce_loop(z1, z2, t):
    """InfoNCE straight from the definition: for each anchor, -log of its positive's softmax weight."""
    b = z1.shape[0]
    n1 = [v / v.norm() for v in z1]
    n2 = [v / v.norm() for v in z2]
    total = 0.0
    for i in range(b):
        # anchor from view 1 against candidates of view 2, and the reverse
        for a, c in ((n1, n2), (n2, n1)):
            scores = [float(a[i] @ c[j]) / t for j in range(b)]
            total += -(scores[i] - math.log(sum(math.exp(s) for s in scores)))
    return total / (2 * b)


def spectral_loop(z1, z2):
    b = z1.shape[0]
    positive = sum(float(z1[i] @ z2[i]) for i in range(b)) * (-2.0 / b)
    negative = sum(float(z1[i] @ z2[j]) ** 2 for i in range(b) for j in range(b) if i != j) / (b * (b - 1))
    return positive + negative


@pytest.mark.parametrize("batch", [2, 7, 64])
def test_info_nce_of_identical_constant_embeddings_is_log_batch(batch):
    z = torch.ones(batch, 5)
    assert float(info_nce(z, z, temperature=0.3)) == pytest.approx(math.log(batch), rel=1e-6)


@pytest.mark.parametrize("temperature", [0.05, 0.5, 2.0])
def test_info_nce_matches_the_loop(temperature):
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randn(9, 4, generator=g, dtype=torch.float64)
    assert float(info_nce(z1, z2, temperature)) == pytest.approx(info_nce_loop(z1, z2, temperature), rel=1e-9)


def test_spectral_matches_the_double_loop():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(11, 3, generator=g, dtype=torch.float64), torch.randn(11, 3, generator=g, dtype=torch.float64)
    assert float(spectral(z1, z2)) == pytest.approx(spectral_loop(z1, z2), rel=1e-9)


def test_spectral_closed_form_on_orthonormal_pairs():
    # z1 = z2 = rows of the identity: positives give -2, every off-diagonal product is 0.
    z = torch.eye(6)
    assert float(spectral(z, z)) == pytest.approx(-2.0)


def test_info_nce_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.ones(3, 2), torch.ones(3, 2), temperature=0.0)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_falls_under_a_few_optimiser_steps(name):
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    x_pos = x + 0.05 * torch.randn(64, 8)
    model = torch.nn.Linear(8, 4)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = LOSSES[name](model(x), model(x_pos))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.1


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_is_a_scalar_with_gradients(name):
    z1 = torch.randn(8, 3, requires_grad=True)
    loss = LOSSES[name](z1, torch.randn(8, 3))
    loss.backward()
    assert loss.shape == () and z1.grad is not None and torch.isfinite(z1.grad).all()
