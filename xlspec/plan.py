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

from pydantic import BaseModel, ConfigDict, PrivateAttr

from .files import atomic_write_text, sha256_file
from .identity import canonical, digest, part_digests
from .spec import AnswerSpec, FieldMap, FramingSpec, MetricSpec, ModelSpec, ModeSpec

PLAN_FORMAT = "xlspec-plan/2"
"""Version 2: a cell's model part holds only the model settings that change answers
(version 1 also hashed ``batch_size`` and ``tensor_parallel``)."""


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
    path: str
    """Relative to the spec file."""
    sha256: str
    records: int
    fields: dict[str, FieldMap]
    labels: str
    scale: tuple[float, float] | None = None


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
    def from_data(cls, data: dict) -> "Plan":
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"not an xlspec plan of this version (format {data.get('format')!r}, expected {PLAN_FORMAT!r}): compile its spec again with `xlspec compile`")
        plan = cls.model_validate(data)
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
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    try:
        return Plan.from_data(data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def plan_hash(plan: dict) -> str:
    """Identity of a whole plan (its cells and header), for run manifests."""
    return digest({k: v for k, v in plan.items() if k != "totals"})


def stale_inputs(plan: Plan, plan_path: str) -> list[str]:
    """Files (spec, imports, data) whose content differs from what the plan was compiled
    from; empty when the plan is current."""
    spec_dir = plan.spec_dir(plan_path)
    spec_path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(plan_path)), plan.spec.path))
    checks = [(spec_path, plan.spec.sha256)]
    checks += [(os.path.normpath(os.path.join(spec_dir, i.path)), i.sha256) for i in plan.spec.imports]
    checks += [(os.path.normpath(os.path.join(spec_dir, d.path)), d.sha256) for d in plan.datasets.values()]
    changed = []
    for path, want in checks:
        try:
            got = sha256_file(path)
        except OSError:
            got = None
        if got != want:
            changed.append(os.path.relpath(path) + (" (missing)" if got is None else ""))
    return changed
