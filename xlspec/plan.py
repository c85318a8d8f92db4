"""The plan: the compiled artifact, committed next to the spec.

Canonical JSON (sorted keys, 2-space indent, UTF-8, floats in Python's shortest round-trip
form, which is the same on every platform), so equal plans are equal bytes and ``git diff``
of two plans reads cell by cell.  Content hashes are sha256 over canonical JSON
(:mod:`xlspec.identity`), never Python's ``hash()``.

:class:`Plan` is the typed form everything after the compiler reads (the runtime, ``diff``,
the report); the expansion writes the same structure as plain data, which is faster to
build for large plans.
"""

from __future__ import annotations

import json
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from .axes import CELL_AXIS_NAMES
from .files import FileReadError, JSONContentError, atomic_write_text, read_json_file, sha256_file
from .identity import canonical, cell_id, digest, part_digests
from .spec import AnswerSpec, FieldMap, FramingSpec, MetricSpec, ModelSpec, ModeSpec

PLAN_FORMAT = "xlspec-plan/2"
"""Version 2: a cell's model part holds only the model settings that change answers
(version 1 also hashed ``batch_size`` and ``tensor_parallel``)."""


RECOMPILE = "run `xlspec compile` to compile its spec again"
MAX_PLAN_BYTES = 1 << 30
"""A plan is about 360 bytes a cell: 1 GiB is some three million cells."""


class PlanError(ValueError):
    """A file that is not a plan this xlspec can use: one line, naming the file (and, where
    known, the line and column)."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None, col: int | None = None, unreadable: bool = False):
        super().__init__(message)
        self.message, self.path, self.line, self.col = message, path, line, col
        self.unreadable = unreadable
        """The file could not be read at all (missing, a folder, a device, too large)."""

    def __str__(self) -> str:
        where = self.path if self.line is None or self.path is None else f"{self.path}:{self.line}:{self.col or 1}"
        return f"{where}: {self.message}" if where else self.message

    def at(self, path: str) -> "PlanError":
        return PlanError(self.message, path, self.line, self.col, self.unreadable)


# The header reads first and the cells last; every other object has its keys sorted.
TOP_LEVEL_ORDER = (
    "format", "experiment", "title", "versions", "spec", "datasets", "models", "framings", "modes",
    "subsets", "names", "studies", "reports", "totals", "cells",
)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceRef(_Model):
    path: str
    sha256: str


class PlanSpec(_Model):
    path: str
    """The spec file, relative to the plan file."""
    sha256: str
    imports: list[SourceRef] = []
    """Imported spec files, relative to the spec file."""


class PlanDataset(_Model):
    format: str
    path: str = ""
    """Relative to the spec file (none for ``responses``)."""
    sha256: str = ""
    records: int | None = None
    """How many records the file has (``responses``: known once the upstream study ran)."""
    fields: dict[str, FieldMap]
    labels: str
    gold_is: str | None = None
    """How ``gold`` names the right option: ``label``, ``index`` or ``text``."""
    scale: tuple[float, float] | None = None
    study: str | None = None
    """``responses``: the study whose responses are the items."""
    pair: str | None = None
    """``responses(STUDY, pair = AXIS)``: the upstream axis whose values are paired."""
    hub_id: str | None = None
    """``hf("org/name")``: the dataset's hub id (``path`` is empty); a local folder laid out
    as a hub repository has a ``path`` instead."""
    config: str | None = None
    """``hf``: the one config read for every language."""
    configs: dict[str, str] | None = None
    """``hf``: language -> the config read for it (one config per language)."""
    split: str | None = None
    revision: str | None = None


class PlanStudy(_Model):
    axes: dict[str, list[str | int]]
    """The study's axes (those it uses) and their values."""
    languages_by_country: dict[str, list[str]] | None = None
    answers: list[AnswerSpec]
    samples: int
    limit: int | None = None
    where: Any = None
    fewshot: str | None = None
    group_by: list[str]
    metrics: list[MetricSpec]
    cells: int


class PlanReport(_Model):
    name: str
    template: str


class Estimate(_Model):
    requests: int
    prompt_tokens: int
    output_tokens: int


