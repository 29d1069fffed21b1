"""``clphase``: run studies, analyse them, browse them.

    clphase run SPEC [--smoke] [--resume] [--out DIR] [--address ADDR] [--tracking-uri URI] [--max-cells N]
                     [--verbose]
    clphase analyze STUDY_DIR_OR_PARQUET [...]
    clphase verify [--smoke] [--claim NAME] [--address ADDR] [--docs DIR]
    clphase bench [--steps N] [--ways abc] [--pack-size K|auto] [--out FILE]
    clphase ui [--tracking-uri URI] [--port PORT] [--workers N]
    clphase ray up [--port PORT] [--num-cpus N] | down | status
    clphase specs
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import Any


def _join_local_ray(address: str | None) -> None:
    """Before Ray is imported: a driver joining a loopback head speaks its token authentication (Ray reads
    the mode once, at import)."""
    from study import local_ray

    if local_ray.joined_head(address or os.environ.get("RAY_ADDRESS")) and "RAY_AUTH_MODE" not in os.environ:
        os.environ.update(local_ray.auth_environment())


def _run(args: argparse.Namespace) -> int:
    _join_local_ray(args.address)
    from study.runner import StudyError, describe, planned_store, run_study, study_folder
    from study.spec import SpecError, find_spec, load_spec

    try:  # every refusal (spec, folder, lock, store, GPUs) comes before Ray or MLflow starts: exit 2
        path = find_spec(args.spec)
        spec = load_spec(path, smoke=args.smoke, max_cells=args.max_cells)
        study_dir = study_folder(args.out, spec.name)
        print(f"[clphase] study {spec.name!r}: {spec.n_trials()} trials "
              f"({'smoke' if args.smoke else 'full'} spec), results in {study_dir}, "
              f"MLflow at {planned_store(study_dir, args.tracking_uri, args.resume)}", flush=True)
        result = run_study(path, smoke=args.smoke, resume=args.resume, out=args.out, address=args.address,
                           tracking_uri=args.tracking_uri, verbose=args.verbose, spec=spec)
    except (SpecError, StudyError) as err:
        print(f"clphase: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n[clphase] interrupted; continue with: {_resume_command(args)}", file=sys.stderr)
        return 130
    print(describe(result, spec.objective.metric, _resume_command(args)))
    if result.interrupted:  # Tune takes Ctrl-C itself and ends the study early: not a success for a script
        return 130
    return 1 if result.n_finished == 0 else 0


def _resume_command(args: argparse.Namespace) -> str:
    """The command that continues this study: the same spec, folder and (smoke) variant, with --resume."""
    import shlex

    words = ["clphase", "run", args.spec, "--resume", *(["--smoke"] if args.smoke else [])]
    words += ["--out", str(args.out)] if str(args.out) != "runs" else []
    words += ["--address", args.address] if args.address else []  # a cluster's study goes on on the cluster
    words += ["--max-cells", str(args.max_cells)] if args.max_cells is not None else []
    return shlex.join(words)


def _analyze(argv: list[str]) -> int:
    from analysis.report import main as analyze_main

    return analyze_main(argv)


def _verify(args: argparse.Namespace) -> int:
    _join_local_ray(args.address)
    from study.runner import StudyError
    from study.spec import SpecError
    from study.verify import verify

    try:
        rows = verify(args.claim or None, smoke=args.smoke, out=args.out, tracking_uri=args.tracking_uri,
                      address=args.address, docs=args.docs, verbose=args.verbose)
    except (SpecError, StudyError, ValueError) as err:
        print(f"clphase: error: {err}", file=sys.stderr)
        return 2
    print()
    print(f"{'claim':18s} {'paper':38s} {'verdict':13s} measured")
    for r in rows:
        print(f"{r['claim']:18s} {r['paper']:38s} {r['verdict']:13s} {r['measured']}")
        print(f"{'':18s} rule: {r['rule']}")
        print(f"{'':18s} plots: {r.get('plots') or '-'}")
    out = rows[0]["study_dir"].rsplit("/", 1)[0] if rows else args.out
    print(f"\ntable: {out}/claims.json, {out}/claims.md{'; docs: ' + args.docs + '/claims.md' if args.docs else ''}")
    return 0


_UI_HOST = "127.0.0.1"


def _port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((_UI_HOST, port))
        except OSError:
            return True
    return False


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


# MLflow 3.17's UI picks its GenAI or its model-training view from this URL parameter (else from what the
# browser last chose, GenAI at first), not from the experiment's mlflow.experimentKind tag: links carry it.
_RUNS_VIEW = "workflowType=machine_learning"


def _study_links(uri: str, url: str) -> list[tuple[str, str]]:
    """(study, link to its runs) for every experiment of the store but MLflow's Default one."""
    from mlflow import MlflowClient

    try:
        experiments = MlflowClient(uri).search_experiments(max_results=100)
    except Exception:  # noqa: BLE001 (the links are a convenience; the UI is up)
        return []
    return [(e.name, f"{url}/#/experiments/{e.experiment_id}/runs?{_RUNS_VIEW}")
            for e in sorted(experiments, key=lambda e: e.name) if e.name != "Default"]


