"""Lowering a plan's cells to engine requests: the prompts, exactly as an engine sees them.

Used by the runtime (which sends them) and by ``xlspec diff`` (which counts the requests a
re-run computes), so both agree.  A request's id (:func:`xlspec.identity.request_id`) hashes
everything that decides the engine's answer, so the same question asked by two cells or two
experiments is computed once, and editing one framing's text changes only its requests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from .answers import ANSWER_KINDS, loglik, pairwise, reward
from .axes import CELL_AXIS_NAMES
from .data import Record
from .tables import read_dataset
from .identity import request_id
from .items import RESPONSE_KEY, ItemView, available, select, view
from .plan import Cell, Plan
from .prompt import fill, render


@dataclass(frozen=True)
class EngineRequest:
    """One question for an engine."""

    request_id: str
    prompt: str
    """The rendered prompt text.  Engines apply the model's chat template unless ``chat`` is
    false (base models get this text as is)."""
    kind: str
    """An answer kind (:mod:`xlspec.answers`)."""
    options: tuple[str, ...] = ()
    """``options``: the option labels ("1".."4", "A".."D"); the engine reads each label's
    probability at the answer position.  ``loglik``: the continuations scored after the
    prompt (the answer's separator, then each option text).  ``classify``: the option texts,
    matched to a classifier's labels.  ``reward``
    and ``implicit_reward``: the candidate responses (``a``, then ``b``)."""
    max_tokens: int = 16
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0
    chat: bool = True
    system: str | None = None
    reference: str | None = None
    """``implicit_reward``: the plan's name of the reference model the engine also runs."""


@dataclass
class CellRequest:
    """One request of a cell, with what the results row needs besides the engine's answer."""

    request: EngineRequest
    item: ItemView
    sample: int
    answer: dict
    """The plan's answer entry (kind, parser and its arguments)."""
    order: str | None = None
    """``pairwise``: the order the candidates were shown in (``ab`` or ``ba``)."""


UpstreamRows = Callable[[str], "list[dict] | None"]
"""A written cell's result rows by cell id (None: the cell has not run, or its file cannot
be read)."""


class UpstreamMissing(Exception):
    """A cell reads an upstream cell whose rows cannot be read: it waits for a later run
    rather than being written with items missing."""


PAIRED_COLUMNS = ("response", "parsed_answer", "request_id")
"""The columns of an upstream row a paired item has for each of its two responses
(``response@a``, ``response@b``, ...), besides the paired axis."""


def _pairs(records: list[Record], pair: str) -> list[Record]:
    """``responses(STUDY, pair = AXIS)``: one record per two responses to one upstream item
    (same item, sample and axes) that differ only in ``AXIS``, for every two of its values in
    sorted order (``a`` the first).  Its key names both values (``model=x~y``); the shared
    fields are the first response's."""
    groups: dict[tuple, list[Record]] = {}
    for rec in records:
        f = rec.fields
        others = tuple(str(f.get(a)) for a in CELL_AXIS_NAMES if a != pair)
        groups.setdefault((f["item_id"], f["sample"], others), []).append(rec)
    out: list[Record] = []
    for group in groups.values():
        group.sort(key=lambda r: str(r.fields[pair]))
        for i, first in enumerate(group):
            for second in group[i + 1 :]:
                a, b = first.fields[pair], second.fields[pair]
                fields = dict(first.fields)
                fields[RESPONSE_KEY] = first.fields[RESPONSE_KEY].replace(f"|{pair}={a}|", f"|{pair}={a}~{b}|", 1)
                for side, rec in (("a", first), ("b", second)):
                    fields |= {f"{c}@{side}": rec.fields[c] for c in (*PAIRED_COLUMNS, pair)}
                out.append(Record(len(out) + 1, fields))
    return out


class DataCache:
    """Dataset records by path, read once per run.  The records of a ``responses(STUDY)``
    dataset are the upstream cells' ``generate`` rows, read through ``upstream_rows`` (the
    runtime passes its run folder's reader; without one they have no records)."""

    def __init__(self, plan: Plan, plan_path: str, upstream_rows: UpstreamRows | None = None):
        self.spec_dir = plan.spec_dir(plan_path)
        self.plan = plan
        self.upstream_rows = upstream_rows
        self._records: dict[str, list[Record]] = {}
        self._cells = {c.id: c for c in plan.cells}
        self._values: dict[str, dict[str, dict[str, str]]] = {}

    def records(self, dataset: str, reads: tuple[str, ...] | list[str] = ()) -> list[Record]:
        entry = self.plan.datasets[dataset]
        if entry.study is not None:
            return self._response_records(dataset, reads)
        if dataset not in self._records:
            path = os.path.normpath(os.path.join(self.spec_dir, entry.path))
            self._records[dataset] = read_dataset(entry.format, path, hub_id=entry.hub_id, config=entry.config, configs=entry.configs, split=entry.split, revision=entry.revision)[0]
        return self._records[dataset]

    def _response_records(self, dataset: str, reads) -> list[Record]:
        """One record per ``generate`` row of the upstream cells ``reads``, in their order
        (see :mod:`xlspec.check.stages` for the fields).  Raises :class:`UpstreamMissing`
        where a run folder is given and a read cell's rows cannot be read."""
        out: list[Record] = []
        seen: set[str] = set()
        # The names the dataset's block gives upstream columns (`generator = model`), so a
        # filter can use them too.
        mapped = {name: fm.source for name, fm in self.plan.datasets[dataset].fields.items() if isinstance(fm.source, str)}
        for cell_id in reads:
            rows = self.upstream_rows(cell_id) if self.upstream_rows is not None else None
            cell = self._cells.get(cell_id)
            if rows is None and self.upstream_rows is not None:
                raise UpstreamMissing(cell_id)
            if not rows or cell is None:
                continue
            values = self._item_values(cell)
            # The upstream study's axes but language: what tells its rows of one item apart.
            axes = self.plan.data["studies"][cell.study]["axes"]
            tag = "|".join(f"{a}={cell.axes[a]}" for a in CELL_AXIS_NAMES if a in axes and a != "language")
            for row in rows:
                if row["answer_kind"] != "generate" or row["error"] is not None:
                    continue
                key = f"{row['item_id']}|{tag}|sample={row['sample']}"
                if key in seen:
                    continue  # two generate answers of one request: one item
                seen.add(key)
                # The upstream item's fields, then the axes and the row's own columns, which
                # win where a name is both (the checker offers only the latter under it).
                fields = dict(values.get(row["item_id"], {}))
                fields |= {axis: cell.axes[axis] for axis in CELL_AXIS_NAMES}
                fields |= {
                    RESPONSE_KEY: key, "language": row["language"], "prompt": row["prompt"], "response": row["response"] or "",
                    "parsed_answer": row["parsed_answer"], "item_id": row["item_id"], "sample": row["sample"], "request_id": row["request_id"],
                }
                out.append(Record(len(out) + 1, fields))
        pair = self.plan.datasets[dataset].pair
        if pair is not None:
            out = _pairs(out, pair)
        for rec in out:
            rec.fields.update({name: rec.fields.get(source) for name, source in mapped.items() if name not in rec.fields})
        return out

    def _item_values(self, cell: Cell) -> dict[str, dict[str, str]]:
        """item id -> the fields its prompt was filled with, for an upstream cell."""
        hit = self._values.get(cell.id)
        if hit is None:
            parts = self.plan.cell_parts(cell)
            selection = parts["items"]
            entry = self.plan.data["datasets"][selection["dataset"]]
            # The items the upstream cell asked, selected as it selected them (an id may
            # repeat across partition values).
            records = select(self.records(selection["dataset"], cell.reads), entry, cell.axes["language"], selection["partition"], selection["filters"], None)
            hit = {}
            for rec in records:
                item = view(rec, entry, cell.axes["language"], cell.axes["country"])
                hit.setdefault(item.item_id, item.values)
            self._values[cell.id] = hit
        return hit


def _fewshot_block(parts: dict, data: DataCache, plan: Plan, cell: Cell, exclude_id: str) -> str:
    fs = parts["prompt"]["fewshot"]
    if not fs:
        return ""
    pool_entry = plan.data["datasets"][fs["dataset"]]
    language, country = cell.axes["language"], cell.axes["country"]
    shots = []
    for rec in data.records(fs["dataset"]):
        if len(shots) >= fs["shots"]:
            break
        if not available(rec, pool_entry, language):
            continue
        v = view(rec, pool_entry, language, country)
        if v.item_id == exclude_id:
            continue
        answer = v.targets[0] if v.targets else (v.gold or "")
        shots.append(fill(parts["prompt"]["template"], v.values | parts["prompt"]["variables"]) + "\n" + answer)
    return "\n\n".join(shots) + "\n\n" if shots else ""


def cell_requests(plan: Plan, cell: Cell, data: DataCache, limit: int | None = None) -> list[CellRequest]:
    """Every request of one cell, in a stable order (item, answer kind, sample)."""
    parts = plan.cell_parts(cell)
    axes = cell.axes
    selection = parts["items"]
    entry = plan.data["datasets"][selection["dataset"]]
    cap = selection["limit"]
    # `--limit` caps the items of the first stage; a later stage reads every row the limited
    # upstream cells produced.
    if limit is not None and not cell.reads:
        cap = limit if cap is None else min(cap, limit)
    records = select(data.records(selection["dataset"], cell.reads), entry, axes["language"], selection["partition"], selection["filters"], cap)
    prompt_part, sampling = parts["prompt"], parts["sampling"]
    model = parts["model"]
    out: list[CellRequest] = []
    for rec in records:
        item = view(rec, entry, axes["language"], axes["country"])
        fewshot = _fewshot_block(parts, data, plan, cell, item.item_id)
        values = item.values | prompt_part["variables"]
        plain = fewshot + render(prompt_part["template"], values, prompt_part["instruction"])
        for answer in parts["answers"]:
            kind = ANSWER_KINDS[answer["kind"]]
            text, order = plain, None
            if answer["kind"] == "pairwise":
                candidates, order = pairwise.shown(answer, item.values, item.item_id, sampling["seed"])
                text = fewshot + render(prompt_part["template"], values | candidates, prompt_part["instruction"])
            if kind.request_options == "texts":
                # a loglik continuation is the separator and the option text
                separator = (answer.get("args") or {}).get("separator", loglik.DEFAULT_SEPARATOR)
                options = tuple(separator + text for text in item.option_texts)
            elif kind.request_options == "candidates":
                options = tuple(item.values.get(f, "") for f in reward.candidate_fields(answer))
            else:
                options = tuple(item.labels)
            for sample in range(sampling["samples"] if kind.sampled else 1):
                rid = request_id(model, text, prompt_part["system"], answer, options, sampling, sample)
                req = EngineRequest(
                    request_id=rid,
                    prompt=text,
                    kind=kind.engine,
                    options=options,
                    max_tokens=sampling["max_tokens"],
                    temperature=sampling["temperature"],
                    top_p=sampling["top_p"],
                    seed=sampling["seed"] * 1_000_003 + sample,
                    chat=model["chat"],
                    system=prompt_part["system"],
                    reference=(answer.get("args") or {}).get("reference"),
                )
                out.append(CellRequest(req, item, sample, answer, order))
    return out