class Cell(_Model):
    id: str
    study: str
    axes: dict[str, str | int | None]
    """A value of every cell axis (:data:`xlspec.axes.CELL_AXES`), None where unused."""
    items: int
    estimate: Estimate
    reads: list[str] = []
    """The ids of the upstream cells whose responses are this cell's items (a study reading
    ``responses(STUDY)``); the plan's cells and their ``reads`` form a DAG."""


class Totals(_Model):
    cells: int
    requests: int
    prompt_tokens: int
    output_tokens: int
    languages: list[str]
    models: list[str]


class Plan(_Model):
    format: str
    experiment: str
    title: str = ""
    versions: dict[str, str]
    spec: PlanSpec
    datasets: dict[str, PlanDataset]
    models: dict[str, ModelSpec]
    framings: dict[str, FramingSpec]
    modes: dict[str, ModeSpec]
    subsets: dict[str, Any] = {}
    names: dict[str, Any] = {}
    studies: dict[str, PlanStudy]
    reports: list[PlanReport] = []
    totals: Totals
    cells: list[Cell]
    _data: dict = PrivateAttr(default_factory=dict)

    @classmethod
    def from_data(cls, data: Any) -> "Plan":
        """The typed plan; :class:`PlanError` (one line) for anything that is not a plan of
        this format."""
        if not isinstance(data, dict):
            raise PlanError(f"not a plan file: it holds a JSON {_json_type(data)}, not an object")
        if "format" not in data:
            raise PlanError(f"not a plan file: it has no `format` (an xlspec plan says {PLAN_FORMAT!r}); {RECOMPILE}")
        if data["format"] != PLAN_FORMAT:
            raise PlanError(f"not an xlspec plan of this version (format {data['format']!r}, expected {PLAN_FORMAT!r}): {RECOMPILE}")
        try:
            plan = cls.model_validate(data)
        except ValidationError as e:
            raise PlanError(_validation_message(e)) from None
        plan._data = data
        return plan

    @property
    def data(self) -> dict:
        """The plan as plain data, exactly as written (what hashes are taken over)."""
        return self._data

    @property
    def header(self) -> dict:
        """The plan without its cells, as plain data."""
        return {k: v for k, v in self._data.items() if k != "cells"}

    def cell_parts(self, cell: Cell, cache: dict | None = None) -> dict:
        """Everything a cell's outputs depend on (what the runtime builds its requests from).
        ``cache`` (any dict kept across calls) saves rebuilding parts that cells share."""
        return part_digests(self._data, cell.study, cell.axes, cache)[1]

    def hash(self) -> str:
        """Identity of the whole plan (its cells and header), for run manifests."""
        return plan_hash(self._data)

    def spec_dir(self, plan_path: str) -> str:
        """The folder of the spec the plan was compiled from (datasets, local models and
        report templates are relative to it)."""
        base = os.path.dirname(os.path.abspath(plan_path))
        return os.path.dirname(os.path.normpath(os.path.join(base, self.spec.path)))


_CELL_LINE = json.JSONEncoder(sort_keys=True, separators=(", ", ": "), ensure_ascii=False)


def dumps(plan: dict) -> str:
    """The header indented, then one cell per line: a changed cell is a one-line diff."""
    body = canonical({k: v for k, v in plan.items() if k != "cells"})
    header = {k: body[k] for k in TOP_LEVEL_ORDER if k in body}
    header |= {k: v for k, v in body.items() if k not in TOP_LEVEL_ORDER}
    text = json.dumps(header, indent=2, ensure_ascii=False)
    # Cells hold only strings, ints and None (see expand), so they need no canonical() pass.
    # One encoder call for all cells (the per-call overhead dominates at 20k cells), then a
    # line break between cells.  A cell's keys and values are names, codes, hashes and
    # numbers, so '}, {"axes": ' only ever occurs between two cells.
    cells = plan.get("cells", [])
    lines = "    " + _CELL_LINE.encode(cells)[1:-1].replace('}, {"axes": ', '},\n    {"axes": ') if cells else ""
    return text[:-2] + ',\n  "cells": [\n' + lines + ("\n" if cells else "") + "  ]\n}\n"


def write(plan: dict, path: str) -> None:
    """Write atomically: a reader never sees half a plan."""
    atomic_write_text(path, dumps(plan))


