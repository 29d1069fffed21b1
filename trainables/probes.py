"""Batched, torch-native probes: many small logistic and least-squares fits solved at once on one device.

A pack evaluates K configs, each with a cluster probe and 8 random-labelling probes: fitted one by
one with scikit-learn that is K x 9 serial fits on the host, each paying Python overhead for a
problem of a few thousand numbers. Here every fit of an evaluation is one row of a batch and the
solver's every step is a handful of batched matrix products, on the device the embeddings are on.

``logistic_probe`` minimises exactly scikit-learn's ``LogisticRegression(C=C)`` objective
(lbfgs, binomial for two classes, multinomial otherwise, intercept unpenalised)::

    sum_i CE(y_i, softmax(W z_i + b)) + 1/(2C) ||W||_F^2

by batched L-BFGS (Nocedal & Wright 2006, algorithm 7.4, two-loop recursion with a history of
10, backtracking Armijo line search), every problem with its own history, step and stopping test.
Binomial problems on up to ``NEWTON_MAX_FEATURES`` features (the random-labelling probes: K configs
x 8 labellings) are solved by batched Newton instead, one (F+1, F+1) Hessian per labelling, in a
few tens of iterations where L-BFGS needs hundreds on nearly separable labellings.
The objective is strictly convex, so both solvers reach the same optimum; the test accuracies agree
up to test points that lie within the solvers' tolerance of a decision boundary
(tests/trainables/test_probes.py compares them with scikit-learn on many problems).

``least_squares`` is ``sklearn.linear_model.LinearRegression`` (the minimum-norm solution, so an
exactly zero or collinear column gets coefficient 0, as with LAPACK's ``gelsd``), ``r2`` is
``sklearn.metrics.r2_score`` with ``multioutput="uniform_average"``.

Products over samples run in float32, every sum over samples and the solver's vectors in float64, on
the embeddings' device.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["NEWTON_MAX_FEATURES", "binary_probes", "logistic_probe", "least_squares", "r2"]

_HISTORY = 10
_ARMIJO = 1e-4
NEWTON_MAX_FEATURES = 64  # binomial probes on up to this many features: Newton, beyond: L-BFGS
_BACKTRACKS = 20  # step halvings before a problem counts as converged (2^-20: within round-off)


def _objective(theta: Tensor, z1: Tensor, target: Tensor, absent: Tensor | None, binary: bool,
               lam: float) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy plus ``lam/2 ||W||^2`` per problem (float64), and its gradient (float64).

    theta: (P, F+1, O) float64 (last row: intercepts); z1: (P, m, F+1) features with a ones column;
    target: (P, m, O) the 0/1 label (binomial) or one-hot labels (multinomial), in z1's dtype;
    absent: (P, 1, O) -1e30 for a class missing from the fit half, 0 otherwise, or None.
    The (P, m, O) products run in z1's dtype; sums over samples are accumulated in float64.
    """
    m = z1.shape[1]
    u = torch.bmm(z1, theta.to(z1.dtype))  # (P, m, O)
    if binary:
        terms = torch.nn.functional.softplus(u) - target * u
        gu = torch.sigmoid(u).sub_(target)
    else:
        u_y = (u * target).sum(2)  # (P, m) the true class's logit
        if absent is not None:
            u = u + absent  # exp() of an absent class's logit is exactly 0: it is never predicted
        top = u.amax(2, keepdim=True)
        e = (u - top).exp_()
        total = e.sum(2, keepdim=True)
        terms = (top + total.log())[:, :, 0] - u_y  # log-sum-exp minus the true logit
        gu = e.div_(total).sub_(target)  # softmax minus one-hot
    w = theta[:, :-1]
    loss = terms.double().sum(tuple(range(1, terms.dim()))) / m + 0.5 * lam * w.pow(2).sum((1, 2))
    grad = torch.bmm(z1.transpose(1, 2), gu).double() / m
    grad[:, :-1] += lam * w
    return loss, grad


