"""Small helpers every part of the report shares: template-safe values, stable orders, and
lookups in metric rows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..metrics.columns import missing


def clean(x):
    """A value for a template / Parquet: numpy scalars to Python, NaN to None."""
    if missing(x):
        return None
    if isinstance(x, np.generic):
        x = x.item()
        if isinstance(x, float) and math.isnan(x):
            return None
    return x


def text_or_none(x) -> str | None:
    x = clean(x)
    return None if x is None else str(x)


def sort_key(v):
    """Orders values of mixed types, None last."""
    return (v is None, str(v) if v is not None else "")


def ordered(values, order=None) -> list:
    """``values`` in ``order`` (the study's axis, plan order) first, then any others sorted."""
    values = set(values)
    first = [v for v in (order or []) if v in values]
    return first + sorted(values - set(first), key=sort_key)


def column_values(df: pd.DataFrame, col: str, order=None) -> list:
    """The distinct values of a column, :func:`ordered`."""
    if col not in df.columns or len(df) == 0:
        return []
    return ordered({clean(v) for v in df[col].tolist()}, order)


def stat_of(row: dict | None) -> dict | None:
    """The stat (``value``, ``ci_low``, ``ci_high``, ``n``) of a metric row."""
    if row is None:
        return None
    return {k: row.get(k) for k in ("value", "ci_low", "ci_high", "n")}


def find(rows: list[dict], label: str, **axes) -> dict | None:
    """The first metric row of ``label`` with the given axis values."""
    for r in rows:
        if r.get("metric") == label and all(r.get(k) == v for k, v in axes.items()):
            return r
    return None


def context_text(row, axes) -> str:
    """``"k=v, ..."`` of the axes ``axes`` that ``row`` has a value for."""
    return ", ".join(f"{a}={row[a]}" for a in axes if not missing(row.get(a)))
