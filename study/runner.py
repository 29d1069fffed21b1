"""The runner: a validated study spec becomes a Ray Tune sweep recorded in Parquet and MLflow.

``run_study`` builds the Tune param space (grid cells, or distributions behind Optuna),
the scheduler (FIFO or ASHA), per-trial resources (fractional GPUs included), and attaches
the driver-side callback that writes ``runs/<study>/{trials,history}.parquet`` and the MLflow
mirror. ``resume=True`` continues an interrupted study from Tune's experiment state:
finished trials are kept, unfinished ones continue from their last checkpoint.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from study.spec import StudySpec, find_spec, load_spec

_TUNE_DIR = "tune"  # Tune's experiment folder inside the study folder
_STATE = "study.json"
_LOCK = ".lock"  # held by the one process writing the study folder (StudyLock)


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
    """``pack_size`` as a number (1 when unset: each config its own pack of one). ``auto`` on GPUs asks a
    Ray task holding one trial's resources (so on a cluster it is a GPU worker that measures its free
    memory, scaled to the trial's GPU share), for the config that needs the most memory per pack slot;
    on CPUs the rule needs no device: the driver applies it to every model shape of the study and takes
    the smallest size (so, as on GPUs, the most demanding config decides, whatever the cells' order)."""
    if spec.pack_size != "auto":
        return int(spec.pack_size or 1)
    from trainables.engine import auto_pack_size, pack_memory_bytes, smallest_pack_size

    cells = spec.cells()
    if spec.resources.gpu == 0:
        return smallest_pack_size(cells, "cpu")
    import ray

    config = max(cells, key=pack_memory_bytes)
    probe = ray.remote(num_cpus=spec.resources.cpu, num_gpus=spec.resources.gpu)(auto_pack_size)
    size = ray.get(probe.remote(config))
    share = spec.resources.gpu if 0 < spec.resources.gpu < 1 else 1.0
    return max(1, int(size * share))


def pack_slots(spec: StudySpec) -> int:
    """How many packs run side by side, for ``plan_packs`` to balance: with ``pack_size: auto`` on CPUs,
    the trials the running Ray holds at once (at most ``max_concurrent``); else 1 (packs as cut)."""
    if spec.pack_size != "auto" or spec.resources.gpu > 0:
        return 1
    return trial_slots(spec)


def trial_slots(spec: StudySpec) -> int:
    """How many of the spec's trials the running Ray holds at once: its GPUs (or CPUs) over a trial's share,
    at most ``max_concurrent``."""
    from study.boundary import cluster_slots

    slots = cluster_slots({"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
    return min(slots, spec.max_concurrent or slots)


def param_space(spec: StudySpec, pack_size: int = 1, slots: int = 1) -> dict[str, Any]:
    """The Tune param space. Grid: one grid cell per pack, ``{"pack": [config, ...]}`` with at most
    ``pack_size`` of the spec's effective configs (resolved once, at spec time), balanced over ``slots``
    trials side by side (``plan_packs``). Other searchers propose every pack themselves: ``{}``."""
    if spec.searcher.type != "grid":
        return {}
    from ray import tune

    from trainables.engine import plan_packs

    cells = spec.cells()
    packs = [[cells[i] for i in pack] for pack in plan_packs(cells, pack_size, slots)]
    return {"pack": tune.grid_search(packs), "objective": spec.objective.metric, "mode": spec.objective.mode}


def _searcher(spec: StudySpec, pack_size: int = 1, study_dir: Path | None = None) -> Any:
    if spec.searcher.type == "grid":
        return None
    if spec.searcher.type == "boundary":
        from study.boundary import from_spec

        return from_spec(spec, pack_size=pack_size, record_dir=study_dir)
    from study.suggest import optuna_packs

    return optuna_packs(spec)


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


def ray_address(address: str | None) -> str | None:
    """The Ray a study joins: ``address``, else ``RAY_ADDRESS`` (set by the user, or by ``ray job submit`` for its
    entrypoint), else None: a new local Ray of the study's own, never the one the last ``ray start`` on this
    machine recorded. ``auto`` is ``clphase ray up``'s head while it runs, else the Ray Ray's ``auto`` finds. A
    ``host:port`` where nothing accepts a connection is refused at once (Ray would retry it for minutes)."""
    given = address or os.environ.get("RAY_ADDRESS") or None
    named = "--address" if address else "RAY_ADDRESS"
    from study import local_ray

    if given == "auto" and (head := local_ray.joined_head(given)):  # `clphase ray up`'s head, while it runs
        given = head["address"]
    if given == "auto":  # the Ray the last `ray start` on this machine recorded: found and checked here, not by
        from ray._private.services import get_ray_address_from_environment  # ray.init's minutes of retries

        try:
            given = get_ray_address_from_environment("auto", None)
        except (ConnectionError, ValueError) as err:
            raise StudyError(f"{named} auto finds no running Ray ({err}). Start one (clphase ray up, ray start --head "
                             f"or ray up), or leave out {named} to run the study on a Ray of its own") from None
    if given and "://" not in given:
        host, _, port = given.rpartition(":")
        if host and port.isdigit():
            try:
                socket.create_connection((host, int(port)), timeout=10).close()
            except OSError as err:
                raise StudyError(
                    f"no Ray answers at {given} ({named}): {err.strerror or err}. Start it (clphase ray up, ray start "
                    f"--head or ray up), or leave out {named} to run the study on a Ray of its own") from None
    return given


def init_ray(address: str | None, verbose: bool) -> bool:
    """Connect to ``address`` or start Ray on this machine; True if this call started Ray.

    A local Ray listens on loopback only. Ray puts a node on the machine's address (it rewrites even an
    explicit ``127.0.0.1``), and its metrics endpoints (autoscaler monitor, dashboard head, dashboard
    agent), which answer anyone, then listen on every interface, as do the GCS, raylet and worker gRPC
    ports. Ray's local-only mode (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``) keeps the node, and so every
    one of these ports, on 127.0.0.1: the variable reaches Ray's processes through the environment (the
    runner restores it afterwards); this driver imported Ray before it was set, so it is told directly.
    Without ``address`` (see ``ray_address``) the Ray is a new one of this study's own (``address="local"``): a
    bare ``ray.init()`` would join the Ray the last ``ray start`` on this machine recorded, and wait for minutes
    on one that has died.
    """
    import ray
    from ray._private import ray_constants

    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = dict(log_to_driver=verbose, logging_level="INFO" if verbose else "WARNING",
                                  configure_logging=True)
    from study import local_ray

    head = local_ray.running() if address else None
    if address and not (head and head["address"] == address):  # a cluster (not ``clphase ray up``'s head)
        ray.init(address=address, **kwargs)
        return True
    # A local Ray, started here or (a loopback address: ``clphase ray up``) joined here.
    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"
    cluster_mode = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        if address:  # token authentication, if the head uses it, is set before Ray's import (see study.cli)
            ray.init(address=address, _node_ip_address="127.0.0.1", **kwargs)
        else:
            # Ray would start one idle worker per CPU for this driver, which no trial uses (Tune gives its trial
            # actors a runtime environment, and those start workers of their own): they only cost CPU beside
            # Ray's start (0.3 to 0.5 s of it on two cores). Ray reads the setting from its processes' environment.
            os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
            ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **kwargs)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = cluster_mode
    return True


def shutdown_ray() -> None:
    """End the Ray ``init_ray`` started. Ray's shutdown stops its processes one by one, each given a second to exit
    on SIGTERM, and the autoscaler monitor's comes after the GCS's: it spends that second reporting its end to the
    GCS that is gone, and is then killed. A study's own single-node Ray has nothing to autoscale, so the monitor is
    killed first, as Ray would after that second (the shutdown takes 0.4 s here instead of 1.3 s)."""
    import ray
    from ray._private import ray_constants

    node = getattr(ray._private.worker, "_global_node", None)  # the Node whose processes this driver started
    for info in (getattr(node, "all_processes", None) or {}).get(ray_constants.PROCESS_TYPE_MONITOR, []):
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            info.process.kill()
            info.process.wait(timeout=1)
    ray.shutdown()


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
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise StudyError(f"{path} cannot be read ({type(err).__name__}: {err}); it records how the study was "
                         "started: restore it, or start a new study with --out") from None
    if not isinstance(state, dict) or "spec" not in state:
        raise StudyError(f"{path} is not a clphase study record; restore it, or start a new study with --out")
    return state


def planned_store(study_dir: Path, tracking_uri: str | None, resume: bool) -> str:
    """The MLflow store ``run_study`` will write this study to (see ``study_store``)."""
    return study_store(_load_state(study_dir) if resume else None, tracking_uri)


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
    spec: StudySpec | None = None,
) -> StudyResult:
    """Run (or continue) one study; returns where its results are and how it went. ``spec``: the spec at
    ``spec_path`` as the caller already loaded it (with ``smoke``), else it is loaded here.

    Everything that can refuse the study does so before Ray starts and before a finished MLflow run
    changes: the study folder must be a child of ``out``, one process at a time writes it (``StudyLock``),
    and a resumed study writes to the store it was recorded in. If this invocation fails after opening
    the parent run, the parent gets back the status it had (a new one: FAILED, or KILLED on Ctrl-C)."""
    clock = {"start": time.perf_counter()}  # when each phase ended, for run_summary.json's timings_s
    if not verbose:  # notices of a study's own machinery, not of the study
        for name, level in _NOTICES.items():
            logging.getLogger(name).setLevel(level)
    path = find_spec(str(spec_path))
    spec = spec if spec is not None else load_spec(path, smoke=smoke)
    address = ray_address(address)
    study_dir = study_folder(out, spec.name)
    study_store(_check_start(spec, study_dir, resume), tracking_uri)  # refusals that need no lock, first
    if not address:
        _check_local_gpus(spec)
    from study.records import StudyRecords
    from study.tracking import MlflowMirror, TrackingUnavailable

    created = not study_dir.exists()
    lock = StudyLock(study_dir)
    lock.acquire()
    mirror: Any = None
    parent: str | None = None
    previous: str | None = None
    opening: concurrent.futures.Future | None = None
    saved_environment: dict[str, str] | None = None
    started_ray = False
    try:
        state = _check_start(spec, study_dir, resume)  # again: another writer may have been here meanwhile
        uri = study_store(state, tracking_uri)
        if resume and not state:
            print(f"[clphase] nothing to resume in {study_dir}; starting the study", flush=True)
        records = StudyRecords(study_dir, spec.name)  # before MLflow: unreadable records change no run
        ended = bool(state) and not _outcome(spec, study_dir, records)[4]  # a resume with nothing left to run
        mirror = MlflowMirror(uri, spec.name, study_dir, _name_keys(spec))
        parent = (state or {}).get("parent_run_id")

        def open_store() -> tuple[str | None, str]:
            return _run_status(mirror, parent), mirror.open(parent, path if not state else None)

        # A server that cannot be reached stops the study before Ray starts. A local sqlite file is opened
        # (its tables created or migrated: seconds) while Ray starts; if it fails, Ray is shut down again.
        opening = None
        if mirror.tracking_uri.startswith("sqlite:"):
            pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="clphase-store")
            opening = pool.submit(open_store)
            pool.shutdown(wait=False)  # its one thread ends with the task
            clock["checked"] = time.perf_counter()
            if not ended:
                saved_environment = _tune_environment(verbose)
                started_ray = init_ray(address, verbose)
            clock["ray"] = time.perf_counter()
        clock.setdefault("checked", time.perf_counter())
        try:
            previous, parent_id = opening.result() if opening else open_store()
        except TrackingUnavailable as err:
            raise StudyError(f"{err}. Start the server, or choose another store with --tracking-uri.") from None
        clock["store"] = time.perf_counter()
        if opening is None:
            if not ended:
                saved_environment = _tune_environment(verbose)
                started_ray = init_ray(address, verbose)
            clock["ray"] = time.perf_counter()
        if not state:
            shutil.copyfile(path, study_dir / "spec.yaml")
            state = {"spec": spec.model_dump(mode="json"), "smoke": smoke, "parent_run_id": parent_id,
                     "tracking_uri": mirror.tracking_uri, "spec_path": str(path.resolve())}
            _save_state(study_dir, state)
        if resume and records.trials:
            from study.callback import config_of

            mirror.sync(records, config_of)  # whatever the last invocation could not write
        if ended:
            print("[clphase] every trial of the study has ended: nothing to run, Ray is not started", flush=True)
            return _conclude(spec, spec_path, study_dir, records, mirror, parent_id, clock, None, time.time(),
                             ran=False)
        return _sweep(spec, spec_path, study_dir, records, mirror, parent_id, resume=resume, address=address,
                      verbose=verbose, trainable=trainable, clock=clock)
    except BaseException as err:
        if opening is not None:
            opening.exception()  # the store is not written from two threads
        if mirror is not None and (mirror.parent_id or parent):
            mirror.parent_id = mirror.parent_id or parent
            mirror.close(previous if previous in _ENDED else "KILLED" if isinstance(err, KeyboardInterrupt)
                         else "FAILED")
        raise
    finally:
        if started_ray:
            shutdown_ray()
        if saved_environment is not None:
            os.environ.clear()
            os.environ.update(saved_environment)
        lock.release()
        if created:
            with contextlib.suppress(OSError):
                study_dir.rmdir()  # a study that did not start leaves no empty folder


