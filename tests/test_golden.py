"""Golden files per stage: source -> diagnostics, source -> plan, plan pair -> diff."""

import glob
import json
import os
import re

import pytest

from conftest import FIXTURES, check_golden
from xlspec.check import check_file
from xlspec.diagnostics import CODES, render_json, render_text
from xlspec.api import compile_file
from xlspec.diff import diff_plans, render_diff_text
from xlspec.plan import dumps

DIAG_DIR = os.path.join(FIXTURES, "diagnostics")
PLAN_DIR = os.path.join(FIXTURES, "plans")
# Files that only exist to be imported by another fixture.
IMPORTED_ONLY = {"cycle_other.xls", "declarations_lib.xls"}

DIAG_CASES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(DIAG_DIR, "*.xls")) if os.path.basename(p) not in IMPORTED_ONLY)
PLAN_CASES = sorted(os.path.basename(p)[:-4] for p in glob.glob(os.path.join(PLAN_DIR, "*.xls")) if not os.path.basename(p).startswith("common"))

# Every error kind the checker reports has a golden file.
REQUIRED_CODES = set(CODES)
# `file:line:col: error[E014]: message` (or `error[E014]: message` without a location).
_GOLDEN_LINE = re.compile(r"^(?:(?P<file>[^\s:]+):(?P<line>\d+):(?P<col>\d+): )?(?:error|warning)\[(?P<code>[EW]\d{3})\]: (?P<message>.*)$", re.M)


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


def _golden_diagnostics() -> list[re.Match]:
    found = []
    for case in DIAG_CASES:
        with open(os.path.join(DIAG_DIR, f"{case}.expected.txt"), encoding="utf-8") as f:
            found += list(_GOLDEN_LINE.finditer(f.read()))
    return found


def test_golden_files_match_the_cases():
    """Each expected output belongs to a case that test_diagnostics_golden runs: an orphan
    would count towards the coverage below without being checked."""
    expected = {os.path.basename(p)[: -len(".expected.txt")] for p in glob.glob(os.path.join(DIAG_DIR, "*.expected.txt"))}
    assert expected == set(DIAG_CASES)


def test_every_code_has_a_golden_file():
    """Read from the expected outputs themselves: every code in CODES is shown in one, and
    they show no code that CODES does not document."""
    shown = {m["code"] for m in _golden_diagnostics()}
    assert set(CODES) <= shown, f"no golden diagnostic for {sorted(set(CODES) - shown)}"
    assert shown <= set(CODES), f"undocumented codes in golden files: {sorted(shown - set(CODES))}"


def test_catch_all_codes_have_a_spread_of_golden_messages():
    """E013 (invalid declaration) and E014 (invalid setting) each stand for many checks:
    their golden files keep a range of distinct messages, not one example each."""
    messages: dict[str, set[str]] = {}
    for m in _golden_diagnostics():
        # Names in backquotes vary from case to case; the shape of the message does not.
        messages.setdefault(m["code"], set()).add(re.sub(r"`[^`]*`", "`_`", m["message"]))
    assert len(messages.get("E013", ())) >= 8, sorted(messages.get("E013", ()))
    assert len(messages.get("E014", ())) >= 30, sorted(messages.get("E014", ()))


def test_diagnostics_json_golden(in_dir):
    with in_dir(DIAG_DIR):
        result = check_file("metrics.xls")
    text = render_json(result.diagnostics.sorted())
    data = json.loads(text)
    assert [d["code"] for d in data["diagnostics"]] == ["E007", "E008", "E008", "E009"]
    assert data["diagnostics"][0]["span"] == {"file": "metrics.xls", "line": 15, "col": 5, "end_line": 15, "end_col": 12}
    check_golden(os.path.join(DIAG_DIR, "metrics.expected.json"), text + "\n")


def _compile(case: str):
    result = compile_file(os.path.join(PLAN_DIR, f"{case}.xls"), PLAN_DIR)
    assert result.ok, render_text(result.diagnostics.sorted(), result.sources)
    return result


@pytest.mark.parametrize("case", PLAN_CASES)
def test_plan_golden(case):
    check_golden(os.path.join(PLAN_DIR, f"{case}.plan.json"), dumps(_compile(case).data))


def test_diff_golden():
    old, new = _compile("base"), _compile("edited")
    text = render_diff_text(diff_plans(old.plan, new.plan, old.plan_path, new.plan_path), "base.xls", "edited.xls")
    check_golden(os.path.join(PLAN_DIR, "base-edited.diff.txt"), text)
