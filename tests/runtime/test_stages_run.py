"""Running stages: a judge study reading a generator study's responses, through a real local
Ray cluster and real Parquet, with the fake engine (tests/support/fake_engine.py) for speed.
The end-to-end run on the embedded model is in test_run.py.

What a run computed is counted from what the product records: the answer files it added to
the store and the manifest's ``computed``."""

from __future__ import annotations

import io
import json
import os
import shutil

import pyarrow.parquet as pq
import pytest

from support import fake_engine  # noqa: F401  (registers the fake engine)
from support.slow_driver import driver
from xlspec import plan as planmod
from xlspec.api import compile_file
from xlspec.diff import diff_plans, render_diff_text
from xlspec.runtime.scheduler import Progress, run_plan

ROWS = [
    {"id": f"q{i}", "question": {"en": f"English question {i}?", "fr": f"Question française {i} ?"}}
    for i in range(1, 4)
]

SPEC = """experiment stages "Generate, then judge"
dataset prompts = jsonl("prompts.jsonl") { id = id  question = question[lang] }
framing ask { en = "Answer briefly: {question}"  fr = "Répondez : {question}" }
framing rubric {
  en = "Question: {question}\\nAnswer: {response}\\nScore 0-4."
  fr = "Question : {question}\\nRéponse : {response}\\nNote 0-4."
}
model writer = fake("builtin:smollm2-135m-instruct")
model judge_model = fake("builtin:smollm2-135m-instruct") { dtype = float32 }
study gen { model = writer  dataset = prompts  language = [en, fr]  framing = ask  answer = generate }
dataset answers = responses(gen) { generator = model }
study judge { model = judge_model  dataset = answers  language = [en, fr]  framing = rubric  answer = generate }
"""

GEN_REQUESTS = 2 * len(ROWS)


