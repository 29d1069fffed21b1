"""Each claim's verdict rule on planted trial tables: it says holds, fails or inconclusive as written."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from analysis.claims import (
    CLAIMS,
    judge_content_style,
    judge_fisher,
    judge_inductive_bias,
    judge_inversion,
    judge_minimal_clusters,
    judge_nested,
    judge_noise_ceiling,
    seed_spread,
)
from analysis.planted import make_volume_trials


def _table(rows):
    df = pd.DataFrame(rows)
    df["status"] = "TERMINATED"
    df["diverged"] = 0
    df["trial_id"] = [f"t{i}" for i in range(len(df))]
    df["n_params"] = np.where(df.get("encoder", pd.Series(["mlp"] * len(df))) == "linear", 10, 100)
    return df


def _hypercube(linear_level=0.8, mlp_shift=0, never=False):
    rows = []
    for s, e, seed in itertools.product([2, 3], [2, 4, 8, 16, 32, 64], [0, 1]):
        rows.append(dict(encoder="linear", n_invariant=s, embedding_dim=e, seed=seed, randlabel_acc=linear_level))
        crit = 2 ** (s + mlp_shift)
        acc = 0.7 if never else (0.99 if e >= crit else 0.8)
        rows.append(dict(encoder="mlp", width=64, depth=2, n_invariant=s, embedding_dim=e, seed=seed,
                         randlabel_acc=acc))
    return _table(rows)


def test_minimal_clusters_rule():
    assert judge_minimal_clusters(_hypercube()).verdict == "holds"
    assert judge_minimal_clusters(_hypercube(linear_level=0.97)).verdict == "fails"
    assert judge_minimal_clusters(_hypercube(mlp_shift=3)).verdict == "fails"  # 8x too late
    assert judge_minimal_clusters(_hypercube(never=True)).verdict == "inconclusive"
    figures = judge_minimal_clusters(_hypercube()).figures
    assert figures["mlp_critical_dim"] == {"2": 4.0, "3": 8.0}


def _classes(acc_at, final_loss, noise=0.001):
    """Three classes x 3 seeds; each trial's history falls linearly from eval_loss 4 to its class's final loss
    over 5 reports, and its probe_acc at a loss L is ``acc_at[class](L)`` (+ a seed offset of ``noise``)."""
    rows, history = [], []
    for i, ((encoder, wd), seed) in enumerate(itertools.product([("linear", 0.0), ("mlp", 0.0), ("mlp", 0.5)],
                                                                  [0, 1, 2])):
        key = encoder + ("+wd" if wd else "")
        losses = np.linspace(4.0, final_loss[key], 5)
        accs = [acc_at[key](loss) + noise * (seed - 1) for loss in losses]
        rows.append(dict(encoder=encoder, width=None if encoder == "linear" else 64, depth=2, weight_decay=wd,
                         seed=seed, probe_acc=accs[-1], eval_loss=losses[-1]))
        history += [dict(trial_id=f"t{i}", step=100 * (j + 1), eval_loss=loss, probe_acc=acc)
                    for j, (loss, acc) in enumerate(zip(losses, accs, strict=True))]
    return _table(rows), pd.DataFrame(history)


def test_inductive_bias_rule_compares_classes_at_matched_loss():
    finals = {"linear": 3.0, "mlp": 2.5, "mlp+wd": 2.8}  # L* = 3.0: the linear class's lowest loss
    # at L* = 3 the MLPs transfer worse than the linear class, though they end with a lower loss
    trials, history = _classes({"linear": lambda l: 0.99, "mlp": lambda l: 0.85, "mlp+wd": lambda l: 0.9}, finals)
    verdict = judge_inductive_bias(trials, history)
    assert verdict.verdict == "holds"
    assert verdict.figures["matched_eval_loss"] == 3.0
    assert verdict.figures["probe_acc_at_matched_loss"] == {"linear": 0.99, "mlp": 0.85, "mlp+wd": 0.9}
    # every class has the same accuracy at the same loss (and different ones at their own final losses): fails
    alike = {k: (lambda l: 0.5 + 0.1 * (4.0 - l)) for k in finals}
    assert judge_inductive_bias(*_classes(alike, finals, noise=0.0)).verdict == "fails"
    # a spread of 0.03 against seed noise of 0.02: inconclusive
    close = {"linear": lambda l: 0.90, "mlp": lambda l: 0.93, "mlp+wd": lambda l: 0.92}
    assert judge_inductive_bias(*_classes(close, finals, noise=0.02)).verdict == "inconclusive"
    with pytest.raises(ValueError, match="history"):
        judge_inductive_bias(trials)


def _gmm(infonce=0.97, pca_end=0.0):
    rows = []
    for n, a, seed in itertools.product([1.0, 2.0, 8.0], [0.0, 0.5], [0, 1]):
        rows.append(dict(nuisance_std=n, aug_noise=a, seed=seed, subspace_overlap=infonce - 0.1 * a,
                         pca_overlap=1.0 if n < 8 else pca_end, encoder="linear"))
    return _table(rows)


def test_fisher_rule():
    assert judge_fisher(_gmm()).verdict == "holds"
    assert judge_fisher(_gmm(infonce=0.3)).verdict == "fails"
    assert judge_fisher(_gmm(pca_end=0.9)).verdict == "inconclusive"
    clean_only = _gmm()[lambda t: t["aug_noise"] == 0.0]  # the rest holds, but the noise half is untested
    verdict = judge_fisher(clean_only)
    assert verdict.verdict == "inconclusive" and "untested" in verdict.measured


def _sphere(mlp=0.97, linear=0.6, small=0.5):
    rows = []
    for (encoder, width), kappa, seed in itertools.product([("linear", None), ("mlp", 64)], [0.5, 10.0], [0, 1]):
        r2 = (small if kappa == 0.5 else mlp) if encoder == "mlp" else linear
        rows.append(dict(encoder=encoder, width=width, depth=3, kappa=kappa, seed=seed, r2_linear=r2))
    return _table(rows)


def test_inversion_rule():
    assert judge_inversion(_sphere()).verdict == "holds"
    assert judge_inversion(_sphere(mlp=0.6)).verdict == "fails"
    assert judge_inversion(_sphere(small=0.95)).verdict == "inconclusive"


def _content(content=0.9, style_start=0.8, style_end=0.2):
    rows = []
    noises = [0.1, 1.0, 3.0]
    for a, seed in itertools.product(noises, [0, 1]):
        frac = noises.index(a) / (len(noises) - 1)
        rows.append(dict(encoder="mlp", width=64, depth=2, aug_noise=a, seed=seed, content_r2=content,
                         style_r2=style_start + frac * (style_end - style_start)))
    return _table(rows)


def _content_oracle(style_r2=0.75):
    from analysis.baselines import Baselines

    frame = pd.DataFrame({"baseline": ["content", "input"], "kind": ["oracle", "input"], "seed": [0, 0],
                          "content_r2": [1.0, 0.85], "style_r2": [style_r2, 0.9]})
    return Baselines(frame, ["seed"], ["content_r2", "style_r2"])


def test_content_style_rule_compares_style_with_what_the_content_block_itself_predicts():
    oracle = _content_oracle(0.75)
    flat = dict(style_start=0.76, style_end=0.74)  # at the content block's own style R^2: style discarded
    assert judge_content_style(_content(**flat), baselines=oracle).verdict == "holds"
    assert judge_content_style(_content(content=0.3, **flat), baselines=oracle).verdict == "fails"
    assert judge_content_style(_content(style_start=0.95, style_end=0.95), baselines=oracle).verdict == "fails"
    assert judge_content_style(_content(style_start=0.76, style_end=0.83), baselines=oracle).verdict == "inconclusive"
    assert judge_content_style(_content(content=0.7, **flat), baselines=oracle).verdict == "inconclusive"
    # a falling style R^2 from above the oracle's still has style kept at the small aug_noise
    assert judge_content_style(_content(style_start=0.95, style_end=0.75), baselines=oracle).verdict == "inconclusive"
    verdict = judge_content_style(_content(**flat))  # no baselines: what content predicts of style is unknown
    assert verdict.verdict == "inconclusive" and "no content-oracle baseline" in verdict.measured
    assert judge_content_style(_content(**flat), baselines=oracle).figures["content_oracle_style_r2"] == 0.75


def _nested(shift=1):
    rows = []
    for r, e, seed in itertools.product([4, 8], [1, 2, 4, 8, 16, 32], [0, 1]):
        rows.append(dict(encoder="mlp", width=32, depth=1, n_groups=r, n_sub=4, embedding_dim=e, seed=seed,
                         randlabel_acc=0.99 if e >= r * shift else 0.7, sub_randlabel_acc=0.6))
    return _table(rows)


def test_nested_rule():
    assert judge_nested(_nested()).verdict == "holds"
    assert judge_nested(_nested(shift=4)).verdict == "fails"
    assert judge_nested(_nested(shift=100)).verdict == "inconclusive"


NOISE_GRID = (0.0, 0.2, 0.3, 0.4, 0.6, 0.8)  # phase_volume's aug_noise; the theory's critical noise is 0.537


def _volume(slopes, linear_top=0.85, n_seeds=2, z_values=NOISE_GRID, random_state=0):
    """A hypercube volume (s = 3): each MLP's ceiling of randlabel_acc falls linearly with aug_noise from 1 by
    ``slope``, so it reaches 0.95 up to aug_noise 0.05 / slope; the linear encoder's stays at ``linear_top``."""
    rows = {"linear": (4.0, linear_top, 0.0)} | {f"mlp-{w}x2": (4.0, 1.0, slope) for w, slope in slopes.items()}
    return make_volume_trials(rows, z_values=z_values, y_values=(2, 4, 8, 16, 32, 64), n_seeds=n_seeds,
                              noise=0.003, random_state=random_state)


