"""MLflow mirror of a study, written by the driver only.

One experiment per study, tagged as model training so that MLflow's UI opens on its runs; one
parent run per study (a resumed study continues it) whose description is the spec's question and
expectation (``clphase analyze`` adds the answer: boundaries, theory agreement, trial counts); one
child run per config (tags ``mlflow.parentRunId``, ``trial_id``, ``capacity`` and ``cell``; params =
config and ``capacity``; every reported metric at its step, ``step`` itself being MLflow's step;
FINISHED or FAILED), named by what varies in the study (``mlp-32x2 d=8 s0``). Parquet is the source
of truth: when the tracking store cannot be reached mid-study, the mirror keeps going without it and
``sync`` writes what is missing once the store answers again, or on ``--resume``.
"""

from __future__ import annotations

import concurrent.futures
import logging
import numbers
import os
import re
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # MLflow is imported where a store is written (1 to 2 s): a sqlite store opens while Ray starts
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    from study.records import StudyRecords

# A server that does not answer should fail fast, not after minutes of retries.
_HTTP_DEFAULTS = {
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # one "View run" line per trial, and a get_run each
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}
_PARAM_BATCH = 100  # MLflow's limit of params per log_batch
# MLflow 3 opens an experiment on its GenAI overview (traces) unless the experiment says it holds model runs.
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}
DESCRIPTION_TAG = "mlflow.note.content"  # what the UI shows as a run's description
_CAPACITY_KEYS = ("encoder", "width", "depth", "hidden")  # what analysis.load.capacity_of labels
# How a run name writes a key: short, so that what varies is visible in the UI's truncated names and legends.
SHORT_NAMES = {"embedding_dim": "d", "aug_noise": "noise", "temperature": "tau", "n_invariant": "inv",
               "batch_size": "bs", "weight_decay": "wd", "n_clusters": "K", "nuisance_std": "nuis",
               "latent_dim": "latent", "separation": "sep", "mixing_layers": "mix"}


def spec_head(text: str) -> dict[str, str]:
    """The labelled paragraphs of a spec's head comment (``# Question: ...``, indented continuation lines):
    ``{"question": ..., "run": ..., "expect": ...}``, each joined into one line and capitalised."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        label = re.match(r"^# ([A-Z][A-Za-z]*):\s*(.*)$", line)
        if label:
            current = label.group(1).lower()
            sections[current] = [label.group(2).strip()]
        elif current is not None and line[1:].strip():
            sections[current].append(line[1:].strip())
    joined = {k: " ".join(v) for k, v in sections.items()}
    return {k: v[:1].upper() + v[1:] for k, v in joined.items()}


def spec_description(text: str) -> str:
    """The parent run's description before the study is analysed: its question and expectation (markdown)."""
    head = spec_head(text)
    parts = [f"**Question.** {head['question']}" if "question" in head else "",
             f"**Expectation.** {head['expect']}" if "expect" in head else "",
             "*The answer (fitted boundaries, agreement with the theory) appears here after `clphase analyze`.*"]
    return "\n\n".join(p for p in parts if p)


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run_name(config: Mapping[str, Any], keys: list[str]) -> str:
    """What varies (``keys``) in the study, shortest form first: capacity, then the other axes, then the seed
    (``mlp-32x2 d=8 s0``)."""
    from analysis.load import capacity_of

    parts = [capacity_of(config)] if any(k in keys for k in _CAPACITY_KEYS) and "encoder" in config else []
    for key in keys:
        if key in (*_CAPACITY_KEYS, "capacity", "seed") or key not in config:
            continue
        parts.append(f"{SHORT_NAMES.get(key, key)}={_number(config[key])}")
    if "seed" in keys and "seed" in config:
        parts.append(f"s{config['seed']}")
    return " ".join(parts)


def child_params(config: Mapping[str, Any]) -> list[Param]:
    """The config as MLflow params (numbers as Python writes them: ``8``, ``0.1``), plus ``capacity``."""
    from mlflow.entities import Param

    from analysis.load import capacity_of

    params = {k: str(v) for k, v in config.items()}
    if "encoder" in config:
        params["capacity"] = capacity_of(config)
    return [Param(k, v) for k, v in params.items()]


