"""The ``xlspec`` command line.

Only argparse is imported at start-up: ``xlspec --help`` and ``xlspec compile`` never import
torch, ray or vllm (the runtime is imported by ``run`` and ``report`` alone).

Exit status: 0 success; 1 a run or check that found differences or failures; 2 the input has
errors (diagnostics were printed).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {n}")
    return n


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xlspec",
        description="Compile cross-lingual LLM evaluation specs (.xls) into plans, and run them.",
        epilog="Typical use: xlspec compile && xlspec run. See README.md.",
    )
    from . import __version__

    p.add_argument("--version", action="version", version=f"xlspec {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    c = sub.add_parser("compile", help="check specs and write build/<experiment>.plan.json")
    c.add_argument("files", nargs="*", help="spec files (default: every specs/*.xls that declares an experiment)")
    c.add_argument("-o", "--out-dir", default="build", help="where plans are written (default: build)")
    c.add_argument("--format", choices=("text", "json"), default="text", help="diagnostics as text or JSON")
    c.add_argument("--check", action="store_true", help="only check; write no plan")
    c.add_argument("--allow-outside-data", action="store_true", help="let specs read data files outside their folder (refused by default: E019)")

    f = sub.add_parser("fmt", help="rewrite specs in the canonical layout (comments kept)")
    f.add_argument("files", nargs="*", help="spec files (default: specs/**/*.xls)")
    f.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file is not formatted")

    d = sub.add_parser("diff", help="what changes between two specs or two plans")
    d.add_argument("old", help="a spec (.xls) or a plan (.plan.json)")
    d.add_argument("new", help="a spec (.xls) or a plan (.plan.json)")
    d.add_argument("--format", choices=("text", "json"), default="text")
    d.add_argument("--allow-outside-data", action="store_true", help="let specs read data files outside their folder (as compile)")
    d.add_argument("--exit-code", action="store_true", help="exit 1 when the plans differ, 0 when they do not (as git diff --exit-code)")
    d.add_argument("--runs-dir", default="runs", help="where `xlspec run` wrote its results: a changed judge cell is counted exactly from the rows of the cells it reads (default: runs)")

    r = sub.add_parser("run", help="run compiled plans on Ray (every plan in build/ that is not complete)")
    r.add_argument("plans", nargs="*", help="plan files (default: build/*.plan.json)")
    r.add_argument("--limit", type=_positive_int, default=None, help="only the first N items of each cell")
    r.add_argument("--address", default=None, help="join an existing Ray cluster (default: the one `xlspec up` started on this machine, else a local one for this run)")
    r.add_argument("--runs-dir", default="runs", help="where results go (default: runs)")
    r.add_argument("--store", default=None, help="the shared request cache (default: <runs-dir>/.store)")
    r.add_argument("--engine", default=None, metavar="ENGINE", help="run every model that runs here on this engine (hf, vllm); models behind an API keep theirs")
    r.add_argument("--no-report", action="store_true", help="skip metrics and reports")

    u = sub.add_parser("up", help="start a local Ray cluster that keeps models loaded between runs (`xlspec run` joins it)")
    u.add_argument("--keep-loaded", type=float, default=30.0, metavar="MINUTES", help="how long a model stays loaded after its last call (default: 30)")
    u.add_argument("--num-cpus", type=_positive_int, default=None, help="CPUs the cluster offers (default: all)")
    u.add_argument("--num-gpus", type=int, default=None, help="GPUs the cluster offers (default: all)")
    sub.add_parser("down", help="stop the local Ray cluster of `xlspec up` and the models it keeps")

    rep = sub.add_parser("report", help="recompute metrics and re-render reports from stored results")
    rep.add_argument("runs", nargs="*", help="run folders (default: every folder in runs/)")
    rep.add_argument("--runs-dir", default="runs")
    return p


def main(argv: list[str] | None = None) -> int:
    """The console entry point: :func:`run_command` with a last-resort handler, so a user
    never sees a Python traceback.  Every bad input has its own message; reaching the handler
    is a bug, and it says so."""
    try:
        return run_command(argv)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `xlspec ... | head`
        return EXIT_OK
    except Exception as e:  # noqa: BLE001
        from . import __version__

        print(f"xlspec: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        print(f"this is a bug in xlspec {__version__}; please report it with the command and the input that caused it", file=sys.stderr)
        if os.environ.get("XLSPEC_DEBUG"):
            raise
        return EXIT_INTERNAL


def run_command(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; exceptions escape (the test-suite's fuzzer calls this
    to see them)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # argparse: --help, --version, or a usage error (already printed)
        return int(e.code or 0) if isinstance(e.code, int) else EXIT_INPUT
    if args.command is None:
        _parser().print_help()
        return EXIT_OK
    try:
        if args.command == "compile":
            return cmd_compile(args)
        if args.command == "fmt":
            return cmd_fmt(args)
        if args.command == "diff":
            return cmd_diff(args)
        if args.command == "run":
            from .runtime.cli import cmd_run

            return cmd_run(args)
        if args.command in ("up", "down"):
            from .runtime.cli import cmd_down, cmd_up

            return cmd_up(args) if args.command == "up" else cmd_down(args)
        if args.command == "report":
            from .runtime.cli import cmd_report

            return cmd_report(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return EXIT_OK


def _color() -> bool:
    return sys.stderr.isatty() and os.environ.get("NO_COLOR") is None


def _print_diagnostics(diags, sources, fmt: str) -> None:
    from .diagnostics import render_json, render_text

    items = diags.sorted()
    if fmt == "json":
        print(render_json(items))
    elif items:
        sys.stderr.write(render_text(items, sources, color=_color()))
        n = len([d for d in items if d.severity == "error"])
        if n:
            sys.stderr.write(f"{n} error{'s' if n != 1 else ''}\n")


def default_specs() -> list[str]:
    """specs/*.xls that declare an experiment (files only imported by others are skipped)."""
    import re

    out = []
    from .source import SourceError, read_source

    for path in sorted(glob.glob(os.path.join("specs", "*.xls"))):
        try:
            text = read_source(path).text
        except SourceError:
            out.append(path)  # compiling it reports why it cannot be read
            continue
        if re.search(r"^experiment\s", text, re.MULTILINE):
            out.append(path)
    return out


def cmd_compile(args) -> int:
    from . import plan as planmod
    from .api import compile_file
    from .diagnostics import Diagnostics, SourceCache

    files = args.files or default_specs()
    if not files:
        print("no specs found: give spec files, or put them in specs/*.xls", file=sys.stderr)
        return EXIT_INPUT
    status = EXIT_OK
    all_diags, sources = Diagnostics(), SourceCache()
    seen: dict[str, str] = {}
    summaries = []
    for path in files:
        result = compile_file(path, args.out_dir, allow_outside_data=args.allow_outside_data)
        all_diags.extend(result.diagnostics)
        sources.texts.update(result.sources.texts)
        plan = result.data
        if plan is None:
            status = EXIT_INPUT
            continue
        exp = plan["experiment"]
        if exp in seen and not args.check:
            from .diagnostics import Span

            all_diags.error("E004", f"experiment `{exp}` is also declared in {seen[exp]}; plans would collide in {args.out_dir}/", Span.point(path, 1, 1))
            status = EXIT_INPUT
            continue
        seen[exp] = path
        out = os.path.join(args.out_dir, f"{exp}.plan.json")
        if not args.check:
            planmod.write(plan, out)
        summaries.append((out, plan["totals"]))
    _print_diagnostics(all_diags, sources, args.format)
    if args.format == "text":
        for out, t in summaries:
            verb = "checked" if args.check else "wrote"
            print(
                f"{verb} {out}: {t['cells']:,} cells, {t['requests']:,} requests "
                f"(~{t['prompt_tokens']:,} prompt + {t['output_tokens']:,} output tokens), "
                f"{len(t['languages'])} language{'s' if len(t['languages']) != 1 else ''} ({', '.join(t['languages'][:8])}{', ...' if len(t['languages']) > 8 else ''}), "
                f"{len(t['models'])} model{'s' if len(t['models']) != 1 else ''} ({', '.join(t['models'])})"
            )
    return status


def cmd_fmt(args) -> int:
    from .diagnostics import Diagnostics, SourceCache, Span
    from .fmt import format_source
    from .source import SourceError, read_source

    files = args.files or sorted(glob.glob(os.path.join("specs", "**", "*.xls"), recursive=True))
    diags, sources = Diagnostics(), SourceCache()
    unformatted = []
    for path in files:
        try:
            source = read_source(path)
        except SourceError as e:
            if e.line is None:
                diags.error("E010", f"cannot read {path}: {e.message}", None)
            else:
                diags.error("E001", f"{path}: {e.message}", Span.point(path, e.line, e.col))
            continue
        sources.add(path, source.text)
        out = format_source(source.text, path, diags)
        if out is None:
            continue
        if out.encode("utf-8") != source.raw:  # line endings and a byte-order mark count too
            unformatted.append(path)
            if not args.check:
                with open(path, "w", encoding="utf-8", newline="\n") as f:
                    f.write(out)
    _print_diagnostics(diags, sources, "text")
    if diags.has_errors():
        return EXIT_INPUT
    for path in unformatted:
        print(f"{'would reformat' if args.check else 'reformatted'} {path}")
    if args.check and unformatted:
        return EXIT_FAIL
    if not unformatted:
        print(f"{len(files)} file{'s' if len(files) != 1 else ''} already formatted")
    return EXIT_OK


def cmd_diff(args) -> int:
    from .api import load_plan_or_spec
    from .diff import diff_plans, render_diff_json, render_diff_text

    sides = []
    for side in (args.old, args.new):
        result = load_plan_or_spec(side, allow_outside_data=args.allow_outside_data)
        if not result.ok:
            _print_diagnostics(result.diagnostics, result.sources, "text")
            return EXIT_INPUT
        sides.append(result)
    d = diff_plans(sides[0].plan, sides[1].plan, sides[0].plan_path, sides[1].plan_path, runs_dir=args.runs_dir)
    print(render_diff_json(d) if args.format == "json" else render_diff_text(d, args.old, args.new), end="")
    return EXIT_FAIL if args.exit_code and d.differs else EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