def load(path: str) -> Plan:
    """Read a plan file.  Every way a file can fail to be a plan (missing, a folder, a pipe
    or device, not UTF-8, not JSON, not an object, another format, a missing or mistyped
    field) is a :class:`PlanError` naming the file."""
    try:
        data = read_json_file(path, MAX_PLAN_BYTES, "plan file")
    except FileReadError as e:
        raise PlanError(e.message, path, unreadable=True) from None
    except JSONContentError as e:
        raise PlanError(f"not a plan file: {e.message}", path, e.line, e.col) from None
    try:
        return Plan.from_data(data)
    except PlanError as e:
        raise e.at(path) from None


def verify(plan: Plan, ids: bool = True) -> None:
    """Check that a plan read from a file is whole and as compiled; raise :class:`PlanError`
    naming the first bad cell.

    Always: every part of every cell's id can be derived from the plan's header (what
    lowering its requests reads), so a hand-edited plan fails here, naming the cell and
    what it names that the header does not declare, rather than half-way through a run.
    With ``ids`` (what ``xlspec run`` asks): each cell's id, derived again from the plan's
    content (:func:`xlspec.identity.cell_id`), equals the id it carries; no two cells share
    an id; each study has the cells its header counts.  An edited template or mode, a cell's
    axes changed, a line copied or deleted: each fails.  (``xlspec diff`` leaves ``ids``
    off: it compares plans of older versions of xlspec, whose ids may follow an older rule.)
    Cost: about 0.4 s for a 23,040-cell plan, most of it hashing."""
    data = plan.data
    cache: dict = {}
    first: dict[str, int] = {}
    counts: dict[str, int] = {}
    for i, cell in enumerate(plan.cells, 1):
        # The fast path derives the id; only a cell that fails is looked at closely, to say
        # what is wrong with it (a name the header does not declare, an axis missing).
        try:
            digests, _parts = part_digests(data, cell.study, cell.axes, cache)
            problem = None if not ids or cell_id(cell.study, cell.axes, digests, cell.reads) == cell.id else "has an id that does not match its content: the plan was edited after it was compiled (or by another version of xlspec)"
        except (KeyError, TypeError, AttributeError, ValueError) as e:
            problem = f"cannot be read: the plan lacks {e}" if isinstance(e, KeyError) else f"cannot be read: {e}"
        if problem is not None:
            raise PlanError(f"cell {i} ({describe(cell)}) {_undeclared(data, cell, set()) or problem}; {RECOMPILE}")
        if not ids:
            continue
        earlier = first.setdefault(cell.id, i)
        if earlier != i:
            raise PlanError(f"cell {i} ({describe(cell)}) repeats cell {earlier}: the plan was edited after it was compiled; {RECOMPILE}")
        counts[cell.study] = counts.get(cell.study, 0) + 1
    if ids:
        for i, cell in enumerate(plan.cells, 1):
            upstream = data["datasets"].get(cell.axes["dataset"], {}).get("study")
            for read in cell.reads:
                j = first.get(read)
                if j is None or plan.cells[j - 1].study != upstream:
                    raise PlanError(f"cell {i} ({describe(cell)}) reads cell {read[:12]}..., which is not a cell of study `{upstream}` in this plan; {RECOMPILE}")
        for name, study in data["studies"].items():
            if counts.get(name, 0) != study.get("cells"):
                raise PlanError(f"study `{name}` has {counts.get(name, 0)} cells, but the plan's header says {study.get('cells')}: the plan was edited after it was compiled; {RECOMPILE}")


