"""The result store: a content-addressed cache of engine answers, and per-cell result files.

Layout::

    <store>/answers/<uuid>.parquet      engine answers, one file per engine batch
    <store>/journal/<uuid>.jsonl        answers of the batch being computed, one line each,
                                        appended as each engine call returns
    runs/<experiment>/cells/<cell>.parquet   the results rows of one finished cell
    runs/<experiment>/results.parquet        every cell of the plan, in plan order

Every Parquet file is written to a temporary name and renamed into place, so a crash
(Ctrl-C, ``kill -9``) never leaves half a file, and files are never modified after that.
This is why no lock is needed for them: concurrent runs never write the same answer file,
readers only see whole files, and an answer computed twice (two runs racing on the same
request) is stored twice and read once.  A request whose id is in any answer file is never
sent to an engine again.

The journal keeps what a kill would otherwise lose: the answers of a batch that is not yet
sealed into an answer file.  Its writer holds an exclusive ``flock`` on it for as long as it
writes it; a journal nobody holds was left by a run that died, and the next reader seals its
complete lines into ``answers/<uuid>.parquet`` (the same uuid, so sealing twice is harmless)
and deletes it.  A torn last line (the kill came mid-write) is dropped.

A file that cannot be read (an answer file or a cell's rows damaged on disk) is set aside as
``<name>.corrupt`` with a notice, and what it held is computed again: a damaged file never
blocks a run.
"""

from __future__ import annotations

import errno
import glob
import json
import os
import uuid

try:
    import fcntl
except ImportError:  # not on Windows: journals of dead runs are then left alone (recomputed)
    fcntl = None

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
        ("scores", OPTION_MAP),
        ("option_tokens", OPTION_MAP),
        ("prompt_tokens", pa.int32()),
        ("output_tokens", pa.int32()),
        ("finish_reason", pa.string()),
        ("latency_ms", pa.float64()),
        ("engine", pa.string()),
        ("retries", pa.int32()),
        ("engine_prompt", pa.string()),
    ]
)


def atomic_write_table(table: pa.Table, path: str) -> None:
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _as_map(d: dict | None):
    return None if d is None else list(d.items())


def set_aside(path: str) -> str:
    """Rename a damaged file to ``<path>.corrupt`` (replacing an older one) and return the
    new name; what it held is computed again."""
    dest = path + ".corrupt"
    os.replace(path, dest)
    return dest


def _answer_row(r: EngineResult, engine: str) -> dict:
    return {
        "request_id": r.request_id,
        "response": r.response,
        "option_logprobs": _as_map(r.option_logprobs),
        "option_probs": _as_map(r.option_probs),
        "scores": _as_map(r.scores),
        "option_tokens": _as_map(r.option_tokens),
        "prompt_tokens": r.prompt_tokens,
        "output_tokens": r.output_tokens,
        "finish_reason": r.finish_reason,
        "latency_ms": r.latency_ms,
        "engine": engine,
        "retries": r.retries,
        "engine_prompt": r.engine_prompt,
    }


