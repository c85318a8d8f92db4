"""The command line as a user meets it: exit codes, no tracebacks, byte-identical plans."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import FIXTURES, ROOT, XLSPEC


def run(args, cwd=ROOT, env=None, check=False):
    full_env = dict(os.environ, **(env or {}))
    full_env.pop("NO_COLOR", None)
    return subprocess.run(XLSPEC + args, cwd=cwd, env=full_env, capture_output=True, text=True, check=check)


@pytest.fixture
def project(tmp_path):
    """A copy of the repo's specs/ in a fresh folder, as a user's project would be."""
    shutil.copytree(os.path.join(ROOT, "specs"), tmp_path / "specs")
    return tmp_path


def test_compile_without_arguments_compiles_every_spec(project):
    r = run(["compile"], cwd=project)
    assert r.returncode == 0, r.stderr
    specs = sorted(p[:-4] for p in os.listdir(project / "specs") if p.endswith(".xls") and p != "common.xls")
    plans = sorted(p[: -len(".plan.json")] for p in os.listdir(project / "build"))
    assert "demo" in plans and len(plans) == len(specs)
    assert "wrote build/demo.plan.json" in r.stdout and "cells" in r.stdout and "requests" in r.stdout


def test_committed_plans_are_current(project):
    """build/ in the repo holds exactly what compiling specs/ gives (plans are reviewed as diffs)."""
    run(["compile"], cwd=project, check=True)
    for name in os.listdir(project / "build"):
        with open(project / "build" / name, encoding="utf-8") as f, open(os.path.join(ROOT, "build", name), encoding="utf-8") as g:
            assert f.read() == g.read(), f"build/{name} is stale: run `xlspec compile` and commit it"


@pytest.mark.parametrize("seed", ["0", "1", "12345"])
def test_plans_are_byte_identical_across_hash_seeds(project, tmp_path, seed):
    out = tmp_path / f"out{seed}"
    run(["compile", "specs/demo.xls", "-o", str(out)], cwd=project, env={"PYTHONHASHSEED": seed}, check=True)
    reference = tmp_path / "reference"
    run(["compile", "specs/demo.xls", "-o", str(reference)], cwd=project, env={"PYTHONHASHSEED": "random"}, check=True)
    assert (out / "demo.plan.json").read_bytes() == (reference / "demo.plan.json").read_bytes()


def test_plan_does_not_depend_on_working_directory(project, tmp_path):
    run(["compile", "specs/demo.xls"], cwd=project, check=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run(["compile", str(project / "specs" / "demo.xls"), "-o", str(project / "build")], cwd=elsewhere, check=True)
    first = (project / "build" / "demo.plan.json").read_bytes()
    run(["compile", "specs/demo.xls"], cwd=project, check=True)
    assert (project / "build" / "demo.plan.json").read_bytes() == first


def test_errors_exit_2_without_traceback():
    r = run(["compile", os.path.join(FIXTURES, "diagnostics", "metrics.xls")])
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "error[E007]" in r.stderr and "4 errors" in r.stderr


def test_json_diagnostics():
    r = run(["compile", "--format", "json", os.path.join(FIXTURES, "diagnostics", "undefined_name.xls")])
    assert r.returncode == 2
    data = json.loads(r.stdout)
    assert [d["code"] for d in data["diagnostics"]] == ["E003", "E003"]
    assert data["diagnostics"][0]["hint"] == "did you mean `smol`?"


def test_missing_spec_file_is_a_diagnostic(tmp_path):
    r = run(["compile", str(tmp_path / "nope.xls")])
    assert r.returncode == 2 and "cannot read" in r.stderr and "Traceback" not in r.stderr


def test_help_and_compile_do_not_import_heavy_packages():
    code = (
        "import sys; from xlspec.cli import main; "
        "main(['compile', '--check', 'specs/demo.xls']); "
        "heavy = [m for m in ('torch', 'ray', 'vllm', 'transformers', 'pyarrow') if m in sys.modules]; "
        "print('HEAVY', heavy)"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
    r = subprocess.run([sys.executable, "-c", "import sys; from xlspec.cli import main\ntry:\n  main(['--help'])\nexcept SystemExit: pass\nprint('HEAVY', [m for m in ('torch','ray','vllm','pydantic','lark') if m in sys.modules])"], cwd=ROOT, capture_output=True, text=True)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


def test_diff_two_specs(tmp_path):
    plans = os.path.join(FIXTURES, "plans")
    r = run(["diff", os.path.join(plans, "base.xls"), os.path.join(plans, "edited.xls")], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "2 added, 0 removed, 3 changed, 1 unchanged" in r.stdout
    assert "model revision: r1 -> r2" in r.stdout


def test_diff_plan_against_spec_reports_no_change(project):
    run(["compile", "specs/demo.xls"], cwd=project, check=True)
    r = run(["diff", "build/demo.plan.json", "specs/demo.xls"], cwd=project)
    assert r.returncode == 0 and "no cell changes" in r.stdout
    r = run(["diff", "--exit-code", "build/demo.plan.json", "specs/demo.xls"], cwd=project)
    assert r.returncode == 0


def test_diff_exit_code_and_a_change_at_the_end_of_a_long_template(project):
    """The changed words are shown wherever they are in the template, and --exit-code says
    the plans differ."""
    run(["compile", "specs/demo.xls"], cwd=project, check=True)
    spec = project / "specs" / "demo.xls"
    text = spec.read_text(encoding="utf-8")
    start = text.index('en = "', text.index("framing lettered"))
    end = text.index('"', start + 6)
    old_template = text[start + 6 : end]
    assert len(old_template) > 48
    spec.write_text(text[:end] + " Be brief." + text[end:], encoding="utf-8")
    r = run(["diff", "--exit-code", "build/demo.plan.json", "specs/demo.xls"], cwd=project)
    assert r.returncode == 1, r.stderr
    assert "{+ Be brief.+}" in r.stdout
    r = run(["diff", "build/demo.plan.json", "specs/demo.xls"], cwd=project)
    assert r.returncode == 0


def test_diff_of_a_bad_file_is_a_diagnostic(tmp_path):
    bad = tmp_path / "bad.plan.json"
    bad.write_text("{not json")
    r = run(["diff", str(bad), str(bad)])
    assert r.returncode == 2 and "not a plan file" in r.stderr and "Traceback" not in r.stderr


def test_compiler_modules_do_not_import_the_command_line():
    """Data flows one way: the compiler's library (api, diff, check, expand, plan, lower) never
    imports the CLI, which sits on top of it."""
    code = (
        "import sys\n"
        "import xlspec.api, xlspec.diff, xlspec.check, xlspec.expand, xlspec.plan, xlspec.lower, xlspec.fmt\n"
        "print(sorted(m for m in sys.modules if m in ('xlspec.cli', 'xlspec.runtime.cli')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