def test_noise_ceiling_rule():
    at_ceiling = _volume({32: 0.1, 64: 0.09, 128: 0.1})  # critical noise 0.5..0.56: inside [0.4, 0.6)
    verdict = judge_noise_ceiling(at_ceiling)
    assert verdict.verdict == "holds", verdict.measured
    assert verdict.figures["theory_critical_noise"] == pytest.approx(0.537, abs=0.002)
    assert verdict.figures["interval"]["mlp-32x2"] == [0.4, 0.6]
    assert verdict.figures["censored"]["linear"] == "below"
    assert judge_noise_ceiling(_volume({32: 0.1, 64: 0.2, 128: 0.1})).verdict == "fails"  # 64 stops at 0.25
    assert judge_noise_ceiling(_volume({32: 0.1, 64: 0.05, 128: 0.1})).verdict == "fails"  # beyond the ceiling
    assert judge_noise_ceiling(_volume({32: 0.1, 64: 0.1, 128: 0.1}, linear_top=0.97)).verdict == "fails"
    assert judge_noise_ceiling(_volume({32: 0.1, 64: 0.1}, n_seeds=1)).verdict == "inconclusive"
    short = _volume({32: 0.02, 64: 0.02}, z_values=(0.0, 0.2, 0.4))  # the range stops before the theory's noise
    assert judge_noise_ceiling(short).verdict == "inconclusive"


