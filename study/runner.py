"""The runner: a validated study spec becomes a Ray Tune sweep recorded in Parquet and MLflow.

``run_study`` builds the Tune param space (grid cells, or distributions behind Optuna),
the scheduler (FIFO or ASHA), per-trial resources (fractional GPUs included), and attaches
the driver-side callback that writes ``runs/<study>/{trials,history}.parquet`` and the MLflow
mirror. ``resume=True`` continues an interrupted study from Tune's experiment state:
finished trials are kept, unfinished ones continue from their last checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.spec import StudySpec, find_spec, load_spec

_TUNE_DIR = "tune"  # Tune's experiment folder inside the study folder
_STATE = "study.json"


class StudyError(RuntimeError):
    """A study that cannot start or continue; the message says what to do."""


@dataclass
class StudyResult:
    study_dir: Path
    n_trials: int
    n_finished: int
    n_failed: int
    best: dict[str, Any] | None
    parent_run_id: str | None
    tracking_uri: str
    interrupted: bool


def resolve_pack_size(spec: StudySpec) -> int:
    """``pack_size`` as a number. ``auto`` on GPUs asks a Ray task holding one trial's resources (so on
    a cluster it is a GPU worker that measures its free memory, scaled to the trial's GPU share), for
    the config that needs the most memory per pack slot; on CPUs the rule needs no device, so the
    driver applies it to the first cell without starting a worker."""
    if spec.pack_size != "auto":
        return int(spec.pack_size or 1)
    from trainables.packed import auto_pack_size, pack_memory_bytes

    cells = spec.cells()
    if spec.resources.gpu == 0:
        return auto_pack_size(cells[0], "cpu")
    import ray

    config = max(cells, key=pack_memory_bytes)
    probe = ray.remote(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)(auto_pack_size)
    size = ray.get(probe.remote(config))
    share = spec.resources.gpu if 0 < spec.resources.gpu < 1 else 1.0
    return max(1, int(size * share))


def packed_param_space(spec: StudySpec, size: int) -> dict[str, Any]:
    """One grid cell per pack: ``{"pack": [config, ...]}``, each pack at most ``size`` configs."""
    from ray import tune

    from trainables.packed import plan_packs

    cells = spec.cells()
    packs = [[cells[i] for i in pack] for pack in plan_packs(cells, size)]
    return {"pack": tune.grid_search(packs), "objective": spec.objective.metric, "mode": spec.objective.mode}


def param_space(spec: StudySpec) -> dict[str, Any]:
    from search_spaces import distribution, grid

    space: dict[str, Any] = dict(spec.trainable)
    if spec.searcher.type == "grid":
        space.update(grid(spec.grid_axes()))
    else:
        space.setdefault("seed", spec.seeds[0])
        for key, dist in spec.search.items():
            (name, args), = dist.items()
            space[key] = distribution(name, args)
    return space


def _searcher(spec: StudySpec) -> Any:
    if spec.searcher.type == "grid":
        return None
    import optuna
    from ray.tune.search import ConcurrencyLimiter
    from ray.tune.search.optuna import OptunaSearch

    samplers = {
        "tpe": lambda s: optuna.samplers.TPESampler(seed=s),
        "random": lambda s: optuna.samplers.RandomSampler(seed=s),
        "qmc": lambda s: optuna.samplers.QMCSampler(seed=s),
        "cmaes": lambda s: optuna.samplers.CmaEsSampler(seed=s),
    }
    search = OptunaSearch(sampler=samplers[spec.searcher.sampler](spec.searcher.seed))
    return ConcurrencyLimiter(search, max_concurrent=spec.max_concurrent or 2)


def _scheduler(spec: StudySpec) -> Any:
    if spec.scheduler.type == "fifo":
        return None
    from ray.tune.schedulers import ASHAScheduler

    steps = int(spec.trainable.get("steps", 1000))
    eval_every = int(spec.trainable.get("eval_every", 250))
    return ASHAScheduler(
        time_attr="training_iteration",
        max_t=max(1, -(-steps // eval_every)),
        grace_period=spec.scheduler.grace_period,
        reduction_factor=spec.scheduler.reduction_factor,
    )


def _name_keys(spec: StudySpec) -> list[str]:
    keys: list[str] = []
    for key, cells in spec.grid_axes().items():
        for cell in cells:
            for k in cell if isinstance(cell, dict) else [key]:
                if k not in keys:
                    keys.append(k)
    return keys + [k for k in spec.search if k not in keys]


def _init_ray(address: str | None, verbose: bool) -> bool:
    """Connect to ``address`` or start Ray on this machine; True if this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(log_to_driver=verbose, logging_level="INFO" if verbose else "WARNING",
                                  configure_logging=True)
    if address:
        ray.init(address=address, **kwargs)
    else:
        ray.init(include_dashboard=False, **kwargs)
    return True