def artifact_location(tracking_uri: str) -> str | None:
    """Artifacts of a sqlite store live beside its database (``mlartifacts/``), not in ``./mlruns`` of
    whatever folder the driver happens to run in; a server decides for itself (None)."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):]).resolve()
        return (db.parent / "mlartifacts").as_uri()
    return None


DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


class TrackingUnavailable(RuntimeError):
    """The tracking store cannot be reached when a study starts."""


def resolve_tracking_uri(tracking_uri: str | None = None) -> str:
    """``tracking_uri``, else ``MLFLOW_TRACKING_URI``, else the store this process set with
    ``mlflow.set_tracking_uri``, else MLflow's default ``sqlite:///mlflow.db`` (in the working folder; never
    the legacy ``./mlruns`` file store MLflow keeps for a folder that holds one). Needs no MLflow import."""
    if tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"):
        return tracking_uri or os.environ["MLFLOW_TRACKING_URI"]
    if "mlflow" in sys.modules and sys.modules["mlflow"].is_tracking_uri_set():
        return sys.modules["mlflow"].get_tracking_uri()
    return DEFAULT_TRACKING_URI


class MlflowMirror:
    def __init__(self, tracking_uri: str | None, study: str, study_dir: str | Path, name_keys: list[str]):
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        self.study = study
        self.study_dir = str(Path(study_dir).resolve())
        self.name_keys = name_keys
        self.parent_id: str | None = None
        self.children: dict[str, str] = {}  # trial_id -> run_id
        self.logged_step: dict[str, int] = {}  # trial_id -> last step in MLflow
        self.ended: set[str] = set()  # trial_ids whose child run MLflow already holds as FINISHED/FAILED
        # what a child still lacks, written with its next batch (one store call per report, not three)
        self.pending_params: dict[str, list[Param] | None] = {}  # None: all of the config's, computed when written
        self.tagged: dict[str, tuple[Any, Any]] = {}  # trial_id -> the (node_id, node_ip) MLflow holds
        self._dirty = False  # something failed to reach the store and awaits sync
        self.outage = False  # the store is down (said once, until it answers again)
        self._last_retry = 0.0
        self._client: MlflowClient | None = None
        # A trial's start, reports and end are written on one thread of their own, in order: the Tune loop,
        # which calls them, goes on to its next trial at once (each costs the store 10 to 30 ms).
        self._writer: concurrent.futures.ThreadPoolExecutor | None = None
        self._last: concurrent.futures.Future | None = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks: no client, thread or pending write
        self.drain()
        state = dict(self.__dict__)
        state.update(_client=None, _writer=None, _last=None)
        return state

    @property
    def dirty(self) -> bool:
        """Whether something failed to reach the store and awaits ``sync`` (once the queued writes are done)."""
        self.drain()
        return self._dirty

    def _queue(self, action: Any) -> None:
        if self._writer is None:
            import mlflow.entities  # noqa: F401 (what the writes import, imported here: not beside the Tune loop's)

            import analysis.load  # noqa: F401
            import study.records  # noqa: F401

            self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="clphase-mlflow")
        self._last = self._writer.submit(action)

    def drain(self) -> None:
        """Wait until every queued write is done."""
        if self._last is not None:
            self._last.result()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            if self.tracking_uri.startswith("http"):
                for key, value in _HTTP_DEFAULTS.items():
                    os.environ.setdefault(key, value)
                logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)  # we report outages once
            from mlflow import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    # --- the parent ---------------------------------------------------------------------------
    def open(self, parent_id: str | None, spec_path: str | Path | None) -> str:
        """Find or create the experiment and the parent run; raises TrackingUnavailable."""
        try:
            experiment = self.client.get_experiment_by_name(self.study)
            if experiment is None:
                experiment_id = self.client.create_experiment(
                    self.study, artifact_location=artifact_location(self.tracking_uri), tags=EXPERIMENT_TAGS)
            else:
                experiment_id = experiment.experiment_id
                for key, value in EXPERIMENT_TAGS.items():  # an experiment made by an earlier clphase
                    if key not in experiment.tags:
                        self.client.set_experiment_tag(experiment_id, key, value)
            self.experiment_id = experiment_id
            if parent_id:
                self.client.update_run(parent_id, status="RUNNING")
                self._load_children(parent_id)
            else:
                tags = {"clphase.role": "parent", "clphase.study_dir": self.study_dir}
                if spec_path is not None:
                    tags[DESCRIPTION_TAG] = spec_description(Path(spec_path).read_text())
                run = self.client.create_run(
                    experiment_id, run_name=f"{self.study} {time.strftime('%Y-%m-%d %H:%M')}", tags=tags)
                parent_id = run.info.run_id
                if spec_path is not None:
                    self.client.log_artifact(parent_id, str(spec_path))
        except Exception as err:  # noqa: BLE001 (any failure here means the store is unusable)
            raise TrackingUnavailable(
                f"cannot reach the MLflow tracking store {self.tracking_uri}: {type(err).__name__}: {err}"
            ) from None
        self.parent_id = parent_id
        return parent_id

    def _load_children(self, parent_id: str) -> None:
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_id}'", max_results=50000
        )
        for run in runs:
            trial_id = run.data.tags.get("trial_id")
            if trial_id:
                self.children[trial_id] = run.info.run_id
                if not run.data.params:  # created, then the driver stopped before its first batch
                    self.pending_params[trial_id] = None
                if run.data.tags.get("node_id"):
                    self.tagged[trial_id] = (run.data.tags["node_id"], run.data.tags.get("node_ip") or None)
                if run.info.status in ("FINISHED", "FAILED"):
                    self.ended.add(trial_id)
                # every report logs all its metrics at its step: one metric's history gives the last step
                key = next(iter(sorted(run.data.metrics)), None)
                history = self.client.get_metric_history(run.info.run_id, key) if key else []
                self.logged_step[trial_id] = max((int(m.step) for m in history), default=-1)

    def close(self, status: str) -> None:
        self.drain()
        if self._writer is not None:
            self._writer.shutdown()
            self._writer = None
        if status == "KILLED":  # trials cut short end with their study, not RUNNING for ever (a resume goes on)
            self._guard(self._end_running_children)
        self._guard(lambda: self.client.set_terminated(self.parent_id, status))

    def _end_running_children(self) -> None:
        experiment = getattr(self, "experiment_id", None)
        if experiment is None or self.parent_id is None:
            return
        running = self.client.search_runs(
            [experiment], filter_string=f"tags.mlflow.parentRunId = '{self.parent_id}' and attributes.status = "
            "'RUNNING'", max_results=50000)
        for run in running:
            self.client.set_terminated(run.info.run_id, "KILLED")

    def log_artifacts(self, paths: list[Path], artifact_path: str | None = None) -> None:
        self.drain()
        for path in paths:
            self._guard(lambda p=path: self.client.log_artifact(self.parent_id, str(p), artifact_path))

    # --- the children -------------------------------------------------------------------------
    def _guard(self, action: Any) -> bool:
        """Run one MLflow call; a failure marks the mirror dirty instead of stopping the study."""
        try:
            action()
            return True
        except Exception as err:  # noqa: BLE001
            if not self.outage:
                print(f"\n[clphase] MLflow store unreachable ({type(err).__name__}); results go on to "
                      f"Parquet and are written to MLflow when it answers again.", flush=True)
            self._dirty = self.outage = True
            return False

    def _child(self, trial_id: str, config: Mapping[str, Any]) -> str:
        if trial_id not in self.children:
            from analysis.load import capacity_of
            from study.records import cell_id

            tags = {"mlflow.parentRunId": self.parent_id, "trial_id": trial_id, "cell": cell_id(config)}
            if "encoder" in config:
                tags["capacity"] = capacity_of(config)
            run = self.client.create_run(
                self.experiment_id, run_name=run_name(config, self.name_keys) or trial_id, tags=tags)
            self.pending_params[trial_id] = child_params(config)
            self.children[trial_id] = run.info.run_id
            self.logged_step[trial_id] = -1
        return self.children[trial_id]

    def trial_started(self, trial_id: str, config: Mapping[str, Any]) -> None:
        config = dict(config)
        self._queue(lambda: self._guard(lambda: self._child(trial_id, config)))

    def _node_tags(self, trial_id: str, node_id: Any, node_ip: Any) -> list[RunTag]:
        """The node tags to write: none while MLflow holds these (a trial moved to another node is re-tagged)."""
        from mlflow.entities import RunTag

        node = tuple(v if isinstance(v, str) and v else None for v in (node_id, node_ip))
        if not any(node) or self.tagged.get(trial_id) == node:
            return []
        return [RunTag(k, v) for k, v in zip(("node_id", "node_ip"), node, strict=True) if v]

    def _batch(self, run_id: str, trial_id: str, config: Mapping[str, Any], metrics: list[Metric],
               tags: list[RunTag]) -> None:
        """One ``log_batch`` where MLflow's limits allow (1000 items, 100 params): the child's params
        if still pending, ``metrics`` and ``tags``; the bookkeeping follows only what the store took."""
        params = self.pending_params.get(trial_id, [])
        if params is None:
            params = child_params(config)
        first = True
        while first or params or metrics:
            take_p = params[:_PARAM_BATCH]
            room = 1000 - len(take_p) - (len(tags) if first else 0)
            take_m = metrics[:room]
            self.client.log_batch(run_id, metrics=take_m, params=take_p, tags=tags if first else [])
            params, metrics, first = params[len(take_p):], metrics[len(take_m):], False
            if trial_id in self.pending_params:
                self.pending_params[trial_id] = params
        if not params:
            self.pending_params.pop(trial_id, None)
        node = {t.key: t.value for t in tags if t.key in ("node_id", "node_ip")}
        if node:
            self.tagged[trial_id] = (node.get("node_id"), node.get("node_ip"))

    def _log(self, trial_id: str, config: Mapping[str, Any], rows: list[Mapping[str, Any]]) -> None:
        from mlflow.entities import Metric

        run_id = self._child(trial_id, config)
        now = int(time.time() * 1000)
        # ``step`` is MLflow's step, not a metric; counts (n_params, diverged, pack_size) go as integers
        metrics = [
            Metric(k, int(v) if isinstance(v, numbers.Integral) else float(v), now, int(row["step"]))
            for row in rows if int(row["step"]) > self.logged_step[trial_id]
            for k, v in row.items()
            if k not in ("trial_id", "step") and isinstance(v, numbers.Real) and not isinstance(v, bool)
        ]
        tags = self._node_tags(trial_id, rows[-1].get("node_id"), rows[-1].get("node_ip")) if rows else []
        if metrics or tags or trial_id in self.pending_params:
            self._batch(run_id, trial_id, config, metrics, tags)
        if rows:
            self.logged_step[trial_id] = max(self.logged_step[trial_id], max(int(r["step"]) for r in rows))

    def report(self, trial_id: str, config: Mapping[str, Any], row: Mapping[str, Any]) -> None:
        config, row = dict(config), dict(row)
        self._queue(lambda: self._dirty or self._guard(lambda: self._log(trial_id, config, [row])))

    def _end(self, trial_id: str, config: Mapping[str, Any], status: str, error: str | None,
             node_id: str | None = None, node_ip: str | None = None) -> None:
        run_id = self._child(trial_id, config)
        tags = self._node_tags(trial_id, node_id, node_ip)
        if error:
            from mlflow.entities import RunTag

            tags.append(RunTag("error", error[:5000]))
        if tags or trial_id in self.pending_params:
            self._batch(run_id, trial_id, config, [], tags)
        self.client.set_terminated(run_id, "FINISHED" if status == "TERMINATED" else "FAILED")
        self.ended.add(trial_id)

    def trial_ended(self, trial_id: str, config: Mapping[str, Any], status: str, error: str | None,
                    node_id: str | None = None, node_ip: str | None = None) -> None:
        config = dict(config)
        self._queue(lambda: self._dirty or self._guard(lambda: self._end(trial_id, config, status, error, node_id,
                                                                          node_ip)))

    # --- catching up ----------------------------------------------------------------------------
    def sync(self, records: StudyRecords, config_of: Any) -> bool:
        """Write to MLflow whatever Parquet holds and MLflow lacks. True when nothing is missing."""
        def catch_up() -> None:
            by_trial: dict[str, list[Mapping[str, Any]]] = {}
            for (trial_id, _), row in sorted(records.history.items(), key=lambda kv: kv[0][1]):
                by_trial.setdefault(trial_id, []).append(row)
            for trial_id, row in records.trials.items():
                config = config_of(row)
                self._log(trial_id, config, by_trial.get(trial_id, []))
                if row.get("status") in ("TERMINATED", "ERROR") and trial_id not in self.ended:
                    text = {k: row.get(k) if isinstance(row.get(k), str) else None
                            for k in ("error", "node_id", "node_ip")}
                    self._end(trial_id, config, row["status"], text["error"], text["node_id"], text["node_ip"])

        self.drain()
        self._dirty = False
        if self._guard(catch_up):
            self.outage = False
            return True
        return False

    def retry_if_due(self, records: StudyRecords, config_of: Any, every_s: float = 20.0) -> None:
        if self._dirty and time.time() - self._last_retry > every_s:  # a write still queued may set it later
            self._last_retry = time.time()
            if self.sync(records, config_of):
                print("\n[clphase] MLflow store answers again; missing records written.", flush=True)
