"""The bad-spec battery: what a new user gets wrong is refused early and plainly.

Each case exits 2 with a message that names the key, starts no Ray, and leaves a finished study in the same
``--out`` (same name, same MLflow store) byte for byte as it was. Most cases run ``study.cli.main`` in this
process (a refusal costs no interpreter start); a few run the CLI as a subprocess, as a user would, with
their own Ray temp folder, which must not appear.
"""

from __future__ import annotations

import copy
import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import study.runner
from study.cli import main
from tests.study.conftest import TINY, write_spec

NAME = "tiny"  # the finished study's name: every case aims at it
BASE: dict[str, Any] = {"name": NAME, "trainable": dict(TINY), "grid": {"embedding_dim": [2, 4]}, "seeds": [0]}
TIMES: dict[str, float] = {}  # case -> seconds from the CLI's call to its refusal


@pytest.fixture(scope="module", autouse=True)
def _timings():
    """The battery's size and its slowest refusals, printed at the end of the module (run with -s)."""
    yield
    if TIMES:
        slowest = sorted(TIMES, key=TIMES.get, reverse=True)[:5]
        in_process = max((k for k in TIMES if k not in SUBPROCESS), key=TIMES.get, default=None)
        print(f"\n{len(TIMES)} refusals timed; slowest: " + ", ".join(f"{k} {TIMES[k]:.2f} s" for k in slowest)
              + (f"; slowest in-process: {in_process} {TIMES[in_process]:.3f} s" if in_process else "")
              + "; as subprocesses: " + ", ".join(f"{k} {TIMES[k]:.2f} s" for k in sorted(SUBPROCESS & set(TIMES))))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A real two-config study, run to its end once for the module."""
    folder = tmp_path_factory.mktemp("finished")
    spec = write_spec(folder, name=NAME)
    out, store = folder / "runs", f"sqlite:///{folder / 'mlflow.db'}"
    done = subprocess.run([sys.executable, "-m", "study.cli", "run", str(spec), "--out", str(out),
                           "--tracking-uri", store], cwd=folder, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (out / NAME / "trials.parquet").exists()
    return {"folder": folder, "out": out, "store": store, "spec": spec}


def _snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file under the finished study's folder (its out/ and its MLflow store)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _patched(**changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = spec
        for part in parents:
            target = target.setdefault(part, {})
        target[last] = value
    return spec


def _drop(*keys: str) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    for k in keys:
        spec.pop(k)
    return spec


# (id, the spec: a dict, raw YAML text, or bytes; extra CLI arguments; what the message must name)
CASES: list[tuple[str, Any, list[str], str]] = [
    # the study folder
    ("name-dotdot", _patched(name=".."), [], "name"),
    ("name-dot", _patched(name="."), [], "name"),
    ("name-path", _patched(name="../escape"), [], "name"),
    ("name-hidden", _patched(name=".tiny"), [], "name"),
    # the file and its YAML
    ("yaml-duplicate-key", "name: tiny\ntrainable: {lr: 0.1, lr: 0.2}\n", [], "duplicate key 'lr'"),
    ("yaml-duplicate-top", "name: tiny\nname: tiny2\n", [], "duplicate key 'name'"),
    ("not-utf8", b"name: tiny\ntrainable: {lr: 0.1}\n\xff\xfe\n", [], "not UTF-8"),
    ("empty-file", "", [], "empty"),
    ("yaml-list", "- name: tiny\n", [], "mapping"),
    ("yaml-invalid", "name: [tiny\n", [], "invalid YAML"),
    ("lr-quoted", "name: tiny\ntrainable: {lr: '1e-3'}\n", [], "lr must be"),
    # values: types, finiteness, ranges
    ("temperature-0", _patched(trainable__temperature=0), [], "temperature"),
    ("temperature-nan", _patched(trainable__temperature=float("nan")), [], "temperature"),
    ("lr-nan", _patched(trainable__lr=float("nan")), [], "lr"),
    ("lr-inf", _patched(trainable__lr=float("inf")), [], "lr"),
    ("weight-decay-negative", _patched(trainable__weight_decay=-1), [], "weight_decay"),
    ("seed-negative", _patched(seeds=[-1]), [], "seeds: seed"),
    ("seed-bool", _patched(seeds=[True]), [], "seeds"),
    ("loss-argument-as-key", _patched(trainable__z1=5), [], "z1"),
    ("width-bool", _patched(grid={"capacity": {"linear": True, "widths": [True]}}), [], "widths"),
    ("steps-bool", _patched(trainable__steps=True), [], "steps"),
    ("batch-size-1", _patched(trainable__batch_size=1), [], "batch_size"),
    ("n-eval-1", _patched(trainable__n_eval=1), [], "n_eval"),
    ("embedding-dim-0", _patched(grid={"embedding_dim": [0, 2]}), [], "grid.embedding_dim"),
    ("aug-noise-negative", _patched(trainable__aug_noise=-1.0), [], "aug_noise"),
    ("gmm-aug-noise-above-1", _patched(trainable={**{k: v for k, v in TINY.items() if k != "n_invariant"},
                                                  "scenario": "gmm", "aug_noise": 2.0}), [], "aug_noise"),
    ("n-invariant-63", _patched(trainable__n_invariant=63), [], "n_invariant"),
    ("n-invariant-above-dim", _patched(trainable__n_invariant=9), [], "n_invariant"),
    ("device-unknown", _patched(trainable__device="tpu"), [], "device"),
    ("spurious-unknown", _patched(trainable__spurious="sideways"), [], "spurious"),
    ("scenario-unknown", _patched(trainable__scenario="torus"), [], "scenario"),
    ("encoder-unknown", _patched(trainable__encoder="cnn"), [], "encoder"),
    ("key-typo", _patched(grid={"embeding_dim": [2, 4]}), [], "embeding_dim"),
    # keys that feed no cell, repeated cells, size
    ("grid-key-of-another-scenario", _patched(grid={"n_clusters": [2, 4]}), [], "n_clusters"),
    ("fixed-key-of-another-scenario", _patched(trainable__kappa=2.0), [], "kappa"),
    ("repeated-seeds", _patched(seeds=[0, 0]), [], "seed"),
    ("grid-2e6-cells", _patched(grid={"embedding_dim": list(range(1, 2001)), "lr": [1e-4 * i for i in range(1, 1001)]}),
     [], "max_cells"),
    ("grid-axis-empty", _patched(grid={"embedding_dim": []}), [], "grid.embedding_dim"),
    ("grid-log2-bad", _patched(grid={"embedding_dim": {"log2": [0, 8]}}), [], "grid.embedding_dim.log2"),
    ("grid-capacity-typo", _patched(grid={"capacity": {"widht": [8]}}), [], "grid.capacity"),
    # objective and analysis
    ("objective-typo", _patched(objective={"metric": "randlabel_ac"}), [], "objective.metric"),
    ("objective-of-another-scenario", _patched(objective={"metric": "r2_linear"}), [], "objective.metric"),
    ("analysis-key-typo", _patched(analysis={"treshold": 0.9}), [], "analysis.treshold"),
    ("analysis-metric-typo", _patched(analysis={"metric": "probe_accc"}), [], "analysis.metric"),
    ("analysis-axis-typo", _patched(analysis={"x": "capacty", "y": "embedding_dim"}), [], "analysis.x"),
    # the spec's structure
    ("top-level-typo", {**BASE, "gird": {}}, [], "gird"),
    ("scheduler-key-typo", _patched(scheduler={"type": "asha", "grace": 2}), [], "scheduler.grace"),
    ("num-samples-bool", _patched(num_samples=True), [], "num_samples"),
    ("cpu-inf", _patched(resources={"cpu": float("inf")}), [], "resources.cpu"),
    ("gpu-fraction-above-1", _patched(resources={"gpu": 1.5}), [], "resources.gpu"),
    ("optuna-without-search", _patched(searcher={"type": "optuna"}), [], "search"),
    ("search-with-grid-searcher", _patched(search={"lr": {"loguniform": [1e-4, 1e-2]}}), [], "search"),
    ("search-int-key-float-distribution", {**_drop("grid"), "searcher": {"type": "optuna"},
                                           "search": {"embedding_dim": {"uniform": [2, 8]}}},
     [], "search.embedding_dim"),
    ("search-range-reversed", {**_drop("grid"), "searcher": {"type": "optuna"},
                               "search": {"lr": {"loguniform": [1e-2, 1e-4]}}}, [], "search.lr"),
    ("search-randint-reversed", {**_drop("grid"), "searcher": {"type": "optuna"},
                                 "search": {"embedding_dim": {"randint": [8, 2]}}}, [], "search.embedding_dim"),
    ("search-choice-empty", {**_drop("grid"), "searcher": {"type": "optuna"},
                             "search": {"temperature": {"choice": []}}}, [], "search.temperature"),
    ("search-q-zero", {**_drop("grid"), "searcher": {"type": "optuna"},
                       "search": {"temperature": {"quniform": [0.1, 0.5, 0]}}}, [], "search.temperature"),
    ("num-samples-with-grid", _patched(num_samples=2), [], "num_samples"),
    ("device-cuda-without-gpu-share", _patched(trainable__device="cuda"), [], "resources.gpu"),
    ("pack-size-with-asha", _patched(pack_size=2, scheduler={"type": "asha"}), [], "pack_size"),
    ("max-concurrent-0", _patched(max_concurrent=0), [], "max_concurrent"),
    ("seeds-twice", _patched(grid={"embedding_dim": [2], "seed": [0, 1]}, seeds=[2]), [], "seeds"),
    ("smoke-without-block", BASE, ["--smoke"], "smoke"),
    # flags and the folder
    ("max-cells-0", BASE, ["--max-cells", "0"], "--max-cells"),
    ("out-is-a-file", BASE, ["--out", "{folder}/mlflow.db"], "--out"),
    ("started-study-without-resume", BASE, [], "--resume"),
    ("resume-changed-spec", _patched(trainable__steps=80), ["--resume"], "spec changed"),
    ("resume-other-store", BASE, ["--resume", "--tracking-uri", "sqlite:///{folder}/other.db"], "--tracking-uri"),
    ("address-nobody-listens", BASE, ["--address", "127.0.0.1:1"], "no Ray answers at 127.0.0.1:1 (--address)"),
    ("ray-address-env-nobody-listens", BASE, ["--env", "RAY_ADDRESS=127.0.0.1:1"],
     "no Ray answers at 127.0.0.1:1 (RAY_ADDRESS)"),
    ("resume-other-store-env", BASE, ["--resume", "--env", "MLFLOW_TRACKING_URI=sqlite:///{folder}/other.db"],
     "MLFLOW_TRACKING_URI"),
]
SUBPROCESS = {"name-dotdot", "yaml-duplicate-key", "lr-nan", "grid-2e6-cells", "resume-other-store", "not-utf8"}


def _write(folder: Path, case: str, spec: Any) -> Path:
    path = folder / f"{case}.yaml"
    if isinstance(spec, bytes):
        path.write_bytes(spec)
    elif isinstance(spec, str):
        path.write_text(spec)
    else:
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _argv(finished: dict[str, Any], spec: Path, extra: list[str]) -> tuple[list[str], dict[str, str]]:
    args = [a.format(folder=finished["folder"]) for a in extra]
    env = {}
    while "--env" in args:
        i = args.index("--env")
        key, value = args[i + 1].split("=", 1)
        env[key] = value
        del args[i:i + 2]
    argv = ["run", str(spec), "--out", str(finished["out"])]
    if "--tracking-uri" not in args and not env:
        argv += ["--tracking-uri", finished["store"]]
    if "--out" in args:
        i = args.index("--out")
        argv[3] = args[i + 1]
        del args[i:i + 2]
    return argv + args, env


def test_the_battery_is_big_enough():
    assert len(CASES) >= 40 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case,spec,extra,needle", CASES, ids=[c[0] for c in CASES])
def test_a_bad_spec_is_refused_before_ray_starts(finished, tmp_path, monkeypatch, capsys, case, spec, extra, needle):
    import ray

    before = _snapshot(finished["folder"])
    path = _write(tmp_path, case, spec)
    argv, env = _argv(finished, path, extra)
    if case in SUBPROCESS:
        ray_tmp = tmp_path / "ray"
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "study.cli", *argv], cwd=tmp_path, capture_output=True,
                              text=True, timeout=300, env={**os.environ, **env, "RAY_TMPDIR": str(ray_tmp)})
        TIMES[case] = time.perf_counter() - start
        code, err = done.returncode, done.stderr
        assert not ray_tmp.exists(), f"Ray started: {sorted(ray_tmp.rglob('*'))[:5]}"
    else:
        calls = []

        def no_ray(*args: Any, **kwargs: Any) -> bool:
            calls.append(args)
            raise AssertionError("a bad spec reached Ray's start")

        monkeypatch.setattr(study.runner, "init_ray", no_ray)
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        was_up = ray.is_initialized()
        start = time.perf_counter()
        code = main(argv)
        TIMES[case] = time.perf_counter() - start
        err = capsys.readouterr().err
        assert not calls and ray.is_initialized() == was_up
    assert code == 2, err
    assert needle in err, err
    assert "Traceback" not in err and err.startswith("clphase: error: ")
    assert _snapshot(finished["folder"]) == before, "the finished study changed"


def test_a_folder_given_as_the_spec_is_refused(finished, tmp_path, capsys):
    assert main(["run", str(tmp_path), "--out", str(finished["out"]), "--tracking-uri", finished["store"]]) == 2
    assert "is a folder" in capsys.readouterr().err