_ENDED = ("FINISHED", "FAILED", "KILLED")
_NOTICES = {"ray._private.authentication.authentication_token_setup": logging.ERROR,  # a local Ray's default token
            "mlflow.store.db.utils": logging.WARNING}  # MLflow creating or migrating a new store's tables


def _run_status(mirror: Any, run_id: str | None) -> str | None:
    """The status of an existing parent run, to give back if this invocation fails (None: unknown)."""
    if not run_id:
        return None
    try:
        return str(mirror.client.get_run(run_id).info.status)
    except Exception:  # noqa: BLE001 (an unreachable store is reported by mirror.open)
        return None


def study_folder(out: str | Path, name: str) -> Path:
    """``<out>/<name>``, resolved; a name that resolves anywhere but directly inside ``out`` is refused."""
    out_dir = Path(out).expanduser().resolve()
    if out_dir.exists() and not out_dir.is_dir():
        raise StudyError(f"--out {out} is a file; give a folder for the studies")
    study_dir = (out_dir / name).resolve()
    if study_dir.parent != out_dir or study_dir.name != name:
        raise StudyError(f"the study name {name!r} resolves to {study_dir}, not to a folder inside --out {out_dir}; "
                         "name the study with a plain folder name")
    return study_dir


def _check_start(spec: StudySpec, study_dir: Path, resume: bool) -> dict[str, Any] | None:
    """The study's recorded state, if the study may start or continue from it; raises StudyError if not."""
    state = _load_state(study_dir)
    if state and not resume and (writer := StudyLock(study_dir).live_holder()):
        raise StudyError(f"{study_dir} is being written by another clphase run ({writer}); wait for it to end")
    if state and not resume:
        raise StudyError(
            f"{study_dir} already holds the study {spec.name!r}; continue it with --resume, "
            f"or write a new one elsewhere with --out"
        )
    if state:
        changed = _spec_changes(state.get("spec") or {}, spec)
        if changed:
            raise StudyError(
                f"the spec changed since {study_dir} was started (keys: {', '.join(changed)}); a resumed study "
                "runs the spec it started with: restore it, or start a new study with --out"
            )
    return state


