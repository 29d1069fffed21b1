"""Batched torch probes against scikit-learn, problem by problem, on planted data."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score

from tests.trainables.reference import standardise
from trainables.probes import binary_probes, least_squares, logistic_probe, r2


def blobs(p: int, m: int, f: int, classes: int, seed: int) -> tuple[np.ndarray, ...]:
    """P standardised classification problems of varying difficulty: (P, m, F) fit/test halves, (P, m) labels."""
    rng = np.random.default_rng(seed)
    zf, yf, zt, yt = [], [], [], []
    for _ in range(p):
        centres = rng.normal(size=(classes, f))
        y = rng.integers(0, classes, 2 * m)
        z = centres[y] + rng.uniform(0.2, 3.0) * rng.normal(size=(2 * m, f)) + rng.normal(size=f) * 5
        a, b = standardise(z[:m], z[m:])
        zf.append(a), zt.append(b), yf.append(y[:m]), yt.append(y[m:])
    return np.stack(zf), np.stack(yf), np.stack(zt), np.stack(yt)


def sklearn_predictions(zf: np.ndarray, yf: np.ndarray, zt: np.ndarray) -> np.ndarray:
    """scikit-learn's LogisticRegression(C=1) solved to 1e-10 (its default 1e-4 stops farther from the optimum)."""
    out = []
    for a, y, b in zip(zf, yf, zt, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            out.append(LogisticRegression(C=1.0, max_iter=10_000, tol=1e-10).fit(a, y).predict(b))
    return np.stack(out)


@pytest.mark.parametrize(("classes", "f"), [(2, 3), (2, 16), (2, 70), (4, 8), (16, 16), (12, 2)])  # 70: L-BFGS
def test_logistic_probe_predicts_as_sklearn(classes: int, f: int) -> None:
    """Binomial up to NEWTON_MAX_FEATURES features by Newton, beyond and multinomial by L-BFGS."""
    m = 512
    zf, yf, zt, yt = blobs(12, m, f, classes, seed=classes * 100 + f)
    pred = logistic_probe(torch.tensor(zf), torch.tensor(yf), torch.tensor(zt), n_classes=classes).numpy()
    ref = sklearn_predictions(zf, yf, zt)
    # the same strictly convex optimum, reached by two solvers to their tolerances: only test points
    # within that tolerance of a decision boundary may go either way (0 or 1 of 512 here)
    disagree = (pred != ref).mean(1)
    assert disagree.max() <= 2 / m
    acc, acc_ref = (pred == yt).mean(1), (ref == yt).mean(1)
    np.testing.assert_allclose(acc, acc_ref, atol=3 / m)
    assert acc.min() > 1.0 / classes  # the problems carry signal: the test above is not vacuous


def test_binary_probes_are_independent_binomial_fits() -> None:
    """O labellings of the same features at once equal O separate fits; a one-class column predicts its class."""
    zf, _, zt, _ = blobs(3, 400, 6, 6, seed=11)
    rng = np.random.default_rng(1)
    bits = (zf[:, :, :3] + rng.normal(size=(3, 400, 3)) > 0).astype(np.int64)  # (P, m, O = 3)
    bits[2, :, 1] = 1
    pred = binary_probes(torch.tensor(zf), torch.tensor(bits), torch.tensor(zt)).numpy()
    for o in range(3):
        alone = logistic_probe(torch.tensor(zf), torch.tensor(bits[:, :, o]), torch.tensor(zt), n_classes=2).numpy()
        assert (alone != pred[:, :, o]).mean() <= 1 / 400
        ref = sklearn_predictions(zf[:2], bits[:2, :, o], zt[:2])
        assert (ref != pred[:2, :, o]).mean(1).max() <= 2 / 400
    assert (pred[2, :, 1] == 1).all()


def test_logistic_probe_separable_data_is_perfect_and_bounded() -> None:
    # separable classes: the L2 penalty keeps the optimum finite, every test point is right
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, (4, 400))
    z = np.eye(3)[y] * 10 + 0.01 * rng.normal(size=(4, 400, 3))
    pred = logistic_probe(torch.tensor(z[:, :200]), torch.tensor(y[:, :200]), torch.tensor(z[:, 200:]), n_classes=3)
    assert (pred.numpy() == y[:, 200:]).all()


def test_logistic_probe_per_problem_class_sets() -> None:
    """Problems of one batch with 3+, exactly 2 (binomial, as sklearn) and 1 class present, each solved as alone."""
    zf, yf, zt, _ = blobs(3, 400, 4, 4, seed=7)
    yf[1] = np.where(yf[1] % 2 == 0, 1, 3)  # classes {1, 3}: sklearn fits a binomial
    yf[2] = 2  # one class: predicted everywhere
    pred = logistic_probe(torch.tensor(zf), torch.tensor(yf), torch.tensor(zt), n_classes=4).numpy()
    ref = sklearn_predictions(zf[:2], yf[:2], zt[:2])
    assert (pred[:2] != ref).mean(1).max() <= 3 / 400
    assert set(np.unique(pred[1])) <= {1, 3}
    assert (pred[2] == 2).all()
    for i in range(2):  # alone gives the same predictions as inside the batch
        alone = logistic_probe(torch.tensor(zf[i : i + 1]), torch.tensor(yf[i : i + 1]), torch.tensor(zt[i : i + 1]),
                               n_classes=4).numpy()[0]
        assert (alone != pred[i]).mean() <= 1 / 400


def test_logistic_probe_ignores_zero_columns() -> None:
    """Zero feature columns (padding of a narrower embedding) get zero weight and change no prediction."""
    zf, yf, zt, _ = blobs(4, 300, 3, 5, seed=3)
    pad = lambda a: np.concatenate([a, np.zeros((*a.shape[:2], 5))], 2)  # noqa: E731
    base = logistic_probe(torch.tensor(zf), torch.tensor(yf), torch.tensor(zt), n_classes=5)
    padded = logistic_probe(torch.tensor(pad(zf)), torch.tensor(yf), torch.tensor(pad(zt)), n_classes=5)
    assert (base != padded).double().mean() <= 1 / 300


def test_least_squares_and_r2_match_sklearn() -> None:
    rng = np.random.default_rng(0)
    p, m, f, k = 5, 300, 6, 3
    z = rng.normal(size=(p, 2 * m, f))
    z[1, :, 4] = 0.0  # a zero column (padding)
    z[2, :, 5] = 2.0 * z[2, :, 0]  # a collinear column
    y = z @ rng.normal(size=(p, f, k)) + rng.normal(size=(p, 2 * m, k)) + 3.0
    y[3, m:, 1] = 7.0  # an output constant on the test half
    pred = least_squares(torch.tensor(z[:, :m]), torch.tensor(y[:, :m]), torch.tensor(z[:, m:])).numpy()
    for i in range(p):
        ref = LinearRegression().fit(z[i, :m], y[i, :m]).predict(z[i, m:])
        np.testing.assert_allclose(pred[i], ref, rtol=1e-8, atol=1e-8)
    scores = r2(torch.tensor(y[:, m:]), torch.tensor(pred)).numpy()
    np.testing.assert_allclose(scores, [r2_score(y[i, m:], pred[i]) for i in range(p)], rtol=1e-10, atol=1e-12)
    exact = r2(torch.tensor(y[3:4, m:]), torch.tensor(y[3:4, m:])).item()
    assert exact == 1.0 == r2_score(y[3, m:], y[3, m:])
