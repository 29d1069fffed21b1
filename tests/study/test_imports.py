"""What ``clphase run`` imports before Ray starts: MLflow (1 to 2 s) and Ray Tune (~1 s) wait until they are
used (a sqlite store is opened, and MLflow imported, while Ray starts), and the default store is named
without MLflow."""

from __future__ import annotations

import subprocess
import sys

from study.tracking import DEFAULT_TRACKING_URI, resolve_tracking_uri


def test_loading_a_grid_spec_and_planning_its_store_imports_neither_mlflow_nor_tune(tmp_path):
    code = ("import sys; from study.runner import planned_store, study_folder; "
            "from study.spec import find_spec, load_spec; "
            "spec = load_spec(find_spec('quickstart'), smoke=True); "
            "print(planned_store(study_folder(sys.argv[1], spec.name), None, False)); "
            "print(sorted(m for m in ('mlflow', 'ray.tune', 'sklearn', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert done.returncode == 0, done.stderr[-2000:]
    store, imported = done.stdout.strip().splitlines()
    assert store == f"sqlite:///{tmp_path / 'mlflow.db'}" and imported == "[]"


def test_the_default_store_is_sqlite_even_beside_a_legacy_mlruns_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlruns" / "0").mkdir(parents=True)
    (tmp_path / "mlruns" / "0" / "meta.yaml").write_text("name: Default\n")  # MLflow would keep its file store
    assert resolve_tracking_uri(None) == DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert resolve_tracking_uri(None) == "http://127.0.0.1:5000"
    assert resolve_tracking_uri("sqlite:////tmp/other.db") == "sqlite:////tmp/other.db"


def test_a_store_set_with_mlflow_in_this_process_is_used(tmp_path):
    code = ("import sys, mlflow; mlflow.set_tracking_uri(sys.argv[1]); "
            "from study.tracking import resolve_tracking_uri; print(resolve_tracking_uri(None))")
    uri = f"sqlite:///{tmp_path / 'set.db'}"
    done = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": ":".join(sys.path)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == uri
