"""The result store (runtime/store.py) on real Parquet files: the answer cache and the run
folder's per-cell files."""

from __future__ import annotations

import os

import pyarrow.parquet as pq
import pytest

from xlspec.runtime.engines.base import EngineResult
from xlspec.runtime.schema import RESULTS_SCHEMA
from xlspec.runtime.store import AnswerStore, RunDir


def answer(rid: str, **kw) -> EngineResult:
    fields = dict(response=f"Answer: {rid}", prompt_tokens=7, output_tokens=2, finish_reason="stop", latency_ms=1.5)
    return EngineResult(rid, **(fields | kw))


def answer_files(store: AnswerStore) -> list[str]:
    return sorted(os.listdir(store.dir))


def test_answers_round_trip(tmp_path):
    store = AnswerStore(str(tmp_path / "store"))
    assert store.answers() == {}
    batch = [
        answer("g"),
        EngineResult("o", response="B", option_logprobs={"A": -2.5, "B": -0.25}, option_probs={"A": 0.1, "B": 0.9}, prompt_tokens=11, finish_reason="options"),
        EngineResult("l", response=" Paris", option_logprobs={" Paris": -1.0, " banana": -9.0}, option_probs={" Paris": 0.99, " banana": 0.01}, finish_reason="loglik", latency_ms=3.0),
    ]
    assert store.put(batch, "fake") == 3
    assert store.put([answer("g2")], "fake") == 1
    assert len(answer_files(store)) == 2  # one file per batch
    # the same instance is kept up to date; a new one reads the files
    fresh = AnswerStore(str(tmp_path / "store"))
    for s in (store, fresh):
        got = s.answers()
        assert sorted(got) == ["g", "g2", "l", "o"]
        for r in batch:
            assert got[r.request_id] == r
    table = pq.read_table(os.path.join(store.dir, answer_files(store)[0]))
    assert set(table.column("engine").to_pylist()) == {"fake"}


