"""``xlspec diff A B``: what changes between two specs or two plans, and what it costs.

Cells are matched by their study and axis values (the same point of the cross product); a
matched pair whose id differs is *changed*, and the reasons name what changed (template text,
model revision, data file, ...).  What a re-run computes is counted exactly: the cells'
requests are lowered as the runtime lowers them (:mod:`xlspec.lower`), and a request is
computed when its id is not among the old plan's requests (the runtime finds those in its
store).  A changed cell whose requests are all old (a new answer parser) is rewritten from
stored answers at no engine cost.  Where a plan's data files are not the ones it was compiled
from, its requests cannot be rebuilt and the counts are the plan's estimates.
"""

from __future__ import annotations

import difflib
import functools
import json
import re
from dataclasses import dataclass, field

from .axes import CELL_AXIS_NAMES as AXIS_ORDER
from .plan import Cell, Plan

MAX_LISTED = 40


@dataclass
class CellChange:
    study: str
    axes: dict
    requests: int
    prompt_tokens: int
    reasons: list[str] = field(default_factory=list)


@dataclass
class PlanDiff:
    added: list[CellChange]
    removed: list[CellChange]
    changed: list[CellChange]
    unchanged: int
    header: list[str]
    old_cells: int
    new_cells: int
    exact_requests: int | None = None
    """Distinct requests a re-run computes (None where they could not be rebuilt)."""
    reads_upstream: bool = False
    """A changed cell reads responses of cells that have not run: its requests cannot be
    rebuilt, so the counts are estimates."""

    @property
    def differs(self) -> bool:
        """Any difference at all: a cell added, removed or changed, or an input changed."""
        return bool(self.added or self.removed or self.changed or self.header)

    @property
    def exact(self) -> bool:
        return self.exact_requests is not None

    @property
    def rerun_requests(self) -> int:
        if self.exact_requests is not None:
            return self.exact_requests
        return sum(c.requests for c in self.added + self.changed)

    @property
    def rerun_prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.added + self.changed)


def _key(cell: Cell) -> tuple:
    return (cell.study,) + tuple(cell.axes.get(a) for a in AXIS_ORDER)


def _reasons(old: Cell, new: Cell, old_plan: Plan, new_plan: Plan) -> list[str]:
    out = []
    a, b = old_plan.cell_parts(old), new_plan.cell_parts(new)
    op, np_ = a["prompt"], b["prompt"]
    for k, label in (("template", "template text"), ("instruction", "instruction"), ("system", "system prompt"), ("variables", "prompt variables"), ("fewshot", "few-shot examples")):
        if op.get(k) != np_.get(k):
            out.append(label + (f": {word_diff(op.get(k), np_.get(k))}" if k in ("template", "instruction") else ""))
    om, nm = a["model"], b["model"]
    for k in sorted(set(om) | set(nm)):
        if om.get(k) != nm.get(k):
            out.append(f"model {k}: {om.get(k)} -> {nm.get(k)}")
    for k in sorted(set(a["sampling"]) | set(b["sampling"])):
        if a["sampling"].get(k) != b["sampling"].get(k):
            out.append(f"{k}: {a['sampling'].get(k)} -> {b['sampling'].get(k)}")
    if a["answers"] != b["answers"]:
        out.append("answers: " + " + ".join(_answer(x) for x in a["answers"]) + " -> " + " + ".join(_answer(x) for x in b["answers"]))
    oi, ni = a["items"], b["items"]
    if oi["sha256"] != ni["sha256"]:
        out.append(f"data file {new_plan.datasets[new.axes['dataset']].path} changed")
    if oi["fields"] != ni["fields"] or oi["labels"] != ni["labels"]:
        out.append("dataset field mapping")
    if oi.get("gold_is") != ni.get("gold_is"):
        out.append(f"gold_is: {oi.get('gold_is')} -> {ni.get('gold_is')}")
    for k in ("filters", "limit", "partition"):
        if oi.get(k) != ni.get(k):
            out.append(f"item {k}")
    if old.items != new.items:
        out.append(f"items: {old.items} -> {new.items}")
    if old_plan.versions["render"] != new_plan.versions["render"]:
        out.append("prompt-rendering rules version")
    return out or ["cell content (no field-level difference found)"]


