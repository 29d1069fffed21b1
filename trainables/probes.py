"""Batched, torch-native probes: many small logistic and least-squares fits solved at once on one device.

A pack's K configs each have a cluster probe and 8 random-labelling probes: every fit is one row of a batch, every
solver step a few batched matrix products on the embeddings' device (float32 products over samples, float64 sums
over samples and solver vectors).

``logistic_probe`` minimises exactly scikit-learn's ``LogisticRegression(C=C)`` objective (lbfgs; binomial for two
classes, multinomial otherwise; intercept unpenalised), ``sum_i CE(y_i, softmax(W z_i + b)) + 1/(2C) ||W||_F^2``,
by batched L-BFGS (Nocedal & Wright 2006, algorithm 7.4: two-loop recursion, backtracking Armijo line search),
each problem with its own history, step and stopping test. Binomial problems on up to ``NEWTON_MAX_FEATURES``
features (the random-labelling probes) take batched Newton instead, one (F+1, F+1) Hessian per labelling: a few
tens of iterations where L-BFGS needs hundreds on nearly separable labellings. Both stop a problem when the largest
entry of its mean-loss gradient is below ``tol`` (scikit-learn's lbfgs: 1e-4), when the line search finds no
decrease within round-off, or after ``max_iter`` iterations. The objective is strictly convex, so both reach the
same optimum: test accuracies agree with scikit-learn's up to test points within the solvers' tolerance of a
decision boundary (tests/trainables/test_probes.py). ``least_squares`` is ``sklearn.linear_model.LinearRegression``,
``r2`` is ``sklearn.metrics.r2_score``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["NEWTON_MAX_FEATURES", "binary_probes", "logistic_probe", "least_squares", "r2"]

_HISTORY, _ARMIJO = 10, 1e-4  # L-BFGS: (s, y) pairs kept; Armijo's sufficient-decrease constant
NEWTON_MAX_FEATURES = 64  # binomial probes on up to this many features: Newton, beyond: L-BFGS
_BACKTRACKS = 20  # step halvings before a problem counts as converged (2^-20: within round-off)
_WORK, _DTYPE = torch.float32, torch.float64  # products over samples; sums and solver vectors


def logistic_probe(z_fit: Tensor, y_fit: Tensor, z_test: Tensor, *, n_classes: int, c: float = 1.0,
                   max_iter: int = 500, tol: float = 1e-5) -> Tensor:
    """Fit P independent L2 logistic regressions and predict: (P, m_test) long labels.

    ``z_fit``: (P, m, F), ``y_fit``: (P, m) long in ``[0, n_classes)``, ``z_test``: (P, m', F). As scikit-learn,
    per problem: a binomial fit (one weight vector) when ``y_fit`` holds two classes, a multinomial one over the
    classes it holds when more. A problem with fewer than two classes predicts its one class (callers report NaN).
    """
    present = torch.zeros(len(y_fit), n_classes, dtype=torch.bool, device=y_fit.device).scatter_(1, y_fit, True)
    count = present.sum(1)
    pred = y_fit[:, :1].expand(-1, z_test.shape[1]).clone()
    idx = (count == 2).nonzero()[:, 0]
    if idx.numel():
        classes = torch.arange(n_classes, device=y_fit.device)
        high = torch.where(present[idx], classes, -1).amax(1)  # the class scikit-learn calls 1
        low = torch.where(present[idx], classes, n_classes).amin(1)
        bit = binary_probes(z_fit[idx], (y_fit[idx] == high[:, None]).long()[:, :, None], z_test[idx], c=c,
                            max_iter=max_iter, tol=tol)
        pred[idx] = torch.where(bit[:, :, 0] == 1, high[:, None], low[:, None])
    idx = (count > 2).nonzero()[:, 0]
    if idx.numel():
        target = torch.nn.functional.one_hot(y_fit[idx], n_classes).to(_WORK)
        pred[idx] = _fit(z_fit[idx], target, z_test[idx], binary=False, free=present[idx], c=c, max_iter=max_iter,
                         tol=tol).argmax(2)
    return pred


def binary_probes(z_fit: Tensor, bits_fit: Tensor, z_test: Tensor, *, c: float = 1.0, max_iter: int = 500,
                  tol: float = 1e-5) -> Tensor:
    """O binomial probes per problem on the same features: (P, m, F), (P, m, O) 0/1, (P, m', F) -> (P, m', O) 0/1.

    Each column is its own ``LogisticRegression(C=c)`` fit: Newton's at most 100 iterations, or one L-BFGS over
    all of a problem's columns (their objectives' sum, whose optimum is every column's). A column with one class
    in ``bits_fit`` predicts that class (callers report NaN).
    """
    b = bits_fit.to(_WORK)
    free = b.amax(1) > b.amin(1)  # (P, O) both classes present
    if z_fit.shape[2] <= NEWTON_MAX_FEATURES:
        u = _newton_binary(z_fit, b, z_test, free=free, c=c, max_iter=min(max_iter, 100), tol=tol)
    else:
        u = _fit(z_fit, b, z_test, binary=True, free=free, c=c, max_iter=max_iter, tol=tol)
    return torch.where(free[:, None, :], (u > 0).long(), bits_fit[:, :1, :].long())


def _with_ones(z: Tensor) -> Tensor:
    """``[z, 1]`` in float32: (P, m, F) -> (P, m, F+1), the last column multiplying the intercepts."""
    return torch.cat([z.to(_WORK), torch.ones(*z.shape[:2], 1, dtype=_WORK, device=z.device)], 2)


def _line_search(f: Callable[[Tensor], tuple[Tensor, Tensor]], x: Tensor, d: Tensor, loss: Tensor, other: Tensor,
                 slope: Tensor, active: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Armijo backtracking along ``d`` from step 1 (at most ``_BACKTRACKS`` halvings), problem by problem.
    ``f(x) -> (loss, other)``; ``x``, ``d``, ``other`` have a dimension 1 more than ``loss``, ``slope``, ``active``.
    Returns the new ``x``, ``loss``, ``other`` and ``stalled``: the problems where no step decreased the loss
    (their optimum is within round-off), which keep their old values."""
    step = torch.ones_like(loss)
    for _ in range(_BACKTRACKS):
        x_new = x + step.unsqueeze(1) * d
        loss_new, other_new = f(x_new)
        ok = (loss_new <= loss + _ARMIJO * step * slope) | ~active
        if bool(ok.all()):
            break
        step = torch.where(ok, step, 0.5 * step)
    old = ~ok.unsqueeze(1)
    return torch.where(old, x, x_new), torch.where(ok, loss_new, loss), torch.where(old, other, other_new), ~ok


def _newton_binary(z_fit: Tensor, target: Tensor, z_test: Tensor, *, free: Tensor, c: float, max_iter: int,
                   tol: float) -> Tensor:
    """Batched Newton for P x O binomial problems (the columns in ``free``; the others keep zero weights); the
    fitted logits on ``z_test``: (P, m', O). Per column: gradient ``g = Z1^T (sigmoid(u) - y) / m + lam [w; 0]``,
    Hessian ``H = Z1^T diag(s) Z1 / m + lam diag(1, .., 1, 0)`` with ``s = p (1 - p)``, step ``-H^-1 g``
    (Cholesky, float64; ``-g`` where that fails), then ``_line_search``."""
    p, m, f = z_fit.shape
    z1 = _with_ones(z_fit)  # (P, m, F+1)
    lam = 1.0 / (c * m)
    penalty = (torch.arange(f + 1, device=z_fit.device) < f).to(_DTYPE)  # 1, .., 1, 0: intercept unpenalised

    def loss_of(theta: Tensor) -> tuple[Tensor, Tensor]:  # (P, F+1, O) -> loss (P, O), logits (P, m, O)
        u = torch.bmm(z1, theta.to(_WORK))
        terms = torch.nn.functional.softplus(u) - target * u
        return terms.double().sum(1) / m + 0.5 * lam * (theta * penalty[:, None]).pow(2).sum(1), u

    theta = torch.zeros(p, f + 1, target.shape[2], dtype=_DTYPE, device=z_fit.device)
    loss, u = loss_of(theta)
    active = free.clone()
    eye = torch.diag(penalty) * lam
    for _ in range(max_iter):
        prob = torch.sigmoid(u)
        grad = torch.bmm(z1.transpose(1, 2), prob - target).double() / m + lam * penalty[:, None] * theta
        active &= grad.abs().amax(1) > tol
        if not bool(active.any()):
            break
        scaled = z1[:, None] * (prob * (1 - prob)).transpose(1, 2)[..., None]  # (P, O, m, F+1): s times Z1
        hess = (scaled.transpose(2, 3) @ z1[:, None]).double() / m + eye  # (P, O, F+1, F+1)
        chol, info = torch.linalg.cholesky_ex(hess)
        g = grad.transpose(1, 2)[..., None]  # (P, O, F+1, 1)
        d = torch.where((info == 0)[..., None], -torch.cholesky_solve(g, chol)[..., 0], -g[..., 0])
        d = torch.where(active[..., None], d, 0.0).transpose(1, 2)  # (P, F+1, O)
        theta, loss, u, stalled = _line_search(loss_of, theta, d, loss, u, (grad * d).sum(1), active)
        active &= ~stalled
    return torch.bmm(_with_ones(z_test), theta.to(_WORK))


def _fit(z_fit: Tensor, target: Tensor, z_test: Tensor, *, binary: bool, free: Tensor, c: float, max_iter: int,
         tol: float) -> Tensor:
    """Batched L-BFGS on the mean loss ``+ lam/2 ||W||^2``; the fitted logits on ``z_test``: (P, m', O).
    ``target``: (P, m, O) float32, binomial bits (``binary``: O independent sigmoid outputs) or one-hot classes
    (multinomial over O classes). ``free``: (P, O) the outputs to fit (the classes present in a multinomial
    problem; the binomial columns holding both classes); the others keep zero weights (a multinomial's absent
    class is never predicted)."""
    p, m, f = z_fit.shape
    free = None if bool(free.all()) else free  # None: fit every output
    z1 = _with_ones(z_fit)  # (P, m, F+1)
    # -1e30 on an absent class's logit: its exp() is exactly 0, it is never predicted
    absent = None if free is None or binary else torch.where(free, 0.0, -1e30).to(_WORK)[:, None, :]
    lam = 1.0 / (c * m)  # scikit-learn's objective divided by m
    shape, n = (p, f + 1, target.shape[2]), (f + 1) * target.shape[2]

    def fg(x: Tensor) -> tuple[Tensor, Tensor]:  # (P, n) -> loss (P,), gradient (P, n), in float64
        theta = x.view(shape)  # last row: intercepts
        u = torch.bmm(z1, theta.to(_WORK))  # (P, m, O)
        if binary:
            terms = torch.nn.functional.softplus(u) - target * u
            gu = torch.sigmoid(u).sub_(target)
        else:
            u_y = (u * target).sum(2)  # (P, m) the true class's logit
            if absent is not None:
                u = u + absent
            top = u.amax(2, keepdim=True)
            e = (u - top).exp_()
            total = e.sum(2, keepdim=True)
            terms = (top + total.log())[:, :, 0] - u_y  # log-sum-exp minus the true logit
            gu = e.div_(total).sub_(target)  # softmax minus one-hot
        w = theta[:, :-1]
        loss = terms.double().sum(tuple(range(1, terms.dim()))) / m + 0.5 * lam * w.pow(2).sum((1, 2))
        grad = torch.bmm(z1.transpose(1, 2), gu).double() / m
        grad[:, :-1] += lam * w
        if free is not None:
            grad = grad * free[:, None, :]
        return loss, grad.reshape(p, n)

    x = torch.zeros(p, n, dtype=_DTYPE, device=z_fit.device)
    loss, grad = fg(x)
    s_hist, y_hist = x.new_zeros(_HISTORY, p, n), x.new_zeros(_HISTORY, p, n)
    rho = x.new_zeros(_HISTORY, p)  # 0 where a pair was skipped: it then adds nothing
    gamma = x.new_ones(p)
    active = grad.abs().amax(1) > tol
    newest = -1
    for it in range(max_iter):
        if not bool(active.any()):
            break
        # two-loop recursion, newest pair first
        q, alphas = grad.clone(), []
        order = [(newest - j) % _HISTORY for j in range(min(it, _HISTORY))]
        for i in order:
            alphas.append(rho[i] * (s_hist[i] * q).sum(1))
            q -= alphas[-1][:, None] * y_hist[i]
        r = q * gamma[:, None]
        for i, a in zip(reversed(order), reversed(alphas), strict=True):
            r += s_hist[i] * (a - rho[i] * (y_hist[i] * r).sum(1))[:, None]
        d = torch.where(active[:, None], -r, 0.0)
        if it == 0:  # no curvature known yet: a first step of length at most 1
            d = d / grad.abs().sum(1).clamp(min=1.0)[:, None]
        x_new, loss_new, grad_new, stalled = _line_search(fg, x, d, loss, grad, (grad * d).sum(1), active)
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
    u = torch.bmm(_with_ones(z_test), x.view(shape).to(_WORK))  # (P, m', O)
    return u if absent is None else u + absent


def least_squares(z_fit: Tensor, y_fit: Tensor, z_test: Tensor) -> Tensor:
    """Ordinary least squares with an intercept per problem, predicted on ``z_test``: ``z_fit`` (P, m, F), ``y_fit``
    (P, m, k), ``z_test`` (P, m', F) -> (P, m', k). The minimum-norm solution (pseudo-inverse; LAPACK's ``gelsd``
    in scikit-learn): a zero or duplicated column changes no prediction."""
    z_fit, y_fit, z_test = z_fit.to(_DTYPE), y_fit.to(_DTYPE), z_test.to(_DTYPE)
    z_mean, y_mean = z_fit.mean(1, keepdim=True), y_fit.mean(1, keepdim=True)
    coef = torch.linalg.pinv(z_fit - z_mean) @ (y_fit - y_mean)  # (P, F, k)
    return (z_test - z_mean) @ coef + y_mean


def r2(y_true: Tensor, y_pred: Tensor) -> Tensor:
    """``r2_score(y_true, y_pred, multioutput="uniform_average")`` per problem: (P, m, k) -> (P,). As scikit-learn:
    an output that is constant on the test set scores 1 if predicted exactly, else 0."""
    y_true, y_pred = y_true.to(_DTYPE), y_pred.to(_DTYPE)
    residual = (y_true - y_pred).pow(2).sum(1)  # (P, k)
    total = (y_true - y_true.mean(1, keepdim=True)).pow(2).sum(1)
    score = torch.where(total > 0, 1 - residual / torch.where(total > 0, total, 1.0), (residual == 0).to(_DTYPE))
    return score.mean(1)
