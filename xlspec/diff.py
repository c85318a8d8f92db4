"""``xlspec diff A B``: what changes between two specs or two plans, and what it costs.

Cells are matched by their study and axis values (the same point of the cross product); a
matched pair whose id differs is *changed*, and the reasons name what changed (template text,
model revision, data file, ...).  Request and token estimates say what a re-run will compute:
added and changed cells; removed and unchanged ones cost nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

AXIS_ORDER = ("model", "dataset", "country", "language", "framing", "mode", "partition", "subset", "shots", "seed")
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

    @property
    def rerun_requests(self) -> int:
        return sum(c.requests for c in self.added + self.changed)

    @property
    def rerun_prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.added + self.changed)


class _Loaded:
    def __init__(self, diagnostics, sources):
        self.diagnostics, self.sources = diagnostics, sources


def load_side(path: str):
    """A plan from a plan file, or compiled from a spec.  (plan or None, diagnostics holder)."""
    from .diagnostics import Diagnostics, SourceCache, Span

    if path.endswith(".xls"):
        from .cli import compile_spec

        return compile_spec(path, "build")
    diags, sources = Diagnostics(), SourceCache()
    try:
        from .plan import load

        return load(path), _Loaded(diags, sources)
    except FileNotFoundError:
        diags.error("E010", f"no such file: {path}", None)
    except (ValueError, json.JSONDecodeError) as e:
        line = getattr(e, "lineno", 1)
        diags.error("E015", f"not a plan file: {getattr(e, 'msg', e)}", Span.point(path, line, 1))
    return None, _Loaded(diags, sources)


def _key(cell: dict) -> tuple:
    return (cell["study"],) + tuple(cell["axes"].get(a) for a in AXIS_ORDER)


def _reasons(old: dict, new: dict, old_plan: dict, new_plan: dict) -> list[str]:
    from .plan import cell_parts

    out = []
    a, b = cell_parts(old_plan, old), cell_parts(new_plan, new)
    op, np_ = a["prompt"], b["prompt"]
    for k, label in (("template", "template text"), ("instruction", "instruction"), ("system", "system prompt"), ("variables", "prompt variables"), ("fewshot", "few-shot examples")):
        if op.get(k) != np_.get(k):
            out.append(label + (f": {_short(op.get(k))} -> {_short(np_.get(k))}" if k in ("template", "instruction") else ""))
    om, nm = a["model"], b["model"]
    for k in sorted(set(om) | set(nm)):
        if om.get(k) != nm.get(k):
            out.append(f"model {k}: {om.get(k)} -> {nm.get(k)}")
    for k in sorted(set(a["sampling"]) | set(b["sampling"])):
        if a["sampling"].get(k) != b["sampling"].get(k):
            out.append(f"{k}: {a['sampling'].get(k)} -> {b['sampling'].get(k)}")
    if a["answers"] != b["answers"]:
        out.append("answer kinds: " + " + ".join(x["kind"] for x in a["answers"]) + " -> " + " + ".join(x["kind"] for x in b["answers"]))
    oi, ni = a["items"], b["items"]
    if oi["sha256"] != ni["sha256"]:
        out.append(f"data file {new_plan['datasets'][new['axes']['dataset']]['path']} changed")
    if oi["fields"] != ni["fields"] or oi["labels"] != ni["labels"]:
        out.append("dataset field mapping")
    for k in ("filters", "limit", "partition"):
        if oi.get(k) != ni.get(k):
            out.append(f"item {k}")
    if old.get("items") != new.get("items"):
        out.append(f"items: {old.get('items')} -> {new.get('items')}")
    if old_plan["versions"]["render"] != new_plan["versions"]["render"]:
        out.append("prompt-rendering rules version")
    return out or ["cell content (no field-level difference found)"]


def _short(v, n: int = 48) -> str:
    s = json.dumps(v, ensure_ascii=False)
    return s if len(s) <= n else s[: n - 4] + '..."'


def _change(cell: dict, reasons: list[str] | None = None) -> CellChange:
    est = cell.get("estimate", {})
    return CellChange(cell["study"], cell["axes"], est.get("requests", 0), est.get("prompt_tokens", 0), reasons or [])


def diff_plans(old: dict, new: dict) -> PlanDiff:
    old_cells = {_key(c): c for c in old["cells"]}
    new_cells = {_key(c): c for c in new["cells"]}
    added = [_change(new_cells[k]) for k in sorted(new_cells, key=_sortable) if k not in old_cells]
    removed = [_change(old_cells[k]) for k in sorted(old_cells, key=_sortable) if k not in new_cells]
    changed, unchanged = [], 0
    for k in sorted(set(old_cells) & set(new_cells), key=_sortable):
        o, n = old_cells[k], new_cells[k]
        if o["id"] == n["id"]:
            unchanged += 1
        else:
            changed.append(_change(n, _reasons(o, n, old, new)))
    header = []
    if old.get("experiment") != new.get("experiment"):
        header.append(f"experiment: {old.get('experiment')} -> {new.get('experiment')}")
    if old.get("spec", {}).get("sha256") != new.get("spec", {}).get("sha256"):
        header.append("spec text changed")
    for name in sorted(set(old["datasets"]) | set(new["datasets"])):
        a, b = old["datasets"].get(name), new["datasets"].get(name)
        if a is None or b is None:
            header.append(f"dataset {name} {'added' if a is None else 'removed'}")
        elif a["sha256"] != b["sha256"]:
            header.append(f"dataset {name}: data file changed ({a['records']} -> {b['records']} records)")
    return PlanDiff(added, removed, changed, unchanged, header, len(old["cells"]), len(new["cells"]))


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
    lines.append(f"to compute on re-run: {d.rerun_requests:,} requests (~{d.rerun_prompt_tokens:,} prompt tokens)")
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
            "rerun_prompt_tokens": d.rerun_prompt_tokens,
        },
        ensure_ascii=False,
        indent=2,
        sort_keys=True,
    ) + "\n"
