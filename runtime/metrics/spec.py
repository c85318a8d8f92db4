"""A metric as one ``compute_metrics`` call asks for it: read from the plan's metric dicts
(``{"name", "args", "by", "label"}``) and checked against :data:`~.registry.METRICS`.

The compiler's checker rejects a bad metric with a diagnostic before a run; this module
raises ``ValueError`` for the same mistakes where ``compute_metrics`` is called directly
(the report, tests, notebooks), with the catalog the checker reads.

Light to import (no numpy, no pandas): the metric modules read contrasts with it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from .registry import METRICS, MetricInfo, metric_label


@dataclass(frozen=True)
class Pair:
    """A contrast ``axis = a - b``; each side one value or several values of the axis."""

    axis: str
    a: tuple[str, ...]
    b: tuple[str, ...]


def parse_pair(p) -> Pair:
    """A contrast as the plan writes it (``{"axis", "a", "b"}``), as text
    (``"mode = direct - reason"``) or a :class:`Pair`."""
    if isinstance(p, Pair):
        return p
    if isinstance(p, str):
        m = re.fullmatch(r"\s*([\w-]+)\s*=\s*([\w.-]+)\s+-\s+([\w.-]+)\s*", p)
        if not m:
            raise ValueError(f"cannot read contrast {p!r}: expected 'axis = a - b'")
        return Pair(m.group(1), (m.group(2),), (m.group(3),))
    if isinstance(p, dict) and {"axis", "a", "b"} <= set(p):
        a = tuple(str(v) for v in (p["a"] if isinstance(p["a"], (list, tuple)) else [p["a"]]))
        b = tuple(str(v) for v in (p["b"] if isinstance(p["b"], (list, tuple)) else [p["b"]]))
        if set(a) & set(b):
            raise ValueError(f"contrast {p!r}: a and b share values")
        return Pair(str(p["axis"]), a, b)
    raise ValueError(f"cannot read contrast {p!r}: expected {{'axis': ..., 'a': ..., 'b': ...}}")


def contrast_axis(args: dict) -> tuple[str, ...]:
    """The axis of the ``pair`` argument, as a fold: ``(axis,)``, or ``()`` without one (or
    with one that cannot be read; computing the metric then says why)."""
    pair = args.get("pair")
    if pair is None:
        return ()
    try:
        return (parse_pair(pair).axis,)
    except ValueError:
        return ()


@dataclass
class Spec:
    name: str
    args: dict
    """The arguments, defaults filled in."""
    by: list[str] | None
    label: str
    info: MetricInfo = field(repr=False, default=None)  # type: ignore[assignment]
    inner: "Spec | None" = field(repr=False, default=None)
    """The per-item metric a ``metric`` argument names (``parity_gap(accuracy)``)."""

    def key(self) -> str:
        """Equal for two requests of the same metric with the same arguments (a cache key)."""
        return json.dumps([self.name, self.args], sort_keys=True, default=str)

    @property
    def folds(self) -> tuple[str, ...]:
        return tuple(self.info.folds(self.args))


def make_spec(raw) -> Spec:
    """One metric request (a name or a dict) checked against the registry: a known metric,
    known arguments, required ones given, fixed choices respected; defaults filled in.  The
    label is the plan's, else :func:`~.registry.metric_label` of the arguments given."""
    if isinstance(raw, str):
        raw = {"name": raw}
    name = raw["name"]
    info = METRICS.get(name)
    if info is None:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS.names())}")
    given = dict(raw.get("args") or {})
    unknown = set(given) - {p.name for p in info.params}
    if unknown:
        raise ValueError(f"metric {name!r}: unknown argument(s) {sorted(unknown)}")
    args = {}
    for p in info.params:
        if p.name in given and given[p.name] is not None:
            args[p.name] = given[p.name]
            # A rubric score is any name but a results column (the checker knows the names).
            if p.choices and str(args[p.name]) not in p.choices and (not p.scores or _is_results_column(str(args[p.name]))):
                raise ValueError(f"metric {name!r}: {p.name} = {args[p.name]!r} is not one of {', '.join(p.choices)}")
        elif p.required:
            raise ValueError(f"metric {name!r}: argument {p.name!r} is required")
        elif p.default is not None:
            args[p.name] = p.default
    label = raw.get("label") or metric_label(name, given)
    by = raw.get("by")
    return Spec(name, args, list(by) if by is not None else None, label, info)


def make_specs(metrics: list) -> list[Spec]:
    """Every request of one ``compute_metrics`` call, with the per-item metric each
    ``metric`` argument names resolved: a label of this call, else a name of this call, else
    the registered metric with its defaults (a dict is a metric request of its own)."""
    specs = [make_spec(m) for m in metrics]
    for spec in specs:
        for p in spec.info.params:
            if p.kind == "metric" and p.name in spec.args:
                spec.inner = _resolve(specs, spec.args[p.name])
    return specs


def _resolve(specs: list[Spec], ref) -> Spec:
    if isinstance(ref, dict):
        inner = make_spec(ref)
    else:
        ref = str(ref)
        inner = next((s for s in specs if s.label == ref), None) or next((s for s in specs if s.name == ref), None)
        if inner is None:
            inner = make_spec({"name": ref})
    if not inner.info.per_item:
        raise ValueError(f"{inner.label!r} is not a per-item metric; it cannot be aggregated or compared")
    return inner


def _is_results_column(name: str) -> bool:
    from ..schema import RESULTS_SCHEMA  # pyarrow: imported only where a score is named

    return name in RESULTS_SCHEMA.names
