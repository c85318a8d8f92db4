"""Metric computation over the results table (the formulas: docs/metrics.md).

Laid out by concern:

- ``registry.py``: what a metric is (:class:`MetricInfo`) and :data:`METRICS`, filled by
  the modules of ``defs/``, one per metric or per family sharing a formula.  Adding a
  metric is one new module there.
- ``spec.py``: a metric request checked against the registry; contrasts.
- ``columns.py``: the results table read once (and the per-row API the report uses).
- ``aggregate.py``: per-row scores to per-item sums to jobs, shared by every metric.
- ``bootstrap.py``: the percentile bootstrap over items.
- ``compute.py``: :func:`compute_metrics`.

Importing this package, the registry or a metric module imports neither numpy nor pandas
(the compiler loads the registry); the names below that need them are loaded on first use.
"""

from __future__ import annotations

import importlib

__all__ = [
    "compute_metrics",
    "normalize_answer",
    "normalize_label",
    "tokenize",
    "base_language",
    "kl_divergence",
    "js_divergence",
    "token_f1",
    "kendall_tau_b",
    "EPS",
]

_WHERE = {
    "compute_metrics": ".compute",
    "normalize_answer": "xlspec.normalize",
    "normalize_label": "xlspec.normalize",
    "tokenize": "xlspec.normalize",
    "base_language": "xlspec.normalize",
    "kl_divergence": ".defs.divergence",
    "js_divergence": ".defs.divergence",
    "EPS": ".defs.divergence",
    "token_f1": ".defs.text_match",
    "kendall_tau_b": ".defs.rank_stability",
}


def __getattr__(name: str):
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
