"""The result store: a content-addressed cache of engine answers, and per-cell result files.

Layout::

    <store>/answers/<uuid>.parquet      engine answers, one file per engine batch
    runs/<experiment>/cells/<cell>.parquet   the results rows of one finished cell
    runs/<experiment>/results.parquet        every cell of the plan, in plan order

Every file is written to a temporary name and renamed into place, so a crash (Ctrl-C,
``kill -9``) never leaves half a file, and files are never modified after that.  This is why
no lock is needed: concurrent runs never write the same answer file, readers only see whole
files, and an answer computed twice (two runs racing on the same request) is stored twice
and read once.  A request whose id is in any answer file is never sent to an engine again.
"""

from __future__ import annotations

import glob
import os
import uuid

import pyarrow as pa
import pyarrow.parquet as pq

from xlspec.files import atomic_write

from .engines.base import EngineResult
from .schema import OPTION_MAP, RESULTS_SCHEMA

ANSWER_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("response", pa.string()),
        ("option_logprobs", OPTION_MAP),
        ("option_probs", OPTION_MAP),
        ("prompt_tokens", pa.int32()),
        ("output_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("latency_ms", pa.float64()),
        ("engine", pa.string()),
    ]
)


def atomic_write_table(table: pa.Table, path: str) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _as_map(d: dict | None):
    return None if d is None else list(d.items())


class AnswerStore:
    def __init__(self, root: str):
        self.root = root
        self.dir = os.path.join(root, "answers")
        os.makedirs(self.dir, exist_ok=True)
        self._answers: dict[str, EngineResult] | None = None

    def answers(self) -> dict[str, EngineResult]:
        """Every stored answer by request id (read once, then kept up to date by ``put``)."""
        if self._answers is None:
            self._answers = {}
            for path in sorted(glob.glob(os.path.join(self.dir, "*.parquet"))):
                try:
                    table = pq.read_table(path)
                except (OSError, pa.ArrowInvalid):
                    continue  # not ours or unreadable; its answers are recomputed
                for row in table.to_pylist():
                    rid = row["request_id"]
                    if rid not in self._answers:
                        self._answers[rid] = _result(row)
        return self._answers

    def put(self, results: list[EngineResult], engine: str) -> int:
        """Store the answers of one batch; failed requests are not cached (a re-run retries
        them).  Returns how many were stored."""
        good = [r for r in results if r.error is None]
        if not good:
            return 0
        table = pa.Table.from_pylist(
            [
                {
                    "request_id": r.request_id,
                    "response": r.response,
                    "option_logprobs": _as_map(r.option_logprobs),
                    "option_probs": _as_map(r.option_probs),
                    "prompt_tokens": r.prompt_tokens,
                    "output_tokens": r.output_tokens,
                    "finish_reason": r.finish_reason,
                    "latency_ms": r.latency_ms,
                    "engine": engine,
                }
                for r in good
            ],
            schema=ANSWER_SCHEMA,
        )
        atomic_write_table(table, os.path.join(self.dir, f"{uuid.uuid4().hex}.parquet"))
        answers = self.answers()
        for r in good:
            answers.setdefault(r.request_id, r)
        return len(good)


def _result(row: dict) -> EngineResult:
    def as_dict(m):
        return None if m is None else dict(m)

    return EngineResult(
        request_id=row["request_id"],
        response=row["response"],
        option_logprobs=as_dict(row["option_logprobs"]),
        option_probs=as_dict(row["option_probs"]),
        prompt_tokens=row["prompt_tokens"] or 0,
        output_tokens=row["output_tokens"] or 0,
        finish_reason=row["finish_reason"],
        latency_ms=row["latency_ms"] or 0.0,
    )


class RunDir:
    """``runs/<experiment>``: per-cell files, the results table and the manifest."""

    def __init__(self, runs_dir: str, experiment: str):
        self.path = os.path.join(runs_dir, experiment)
        self.cells_dir = os.path.join(self.path, "cells")
        os.makedirs(self.cells_dir, exist_ok=True)

    def cell_path(self, cell_id: str, limit: int | None, complete: bool = True) -> str:
        suffix = (f".limit{limit}" if limit is not None else "") + ("" if complete else ".errors")
        return os.path.join(self.cells_dir, f"{cell_id}{suffix}.parquet")

    def has_cell(self, cell_id: str, limit: int | None) -> bool:
        """A cell is done when all its requests were answered without error.  A cell with
        failed requests is written too (``.errors``), and the next run of its plan retries
        just those requests (the others come from the store)."""
        return os.path.exists(self.cell_path(cell_id, limit))

    def write_cell(self, cell_id: str, limit: int | None, rows: list[dict], complete: bool = True) -> None:
        atomic_write_table(pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA), self.cell_path(cell_id, limit, complete))
        stale = self.cell_path(cell_id, limit, not complete)
        if complete and os.path.exists(stale):
            os.unlink(stale)

    def write_results(self, cell_ids: list[str], limit: int | None) -> int:
        """results.parquet from the written cells, in plan order.  Returns the row count."""
        paths = []
        for c in cell_ids:
            for complete in (True, False):
                if os.path.exists(self.cell_path(c, limit, complete)):
                    paths.append(self.cell_path(c, limit, complete))
                    break
        tables = [pq.read_table(p) for p in paths]
        table = pa.concat_tables(tables) if tables else RESULTS_SCHEMA.empty_table()
        atomic_write_table(table, os.path.join(self.path, "results.parquet"))
        return table.num_rows