def logistic_probe(
    z_fit: Tensor, y_fit: Tensor, z_test: Tensor, *, n_classes: int, c: float = 1.0, max_iter: int = 500,
    tol: float = 1e-5,
) -> Tensor:
    """Fit P independent L2 logistic regressions and predict: (P, m_test) long labels.

    ``z_fit``: (P, m, F), ``y_fit``: (P, m) long in ``[0, n_classes)``, ``z_test``: (P, m', F).
    As scikit-learn, per problem: a binomial fit (one weight vector) when ``y_fit`` holds two
    classes, a multinomial one over the classes it holds when more. A problem with fewer than two
    classes predicts its one class (callers report NaN). See ``_fit`` for the solver.
    """
    work = torch.float32
    present = torch.zeros(len(y_fit), n_classes, dtype=torch.bool, device=y_fit.device)
    present.scatter_(1, y_fit, True)
    count = present.sum(1)
    pred = y_fit[:, :1].expand(-1, z_test.shape[1]).clone()
    classes = torch.arange(n_classes, device=y_fit.device)
    two = count == 2
    if bool(two.any()):
        idx = two.nonzero()[:, 0]
        high = torch.where(present[idx], classes, -1).amax(1)  # the class scikit-learn calls 1
        low = torch.where(present[idx], classes, n_classes).amin(1)
        bit = binary_probes(z_fit[idx], (y_fit[idx] == high[:, None]).long()[:, :, None], z_test[idx], c=c,
                            max_iter=max_iter, tol=tol)
        pred[idx] = torch.where(bit[:, :, 0] == 1, high[:, None], low[:, None])
    more = count > 2
    if bool(more.any()):
        idx = more.nonzero()[:, 0]
        target = torch.nn.functional.one_hot(y_fit[idx], n_classes).to(work)
        free = None if bool(present[idx].all()) else present[idx]
        pred[idx] = _fit(z_fit[idx], target, z_test[idx], binary=False, free=free, c=c, max_iter=max_iter,
                         tol=tol).argmax(2)
    return pred


def binary_probes(z_fit: Tensor, bits_fit: Tensor, z_test: Tensor, *, c: float = 1.0, max_iter: int = 500,
                  tol: float = 1e-5) -> Tensor:
    """O binomial probes per problem on the same features: (P, m, F), (P, m, O) 0/1, (P, m', F) -> (P, m', O) 0/1.

    Each column is its own ``LogisticRegression(C=c)`` fit. Up to ``NEWTON_MAX_FEATURES`` features
    they are solved by batched Newton (``_newton_binary``: one (F+1, F+1) Hessian per column, a few
    tens of iterations), beyond by L-BFGS over all of a problem's columns at once (the objective
    is a sum over columns, so it reaches every column's optimum). A column with one class in
    ``bits_fit`` predicts that class (callers report NaN).
    """
    b = bits_fit.to(torch.float32)
    free = b.amax(1) > b.amin(1)  # (P, O) both classes present
    if z_fit.shape[2] <= NEWTON_MAX_FEATURES:
        u = _newton_binary(z_fit, b, z_test, free=free, c=c, max_iter=min(max_iter, 100), tol=tol)
    else:
        u = _fit(z_fit, b, z_test, binary=True, free=None if bool(free.all()) else free, c=c, max_iter=max_iter,
                 tol=tol)
    return torch.where(free[:, None, :], (u > 0).long(), bits_fit[:, :1, :].long())


