"""No traceback, no hang, no silent empty cell: how `xlspec run`, `xlspec report` and
`xlspec diff` meet bad inputs, tampered plans, damaged files and interruptions.

Every failure must be one line on stderr naming the file (or the cell), a non-zero exit
status and no Python traceback, and nothing already computed may be lost.

Most tests need no Ray: a bad plan is refused before Ray starts.  The scheduler tests run
the fake engine (tests/support/fake_engine.py) on a local Ray cluster started once for the
module; the interruption tests run `xlspec run` as a real process (a small driver script
that registers a slow variant of the fake engine), send it SIGINT or SIGKILL, and resume.
One slow test does the same with the embedded model.
"""

from __future__ import annotations

import copy
import glob
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, XLSPEC
from support.fake_engine import ANSWERS, FakeEngine
from support.projects import ITEMS, Project, new_project
from support.slow_driver import driver
from xlspec import plan as planmod
from xlspec.cli import main
from xlspec.runtime.engines.base import EngineResult
from xlspec.runtime.scheduler import ModelReport, Progress, run_plan
from xlspec.runtime.store import AnswerStore, RunDir

BASE_REQUESTS = 2 * 2 * ITEMS * 2  # 2 framings x 2 languages x items x (options + generate)


def cli(args: list[str], capsys, cwd=None) -> tuple[int, str, str]:
    """``xlspec ARGS`` in this process: (exit status, stdout, stderr)."""
    old = os.getcwd()
    if cwd:
        os.chdir(cwd)
    try:
        code = main(args)
    finally:
        os.chdir(old)
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str, *needles: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err, err
    assert lines, "nothing on stderr"
    for needle in needles:
        assert needle in lines[0], (needle, err)


@pytest.fixture
def tiny(tmp_path) -> tuple[Project, str]:
    """The tiny test project, compiled (nothing run)."""
    project = new_project(tmp_path / "p")
    _plan, path = project.compile()
    return project, path


