"""``clphase``: run studies, analyse them, browse them.

    clphase run SPEC [--smoke] [--resume] [--out DIR] [--address ADDR] [--tracking-uri URI] [--verbose]
    clphase analyze STUDY_DIR_OR_PARQUET [...]
    clphase verify [--smoke] [--claim NAME] [--address ADDR] [--docs DIR]
    clphase bench [--steps N] [--ways abc] [--pack-size K|auto]
    clphase ui [--tracking-uri URI] [--port PORT]
    clphase specs
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys


def _run(args: argparse.Namespace) -> int:
    from study.runner import StudyError, describe, run_study
    from study.spec import SpecError, find_spec, load_spec
    from study.tracking import resolve_tracking_uri

    try:
        spec = load_spec(find_spec(args.spec), smoke=args.smoke)
        print(f"[clphase] study {spec.name!r}: {spec.n_trials()} trials "
              f"({'smoke' if args.smoke else 'full'} spec), results in {os.path.join(args.out, spec.name)}, "
              f"MLflow at {resolve_tracking_uri(args.tracking_uri)}", flush=True)
        result = run_study(args.spec, smoke=args.smoke, resume=args.resume, out=args.out, address=args.address,
                           tracking_uri=args.tracking_uri, verbose=args.verbose)
    except (SpecError, StudyError) as err:
        print(f"clphase: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\n[clphase] interrupted; continue with: clphase run "
              f"{args.spec} --resume{' --smoke' if args.smoke else ''}", file=sys.stderr)
        return 130
    print(describe(result, spec.objective.metric))
    return 1 if result.n_finished == 0 else 0


def _analyze(argv: list[str]) -> int:
    from analysis.report import main as analyze_main

    return analyze_main(argv)


def _verify(args: argparse.Namespace) -> int:
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


def _ui(args: argparse.Namespace) -> int:
    from study.tracking import resolve_tracking_uri

    uri = resolve_tracking_uri(args.tracking_uri)
    if uri.startswith("http"):
        print(f"the tracking store is a server: open {uri} in a browser")
        return 0
    print(f"MLflow UI on http://127.0.0.1:{args.port} for {uri} (Ctrl-C to stop)", flush=True)
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(args.port)]
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


def _specs(args: argparse.Namespace) -> int:
    import yaml

    from study.spec import bundled_specs

    for name, path in bundled_specs().items():
        description = (yaml.safe_load(path.read_text()) or {}).get("description", "")
        print(f"{name:24s} {description.strip().splitlines()[0] if description else ''}")
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

    sub.add_parser("specs", help="list the bundled study specs")

    sub.add_parser("bench", help="time a fixed set of configs: plain loop vs clphase vs packs", add_help=False)

    if argv and argv[0] == "analyze":
        return _analyze(argv[1:])
    if argv and argv[0] == "bench":
        from study.bench import main as bench_main

        return bench_main(argv[1:])
    args = parser.parse_args(argv)
    return {"run": _run, "verify": _verify, "ui": _ui, "specs": _specs}[args.verb](args)


if __name__ == "__main__":
    sys.exit(main())