def _wait(process: subprocess.Popen, timeout: float | None) -> int:
    """``process.wait(timeout)`` that lets this process's signal handlers run meanwhile: a signal may land on
    another of its threads (a library's), and a blocking ``waitpid`` in the main thread then sleeps on."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return process.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            if deadline is not None and time.monotonic() > deadline:
                raise


def _ui(args: argparse.Namespace) -> int:
    """MLflow's UI for one local user: one web worker, no job consumers (MLflow's GenAI jobs); the URL is
    printed once the server answers; a port already taken is an error (exit 2), not a second server."""
    from study.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith("http"):
        print(f"the tracking store is a server: open {uri} in a browser")
        return 0
    if _port_taken(args.port):
        print(f"clphase ui: error: port {args.port} on {_UI_HOST} is in use (another MLflow UI?); open that one, "
              "or choose another port with --port", file=sys.stderr)
        return 2
    url = f"http://{_UI_HOST}:{args.port}"
    print(f"[clphase] starting the MLflow UI for {uri} ...", flush=True)
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", _UI_HOST,
           "--port", str(args.port), "--workers", str(args.workers)]
    # A process group of its own, signalled as a whole: ``mlflow ui`` forwards a signal to its web worker, which
    # may then finish serving yet not exit (an idle AnyIO worker thread keeps it); signalled itself too, as a
    # terminal's Ctrl-C would, it exits.
    server = subprocess.Popen(cmd, env=env, start_new_session=True)
    stopping: list[int] = []

    def signal_server(signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signum)

    def stop(signum: int, _frame: Any) -> None:  # Ctrl-C or a kill: the server goes too, never left behind
        stopping.append(signum)
        if server.poll() is None:
            signal_server(signum)

    for signum in (signal.SIGINT, signal.SIGTERM):  # explicit: a shell's background job ignores SIGINT
        signal.signal(signum, stop)
    deadline = time.monotonic() + args.wait_s
    while not stopping and not _answers(f"{url}/health"):
        if server.poll() is not None:
            print(f"clphase ui: error: the MLflow UI exited (code {server.returncode}) before answering",
                  file=sys.stderr)
            return server.returncode or 1
        if time.monotonic() > deadline:
            print(f"clphase ui: error: the MLflow UI did not answer on {url} within {args.wait_s:g} s",
                  file=sys.stderr)
            stop(signal.SIGTERM, None)
            _wait(server, 60)
            return 1
        time.sleep(0.5)
    if not stopping:
        lines = [f"MLflow UI on {url}/#/experiments?{_RUNS_VIEW} for {uri} (Ctrl-C to stop)"]
        lines += [f"  {name}: {link}" for name, link in _study_links(uri, url)]
        sys.stdout.write("\n".join(lines) + "\n")  # one write: the server's own log lines do not come between
        sys.stdout.flush()
    try:
        code = _wait(server, None if not stopping else 60)
    except subprocess.TimeoutExpired:
        signal_server(signal.SIGKILL)
        code = server.wait()
    return 0 if stopping else code


def _specs(args: argparse.Namespace) -> int:
    import yaml

    from study.spec import bundled_specs

    for name, path in bundled_specs().items():
        description = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        print(f"{name:24s} {description.strip().splitlines()[0] if description else ''}")
    return 0


def _ray(args: argparse.Namespace) -> int:
    from study import local_ray

    if args.action == "up":
        try:
            address = local_ray.up(args.port, args.num_cpus)
        except RuntimeError as err:
            print(f"clphase: error: {err}", file=sys.stderr)
            return 2
        print(f"local Ray on {address} (loopback only); run studies with  clphase run SPEC --address {address}  "
              "and end it with  clphase ray down")
    elif args.action == "down":
        print(f"local Ray ended ({local_ray.down()} processes)")
    else:
        head = local_ray.running()
        print(f"local Ray on {head['address']}" if head else "no local Ray started by clphase is running")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="clphase", description="Phase diagrams of contrastive learning.")
    sub = parser.add_subparsers(dest="verb", required=True)

    run = sub.add_parser("run", help="run (or --resume) a study spec as a Ray Tune sweep")
    run.add_argument("spec", help="a study YAML file, or the name of a bundled spec (see `clphase specs`)")
    run.add_argument("--smoke", action="store_true", help="apply the spec's smoke: block (a small, fast version)")
    run.add_argument("--resume", action="store_true", help="continue an interrupted study")
    run.add_argument("--out", default="runs", help="results folder (default ./runs); <out>/<study>/ holds the study")
    run.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: start Ray here")
    run.add_argument("--tracking-uri", default=None,
                     help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db)")
    run.add_argument("--verbose", action="store_true", help="show Ray Tune's own output instead of one progress line")
    run.add_argument("--max-cells", type=int, default=None, metavar="N",
                     help="enumerate grids of up to N cells (default: the spec's max_cells, else 100,000)")

    sub.add_parser("analyze", help="fit and draw the phase diagram of a finished study", add_help=False)

    ver = sub.add_parser("verify", help="run each theory claim's study and give a measured verdict")
    ver.add_argument("--claim", action="append", help="one claim (repeatable); default: all")
    ver.add_argument("--smoke", action="store_true", help="the studies' smoke versions (what CI runs)")
    ver.add_argument("--out", default=None, help="results folder (default runs/claims, or runs/claims-smoke)")
    ver.add_argument("--address", default=None)
    ver.add_argument("--tracking-uri", default=None)
    ver.add_argument("--docs", default=None, help="also write DIR/claims.md with the plots (e.g. docs)")
    ver.add_argument("--verbose", action="store_true")

    ui = sub.add_parser("ui", help="open the MLflow UI on the study store, bound to 127.0.0.1")
    ui.add_argument("--tracking-uri", default=None)
    ui.add_argument("--port", type=int, default=5000)
    ui.add_argument("--workers", type=int, default=1, help="web workers (default 1: one local user)")
    ui.add_argument("--wait-s", type=float, default=300, help="how long to wait for the server to answer")

    sub.add_parser("specs", help="list the bundled study specs")

    ray_verb = sub.add_parser("ray", help="a local Ray on loopback shared by many studies (run them with --address)")
    ray_verb.add_argument("action", choices=["up", "down", "status"])
    ray_verb.add_argument("--port", type=int, default=6379)
    ray_verb.add_argument("--num-cpus", type=int, default=None)

    sub.add_parser("bench", help="time a fixed set of configs: plain loop vs clphase vs packs", add_help=False)

    if argv and argv[0] == "analyze":
        return _analyze(argv[1:])
    if argv and argv[0] == "bench":
        from study.bench import main as bench_main

        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    return {"run": _run, "verify": _verify, "ui": _ui, "specs": _specs, "ray": _ray}[args.verb](args)


if __name__ == "__main__":
    sys.exit(main())