def _newton_binary(z_fit: Tensor, target: Tensor, z_test: Tensor, *, free: Tensor, c: float, max_iter: int,
                   tol: float) -> Tensor:
    """Batched Newton with backtracking for P x O binomial problems; the fitted logits on ``z_test``: (P, m', O).

    Per column: gradient ``g = Z1^T (sigmoid(u) - y) / m + lam [w; 0]``, Hessian
    ``H = Z1^T diag(s) Z1 / m + lam diag(1, .., 1, 0)`` with ``s = p (1 - p)``, step ``-H^-1 g``
    (Cholesky, float64) and the same Armijo backtracking and stopping rules as ``_fit``. Columns
    in ``free`` only; the others keep zero weights.
    """
    work, dtype = torch.float32, torch.float64
    device = z_fit.device
    p, m, f = z_fit.shape
    o = target.shape[2]
    z1 = torch.cat([z_fit.to(work), torch.ones(p, m, 1, dtype=work, device=device)], 2)  # (P, m, F+1)
    lam = 1.0 / (c * m)
    penalty = torch.ones(f + 1, dtype=dtype, device=device)
    penalty[-1] = 0.0  # the intercept is not penalised

    def loss_of(theta: Tensor) -> tuple[Tensor, Tensor]:  # (P, F+1, O) -> loss (P, O), logits (P, m, O)
        u = torch.bmm(z1, theta.to(work))
        terms = torch.nn.functional.softplus(u) - target * u
        return terms.double().sum(1) / m + 0.5 * lam * (theta * penalty[:, None]).pow(2).sum(1), u

    theta = torch.zeros(p, f + 1, o, dtype=dtype, device=device)
    loss, u = loss_of(theta)
    active = free.clone()
    eye = torch.diag(penalty) * lam
    for _ in range(max_iter):
        prob = torch.sigmoid(u)
        grad = torch.bmm(z1.transpose(1, 2), prob - target).double() / m + lam * penalty[:, None] * theta
        active &= grad.abs().amax(1) > tol
        if not bool(active.any()):
            break
        weight = (prob * (1 - prob)).transpose(1, 2)  # (P, O, m)
        scaled = z1[:, None] * weight[..., None]  # (P, O, m, F+1)
        hess = (scaled.transpose(2, 3) @ z1[:, None]).double() / m + eye  # (P, O, F+1, F+1)
        chol, info = torch.linalg.cholesky_ex(hess)
        g = grad.transpose(1, 2)[..., None]  # (P, O, F+1, 1)
        newton = -torch.cholesky_solve(g, chol)[..., 0]  # (P, O, F+1)
        d = torch.where((info == 0)[..., None], newton, -g[..., 0])
        d = torch.where(active[..., None], d, 0.0).transpose(1, 2)  # (P, F+1, O)
        slope = (grad * d).sum(1)  # (P, O)
        step = torch.ones(p, o, dtype=dtype, device=device)
        for _ in range(_BACKTRACKS):
            theta_new = theta + step[:, None, :] * d
            loss_new, u_new = loss_of(theta_new)
            ok = (loss_new <= loss + _ARMIJO * step * slope) | ~active
            if bool(ok.all()):
                break
            step = torch.where(ok, step, 0.5 * step)
        stalled = ~ok  # no decrease within round-off: this column is at its optimum
        theta = torch.where(stalled[:, None, :], theta, theta_new)
        loss = torch.where(stalled, loss, loss_new)
        u = torch.where(stalled[:, None, :], u, u_new)
        active &= ~stalled
    ones = torch.ones(p, z_test.shape[1], 1, dtype=work, device=device)
    return torch.bmm(torch.cat([z_test.to(work), ones], 2), theta.to(work))