class AnswerStore:
    def __init__(self, root: str):
        self.root = root
        self.dir = os.path.join(root, "answers")
        self.journal_dir = os.path.join(root, "journal")
        os.makedirs(self.dir, exist_ok=True)
        self._answers: dict[str, EngineResult] | None = None
        self.notices: list[str] = []
        """What reading the store did besides reading: files set aside, journals recovered
        (the scheduler prints them)."""

    def answers(self) -> dict[str, EngineResult]:
        """Every stored answer by request id (read once, then kept up to date by ``put`` and
        journals).  Journals of runs that died are sealed first; unreadable answer files are
        set aside (``.corrupt``) and their answers recomputed."""
        if self._answers is None:
            self._answers = {}
            self._recover_journals()
            for path in sorted(glob.glob(os.path.join(self.dir, "*.parquet"))):
                self._read(path)
        return self._answers

    def _set_aside(self, path: str, e: BaseException) -> None:
        try:
            dest = set_aside(path)
        except OSError:
            return
        self.notices.append(f"{path}: unreadable ({_reason(e)}); set aside as {os.path.basename(dest)}, its answers are computed again")

    def _read(self, path: str) -> None:
        try:
            table = pq.read_table(path)
            if "request_id" not in table.column_names:
                raise ValueError("no request_id column")
            rows = table.to_pylist()
        except FileNotFoundError:
            return  # sealed into another file, or set aside, by a concurrent run
        except OSError as e:
            if isinstance(e, pa.ArrowException) or e.errno in (None, errno.EIO):
                self._set_aside(path, e)  # the content is bad
            else:  # EMFILE, EACCES, ...: the file may be fine; leave it for the next run
                self.notices.append(f"{path}: cannot be read now ({_reason(e)}); its answers are computed again")
            return
        except (ValueError, pa.ArrowException) as e:
            self._set_aside(path, e)
            return
        answers = self._answers
        for row in rows:
            rid = row.get("request_id")
            if rid is not None and rid not in answers:
                answers[rid] = _result(row)

    def _recover_journals(self) -> None:
        if fcntl is None:
            return
        for path in sorted(glob.glob(os.path.join(self.journal_dir, "*.jsonl"))):
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                continue  # sealed meanwhile by its writer or another reader
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    continue  # a live run is writing it
                if not os.path.exists(path):
                    continue  # sealed by another reader while we waited for it
                sealed = os.path.join(self.dir, os.path.basename(path)[: -len(".jsonl")] + ".parquet")
                if not os.path.exists(sealed):
                    with os.fdopen(os.dup(fd), "rb") as f:
                        data = f.read()
                    rows, dropped = _typed_rows(_journal_rows(data))
                    if rows:
                        atomic_write_table(pa.Table.from_pylist(rows, schema=ANSWER_SCHEMA), sealed)
                        self.notices.append(f"kept {len(rows)} answer{'s' if len(rows) != 1 else ''} of an interrupted run (from {os.path.relpath(path)})")
                    if dropped:
                        self.notices.append(f"dropped {dropped} damaged line{'s' if dropped != 1 else ''} of {os.path.relpath(path)}; those answers are computed again")
                os.unlink(path)
            finally:
                os.close(fd)

    def put(self, results: list[EngineResult], engine: str) -> int:
        """Store the answers of one batch in an answer file of its own; failed requests are
        not cached (a re-run retries them).  Returns how many were stored."""
        good = [r for r in results if r.error is None]
        if not good:
            return 0
        table = pa.Table.from_pylist([_answer_row(r, engine) for r in good], schema=ANSWER_SCHEMA)
        atomic_write_table(table, os.path.join(self.dir, f"{uuid.uuid4().hex}.parquet"))
        answers = self.answers()
        for r in good:
            answers.setdefault(r.request_id, r)
        return len(good)

    def journal(self, engine: str, seal_every: int) -> "Journal":
        """A journal for one engine's answers, sealed into an answer file every
        ``seal_every`` answers and on :meth:`Journal.close`."""
        return Journal(self, engine, seal_every)


class Journal:
    """Answers stored as they come back, in small units, with few files: each :meth:`add`
    appends its answers to ``journal/<uuid>.jsonl`` (one ``write``, so a kill loses at most
    the engine calls in flight); every ``seal_every`` answers, and on :meth:`close`, they are
    sealed into ``answers/<uuid>.parquet`` and the journal is deleted."""

    def __init__(self, store: AnswerStore, engine: str, seal_every: int):
        self.store, self.engine, self.seal_every = store, engine, max(1, seal_every)
        self.fd: int | None = None
        self.name = ""
        self.pending: list[EngineResult] = []

    def _open(self) -> None:
        folder = self.store.journal_dir
        os.makedirs(folder, exist_ok=True)
        self.name = uuid.uuid4().hex
        # Locked before it gets its name, so no reader ever takes a live journal for the
        # leftover of a dead run.
        tmp = os.path.join(folder, f".{self.name}.jsonl.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.replace(tmp, os.path.join(folder, f"{self.name}.jsonl"))
        self.fd = fd

    def add(self, results: list[EngineResult]) -> int:
        """Journal the answers of one engine call (failed requests are not stored) and make
        them visible in the store's answers.  Returns how many were stored."""
        good = [r for r in results if r.error is None]
        if not good:
            return 0
        if self.fd is None:
            self._open()
        text = "".join(json.dumps(_answer_row(r, self.engine), ensure_ascii=False, separators=(",", ":")) + "\n" for r in good)
        data = text.encode("utf-8")
        while data:
            data = data[os.write(self.fd, data):]
        self.pending += good
        answers = self.store.answers()
        for r in good:
            answers.setdefault(r.request_id, r)
        if len(self.pending) >= self.seal_every:
            self.seal()
        return len(good)

    def seal(self) -> None:
        """Write the journaled answers as one answer file and delete the journal."""
        if self.fd is None:
            return
        if self.pending:
            table = pa.Table.from_pylist([_answer_row(r, self.engine) for r in self.pending], schema=ANSWER_SCHEMA)
            atomic_write_table(table, os.path.join(self.store.dir, f"{self.name}.parquet"))
        os.unlink(os.path.join(self.store.journal_dir, f"{self.name}.jsonl"))
        os.close(self.fd)
        self.fd, self.pending = None, []

    close = seal


def _journal_rows(data: bytes) -> list[dict]:
    """The answers of a journal's complete lines (a torn or damaged line is dropped)."""
    rows = []
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict) or not isinstance(row.get("request_id"), str):
            continue
        for key in ("option_logprobs", "option_probs", "scores", "option_tokens"):
            if isinstance(row.get(key), list):  # maps are written as [key, value] pairs
                row[key] = [tuple(kv) for kv in row[key]]
        rows.append({name: row.get(name) for name in ANSWER_SCHEMA.names})
    return rows


