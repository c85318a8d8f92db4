"""``xlspec run`` and ``xlspec report``: the runtime's side of the command line.

Every failure is one line on stderr naming the file or the setting, and a non-zero exit
status: 2 for a bad input (a plan or run folder that cannot be used), 1 for a run that did
not complete, 130 for a run stopped by Ctrl-C (what it computed is kept; the message says
how to resume).
"""

from __future__ import annotations

import glob
import os
import sys

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cmd_run(args) -> int:
    from .engines import ENGINES
    from .scheduler import is_complete, shutdown_ray

    if args.engine is not None and args.engine not in ENGINES:
        close = ENGINES.suggest(args.engine)
        _err(f"--engine: unknown engine `{args.engine}`" + (f"; did you mean `{close}`?" if close else f"; engines: {', '.join(ENGINES.names())}"))
        return EXIT_INPUT
    if args.engine is not None and not ENGINES[args.engine].local:
        _err(f"--engine {args.engine}: a model behind an API is declared in the spec (openai(\"name\") {{ base_url = ... }}); --engine swaps between the engines that run a model here: {', '.join(n for n, e in ENGINES.items() if e.local)}")
        return EXIT_INPUT
    if args.plans:
        plans = args.plans
    else:
        found = sorted(glob.glob(os.path.join("build", "*.plan.json")))
        if not found:
            _err("no plans in build/: run `xlspec compile` first")
            return EXIT_INPUT
        plans = [p for p in found if args.limit is not None or not is_complete(p, args.runs_dir, args.engine)]
        for p in sorted(set(found) - set(plans)):
            print(f"{p}: complete in {args.runs_dir}/ (nothing to do)")
    if not args.no_report:
        _prepare_reports()
    try:
        code = _run_plans(plans, args)
    except KeyboardInterrupt:  # Ctrl-C outside a run (the scheduler handles it inside one)
        _err("interrupted")
        code = EXIT_INTERRUPTED
    # Stopping the local Ray cluster normally takes a second or two; a cluster that no longer
    # answers must not keep the command from exiting.
    if not shutdown_ray(timeout=10, quiet=code == EXIT_INTERRUPTED):
        _err("Ray did not stop in time; exiting without waiting for it")
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


REPORT_MODULES = ("scipy.stats", "matplotlib.figure", "matplotlib.backends.backend_agg", "matplotlib.backends.backend_pdf", "jinja2")
"""What the metrics and reports import (about 3 s on a laptop CPU)."""


def _prepare_reports() -> None:
    """Import what the report needs in the background while the run waits on Ray and the
    models (a run spends those seconds waiting), so the report starts at once when the
    answers are in."""
    import importlib
    import threading

    def load() -> None:
        for name in REPORT_MODULES:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - the report names what is missing when it runs
                return

    threading.Thread(target=load, name="xlspec-report-imports", daemon=True).start()


def _run_plans(plans: list[str], args) -> int:
    from xlspec.plan import PlanError

    from .scheduler import RunError, StalePlan, begin_ray_shutdown, run_plan

    status = EXIT_OK
    for i, path in enumerate(plans):
        try:
            report = run_plan(path, runs_dir=args.runs_dir, store_dir=args.store, limit=args.limit, address=args.address, engine_override=args.engine)
        except PlanError as e:
            _err(str(e))
            return EXIT_INPUT
        except StalePlan as e:
            _err(f"{e.plan_path}: the plan is stale: {', '.join(e.changed)} changed since it was compiled.")
            _err("  run `xlspec compile` to update it (and `xlspec diff` to see what changes)")
            return EXIT_INPUT
        except RunError as e:
            _err(f"{path}: {e}")
            return EXIT_FAIL
        except OSError as e:
            _err(f"{path}: {_os_error(e)}")
            return EXIT_INPUT if isinstance(e, FileNotFoundError) else EXIT_FAIL
        print_summary(report)
        if report.interrupted:
            done = sum(m.cells_done for m in report.models)
            _err(f"{path}: stopped by Ctrl-C: {done:,} of {len(report.plan.cells):,} cells done, {report.stored:,} answers stored by this run; nothing computed is lost.")
            _err(f"  run `{resume_command(path, args)}` to resume: it computes only what is missing")
            return EXIT_INTERRUPTED
        if i == len(plans) - 1:
            begin_ray_shutdown()  # the reports need no Ray: it stops while they render
        if not args.no_report:
            status = max(status, _report(report.run_dir, report.plan, path))
        if not report.complete:
            status = max(status, EXIT_FAIL)
    return status


def resume_command(path: str, args) -> str:
    """The command that resumes a run: the same plan and the options that decide where its
    results and answers are and what it computes."""
    parts = ["xlspec", "run", path]
    if args.limit is not None:
        parts += ["--limit", str(args.limit)]
    if args.runs_dir != "runs":
        parts += ["--runs-dir", args.runs_dir]
    if args.store:
        parts += ["--store", args.store]
    if args.engine:
        parts += ["--engine", args.engine]
    if args.address:
        parts += ["--address", args.address]
    return " ".join(parts)


