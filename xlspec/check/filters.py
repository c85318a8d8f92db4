"""Filters: ``subset NAME = <filter>`` and a study's ``where`` lowered to JSON-able
trees (:mod:`xlspec.items` evaluates them), and the fields they read checked against data.

- ``lower_filter(expr, diags) -> tree | None``
- ``resolve_subsets(decls, diags) -> dict[str, tree]``
- ``check_filter_fields(filters, datasets, records, diags)``: every field a filter reads
  exists in every dataset of the study (used by the study pass).
"""

from __future__ import annotations

from typing import Any

from .. import ast
from ..data import Record
from ..diagnostics import Diagnostics, Span
from .context import did_you_mean, span_of
from .declarations import Declarations


def lower_filter(e: ast.Expr, diags: Diagnostics) -> Any:
    if isinstance(e, ast.Ref):
        if e.index is not None:
            diags.error("E014", "filters compare plain item fields", span_of(e))
            return None
        return ["field", e.dotted]
    if isinstance(e, ast.Str):
        return ["const", e.value]
    if isinstance(e, ast.Num):
        return ["const", int(e.value) if e.is_int else e.value]
    if isinstance(e, ast.Bool):
        return ["const", e.value]
    if isinstance(e, ast.ListExpr):
        items = [lower_filter(i, diags) for i in e.items]
        if any(i is None or i[0] != "const" for i in items):
            diags.error("E014", "a list in a filter holds constants", span_of(e))
            return None
        return ["const", [i[1] for i in items]]
    if isinstance(e, ast.Not):
        inner = lower_filter(e.operand, diags)
        return None if inner is None else ["not", inner]
    if isinstance(e, ast.BinOp) and e.op not in ("+", "-", "&", "*", "/"):
        left, right = lower_filter(e.left, diags), lower_filter(e.right, diags)
        return None if left is None or right is None else [e.op, left, right]
    diags.error("E014", "not a filter: use comparisons (==, !=, <, in) joined by and/or/not", span_of(e))
    return None


def resolve_subsets(decls: Declarations, diags: Diagnostics) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, d in decls["subset"].items():
        if d.value is not None:
            f = lower_filter(d.value, diags)
            if f is not None:
                out[name] = f
    return out


def filter_fields(f: Any) -> set[str]:
    """The item fields a filter tree reads."""
    if not isinstance(f, list) or not f:
        return set()
    if f[0] == "field":
        return {f[1]}
    if f[0] == "const":
        return set()
    return set().union(*(filter_fields(x) for x in f[1:]))


def check_filter_fields(filters: list[tuple[str, Any, Span | None]], datasets: list[str], records: dict[str, list[Record]], diags: Diagnostics,
                        known: dict[str, set[str]] | None = None) -> None:
    """Filters name raw item fields: they must exist in every dataset of the study.
    ``filters``: (label for the message, tree or None, span) each.  ``known``: the fields of
    datasets without records to look at (another study's responses)."""
    for label, f, span in filters:
        if f is None:
            continue
        for fld in sorted(filter_fields(f)):
            for n in datasets:
                have = (known or {}).get(n)
                if have is not None and fld not in have:
                    diags.error("E011", f"{label}: the items of dataset `{n}` have no field `{fld}`", span, hint=did_you_mean(fld, have, f"fields: {', '.join(sorted(have))}"))
                    continue
                recs = records.get(n)
                if recs is not None and not any(fld in r.fields for r in recs):
                    keys = {k for r in recs[:50] for k in r.fields}
                    diags.error("E011", f"{label}: dataset `{n}` has no field `{fld}`", span, hint=did_you_mean(fld, keys, None))