def _typed_rows(rows: list[dict]) -> tuple[list[dict], int]:
    """The rows that fit the answer schema, and how many did not (a damaged journal line, or
    one of another xlspec version, must not block the store)."""
    try:
        pa.Table.from_pylist(rows, schema=ANSWER_SCHEMA)
        return rows, 0
    except (pa.ArrowException, ValueError, TypeError):
        pass
    good = []
    for row in rows:
        try:
            pa.Table.from_pylist([row], schema=ANSWER_SCHEMA)
        except (pa.ArrowException, ValueError, TypeError):
            continue
        good.append(row)
    return good, len(rows) - len(good)


def _reason(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text and text[0] else type(e).__name__


def _result(row: dict) -> EngineResult:
    def as_dict(m):
        return None if m is None else dict(m)

    return EngineResult(
        request_id=row["request_id"],
        response=row["response"],
        option_logprobs=as_dict(row["option_logprobs"]),
        option_probs=as_dict(row["option_probs"]),
        scores=as_dict(row.get("scores")),  # answer files written before scores had none
        option_tokens=as_dict(row.get("option_tokens")),
        prompt_tokens=row["prompt_tokens"] or 0,
        output_tokens=row["output_tokens"] or 0,
        finish_reason=row["finish_reason"],
        latency_ms=row["latency_ms"] or 0.0,
        retries=row.get("retries") or 0,  # answer files written before these columns
        engine_prompt=row.get("engine_prompt"),
    )


class RunDir:
    """``runs/<experiment>``: per-cell files, the results table and the manifest."""

    def __init__(self, runs_dir: str, experiment: str, variant: str | None = None):
        """``variant``: what sets this run's cell files apart from those of the plan as
        compiled (``engine-vllm`` for a run with ``--engine vllm``)."""
        self.path = os.path.join(runs_dir, experiment)
        self.cells_dir = os.path.join(self.path, "cells")
        self.variant = variant
        os.makedirs(self.cells_dir, exist_ok=True)
        self.set_aside_cells: list[str] = []
        self.notices: list[str] = []

    def cell_path(self, cell_id: str, limit: int | None, complete: bool = True) -> str:
        suffix = (f".{self.variant}" if self.variant else "") + (f".limit{limit}" if limit is not None else "") + ("" if complete else ".errors")
        return os.path.join(self.cells_dir, f"{cell_id}{suffix}.parquet")

    def has_cell(self, cell_id: str, limit: int | None) -> bool:
        """A cell is done when all its requests were answered without error.  A cell with
        failed requests is written too (``.errors``), and the next run of its plan retries
        just those requests (the others come from the store)."""
        return os.path.exists(self.cell_path(cell_id, limit))

    def read_cell(self, cell_id: str, limit: int | None) -> list[dict] | None:
        """The rows of a cell written without errors (what a later stage reads), or None."""
        path = self.cell_path(cell_id, limit)
        try:
            return pq.read_table(path).to_pylist()
        except (OSError, ValueError, pa.ArrowException):
            return None

    def write_cell(self, cell_id: str, limit: int | None, rows: list[dict], complete: bool = True) -> None:
        atomic_write_table(pa.Table.from_pylist(rows, schema=RESULTS_SCHEMA), self.cell_path(cell_id, limit, complete))
        stale = self.cell_path(cell_id, limit, not complete)
        if complete and os.path.exists(stale):
            os.unlink(stale)

    def write_results(self, cell_ids: list[str], limit: int | None) -> int:
        """results.parquet from the written cells, in plan order.  Returns the row count.

        A cell file that cannot be read, or is not a results table of this version, is set
        aside (``.corrupt``), left out, and its cell id added to :attr:`set_aside_cells` (the
        scheduler writes the cell again; its answers are in the store)."""
        self.set_aside_cells: list[str] = []
        self.notices: list[str] = []
        tables = []
        for c in cell_ids:
            for complete in (True, False):
                path = self.cell_path(c, limit, complete)
                if not os.path.exists(path):
                    continue
                try:
                    table = pq.read_table(path)
                    if not table.schema.equals(RESULTS_SCHEMA):
                        raise ValueError("its columns are not those of this version's results")
                except (OSError, ValueError, pa.ArrowException) as e:
                    try:
                        dest = set_aside(path)
                    except OSError:
                        dest = None
                    self.set_aside_cells.append(c)
                    moved = f"set aside as {os.path.basename(dest)}" if dest else "left in place"
                    self.notices.append(f"{path}: unreadable ({_reason(e)}); {moved}, its rows are written again")
                    continue
                tables.append(table)
                break
        table = pa.concat_tables(tables) if tables else RESULTS_SCHEMA.empty_table()
        atomic_write_table(table, os.path.join(self.path, "results.parquet"))
        return table.num_rows