@pytest.mark.parametrize("name", sorted(CLAIMS))
def test_every_claim_names_a_bundled_spec_and_states_its_rule(name):
    from study.spec import bundled_specs

    claim = CLAIMS[name]
    assert claim.spec in bundled_specs() and len(claim.rule) > 40 and claim.paper
    assert len(claim.setting) > 80  # the paper's setting, and where the study differs


def test_a_study_with_nothing_usable_is_an_error_not_a_verdict():
    df = _hypercube()
    df["status"] = "ERROR"
    with pytest.raises(ValueError, match="no finished"):
        judge_minimal_clusters(df)


def test_every_claim_says_its_setting_and_the_budget_that_would_decide_it():
    from analysis.claims import CLAIMS

    for claim in CLAIMS.values():
        assert claim.setting and claim.decide, claim.name
        assert "steps" in claim.decide or "seeds" in claim.decide, claim.name


def test_seed_spread_is_the_std_over_the_seeds_of_each_cell():
    rows = [dict(encoder="mlp", width=8, depth=1, cell=c, seed=s, randlabel_acc=v)
            for c, values in (("a", (0.5, 0.7, 0.9)), ("b", (0.8, 0.8, 0.8))) for s, v in enumerate(values)]
    spread = seed_spread(_table(rows), "randlabel_acc")
    assert spread["n_seeds"] == 3 and spread["max_std"] == pytest.approx(0.2) and spread["median_std"] == 0.1
    assert "3 seeds per cell" in spread["text"] and seed_spread(_table(rows), "mcc") is None