def plan_data(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# ---- plan files that are not plans -------------------------------------------------------

BAD_PLANS = {
    # name: (file content or None for a folder, what the message must say)
    "a JSON list": ("[]", "JSON list"),
    "not JSON": ("{not json", "invalid JSON"),
    "not UTF-8": (b'{"format": "\xff"}', "UTF-8"),
    "an unknown format": ('{"format": "xlspec-plan/99"}', "xlspec-plan/99"),
    "no format": ('{"cells": []}', "no `format`"),
    "a folder": (None, "folder"),
    "a named pipe": ("fifo", "regular file"),  # read, it would never end
}


def write_bad(folder: Path, name: str) -> str:
    content, _ = BAD_PLANS[name]
    path = folder / "bad.plan.json"
    if content is None:
        path.mkdir()
    elif content == "fifo":
        os.mkfifo(path)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("name", list(BAD_PLANS))
def test_run_refuses_a_file_that_is_not_a_plan(tmp_path, capsys, name):
    path = write_bad(tmp_path, name)
    code, _out, err = cli(["run", path], capsys)
    assert code == 2
    one_line_error(err, path, BAD_PLANS[name][1])


@pytest.mark.parametrize("name", list(BAD_PLANS))
def test_diff_refuses_a_file_that_is_not_a_plan(tmp_path, capsys, name):
    path = write_bad(tmp_path, name)
    code, _out, err = cli(["diff", path, path], capsys)
    assert code == 2
    assert "Traceback" not in err and path in err and BAD_PLANS[name][1] in err, err


def test_run_of_a_missing_plan_names_it(tmp_path, capsys):
    code, _out, err = cli(["run", str(tmp_path / "nope.plan.json")], capsys)
    assert code == 2
    one_line_error(err, "nope.plan.json", "no such file")


def edited(path: str, edit, name: str) -> str:
    """A copy of the plan at ``path`` with ``edit(data)`` applied, written as a plan."""
    data = copy.deepcopy(plan_data(path))
    edit(data)
    out = os.path.join(os.path.dirname(path), f"{name}.plan.json")
    planmod.write(data, out)
    return out


def test_a_plan_without_cells_names_the_field(tiny, capsys):
    _project, path = tiny
    data = plan_data(path)
    del data["cells"]
    bad = os.path.join(os.path.dirname(path), "nocells.plan.json")
    with open(bad, "w", encoding="utf-8") as f:
        json.dump(data, f)
    for command in (["run", bad], ["diff", bad, path]):
        code, _out, err = cli(command, capsys)
        assert code == 2
        assert "Traceback" not in err and "nocells.plan.json" in err and "cells: Field required" in err, err


def test_a_mistyped_field_is_named_with_its_path(tiny, capsys):
    _project, path = tiny
    bad = edited(path, lambda d: d["cells"][2].update(items="many"), "mistyped")
    code, _out, err = cli(["run", bad], capsys)
    assert code == 2
    one_line_error(err, "mistyped.plan.json", "cells[2].items")


def test_a_cell_naming_an_undeclared_language_is_refused(tiny, capsys):
    _project, path = tiny
    bad = edited(path, lambda d: d["cells"][1]["axes"].update(language="xx"), "lang")
    for command in (["run", bad], ["diff", bad, path]):
        code, _out, err = cli(command, capsys)
        assert code == 2, err
        assert "Traceback" not in err and "lang.plan.json" in err and "cell 2" in err and "`xx`" in err, err


# ---- tampered plans ----------------------------------------------------------------------


def _duplicate_a_line(d):
    d["cells"][3] = copy.deepcopy(d["cells"][2])


def _edit_a_template(d):
    d["framings"]["quiz"]["templates"]["fr"] += " !"


def _move_a_cell(d):
    d["cells"][0]["axes"]["framing"] = "quiz" if d["cells"][0]["axes"]["framing"] == "plain" else "plain"


def _delete_a_line(d):
    del d["cells"][-1]


def _edit_a_mode(d):
    d["modes"]["direct"]["max_tokens"] += 1


TAMPERED = {
    "two cells with one id": (_duplicate_a_line, "repeats cell"),
    "a template edited": (_edit_a_template, "does not match its content"),
    "a cell's axes edited": (_move_a_cell, "does not match its content"),
    "a cell deleted": (_delete_a_line, "header says"),
    "a mode's max_tokens edited": (_edit_a_mode, "does not match its content"),
}


@pytest.mark.parametrize("name", list(TAMPERED))
def test_run_refuses_a_tampered_plan(tiny, capsys, name):
    project, path = tiny
    edit, says = TAMPERED[name]
    bad = edited(path, edit, "tampered")
    code, _out, err = cli(["run", bad, "--runs-dir", str(project.runs)], capsys)
    assert code == 2
    one_line_error(err, "tampered.plan.json", says, "xlspec compile")
    assert not (project.runs / "tiny").exists(), "a refused plan must not start a run"


def test_the_first_bad_cell_is_named(tiny):
    _project, path = tiny
    bad = edited(path, _edit_a_template, "tampered")
    plan = planmod.load(bad)
    first = next(i for i, c in enumerate(plan.cells, 1) if c.axes["framing"] == "quiz" and c.axes["language"] == "fr")
    with pytest.raises(planmod.PlanError) as e:
        planmod.verify(plan)
    assert e.value.message.startswith(f"cell {first} (study s: ") and "framing=quiz" in e.value.message
    # diff compares plans of other versions: it checks names, not ids
    planmod.verify(plan, ids=False)


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "build", "*.plan.json")) + glob.glob(os.path.join(ROOT, "tests", "fixtures", "plans", "*.plan.json"))), ids=os.path.basename)
def test_every_committed_plan_verifies(path):
    planmod.verify(planmod.load(path))


# ---- xlspec report -----------------------------------------------------------------------