def _fit(z_fit: Tensor, target: Tensor, z_test: Tensor, *, binary: bool, free: Tensor | None, c: float,
         max_iter: int, tol: float) -> Tensor:
    """Batched L-BFGS on ``_objective``; returns the fitted logits on ``z_test``: (P, m', O).

    ``target``: (P, m, O) float32, binomial bits (``binary``: O independent sigmoid outputs) or
    one-hot classes (multinomial over O classes). ``free``: (P, O) the outputs to fit (the classes
    present in a multinomial problem; the binomial columns holding both classes) or None for all;
    the others keep zero weights (a multinomial's absent class is never predicted). L-BFGS stops a
    problem when the largest entry of its mean-loss gradient is below ``tol`` (scikit-learn's lbfgs
    stops at 1e-4), when its line search finds no decrease within round-off, or after ``max_iter``
    iterations. Products over samples run in float32 and every sum and solver vector in float64.
    """
    work, dtype = torch.float32, torch.float64
    device = z_fit.device
    p, m, f = z_fit.shape
    o = target.shape[2]
    z1 = torch.cat([z_fit.to(work), torch.ones(p, m, 1, dtype=work, device=device)], 2)  # (P, m, F+1)
    absent = None
    if free is not None and not binary:
        absent = torch.where(free, 0.0, -1e30).to(work)[:, None, :]
    lam = 1.0 / (c * m)  # the objective above divided by m
    shape = (p, f + 1, o)
    n = (f + 1) * o

    def fg(x: Tensor) -> tuple[Tensor, Tensor]:
        loss, grad = _objective(x.view(shape), z1, target, absent, binary, lam)
        if free is not None:
            grad = grad * free[:, None, :]
        return loss, grad.reshape(p, n)

    x = torch.zeros(p, n, dtype=dtype, device=device)
    loss, grad = fg(x)
    s_hist = torch.zeros(_HISTORY, p, n, dtype=dtype, device=device)
    y_hist = torch.zeros_like(s_hist)
    rho = torch.zeros(_HISTORY, p, dtype=dtype, device=device)  # 0 where a pair was skipped: it then adds nothing
    gamma = torch.ones(p, dtype=dtype, device=device)
    active = grad.abs().amax(1) > tol
    newest = -1
    for it in range(max_iter):
        if not bool(active.any()):
            break
        # two-loop recursion, newest pair first
        q = grad.clone()
        order = [(newest - j) % _HISTORY for j in range(min(it, _HISTORY))]
        alphas = []
        for i in order:
            a = rho[i] * (s_hist[i] * q).sum(1)
            q -= a[:, None] * y_hist[i]
            alphas.append(a)
        r = q * gamma[:, None]
        for i, a in zip(reversed(order), reversed(alphas), strict=True):
            b = rho[i] * (y_hist[i] * r).sum(1)
            r += s_hist[i] * (a - b)[:, None]
        d = torch.where(active[:, None], -r, 0.0)
        if it == 0:  # no curvature known yet: a first step of length at most 1
            d = d / grad.abs().sum(1).clamp(min=1.0)[:, None]
        slope = (grad * d).sum(1)
        step = torch.ones(p, dtype=dtype, device=device)
        for _ in range(_BACKTRACKS):  # converged problems have d = 0 and accept at once
            x_new = x + step[:, None] * d
            loss_new, grad_new = fg(x_new)
            ok = (loss_new <= loss + _ARMIJO * step * slope) | ~active
            if bool(ok.all()):
                break
            step = torch.where(ok, step, 0.5 * step)
        stalled = ~ok  # no decrease found: the optimum is within round-off, stop this problem where it is
        x_new = torch.where(stalled[:, None], x, x_new)
        loss_new = torch.where(stalled, loss, loss_new)
        grad_new = torch.where(stalled[:, None], grad, grad_new)
        s, yv = x_new - x, grad_new - grad
        sy = (s * yv).sum(1)
        keep = active & ~stalled & (sy > 1e-10 * yv.norm(dim=1) * s.norm(dim=1))
        newest = (newest + 1) % _HISTORY
        s_hist[newest] = torch.where(keep[:, None], s, 0.0)
        y_hist[newest] = torch.where(keep[:, None], yv, 0.0)
        rho[newest] = torch.where(keep, 1.0 / torch.where(keep, sy, 1.0), 0.0)
        gamma = torch.where(keep, sy / (yv * yv).sum(1).clamp(min=1e-300), gamma)
        x, loss, grad = x_new, loss_new, grad_new
        active &= (grad.abs().amax(1) > tol) & ~stalled
    theta = x.view(shape).to(work)
    ones = torch.ones(p, z_test.shape[1], 1, dtype=work, device=device)
    u = torch.bmm(torch.cat([z_test.to(work), ones], 2), theta)  # (P, m', O)
    return u if absent is None else u + absent


def least_squares(z_fit: Tensor, y_fit: Tensor, z_test: Tensor) -> Tensor:
    """Ordinary least squares with an intercept, fitted per problem, predicted on ``z_test``.

    ``z_fit``: (P, m, F), ``y_fit``: (P, m, k), ``z_test``: (P, m', F) -> (P, m', k). The minimum-norm
    solution (pseudo-inverse): a zero or duplicated column changes no prediction.
    """
    dtype = torch.float64
    z_fit, y_fit, z_test = z_fit.to(dtype), y_fit.to(dtype), z_test.to(dtype)
    z_mean, y_mean = z_fit.mean(1, keepdim=True), y_fit.mean(1, keepdim=True)
    coef = torch.linalg.pinv(z_fit - z_mean) @ (y_fit - y_mean)  # (P, F, k)
    return (z_test - z_mean) @ coef + y_mean


def r2(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """``r2_score(y_true, y_pred, multioutput="uniform_average")`` per problem: (P, m, k) -> (P,).

    As scikit-learn: an output that is constant on the test set scores 1 if predicted exactly, else 0.
    """
    y_true, y_pred = y_true.to(torch.float64), y_pred.to(torch.float64)
    residual = (y_true - y_pred).pow(2).sum(1)  # (P, k)
    total = (y_true - y_true.mean(1, keepdim=True)).pow(2).sum(1)
    score = torch.where(total > 0, 1 - residual / torch.where(total > 0, total, 1.0),
                        torch.where(residual == 0, 1.0, 0.0))
    return score.mean(1)
