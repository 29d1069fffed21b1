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
    table = capsys.readouterr().out
    assert "fisher_subspace" in table and "rule:" in table
    md = (docs / "claims.md").read_text()
    assert "| fisher_subspace |" in md and "(claims/fisher_subspace_phase_diagram.png)" in md
    assert (docs / "claims" / "fisher_subspace_phase_diagram.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A second verify reuses the finished studies instead of training them again.
    assert main(["verify", "--smoke", "--claim", "fisher_subspace", "--out", str(out), "--tracking-uri",
                 tmp_store]) == 0
    again = json.loads((out / "claims.json").read_text())
    assert again[0]["wall_s"] < by["fisher_subspace"]["wall_s"] + 30 and again[0]["measured"] == by[
        "fisher_subspace"]["measured"]