def _spec_changes(recorded: dict[str, Any], spec: StudySpec) -> list[str]:
    """Top-level keys whose value differs from the recorded spec's; a key that an older clphase did not
    record counts as its default."""
    now = spec.model_dump(mode="json")
    defaults = type(spec).model_construct(name=spec.name).model_dump(mode="json")
    return sorted(k for k, v in now.items() if recorded.get(k, defaults.get(k)) != v)


def normalise_store(uri: str) -> str:
    """A sqlite store with a relative path made absolute, so that a study names one store from any folder."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/") and uri != prefix + ":memory:":
        return prefix + str(Path(uri[len(prefix):]).resolve())
    return uri


def study_store(state: dict[str, Any] | None, tracking_uri: str | None) -> str:
    """The MLflow store a study writes to: the one asked for (``--tracking-uri``, else
    ``$MLFLOW_TRACKING_URI``), else the one its ``study.json`` records, else MLflow's default. A resumed
    study's parent run lives in its recorded store: asking for another one is refused."""
    asked = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    recorded = (state or {}).get("tracking_uri")
    if asked and recorded and normalise_store(asked) != normalise_store(recorded):
        source = "--tracking-uri" if tracking_uri else "MLFLOW_TRACKING_URI"
        raise StudyError(f"this study is recorded in the MLflow store {recorded} (study.json), but {source} names "
                         f"{asked}; resume it with --tracking-uri {recorded}, or start a new study with --out")
    if asked or recorded:
        return normalise_store(asked or recorded)
    from study.tracking import resolve_tracking_uri

    return normalise_store(resolve_tracking_uri(None))


