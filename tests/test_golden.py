"""Golden files per stage: source -> diagnostics, source -> plan, plan pair -> diff."""

import glob
import json
import os

import pytest

from conftest import FIXTURES, check_golden
from xlspec.check import check_file
from xlspec.diagnostics import render_json, render_text
from xlspec.diff import diff_plans, render_diff_text
from xlspec.expand import expand
from xlspec.plan import dumps

DIAG_DIR = os.path.join(FIXTURES, "diagnostics")
PLAN_DIR = os.path.join(FIXTURES, "plans")
# Files that only exist to be imported by another fixture.
IMPORTED_ONLY = {"cycle_other.xls"}

DIAG_CASES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(DIAG_DIR, "*.xls")) if os.path.basename(p) not in IMPORTED_ONLY)
PLAN_CASES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(PLAN_DIR, "*.xls")) if not os.path.basename(p).startswith("common"))

# Every error kind the checker is required to report has a golden file.
REQUIRED_CODES = {"E001", "E002", "E003", "E004", "E005", "E006", "E007", "E008", "E009", "E010", "E011", "E012", "E015"}


@pytest.mark.parametrize("case", DIAG_CASES)
def test_diagnostics_golden(case, in_dir):
    with in_dir(DIAG_DIR):
        result = check_file(f"{case}.xls")
        assert result.spec is None and result.diagnostics.has_errors(), f"{case}.xls should not compile"
        text = render_text(result.diagnostics.sorted(), result.sources)
    check_golden(os.path.join(DIAG_DIR, f"{case}.expected.txt"), text)


def test_every_error_kind_has_a_golden_diagnostic(in_dir):
    seen = set()
    with in_dir(DIAG_DIR):
        for case in DIAG_CASES:
            seen |= {d.code for d in check_file(f"{case}.xls").diagnostics}
    assert REQUIRED_CODES <= seen, f"no golden diagnostic for {sorted(REQUIRED_CODES - seen)}"


def test_diagnostics_json_golden(in_dir):
    with in_dir(DIAG_DIR):
        result = check_file("metrics.xls")
    text = render_json(result.diagnostics.sorted())
    data = json.loads(text)
    assert [d["code"] for d in data["diagnostics"]] == ["E007", "E008", "E008", "E009"]
    assert data["diagnostics"][0]["span"] == {"file": "metrics.xls", "line": 15, "col": 5, "end_line": 15, "end_col": 12}
    check_golden(os.path.join(DIAG_DIR, "metrics.expected.json"), text + "\n")


def _compile(case: str) -> dict:
    result = check_file(os.path.join(PLAN_DIR, f"{case}.xls"))
    assert result.spec is not None, render_text(result.diagnostics.sorted(), result.sources)
    return expand(result.spec, result.records, PLAN_DIR)


@pytest.mark.parametrize("case", PLAN_CASES)
def test_plan_golden(case):
    check_golden(os.path.join(PLAN_DIR, f"{case}.plan.json"), dumps(_compile(case)))


def test_diff_golden():
    old, new = _compile("base"), _compile("edited")
    text = render_diff_text(diff_plans(old, new), "base.xls", "edited.xls")
    check_golden(os.path.join(PLAN_DIR, "base-edited.diff.txt"), text)