_WORDS = re.compile(r"\s+|\w+|[^\w\s]", re.UNICODE)


def word_diff(old, new, context: int = 6, width: int = 160) -> str:
    """What changed between two texts, as ``git diff --word-diff=plain`` shows it: removed
    words in ``[-...-]``, added ones in ``{+...+}``, with ``context`` tokens (words, spaces,
    punctuation) around each change and ``...`` for what is left out; newlines as ``\\n``."""
    if not isinstance(old, str) or not isinstance(new, str):
        return f"{_short(old)} -> {_short(new)}"
    return _word_diff(old, new, context, width)


@functools.lru_cache(maxsize=256)  # one edit shared by many cells is diffed once
def _word_diff(old: str, new: str, context: int, width: int) -> str:
    a, b = _WORDS.findall(old), _WORDS.findall(new)
    # The common head and tail are equal runs as they are; only the middle is matched, and a
    # long middle is shown as one change (matching is quadratic in the tokens).
    head = 0
    while head < min(len(a), len(b)) and a[head] == b[head]:
        head += 1
    tail = 0
    while tail < min(len(a), len(b)) - head and a[-1 - tail] == b[-1 - tail]:
        tail += 1
    mid_a, mid_b = a[head : len(a) - tail], b[head : len(b) - tail]
    if len(mid_a) + len(mid_b) > MAX_MATCHED_TOKENS:
        middle = [("replace", 0, len(mid_a), 0, len(mid_b))]
    else:
        middle = difflib.SequenceMatcher(None, mid_a, mid_b, autojunk=False).get_opcodes()
    ops = ([("equal", 0, head, 0, head)] if head else []) + [
        (tag, i1 + head, i2 + head, j1 + head, j2 + head) for tag, i1, i2, j1, j2 in middle
    ] + ([("equal", len(a) - tail, len(a), len(b) - tail, len(b))] if tail else [])
    parts = []
    for n, (tag, i1, i2, j1, j2) in enumerate(ops):
        if tag == "equal":
            seg = a[i1:i2]
            head = seg[:context] if n > 0 else []
            tail = seg[-context:] if n < len(ops) - 1 else []
            if len(head) + len(tail) < len(seg):
                parts.append(_shown(head, width) + "..." + _shown(tail, width))
            else:
                parts.append(_shown(seg, width))
            continue
        if i2 > i1:
            parts.append("[-" + _shown(a[i1:i2], width) + "-]")
        if j2 > j1:
            parts.append("{+" + _shown(b[j1:j2], width) + "+}")
    return '"' + "".join(parts) + '"'


MAX_MATCHED_TOKENS = 2000


def _shown(tokens: list[str], width: int) -> str:
    text = json.dumps("".join(tokens), ensure_ascii=False)[1:-1]
    return text if len(text) <= width else text[: width // 2] + "..." + text[-width // 2 :]


def _short(v, n: int = 48) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= n else s[: n - 4] + '..."'


def _answer(a: dict) -> str:
    parser = a.get("parser")
    if not parser:
        args = ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False) if not isinstance(v, str) or k == 'separator' else v}" for k, v in sorted((a.get("args") or {}).items()))
        return f"{a['kind']}({args})" if args else a["kind"]
    args = ", ".join(f"{k} = {json.dumps(v, ensure_ascii=False)}" for k, v in (a.get("parser_args") or {}).items())
    return f"{a['kind']}(parser = {parser}{f'({args})' if args else ''})"


def _change(cell: Cell, reasons: list[str] | None = None, requests: int | None = None) -> CellChange:
    est = cell.estimate
    return CellChange(cell.study, dict(cell.axes), est.requests if requests is None else requests, est.prompt_tokens, reasons or [])