class StudyLock:
    """One writer per study folder: an exclusive ``flock`` on ``<study>/.lock``, a file that names its
    holder (pid, host, command, start). The kernel drops the lock when its holder dies, however it dies,
    so the file a killed run leaves behind is taken over by the next run; a live holder is named."""

    def __init__(self, study_dir: Path):
        self.path = Path(study_dir) / _LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as err:
                raise StudyError(f"cannot write the study folder {self.path.parent}: {err.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read(fd)
                os.close(fd)
                raise StudyError(f"{self.path.parent} is being written by another clphase run ({holder}); "
                                 "wait for it to end (or stop it), then --resume") from None
            try:  # a holder releasing just now unlinks the file: lock the file that is there
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": " ".join(sys.argv),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps(holder).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            os.close(self._fd)
            self._fd = None

    def live_holder(self) -> str | None:
        """The holder the lock file names, if that process is alive on this machine (read only: no lock is
        taken, so nothing races with a run that is acquiring it)."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return None
        try:
            holder = json.loads(os.pread(fd, 65536, 0) or b"{}")
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        if not isinstance(holder, dict) or holder.get("host") != socket.gethostname() \
                or not isinstance(holder.get("pid"), int):
            return None
        try:
            os.kill(holder["pid"], 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass
        return self._describe(holder)

    @staticmethod
    def _describe(holder: dict[str, Any]) -> str:
        if not holder:
            return "a process that is just starting"
        return (f"pid {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}: "
                f"{holder.get('command')}")

    @staticmethod
    def _read(fd: int) -> str:
        try:
            holder = json.loads(os.pread(fd, 65536, 0) or b"{}")
        except (OSError, ValueError):
            holder = {}
        return StudyLock._describe(holder if isinstance(holder, dict) else {})


def _sweep(
    spec: StudySpec,
    spec_path: str | Path,
    study_dir: Path,
    records: Any,
    mirror: Any,
    parent_id: str,
    *,
    resume: bool,
    address: str | None,
    verbose: bool,
    trainable: Callable[[dict[str, Any]], None] | None,
    clock: dict[str, float],
) -> StudyResult:
    """The sweep itself, once ``run_study`` holds the study folder and its parent run; ``clock``: when each
    phase so far ended (``time.perf_counter``), to which the sweep adds its own."""
    from study.callback import StudyCallback
    from study.progress import ProgressLine

    # Tune's result-file loggers are off (see _tune_environment), so its end-of-run summary cannot read them.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    try:
        from ray import tune

        if address:
            _check_cluster_gpus(spec)
        pack_size = resolve_pack_size(spec)
        if trainable is None:
            from trainables.contrastive import contrastive as trainable
        fn = tune.with_resources(trainable, {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu})
        already = sum(records.is_finished(t) for t in records.trials)
        progress = ProgressLine(spec.name, spec.n_trials(), spec.objective.metric, spec.objective.mode,
                                already_done=already)
        callback = StudyCallback(records, mirror, progress, spec.objective.metric,
                                 dedupe_cells=spec.searcher.type in ("grid", "boundary") and spec.num_samples == 1)
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
                # the grid's packs; a searcher proposes every pack (boundary: and says when it is done, num_samples -1)
                param_space=param_space(spec, pack_size, pack_slots(spec)),
                tune_config=tune.TuneConfig(
                    metric=spec.objective.metric,
                    mode=spec.objective.mode,
                    search_alg=_searcher(spec, pack_size, study_dir),
                    scheduler=_scheduler(spec),
                    num_samples=-1 if spec.searcher.type == "boundary" else spec.num_samples,
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
        if pack_size > 1:
            print(f"[clphase] {spec.n_trials()} configs in packs of up to {pack_size} per trial", flush=True)
        start = time.time()
        clock["setup"] = time.perf_counter()
        tuner.fit()
        clock["tune"] = time.perf_counter()
        progress.close()
    finally:
        records.flush(force=True)
    return _conclude(spec, spec_path, study_dir, records, mirror, parent_id, clock, callback.first_start, start)


def _outcome(spec: StudySpec, study_dir: Path, records: Any) -> tuple[Any, int, int, int, bool]:
    """The recorded trials (a frame), how many finished and failed, how many the study plans, and whether
    some are still to run (a boundary search: until its searcher stopped and every config it proposed ended)."""
    frame = records.trials_frame()
    finished = int((frame["status"] == "TERMINATED").sum()) if len(frame) else 0
    failed = int((frame["status"] == "ERROR").sum()) if len(frame) else 0
    planned = spec.n_trials()
    if spec.searcher.type == "boundary":
        from study.boundary import SUMMARY_FILE

        search = json.loads((study_dir / SUMMARY_FILE).read_text()) if (study_dir / SUMMARY_FILE).exists() else {}
        planned = int(search.get("configs") or planned)
        return frame, finished, failed, planned, not search.get("stop") or finished + failed < planned
    return frame, finished, failed, planned, finished + failed < planned


def _conclude(spec: StudySpec, spec_path: str | Path, study_dir: Path, records: Any, mirror: Any, parent_id: str,
              clock: dict[str, float], first_start: float | None, start: float, ran: bool = True) -> StudyResult:
    """After the trials: MLflow caught up, the baselines, the parent run's status and run_summary.json (which
    a resume that ran nothing (``ran`` False) leaves as the invocation that ran the trials wrote it)."""
    from study.callback import config_of

    frame, finished, failed, planned, interrupted = _outcome(spec, study_dir, records)
    if mirror.dirty and not mirror.sync(records, config_of):
        print(f"[clphase] MLflow ({mirror.tracking_uri}) is still unreachable: every result is in "
              f"{study_dir}/*.parquet; once the store is back, `clphase run {spec_path} --resume` writes the "
              "missing MLflow records (nothing is retrained).", flush=True)
    # --- baselines (oracles and input, issue 16): measured once per setting, kept across --resume ---
    from study.baselines import ensure_baselines

    ensure_baselines(spec, study_dir, None if mirror.dirty else mirror.tracking_uri, parent_id)
    # --- end baselines ---
    mirror.close("KILLED" if interrupted else ("FAILED" if finished == 0 and failed else "FINISHED"))
    best = None
    metric = spec.objective.metric
    if finished and metric in frame:
        ok = frame[frame["status"] == "TERMINATED"].dropna(subset=[metric])
        if len(ok):
            idx = ok[metric].idxmax() if spec.objective.mode == "max" else ok[metric].idxmin()
            best = ok.loc[idx].to_dict()
    if ran or not (study_dir / "run_summary.json").exists():
        for phase in ("setup", "tune"):  # a resume that ran nothing has no such phase
            clock.setdefault(phase, clock["ray"])
        summary = {"trials": planned, "finished": finished, "failed": failed,
                   "wall_s": round(time.time() - start, 2), "interrupted": interrupted,
                   "timings_s": _timings(clock, first_start), "slots": trial_slots(spec)}
        (study_dir / "run_summary.json").write_text(json.dumps(summary, indent=2))
    return StudyResult(study_dir, planned, finished, failed, best, parent_id, mirror.tracking_uri, interrupted)


def _timings(clock: dict[str, float], first_start: float | None) -> dict[str, float]:
    """Where this invocation's time went, in seconds, phase by phase: ``prepare`` (spec, lock, refusals,
    imports), ``ray_start`` (starting or joining Ray; a new sqlite store is created beside it), ``store_wait`` (the
    MLflow store still opening once Ray was up), ``setup`` (packs, searcher, Tuner), ``to_first_trial`` (Tune
    until its first trial started: trial processes start and import torch), ``trials`` (from there to Tune's
    end), ``after`` (baselines, MLflow close) and ``total`` (up to this summary; Ray's shutdown follows)."""
    now = time.perf_counter()
    ray_first = clock["ray"] <= clock["store"]  # a sqlite store opens while Ray starts; a server is asked first
    ready = max(clock["ray"], clock["store"])
    first = min(max(first_start or clock["tune"], clock["setup"]), clock["tune"])
    marks = {"prepare": clock["checked"] - clock["start"],
             "ray_start": clock["ray"] - (clock["checked"] if ray_first else clock["store"]),
             "store_wait": clock["store"] - (clock["ray"] if ray_first else clock["checked"]),
             "setup": clock["setup"] - ready,
             "to_first_trial": first - clock["setup"], "trials": clock["tune"] - first,
             "after": now - clock["tune"], "total": now - clock["start"]}
    return {k: round(v, 3) for k, v in marks.items()}


def describe(result: StudyResult, metric: str, resume: str = "clphase run SPEC --resume") -> str:
    """What a study's end prints; ``resume``: the command that continues it."""
    lines = [f"{result.n_finished}/{result.n_trials} trials finished, {result.n_failed} failed"]
    if result.best is not None:
        lines.append(f"best {metric} = {result.best.get(metric):.4g} (trial {result.best.get('trial_id')})")
    tables = [name for name in ("trials.parquet", "history.parquet") if (result.study_dir / name).exists()]
    lines.append(f"results:  {result.study_dir}/{', '.join(tables) or '(no table: no trial reported)'}")
    lines.append(f"MLflow:   {result.tracking_uri}  (browse with: clphase ui)")
    if result.interrupted:
        lines.append(f"the study did not finish: continue it with  {resume}")
    return "\n".join(lines)


