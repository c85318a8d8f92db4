"""The scheduler (runtime/scheduler.py) through a real local Ray cluster, with the fake
engine (tests/support/fake_engine.py) and real Parquet files.

What a run computed is counted from what the product records, never from a hook in the
engine actor: the answer files the run added to the store (an answer is stored once by the
run that computed it, failed requests are not stored) and the manifest's ``computed``.

Ray is started once for the module (it takes seconds), with two logical GPUs: the
scheduler then starts two engine actors per model (round-robin over them is exercised),
and the actors skip ``torch.set_num_threads``, which the CPU branch runs in every actor
(importing torch there costs ~4 s per actor and run).  The CPU branch is covered by the
end-to-end runs in test_run.py.  The plans are compiled from a tiny spec in a temporary
folder; the engine is chosen with ``engine_override``, which also lets a run use a failing
variant of the fake engine (the engine is part of a model's identity, so expected request
ids are those of the plan on that engine).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from support import fake_engine
from support.projects import FRAMINGS, ITEMS, Project, new_project
from xlspec import plan as planmod
from xlspec.diff import diff_plans
from xlspec.lower import DataCache, cell_requests
from xlspec.runtime.scheduler import Progress, RunReport, is_complete, run_plan, with_engine

ANSWERS = 2  # options + generate
BASE_REQUESTS = 2 * 2 * ITEMS * ANSWERS  # 2 framings x 2 languages
CHUNK = "8"  # requests per engine batch: several batches over both actors


@pytest.fixture(scope="module")
def ray_cluster():
    """This module's cluster counts two GPUs (replica tests); tests/conftest.py has the usual one."""
    import ray

    if ray.is_initialized():  # someone else's cluster: use it, leave it
        yield ray
        return
    # "local": a new cluster of our own, even where `ray start` left one running
    ray.init(address="local", num_cpus=2, num_gpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    monkeypatch.setenv("XLSPEC_CHUNK", CHUNK)


# ---- helpers -----------------------------------------------------------------------------


def answer_files(project: Project) -> set[str]:
    folder = project.store / "answers"
    return {p.name for p in folder.glob("*.parquet")} if folder.exists() else set()


def stored_ids(project: Project, files) -> list[str]:
    folder = project.store / "answers"
    return [rid for name in sorted(files) for rid in pq.read_table(folder / name).column("request_id").to_pylist()]


@dataclass
class Outcome:
    report: RunReport
    stored: list[str]
    """Request ids this run added to the store, repeats included."""
    manifest: dict
    log: str

    @property
    def computed(self) -> int:
        return self.manifest["models"]["m"]["computed"]

    def results(self):
        return pq.read_table(os.path.join(self.report.run_dir, "results.parquet")).to_pandas()


def run(project: Project, plan_path: str, engine: str = "fake", limit: int | None = None) -> Outcome:
    before = answer_files(project)
    log = io.StringIO()
    report = run_plan(plan_path, str(project.runs), limit=limit, engine_override=engine, progress=Progress(log))
    with open(os.path.join(report.run_dir, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    return Outcome(report, stored_ids(project, answer_files(project) - before), manifest, log.getvalue())


def plan_request_ids(plan, path, cells=None, engine: str | None = "fake") -> set[str]:
    """The plan's request ids as a run on ``engine`` computes them (the engine is part of a
    model's identity)."""
    plan = with_engine(plan, engine)[0]
    data = DataCache(plan, path)
    return {cr.request.request_id for c in (plan.cells if cells is None else cells) for cr in cell_requests(plan, c, data)}


def cell_files(project: Project, experiment: str = "tiny") -> list[str]:
    return sorted(os.listdir(project.runs / experiment / "cells"))


def copy_project(src: Project, dest: Path) -> Project:
    shutil.copytree(src.root, dest)
    return Project(dest)


@pytest.fixture(scope="module")
def base(ray_cluster, tmp_path_factory):
    """The tiny plan (2 framings x 2 languages x 5 items x options + generate) run once."""
    project = new_project(tmp_path_factory.mktemp("base") / "p")
    plan, path = project.compile()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XLSPEC_CHUNK", CHUNK)
        outcome = run(project, path)
    return project, plan, path, outcome


# ---- one run -----------------------------------------------------------------------------


def test_a_run_writes_every_cell_and_stores_every_answer_once(base):
    project, plan, path, out = base
    assert out.report.complete and out.manifest["status"] == "complete"
    assert out.report.models[0].failure is None, out.log
    # every request computed once, in several batches (one answer file each)
    assert out.computed == len(out.stored) == len(set(out.stored)) == BASE_REQUESTS
    assert set(out.stored) == plan_request_ids(plan, path)
    assert len(answer_files(project)) == -(-BASE_REQUESTS // int(CHUNK))
    m = out.manifest["models"]["m"]
    assert (m["cells"], m["cells_done"], m["requests"], m["cached"], m["errors"], m["engine"]) == (4, 4, BASE_REQUESTS, 0, 0, "fake")
    # one file per cell, with its rows
    assert cell_files(project) == sorted(f"{c.id}.parquet" for c in plan.cells)
    for c in plan.cells:
        rows = pq.read_table(project.runs / "tiny" / "cells" / f"{c.id}.parquet").to_pandas()
        assert len(rows) == c.items * ANSWERS == ITEMS * ANSWERS
        assert set(rows["cell_id"]) == {c.id} and set(rows["framing"]) == {c.axes["framing"]} and set(rows["language"]) == {c.axes["language"]}
    df = out.results()
    assert out.report.rows == len(df) == BASE_REQUESTS
    assert list(dict.fromkeys(df["cell_id"])) == [c.id for c in plan.cells]  # plan order
    assert df["error"].isna().all()
    assert set(df["engine"]) == {"fake"} and set(df["answer_kind"]) == {"options", "generate"}
    gen = df[df["answer_kind"] == "generate"]
    assert gen["response"].str.startswith("Answer: ").all() and gen["parsed_answer"].isin(["A", "B"]).all()
    assert is_complete(path, str(project.runs))


def test_a_no_op_rerun_computes_nothing(base, tmp_path):
    project = copy_project(base[0], tmp_path / "p")
    path = str(project.build / "tiny.plan.json")
    files = answer_files(project)
    first = base[3].results()
    out = run(project, path)
    assert out.stored == [] and answer_files(project) == files
    assert out.computed == 0 and out.report.complete
    assert out.report.ray_start_seconds == 0  # nothing to compute: Ray is not even asked
    # the cell files gone (a new run folder), every answer comes from the store
    shutil.rmtree(project.runs / "tiny")
    again = run(project, path)
    assert again.stored == [] and again.computed == 0
    assert again.manifest["models"]["m"]["cached"] == BASE_REQUESTS
    assert again.results()[["request_id", "response", "parsed_answer"]].equals(first[["request_id", "response", "parsed_answer"]])


def test_another_engine_computes_its_own_answers_and_says_so(base, tmp_path):
    """Regression: `--engine vllm` over a store of hf answers computed nothing and labelled
    the hf answers `engine=vllm`.  The engine is part of a model's identity."""
    project = copy_project(base[0], tmp_path / "p")
    path = str(project.build / "tiny.plan.json")
    plan = planmod.load(path)
    twin = fake_engine.twin()
    other = run(project, path, engine=twin)
    # every request computed again, under ids of its own, and the rows name the engine
    assert other.computed == len(other.stored) == BASE_REQUESTS
    assert set(other.stored) == plan_request_ids(plan, path, engine=twin)
    assert not set(other.stored) & plan_request_ids(plan, path)
    assert set(other.results()["engine"]) == {twin} and other.manifest["models"]["m"]["engine"] == twin
    # its cell files sit beside the plan's own engine's, which stay as they were
    assert cell_files(project) == sorted([f"{c.id}.parquet" for c in plan.cells] + [f"{c.id}.engine-{twin}.parquet" for c in plan.cells])
    assert is_complete(path, str(project.runs), twin) and not is_complete(path, str(project.runs))
    # each engine's answers stay in the store: switching back computes nothing
    assert run(project, path, engine=twin).computed == 0
    back = run(project, path)
    assert back.computed == 0 and set(back.results()["engine"]) == {"fake"}


def test_the_same_request_in_several_cells_is_computed_once(ray_cluster, tmp_path):
    """A framing with the same texts as another, and a second study reading the same
    prompts' options: 8 cells, 70 rows, 40 distinct requests."""
    project = new_project(tmp_path / "p")
    framings = {**FRAMINGS, "copy": dict(FRAMINGS["plain"])}
    other = "\nstudy t {\n  model = m\n  dataset = facts\n  language = langs\n  framing = plain\n  mode = direct\n  answer = options\n  metrics = [accuracy]\n}\n"
    plan, path = project.compile(framings=framings, extra=other)
    assert len(plan.cells) == 8
    out = run(project, path)
    assert out.report.complete, out.log
    assert out.computed == len(out.stored) == len(set(out.stored)) == BASE_REQUESTS
    df = out.results()
    assert len(df) == 6 * ITEMS * ANSWERS + 2 * ITEMS == 70
    assert len(cell_files(project)) == 8
    assert df["request_id"].nunique() == BASE_REQUESTS
    # every row of one request carries the same answer
    assert (df.groupby("request_id")["response"].nunique() == 1).all()
    m = out.manifest["models"]["m"]
    assert m["requests"] == 70 and m["cached"] == 0


def test_an_unreadable_answer_file_is_recomputed(base, tmp_path):
    project = copy_project(base[0], tmp_path / "p")
    path = str(project.build / "tiny.plan.json")
    victim = sorted(answer_files(project))[0]
    lost = stored_ids(project, [victim])
    (project.store / "answers" / victim).write_bytes(b"not parquet")
    shutil.rmtree(project.runs / "tiny")
    out = run(project, path)
    assert out.report.complete, out.log
    assert sorted(out.stored) == sorted(lost) and out.computed == len(lost)
    assert len(out.results()) == BASE_REQUESTS


# ---- failed requests ---------------------------------------------------------------------

MARKER = "snow"  # in one item's English question: 2 cells (plain, quiz) x 2 answer kinds
FAILED = 2 * ANSWERS


@pytest.fixture
def failed_run(ray_cluster, tmp_path):
    project = new_project(tmp_path / "p")
    plan, path = project.compile()
    out = run(project, path, engine=fake_engine.failing(MARKER))
    return project, plan, path, out


def test_a_partly_failed_cell_is_written_with_errors_then_completed(failed_run):
    project, plan, path, out = failed_run
    assert out.computed == BASE_REQUESTS
    # failed requests are not stored; everything else is
    assert len(out.stored) == len(set(out.stored)) == BASE_REQUESTS - FAILED
    m = out.manifest["models"]["m"]
    assert m["errors"] == FAILED and m["failure"] is None
    by_cell = {c.id: c for c in plan.cells}
    files = cell_files(project)
    assert files == sorted(f"{c.id}{'.errors' if c.axes['language'] == 'en' else ''}.parquet" for c in plan.cells)
    df = out.results()
    assert len(df) == BASE_REQUESTS  # failed rows are kept, with their error
    failed = df[df["error"].notna()]
    assert len(failed) == FAILED and failed["prompt"].str.contains(MARKER).all()
    assert not df[df["error"].isna()]["prompt"].str.contains(MARKER).any()
    assert failed["response"].isna().all() and failed["parsed_answer"].isna().all()
    assert set(failed["cell_id"]) == {c for c in by_cell if by_cell[c].axes["language"] == "en"}
    assert "fake failure" in failed["error"].iloc[0]
    assert not set(failed["request_id"]) & set(out.stored)

    # the next run computes only the failed requests, then writes the cells complete
    retry = run(project, path)
    assert sorted(retry.stored) == sorted(failed["request_id"]) and retry.computed == FAILED
    m = retry.manifest["models"]["m"]
    assert (m["requests"], m["cached"], m["errors"]) == (2 * ITEMS * ANSWERS, 2 * ITEMS * ANSWERS - FAILED, 0)
    assert cell_files(project) == sorted(f"{c.id}.parquet" for c in plan.cells)
    after = retry.results()
    assert len(after) == BASE_REQUESTS and after["error"].isna().all()
    assert retry.report.complete and retry.manifest["status"] == "complete"
    assert is_complete(path, str(project.runs))
    # and then nothing is left to compute
    assert run(project, path).computed == 0


def test_a_run_with_failed_requests_is_incomplete(failed_run):
    project, _plan, path, out = failed_run
    assert not out.report.complete
    assert out.manifest["status"] == "incomplete"
    assert not is_complete(path, str(project.runs))


# ---- what `xlspec diff` promises is what the re-run computes -----------------------------

QUIZ_NIGHT = {name: dict(t) for name, t in FRAMINGS.items()}
QUIZ_NIGHT["quiz"]["en"] = "Quiz night! {question}\\n{options}"

EDITS = {
    # edit: (spec arguments, requests the re-run computes)
    "batch_size": (dict(model_settings="batch_size = 8"), 0),
    "tensor_parallel": (dict(model_settings="tensor_parallel = 2"), 0),
    "one framing's text": (dict(framings=QUIZ_NIGHT), ITEMS * ANSWERS),
    "answer parser": (dict(answer="options + generate(parser = first_line)"), 0),
    "a new language": (dict(languages="en, fr, de"), 2 * ITEMS * ANSWERS),
    "greedy samples": (dict(study_extra="  samples = 3"), 0),
    "model dtype": (dict(model_settings='dtype = "float32"'), BASE_REQUESTS),
    "an answer kind added": (dict(answer="options + generate(parser = option_letter) + loglik"), BASE_REQUESTS // 2),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_diff_promises_exactly_what_the_rerun_computes(base, tmp_path, edit):
    """Regression: adding `batch_size = 8` to a model made `xlspec diff` promise requests
    that the re-run then did not compute."""
    spec, expected = EDITS[edit]
    project = copy_project(base[0], tmp_path / "p")
    old_path = str(project.build / "old.plan.json")
    shutil.copy(project.build / "tiny.plan.json", old_path)
    old = planmod.load(old_path)
    new, new_path = project.compile(**spec)
    d = diff_plans(old, new, old_path, new_path)
    assert d.exact
    out = run(project, new_path)
    assert out.report.complete, out.log
    assert out.results()["error"].isna().all()
    assert len(out.stored) == len(set(out.stored)) == out.computed
    # what the re-run computed: the new plan's requests the old plan did not have
    assert set(out.stored) == plan_request_ids(new, new_path) - plan_request_ids(old, old_path)
    assert d.rerun_requests == out.computed == expected
    assert out.report.rows == sum(len(cell_requests(new, c, DataCache(new, new_path))) for c in new.cells)