def _undeclared(data: dict, cell: Cell, checked: set) -> str | None:
    """What a cell names that the plan's header does not declare, or None.  ``checked``
    memoises the (study, axis, value) triples found good."""
    axes, name = cell.axes, cell.study
    study = data["studies"].get(name)
    if study is None:
        return f"names study `{name}`, which the plan does not declare"
    if len(axes) != len(CELL_AXIS_NAMES) or not all(a in axes for a in CELL_AXIS_NAMES):
        missing, extra = sorted(set(CELL_AXIS_NAMES) - set(axes)), sorted(set(axes) - set(CELL_AXIS_NAMES))
        return "has " + " and ".join(x for x in (f"no {', '.join(missing)}" if missing else "", f"unknown axes {', '.join(extra)}" if extra else "") if x)
    lang, country, framing = axes["language"], axes["country"], axes["framing"]
    for key in ((name, "model", axes["model"]), (name, "dataset", axes["dataset"]), (name, "language", lang), (name, "framing", framing),
                (name, "mode", axes["mode"]), (name, "subset", axes["subset"]), (name, "country", country), (name, "partition", axes["partition"]),
                (name, "shots", axes["shots"]), (name, "seed", axes["seed"]), (name, "template", framing, lang), (name, "country name", country, lang)):
        if key in checked:
            continue
        axis, value = key[1], key[2]
        values = study["axes"].get(axis)
        if values is not None and value not in values:
            return f"names {axis} `{value}`, which is not one of the study's ({', '.join(map(str, values))})"
        if axis in _DECLARED and not (value is None and axis in ("mode", "subset")):
            if not isinstance(value, str) or value not in (data.get(_DECLARED[axis]) or {}):
                return f"names {axis} `{value}`, which the plan does not declare"
        if axis == "language" and (not isinstance(value, str) or value not in ((data.get("names") or {}).get("languages") or {})):
            return f"names language `{value}`, which the plan does not declare"
        if axis == "template" and key[3] not in (data["framings"][value].get("templates") or {}):
            return f"names language `{key[3]}`, which framing `{value}` has no template for"
        if axis == "country name" and value is not None:
            if not isinstance(value, str) or key[3] not in (((data.get("names") or {}).get("countries") or {}).get(value) or {}):
                return f"names country `{value}`, which the plan has no name for in `{key[3]}`"
        checked.add(key)
    return None


_DECLARED = {"model": "models", "dataset": "datasets", "framing": "framings", "mode": "modes", "subset": "subsets"}


def describe(cell: Cell) -> str:
    """``study quiz: model=smol language=en framing=plain`` (the axes the cell sets)."""
    axes = " ".join(f"{a}={cell.axes[a]}" for a in CELL_AXIS_NAMES if cell.axes.get(a) not in (None, 0))
    return f"study {cell.study}: {axes}" if axes else f"study {cell.study}"


def _json_type(value: Any) -> str:
    return {list: "list", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}.get(type(value), type(value).__name__)


def _validation_message(e: ValidationError) -> str:
    """The first of pydantic's errors as one line: ``cells[3].axes: Field required``."""
    errors = e.errors()
    first = errors[0]
    where = ""
    for part in first["loc"]:
        where += f"[{part}]" if isinstance(part, int) else (f".{part}" if where else str(part))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"not a valid plan: {where or 'the plan'}: {first['msg']}{more}; {RECOMPILE}"


def plan_hash(plan: dict) -> str:
    """Identity of a whole plan (its cells and header), for run manifests."""
    return digest({k: v for k, v in plan.items() if k != "totals"})


def stale_inputs(plan: Plan, plan_path: str) -> list[str]:
    """Files (spec, imports, data) whose content differs from what the plan was compiled
    from; empty when the plan is current."""
    spec_dir = plan.spec_dir(plan_path)
    spec_path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(plan_path)), plan.spec.path))
    from .source import SourceError, read_source

    # Spec files by their text (as compiled: line endings do not count), data by its bytes.
    checks = [(spec_path, plan.spec.sha256, True)]
    checks += [(os.path.normpath(os.path.join(spec_dir, i.path)), i.sha256, True) for i in plan.spec.imports]
    checks += [(os.path.normpath(os.path.join(spec_dir, d.path)), d.sha256, False) for d in plan.datasets.values() if d.format not in ("responses", "hf")]
    changed = []
    for name, d in plan.datasets.items():
        if d.format == "hf":  # by its rows' fingerprint, read through the datasets cache
            from .tables import read_dataset

            try:
                got = read_dataset("hf", os.path.normpath(os.path.join(spec_dir, d.path)), hub_id=d.hub_id, config=d.config, configs=d.configs, split=d.split, revision=d.revision)[1]
            except OSError:
                got = None
            if got != d.sha256:
                changed.append(f"dataset `{name}` ({d.hub_id or d.path})" + (" (cannot be read)" if got is None else ""))
    for path, want, is_spec in checks:
        try:
            got = read_source(path).sha256 if is_spec else sha256_file(path)
        except (OSError, SourceError):
            got = None
        if got != want:
            changed.append(os.path.relpath(path) + (" (missing)" if got is None else ""))
    return changed
