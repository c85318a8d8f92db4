"""The axes of the cross product: one list, imported by the checker, the expansion, the plan,
``diff``, the runtime's result rows, the metrics and the report.

A cell is one value of every cell axis (``None`` where the study does not use the axis).
Result rows add the axes that vary inside a cell: the sample, the answer kind and a loglik
answer's normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Axis:
    name: str
    summary: str
    integer: bool = False
    """Values are whole numbers (``shots``, ``seed``); names and codes otherwise."""
    required: bool = False
    """Every study sets it."""
    setting: str | None = None
    """The study setting that gives its values, where it differs from the axis name."""


CELL_AXES: tuple[Axis, ...] = (
    Axis("model", "the model that answers", required=True),
    Axis("dataset", "the dataset the items come from", required=True),
    Axis("country", "a country of a `countries` map (with `native(country)` languages)"),
    Axis("language", "the prompt's language", required=True),
    Axis("framing", "the prompt template", required=True),
    Axis("mode", "how the model answers (instruction, token budget, sampling)"),
    Axis("partition", "a value of the dataset's `partition` field"),
    Axis("subset", "a named item filter"),
    Axis("shots", "the number of few-shot examples", integer=True),
    Axis("seed", "the sampling seed", integer=True, setting="seeds"),
)

ROW_AXES: tuple[Axis, ...] = (
    Axis("sample", "the sample number within a cell (samples = N)", integer=True),
    Axis("answer_kind", "the answer kind that produced the row"),
    Axis("normalize", "how a loglik answer compared its options: none (summed log-likelihood), chars, bytes or tokens; empty for other answer kinds"),
)

CELL_AXIS_NAMES: tuple[str, ...] = tuple(a.name for a in CELL_AXES)
REQUIRED_AXES: tuple[str, ...] = tuple(a.name for a in CELL_AXES if a.required)
INTEGER_AXES: tuple[str, ...] = tuple(a.name for a in CELL_AXES + ROW_AXES if a.integer)
RESULT_AXES: tuple[str, ...] = ("experiment", "study", *CELL_AXIS_NAMES, "item_id", *(a.name for a in ROW_AXES))
"""Result columns that identify what a row measured; a unit is an item under one value of
each but the answer kind and the normalisation, so an item's answers of several kinds are
one unit (metrics pair and resample on units)."""
GROUP_AXES: tuple[str, ...] = (*CELL_AXIS_NAMES, *(a.name for a in ROW_AXES))
"""Columns a metric can group by."""


def by_name(name: str) -> Axis | None:
    return next((a for a in CELL_AXES + ROW_AXES if a.name == name), None)