def _request_ids(plan: Plan, plan_path: str | None, cells: list[Cell], runs_dir: str | None = None) -> dict[str, set[str] | None] | None:
    """Cell id -> its request ids, or None where the plan's data cannot be read as it was
    compiled.  A cell that reads other cells' responses is lowered from their rows in
    ``runs_dir`` (as ``xlspec run`` lowers it); where one of them has not run, its ids are
    None (unknown until it has)."""
    from .lower import DataCache, UpstreamMissing, cell_requests
    from .plan import stale_inputs

    if plan_path is None or any("(missing)" in c or not c.endswith(".xls") for c in stale_inputs(plan, plan_path)):
        return None
    upstream = _run_rows(runs_dir, plan.experiment) if runs_dir is not None else None
    data = DataCache(plan, plan_path, upstream_rows=upstream)
    out: dict[str, set[str] | None] = {}
    try:
        for c in cells:
            if c.reads and upstream is None:
                out[c.id] = None
                continue
            try:
                out[c.id] = {r.request.request_id for r in cell_requests(plan, c, data)}
            except UpstreamMissing:
                out[c.id] = None
    except (OSError, ValueError):
        return None
    return out


def _run_rows(runs_dir: str, experiment: str):
    """A reader of the rows ``xlspec run`` wrote for a cell (complete runs, no ``--limit``),
    None where the cell has not run; nothing is created."""
    import os

    def read(cell_id: str) -> list[dict] | None:
        path = os.path.join(runs_dir, experiment, "cells", f"{cell_id}.parquet")
        if not os.path.isfile(path):
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            return pq.read_table(path).to_pylist()
        except (OSError, ValueError, pa.ArrowException):
            return None

    return read


def _prompt_shape(plan: Plan, cell: Cell, cache: dict) -> tuple:
    """What two cells must share for any of their requests to be the same: the model's
    identity and the prompt's fixed text (template, instruction, system prompt, few-shot
    pool).  Only old cells of the same shape as an added or changed cell are lowered, so a
    diff costs about what the edit touches, not the whole plan."""
    parts = plan.cell_parts(cell, cache)
    prompt = parts["prompt"]
    return (json.dumps(parts["model"], sort_keys=True), prompt["template"], prompt["instruction"], prompt["system"], json.dumps(prompt["fewshot"], sort_keys=True))


def diff_plans(old: Plan, new: Plan, old_path: str | None = None, new_path: str | None = None, runs_dir: str | None = None) -> PlanDiff:
    """Compare two plans.  With the plans' paths (where their relative paths start), the
    requests a re-run computes are counted exactly; a changed cell that reads other cells'
    responses is counted exactly where those cells' rows are in ``runs_dir`` (their
    responses are in the requests), and estimated where they have not run."""
    old_cells = {_key(c): c for c in old.cells}
    new_cells = {_key(c): c for c in new.cells}
    todo = [new_cells[k] for k in sorted(new_cells, key=_sortable) if k not in old_cells or old_cells[k].id != new_cells[k].id]
    new_cache: dict = {}
    old_cache: dict = {}
    shapes = {_prompt_shape(new, c, new_cache) for c in todo}
    old_ids = _request_ids(old, old_path, [c for c in old.cells if _prompt_shape(old, c, old_cache) in shapes], runs_dir)
    new_ids = _request_ids(new, new_path, todo, runs_dir) if old_ids is not None else None
    reads_upstream = any(c.reads for c in todo) and (new_ids is None or any(v is None for v in new_ids.values()))
    if reads_upstream:
        # A downstream cell's requests hold the upstream responses, which neither the plans
        # nor (for cells that have not run) the run folder hold: every count is then an
        # estimate.
        new_ids = None
    seen = set().union(*(v for v in old_ids.values() if v is not None)) if old_ids else set()

    def count(cell: Cell) -> int | None:
        return None if new_ids is None else len(new_ids[cell.id] - seen)

    added = [_change(new_cells[k], requests=count(new_cells[k])) for k in sorted(new_cells, key=_sortable) if k not in old_cells]
    removed = [_change(old_cells[k]) for k in sorted(old_cells, key=_sortable) if k not in new_cells]
    changed, unchanged = [], 0
    for k in sorted(set(old_cells) & set(new_cells), key=_sortable):
        o, n = old_cells[k], new_cells[k]
        if o.id == n.id:
            unchanged += 1
        else:
            changed.append(_change(n, _reasons(o, n, old, new), count(n)))
    header = []
    if old.experiment != new.experiment:
        header.append(f"experiment: {old.experiment} -> {new.experiment}")
    if old.spec.sha256 != new.spec.sha256:
        header.append("spec text changed")
    for name in sorted(set(old.datasets) | set(new.datasets)):
        a, b = old.datasets.get(name), new.datasets.get(name)
        if a is None or b is None:
            header.append(f"dataset {name} {'added' if a is None else 'removed'}")
        elif a.sha256 != b.sha256:
            header.append(f"dataset {name}: data file changed ({a.records} -> {b.records} records)")
    exact = None if new_ids is None else len(set().union(*new_ids.values()) - seen) if new_ids else 0
    return PlanDiff(added, removed, changed, unchanged, header, len(old.cells), len(new.cells), exact, reads_upstream)


