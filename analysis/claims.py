"""The theory papers' claims, each with the study that tests it and a verdict rule fixed in advance.

A rule reads a study's trials table (``load_trials``) and returns a ``Verdict``: ``holds``,
``fails`` or ``inconclusive``, the measured figures, and the rule's text. Rules use seed means of
finished, non-diverged trials only; their thresholds were written before any full run, and a
claim that does not reproduce is reported as failing or inconclusive, never re-tuned.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from analysis.load import tidy

VerdictName = Literal["holds", "fails", "inconclusive"]


@dataclass
class Verdict:
    verdict: VerdictName
    measured: str
    figures: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Claim:
    name: str
    paper: str
    spec: str  # bundled study spec that tests it
    prediction: str
    rule: str  # the verdict rule in words (the code below is its exact form)
    judge: Callable[[pd.DataFrame], Verdict]


def usable(trials: pd.DataFrame) -> pd.DataFrame:
    """Finished, non-diverged trials, with the ``capacity`` column."""
    t = tidy(trials)
    t = t[t["status"] == "TERMINATED"]
    if "diverged" in t:
        t = t[t["diverged"].fillna(0) == 0]
    if t.empty:
        raise ValueError("no finished, non-diverged trial to judge")
    return t


def seed_mean(trials: pd.DataFrame, by: list[str], metric: str) -> pd.Series:
    return trials.groupby(by, observed=True)[metric].mean()


def _first_crossing(curve: pd.Series, threshold: float) -> float:
    """Smallest index value whose mean reaches ``threshold`` (NaN when none does)."""
    above = curve[curve >= threshold]
    return float(above.index.min()) if len(above) else math.nan


def _round(figures: dict[str, Any]) -> dict[str, Any]:
    def r(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): r(x) for k, x in v.items()}
        if isinstance(v, (float, np.floating)):
            return None if math.isnan(v) else round(float(v), 4)
        if isinstance(v, np.integer):
            return int(v)
        return v
    return r(figures)


# --- 1. HaoChen & Ma 2022: minimal implementable clusters ---------------------------------------
def judge_minimal_clusters(trials: pd.DataFrame, threshold: float = 0.95) -> Verdict:
    t = usable(trials)
    linear = t[t["encoder"] == "linear"]
    mlp = t[t["encoder"] == "mlp"]
    plateau = {int(s): float(seed_mean(g, ["embedding_dim"], "randlabel_acc").max())
               for s, g in linear.groupby("n_invariant")}
    critical = {}
    for s, g in mlp.groupby("n_invariant"):
        best = seed_mean(g, ["embedding_dim", "capacity"], "randlabel_acc").groupby(level=0).max()
        critical[int(s)] = _first_crossing(best, threshold)
    figures = {"linear_plateau": plateau, "mlp_critical_dim": critical,
               "predicted_dim": {s: 2 ** s for s in critical}}
    linear_ok = bool(plateau) and all(v < threshold for v in plateau.values())
    crossed = {s: v for s, v in critical.items() if not math.isnan(v)}
    in_band = all(2 ** s / 4 <= v <= 4 * 2 ** s for s, v in crossed.items())
    ordered = list(crossed.values()) == sorted(crossed.values())
    measured = (f"linear plateau {', '.join(f's={s}: {v:.3f}' for s, v in plateau.items())}; MLP reaches "
                f"{threshold} at embedding_dim "
                f"{', '.join(f's={s}: {v:g}' if not math.isnan(v) else f's={s}: never' for s, v in critical.items())}")
    if not linear_ok or not in_band or not ordered:
        return Verdict("fails", measured, _round(figures))
    if len(crossed) < len(critical) or not critical:
        return Verdict("inconclusive", measured + " (MLP never reached the threshold in range for some s)",
                       _round(figures))
    return Verdict("holds", measured, _round(figures))


# --- 2. Saunshi et al. 2022: inductive bias decides transfer --------------------------------------
def _encoder_class(row: pd.Series) -> str:
    if row["encoder"] == "linear":
        return "linear" + ("+wd" if row.get("weight_decay", 0) > 0 else "")
    return "mlp" + ("+wd" if row.get("weight_decay", 0) > 0 else "")


def judge_inductive_bias(trials: pd.DataFrame, margin: float = 0.02) -> Verdict:
    t = usable(trials).copy()
    t["encoder_class"] = t.apply(_encoder_class, axis=1)
    classes = t.groupby("encoder_class").agg(probe_acc=("probe_acc", "mean"), eval_loss=("eval_loss", "mean"),
                                             acc_std=("probe_acc", "std"))
    spread = float(classes["probe_acc"].max() - classes["probe_acc"].min())
    noise = float(np.nan_to_num(classes["acc_std"]).max())
    differ = spread >= margin + 2 * noise
    # a pair (A, B): A has the lower contrastive loss and the worse transfer, both by a margin
    inverted = [(a, b) for a in classes.index for b in classes.index
                if classes.loc[a, "eval_loss"] < classes.loc[b, "eval_loss"] - margin
                and classes.loc[a, "probe_acc"] < classes.loc[b, "probe_acc"] - margin]
    figures = {"probe_acc": classes["probe_acc"].to_dict(), "eval_loss": classes["eval_loss"].to_dict(),
               "spread": spread, "seed_std_max": noise,
               "lower_loss_worse_transfer": [f"{a} vs {b}" for a, b in inverted]}
    measured = (f"probe_acc by class {', '.join(f'{k}: {v:.3f}' for k, v in classes['probe_acc'].items())}; "
                f"eval_loss {', '.join(f'{k}: {v:.3f}' for k, v in classes['eval_loss'].items())}; "
                f"lower loss but worse transfer: {', '.join(figures['lower_loss_worse_transfer']) or 'none'}")
    if differ and inverted:
        return Verdict("holds", measured, _round(figures))
    order_by_loss = classes.sort_values("eval_loss").index.tolist()
    order_by_acc = classes.sort_values("probe_acc", ascending=False).index.tolist()
    if differ and order_by_loss == order_by_acc:
        return Verdict("fails", measured + " (lower loss meant better transfer for every class)", _round(figures))
    return Verdict("inconclusive", measured, _round(figures))


# --- 3. Bansal, Kavis & Sanghavi 2024: the Fisher subspace ----------------------------------------
def judge_fisher(trials: pd.DataFrame, high: float = 0.9, low: float = 0.2) -> Verdict:
    t = usable(trials)
    clean = t[t["aug_noise"] == t["aug_noise"].min()]
    overlap = seed_mean(clean, ["nuisance_std"], "subspace_overlap")
    pca = seed_mean(clean, ["nuisance_std"], "pca_overlap")
    by_noise = seed_mean(t, ["aug_noise"], "subspace_overlap")
    figures = {"infonce_overlap": overlap.to_dict(), "pca_overlap": pca.to_dict(),
               "overlap_by_aug_noise": by_noise.to_dict()}
    keeps = bool((overlap >= high).all())
    pca_collapses = float(pca.iloc[-1]) <= low
    degrades = len(by_noise) < 2 or float(by_noise.iloc[-1]) < float(by_noise.iloc[0])
    steps = np.diff(by_noise.to_numpy())
    gradual = len(steps) == 0 or float(np.max(-steps)) <= 0.5
    measured = (f"InfoNCE overlap {overlap.min():.3f}..{overlap.max():.3f} over nuisance_std "
                f"{overlap.index.min():g}..{overlap.index.max():g}; PCA overlap falls to {pca.iloc[-1]:.3f}; "
                f"overlap vs aug_noise {', '.join(f'{k:g}: {v:.3f}' for k, v in by_noise.items())}")
    if keeps and pca_collapses and degrades and gradual:
        return Verdict("holds", measured, _round(figures))
    if pca_collapses and float(overlap.min()) < 0.5:
        return Verdict("fails", measured, _round(figures))
    return Verdict("inconclusive", measured, _round(figures))


# --- 4. Zimmermann et al. 2021: inverting the generative process ---------------------------------
def judge_inversion(trials: pd.DataFrame, high: float = 0.9, gap: float = 0.1) -> Verdict:
    t = usable(trials)
    kappas = sorted(t["kappa"].unique())
    moderate = [k for k in kappas if 2 <= k <= 50] or kappas[len(kappas) // 2:]
    cells = seed_mean(t, ["capacity", "kappa"], "r2_linear")
    mlp = cells[[c != "linear" for c in cells.index.get_level_values(0)]]
    lin = cells[[c == "linear" for c in cells.index.get_level_values(0)]]
    best_mlp = float(mlp[mlp.index.get_level_values(1).isin(moderate)].max())
    best_linear = float(lin.max()) if len(lin) else math.nan
    smallest = float(mlp[mlp.index.get_level_values(1) == kappas[0]].max())
    figures = {"r2_by_capacity_kappa": {f"{c} kappa={k:g}": v for (c, k), v in cells.items()},
               "best_mlp_moderate_kappa": best_mlp, "best_linear": best_linear, "best_mlp_smallest_kappa": smallest}
    measured = (f"best MLP R^2 {best_mlp:.3f} at moderate kappa, linear {best_linear:.3f}, "
                f"MLP at kappa={kappas[0]:g}: {smallest:.3f}")
    if best_mlp >= high and best_linear <= best_mlp - gap / 2 and smallest <= best_mlp - gap:
        return Verdict("holds", measured, _round(figures))
    if best_mlp < 0.7:
        return Verdict("fails", measured, _round(figures))
    return Verdict("inconclusive", measured, _round(figures))


# --- 5. Bizeul, Schölkopf & Allen 2024: content kept, style discarded -----------------------------
def judge_content_style(trials: pd.DataFrame, high: float = 0.8, drop: float = 0.2) -> Verdict:
    t = usable(trials)
    content = seed_mean(t, ["aug_noise"], "content_r2")
    style = seed_mean(t, ["aug_noise"], "style_r2")
    rho = float(pd.Series(style.to_numpy()).corr(pd.Series(style.index.to_numpy(dtype=float)), method="spearman"))
    figures = {"content_r2": content.to_dict(), "style_r2": style.to_dict(), "spearman_style_vs_aug": rho}
    measured = (f"content R^2 {content.min():.3f}..{content.max():.3f}; style R^2 "
                f"{', '.join(f'{k:g}: {v:.3f}' for k, v in style.items())} over aug_noise")
    kept = bool((content >= high).all())
    falls = float(style.iloc[-1]) <= float(style.iloc[0]) - drop and rho < 0
    if kept and falls:
        return Verdict("holds", measured, _round(figures))
    if float(content.min()) < 0.5 or (len(style) > 1 and float(style.iloc[-1]) > float(style.iloc[0])):
        return Verdict("fails", measured, _round(figures))
    return Verdict("inconclusive", measured, _round(figures))


# --- 6. HaoChen & Ma 2022: Lipschitz encoders and nested clusters ----------------------------------
def judge_nested(trials: pd.DataFrame, threshold: float = 0.95) -> Verdict:
    t = usable(trials)
    n_sub = int(t["n_sub"].iloc[0])
    critical, sub_at = {}, {}
    for r, g in t.groupby("n_groups"):
        curve = seed_mean(g, ["embedding_dim"], "randlabel_acc")
        critical[int(r)] = _first_crossing(curve, threshold)
        if not math.isnan(critical[int(r)]) and "sub_randlabel_acc" in g:
            sub_at[int(r)] = float(seed_mean(g, ["embedding_dim"], "sub_randlabel_acc")[critical[int(r)]])
    figures = {"critical_dim": critical, "n_groups": list(critical), "n_subclusters": {r: r * n_sub for r in critical},
               "sub_randlabel_acc_at_critical": sub_at}
    measured = ", ".join(f"r={r} (r0={r * n_sub}): groups recovered at embedding_dim "
                         f"{'never' if math.isnan(v) else f'{v:g}'}" for r, v in critical.items())
    if any(math.isnan(v) for v in critical.values()):
        return Verdict("inconclusive", measured, _round(figures))
    near_r = all(v <= 2 * r and v < r * n_sub for r, v in critical.items())
    return Verdict("holds" if near_r else "fails", measured, _round(figures))


CLAIMS: dict[str, Claim] = {c.name: c for c in [
    Claim("minimal_clusters", "HaoChen & Ma 2022", "hypercube",
          "linear encoders plateau below full recovery at any embedding_dim; ReLU MLPs recover every "
          "labelling of the 2^s clusters once embedding_dim ~ 2^s; the boundary rises with s",
          "holds if the linear encoder's best seed-mean randlabel_acc < 0.95 for every s, the MLPs' first "
          "embedding_dim with randlabel_acc >= 0.95 lies in [2^s/4, 4*2^s] for every s and does not decrease "
          "with s; inconclusive if the MLPs never cross for some s; fails otherwise",
          judge_minimal_clusters),
    Claim("inductive_bias", "Saunshi et al. 2022", "inductive_bias",
          "with the same augmentations, linear / MLP / MLP+weight-decay transfer differently, and lower "
          "contrastive loss does not mean better downstream accuracy across classes",
          "holds if class-mean probe_acc spreads by >= 0.02 + 2 seed std and some class has both a lower "
          "eval_loss and a lower probe_acc (each by >= 0.02) than another; fails if accuracies differ but the "
          "loss order equals the accuracy order; inconclusive otherwise",
          judge_inductive_bias),
    Claim("fisher_subspace", "Bansal, Kavis & Sanghavi 2024", "gmm",
          "the linear InfoNCE encoder keeps a high overlap with the Fisher subspace as nuisance variance grows, "
          "while PCA's collapses; aug_noise degrades it gradually",
          "holds if seed-mean subspace_overlap >= 0.9 at every nuisance_std (aug_noise = its smallest), "
          "pca_overlap <= 0.2 at the largest nuisance_std, overlap at the largest aug_noise < at the smallest, "
          "no drop > 0.5 between neighbouring aug_noise values; fails if PCA collapses and InfoNCE < 0.5 too",
          judge_fisher),
    Claim("inversion", "Zimmermann et al. 2021", "sphere_mixing",
          "with enough capacity and a moderate kappa, the latents are linearly recovered (R^2 near 1); too "
          "little capacity or a degenerate kappa breaks it",
          "holds if the best MLP's seed-mean r2_linear >= 0.9 at some kappa in [2, 50], the linear encoder's "
          "best is >= 0.05 lower, and the MLPs at the smallest kappa are >= 0.1 lower; fails if the best MLP "
          "< 0.7; inconclusive otherwise",
          judge_inversion),
    Claim("content_style", "Bizeul, Schölkopf & Allen 2024", "content_style",
          "content R^2 stays high while style R^2 falls as the augmentation perturbs style more",
          "holds if seed-mean content_r2 >= 0.8 at every aug_noise and style_r2 at the largest aug_noise is "
          ">= 0.2 below the smallest with a negative Spearman trend; fails if content_r2 < 0.5 somewhere or "
          "style_r2 rises; inconclusive otherwise",
          judge_content_style),
    Claim("nested_clusters", "HaoChen & Ma 2022 (Lipschitz example)", "nested_clusters",
          "a smooth low-capacity encoder recovers the r groups at embedding_dim ~ r, not r0 = r * n_sub",
          "holds if, for every n_groups r, the first embedding_dim with group randlabel_acc >= 0.95 is <= 2r "
          "and < r0; inconclusive if it is never reached; fails otherwise",
          judge_nested),
]}
