"""``compute_metrics``: every registered metric over the results table, with bootstrap CIs.

``compute_metrics(results, metrics, group_by, seed=0, n_boot=1000)`` takes the results table
(one row per request, ``runtime/schema.py``) and returns one row per metric and group:
``metric, <axes...>, value, ci_low, ci_high, n``.

Each metric is a module of ``runtime/metrics/defs/`` (its formula is in that module's
docstring) that registers a :class:`~.registry.MetricInfo`; this module checks the requests
against the registry (:mod:`.spec`), reads the table once (:mod:`.columns`), groups each
metric by its grouping less the axes it folds (``MetricInfo.folds``), builds its jobs
(:mod:`.aggregate`, ``MetricInfo.compute``) and bootstraps them (:mod:`.bootstrap`).
"""

from __future__ import annotations

import pandas as pd

from .aggregate import metric_jobs
from .bootstrap import Job, run_jobs
from .columns import ITEM, Columns
from .spec import make_specs

__all__ = ["compute_metrics", "OUT_COLUMNS"]

OUT_COLUMNS = ("value", "ci_low", "ci_high", "n")


def _map_keys_as_columns(results: pd.DataFrame, column: str, names=None) -> pd.DataFrame:
    """The results with a column per key of the map column ``column`` (those of ``names``
    only, where given) that is not a column already, holding each row's value (None where
    its map lacks the key)."""
    if column not in results.columns:
        return results
    entries = [dict(e) if e is not None else {} for e in results[column]]
    keys = {k for e in entries for k in e} - set(results.columns)
    chosen = sorted(keys) if names is None else [n for n in dict.fromkeys(names) if n in keys]
    if not chosen:
        return results
    out = results.copy()
    for name in chosen:
        out[name] = [e.get(name) for e in entries]
    return out


def with_upstream_axes(results: pd.DataFrame) -> pd.DataFrame:
    """The results with a column per upstream axis a judge stage's rows name (the
    ``upstream`` map: ``generator`` -> the model that wrote the judged response), so metrics
    can group and rank by them.  A name that is already a column is left as it is."""
    return _map_keys_as_columns(results, "upstream")


def with_item_fields(results: pd.DataFrame, names) -> pd.DataFrame:
    """The results with a column for each of ``names`` that is not a column but a key of
    the rows' ``item_fields`` (``category``, ``subject``, ``tier``), so metrics group by an
    item field as by an axis."""
    return _map_keys_as_columns(results, "item_fields", names)


def with_model_attributes(results: pd.DataFrame, attributes: dict[str, dict]) -> pd.DataFrame:
    """The results with a column per declared model attribute (``params``, ``type``), the
    value of each row's model (None where a model does not declare it); names that are
    already columns are left as they are."""
    names = sorted({k for a in attributes.values() for k in a} - set(results.columns))
    if not names or "model" not in results.columns:
        return results
    out = results.copy()
    models = out["model"].to_numpy(dtype=object)
    for name in names:
        out[name] = [(attributes.get(m) or {}).get(name) for m in models]
    return out


def compute_metrics(
    results: pd.DataFrame,
    metrics: list[dict],
    group_by: list[str],
    seed: int = 0,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """One row per metric and group: ``metric, <group axes>, value, ci_low, ci_high, n``.

    ``metrics``: dicts ``{"name", "args", "by", "label"}``; ``by`` (when not None) replaces
    ``group_by`` for that metric.  ``group_by``: result columns to group on, or keys of the
    rows' ``item_fields`` (an item field as an axis, :func:`with_item_fields`).  Axes a metric
    folds (``MetricInfo.folds``: ``consistency``'s ``over``, a contrast's axis, ``language``
    for parity, ``model`` and the contrast axis for rank stability) are left empty (None) in
    its rows, except those it fills (``pivot_delta``: ``language``), which are added to the
    columns.  See the modules of ``runtime/metrics/defs/`` for every formula and edge case.
    """
    specs = make_specs(metrics)
    from .derived import inner_axes

    named = [*group_by, *(a for s in specs if s.by is not None for a in s.by), *(a for s in specs if s.name == "derived" for a in inner_axes(s.args["expr"]))]
    cols = Columns(with_item_fields(with_upstream_axes(results), named))
    if ITEM not in cols.df.columns:
        raise ValueError("results have no item_id column")
    columns: list[str] = []
    for axes in [group_by] + [s.by for s in specs if s.by is not None]:
        for a in axes:
            if a not in cols.df.columns:
                raise ValueError(f"group axis {a!r} is not a column of the results")
            if a not in columns:
                columns.append(a)
    for spec in specs:
        columns.extend(a for a in spec.info.filled(spec.args) if a not in columns)
    jobs: list[Job] = []
    for spec in specs:
        by = spec.by if spec.by is not None else group_by
        folds = spec.folds
        jobs.extend(metric_jobs(cols, spec, [k for k in by if k not in folds]))
    rows = run_jobs(jobs, seed, int(n_boot))
    out = pd.DataFrame(rows, columns=["metric", *columns, *OUT_COLUMNS])
    for a in columns:
        out[a] = out[a].astype(object).where(out[a].notna(), None)
    out["n"] = out["n"].astype("int64")
    return out