def test_failed_results_are_not_cached(tmp_path):
    store = AnswerStore(str(tmp_path / "store"))
    assert store.put([answer("ok"), EngineResult("bad", error="engine failure: out of memory")], "fake") == 1
    assert store.put([EngineResult("worse", error="boom")], "fake") == 0
    assert len(answer_files(store)) == 1  # an all-failed batch writes nothing
    for s in (store, AnswerStore(store.root)):
        assert sorted(s.answers()) == ["ok"]
    stored = pq.read_table(store.dir).column("request_id").to_pylist()
    assert stored == ["ok"]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_an_unreadable_answer_file_is_skipped(tmp_path, damage):
    root = str(tmp_path / "store")
    store = AnswerStore(root)
    store.put([answer("kept")], "fake")
    store.put([answer("lost1"), answer("lost2")], "fake")
    lost = next(f for f in answer_files(store) if pq.read_table(os.path.join(store.dir, f)).num_rows == 2)
    path = os.path.join(store.dir, lost)
    content = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write({"garbage": b"not parquet at all", "truncated": content[: len(content) // 2], "empty": b""}[damage])
    # its answers are missing, so the scheduler computes them again; the rest are read
    reopened = AnswerStore(root)
    assert sorted(reopened.answers()) == ["kept"]
    reopened.put([answer("lost1"), answer("lost2")], "fake")
    assert sorted(AnswerStore(root).answers()) == ["kept", "lost1", "lost2"]


def test_an_answer_stored_twice_is_read_once(tmp_path):
    """Two runs racing on one request each store it (no lock); readers take one."""
    root = str(tmp_path / "store")
    a, b = AnswerStore(root), AnswerStore(root)
    a.put([answer("same"), answer("a-only")], "fake")
    b.put([answer("same"), answer("b-only")], "fake")
    assert len(answer_files(a)) == 2
    got = AnswerStore(root).answers()
    assert sorted(got) == ["a-only", "b-only", "same"]
    assert got["same"] == answer("same")


def test_writes_leave_no_temporary_files(tmp_path):
    store = AnswerStore(str(tmp_path / "store"))
    store.put([answer("x")], "fake")
    run = RunDir(str(tmp_path / "runs"), "exp")
    run.write_cell("c1", None, [row("c1", "x")])
    run.write_results(["c1"], None)
    for folder in (store.dir, run.cells_dir, run.path):
        assert not [f for f in os.listdir(folder) if f.startswith(".") or f.endswith(".tmp")]


# ---- the run folder ----------------------------------------------------------------------


def row(cell: str, rid: str, error: str | None = None) -> dict:
    r = dict.fromkeys(RESULTS_SCHEMA.names)
    r.update(experiment="exp", cell_id=cell, request_id=rid, item_id=rid, sample=0, answer_kind="generate", prompt="p", response=None if error else "r", error=error)
    return r


def test_a_cell_with_errors_is_replaced_by_a_complete_one(tmp_path):
    run = RunDir(str(tmp_path / "runs"), "exp")
    assert run.path == str(tmp_path / "runs" / "exp")
    run.write_cell("c1", None, [row("c1", "a"), row("c1", "b", error="boom")], complete=False)
    errors = run.cell_path("c1", None, complete=False)
    assert errors.endswith("c1.errors.parquet") and os.path.exists(errors)
    assert not run.has_cell("c1", None), "a cell with failed requests is not done"
    run.write_cell("c1", None, [row("c1", "a"), row("c1", "b")])
    assert run.has_cell("c1", None)
    assert os.listdir(run.cells_dir) == ["c1.parquet"]
    assert pq.read_table(run.cell_path("c1", None)).column("error").to_pylist() == [None, None]


def test_limited_runs_have_their_own_cell_files(tmp_path):
    run = RunDir(str(tmp_path / "runs"), "exp")
    run.write_cell("c1", 2, [row("c1", "a"), row("c1", "b")])
    assert run.has_cell("c1", 2)
    assert not run.has_cell("c1", None) and not run.has_cell("c1", 3)
    assert os.listdir(run.cells_dir) == ["c1.limit2.parquet"]
    run.write_cell("c1", 3, [row("c1", "a")], complete=False)
    assert sorted(os.listdir(run.cells_dir)) == ["c1.limit2.parquet", "c1.limit3.errors.parquet"]


def test_results_follow_plan_order(tmp_path):
    run = RunDir(str(tmp_path / "runs"), "exp")
    # written in another order than the plan's, one with errors, one never written
    run.write_cell("c3", None, [row("c3", "e")])
    run.write_cell("c1", None, [row("c1", "a"), row("c1", "b")])
    run.write_cell("c2", None, [row("c2", "c"), row("c2", "d", error="boom")], complete=False)
    run.write_cell("c1", 5, [row("c1", "limited")])  # another --limit: not part of this table
    n = run.write_results(["c2", "missing", "c1", "c3"], None)
    table = pq.read_table(os.path.join(run.path, "results.parquet"))
    assert n == table.num_rows == 5
    assert table.schema.equals(RESULTS_SCHEMA)
    assert table.column("request_id").to_pylist() == ["c", "d", "a", "b", "e"]
    assert table.column("error").to_pylist() == [None, "boom", None, None, None]
    # a complete file is preferred over an older .errors one of the same cell
    run.write_cell("c2", None, [row("c2", "c"), row("c2", "d")])
    run.write_results(["c1", "c2", "c3"], None)
    table = pq.read_table(os.path.join(run.path, "results.parquet"))
    assert table.column("request_id").to_pylist() == ["a", "b", "c", "d", "e"]
    assert table.column("error").null_count == 5
    # nothing written yet: an empty table with the schema
    empty = RunDir(str(tmp_path / "runs"), "other")
    assert empty.write_results(["c1"], None) == 0
    assert pq.read_table(os.path.join(empty.path, "results.parquet")).schema.equals(RESULTS_SCHEMA)