def test_report_of_a_missing_run_folder_is_one_line(tmp_path):
    """As a user meets it, in a process of its own."""
    r = subprocess.run(XLSPEC + ["report", str(tmp_path / "no" / "such" / "run")], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2
    one_line_error(r.stderr, "no such run folder", str(tmp_path / "no"))
    assert len(r.stderr.strip().splitlines()) == 1


def fake_run(project: Project, plan_path: str) -> Path:
    """runs/tiny as a run leaves it (manifest, results), without running anything."""
    run_dir = project.runs / "tiny"
    run_dir.mkdir(parents=True)
    from xlspec.runtime.schema import RESULTS_SCHEMA

    pq.write_table(RESULTS_SCHEMA.empty_table(), run_dir / "results.parquet")
    manifest = {"plan": os.path.relpath(plan_path, run_dir), "status": "complete", "limit": None}
    (run_dir / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return run_dir


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "not an object", "no plan", "plan missing", "a named pipe"])
def test_report_with_a_damaged_manifest_names_it(tiny, capsys, damage):
    project, path = tiny
    run_dir = fake_run(project, path)
    manifest = run_dir / "manifest.json"
    text = manifest.read_text()
    if damage == "a named pipe":
        manifest.unlink()
        os.mkfifo(manifest)
        code, _out, err = cli(["report", str(run_dir)], capsys)
        assert code == 2
        one_line_error(err, "manifest.json", "regular file")
        return
    manifest.write_text({
        "garbage": "\x00not json",
        "truncated": text[: len(text) // 2],
        "empty": "",
        "not an object": "[1, 2]",
        "no plan": '{"status": "complete"}',
        "plan missing": json.dumps({"plan": "../../build/gone.plan.json"}),
    }[damage], encoding="utf-8")
    code, _out, err = cli(["report", str(run_dir)], capsys)
    assert code == 2
    one_line_error(err, "gone.plan.json" if damage == "plan missing" else "manifest.json")


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "another table"])
def test_report_with_damaged_results_names_the_file_and_the_fix(tiny, capsys, damage):
    project, path = tiny
    run_dir = fake_run(project, path)
    results = run_dir / "results.parquet"
    if damage == "another table":
        pq.write_table(pa.table({"x": [1, 2]}), results)
    else:
        content = results.read_bytes()
        results.write_bytes({"garbage": b"PAR1 nonsense", "truncated": content[: len(content) // 2], "empty": b""}[damage])
    code, _out, err = cli(["report", str(run_dir)], capsys)
    assert code == 2
    one_line_error(err, "results.parquet", "xlspec run")


def test_report_without_results_says_to_run_first(tiny, capsys):
    project, path = tiny
    run_dir = fake_run(project, path)
    (run_dir / "results.parquet").unlink()
    code, _out, err = cli(["report", str(run_dir)], capsys)
    assert code == 2
    one_line_error(err, "no results.parquet", "xlspec run")


# ---- the store: journals, damaged files --------------------------------------------------


def answer(rid: str) -> EngineResult:
    return EngineResult(rid, response=f"Answer: {rid}", option_logprobs={"A": -0.5, "B": float("-inf")}, option_probs={"A": 1.0, "B": 0.0},
                        prompt_tokens=7, output_tokens=2, finish_reason="stop", latency_ms=1.5)


def die(journal) -> None:
    """What a kill does to a journal's writer: the lock goes, nothing is sealed."""
    os.close(journal.fd)
    journal.fd = None


def test_a_dead_runs_journal_is_kept_and_sealed(tmp_path):
    root = str(tmp_path / "store")
    store = AnswerStore(root)
    journal = store.journal("fake", seal_every=100)
    assert journal.add([answer("a"), answer("b")]) == 2
    assert journal.add([answer("c"), EngineResult("bad", error="boom")]) == 1
    name = journal.name
    die(journal)
    assert os.listdir(store.dir) == []  # nothing sealed: the answers are only in the journal
    reopened = AnswerStore(root)
    got = reopened.answers()
    assert sorted(got) == ["a", "b", "c"] and got["a"] == answer("a")
    assert os.listdir(store.dir) == [f"{name}.parquet"] and os.listdir(store.journal_dir) == []
    assert any("kept 3 answers of an interrupted run" in n for n in reopened.notices)
    assert sorted(AnswerStore(root).answers()) == ["a", "b", "c"]  # and stays kept


def test_a_torn_last_line_is_dropped(tmp_path):
    root = str(tmp_path / "store")
    journal = AnswerStore(root).journal("fake", seal_every=100)
    journal.add([answer("a"), answer("b")])
    os.write(journal.fd, b'{"request_id": "c", "respo')  # the kill came mid-write
    die(journal)
    assert sorted(AnswerStore(root).answers()) == ["a", "b"]


def test_a_live_journal_is_left_to_its_writer(tmp_path):
    root = str(tmp_path / "store")
    journal = AnswerStore(root).journal("fake", seal_every=100)
    journal.add([answer("a")])
    other = AnswerStore(root)
    assert other.answers() == {}  # not sealed by a reader while its run is alive
    assert len(os.listdir(other.journal_dir)) == 1
    journal.close()
    assert sorted(AnswerStore(root).answers()) == ["a"]
    assert os.listdir(other.journal_dir) == []


def test_a_journal_seals_every_n_answers(tmp_path):
    root = str(tmp_path / "store")
    store = AnswerStore(root)
    journal = store.journal("fake", seal_every=3)
    for i in range(7):
        journal.add([answer(f"r{i}")])
    assert len(os.listdir(store.dir)) == 2  # 3 + 3 sealed, 1 in the journal
    journal.close()
    files = sorted(os.listdir(store.dir))
    assert len(files) == 3 and os.listdir(store.journal_dir) == []
    ids = [rid for f in files for rid in pq.read_table(os.path.join(store.dir, f)).column("request_id").to_pylist()]
    assert sorted(ids) == [f"r{i}" for i in range(7)]


def test_a_journal_sealed_before_the_kill_is_not_stored_twice(tmp_path):
    root = str(tmp_path / "store")
    store = AnswerStore(root)
    journal = store.journal("fake", seal_every=100)
    journal.add([answer("a")])
    name = journal.name
    journal.close()
    # the kill came between sealing and deleting the journal
    (Path(store.journal_dir)).mkdir(exist_ok=True)
    (Path(store.journal_dir) / f"{name}.jsonl").write_text(json.dumps({"request_id": "a"}) + "\n")
    assert sorted(AnswerStore(root).answers()) == ["a"]
    assert os.listdir(store.dir) == [f"{name}.parquet"] and os.listdir(store.journal_dir) == []


def test_an_unreadable_answer_file_is_set_aside_with_a_notice(tmp_path):
    root = str(tmp_path / "store")
    store = AnswerStore(root)
    store.put([answer("a")], "fake")
    (victim,) = os.listdir(store.dir)
    (Path(store.dir) / victim).write_bytes(b"not parquet")
    reopened = AnswerStore(root)
    assert reopened.answers() == {}
    assert os.listdir(store.dir) == [f"{victim}.corrupt"]
    assert len(reopened.notices) == 1 and victim in reopened.notices[0] and "set aside" in reopened.notices[0]


def test_an_unreadable_cell_file_is_set_aside(tmp_path):
    from xlspec.runtime.schema import RESULTS_SCHEMA

    run = RunDir(str(tmp_path / "runs"), "exp")
    row = dict.fromkeys(RESULTS_SCHEMA.names) | {"cell_id": "c1", "request_id": "r", "item_id": "i", "sample": 0, "answer_kind": "generate"}
    run.write_cell("c1", None, [row])
    run.write_cell("c2", None, [row | {"cell_id": "c2"}])
    Path(run.cell_path("c2", None)).write_bytes(b"PAR1 not really")
    assert run.write_results(["c1", "c2"], None) == 1
    assert run.set_aside_cells == ["c2"] and "set aside" in run.notices[0]
    assert sorted(os.listdir(run.cells_dir)) == ["c1.parquet", "c2.parquet.corrupt"]


# ---- the run summary ---------------------------------------------------------------------


def test_the_summary_speaks_of_output_tokens_only_where_text_was_generated():
    scored = ModelReport("m", "hf", computed=40, prompt_tokens=4000, infer_seconds=2.0)
    assert scored.speed() == "20.0 requests/s, 2,000 prompt tok/s"
    written = ModelReport("m", "hf", computed=40, prompt_tokens=4000, output_tokens=100, generated=20, infer_seconds=2.0)
    assert written.speed() == "20.0 requests/s, 2,000 prompt tok/s, 50 output tok/s"
    assert ModelReport("m", "hf").speed() == ""  # nothing computed: no rates


def test_an_options_run_summary_has_no_output_tokens(capsys):
    from xlspec.runtime.cli import print_summary
    from xlspec.runtime.scheduler import RunReport

    report = RunReport("demo", "runs/demo", rows=40, models=[ModelReport("m", "hf", cells=4, cells_done=4, requests=40, computed=40, prompt_tokens=4000, infer_seconds=2.0, load_seconds=1.0)])
    print_summary(report)
    line = capsys.readouterr().out.splitlines()[1]
    assert line == "  m (hf): 4/4 cells, 40 requests (40 computed, 0 from the store), loaded in 1.0 s, 20.0 requests/s, 2,000 prompt tok/s"


# ---- runs on Ray, in this process --------------------------------------------------------


def run_logged(project: Project, path: str, engine: str = "fake", **kw):
    log = io.StringIO()
    report = run_plan(path, str(project.runs), engine_override=engine, progress=Progress(log, every=0.0), **kw)
    return report, log.getvalue()


def test_a_damaged_cell_file_is_set_aside_and_written_again(ray_cluster, tiny, monkeypatch):
    monkeypatch.setenv("XLSPEC_CHUNK", "8")
    project, path = tiny
    first, _log = run_logged(project, path)
    assert first.complete
    reference = pq.read_table(project.runs / "tiny" / "results.parquet").to_pandas()
    cells = sorted((project.runs / "tiny" / "cells").glob("*.parquet"))
    victim = cells[1]
    victim.write_bytes(victim.read_bytes()[:100])  # truncated on disk
    again, log = run_logged(project, path)
    assert again.complete and again.rows == BASE_REQUESTS, log
    assert f"{victim}: unreadable" in log and "set aside" in log
    assert victim.exists() and Path(f"{victim}.corrupt").exists()
    assert again.models[0].computed == 0  # written again from the store
    resumed = pq.read_table(project.runs / "tiny" / "results.parquet").to_pandas()
    assert resumed[["cell_id", "request_id", "response"]].equals(reference[["cell_id", "request_id", "response"]])
    # and the next run has nothing to do
    third, log = run_logged(project, path)
    assert third.complete and "unreadable" not in log


def test_what_is_happening_is_said_before_each_wait(ray_cluster, tiny, monkeypatch):
    monkeypatch.setenv("XLSPEC_CHUNK", "8")
    project, path = tiny
    _report, log = run_logged(project, path)
    lines = log.splitlines()

    def at(text: str) -> int:
        return next(i for i, ln in enumerate(lines) if text in ln)

    assert at(f"{path}: 4 cells, 1 model (m)") < at(f"[m] 4 cells (0 done); {BASE_REQUESTS} requests: 0 in the store, {BASE_REQUESTS} to compute")
    # (Ray is running already in this process: the run says so rather than starting it)
    assert at("to compute") < at("Ray ready") < at("[m] loading x on fake") < at("[m] loaded in") < at(f"[m] {BASE_REQUESTS}/{BASE_REQUESTS} requests")


# A fake engine that takes its time and says how far it is (module-level, so the actor
# receives it by value along with this module).


class SlowEngine:
    name = "slow"
    DELAY = 0.05

    def __init__(self, config):
        self.fake = FakeEngine(config)
        self.progress = None

    def run(self, batch):
        out = []
        for r in batch:
            time.sleep(self.DELAY)
            out.append(self.fake._answer(r))
            if self.progress is not None:
                self.progress(1)
        return out

    def close(self):
        pass


def _register_slow():
    from ray import cloudpickle

    from xlspec.runtime.engines.base import ENGINES, EngineInfo

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    if ENGINES.get("slow") is None:
        EngineInfo(name="slow", summary="the fake engine, slowly", load=SlowEngine, answers=ANSWERS, chunk=256).register()
    return "slow"


def test_progress_moves_within_an_engine_call(ray_cluster, tiny, monkeypatch):
    """One call of all 40 requests (0.05 s each): the progress lines count requests done
    inside it, not only when it returns."""
    project, path = tiny
    _report, log = run_logged(project, path, engine=_register_slow())
    counts = [int(ln.split("] ")[1].split("/")[0]) for ln in log.splitlines() if ln.startswith("[m] ") and f"/{BASE_REQUESTS} requests" in ln]
    assert counts[-1] == BASE_REQUESTS
    assert any(0 < n < BASE_REQUESTS for n in counts), log


# ---- interrupted processes ---------------------------------------------------------------

def env(**extra) -> dict:
    return dict(os.environ, XLSPEC_PLAIN_PROGRESS="1", XLSPEC_CHUNK="16", XLSPEC_PART="4", **extra)


def stored_ids(project: Project) -> list[str]:
    """Every request id in the store's answer files, repeats included."""
    return [rid for f in sorted((project.store / "answers").glob("*.parquet")) for rid in pq.read_table(f).column("request_id").to_pylist()]


def journal_lines(project: Project) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in (project.store / "journal").glob("*.jsonl")) if (project.store / "journal").exists() else 0


def start_run(cmd: list[str], project: Project, log: Path) -> subprocess.Popen:
    return subprocess.Popen(cmd + ["run", "build/tiny.plan.json", "--engine", "slow", "--no-report"], cwd=project.root, env=env(),
                            stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True)


def wait_for(proc: subprocess.Popen, ready, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.1)
    assert proc.poll() is None, f"the run ended before {what}"
    assert ready(), f"no {what} within {timeout} s"


def reference_results(tmp_path: Path, cmd: list[str]):
    project = new_project(tmp_path / "reference")
    project.compile()
    r = subprocess.run(cmd + ["run", "build/tiny.plan.json", "--engine", "slow", "--no-report"], cwd=project.root, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return pq.read_table(project.runs / "tiny" / "results.parquet").to_pandas().sort_values(["cell_id", "request_id"]).reset_index(drop=True)


def resume_and_compare(project: Project, cmd: list[str], reference, kept: int) -> str:
    """Resume the run; it must compute exactly the ``BASE_REQUESTS - kept`` requests that
    were not kept, store each request once, and end with an uninterrupted run's results."""
    r = subprocess.run(cmd + ["run", "build/tiny.plan.json", "--engine", "slow", "--no-report"], cwd=project.root, env=env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    manifest = json.loads((project.runs / "tiny" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    # the resumed run computed exactly what was not kept, and no request was stored twice
    assert manifest["models"]["m"]["computed"] == BASE_REQUESTS - kept
    ids = stored_ids(project)
    assert len(ids) == len(set(ids)) == BASE_REQUESTS
    resumed = pq.read_table(project.runs / "tiny" / "results.parquet").to_pandas().sort_values(["cell_id", "request_id"]).reset_index(drop=True)
    cols = ["cell_id", "request_id", "response", "parsed_answer"]
    assert resumed[cols].equals(reference[cols])
    return r.stdout + r.stderr


def test_sigint_stops_within_seconds_keeps_what_is_done_and_says_how_to_resume(tmp_path):
    cmd = driver(tmp_path, delay=0.4)
    project = new_project(tmp_path / "p")
    project.compile()
    log = tmp_path / "run.log"
    proc = start_run(cmd, project, log)
    try:
        # a few engine calls (4 requests each) answered: some journaled, some sealed
        wait_for(proc, lambda: journal_lines(project) >= 4 or len(list((project.store / "answers").glob("*.parquet"))) >= 1, "answers")
        sent = time.time()
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C in a terminal: the whole process group
        code = proc.wait(timeout=30)
        took = time.time() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    assert code == 130, out
    assert took < 10, f"took {took:.1f} s to stop"
    assert "Traceback" not in out
    assert "stopped by Ctrl-C" in out and "run `xlspec run build/tiny.plan.json --engine slow` to resume" in out, out
    # what was answered is sealed into answer files (no journal left), and the manifest says so
    assert journal_lines(project) == 0
    kept = set(stored_ids(project))
    assert 4 <= len(kept) < BASE_REQUESTS
    manifest = json.loads((project.runs / "tiny" / "manifest.json").read_text())
    assert manifest["status"] == "incomplete" and manifest["interrupted"] is True
    reference = reference_results(tmp_path, driver(tmp_path, delay=0.0))
    resume_and_compare(project, driver(tmp_path, delay=0.0), reference, len(kept))


def test_kill_9_keeps_the_answers_of_the_batch_in_flight(tmp_path):
    """SIGKILL mid-batch: the answers of the engine calls that came back are in the journal;
    the next run seals them and computes only the rest."""
    cmd = driver(tmp_path, delay=0.3)
    project = new_project(tmp_path / "p")
    project.compile()
    proc = start_run(cmd, project, tmp_path / "run.log")
    try:
        # more answers than one call, fewer than a sealed batch: only the journal has them
        wait_for(proc, lambda: journal_lines(project) >= 8, "journaled answers")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    lines = journal_lines(project)
    assert lines >= 8
    sealed = len(stored_ids(project))  # answers sealed before the kill, if any
    reference = reference_results(tmp_path, driver(tmp_path, delay=0.0))
    out = resume_and_compare(project, driver(tmp_path, delay=0.0), reference, sealed + lines)
    assert f"kept {lines} answers of an interrupted run" in out


# ---- the embedded model ------------------------------------------------------------------


@pytest.mark.slow
def test_kill_9_of_a_real_run_loses_only_the_pass_in_progress(tmp_path, builtin_model):
    """The demo through the hf engine, one engine call per 64-request batch in passes of 256
    tokens, killed once 8 answers are journaled: the engine hands over each forward pass's answers while its call
    runs, so they are on disk before the call returns.  The resumed run seals them and
    computes only the rest, and every request is stored exactly once."""
    project = tmp_path / "proj"
    shutil.copytree(os.path.join(ROOT, "specs"), project / "specs")
    # passes of at most 256 tokens: several passes within the one call
    run_env = dict(os.environ, XLSPEC_PLAIN_PROGRESS="1", XLSPEC_CHUNK="64", XLSPEC_HF_ARGS='{"batch_tokens": 256}')
    subprocess.run(XLSPEC + ["compile", "specs/demo.xls"], cwd=project, env=run_env, check=True, capture_output=True)
    args = XLSPEC + ["run", "build/demo.plan.json", "--limit", "3", "--no-report"]
    journal = project / "runs" / ".store" / "journal"
    proc = subprocess.Popen(args, cwd=project, env=run_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            # the first pass is on disk while the call goes on
            if journal.exists() and sum(len(p.read_bytes().splitlines()) for p in journal.glob("*.jsonl")) >= 8:
                break
            time.sleep(0.2)
        assert proc.poll() is None, "the run finished before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    journaled = sum(len(p.read_bytes().splitlines()) for p in journal.glob("*.jsonl"))
    cells = len(json.loads((project / "build" / "demo.plan.json").read_text())["cells"])
    total = cells * 3  # 3 items per cell, one answer kind each, every request distinct
    assert 8 <= journaled < total, "answers were journaled only when the call returned"
    r = subprocess.run(args, cwd=project, env=run_env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"kept {journaled} answers of an interrupted run" in r.stderr
    manifest = json.loads((project / "runs" / "demo" / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["models"]["smol"]["computed"] == total - journaled
    answers = project / "runs" / ".store" / "answers"
    ids = [rid for f in sorted(answers.glob("*.parquet")) for rid in pq.read_table(f).column("request_id").to_pylist()]
    assert len(ids) == len(set(ids)) == total
    df = pq.read_table(project / "runs" / "demo" / "results.parquet").to_pandas()
    assert len(df) == total and df["error"].isna().all()


# ---- engines report progress within a call -----------------------------------------------


def test_the_vllm_progress_bar_counts_requests_not_sequences():
    from xlspec.runtime.engines.vllm_engine import _counting_bar

    told = []
    bar = _counting_bar(told.append, per_request=2)(total=6)
    for _ in range(6):  # vLLM updates once per finished sequence: 3 loglik requests of 2 options
        bar.update(1)
    bar.close()
    assert told == [1, 1, 1]


@pytest.mark.slow
def test_the_hf_engine_reports_every_request_of_a_call(builtin_model):
    """Generate and options of the same prompts (the options read off the generation's first
    step): the progress calls add up to the batch, group by group."""
    from xlspec.lower import EngineRequest
    from xlspec.runtime.engines import make_engine
    from xlspec.runtime.engines.base import EngineConfig
    from xlspec.spec import ModelSpec

    engine = make_engine(EngineConfig(name="m", model=ModelSpec(engine="hf", source="builtin:smollm2-135m-instruct", batch_size=8)))
    try:
        told = []
        engine.progress = told.append
        handed = []
        engine.deliver = handed.append
        prompts = [f"What is {i} plus {i}?\nA. {2 * i}\nB. {2 * i + 1}" for i in range(12)]
        batch = [EngineRequest(f"{k}{i}", p, k, options=("A", "B"), max_tokens=3) for i, p in enumerate(prompts) for k in ("generate", "options")]
        results = engine.run(batch)
        assert all(r.error is None for r in results)
        assert sum(told) == len(batch) and len(told) > 1
        # the generations are handed over pass by pass (8 sequences at most), as they finish
        assert [len(h) for h in handed] == [8, 4]
        assert sorted(r.request_id for h in handed for r in h) == sorted(r.request_id for r in results if r.request_id.startswith("generate"))
    finally:
        engine.close()


def test_a_journal_line_of_the_wrong_types_is_dropped_not_blocking(tmp_path):
    """A damaged (or foreign) journal line must not make every later run fail."""
    from xlspec.runtime.store import AnswerStore

    store = AnswerStore(str(tmp_path / "store"))
    os.makedirs(store.journal_dir, exist_ok=True)
    with open(os.path.join(store.journal_dir, "abc.jsonl"), "w") as f:
        f.write('{"request_id": "a", "response": "x", "prompt_tokens": "12"}\n')
        f.write('{"request_id": "b", "response": "y", "prompt_tokens": 12}\n')
    answers = store.answers()
    assert set(answers) == {"b"}
    assert any("dropped 1 damaged line" in n for n in store.notices)
    assert not os.listdir(store.journal_dir)


@pytest.mark.parametrize("value", ["x", "0", "-4"])
def test_a_bad_chunk_setting_is_one_clear_error(monkeypatch, value):
    from xlspec.runtime.scheduler import RunError, _env_count

    monkeypatch.setenv("XLSPEC_CHUNK", value)
    with pytest.raises(RunError, match="XLSPEC_CHUNK"):
        _env_count("XLSPEC_CHUNK")


# ---- this machine's engine settings ------------------------------------------------------


def test_machine_settings_come_from_each_engines_variable(tiny, monkeypatch):
    from xlspec.runtime.scheduler import RunError, engine_config

    _project, path = tiny
    plan = planmod.load(path)
    name = next(iter(plan.models))
    monkeypatch.setenv("XLSPEC_HF_ARGS", '{"batch_tokens": 256}')
    monkeypatch.setenv("XLSPEC_VLLM_ARGS", '{"gpu_memory_utilization": 0.5}')
    assert engine_config(name, plan, "hf").settings == {"batch_tokens": 256}
    assert engine_config(name, plan, "vllm").settings == {"gpu_memory_utilization": 0.5}
    monkeypatch.setenv("XLSPEC_HF_ARGS", "[256]")
    with pytest.raises(RunError, match=r"XLSPEC_HF_ARGS must be a JSON object, such as \{"):
        engine_config(name, plan, "hf")
    monkeypatch.setenv("XLSPEC_HF_ARGS", "{batch_tokens: 256}")
    with pytest.raises(RunError, match="XLSPEC_HF_ARGS is not JSON"):
        engine_config(name, plan, "hf")
    monkeypatch.setenv("XLSPEC_HF_ARGS", '{"batch_token": 256}')
    with pytest.raises(RunError, match="XLSPEC_HF_ARGS: unknown setting `batch_token`; it may set: `batch_tokens`"):
        engine_config(name, plan, "hf")
    for bad in ("0", '"256"', "true", "2.5"):
        monkeypatch.setenv("XLSPEC_HF_ARGS", '{"batch_tokens": %s}' % bad)
        with pytest.raises(RunError, match=r"`batch_tokens` is .*a whole number, at least 1"):
            engine_config(name, plan, "hf")
