import math

import pytest
import torch
import torch.nn.functional as F

from trainables import losses
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


def info_nce_reference(z1, z2, t):
    """The textbook form on one (B, E) problem: cosine logits, cross-entropy both ways (autograd through it)."""
    z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
    logits = z1 @ z2.T / t
    target = torch.arange(len(z1))
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


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


# ---------------------------------------------------------------------------------------------
# info_nce on (K, B, E): K problems at once, one exp pass over the (K, B, B) logits


def _pair(k, b, e, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(k, b, e, generator=g, dtype=torch.float64)
    z2 = z1 + 0.7 * torch.randn(k, b, e, generator=g, dtype=torch.float64)  # correlated, like positive pairs
    return z1.to(dtype).requires_grad_(), z2.to(dtype).requires_grad_()


def _per_row_reference(z1, z2, temperature, weights):
    """info_nce row by row on copies of the inputs: values (K,) and the gradients of sum_k w_k loss_k."""
    a, b = z1.detach().clone().requires_grad_(), z2.detach().clone().requires_grad_()
    values = torch.stack([info_nce_reference(a[k], b[k], float(temperature[k])) for k in range(a.shape[0])])
    (weights * values).sum().backward()
    return values.detach(), a.grad, b.grad


def _assert_matches_info_nce(z1, z2, temperature, rtol):
    weights = torch.linspace(0.5, 1.5, z1.shape[0], dtype=z1.dtype)  # unequal grad_output per config
    values = info_nce(z1, z2, temperature)
    g1, g2 = torch.autograd.grad((weights * values).sum(), (z1, z2))
    ref, r1, r2 = _per_row_reference(z1, z2, temperature, weights)
    assert torch.isfinite(values).all() and torch.isfinite(g1).all() and torch.isfinite(g2).all()
    # a loss near 0 (B = 2, well-separated pairs) is a difference of logits ~1/t: compare it absolutely too
    torch.testing.assert_close(values, ref, rtol=rtol, atol=rtol)
    # elementwise relative error is meaningless for near-zero entries: scale by the largest entry
    torch.testing.assert_close(g1, r1, rtol=rtol, atol=rtol * float(r1.abs().max()))
    torch.testing.assert_close(g2, r2, rtol=rtol, atol=rtol * float(r2.abs().max()))


TEMPERATURE_SETS = [
    [0.05, 0.1, 0.3, 1.0],
    [0.05, 0.05, 0.05, 0.05],
    [1.0, 0.5, 0.2, 0.07],
    [0.01, 0.05, 0.2, 1.0],  # float32: 0.01 takes the stable log_softmax fallback, the rest the fast path
    [0.01, 0.01, 0.01, 0.01],  # float32: all on the fallback
]


@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("temperatures", TEMPERATURE_SETS)
@pytest.mark.parametrize("k,b,e", [(4, 2, 3), (4, 33, 8), (4, 128, 16)])
def test_info_nce_batched_matches_info_nce_row_by_row(k, b, e, temperatures, dtype, rtol):
    z1, z2 = _pair(k, b, e, dtype, seed=k * 1000 + b * 10 + e)
    _assert_matches_info_nce(z1, z2, torch.tensor(temperatures, dtype=dtype), rtol)


@pytest.mark.parametrize("k", [1, 3, 16])
def test_info_nce_batched_matches_info_nce_for_several_pack_sizes(k):
    z1, z2 = _pair(k, 40, 6, torch.float64, seed=k)
    _assert_matches_info_nce(z1, z2, torch.linspace(0.05, 1.0, k, dtype=torch.float64), 1e-10)


def test_info_nce_batched_float64_fallback_below_its_own_limit():
    # float64 exponentiates 1/t up to ~700 directly; t = 0.001 (1/t = 1000) must take the fallback
    z1, z2 = _pair(3, 20, 4, torch.float64, seed=7)
    assert 1 / 0.001 > losses._fast_path_limit(torch.float64, 20) > 1 / 0.01
    _assert_matches_info_nce(z1, z2, torch.tensor([0.001, 0.01, 0.5], dtype=torch.float64), 1e-10)


def test_info_nce_batched_fast_path_limit_for_float32():
    # exp(+-1/t) and 1/(B exp(1/t)) stay normal float32: t = 0.0125 still fast at B = 256, t = 0.01 is not
    limit = losses._fast_path_limit(torch.float32, 256)
    assert 1 / 0.0125 < limit < 1 / 0.01
    assert math.exp(-limit - math.log(256)) > torch.finfo(torch.float32).tiny


def test_info_nce_batched_at_the_edge_of_the_float32_fast_path():
    # t = 0.0125 is just inside the limit at B = 256; antipodal pairs put exp(-1/t) = exp(-80) on the diagonal
    z1, z2 = _pair(2, 256, 16, torch.float32, seed=14)
    with torch.no_grad():
        z2[:, :128] = -z1[:, :128]
    _assert_matches_info_nce(z1, z2, torch.tensor([0.0125, 0.5]), 1e-5)


@pytest.mark.parametrize("dtype,rel", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("batch", [2, 7, 256])
def test_info_nce_batched_of_constant_embeddings_is_log_batch(batch, dtype, rel):
    z = torch.ones(5, batch, 3, dtype=dtype)
    temperature = torch.tensor([0.01, 0.05, 0.1, 0.5, 1.0], dtype=dtype)
    values = info_nce(z, z, temperature)
    assert values.tolist() == pytest.approx([math.log(batch)] * 5, rel=rel)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_info_nce_batched_ignores_zero_padded_columns(dtype):
    z1, z2 = _pair(4, 50, 5, dtype, seed=3)
    temperature = torch.tensor([0.01, 0.05, 0.2, 1.0], dtype=dtype)
    values = info_nce(z1, z2, temperature)
    g1, g2 = torch.autograd.grad(values.sum(), (z1, z2))
    pad = torch.zeros(4, 50, 11, dtype=dtype)
    p1 = torch.cat([z1.detach(), pad], 2).requires_grad_()
    p2 = torch.cat([z2.detach(), pad], 2).requires_grad_()
    padded = info_nce(p1, p2, temperature)
    q1, q2 = torch.autograd.grad(padded.sum(), (p1, p2))
    tol = 1e-14 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(padded, values, rtol=tol, atol=0.0)
    torch.testing.assert_close(q1[..., :5], g1, rtol=tol, atol=tol * float(g1.abs().max()))
    torch.testing.assert_close(q2[..., :5], g2, rtol=tol, atol=tol * float(g2.abs().max()))
    assert (q1[..., 5:] == 0).all() and (q2[..., 5:] == 0).all()


def test_info_nce_batched_gradcheck():
    z1, z2 = _pair(3, 5, 4, torch.float64, seed=11)
    temperature = torch.tensor([0.07, 0.3, 1.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(info_nce, (z1, z2, temperature))


def test_info_nce_batched_gradcheck_mixed_fast_and_fallback(monkeypatch):
    # lower the limit so that t = 0.1 (1/t = 10) needs the fallback: the whole call takes the stable form
    monkeypatch.setattr(losses, "_fast_path_limit", lambda dtype, batch: 5.0)
    z1, z2 = _pair(3, 5, 4, torch.float64, seed=12)
    temperature = torch.tensor([0.1, 0.5, 0.1], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(info_nce, (z1, z2, temperature))
    _assert_matches_info_nce(z1, z2, temperature.detach(), 1e-10)


def test_info_nce_batched_temperature_gradient_matches_info_nce():
    z1, z2 = _pair(3, 16, 4, torch.float64, seed=13)
    temperature = torch.tensor([0.01, 0.1, 1.0], dtype=torch.float32).requires_grad_()
    z1, z2 = z1.detach().float(), z2.detach().float()
    (grad,) = torch.autograd.grad(info_nce(z1, z2, temperature).sum(), (temperature,))
    ref = []
    for k in range(3):
        t = temperature.detach()[k].clone().requires_grad_()
        (g,) = torch.autograd.grad(info_nce_reference(z1[k], z2[k], t), (t,))
        ref.append(g)
    torch.testing.assert_close(grad, torch.stack(ref), rtol=1e-5, atol=0.0)


@pytest.mark.parametrize("temperatures", [[0.05, 0.2, 1.0, 0.5], [0.01, 0.2, 0.01, 0.5]])
def test_info_nce_batched_configs_are_independent(temperatures):
    z1, z2 = _pair(4, 30, 6, torch.float32, seed=5)
    temperature = torch.tensor(temperatures)
    values = info_nce(z1, z2, temperature)
    g1, g2 = torch.autograd.grad(values.sum(), (z1, z2))
    # change everything of config 1: its embeddings (to something degenerate) and its temperature
    w1, w2 = z1.detach().clone(), z2.detach().clone()
    w1[1], w2[1], t = 100.0, -3.0 * w1[0], temperature.clone()
    t[1] = 0.013
    w1.requires_grad_(), w2.requires_grad_()
    other = info_nce(w1, w2, t)
    h1, h2 = torch.autograd.grad(other.sum(), (w1, w2))
    keep = [0, 2, 3]
    assert other[1] != values[1]
    assert torch.equal(other[keep], values[keep])
    assert torch.equal(h1[keep], g1[keep]) and torch.equal(h2[keep], g2[keep])


def test_info_nce_batched_broadcasts_a_scalar_temperature():
    z1, z2 = _pair(3, 9, 4, torch.float64, seed=6)
    torch.testing.assert_close(
        info_nce(z1, z2, 0.2), info_nce(z1, z2, torch.full((3,), 0.2, dtype=torch.float64))
    )


def test_info_nce_batched_rejects_non_positive_temperature():
    with pytest.raises(ValueError, match="temperature"):
        info_nce(torch.ones(2, 3, 2), torch.ones(2, 3, 2), torch.tensor([0.1, 0.0]))


def test_info_nce_batched_rejects_double_backward():
    z1, z2 = _pair(2, 6, 3, torch.float64, seed=8)
    loss = info_nce(z1, z2, torch.tensor([0.1, 0.5], dtype=torch.float64)).sum()
    with pytest.raises(RuntimeError, match="double backward"):
        torch.autograd.grad(loss, (z1,), create_graph=True)


def test_info_nce_batched_retained_graph_gives_the_same_gradient_twice():
    z1, z2 = _pair(2, 6, 3, torch.float64, seed=8)
    loss = info_nce(z1, z2, torch.tensor([0.1, 0.5], dtype=torch.float64)).sum()
    first = torch.autograd.grad(loss, (z1, z2), retain_graph=True)  # overwrites the saved exp matrix
    second = torch.autograd.grad(loss, (z1, z2))  # recomputes it
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("dtype,rtol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_info_nce_batched_on_cuda_matches_info_nce(dtype, rtol):
    z1, z2 = _pair(4, 64, 8, dtype, seed=9)
    z1, z2 = z1.detach().cuda().requires_grad_(), z2.detach().cuda().requires_grad_()
    temperature = torch.tensor([0.01, 0.05, 0.2, 1.0], dtype=dtype, device="cuda")
    weights = torch.linspace(0.5, 1.5, 4, dtype=dtype, device="cuda")
    values = info_nce(z1, z2, temperature)
    g1, g2 = torch.autograd.grad((weights * values).sum(), (z1, z2))
    ref, r1, r2 = _per_row_reference(z1, z2, temperature, weights)
    torch.testing.assert_close(values, ref, rtol=rtol, atol=0.0)
    torch.testing.assert_close(g1, r1, rtol=rtol, atol=rtol * float(r1.abs().max()))
    torch.testing.assert_close(g2, r2, rtol=rtol, atol=rtol * float(r2.abs().max()))