def compile_to(root, text: str) -> str:
    (root / "prompts.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    (root / "stages.xls").write_text(text, encoding="utf-8")
    result = compile_file(str(root / "stages.xls"), str(root / "build"))
    assert result.ok, [d.message for d in result.diagnostics]
    path = str(root / "build" / "stages.plan.json")
    planmod.write(result.data, path)
    return path


def run(root, path: str, limit: int | None = None) -> tuple[dict, str]:
    log = io.StringIO()
    report = run_plan(path, str(root / "runs"), limit=limit, engine_override="fake", progress=Progress(log))
    with open(os.path.join(report.run_dir, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    assert report.complete, log.getvalue()
    return manifest, log.getvalue()


def computed(manifest: dict) -> dict[str, int]:
    return {m: v["computed"] for m, v in manifest["models"].items()}


def results(root) -> list[dict]:
    return pq.read_table(root / "runs" / "stages" / "results.parquet").to_pylist()


@pytest.fixture(scope="module")
def first_run(ray_cluster, tmp_path_factory):
    root = tmp_path_factory.mktemp("stages")
    path = compile_to(root, SPEC)
    manifest, log = run(root, path)
    return root, path, manifest, log


def test_the_judge_runs_after_the_generator_and_reads_its_responses(first_run):
    root, _path, manifest, log = first_run
    assert computed(manifest) == {"writer": GEN_REQUESTS, "judge_model": GEN_REQUESTS}
    # The writer's cells were computed before the judge's were lowered.
    assert log.index("[writer]") < log.index("[judge_model]")
    rows = results(root)
    gen = {(r["language"], r["item_id"]): r for r in rows if r["study"] == "gen"}
    judged = [r for r in rows if r["study"] == "judge"]
    assert len(gen) == len(judged) == GEN_REQUESTS
    for r in judged:
        item_id, tag = r["item_id"].split("|", 1)
        upstream = gen[(r["language"], item_id)]
        assert tag == "model=writer|framing=ask|sample=0" or tag.startswith("model=writer")
        # The judge's prompt holds the generator's question and its exact response, and the
        # row names the generation it judged.
        assert upstream["response"] in r["prompt"]
        assert r["upstream_request_id"] == upstream["request_id"]
        assert dict(r["upstream"]) == {"generator": "writer"}
        assert ("Question: " if r["language"] == "en" else "Question : ") in r["prompt"]


def test_a_rubric_edit_reruns_only_the_judge(first_run, tmp_path):
    root, _path, _manifest, _log = first_run
    _path = str(root / "build" / "stages.plan.json")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    path = compile_to(copy, SPEC.replace("Score 0-4.", "Give a score from 0 to 4."))
    # `xlspec diff` counts the judge's requests from the generations in the run folder, and
    # the run computes exactly those.
    d = diff_plans(planmod.load(_path), planmod.load(path), _path, path, runs_dir=str(copy / "runs"))
    assert d.exact and not d.reads_upstream
    assert [(c.study, c.axes["language"], c.requests) for c in d.changed] == [("judge", "en", len(ROWS))]
    assert "to compute on re-run: 3 requests" in render_diff_text(d, "a", "b")
    manifest, _ = run(copy, path)
    assert computed(manifest) == {"writer": 0, "judge_model": len(ROWS)}  # the English judgements
    assert sum(computed(manifest).values()) == d.rerun_requests


def test_a_generator_edit_reruns_its_generations_and_their_judgements(first_run, tmp_path):
    root, _path, _manifest, _log = first_run
    _path = str(root / "build" / "stages.plan.json")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    path = compile_to(copy, SPEC.replace('fr = "Répondez : {question}"', 'fr = "Répondez en un mot : {question}"'))
    # The new French generations are not known before they run: the judge's count is the
    # plan's estimate, and diff says so.
    d = diff_plans(planmod.load(_path), planmod.load(path), _path, path, runs_dir=str(copy / "runs"))
    assert d.reads_upstream and not d.exact
    assert sorted((c.study, c.axes["language"]) for c in d.changed) == [("gen", "fr"), ("judge", "fr")]
    manifest, _ = run(copy, path)
    assert computed(manifest) == {"writer": len(ROWS), "judge_model": len(ROWS)}  # the French ones
    again, _ = run(copy, path)
    assert computed(again) == {"writer": 0, "judge_model": 0}


def test_limit_limits_the_upstream_items_and_the_judge_follows(ray_cluster, tmp_path):
    two = SPEC.replace("model = writer ", "model = [writer, judge_model] ")
    path = compile_to(tmp_path, two)
    manifest, _ = run(tmp_path, path, limit=1)
    rows = pq.read_table(tmp_path / "runs" / "stages" / "results.parquet").to_pylist()
    # 1 item x 2 languages x 2 generators; the judge reads all 4 generations, not 1 a cell
    assert sorted((r["study"], r["language"], r["model"]) for r in rows) == [
        ("gen", "en", "judge_model"), ("gen", "en", "writer"), ("gen", "fr", "judge_model"), ("gen", "fr", "writer"),
        ("judge", "en", "judge_model"), ("judge", "en", "judge_model"), ("judge", "fr", "judge_model"), ("judge", "fr", "judge_model"),
    ]
    assert {dict(r["upstream"])["generator"] for r in rows if r["study"] == "judge"} == {"writer", "judge_model"}
    # (the fake engine answers from the prompt alone, so both generators wrote the same text:
    # their two judgements of an item are one request)
    assert computed(manifest) == {"writer": 2, "judge_model": 2 + 2}


# ---- SIGKILL in the middle of the judge stage ---------------------------------------------

MANY = [{"id": f"q{i}", "question": {"en": f"English question {i}?", "fr": f"Question française {i} ?"}} for i in range(1, 9)]


def kill_env() -> dict:
    return dict(os.environ, XLSPEC_PLAIN_PROGRESS="1", XLSPEC_CHUNK="4", XLSPEC_PART="2")


def stage_project(root) -> list[str]:
    root.mkdir(parents=True)
    (root / "prompts.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in MANY), encoding="utf-8")
    (root / "stages.xls").write_text(SPEC, encoding="utf-8")
    result = compile_file(str(root / "stages.xls"), str(root / "build"))
    assert result.ok
    planmod.write(result.data, str(root / "build" / "stages.plan.json"))
    return ["run", "build/stages.plan.json", "--engine", "slow", "--no-report"]


def store_ids(root) -> list[str]:
    return [rid for f in sorted((root / "runs" / ".store" / "answers").glob("*.parquet")) for rid in pq.read_table(f).column("request_id").to_pylist()]


def journaled(root) -> int:
    folder = root / "runs" / ".store" / "journal"
    return sum(len(p.read_bytes().splitlines()) for p in folder.glob("*.jsonl")) if folder.exists() else 0


def test_sigkill_in_the_judge_stage_loses_nothing(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    # the judge's requests are slow, the generations fast
    slow = driver(tmp_path, delay=0.4, slow_when=("Score 0-4", "Note 0-4"))
    fast = driver(tmp_path, delay=0.0)
    generations = 2 * len(MANY)

    root = tmp_path / "p"
    args = stage_project(root)
    proc = subprocess.Popen([*slow, *args], cwd=root, env=kill_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 240
        # every generation stored, and some judgements answered (sealed or journaled)
        while time.time() < deadline and proc.poll() is None and len(store_ids(root)) + journaled(root) < generations + 3:
            time.sleep(0.1)
        assert proc.poll() is None, "the run ended before the judge stage"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    kept = len(store_ids(root)) + journaled(root)
    assert generations + 3 <= kept < 2 * generations

    r = subprocess.run([*fast, *args], cwd=root, env=kill_env(), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    manifest = json.loads((root / "runs" / "stages" / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    # the resumed run computed only what the killed one had not kept; each answer stored once
    assert sum(m["computed"] for m in manifest["models"].values()) == 2 * generations - kept
    ids = store_ids(root)
    assert len(ids) == len(set(ids)) == 2 * generations

    reference_root = tmp_path / "reference"
    ref_args = stage_project(reference_root)
    subprocess.run([*fast, *ref_args], cwd=reference_root, env=kill_env(), check=True, capture_output=True, timeout=300)
    cols = ["study", "cell_id", "request_id", "item_id", "response", "upstream_request_id"]
    got = pq.read_table(root / "runs" / "stages" / "results.parquet").to_pandas()[cols].sort_values(["cell_id", "request_id"]).reset_index(drop=True)
    want = pq.read_table(reference_root / "runs" / "stages" / "results.parquet").to_pandas()[cols].sort_values(["cell_id", "request_id"]).reset_index(drop=True)
    assert got.equals(want)


def test_a_damaged_upstream_cell_is_written_again_before_the_judge_reads_it(first_run, tmp_path):
    root, _path, _manifest, _log = first_run
    _path = str(root / "build" / "stages.plan.json")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    plan = planmod.load(str(copy / "build" / "stages.plan.json"))
    gen = next(c for c in plan.cells if c.study == "gen" and c.axes["language"] == "fr")
    judge = next(c for c in plan.cells if c.reads == [gen.id])
    cells = copy / "runs" / "stages" / "cells"
    (cells / f"{gen.id}.parquet").write_bytes(b"not parquet")
    (cells / f"{judge.id}.parquet").unlink()
    manifest, log = run(copy, str(copy / "build" / "stages.plan.json"))
    assert computed(manifest) == {"writer": 0, "judge_model": 0}, log  # all from the store
    rows = [r for r in results(copy) if r["cell_id"] == judge.id]
    assert len(rows) == len(ROWS)  # no item missing


PARTS = """experiment stages "Generate, then judge"
dataset prompts = jsonl("prompts.jsonl") { id = id  question = question[lang]  partition = level }
framing ask { en = "Answer briefly: {question}"  fr = "Répondez : {question}" }
framing rubric { en = "Question: {question}\\nAnswer: {response}\\nScore 0-4."  fr = "Question : {question}\\nRéponse : {response}\\nNote 0-4." }
model writer = fake("builtin:smollm2-135m-instruct")
model judge_model = fake("builtin:smollm2-135m-instruct") { dtype = float32 }
study gen { model = writer  dataset = prompts  language = [en, fr]  framing = ask  partition = [easy, hard]  answer = generate }
dataset answers = responses(gen) { generator = model  level = partition }
study judge { model = judge_model  dataset = answers  language = [en, fr]  framing = rubric  where = level == "hard"  answer = generate }
"""


def test_the_judge_sees_the_question_of_the_partition_it_judges(ray_cluster, tmp_path):
    rows = [{"id": "q1", "level": level, "question": {"en": f"{level} question?", "fr": f"question {level} ?"}} for level in ("easy", "hard")]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (tmp_path / "stages.xls").write_text(PARTS, encoding="utf-8")
    result = compile_file(str(tmp_path / "stages.xls"), str(tmp_path / "build"))
    assert result.ok, [d.message for d in result.diagnostics]
    path = str(tmp_path / "build" / "stages.plan.json")
    planmod.write(result.data, path)
    run(tmp_path, path)
    judged = [r for r in results(tmp_path) if r["study"] == "judge"]
    # `where level == "hard"` (a name the block gives) keeps the hard generations only, and
    # each is shown with its own question
    assert sorted(r["language"] for r in judged) == ["en", "fr"]
    for r in judged:
        assert ("hard question?" if r["language"] == "en" else "question hard ?") in r["prompt"]
        assert "easy" not in r["prompt"]


def test_greedy_samples_are_rows_the_judge_reads_as_the_plan_estimated(ray_cluster, tmp_path):
    """``samples = 2`` with greedy decoding: one request per item, two rows (one per
    sample), and the judge reads each row as an item, as the plan's estimate says."""
    path = compile_to(tmp_path, SPEC.replace("framing = ask  answer = generate }", "framing = ask  answer = generate  samples = 2 }"))
    plan = planmod.load(path)
    estimate = sum(c.estimate.requests for c in plan.cells if c.study == "judge")
    manifest, _ = run(tmp_path, path)
    rows = results(tmp_path)
    assert len([r for r in rows if r["study"] == "gen"]) == 2 * GEN_REQUESTS
    assert len([r for r in rows if r["study"] == "judge"]) == estimate == 2 * GEN_REQUESTS
    assert computed(manifest)["writer"] == GEN_REQUESTS  # greedy: the samples are one request
