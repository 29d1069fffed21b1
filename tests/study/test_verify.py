"""`clphase verify --smoke`: every claim's smoke study through the real runner, analysis and rule."""

from __future__ import annotations

import json

import pytest

from analysis.claims import CLAIMS
from study.cli import main

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]


def test_verify_smoke_gives_every_claim_a_verdict_and_writes_the_table(tmp_path, tmp_store, capsys):
    out, docs = tmp_path / "claims", tmp_path / "docs"
    assert main(["verify", "--smoke", "--out", str(out), "--tracking-uri", tmp_store, "--docs", str(docs)]) == 0
    rows = json.loads((out / "claims.json").read_text())
    assert [r["claim"] for r in rows] == list(CLAIMS)
    assert all(r["verdict"] in {"holds", "fails", "inconclusive"} for r in rows)
    by = {r["claim"]: r for r in rows}
    # Robust even at smoke size: InfoNCE finds the Fisher subspace (overlap ~0.99 vs a 0.9 bar) while
    # PCA's overlap is 0, and a linear encoder cannot decode every labelling of 4 clusters (ceiling 11/12).
    assert by["fisher_subspace"]["verdict"] == "holds"
    assert all(v < 0.95 for v in by["minimal_clusters"]["figures"]["linear_plateau"].values())
    for r in rows:  # an inconclusive verdict says which budget would decide it; a decided one does not
        assert (r.get("decide") == CLAIMS[r["claim"]].decide) == (r["verdict"] == "inconclusive")
        assert ("would be decided by" in r["measured"]) == (r["verdict"] == "inconclusive")
    assert all(r["seed_spread"]["n_seeds"] == 1 and "1 seed(s) per cell" in r["measured"] for r in rows)  # smoke
    table = capsys.readouterr().out
    assert "fisher_subspace" in table and "rule:" in table
    md = (docs / "claims.md").read_text()
    for r in rows:  # a restated rule says so beside the rule and in the claim's section
        assert r["revised"] == CLAIMS[r["claim"]].revised
        assert not r["revised"] or f"Rule restated {r['revised']}." in md
    assert "| fisher_subspace |" in md and "(claims/fisher_subspace_phase_diagram.png)" in md
    assert (docs / "claims" / "fisher_subspace_phase_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second verify reuses the finished studies instead of training them again: Tune's experiment
    # folder and the study's tables are left exactly as they were.
    study_dir = out / by["fisher_subspace"]["study_dir"].rsplit("/", 1)[1]
    before = _snapshot(study_dir)
    assert main(["verify", "--smoke", "--claim", "fisher_subspace", "--out", str(out), "--tracking-uri",
                 tmp_store]) == 0
    again = json.loads((out / "claims.json").read_text())
    assert again[0]["measured"] == by["fisher_subspace"]["measured"]
    assert _snapshot(study_dir) == before


def _snapshot(study_dir) -> dict[str, bytes]:
    """Every file Tune or the records write in a study folder, by path, with its bytes."""
    return {str(p.relative_to(study_dir)): p.read_bytes() for p in sorted(study_dir.rglob("*"))
            if p.is_file() and (p.name.endswith(".parquet") or "tune" in p.parts)}