def _check_local_gpus(spec: StudySpec) -> None:
    """Before anything starts: a GPU request on a machine without one is an error (locally)."""
    import torch

    if spec.resources.gpu > 0 and not torch.cuda.is_available():
        raise StudyError(
            f"the spec asks for {spec.resources.gpu} GPU per trial, but this machine has no GPU; "
            "set resources.gpu: 0 to run on the CPU, or run it on a GPU machine or cluster (--address)"
        )


def _check_cluster_gpus(spec: StudySpec) -> None:
    import ray

    if spec.resources.gpu > 0 and ray.cluster_resources().get("GPU", 0) == 0:
        print("[clphase] the cluster has no GPU yet; trials wait for the autoscaler to add GPU workers", flush=True)


def _tune_environment(verbose: bool) -> dict[str, str]:
    """Set Tune's knobs for a study (unless the user set them); returns the environment to restore."""
    saved = dict(os.environ)
    settings = {
        "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",  # Parquet + MLflow record everything
        "TUNE_GLOBAL_CHECKPOINT_S": "2",  # a killed driver loses at most ~2 s of experiment state
        # Snapshots after each checkpoint are what make --resume exact; Tune warns about their rate.
        "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0",
        "RAY_DEDUP_LOGS": "1",
    }
    if not verbose:  # Tune's new console output prints its banner even when silent; the legacy one does not
        settings["RAY_AIR_NEW_OUTPUT"] = "0"
    for key, value in settings.items():
        os.environ.setdefault(key, value)
    return saved


def _load_state(study_dir: Path) -> dict[str, Any] | None:
    path = study_dir / _STATE
    return json.loads(path.read_text()) if path.exists() else None


def _save_state(study_dir: Path, state: dict[str, Any]) -> None:
    tmp = study_dir / (_STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str))
    os.replace(tmp, study_dir / _STATE)