def _sortable(key: tuple) -> tuple:
    return tuple("" if v is None else str(v) for v in key)


def _axes_text(c: CellChange, varying: list[str]) -> str:
    return " ".join(f"{a}={c.axes.get(a)}" for a in varying)


def _varying(cells: list[CellChange]) -> list[str]:
    out = []
    for a in AXIS_ORDER:
        values = {c.axes.get(a) for c in cells}
        if len(values) > 1 or (values and values != {None} and a in ("model", "language", "framing")):
            out.append(a)
    return out


def render_diff_text(d: PlanDiff, old_name: str, new_name: str) -> str:
    lines = [f"xlspec diff {old_name} -> {new_name}"]
    lines.append(
        f"cells: {d.old_cells} -> {d.new_cells}  ({len(d.added)} added, {len(d.removed)} removed, "
        f"{len(d.changed)} changed, {d.unchanged} unchanged)"
    )
    if d.exact:
        lines.append(f"to compute on re-run: {d.rerun_requests:,} requests")
    else:
        why = "changed cells read responses of cells that have not run yet" if d.reads_upstream else "the data files are not the ones the plan was compiled from"
        lines.append(f"to compute on re-run: ~{d.rerun_requests:,} requests (~{d.rerun_prompt_tokens:,} prompt tokens; estimated: {why})")
    for h in d.header:
        lines.append(f"  * {h}")
    everything = d.added + d.removed + d.changed
    varying = _varying(everything) if everything else []
    for title, mark, cells in (("added", "+", d.added), ("removed", "-", d.removed), ("changed", "~", d.changed)):
        if not cells:
            continue
        lines.append("")
        lines.append(f"{title} ({len(cells)}, {sum(c.requests for c in cells):,} requests):")
        for c in cells[:MAX_LISTED]:
            lines.append(f"  {mark} {c.study}: {_axes_text(c, varying)}  [{c.requests:,} requests]")
            for r in c.reasons:
                lines.append(f"      {r}")
        if len(cells) > MAX_LISTED:
            rest = cells[MAX_LISTED:]
            lines.append(f"  ... and {len(rest)} more ({sum(c.requests for c in rest):,} requests)")
    if not everything:
        lines.append("no cell changes")
    return "\n".join(lines) + "\n"


def render_diff_json(d: PlanDiff) -> str:
    def cell(c: CellChange) -> dict:
        return {"study": c.study, "axes": c.axes, "requests": c.requests, "prompt_tokens": c.prompt_tokens, "reasons": c.reasons}

    return json.dumps(
        {
            "added": [cell(c) for c in d.added],
            "removed": [cell(c) for c in d.removed],
            "changed": [cell(c) for c in d.changed],
            "unchanged": d.unchanged,
            "header": d.header,
            "rerun_requests": d.rerun_requests,
            "rerun_requests_exact": d.exact,
            "rerun_prompt_tokens": d.rerun_prompt_tokens,
        },
        ensure_ascii=False,
        indent=2,
        sort_keys=True,
    ) + "\n"