def cmd_up(args) -> int:
    from .cluster import ClusterError, up

    if not args.keep_loaded > 0 or args.keep_loaded == float("inf"):
        _err(f"--keep-loaded {args.keep_loaded:g}: expected minutes, more than 0")
        return EXIT_INPUT
    try:
        print(up(args.keep_loaded, args.num_cpus, args.num_gpus))
    except ClusterError as e:
        _err(f"xlspec up: {e}")
        return EXIT_FAIL
    return EXIT_OK


def cmd_down(args) -> int:
    from .cluster import ClusterError, down

    try:
        print(down())
    except ClusterError as e:
        _err(f"xlspec down: {e}")
        return EXIT_FAIL
    return EXIT_OK


def print_summary(report) -> None:
    print(f"{report.experiment}: {report.rows:,} result rows in {os.path.join(report.run_dir, 'results.parquet')} ({report.total_seconds:.1f} s)")
    for m in report.models:
        if m.failure:
            print(f"  {m.name}: FAILED - {m.failure}")
            continue
        load = ", kept loaded from an earlier run" if m.kept else f", loaded in {m.load_seconds:.1f} s" if m.load_seconds is not None else ""
        speed = m.speed()
        errors = f", {m.errors} failed requests (see the `error` column)" if m.errors else ""
        print(f"  {m.name} ({m.engine}): {m.cells_done}/{m.cells} cells, {m.requests:,} requests ({m.computed:,} computed, {m.cached:,} from the store){load}{', ' + speed if speed else ''}{errors}")
    if report.ray_start_seconds:
        print(f"  ray start: {report.ray_start_seconds:.1f} s")


def cmd_report(args) -> int:
    if args.runs:
        runs = args.runs
    else:
        runs = sorted(d for d in glob.glob(os.path.join(args.runs_dir, "*")) if os.path.isfile(os.path.join(d, "manifest.json")))
        if not runs:
            _err(f"no runs in {args.runs_dir}/: run `xlspec run` first")
            return EXIT_INPUT
    status = EXIT_OK
    for run_dir in runs:
        status = max(status, _report_run(run_dir))
    return status


def _report_run(run_dir: str) -> int:
    """Metrics and reports of one run folder; a folder that cannot be reported on is one
    line on stderr naming the file, and EXIT_INPUT."""
    from xlspec import plan as planmod
    from xlspec.files import FileReadError, JSONContentError, read_json_file

    if not os.path.exists(run_dir):
        _err(f"{run_dir}: no such run folder")
        return EXIT_INPUT
    if not os.path.isdir(run_dir):
        _err(f"{run_dir}: not a run folder (a run folder is runs/<experiment>/)")
        return EXIT_INPUT
    path = os.path.join(run_dir, "manifest.json")
    try:
        manifest = read_json_file(path, 64 << 20, "run manifest")
    except FileReadError as e:
        if e.message == "no such file":
            _err(f"{run_dir}: no manifest.json: not a run folder, or its run never finished (`xlspec run` writes one)")
        else:
            _err(f"{path}: {e.message}")
        return EXIT_INPUT
    except JSONContentError as e:
        where = f"{path}:{e.line}:{e.col}" if e.line is not None else path
        _err(f"{where}: not a run manifest: {e.message}; `xlspec run` writes it again")
        return EXIT_INPUT
    if not isinstance(manifest, dict) or not isinstance(manifest.get("plan"), str):
        _err(f"{path}: not a run manifest: it names no plan; `xlspec run` writes it again")
        return EXIT_INPUT
    plan_path = os.path.normpath(os.path.join(run_dir, manifest["plan"]))
    try:
        plan = planmod.load(plan_path)
    except planmod.PlanError as e:
        _err(f"{e} (the plan {path} names)")
        return EXIT_INPUT
    rerun = f"xlspec run {os.path.relpath(plan_path)}" + (f" --limit {manifest['limit']}" if isinstance(manifest.get("limit"), int) else "")
    return _report(run_dir, plan, plan_path, rerun)


def _report(run_dir: str, plan, plan_path: str, rerun: str | None = None) -> int:
    from .report import ResultsUnreadable, build_reports

    rerun = rerun or f"xlspec run {plan_path}"
    results = os.path.join(run_dir, "results.parquet")
    if not os.path.exists(results):
        _err(f"{run_dir}: no results.parquet: run `{rerun}` first")
        return EXIT_INPUT
    if not os.path.isfile(results):
        _err(f"{results}: not a plain file; `{rerun}` writes it again from the stored cells (nothing is computed again)")
        return EXIT_INPUT
    try:
        lines = build_reports(run_dir, plan, plan_path)
    except ResultsUnreadable as e:
        _err(f"{e.path}: {e.reason}; `{rerun}` writes it again from the stored cells (nothing is computed again)")
        return EXIT_INPUT
    except OSError as e:
        _err(f"{run_dir}: {_os_error(e)}")
        return EXIT_FAIL
    status = EXIT_OK
    for line in lines:
        if line.startswith("error: "):
            _err(line)
            status = EXIT_FAIL
        else:
            print(line)
    return status


def _os_error(e: OSError) -> str:
    what = e.strerror or str(e)
    return f"{what}: {e.filename}" if e.filename else what