def run_study(
    spec_path: str | Path,
    *,
    smoke: bool = False,
    resume: bool = False,
    out: str | Path = "runs",
    address: str | None = None,
    tracking_uri: str | None = None,
    verbose: bool = False,
    trainable: Callable[[dict[str, Any]], None] | None = None,
) -> StudyResult:
    """Run (or continue) one study; returns where its results are and how it went."""
    path = find_spec(str(spec_path))
    spec = load_spec(path, smoke=smoke)
    study_dir = Path(out).expanduser().resolve() / spec.name
    state = _load_state(study_dir)
    if state and not resume:
        raise StudyError(
            f"{study_dir} already holds the study {spec.name!r}; continue it with --resume, "
            f"or write a new one elsewhere with --out"
        )
    if state and state["spec"] != spec.model_dump(mode="json"):
        changed = sorted(k for k, v in spec.model_dump(mode="json").items() if state["spec"].get(k) != v)
        raise StudyError(
            f"the spec changed since {study_dir} was started (keys: {', '.join(changed)}); a resumed study "
            "runs the spec it started with: restore it, or start a new study with --out"
        )
    if resume and not state:
        print(f"[clphase] nothing to resume in {study_dir}; starting the study", flush=True)

    from study.callback import StudyCallback, config_of
    from study.progress import ProgressLine
    from study.records import StudyRecords
    from study.tracking import MlflowMirror, TrackingUnavailable

    if not address:
        _check_local_gpus(spec)
    # MLflow first: a store that cannot be reached stops the study before Ray starts.
    mirror = MlflowMirror(tracking_uri or (state or {}).get("tracking_uri"), spec.name, study_dir, _name_keys(spec))
    try:
        parent_id = mirror.open((state or {}).get("parent_run_id"), path if not state else None)
    except TrackingUnavailable as err:
        raise StudyError(f"{err}. Start the server, or choose another store with --tracking-uri.") from None
    study_dir.mkdir(parents=True, exist_ok=True)
    records = StudyRecords(study_dir, spec.name)
    if not state:
        shutil.copyfile(path, study_dir / "spec.yaml")
        state = {"spec": spec.model_dump(mode="json"), "smoke": smoke, "parent_run_id": parent_id,
                 "tracking_uri": mirror.tracking_uri, "spec_path": str(path.resolve())}
        _save_state(study_dir, state)
    if resume and records.trials:
        mirror.sync(records, config_of)  # whatever the last invocation could not write

    # Tune's result-file loggers are off (see _tune_environment), so its end-of-run summary cannot read them.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    saved_environment = _tune_environment(verbose)
    started_ray = False
    try:
        started_ray = _init_ray(address, verbose)
        import ray
        from ray import tune

        if address:
            _check_cluster_gpus(spec)
        pack_size = resolve_pack_size(spec) if spec.pack_size is not None else None
        if trainable is None:
            from trainables.contrastive import contrastive, contrastive_pack

            trainable = contrastive if pack_size is None else contrastive_pack
        fn = tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
        already = sum(records.is_finished(t) for t in records.trials)
        progress = ProgressLine(spec.name, spec.n_trials(), spec.objective.metric, spec.objective.mode,
                                already_done=already)
        callback = StudyCallback(records, mirror, progress, spec.objective.metric,
                                 dedupe_cells=spec.searcher.type == "grid" and spec.num_samples == 1)
        tune_dir = study_dir / _TUNE_DIR
        if resume and tune.Tuner.can_restore(str(tune_dir)):
            tuner = tune.Tuner.restore(str(tune_dir), trainable=fn, resume_unfinished=True, resume_errored=False)
            # Tune restores the callbacks it pickled at the start; this invocation's must replace them.
            run_config = tuner._local_tuner.get_run_config()
            run_config.callbacks = [callback]
            run_config.verbose = 1 if verbose else 0
        else:
            tuner = tune.Tuner(
                fn,
                param_space=param_space(spec) if pack_size is None else packed_param_space(spec, pack_size),
                tune_config=tune.TuneConfig(
                    metric=spec.objective.metric,
                    mode=spec.objective.mode,
                    search_alg=_searcher(spec),
                    scheduler=_scheduler(spec),
                    num_samples=spec.num_samples,
                    max_concurrent_trials=spec.max_concurrent,
                    reuse_actors=True,
                ),
                run_config=tune.RunConfig(
                    name=_TUNE_DIR,
                    storage_path=str(study_dir),
                    callbacks=[callback],
                    verbose=1 if verbose else 0,
                    failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                    # Two, not one: the last experiment snapshot may still name the previous checkpoint when
                    # the driver is killed, and a resumed trial must find it on disk.
                    checkpoint_config=tune.CheckpointConfig(num_to_keep=2),
                ),
            )
        if pack_size is not None:
            print(f"[clphase] {spec.n_trials()} configs in packs of up to {pack_size} per trial", flush=True)
        start = time.time()
        tuner.fit()
        progress.close()
    finally:
        records.flush(force=True)
        if started_ray:
            ray.shutdown()
        os.environ.clear()
        os.environ.update(saved_environment)

    frame = records.trials_frame()
    finished = int((frame["status"] == "TERMINATED").sum()) if len(frame) else 0
    failed = int((frame["status"] == "ERROR").sum()) if len(frame) else 0
    interrupted = finished + failed < spec.n_trials()
    if mirror.dirty and not mirror.sync(records, config_of):
        print(f"[clphase] MLflow ({mirror.tracking_uri}) is still unreachable: every result is in "
              f"{study_dir}/*.parquet; once the store is back, `clphase run {spec_path} --resume` writes the "
              "missing MLflow records (nothing is retrained).", flush=True)
    mirror.close("KILLED" if interrupted else ("FAILED" if finished == 0 and failed else "FINISHED"))
    best = None
    metric = spec.objective.metric
    if finished and metric in frame:
        ok = frame[frame["status"] == "TERMINATED"].dropna(subset=[metric])
        if len(ok):
            idx = ok[metric].idxmax() if spec.objective.mode == "max" else ok[metric].idxmin()
            best = ok.loc[idx].to_dict()
    summary = {"trials": spec.n_trials(), "finished": finished, "failed": failed,
               "wall_s": round(time.time() - start, 2), "interrupted": interrupted}
    (study_dir / "run_summary.json").write_text(json.dumps(summary, indent=2))
    return StudyResult(study_dir, spec.n_trials(), finished, failed, best, parent_id, mirror.tracking_uri, interrupted)


def describe(result: StudyResult, metric: str) -> str:
    lines = [f"{result.n_finished}/{result.n_trials} trials finished, {result.n_failed} failed"]
    if result.best is not None:
        lines.append(f"best {metric} = {result.best.get(metric):.4g} (trial {result.best.get('trial_id')})")
    lines.append(f"results:  {result.study_dir}/trials.parquet, history.parquet")
    lines.append(f"MLflow:   {result.tracking_uri}  (browse with: clphase ui)")
    if result.interrupted:
        lines.append("the study did not finish: continue it with  clphase run SPEC --resume")
    return "\n".join(lines)


