"""``xlspec run`` and ``xlspec report``: the runtime's side of the command line."""

from __future__ import annotations

import glob
import os
import sys

EXIT_OK, EXIT_FAIL, EXIT_INPUT = 0, 1, 2


def cmd_run(args) -> int:
    from xlspec import plan as planmod

    from .engines import ENGINES
    from .scheduler import StalePlan, is_complete, run_plan

    if args.engine is not None and args.engine not in ENGINES:
        close = ENGINES.suggest(args.engine)
        print(f"--engine: unknown engine `{args.engine}`" + (f"; did you mean `{close}`?" if close else f"; engines: {', '.join(ENGINES.names())}"), file=sys.stderr)
        return EXIT_INPUT
    if args.plans:
        plans = args.plans
    else:
        found = sorted(glob.glob(os.path.join("build", "*.plan.json")))
        if not found:
            print("no plans in build/: run `xlspec compile` first", file=sys.stderr)
            return EXIT_INPUT
        plans = [p for p in found if args.limit is not None or not is_complete(p, args.runs_dir)]
        for p in sorted(set(found) - set(plans)):
            print(f"{p}: complete in {args.runs_dir}/ (nothing to do)")
    status = EXIT_OK
    for path in plans:
        try:
            report = run_plan(path, runs_dir=args.runs_dir, store_dir=args.store, limit=args.limit, address=args.address, engine_override=args.engine)
        except FileNotFoundError as e:
            print(f"{path}: {e.strerror}: {e.filename}", file=sys.stderr)
            return EXIT_INPUT
        except ValueError as e:
            print(f"{path}: {e}", file=sys.stderr)
            return EXIT_INPUT
        except StalePlan as e:
            print(f"{e.plan_path}: the plan is stale: {', '.join(e.changed)} changed since it was compiled.", file=sys.stderr)
            print("  run `xlspec compile` to update it (and `xlspec diff` to see what changes)", file=sys.stderr)
            return EXIT_INPUT
        print_summary(report)
        if not args.no_report:
            from .report import build_reports

            for line in build_reports(report.run_dir, planmod.load(path)):
                print(line)
        if not report.complete:
            status = EXIT_FAIL
    return status


def print_summary(report) -> None:
    print(f"{report.experiment}: {report.rows:,} result rows in {os.path.join(report.run_dir, 'results.parquet')} ({report.total_seconds:.1f} s)")
    for m in report.models:
        if m.failure:
            print(f"  {m.name}: FAILED - {m.failure}")
            continue
        load = f", loaded in {m.load_seconds:.1f} s" if m.load_seconds is not None else ""
        speed = f", {m.tokens_per_second:,.0f} output tok/s" if m.computed else ""
        errors = f", {m.errors} failed requests (see the `error` column)" if m.errors else ""
        print(f"  {m.name} ({m.engine}): {m.cells_done}/{m.cells} cells, {m.requests:,} requests ({m.computed:,} computed, {m.cached:,} from the store){load}{speed}{errors}")
    if report.ray_start_seconds:
        print(f"  ray start: {report.ray_start_seconds:.1f} s")


def cmd_report(args) -> int:
    from xlspec import plan as planmod

    from .report import build_reports

    runs = args.runs or sorted(d for d in glob.glob(os.path.join(args.runs_dir, "*")) if os.path.isfile(os.path.join(d, "manifest.json")))
    if not runs:
        print(f"no runs in {args.runs_dir}/: run `xlspec run` first", file=sys.stderr)
        return EXIT_INPUT
    for run_dir in runs:
        import json

        with open(os.path.join(run_dir, "manifest.json"), encoding="utf-8") as f:
            manifest = json.load(f)
        plan = planmod.load(os.path.normpath(os.path.join(run_dir, manifest["plan"])))
        for line in build_reports(run_dir, plan):
            print(line)
    return EXIT_OK
